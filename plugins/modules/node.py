#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node
short_description: Keep a node's trust anchors and zone identities right, in one call
version_added: 0.1.0
description:
  - B(Inspect) (no O(certificates) given) - writes the zone's roots bundle, makes the OS trust
    store hold exactly the zone's current roots (running the update command only when an anchor
    changed), and checks every profile's key and certificate. For each identity that must be
    (re)issued it reports why and, only then, makes a private key on the node (kept beside the
    live key as C(<key>.next-<tag>) until its certificate arrives) and returns a CSR. The key never
    leaves the node.
  - B(Install) (O(certificates) given) - checks each signed certificate against its pending key
    and the zone roots, then switches key, certificate and full chain as one unit, keeping the
    previous generation as C(.prev). New chain and certificate are first staged (fsynced) as
    C(<file>.new-<tag>) beside the live files, then the pending key, the chain and the
    certificate are renamed into place. Every run of the module first finishes a switch that
    a crash interrupted after the certificate was staged (or removes what was staged before),
    so after a crash the node holds the old identity or the new one, complete.
  - Pending keys are named C(<key>.next-<tag>), the tag being the first 16 hex digits of the
    SHA-256 of the public key, so that overlapping runs never overwrite each other's key;
    install picks the one that matches the certificate.
  - Everything that would stop an install - a link or non-regular file where the key,
    certificate, chain or their C(.prev) go, an unknown owner or group, a missing or
    unwritable directory - stops the inspection with one line, before a CSR goes to the CA.
  - A renewal whose reasons include C(revoked) always makes a new key, whatever the
    profile's C(regenerate_key) says.
  - A run with nothing to do changes nothing, in check mode and for real.
  - An action plugin of the same name runs first on the controller. Given O(inventory_profiles)
    it resolves the node's profiles from the inventory (the node's names come from
    C(inventory_hostname), C(trustzone_node_fqdn), C(trustzone_node_addresses), C(ansible_host)
    and O(extra_names), never from the node) and returns them as RV(profiles); it checks its
    inputs (O(ca_hosts), O(reload_services), O(reload_commands), the roots) and stops a host
    with one line naming the host, the variable and the fix; and given O(signed) it installs
    that host's certificates from the P(trustzone.pki.sign#module) result, fails the host
    the CA refused, and does nothing for a host with nothing signed.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.zone.node_dir, trustzone.pki.action.role_spec]
options:
  roots:
    description: PEM certificates of the zone's current roots.
    type: list
    elements: str
    required: true
  issuers:
    description:
      - PEM certificates of the roots that sign now. A certificate that does not chain to one
        of them is renewed (reason C(issuer)) - during a root rotation's C(use) phase this
        moves every leaf to the new root while both roots stay trusted. Defaults to O(roots).
    type: list
    elements: str
  crl:
    description:
      - The zone's CRLs (PEM). Kept as C(<dir>/crl.pem) for services (nginx C(ssl_crl),
        C(openssl -CRLfile)); an identity whose serial is on it is renewed (reason
        C(revoked)).
      - Services read a CRL when they (re)load; the result's RV(crl_changed) says when the
        content of C(crl.pem) changed, and the certs and trust roles then reload the
        services that read it.
    type: str
  trust:
    description:
      - How to install the roots into the OS trust store. Omit to leave the OS store alone.
      - Every setting left out (or null) comes from the layout of the node's OS family, which
        the module works out on the node from C(/etc/os-release) (C(ID), then C(ID_LIKE)) or,
        failing that, from whether C(update-ca-certificates) or C(update-ca-trust) is
        installed - no fact gathering needed. Debian family -
        C(/usr/local/share/ca-certificates), C(.crt), C(update-ca-certificates) (C(--fresh)
        after a removal); RHEL family - C(/etc/pki/ca-trust/source/anchors), C(.pem),
        C(update-ca-trust extract). An empty dict means "the OS store, detected".
    type: dict
    suboptions:
      anchor_dir:
        description: Directory of local trust anchors.
        type: path
      suffix:
        description: File name suffix the update command picks up.
        type: str
      update_command:
        description: Command (argv list) that rebuilds the store after an anchor was added.
        type: list
        elements: str
      fresh_command:
        description: Command (argv list) that rebuilds the store after an anchor was removed.
        type: list
        elements: str
  profiles:
    description:
      - Resolved profiles (output of the P(trustzone.pki.profiles#filter) filter).
    type: list
    elements: dict
    default: []
  certificates:
    description:
      - Signed certificates to install, keyed by profile name; each has C(certificate) (PEM)
        and C(chain) (list of PEM intermediates).
    type: dict
  rollback:
    description:
      - Profiles whose certificate, full chain and (when it changed) key go back to the
        previous generation, kept as C(.prev) on every renewal. The current files become the
        C(.prev) ones, so rolling back twice rolls forward again. Refused when the previous
        certificate expired, is on the zone's CRL (O(crl), else the C(<dir>/crl.pem) the node
        keeps) or no key matches it.
    type: list
    elements: str
    default: []
  inventory_profiles:
    description:
      - Given at all, it asks the action plugin to resolve this host's profiles and names
        from the inventory and pass them on as O(profiles). The value itself is not used;
        the action plugin reads C(trustzone_certs_profiles), C(trustzone_node_fqdn),
        C(trustzone_node_addresses), C(trustzone_certs_extra_names) and C(ansible_host) from
        the inventory's host and group variables, the play's vars and extra vars only -
        never from facts, the fact cache, C(set_fact) or registered results, which a node
        can forge (see C(docs/identity.md)). Exclusive with O(profiles).
    type: raw
  extra_names:
    description:
      - Kept for compatibility; ignored like the value of O(inventory_profiles)
        (C(trustzone_certs_extra_names) is read from the inventory).
    type: list
    elements: str
    default: []
  resolve_only:
    description:
      - Return this host's resolved O(profiles) (as RV(profiles)) without contacting the
        node; used by the certs role's C(tasks_from=resolve).
    type: bool
    default: false
  ca_hosts:
    description:
      - The hosts of group C(trustzone_ca). When given, the action plugin refuses to run unless
        there is exactly one.
    type: list
    elements: str
  reload_services:
    description: Checked to be a list (C(trustzone_certs_reload_services)); not used otherwise.
    type: raw
  reload_commands:
    description: Checked to be a list (C(trustzone_certs_reload_commands)); not used otherwise.
    type: raw
  fast_path:
    description:
      - Answer from the node's stamp when it stands (C(<dir>/.trustzone-stamp.json), written
        by a run that found everything right) without loading cryptography. The stamp stands
        only while this task's parameters, the trust layout, the collection's code and every
        file the full check reads (type, mode, owner, size, mtime, ctime, inode and SHA-256)
        are the same, and no identity has reached its renew time; otherwise the full check
        runs. V(false) always runs the full check (and removes no stamp).
    type: bool
    default: true
  stamp_in_check_mode:
    description:
      - In check mode, still leave (or remove) the stamp of O(fast_path) - the module's own
        record of what it saw, never a managed file. C(playbooks/zone_check.yml) sets it for
        the check round that lets a run with nothing to do end without writing anything
        else; an operator's C(--check) leaves it false.
    type: bool
    default: false
  metrics_dir:
    description:
      - Directory of node_exporter's textfile collector. When set, the module writes the
        node's certificates, CRL copy and rotation phase as Prometheus metrics to
        C(<metrics_dir>/trustzone_<zone>.prom) (0644, atomically, and only when the content
        differs; never counted as a change), also when the answer comes from the stamp. See
        C(docs/metrics.md). The certs role sets it from C(trustzone_metrics_textfile_dir).
      - A directory that does not exist or is not writable stops the run before anything is
        written, unless O(metrics_dir_optional) is set.
    type: path
  metrics_dir_optional:
    description:
      - When O(metrics_dir) does not exist, write nothing instead of failing (the certs
        role's default directory, C(/var/lib/prometheus/node-exporter), on a node without
        node_exporter).
    type: bool
    default: false
  code:
    description:
      - Set by the action plugin on the controller, not by a task - the digest of the
        collection's node code; a stamp written by other code does not stand.
    type: str
  signed:
    description:
      - The registered result of P(trustzone.pki.sign#module). Installs this host's entry of
        its C(certificates) (as O(certificates)); fails when the CA refused this host; does
        nothing, without contacting the node, when nothing was signed for it.
    type: dict
attributes:
  action:
    description: An action plugin on the controller resolves profiles, checks inputs and picks this host's signed certificates.
    support: full
  check_mode:
    description: In check mode nothing is written and no key is made; the result says what would change and why.
    support: full
  diff_mode:
    description: With C(--diff), lists the files that change and each identity it requests, with the reasons.
    support: full
requirements:
  - cryptography >= 3.4 on the node
"""

EXAMPLES = r"""
- name: Trust the zone and inspect the node's identities (profiles resolved from the inventory)
  trustzone.pki.node:
    zone: prod
    roots: "{{ trustzone_ca_root.roots }}"
    inventory_profiles: [{name: server, extended_key_usage: [server_auth]}]
    trust: {}
  register: inspected

- name: Inspect the node with profiles resolved beforehand
  trustzone.pki.node:
    zone: prod
    roots: "{{ trustzone_ca_root.roots }}"
    profiles: "{{ trustzone_certs_profiles | trustzone.pki.profiles('prod', '/etc/trustzone/prod',
                  inventory_hostname | trustzone.pki.node_names(hostvars[inventory_hostname])) }}"
  register: inspected
"""

RETURN = r"""
profiles:
  description: The profiles resolved on the controller from the inventory (set by the action plugin).
  returned: always
  type: list
  elements: dict
checked_against:
  description:
    - SHA-256 over the O(roots), O(issuers) and O(crl) this call carried, set by the action
      plugin on the controller from the arguments it sent (never from the node).
      C(playbooks/zone_check.yml) ends a run only when it equals the CA's current outputs.
  returned: when the node was contacted
  type: str
requests:
  description: CSRs to sign, keyed by profile (CSR is null in check mode).
  returned: inspect
  type: dict
identities:
  description: Per profile, C(state) (V(valid) or V(renew)), C(reasons), and facts about the
    current certificate.
  returned: inspect
  type: dict
trust:
  description: Anchors added and removed, and whether the store was rebuilt.
  returned: inspect
  type: dict
rolled_back:
  description: Profiles rolled back to their previous generation.
  returned: rollback
  type: list
  elements: str
restored:
  description:
    - Per profile rolled back, the SHA-256 fingerprint of the certificate put back. With
      O(roots) given, a previous certificate that no longer chains to one of them (its root
      was retired) is refused, so that a rollback never undoes a root rotation.
  returned: rollback
  type: dict
installed:
  description:
    - In install mode, the profiles whose certificates were installed (a list).
    - In inspect mode (a dict), for every profile whose certificate file exists and parses,
      the profile's name mapped to C(certificate) (PEM) and C(fingerprint) (SHA-256 of the
      DER, lower-case hex). It is what the node says it holds - untrusted data for the
      controller.
  returned: install, inspect
  type: raw
crl_changed:
  description:
    - Whether the content of C(<dir>/crl.pem) changed (in check mode, would change). Its
      mode or owner alone being put right is not a change. The certs and trust roles reload
      the services that read the CRL (C(trustzone_certs_reload_services) and
      C(_reload_commands)) on the nodes where it is true, and only there.
  returned: always
  type: bool
metrics:
  description:
    - What the metrics file says (C(docs/metrics.md)) - C(certificates) (per profile
      C(profile), C(path), C(reasons) and, with a certificate, C(not_before), C(not_after),
      C(valid), C(chain_valid), C(key_match)), C(crls) (C(issuer), C(path), C(next_update))
      and C(phase).
  returned: inspect, and install or rollback when O(metrics_dir) is set
  type: dict
files:
  description: Files written or removed.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _metrics
from ansible_collections.trustzone.pki.plugins.module_utils import _stamp
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def run(module):
    """Everything is in module_utils/_node.py (the run) and _backend.py (one identity);
    _stamp.py keeps the stamp of a run that found everything right."""
    # Imported here: a run answered from the stamp never loads cryptography.
    from ansible_collections.trustzone.pki.plugins.module_utils import _node

    def full():
        return _node.run(module.params, module.check_mode, module._diff, module.run_command,
                         module.get_bin_path)

    result = _stamp.run_full(module.params, module.check_mode, module.get_bin_path, full)
    publish_metrics(module.params, result, module.check_mode)
    return result


def metrics_dir(params):
    """The directory the metrics file goes in, or None (module_utils/_metrics.target):
    checked before anything else is done, so a bad one stops the run with nothing written."""
    return _metrics.target(params.get("metrics_dir"), params.get("metrics_dir_optional"))


def answer(params, check, diff, get_bin_path, now=None):
    """The stamp's answer (module_utils/_stamp.py) with the metrics file written from it, or
    None when the full run must run. A bad metrics directory raises first."""
    metrics_dir(params)
    fast = _stamp.answer(params, diff, get_bin_path, now)
    if fast is not None:
        publish_metrics(params, fast, check)
    return fast


def publish_metrics(params, result, check):
    """Write the node's metrics file when it differs (never a change of the run). In check
    mode only for site.yml's check round (O(stamp_in_check_mode)), which on a settled run is
    the run's only node call."""
    if check and not params.get("stamp_in_check_mode"):
        return
    directory = metrics_dir(params)
    if directory is None or result.get("metrics") is None:
        return
    zone = _args.zone_and_node_dir(params)[0]
    _metrics.publish(directory, _metrics.node_file(zone),
                     _metrics.node_text(zone, result["metrics"]))


def full_run(module):
    from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module
    run_module(module, run)


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_NODE, _args.ROLE_SPEC,
        roots=dict(type="list", elements="str", required=True),
        issuers=dict(type="list", elements="str"),
        crl=dict(type="str"),
        trust=dict(type="dict", options=dict(
            anchor_dir=dict(type="path"),
            suffix=dict(type="str"),
            update_command=dict(type="list", elements="str"),
            fresh_command=dict(type="list", elements="str"),
        )),
        profiles=dict(type="list", elements="dict", default=[]),
        certificates=dict(type="dict", no_log=False),
        rollback=dict(type="list", elements="str", default=[]),
        # Consumed by the action plugin on the controller (never reach the node); listed
        # so that the module's documentation and argument spec agree.
        inventory_profiles=dict(type="raw"),
        extra_names=dict(type="list", elements="str", default=[]),
        ca_hosts=dict(type="list", elements="str"),
        reload_services=dict(type="raw"),
        reload_commands=dict(type="raw"),
        signed=dict(type="dict"),
        resolve_only=dict(type="bool", default=False),
        fast_path=dict(type="bool", default=True),
        stamp_in_check_mode=dict(type="bool", default=False),
        code=dict(type="str"),
        metrics_dir=dict(type="path"),
        metrics_dir_optional=dict(type="bool", default=False),
    ))
    fast = None
    try:
        fast = answer(module.params, module.check_mode, module._diff, module.get_bin_path)
    except TrustzoneError as exc:
        module.fail_json(msg=str(exc))
    if fast is not None:
        module.exit_json(**fast)
    full_run(module)


if __name__ == "__main__":
    main()
