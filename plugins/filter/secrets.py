# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Seal values with the zone secrets key, on the controller (module_utils/_secrets.py).

The keys come from trustzone.pki.zone_secrets with ``return_keys: true`` (a hidden result;
playbooks/seal.yml does it): newest first. The tokens are Fernet tokens; a node of the zone
opens them with trustzone.pki.secret."""

from __future__ import annotations

# Each filter of this file is documented in its own sidecar file, seal.yml and reseal.yml.

from ansible.errors import AnsibleFilterError

from ansible_collections.trustzone.pki.plugins.module_utils import _secrets as S
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def _keys(keys):
    if isinstance(keys, str) or not isinstance(keys, (list, tuple)) or not keys:
        raise AnsibleFilterError("trustzone.pki.seal: the keys must be the non-empty list "
                                 "trustzone.pki.zone_secrets returned with return_keys: true "
                                 "(playbooks/seal.yml)")
    return [str(k) for k in keys]


def seal(value, keys, zone=""):
    try:
        return S.seal(value, _keys(keys), zone or "?")
    except TrustzoneError as exc:
        raise AnsibleFilterError("trustzone.pki.seal: %s" % exc) from None


def reseal(token, keys, zone=""):
    try:
        return S.reseal(token, _keys(keys), zone or "?")
    except TrustzoneError as exc:
        raise AnsibleFilterError("trustzone.pki.reseal: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"seal": seal, "reseal": reseal}
