#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxy_probe
short_description: Prove the proxy's front door serves what was just installed, or go back to what last passed
version_added: 0.1.0
description:
  - Used by the P(trustzone.pki.proxy#role) role after it reloaded nginx. Runs on the proxy.
  - V(probed) makes one real TLS handshake per target (each distinct server name of the
    routes) to the proxy's listen address with that name as SNI and no client certificate,
    and compares the certificate served with the target's certificate file (SHA-256 of the
    DER of its first certificate). Bounded by O(timeout) per attempt and O(retries) more
    attempts, O(delay) seconds apart. Never fails because a probe failed - RV(ok) and
    RV(lines) say so. With O(keep) and every target passing, it keeps the routes'
    certificates and keys and O(configs) in O(dir) as the served generation (atomic writes,
    the manifest written last, every copy 0600).
  - V(restored) writes the served generation kept in O(dir) back over the live files, with
    their recorded owner and mode, and fails with one line when none is kept.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.attributes, trustzone.pki.probe]
attributes:
  check_mode:
    description: Probes as usual; nothing is kept or written back, the result says what would be.
    support: full
requirements:
  - cryptography on the host
options:
  state:
    description: V(probed) probes (and keeps a passing generation); V(restored) puts it back.
    type: str
    choices: [probed, restored]
    default: probed
  routes:
    description:
      - With V(probed), the proxy role's resolved routes (C(name), C(server_names),
        C(ssl_certificate), C(ssl_certificate_key), C(acme)); one target per distinct server
        name, served with the route's C(ssl_certificate).
    type: list
    elements: dict
    default: []
  address:
    description: With V(probed), the address the probes connect to.
    type: str
    default: 127.0.0.1
  port:
    description: With V(probed), the HTTPS port.
    type: int
    default: 443
  configs:
    description:
      - With O(keep), the configuration files kept with the routes' certificates and keys
        (for an ACME certificate, every file of its directory).
    type: list
    elements: path
    default: []
  rolled_back:
    description:
      - With V(probed) after V(restored), the lines of the probe that failed before;
        RV(failure) then says the door was rolled back and whether it serves the previous
        generation.
    type: list
    elements: str
  keep:
    description: With V(probed), keep the generation in O(dir) when every target passed.
    type: bool
    default: false
  dir:
    description: The served generation's directory (0700).
    type: path
    required: true
  proxy:
    description: The proxy's name, for the lines.
    type: str
    required: true
  # timeout, retries, delay: described in trustzone.pki.probe; the defaults are this module's
  timeout:
    default: 5
  retries:
    default: 5
  delay:
    default: 1
"""

EXAMPLES = r"""
- name: Probe the front door
  trustzone.pki.proxy_probe:
    routes:
      - {name: web, server_names: [web.example.com], acme: true,
         ssl_certificate: /etc/trustzone-acme/web/fullchain.pem,
         ssl_certificate_key: /etc/trustzone-acme/web/privkey.pem}
    configs: [/etc/nginx/conf.d/trustzone-proxy.conf]
    keep: true
    dir: /var/lib/trustzone-proxy/served
    proxy: "{{ inventory_hostname }}"
  register: probe
"""

RETURN = r"""
ok:
  description: With V(probed), whether every target passed.
  returned: always
  type: bool
lines:
  description:
    - With V(probed), one line per failed target, naming the proxy, the endpoint and what it
      saw.
  returned: always
  type: list
  elements: str
kept:
  description: Whether a served generation is kept in O(dir) (after this call).
  returned: always
  type: bool
failure:
  description:
    - When RV(ok) is false, or with O(rolled_back), the one line to fail the host with
      (the proxy, each endpoint as name:port, what the probe saw, and what was done).
  returned: always
  type: str
probes:
  description: Per target, C(endpoint), C(ok), C(line), C(attempts) and C(fingerprint).
  returned: always
  type: list
  elements: dict
restored:
  description: With V(restored), the files written back.
  returned: always
  type: list
  elements: str
"""

import hashlib
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _probe
from ansible_collections.trustzone.pki.plugins.module_utils import _proxyprobe as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module


def _manifest_path(directory):
    return os.path.join(directory, P.MANIFEST)


def load_kept(directory):
    """The kept generation's files (manifest entries), or None when none is kept."""
    path = _manifest_path(directory)
    data = _fs.read_file(path)
    if data is None:
        return None
    try:
        decoded = json.loads(data.decode("utf-8"))
    except ValueError:
        decoded = None
    return P.read_manifest(decoded, path)


def probe_all(params, look=_probe.observe, sleep=time.sleep):
    probes = []
    for target in P.targets(params["routes"], params["address"], params["port"]):
        expect = P.pin(_fs.read_file(target["certificate"]))
        endpoint = {"host": target["host"], "port": int(target["port"]),
                    "server_name": target["server_name"]}
        attempts = 0
        while True:
            attempts += 1
            seen = look(endpoint, None, None, None, params["timeout"])
            ok, line = P.verdict(params["proxy"], target, seen, expect)
            if ok or expect is None or attempts > max(0, params["retries"]):
                break
            sleep(params["delay"])
        probes.append({"endpoint": "%s:%d" % (target["server_name"], int(target["port"])),
                       "ok": ok, "line": line, "attempts": attempts,
                       "fingerprint": seen.get("fingerprint")})
    return probes


def keep(directory, files, check):
    """Write ``files`` into ``directory`` as the served generation; True when it changed."""
    entries, blobs = [], {}
    for path in files:
        data = _fs.read_file(path)
        if data is None:
            continue
        state = _fs.file_state(path)
        entries.append({"path": path, "mode": state["mode"], "uid": state["uid"],
                        "gid": state["gid"], "sha256": hashlib.sha256(data).hexdigest()})
        blobs[path] = data
    wanted = P.manifest(entries)
    current = _fs.read_file(_manifest_path(directory))
    text = json.dumps(wanted, sort_keys=True, indent=1) + "\n"
    if current is not None and current.decode("utf-8", "replace") == text:
        return False
    if check:
        return True
    uid, gid = os.geteuid(), os.getegid()
    _fs.ensure_dir(directory, 0o700, uid, gid)
    for entry in wanted["files"]:
        _fs.atomic_write(os.path.join(directory, entry["name"]), blobs[entry["path"]],
                         0o600, uid, gid)
    _fs.atomic_write(_manifest_path(directory), text, 0o600, uid, gid)
    names = {e["name"] for e in wanted["files"]} | {P.MANIFEST}
    for name in _fs.list_dir(directory):
        if name not in names and not name.startswith("."):
            _fs.remove(os.path.join(directory, name))
    return True


def restore(directory, proxy, check):
    files = load_kept(directory)
    if files is None:
        raise TrustzoneError("proxy %s: no served generation is kept to go back to" % proxy,
                             directory, fix="fix the certificate or configuration and run "
                                            "proxy.yml again")
    copies = []
    for entry in files:  # every copy is checked before anything is written
        data = _fs.read_file(os.path.join(directory, entry["name"]))
        if data is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise TrustzoneError("the kept copy of %s is missing or damaged" % entry["path"],
                                 directory, fix="put the file back by hand and reload nginx")
        copies.append((entry, data))
    restored = []
    for entry, data in copies:
        if _fs.read_file(entry["path"]) == data and _fs.file_state(entry["path"])["mode"] == (
                entry["mode"]):
            continue
        if not check:
            _fs.atomic_write(entry["path"], data, entry["mode"], entry["uid"], entry["gid"])
        restored.append(entry["path"])
    return restored


def run(module, look=_probe.observe):
    params = module.params
    directory = params["dir"]
    if params["state"] == "restored":
        restored = restore(directory, params["proxy"], module.check_mode)
        return {"changed": bool(restored), "restored": restored, "ok": True, "lines": [],
                "kept": True, "probes": [], "failure": ""}
    probes = probe_all(params, look=look)
    ok = all(p["ok"] for p in probes)
    lines = [p["line"] for p in probes if not p["ok"]]
    changed = False
    if ok and params["keep"] and params["rolled_back"] is None:
        changed = keep(directory, P.generation_files(params["routes"], params["configs"]),
                       module.check_mode)
    kept = load_kept(directory) is not None or changed
    if params["rolled_back"] is not None:
        failure = P.failure_line(params["proxy"], params["rolled_back"], True, lines)
    else:
        failure = "" if ok else P.failure_line(params["proxy"], lines, kept) if not kept else (
            "; ".join(lines))  # kept: the role goes back and fails with the rolled_back line
    return {"changed": changed, "ok": ok, "lines": lines, "probes": probes, "kept": kept,
            "failure": failure, "restored": []}


def main():
    module = AnsibleModule(**_args.module_args(
        _args.probe_bounds(timeout=5, retries=5, delay=1),
        state=dict(type="str", choices=["probed", "restored"], default="probed"),
        routes=dict(type="list", elements="dict", default=[]),
        address=dict(type="str", default="127.0.0.1"),
        port=dict(type="int", default=443),
        configs=dict(type="list", elements="path", default=[]),
        rolled_back=dict(type="list", elements="str"),
        keep=dict(type="bool", default=False),
        dir=dict(type="path", required=True),
        proxy=dict(type="str", required=True),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
