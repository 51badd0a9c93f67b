# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: zone_cache
short_description: The CA outputs this controller kept from a zone's last run
version_added: 0.1.0
description:
  - Returns the zone's roots, issuer and CRL as the P(trustzone.pki.zone_root#module) action
    kept them on this controller after the last run that was not in check mode, or an empty
    dict when there are none.
  - C(playbooks/zone_check.yml) checks every node against them while the CA host checks
    itself; a run whose CA gives other outputs takes the full path, so a stale or foreign
    cache only costs time (C(docs/performance.md)).
options:
  _terms:
    description: The zone's name.
    required: true
  ca_host:
    description: The zone's CA host (its inventory name).
    type: str
    required: true
author: trustzone.pki maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: The outputs kept from the zone's last run
  ansible.builtin.debug:
    msg: "{{ lookup('trustzone.pki.zone_cache', 'prod', ca_host='ca1') }}"
"""

RETURN = r"""
_raw:
  description: One dict with C(roots), C(issuer) and C(crl), or an empty dict.
  type: list
  elements: dict
"""

from ansible.plugins.lookup import LookupBase

from ansible_collections.trustzone.pki.plugins.module_utils import _zonecheck
from ansible_collections.trustzone.pki.plugins.plugin_utils._inventory import plain


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        ca_host = self.get_option("ca_host")
        found = (variables or {}).get("hostvars", {}).get(ca_host) or {}
        host_vars = {name: plain(found.get(name)) for name in _zonecheck.CACHE_VARS}
        out = []
        for zone in terms:
            path = _zonecheck.cache_path_of(str(zone), ca_host, host_vars)
            out.append(_zonecheck.read_cache(path) or {})
        return out
