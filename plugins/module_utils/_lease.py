# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The zone run lease: runs of one zone that change things serialize (docs/concurrency.md).

Pure: who holds the lease, who asks, and now decide what happens. A run is named by its
controller (host name and boot id), the process id of its ``ansible-playbook`` and that
process's start time (so a reused pid is not the same run). The controller also sends the
runs alive on it right now, so a lease whose holder died on this controller is taken over at
once; a holder on another controller is trusted until the lease's time to live runs out.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

LEASE_VERSION = 1


def run_id(holder):
    return "%s/%s:%s" % (holder["controller"], holder["pid"], holder["start"])


def check_holder(holder):
    """The ``holder`` a controller sends, checked (the controller is trusted; typos are not)."""
    if not isinstance(holder, dict):
        raise TrustzoneError("the lease holder must be a dict (lookup trustzone.pki.controller_run)")
    try:
        out = {"controller": str(holder["controller"]), "pid": int(holder["pid"]),
               "start": int(holder["start"]), "playbook": str(holder.get("playbook") or ""),
               "live": sorted(str(x) for x in holder.get("live") or [])}
    except (KeyError, TypeError, ValueError):
        raise TrustzoneError("the lease holder needs controller, pid and start",
                             fix="pass lookup('trustzone.pki.controller_run')") from None
    if not out["controller"] or re.search(r"\s", out["controller"]):
        raise TrustzoneError("the lease holder's controller name is empty or has spaces")
    return out


def parse(data):
    """The lease file's content (bytes) -> dict or None (absent or unreadable: free)."""
    if not data:
        return None
    try:
        lease = json.loads(data.decode("utf-8"))
        check_holder(lease["holder"])
        float(lease["expires"])
        return lease
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, TrustzoneError):
        return None


def decide(lease, me, now, ttl):
    """``(action, why)``: ``take`` (free, expired, or its holder is dead), ``renew`` (this run
    holds it already) or ``wait`` (another live run holds it)."""
    if lease is None:
        return "take", "free"
    holder = lease["holder"]
    if run_id(holder) == run_id(me):
        return "renew", "held by this run"
    if float(lease["expires"]) <= now:
        return "take", "the lease of %s expired" % describe(lease)
    if holder["controller"] == me["controller"] and \
            "%s:%s" % (holder["pid"], holder["start"]) not in me["live"]:
        return "take", "the run %s is no longer alive on this controller" % describe(lease)
    return "wait", "held by %s" % describe(lease)


def describe(lease):
    holder = lease["holder"]
    return "%s (ansible-playbook pid %s%s, taken %s, expires %s)" % (
        holder["controller"].split("/")[0], holder["pid"],
        ", %s" % holder["playbook"] if holder.get("playbook") else "",
        _iso(lease.get("taken")), _iso(lease.get("expires")))


def new_lease(me, now, ttl):
    holder = {k: me[k] for k in ("controller", "pid", "start", "playbook")}
    return {"version": LEASE_VERSION, "holder": holder, "taken": now, "expires": now + ttl}


def render(lease):
    return (json.dumps(lease, sort_keys=True, indent=1) + "\n").encode("utf-8")


def may_release(lease, me):
    return lease is not None and run_id(lease["holder"]) == run_id(me)


def _iso(value):
    import datetime
    try:
        return _layout.iso(datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc))
    except (TypeError, ValueError, OverflowError):
        return "?"


# --------------------------------------------------------------------------- controller side

def _proc_stat_start(pid, proc="/proc"):
    with open(os.path.join(proc, str(pid), "stat"), "rb") as handle:
        data = handle.read().decode("ascii", "replace")
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[19]), int(fields[1])  # starttime (field 22), ppid (field 4)


def _cmdline(pid, proc="/proc"):
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
            return [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return []


def _is_playbook(argv):
    return any(os.path.basename(a) == "ansible-playbook" for a in argv[:3])


def controller_run(proc="/proc", hostname=None, pid=None):
    """This controller's run: the topmost ``ansible-playbook`` process above ``pid`` (workers
    are forks of it, with the same command line), its start time, and every run alive here."""
    import socket
    hostname = hostname or socket.gethostname()
    try:
        with open(os.path.join(proc, "sys/kernel/random/boot_id")) as handle:
            boot = handle.read().strip()
    except OSError:
        boot = "noboot"
    current = pid or os.getpid()
    main = None
    for _depth in range(32):
        if current <= 1:
            break
        try:
            start, parent = _proc_stat_start(current, proc)
        except (OSError, ValueError, IndexError):
            break
        if _is_playbook(_cmdline(current, proc)):
            main = (current, start)
        current = parent
    if main is None:
        raise TrustzoneError("no ansible-playbook process above this one; the zone run lease "
                             "is for playbook runs", fix="run the zone's playbooks with "
                                                         "ansible-playbook")
    live = []
    for name in os.listdir(proc):
        if name.isdigit() and _is_playbook(_cmdline(name, proc)):
            try:
                live.append("%s:%s" % (name, _proc_stat_start(name, proc)[0]))
            except (OSError, ValueError, IndexError):
                continue
    argv = _cmdline(main[0], proc)
    playbooks = [os.path.basename(a) for a in argv if a.endswith((".yml", ".yaml"))]
    return {"controller": "%s/%s" % (hostname, boot[:8]), "pid": main[0], "start": main[1],
            "live": sorted(live), "playbook": ",".join(playbooks)}
