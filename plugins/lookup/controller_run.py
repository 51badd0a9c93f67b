# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: controller_run
short_description: Name this playbook run for the zone run lease
version_added: 0.1.0
description:
  - Returns this controller (host name and boot id), the process id and start time of the
    C(ansible-playbook) process running the play, and the C(pid:start) of every
    C(ansible-playbook) alive on the controller now.
  - P(trustzone.pki.run_lease#module) uses it to tell this run from another, and to take over
    at once a lease whose holder died on this controller.
  - Linux controllers (reads C(/proc)).
author: trustzone.pki maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Take the zone's run lease
  trustzone.pki.run_lease:
    path: /var/lib/trustzone/prod.lease
    holder: "{{ lookup('trustzone.pki.controller_run') }}"
"""

RETURN = r"""
_raw:
  description: One dict with C(controller), C(pid), C(start), C(playbook) and C(live).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.trustzone.pki.plugins.module_utils import _lease
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        try:
            return [_lease.controller_run()]
        except TrustzoneError as exc:
            raise AnsibleLookupError(str(exc)) from None
