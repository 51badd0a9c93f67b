# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Controller-side checks and preparation for the node and zone_root action plugins.

What used to be a dozen assert/set_fact tasks per host: each a pure function of the task's
arguments and the host's inventory variables, raising TrustzoneError with one line that
names the host, the variable and the fix. No Ansible I/O here.
"""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

ZONE_RE_TEXT = "1-32 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
MIN_PASSPHRASE = _layout.MIN_PASSPHRASE


def check_zone(host, zone):
    """The zone name, validated (``trustzone_name``)."""
    if not isinstance(zone, str) or not zone:
        raise TrustzoneError("%s: trustzone_name is not set" % host,
                             fix="set trustzone_name (%s) in the inventory's group_vars"
                                 % ZONE_RE_TEXT)
    try:
        return _parse.validate_name(zone, "zone name")
    except TrustzoneError:
        raise TrustzoneError("%s: trustzone_name %r is not a valid zone name" % (host, zone),
                             fix="use %s" % ZONE_RE_TEXT) from None


def check_ca_hosts(host, zone, ca_hosts):
    """Group ``trustzone_ca`` must hold exactly one host; returns it."""
    ca_hosts = list(ca_hosts or [])
    if len(ca_hosts) != 1:
        raise TrustzoneError(
            "%s: zone %s: inventory group trustzone_ca must hold exactly one host, it holds %d "
            "(%s)" % (host, zone, len(ca_hosts), ", ".join(ca_hosts) or "none"),
            fix="put the one host that keeps the zone's root key in trustzone_ca; use "
                "separate inventories for separate zones")
    return ca_hosts[0]


def check_roots(host, zone, roots, ca_host=None):
    """The zone's roots must be known (the ca role ran on the CA host earlier in the run)."""
    if isinstance(roots, str) or not isinstance(roots, (list, tuple)) or not roots:
        raise TrustzoneError(
            "%s: no roots for zone %s: the zone's CA state is unknown" % (host, zone),
            fix="run the trustzone.pki.ca role on %s earlier in the same playbook "
                "(playbooks/site.yml does), or set trustzone_trust_roots to the zone's root "
                "certificates (PEM)" % (ca_host or "the CA host"))
    return list(roots)


def check_list(host, value, variable):
    """``value`` (the variable ``variable``) must be a list, not a string or mapping."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
        kind = ("a string" if isinstance(value, (str, bytes)) else
                "a mapping" if isinstance(value, dict) else type(value).__name__)
        raise TrustzoneError("%s: %s must be a list, got %s" % (host, variable, kind),
                             fix="write it as a YAML list, e.g. %s: [nginx]" % variable)
    return list(value)


def check_passphrase(host, passphrase, variable="trustzone_ca_passphrase"):
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE:
        raise TrustzoneError(
            "%s: %s must be set, at least %d characters" % (host, variable, MIN_PASSPHRASE),
            fix="keep it in Ansible Vault: ansible-vault encrypt_string --name %s" % variable)
    return passphrase


def install_step(host, signed, zone):
    """What the install step does for ``host`` given the sign task's result: ``('install',
    certificates)``, ``('skip', None)``, or a refusal raised as TrustzoneError."""
    signed = signed if isinstance(signed, dict) else {}
    refused = (signed.get("refused") or {}).get(host)
    if refused:
        raise TrustzoneError(
            "The CA of zone %s refused to sign for %s: %s"
            % (zone, host, "; ".join(str(r) for r in refused)),
            fix="fix the node's names or profiles in the inventory, or investigate the node "
                "if it asked for names it was never given")
    certificates = (signed.get("certificates") or {}).get(host)
    if certificates:
        return "install", certificates
    return "skip", None
