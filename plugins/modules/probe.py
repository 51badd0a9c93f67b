#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: probe
short_description: Prove a node of a trust zone still serves, by a real mutual-TLS handshake
version_added: 0.1.0
description:
  - Run on a prober (a node of the zone, through C(delegate_to)); connects to each endpoint
    of the probed node, makes a TLS handshake with the prober's zone client certificate,
    verifies the server's certificate against the zone's roots and the endpoint's DNS name,
    checks that the server keeps the connection after it saw the client certificate, and,
    where O(expect) names the profile's new certificate, that the server presents exactly it.
  - Bounded by O(timeout) per attempt and O(retries) more attempts, O(delay) seconds apart.
  - Never fails because a probe failed - RV(ok) and RV(lines) say so; the certs role decides
    what to roll back (C(docs/rollout.md)). Fails, with one line, only on bad input.
  - Reaches only the probed node's own names and addresses (O(allowed)).
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.attributes.info, trustzone.pki.attributes,
                                 trustzone.pki.probe]
options:
  endpoints:
    description:
      - The probed node's endpoints (C(trustzone_rollout_endpoints)) - each a port, a
        C(host:port) string, or a dict with C(port) and optionally C(host), C(server_name)
        and C(profile) (whose certificate the endpoint presents, default V(server)).
    type: list
    elements: raw
    required: true
  default_host:
    description: Where an endpoint without a host connects (the node's first DNS name).
    type: str
    required: true
  allowed:
    description:
      - Every name and address the zone knows the probed node by. An endpoint whose host or
        server name is not one of them is refused.
    type: list
    elements: str
    required: true
  health_url:
    description:
      - An https:// URL on the probed node (one of O(allowed)) that must answer 2xx to a GET
        with the prober's zone client certificate, after the handshakes passed.
    type: str
  expect:
    description:
      - Per profile, the SHA-256 fingerprint (hex) of the certificate the endpoints of that
        profile must present. Profiles not named accept any certificate that verifies.
    type: dict
    default: {}
  cafile:
    description: The zone's roots on the prober (its C(roots.pem)).
    type: path
    required: true
  client_cert:
    description: The prober's zone client certificate with its chain.
    type: path
    required: true
  client_key:
    description: The prober's client key.
    type: path
    required: true
  # timeout, retries, delay: described in trustzone.pki.probe; the defaults are this module's
  timeout:
    default: 5
  retries:
    default: 3
  delay:
    default: 2
notes:
  - The prober is a node, and nodes are not trusted - a lying prober can make a node roll
    back (a denial of service the operator sees in the run's output), never make the CA sign.
"""

EXAMPLES = r"""
- name: Probe node1's endpoints from node2
  trustzone.pki.probe:
    endpoints: [8443, {port: 9443, profile: server}]
    default_host: node1.example.test
    allowed: [node1.example.test]
    expect:
      server: "{{ signed.certificates['node1'].server.fingerprint }}"
    cafile: /etc/trustzone/prod/roots.pem
    client_cert: /etc/trustzone/prod/client-fullchain.pem
    client_key: /etc/trustzone/prod/client.key
  delegate_to: node2
  register: probe
"""

RETURN = r"""
ok:
  description: Whether every endpoint passed.
  returned: always
  type: bool
lines:
  description: One line per failed endpoint, naming it and what the prober saw.
  returned: always
  type: list
  elements: str
probes:
  description:
    - Per endpoint, C(endpoint) (host:port), C(ok), C(line), C(attempts), C(connected),
      C(handshake), C(accepted) and C(fingerprint) (SHA-256 of the certificate presented).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _probe
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def run(params, look=_probe.observe, fetch=_probe.fetch):
    found = _probe.endpoints(params["endpoints"], params["default_host"],
                             allowed=set(params["allowed"]))
    url = params.get("health_url")
    if url:
        url = _probe.health_url(url, set(params["allowed"]))
    probes = []
    for endpoint in found:
        probes.append(_probe.probe(
            endpoint, params["cafile"], params["client_cert"], params["client_key"],
            timeout=params["timeout"], retries=params["retries"], delay=params["delay"],
            expect_fingerprint=(params["expect"] or {}).get(endpoint["profile"]), look=look))
    if url and all(p["ok"] for p in probes):
        probes.append(_probe.probe(
            {"host": url, "port": 0}, params["cafile"], params["client_cert"],
            params["client_key"], timeout=params["timeout"], retries=params["retries"],
            delay=params["delay"], look=lambda _e, ca, cert, key, t: fetch(url, ca, cert, key, t)))
    return {"changed": False, "ok": all(p["ok"] for p in probes),
            "lines": [p["line"] for p in probes if not p["ok"]], "probes": probes}


def main():
    module = AnsibleModule(**_args.module_args(
        _args.probe_bounds(timeout=5, retries=3, delay=2),
        endpoints=dict(type="list", elements="raw", required=True),
        default_host=dict(type="str", required=True),
        allowed=dict(type="list", elements="str", required=True),
        health_url=dict(type="str"),
        expect=dict(type="dict", default={}),
        cafile=dict(type="path", required=True),
        client_cert=dict(type="path", required=True),
        client_key=dict(type="path", required=True, no_log=False),
    ))
    try:
        module.exit_json(**run(module.params))
    except TrustzoneError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
