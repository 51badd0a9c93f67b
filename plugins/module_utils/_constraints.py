# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""What the zone's signing CA can vouch for: the name constraints of the intermediate.

The permitted subtrees are a pure function of the zone's names (the identity resolver's
output: inventory only, never a node's word) and the operator's own subtrees:

- a DNS name of three labels or more permits the domain it falls under
  (``node1.lab.example.com`` -> ``lab.example.com``); a name of two labels permits itself
  (``example.com``, never the top-level domain ``com``); a single-label machine name permits
  itself exactly (``qlikserver1``; Qlik addresses servers by machine name); a wildcard
  ``*.apps.example.com`` permits ``apps.example.com``. A subtree inside another is dropped.
- every address permits itself (/32 or /128); adjacent ones are merged.
- ``permitted`` adds subtrees: a domain, a single label, an address or a network (CIDR).
- ``pinned`` makes ``permitted`` the whole list: nothing is derived, and an inventory name
  outside it is refused, naming the host and the variable.

An address family (IPv4, IPv6) the zone has no subtree for is excluded outright, and a zone
without DNS names permits only the reserved ``invalid`` domain (RFC 6761): a name type with
no permitted subtree would otherwise be unconstrained (RFC 5280 4.2.1.10).
"""

from __future__ import annotations

import ipaddress

try:
    from cryptography import x509
except ImportError:  # pragma: no cover - reported by the modules via _crypto.HAS_CRYPTOGRAPHY
    pass

from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

PERMITTED_VAR = "trustzone_ca_name_constraints_permitted"
PINNED_VAR = "trustzone_ca_name_constraints_pinned"
NO_DNS = "invalid"  # RFC 6761: never resolves; permits no real name
ALL_V4 = ipaddress.ip_network("0.0.0.0/0")
ALL_V6 = ipaddress.ip_network("::/0")


def parse_subtree(value, variable=PERMITTED_VAR):
    """One operator subtree: ``('dns', 'example.com')`` or ``('ip', IPv4Network(...))``."""
    text = str(value).strip().lower()
    try:
        return "ip", ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "/" in text or _looks_numeric(text):
            raise TrustzoneError("%s: %r is not an address or a network (%s)"
                                 % (variable, value, exc),
                                 fix="write a network with its host bits zero, such as "
                                     "10.20.0.0/16, or one address") from None
    domain = text[1:] if text.startswith(".") else text
    if not _parse.is_dns_name(domain) or domain.startswith("*"):
        raise TrustzoneError("%s: %r is neither a DNS domain nor an address or network"
                             % (variable, value),
                             fix="write a domain such as lab.example.com, a machine name, an "
                                 "address or a network such as 10.20.0.0/16")
    return "dns", domain


def _looks_numeric(text):
    return all(c.isdigit() or c in ".:" for c in text.replace("/", ""))


def subtree_of(name):
    """The subtree a zone name falls under (see the module docstring)."""
    kind, value = _kind(name)
    if kind == "ip":
        return "ip", ipaddress.ip_network(value)
    labels = value.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    elif len(labels) >= 3:
        labels = labels[1:]
    return "dns", ".".join(labels)


def _kind(name):
    text = str(name).strip().lower().rstrip(".")
    try:
        return "ip", str(ipaddress.ip_address(text))
    except ValueError:
        return "dns", text


def covers(subtree, name):
    """Whether ``subtree`` (a parsed subtree) permits ``name`` (RFC 5280 matching: a DNS
    subtree matches itself and every name below it; a network every address in it)."""
    kind, value = _kind(name)
    if kind != subtree[0]:
        return False
    if kind == "ip":
        address = ipaddress.ip_address(value)
        return address.version == subtree[1].version and address in subtree[1]
    if value.startswith("*."):
        value = value[2:]
    return value == subtree[1] or value.endswith("." + subtree[1])


def _collapse(subtrees):
    dns = sorted({v for k, v in subtrees if k == "dns"}, key=lambda d: (d.count("."), d))
    kept = []
    for domain in dns:
        if not any(covers(("dns", parent), domain) for parent in kept):
            kept.append(domain)
    nets = [v for k, v in subtrees if k == "ip"]
    v4 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 4))
    v6 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 6))
    return sorted(kept), v4, v6


def zone_names(identities):
    """``{host: [names]}``: every DNS name, address and DNS-like common name the inventory
    gives each host of the zone (the identity resolver's output)."""
    out = {}
    for host, identity in identities.items():
        names = list(identity["names"]["dns"]) + list(identity["names"]["ip"])
        for profile in identity.get("profiles") or []:
            names.extend(profile["dns"])
            names.extend(profile["ip"])
            cn = str(profile["common_name"]).lower()
            if "." in cn and (_parse.is_dns_name(cn) or _kind(cn)[0] == "ip"):
                names.append(cn)
        out[host] = sorted(set(names))
    return out


def plan(names_by_host, permitted=(), pinned=False):
    """The zone's constraints: ``{'dns': [...], 'ip': [...], 'excluded_ip': [...]}`` (text,
    sorted), from ``{host: [names]}`` and the operator's subtrees. Raises TrustzoneError
    naming the host and the variable when a pinned list leaves a name out."""
    if permitted is None:
        permitted = []
    if isinstance(permitted, (str, bytes, dict)) or not isinstance(permitted, (list, tuple)):
        raise TrustzoneError("%s must be a list, got %s"
                             % (PERMITTED_VAR, type(permitted).__name__),
                             fix="write it as a YAML list, e.g. [lab.example.com, 10.0.0.0/8]")
    given = [parse_subtree(p) for p in permitted]
    if pinned and not given:
        raise TrustzoneError("%s is true but %s is empty: the CA could vouch for no name"
                             % (PINNED_VAR, PERMITTED_VAR),
                             fix="list the zone's domains and networks in %s" % PERMITTED_VAR)
    subtrees = list(given)
    for host in sorted(names_by_host):
        for name in names_by_host[host]:
            if pinned:
                if not any(covers(s, name) for s in given):
                    raise TrustzoneError(
                        "%s: %s is outside the pinned name constraints (%s)"
                        % (host, name, ", ".join(str(subtree[1]) for subtree in given)),
                        fix="add a subtree covering it to %s, or set %s: false"
                            % (PERMITTED_VAR, PINNED_VAR))
            else:
                subtrees.append(subtree_of(name))
    dns, v4, v6 = _collapse(subtrees)
    excluded = [str(n) for n, have in ((ALL_V4, v4), (ALL_V6, v6)) if not have]
    return _sorted({"dns": dns or [NO_DNS], "ip": [str(n) for n in v4 + v6],
                    "excluded_ip": excluded})


def extension(constraints):
    """The ``NameConstraints`` extension (to be marked critical) for ``plan``'s result."""
    permitted = [x509.DNSName(d) for d in constraints["dns"]]
    permitted += [x509.IPAddress(ipaddress.ip_network(n)) for n in constraints["ip"]]
    excluded = [x509.IPAddress(ipaddress.ip_network(n)) for n in constraints["excluded_ip"]]
    return x509.NameConstraints(permitted_subtrees=permitted or None,
                                excluded_subtrees=excluded or None)


def of_certificate(cert):
    """``plan``-shaped constraints a CA certificate carries, or None."""
    try:
        value = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    out = {"dns": [], "ip": [], "excluded_ip": []}
    for name in value.permitted_subtrees or []:
        if isinstance(name, x509.DNSName):
            out["dns"].append(name.value)
        elif isinstance(name, x509.IPAddress):
            out["ip"].append(str(name.value))
    for name in value.excluded_subtrees or []:
        if isinstance(name, x509.IPAddress):
            out["excluded_ip"].append(str(name.value))
    return _sorted(out)


def _sorted(constraints):
    def net_key(text):
        net = ipaddress.ip_network(text)
        return (net.version, int(net.network_address), net.prefixlen)
    return {"dns": sorted(constraints["dns"]),
            "ip": sorted(constraints["ip"], key=net_key),
            "excluded_ip": sorted(constraints["excluded_ip"], key=net_key)}


def difference(before, after):
    """One line of what changes between two constraint sets (None: none at all), for the
    CA play's output and ``--diff``."""
    if before == after:
        return None
    if before is None:
        return "name constraints added: " + describe(after)
    if after is None:
        return "name constraints removed"
    old = set(before["dns"] + before["ip"])
    new = set(after["dns"] + after["ip"])
    parts = ["+" + n for n in sorted(new - old)] + ["-" + n for n in sorted(old - new)]
    return "name constraints changed: " + (" ".join(parts) or "excluded ranges")


def describe(constraints):
    text = ", ".join(constraints["dns"] + constraints["ip"])
    if constraints["excluded_ip"]:
        text += " (excluded %s)" % ", ".join(constraints["excluded_ip"])
    return text
