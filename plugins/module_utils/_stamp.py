# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The node's fast path: the stamp a run that found everything right leaves on the node, and
the answer a later run takes from it when nothing it would look at differs.

A full node run (``_node.run``) imports cryptography, parses every key, certificate, chain,
root and CRL and judges each identity. When such a run (not in check mode) changed nothing
and asked for nothing, ``record`` writes ``<zone dir>/.trustzone-stamp.json`` (0600, owned
by the user the module runs as) holding:

- ``inputs``: a digest of everything the answer depends on that is not a file on the node:
  the module's parameters (roots, issuers, CRL, profiles, the trust layout as given), the
  layout detected on the node, the digest of the collection's node code (``code``, set by
  the action plugin on the controller) and ``FORMAT``;
- ``seen``: for every file the full run reads or keeps the owner and mode of, and every
  directory entry where a crash or an overlapping run leaves files (staged certificates,
  pending keys, temporary files, the zone's anchors), its lstat (type and mode, owner, group,
  size, mtime, ctime, inode) and the SHA-256 of its content; the same for ``/etc/passwd``
  and ``/etc/group`` (profiles name owners);
- ``at`` and ``due``: when it was written, and the earliest time anything becomes due: the
  first renew-at of its identities (notAfter - renew_before), at most ``MAX_AGE`` later;
- ``result``: the run's answer.

``answer`` gives that result again (``days_left`` recounted) only when the inputs are the
same, ``at <= now < due`` and every observation is the same; otherwise it returns None and
the full run runs (and, finding everything right, writes a new stamp). The stamp can only
repeat what the full check said about the same bytes: like every other answer of a node it
is untrusted by the controller, which signs from the inventory alone.

Standard library only: answering from the stamp never imports cryptography.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import stat

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _trust as T
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

FORMAT = 1
NAME = ".trustzone-stamp.json"
MAX_AGE = datetime.timedelta(days=1)  # a full check at least this often, whatever the stamp
ACCOUNTS = ("/etc/passwd", "/etc/group")
# Parameters that never change what the node finds (the action plugin's, the switch, and
# where the metrics file goes: written from the result, also from the stamp's).
NOT_INPUTS = ("fast_path", "stamp_in_check_mode", "metrics_dir", "metrics_dir_optional")


def diff_text(result, files):
    """The node module's ``--diff`` lines: files changed, identities requested (with why),
    installed."""
    lines = ["file %s\n" % f for f in files]
    for name, item in sorted((result.get("requests") or {}).items()):
        lines.append("request %s: %s\n" % (
            name, ", ".join(r["reason"] for r in item["reasons"])))
    lines.extend("install %s\n" % name for name in result.get("installed", []))
    return "".join(lines)


def with_diff(result, files):
    result["diff"] = {"before": "", "after": diff_text(result, files),
                      "after_header": "changes on this node"}
    return result


# --------------------------------------------------------------------------- what it looks at

def applies(params):
    """True for the runs the stamp can stand for: an inspect run (no install, no rollback)
    with the fast path on and the code's digest given."""
    return bool(params.get("fast_path") and params.get("code")
                and params.get("certificates") is None and not params.get("rollback"))


def watched(params, layout):
    """``{directory: [name prefixes]}`` to list and ``[paths]`` to stat: the zone directory
    (every entry), the anchor directory (the zone's anchors), each profile's certificate,
    key and chain directory (entries named after them: the live files, ``.prev``, staged and
    pending ones) and the account files."""
    zone, zone_dir = _args.zone_and_node_dir(params)
    listings = {os.path.normpath(zone_dir): [""]}

    def watch(directory, prefix):
        prefixes = listings.setdefault(os.path.normpath(directory), [])
        if prefix not in prefixes:
            prefixes.append(prefix)

    if layout is not None:
        watch(layout["anchor_dir"], _layout.ANCHOR_PREFIX % zone)
    for profile in params.get("profiles") or []:
        for key in ("cert_path", "key_path", "chain_path"):
            directory, base = os.path.split(profile[key])
            watch(directory, base)
    return listings, list(ACCOUNTS)


def _sha256(path):
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        return "unreadable:%s" % errno.errorcode.get(exc.errno, exc.errno)
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def entry(path):
    """``[mode, uid, gid, size, mtime_ns, ctime_ns, inode, sha256]`` of ``path`` (not
    following a link; the hash only for regular files), or None when there is nothing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ["error", exc.errno]
    item = [st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
            st.st_ino]
    if stat.S_ISREG(st.st_mode):
        item.append(_sha256(path))
    return item


def observe(listings, paths):
    """What is there now: per directory its own mode, owner and inode and every entry whose
    name starts with one of its prefixes (the stamp itself left out); per path its entry."""
    seen = {"dirs": {}, "files": {path: entry(path) for path in paths}}
    for directory, prefixes in sorted(listings.items()):
        try:
            st = os.lstat(directory)
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            seen["dirs"][directory] = None
            continue
        except OSError as exc:
            seen["dirs"][directory] = ["error", exc.errno]
            continue
        entries = {name: entry(os.path.join(directory, name)) for name in names
                   if name != NAME and any(name.startswith(p) for p in prefixes)}
        seen["dirs"][directory] = {"self": [st.st_mode, st.st_uid, st.st_gid, st.st_ino],
                                   "entries": entries}
    return seen


def inputs(params, layout):
    """The digest of what the answer depends on besides the node's files."""
    given = {name: value for name, value in params.items() if name not in NOT_INPUTS}
    text = json.dumps({"format": FORMAT, "params": given, "layout": layout},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def layout_of(params, get_bin_path):
    """The trust layout the full run would use (None without ``trust``)."""
    if params.get("trust") is None:
        return None
    return T.node_layout(params["trust"], get_bin_path)


# --------------------------------------------------------------------------- deciding (pure)

def due(result, profiles, at):
    """When the answer stops being right by the clock alone: the first renew-at
    (notAfter - renew_before) of the identities, and never later than ``at + MAX_AGE``."""
    moments = [at + MAX_AGE]
    identities = result.get("identities") or {}
    for profile in profiles:
        facts = identities.get(profile["name"]) or {}
        if not facts.get("not_after"):
            return None
        moments.append(_layout.parse_time(facts["not_after"])
                       - datetime.timedelta(seconds=profile["renew_before"]))
    return min(moments)


def leftovers(seen, profiles):
    """Entries beside a profile's files other than the files and their ``.prev``: a pending
    key, a staged certificate, a temporary file. A run that leaves them is not stamped (a
    later run removes stale pending keys by their age)."""
    found = []
    for profile in profiles:
        for key in ("cert_path", "key_path", "chain_path"):
            directory, base = os.path.split(os.path.normpath(profile[key]))
            listing = seen["dirs"].get(directory) or {}
            for name in (listing.get("entries") or {}) if isinstance(listing, dict) else ():
                if name.startswith(base) and name not in (base, base + _fs.PREVIOUS_SUFFIX):
                    found.append(os.path.join(directory, name))
    return sorted(set(found))


def stampable(result, check, before, after, profiles):
    """True when the full run's ``result`` may be kept: not check mode (``check``), nothing
    changed or requested, nothing moved while it ran (``before`` == ``after``), no
    leftovers."""
    return (not check and not result.get("changed") and not result.get("requests")
            and not result.get("crl_changed") and not result.get("files")
            and before == after and not leftovers(after, profiles))


def replay(stamp, digest, seen, now):
    """The stamp's result if it stands for now, else None (pure)."""
    if not isinstance(stamp, dict) or stamp.get("format") != FORMAT:
        return None
    if stamp.get("inputs") != digest or stamp.get("seen") != seen:
        return None
    try:
        at = _layout.parse_time(stamp["at"])
        until = _layout.parse_time(stamp["due"])
    except (KeyError, TypeError, TrustzoneError):
        return None
    if not at <= now < until:
        return None  # the clock passed a renew-at, or went back before the stamp
    result = json.loads(json.dumps(stamp["result"]))
    for facts in (result.get("identities") or {}).values():
        if facts.get("not_after"):
            facts["days_left"] = _layout.days_left(facts["not_after"], now)
    return result


# --------------------------------------------------------------------------- node I/O

def path_of(params):
    return os.path.join(_args.zone_and_node_dir(params)[1], NAME)


def load(path):
    """The stamp at ``path`` if it is a regular file of this user's, mode 0600; else None."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() \
                or stat.S_IMODE(st.st_mode) != 0o600:
            return None
        data = _fs.read_file(path, max_bytes=1024 * 1024)
        return json.loads(data.decode("utf-8")) if data else None
    except (OSError, ValueError, TrustzoneError):
        return None


def answer(params, diff, get_bin_path, now=None):
    """The node module's result from the stamp, or None when the full run must run."""
    if not applies(params):
        return None
    try:
        layout = layout_of(params, get_bin_path)
    except TrustzoneError:
        return None  # the full run reports it
    stamp = load(path_of(params))
    if stamp is None:
        return None
    listings, paths = watched(params, layout)
    result = replay(stamp, inputs(params, layout), observe(listings, paths),
                    now or datetime.datetime.now(datetime.timezone.utc))
    if result is not None and diff:
        with_diff(result, [])
    return result


def run_full(params, check, get_bin_path, full, now=None):
    """``full()``'s answer (the full run, after ``answer`` gave none), recorded as the new
    stamp when it found everything right and nothing moved while it ran; a stamp that no
    longer stands is removed."""
    if not applies(params):
        return full()
    try:
        layout = layout_of(params, get_bin_path)
    except TrustzoneError:
        return full()
    listings, paths = watched(params, layout)
    before = observe(listings, paths)
    result = full()
    at = now or datetime.datetime.now(datetime.timezone.utc)
    path = path_of(params)
    profiles = params.get("profiles") or []
    after = observe(listings, paths)
    # site.yml's check round (playbooks/zone_check.yml) is check mode that may keep the
    # stamp: the module's own cache of what it saw, never a managed file
    keeps = not check or bool(params.get("stamp_in_check_mode"))
    if stampable(result, not keeps, before, after, profiles):
        until = due(result, profiles, at)
        if until is not None and at < until:
            kept = {k: v for k, v in result.items() if k != "diff"}
            record(path, {"format": FORMAT, "inputs": inputs(params, layout), "seen": after,
                          "at": _layout.iso(at), "due": _layout.iso(until), "result": kept})
    elif keeps and os.path.lexists(path):
        forget(path)
    return result


def record(path, stamp):
    """Write the stamp (0600, this user); a stamp that cannot be written is no stamp."""
    try:
        _fs.atomic_write(path, json.dumps(stamp, sort_keys=True), 0o600, os.geteuid(),
                         os.getegid())
    except (OSError, TrustzoneError):
        forget(path)


def forget(path):
    try:
        _fs.remove(path)
    except (OSError, TrustzoneError):
        pass
