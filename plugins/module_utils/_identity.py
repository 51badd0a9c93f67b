# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Who may hold which name: the zone's one identity resolver.

``resolve_identities`` is the only place that turns inventory data into a host's names and
resolved profiles. Its input is what the operator controls - each host's inventory host and
group variables, the play's vars and ``-e`` extra vars, gathered by the caller on the
controller (plugins/plugin_utils/_inventory.py) - never facts, the fact cache, ``set_fact``,
registered results or anything a node returned. Pure: data in, data out, TrustzoneError
naming the host and the variable when the inventory is wrong.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._parse import (
    _as_list, _human, _ip_sort_key, is_dns_name, parse_duration, parse_mode, validate_name)

# The variables a host's identity comes from (besides inventory_hostname). Nothing else.
IDENTITY_VARS = ("trustzone_certs_profiles", "trustzone_certs_extra_names",
                 "trustzone_certs_dir", "trustzone_node_fqdn", "trustzone_node_addresses",
                 "ansible_host")

# What every profile is unless it says otherwise. ``server`` and ``client`` are the two
# identities of a node (Qlik's server certificate and QlikClient certificate).
PROFILE_DEFAULTS = {
    "key_type": "ec",
    "key_size": None,
    "key_curve": None,
    "lifetime": "365d",
    "renew_before": "30d",
    "key_usage": None,  # derived from key type and EKU when not given
    "extended_key_usage": ["server_auth"],
    "owner": "root",
    "group": "root",
    "mode": "0644",
    "key_mode": "0600",
    "regenerate_key": True,
}
DEFAULT_PROFILES = [
    {"name": "server", "extended_key_usage": ["server_auth"]},
    {"name": "client", "extended_key_usage": ["client_auth"]},
]
# The certs role's defaults (roles/certs/defaults/main.yml) for the variables above that it
# sets; a unit test pins them to that file. (trustzone_certs_dir defaults to
# /etc/trustzone/<zone> as there.)
ROLE_DEFAULTS = {
    "trustzone_certs_profiles": DEFAULT_PROFILES,
    "trustzone_certs_extra_names": [],
}
PROFILE_NAME_KEYS = ("name", "common_name", "common_name_outside_names", "dns", "ip",
                     "cert_path", "key_path", "chain_path")

# An inventory host name: DNS-style labels of letters, digits, '-' and '_' separated by dots,
# or an IP address. '_' is accepted because Ansible inventories use it widely (and its own
# inventory plugins make such names); it cannot traverse a path or split a word, and a name
# with '_' is never put into a certificate (it is not a DNS name).
_HOST_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")
HOST_NAME_FIX = ("rename the host in the inventory to letters, digits, '-', '_' and dots (a "
                 "host name or address), and point ansible_host at the machine if its "
                 "address differs")


def is_host_name(name):
    """True for a valid inventory host name: a host name (see above) or an IP address."""
    if not isinstance(name, str) or not name or len(name) > 253:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return all(_HOST_LABEL_RE.fullmatch(label) for label in name.split("."))


def check_host_name(host):
    if not is_host_name(host):
        raise TrustzoneError("inventory host %r is not a valid host name or address" % (host,),
                             fix=HOST_NAME_FIX)
    return host


def normalize_name(value):
    """``('dns'|'ip', text)`` for a DNS name or IP address, or None for anything else
    (wildcards included: the zone never signs one)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    try:
        return "ip", str(ipaddress.ip_address(text))
    except ValueError:
        pass
    text = text.rstrip(".")
    if is_dns_name(text):
        return "dns", text
    return None


# --------------------------------------------------------------------------- names

def node_names(hostname, fqdn=None, addresses=(), extra_names=(), ansible_host=None):
    """The names a host may hold, derived only from the inventory.

    Returns ``{'common_name', 'dns': [...], 'ip': [...]}``. Loopback, unspecified and
    ``localhost`` names are dropped (every host has them, so they identify nobody).
    Facts reported by the node itself are deliberately not an input.
    """
    check_host_name(hostname)
    dns, ips = [], []
    candidates = [("inventory_hostname", hostname), ("trustzone_node_fqdn", fqdn),
                  ("ansible_host", ansible_host)]
    candidates.extend(("trustzone_node_addresses", a) for a in _as_list(addresses))
    candidates.extend(("trustzone_certs_extra_names", n) for n in _as_list(extra_names))
    for variable, raw in candidates:
        if raw is None or str(raw).strip() == "":
            continue
        value = str(raw).strip().lower()
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            ip = None
        if ip is not None:
            if ip.is_loopback or ip.is_unspecified or ip.is_link_local:
                continue
            if str(ip) not in ips:
                ips.append(str(ip))
            continue
        value = value.rstrip(".")
        if value == "localhost" or value.startswith("localhost."):
            continue
        if not is_dns_name(value):
            if variable in ("inventory_hostname", "ansible_host"):
                continue  # inventory aliases need not be DNS names (e.g. web_1)
            raise TrustzoneError("%s: %r is neither a DNS name nor an IP address"
                                 % (variable, raw),
                                 fix="correct trustzone_node_fqdn, trustzone_node_addresses "
                                     "or trustzone_certs_extra_names in the inventory")
        if value not in dns:
            dns.append(value)
    wanted_cn = str(fqdn or "").lower().rstrip(".")
    if wanted_cn in dns:
        cn = wanted_cn
    elif str(hostname).lower() in dns:
        cn = str(hostname).lower()
    elif dns:
        cn = dns[0]
    elif ips:
        cn = ips[0]
    else:
        cn = str(hostname)  # no name a certificate can carry: refused when a profile needs one
    return {"common_name": cn, "dns": sorted(dns), "ip": sorted(ips, key=_ip_sort_key)}


def duplicate_names(names_by_host):
    """``{name: [hosts...]}`` for every DNS name or IP that more than one host claims."""
    owners = {}
    for host, names in names_by_host.items():
        for name in set(names.get("dns", [])) | set(names.get("ip", [])):
            owners.setdefault(name, []).append(host)
    return {name: sorted(hosts) for name, hosts in owners.items() if len(hosts) > 1}


# --------------------------------------------------------------------------- profiles

def resolve_profiles(profiles, zone, base_dir, names):
    """Complete and validate the profiles of one node. Returns a list of resolved profiles."""
    if profiles is None:
        profiles = DEFAULT_PROFILES
    if isinstance(profiles, dict):
        profiles = [dict(v or {}, name=k) for k, v in profiles.items()]
    if isinstance(profiles, str) or not isinstance(profiles, (list, tuple)):
        raise TrustzoneError("trustzone_certs_profiles must be a list of profiles, got %s"
                             % type(profiles).__name__,
                             fix="write it as a YAML list of mappings with a name each")
    seen = set()
    out = []
    for profile in profiles:
        resolved = resolve_profile(profile, zone, base_dir, names)
        if resolved["name"] in seen:
            raise TrustzoneError("profile %r is defined twice" % resolved["name"],
                                 fix="give every profile in trustzone_certs_profiles its own "
                                     "name")
        seen.add(resolved["name"])
        out.append(resolved)
    return out


CN_MAX = 64  # RFC 5280 ub-common-name


def _common_name(profile, name, names):
    """The profile's subject CN: a DNS name or address, never a wildcard, and one of the
    host's names - unless the profile sets ``common_name_outside_names: true`` (a label
    such as Qlik's ``QlikClient``, kept as written; resolve_identities still refuses it when
    it is another host's name)."""
    own = set(names["dns"]) | set(names["ip"])
    given = profile.get("common_name")
    if given is None or str(given).strip() == "":
        if names.get("common_name") not in own:
            raise TrustzoneError(
                "profile %r: the inventory gives this host no DNS name or address a "
                "certificate can carry" % name,
                fix="set trustzone_node_fqdn or trustzone_node_addresses for this host")
        if len(names["common_name"]) <= CN_MAX:
            return names["common_name"]
        short = [n for n in names["dns"] + names["ip"] if len(n) <= CN_MAX]
        if not short:  # the SANs still carry the long names; the CN cannot
            raise TrustzoneError(
                "profile %r: every name of this host is longer than the %d characters a "
                "common name may hold (RFC 5280), such as %s"
                % (name, CN_MAX, names["common_name"]),
                fix="set the profile's common_name to a name of at most %d characters "
                    "(common_name_outside_names: true if it is a label)" % CN_MAX)
        return short[0]
    parsed = normalize_name(given)
    if parsed is None:
        raise TrustzoneError("profile %r: common_name %r is not a DNS name or IP address "
                             "(wildcards are never signed)" % (name, given),
                             fix="set common_name to one of this host's names, or leave it "
                                 "out to use the host's FQDN")
    if len(str(given).strip()) > CN_MAX:
        raise TrustzoneError("profile %r: common_name %s is longer than the %d characters a "
                             "common name may hold (RFC 5280)" % (name, given, CN_MAX),
                             fix="use a shorter name; the certificate's SANs carry the "
                                 "long ones")
    outside = profile.get("common_name_outside_names", False)
    if not isinstance(outside, bool):
        raise TrustzoneError("profile %r: common_name_outside_names must be true or false, got "
                             "%r" % (name, outside), fix="write true or false")
    if parsed[1] in own:
        return parsed[1]
    if not outside:
        raise TrustzoneError("profile %r: common_name %s is not one of this host's names (%s)"
                             % (name, given, ",".join(names["dns"] + names["ip"]) or "none"),
                             fix="use one of them, add it to trustzone_certs_extra_names, or "
                                 "set common_name_outside_names: true in the profile")
    return str(given).strip()


def resolve_profile(profile, zone, base_dir, names):
    if not isinstance(profile, dict):
        raise TrustzoneError("a profile must be a mapping, got %r" % (profile,))
    unknown = set(profile) - set(PROFILE_DEFAULTS) - set(PROFILE_NAME_KEYS)
    name = validate_name(profile.get("name"), "profile name")
    if unknown:
        raise TrustzoneError("profile %r has unknown keys: %s" % (name, ", ".join(sorted(unknown))),
                             fix="see the certs role's argument spec for the profile keys")
    merged = dict(PROFILE_DEFAULTS)
    merged.update({k: v for k, v in profile.items() if v is not None})
    key = C.normalize_key_spec(merged["key_type"], merged["key_size"], merged["key_curve"])
    eku = sorted({C.canonical_eku(e) for e in _as_list(merged["extended_key_usage"])})
    if merged["key_usage"]:
        ku = sorted({C.canonical_key_usage(k) for k in _as_list(merged["key_usage"])})
    else:
        ku = ["digital_signature"]
        if key["type"] == "rsa" and "server_auth" in eku:
            ku.append("key_encipherment")
    if "key_cert_sign" in ku or "crl_sign" in ku:
        raise TrustzoneError("profile %r asks for a CA key usage" % name,
                             fix="leaf profiles may not carry key_cert_sign or crl_sign")
    base_dir = str(base_dir).rstrip("/")
    dns = _as_list(profile.get("dns")) if profile.get("dns") is not None else names["dns"]
    ips = _as_list(profile.get("ip")) if profile.get("ip") is not None else names["ip"]
    dns = sorted({str(n).strip().lower().rstrip(".") for n in dns})
    try:
        ips = sorted({str(ipaddress.ip_address(str(i).strip())) for i in ips}, key=_ip_sort_key)
    except ValueError as exc:
        raise TrustzoneError("profile %r: %s" % (name, exc),
                             fix="list IP addresses under ip and DNS names under dns") from None
    outside = sorted(set(dns) - set(names["dns"]) | set(ips) - set(names["ip"]))
    if outside:
        raise TrustzoneError("profile %r asks for names the inventory does not give this node: "
                             "%s" % (name, ", ".join(outside)),
                             fix="add them to trustzone_certs_extra_names for this host")
    resolved = {
        "name": name,
        "zone": validate_name(zone, "zone name"),
        "key": key,
        "lifetime": parse_duration(merged["lifetime"], "lifetime of profile %r" % name),
        "renew_before": parse_duration(merged["renew_before"],
                                       "renew_before of profile %r" % name),
        "key_usage": ku,
        "extended_key_usage": eku,
        "common_name": _common_name(profile, name, names),
        "dns": dns,
        "ip": ips,
        "cert_path": profile.get("cert_path") or "%s/%s.crt" % (base_dir, name),
        "key_path": profile.get("key_path") or "%s/%s.key" % (base_dir, name),
        "chain_path": profile.get("chain_path") or "%s/%s-fullchain.pem" % (base_dir, name),
        "owner": str(merged["owner"]),
        "group": str(merged["group"]),
        "mode": "%04o" % parse_mode(merged["mode"], "mode of profile %r" % name),
        "key_mode": "%04o" % parse_mode(merged["key_mode"], "key_mode of profile %r" % name),
        "regenerate_key": bool(merged["regenerate_key"]),
    }
    if resolved["renew_before"] >= resolved["lifetime"]:
        raise TrustzoneError("profile %r renews %s before expiry but lives only %s: every new "
                             "certificate would be renewed again at once"
                             % (name, _human(resolved["renew_before"]),
                                _human(resolved["lifetime"])),
                             fix="make renew_before shorter than lifetime (e.g. a third of it)")
    if int(resolved["key_mode"], 8) & 0o007:
        raise TrustzoneError("key_mode %s of profile %r lets every user read the key"
                             % (resolved["key_mode"], name),
                             fix="use 0600, or 0640 with a dedicated group")
    return resolved


# --------------------------------------------------------------------------- the resolver

def _host_identity(host, variables, zone, with_profiles):
    variables = variables or {}
    try:
        extra = variables.get("trustzone_certs_extra_names", ROLE_DEFAULTS[
            "trustzone_certs_extra_names"])
        if extra is not None and (isinstance(extra, (str, bytes, dict))
                                  or not isinstance(extra, (list, tuple))):
            raise TrustzoneError("trustzone_certs_extra_names must be a list, got %s"
                                 % type(extra).__name__,
                                 fix="write it as a YAML list, e.g. "
                                     "trustzone_certs_extra_names: [api.example.com]")
        addresses = variables.get("trustzone_node_addresses")
        if isinstance(addresses, dict):
            raise TrustzoneError("trustzone_node_addresses must be a list, got a mapping",
                                 fix="write it as a YAML list of addresses")
        names = node_names(host, fqdn=variables.get("trustzone_node_fqdn"),
                           addresses=addresses, extra_names=extra,
                           ansible_host=variables.get("ansible_host"))
        profiles = None
        if with_profiles:
            base_dir = _layout.node_dir(zone, variables.get("trustzone_certs_dir"))
            profiles = resolve_profiles(
                variables.get("trustzone_certs_profiles",
                              ROLE_DEFAULTS["trustzone_certs_profiles"]),
                zone, base_dir, names)
    except TrustzoneError as exc:
        label = host if is_host_name(host) else repr(host)  # one line, whatever the name
        raise TrustzoneError("%s: %s" % (label, exc.message), exc.path, fix=exc.fix) from None
    return {"names": names, "profiles": profiles}


def resolve_identities(inventory, zone, nodes, ca_hosts=()):
    """Every host's names and resolved profiles, from inventory data only.

    ``inventory[host]`` holds the host's inventory-only variables (``IDENTITY_VARS``: its
    inventory host and group variables, play vars and extra vars, templated by the caller);
    a variable it lacks takes the certs role's default (``ROLE_DEFAULTS``). ``nodes`` are
    the hosts whose profiles are resolved (group ``trustzone_nodes``), ``ca_hosts`` the
    zone's CA host(s), whose names count too. Every DNS name, address and common name must
    belong to one host of all those given: pass the whole zone (every node and CA host,
    whatever --limit says) to check the zone. Returns ``{host: {'names': {...},
    'profiles': [...] or None (a CA host that is no node)}}``; raises TrustzoneError naming
    the host(s) and the variable.
    """
    zone = validate_name(zone, "zone name")
    nodes = list(nodes or [])
    hosts = nodes + [h for h in (ca_hosts or []) if h not in nodes]
    node_set = set(nodes)
    out, claimed, labels = {}, {}, {}
    for host in hosts:
        out[host] = identity = _host_identity(host, inventory.get(host), zone, host in node_set)
        names = identity["names"]
        claimed[host] = {"dns": names["dns"], "ip": names["ip"]}
        for profile in identity["profiles"] or []:
            if profile["common_name"] not in set(names["dns"]) | set(names["ip"]):
                labels.setdefault(normalize_name(profile["common_name"])[1], set()).add(host)
    clashes = duplicate_names(claimed)
    # a common name outside the host's names must be no other host's name (several hosts
    # may share such a label, e.g. Qlik's QlikClient)
    owners = {}
    for host, names in claimed.items():
        for value in names["dns"] + names["ip"]:
            owners.setdefault(value, set()).add(host)
    for label, holders in labels.items():
        others = owners.get(label, set()) - holders
        if others:
            clashes[label] = sorted(others | holders)
    if clashes:
        text = "; ".join("%s claimed by %s" % (n, ", ".join(h)) for n, h in sorted(clashes.items()))
        raise TrustzoneError("zone %s: two hosts would hold the same name: %s" % (zone, text),
                             fix="give each host its own trustzone_node_fqdn, "
                                 "trustzone_node_addresses, trustzone_certs_extra_names and "
                                 "profile common_name (ansible_host counts too)")
    return out
