#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: run_lease
short_description: Take or release a trust zone's run lease on its CA host
version_added: 0.1.0
description:
  - Runs of one zone that change things (C(site.yml), C(renew.yml), C(rotate_root.yml))
    serialize on a lease kept on the zone's CA host (docs/concurrency.md). The lease names
    the run holding it - controller, C(ansible-playbook) pid and start time, from
    P(trustzone.pki.controller_run#lookup) - and when it expires.
  - V(acquired) takes the lease when it is free, expired, already this run's, or held by a
    run that is no longer alive on this same controller (a crashed or interrupted run is
    detected at once). A lease held by a live run - or by a run on another controller, until
    its O(ttl) runs out - is waited for up to O(wait) seconds; then the module returns
    C(acquired=false) with a message naming the holder, so the playbook retries the task
    (each retry printed) until the lease is free.
  - V(released) removes the lease only when this run holds it.
  - Check mode never writes the lease; it says whether the lease is free.
  - The lease is bookkeeping, not part of the zone; taking or giving it back reports
    C(changed=false) (see RV(taken), RV(released)), so a run with nothing to do reports no
    change.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.attributes]
options:
  path:
    description: The lease file on the CA host (the playbooks use C(<trustzone_ca_dir>.lease)).
    type: path
    required: true
  holder:
    description: This run, as P(trustzone.pki.controller_run#lookup) returns it.
    type: dict
    required: true
  zone:
    description:
      - The zone's name. When given, an action plugin on the controller first checks the
        whole zone's inventory with the identity resolver (host names, names, uniqueness
        across every host of C(trustzone_nodes) and C(trustzone_ca)) and fails with one line
        naming the host and the fix before the lease - the first thing a run writes - is
        taken. Not used on the CA host.
    type: str
  state:
    description: Take or give back the lease.
    type: str
    choices: [acquired, released]
    default: acquired
  ttl:
    description:
      - How long the lease holds without being renewed (each take by the same run renews
        it). A holder on another controller is waited for until then.
    type: str
    default: 2h
  wait:
    description: Seconds to wait for a held lease in this call (the playbook retries the task).
    type: int
    default: 5
attributes:
  action:
    description: An action plugin on the controller checks the zone's inventory first (O(zone)).
    support: full
  check_mode:
    description: Nothing is written; the result says whether the lease is free.
    support: full
requirements:
  - Linux (fcntl) on the CA host
"""

EXAMPLES = r"""
- name: Take the zone's run lease (waits while another run of the zone holds it)
  trustzone.pki.run_lease:
    path: "{{ trustzone_ca_dir }}.lease"
    holder: "{{ lookup('trustzone.pki.controller_run') }}"
  register: lease
  until: lease.acquired
  retries: 1200
  delay: 3
"""

RETURN = r"""
acquired:
  description: True when this run holds the lease now.
  returned: state=acquired
  type: bool
taken:
  description: True when this call took the lease (it was free, expired or its holder dead).
  returned: state=acquired
  type: bool
released:
  description: True when this call gave the lease back.
  returned: state=released
  type: bool
holder:
  description: The run that holds (or held) the lease, described in one line.
  returned: when someone holds it
  type: str
why:
  description: Why the lease was taken, renewed or waited for.
  returned: always
  type: str
"""

import fcntl
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _lease as L
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module


class Locked:
    """flock on ``<lease>.lock`` around one read-modify-write of the lease."""

    def __init__(self, path):
        self.path = path + ".lock"
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                              | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise TrustzoneError("cannot open the lease lock (%s)" % exc.strerror, self.path,
                                 fix="check the CA host's directory") from exc
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def run(module):
    params = module.params
    path = params["path"]
    me = L.check_holder(params["holder"])
    ttl = _parse.parse_duration(params["ttl"], "ttl")
    parent = os.path.dirname(path) or "."
    if module.check_mode:
        lease = L.parse(_fs.read_file(path)) if os.path.isdir(parent) else None
        action, why = L.decide(lease, me, time.time(), ttl)
        # A check run writes nothing, so it neither takes nor waits for the lease.
        return {"changed": False, "acquired": True, "why": "check mode, not taken: " + why,
                "holder": L.describe(lease) if lease else None}
    if not os.path.isdir(parent):
        _fs.ensure_dir(parent, 0o755, 0, 0)
    if params["state"] == "released":
        with Locked(path):
            lease = L.parse(_fs.read_file(path))
            if L.may_release(lease, me):
                _fs.remove(path)
                return {"changed": False, "released": True, "why": "released",
                        "holder": L.describe(lease)}
        return {"changed": False, "released": False, "why": "not held by this run",
                "holder": L.describe(lease) if lease else None}
    deadline = time.time() + max(0, params["wait"])
    while True:
        with Locked(path):
            now = time.time()
            lease = L.parse(_fs.read_file(path))
            action, why = L.decide(lease, me, now, ttl)
            if action != "wait":
                taken = L.new_lease(me, now, ttl)
                if action == "renew":
                    taken["taken"] = lease["taken"]
                _fs.atomic_write(path, L.render(taken), 0o600, 0, 0)
                return {"changed": False, "acquired": True, "taken": action == "take", "why": why,
                        "holder": L.describe(taken)}
        if time.time() >= deadline:
            return {"changed": False, "acquired": False, "why": why,
                    "holder": L.describe(lease),
                    "msg": "waiting: another run of this zone holds the lease - %s" % why}
        time.sleep(1)


def main():
    module = AnsibleModule(**_args.module_args(
        path=dict(type="path", required=True),
        holder=dict(type="dict", required=True),
        state=dict(type="str", choices=["acquired", "released"], default="acquired"),
        ttl=dict(type="str", default="2h"),
        wait=dict(type="int", default=5),
        # consumed by the action plugin on the controller; listed so that the module's
        # documentation and argument spec agree
        zone=dict(type="str"),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
