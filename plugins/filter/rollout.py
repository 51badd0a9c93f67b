# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout's batches, probers and halt (module_utils/_batches.py, _probe.py)."""

from __future__ import annotations

# Documented in the sidecar files rollout_batches.yml, rollout_prober.yml,
# rollout_halted.yml, rollout_reload_errors.yml and rollout_failure.yml.

from ansible.errors import AnsibleFilterError

from ansible_collections.trustzone.pki.plugins.module_utils import _batches as B
from ansible_collections.trustzone.pki.plugins.module_utils import _probe as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

# The per-node fact the certs role sets when a node failed its probe (and was rolled back).
FAILURE_VAR = "__trustzone_rollout_failure"


def rollout_batches(hosts, canary=None, batches=None, groups=None):
    try:
        planned = B.plan(hosts, canary=canary, batches=batches, groups=groups)
    except TrustzoneError as exc:
        raise AnsibleFilterError(str(exc)) from None
    return dict(planned, lines=B.lines(planned))


def rollout_prober(host, hosts, batch, configured=None, active=None):
    return P.choose_prober(host, list(hosts or []), batch, configured or None, active)


def rollout_halted(earlier, hostvars, active):
    """The nodes of ``earlier`` (hosts of batches already run) that failed (no longer in
    ``active``, i.e. ``ansible_play_hosts``) or failed their probe."""
    active = set(active or [])
    failed = [h for h in earlier or [] if h not in active or
              (hostvars.get(h) or {}).get(FAILURE_VAR)]
    return B.halted(earlier or [], failed)


def rollout_reload_errors(services, commands=None):
    return P.reload_errors(services, commands)


def rollout_failure(seen, rollback=None, after=None, not_rolled_back=None):
    return P.failure_line(seen, rollback, after, not_rolled_back)


class FilterModule:
    def filters(self):
        return {"rollout_batches": rollout_batches, "rollout_prober": rollout_prober,
                "rollout_halted": rollout_halted, "rollout_reload_errors": rollout_reload_errors,
                "rollout_failure": rollout_failure}
