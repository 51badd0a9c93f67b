# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy role's routes, zones and ACME certificates, resolved by module_utils/_proxy.py."""

from __future__ import annotations

# Documented in the sidecar file proxy_routes.yml.

from ansible.errors import AnsibleFilterError

from ansible_collections.trustzone.pki.plugins.module_utils import _proxy as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def proxy_routes(routes, zones=None, default_zone=None, acme=True, acme_dir="/etc/trustzone-acme",
                 certificates=None, read_timeout="3600s", host=""):
    try:
        resolved_zones = P.resolve_zones(zones, default_zone or {})
        return P.resolve(routes, resolved_zones, bool(acme), str(acme_dir).rstrip("/"),
                         certificates or [], read_timeout)
    except TrustzoneError as exc:
        raise AnsibleFilterError("%s%s" % ("host %s: " % host if host else "", exc)) from None


class FilterModule:
    def filters(self):
        return {"proxy_routes": proxy_routes}
