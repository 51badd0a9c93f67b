# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Scheduled runs of the zone's playbooks (the trustzone.pki.schedule role): which systemd
units a host gets, and the exact command each runs. Pure: no I/O.

Each job becomes ``trustzone-<zone>-<job>.service`` (oneshot) and ``.timer``. The service
runs the wrapper (``trustzone-scheduled-run``) with the zone's lock file, its log file and the
ansible-playbook argv; the wrapper takes the lock without waiting (flock), so two runs of
the zone from this host never overlap: a run that finds the lock held writes one line and
exits 75, which the unit counts as success (the zone was being run). Secrets never appear in
the argv: the vault password comes from a file the argv names.
"""

from __future__ import annotations

import re

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

OVERLAP_EXIT = 75  # EX_TEMPFAIL: the wrapper's exit status when the lock is held
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
ZONE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SPAN_RE = re.compile(r"^(0|[0-9]+(us|ms|s|min|m|h|d|w))( ?[0-9]+(us|ms|s|min|m|h|d|w))*$")
# what systemd unit files cannot carry in a word even quoted, and what we refuse in paths
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
JOB_KEYS = {"name", "playbook", "on_calendar", "randomized_delay", "args", "timeout"}
DEFAULT_JOB = {"randomized_delay": "10min", "args": [], "timeout": "2h"}


def unit_name(zone, job):
    """``trustzone-<zone>-<job>``. A zone name's characters other than letters, digits, ``_``
    and ``.`` are escaped the way systemd-escape does (``\\xNN``), ``-`` too: so the zone ends
    at the first ``-`` after ``trustzone-`` and zone prod's units are never zone prod-eu's."""
    escaped = "".join(c if c.isalnum() or c in "_." else "\\x%02x" % ord(c) for c in zone)
    return "trustzone-%s-%s" % (escaped, job)


def quote(word):
    """One argv word for ExecStart= (systemd.service(5), "Command lines"): double-quoted,
    backslash and double quote escaped, ``%`` doubled (specifiers), ``$`` doubled
    (environment expansion)."""
    word = str(word)
    if _CONTROL.search(word):
        raise TrustzoneError("a command word holds a control character: %r" % word,
                             fix="remove newlines and control characters from it")
    return '"%s"' % (word.replace("\\", "\\\\").replace('"', '\\"')
                     .replace("%", "%%").replace("$", "$$"))


def exec_start(argv):
    return " ".join(quote(word) for word in argv)


ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def environment(values):
    """``Environment=`` words for ``{name: value}``: each ``"NAME=value"`` quoted (backslash
    and double quote escaped, ``%`` doubled; Environment= expands no ``$``), sorted."""
    if not isinstance(values, dict):
        raise TrustzoneError("trustzone_schedule_environment is not a mapping",
                             fix="write it as NAME: value pairs")
    out = []
    for name in sorted(values):
        value = "" if values[name] is None else str(values[name])
        if not ENV_NAME_RE.match(str(name)) or _CONTROL.search(value):
            raise TrustzoneError("trustzone_schedule_environment: %r is not a variable name "
                                 "with a one-line value" % (name,),
                                 fix="use NAME: value with letters, digits and _ in NAME")
        word = "%s=%s" % (name, value)
        out.append('"%s"' % word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%"))
    return out


def _span(value, what):
    text = str(value).strip()
    if not SPAN_RE.match(text):
        raise TrustzoneError("%s is %r, not a systemd time span" % (what, value),
                             fix="write it as systemd does, e.g. 10min, 1h 30min, 2h")
    return text


def _path(value, what, required=True):
    text = "" if value is None else str(value)
    if not text:
        if required:
            raise TrustzoneError("%s is empty" % what, fix="set it to an absolute path on this host")
        return ""
    if not text.startswith("/") or _CONTROL.search(text):
        raise TrustzoneError("%s is %r, not an absolute path" % (what, value),
                             fix="set it to an absolute path on this host")
    return text


def plan(zone, jobs, settings):
    """The units of one host, as a list of dicts (one per job): ``name``, ``unit``,
    ``description``, ``on_calendar``, ``randomized_delay``, ``timeout``, ``log``,
    ``exec_start``, ``environment``. ``settings``: inventory, ansible_playbook, wrapper, lock,
    log_dir, vault_password_file (may be empty), environment (a mapping). Any mistake raises TrustzoneError naming the variable
    and the fix."""
    if not ZONE_RE.match(str(zone or "")):
        raise TrustzoneError("trustzone_name is %r" % (zone,), fix="set the zone's name")
    if not isinstance(jobs, list) or not jobs:
        raise TrustzoneError("trustzone_schedule_jobs is empty or not a list",
                             fix="list the jobs (name, playbook, on_calendar), or set "
                                 "trustzone_schedule_state: absent")
    inventory = _path(settings.get("inventory"), "trustzone_schedule_inventory")
    playbook_bin = _path(settings.get("ansible_playbook"), "trustzone_schedule_ansible_playbook")
    wrapper = _path(settings.get("wrapper"), "trustzone_schedule_wrapper")
    lock = _path(settings.get("lock"), "trustzone_schedule_lock")
    log_dir = _path(settings.get("log_dir"), "trustzone_schedule_log_dir")
    vault = _path(settings.get("vault_password_file"), "trustzone_schedule_vault_password_file",
                  required=False)
    env = environment(settings.get("environment") or {})
    seen, out = set(), []
    for index, raw in enumerate(jobs):
        where = "trustzone_schedule_jobs[%d]" % index
        if not isinstance(raw, dict):
            raise TrustzoneError("%s is not a mapping" % where,
                                 fix="give each job name, playbook and on_calendar")
        unknown = sorted(set(raw) - JOB_KEYS)
        if unknown:
            raise TrustzoneError("%s has unknown key(s) %s" % (where, ", ".join(unknown)),
                                 fix="use only %s" % ", ".join(sorted(JOB_KEYS)))
        job = dict(DEFAULT_JOB, **raw)
        name = str(job.get("name") or "")
        if not NAME_RE.match(name):
            raise TrustzoneError("%s: name %r is not a-z, 0-9 and - (up to 40)" % (where, name),
                                 fix="name the job e.g. renew")
        if name in seen:
            raise TrustzoneError("%s: job name %r is used twice" % (where, name),
                                 fix="give every job its own name")
        seen.add(name)
        playbook = str(job.get("playbook") or "")
        if not playbook or _CONTROL.search(playbook):
            raise TrustzoneError("%s (%s): playbook is empty" % (where, name),
                                 fix="name a playbook, e.g. trustzone.pki.renew")
        calendar = str(job.get("on_calendar") or "").strip()
        if not calendar or _CONTROL.search(calendar):
            raise TrustzoneError("%s (%s): on_calendar is empty" % (where, name),
                                 fix="set a systemd calendar expression, e.g. '*-*-* 00/4:00:00'")
        args = job.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, (str, int)) for a in args):
            raise TrustzoneError("%s (%s): args is not a list of words" % (where, name),
                                 fix="write args as a list, e.g. [--limit, web]")
        unit = unit_name(zone, name)
        log = "%s/%s.log" % (log_dir.rstrip("/"), unit)
        argv = [wrapper, lock, playbook_bin, "-i", inventory]
        if vault:
            argv += ["--vault-password-file", vault]
        argv += [playbook] + [str(a) for a in args]
        out.append({
            "name": name, "unit": unit, "playbook": playbook, "on_calendar": calendar,
            "randomized_delay": _span(job["randomized_delay"],
                                      "%s (%s): randomized_delay" % (where, name)),
            "timeout": _span(job["timeout"], "%s (%s): timeout" % (where, name)),
            "log": log, "exec_start": exec_start(argv), "environment": env,
            "description": "trustzone.pki zone %s: %s (%s)" % (zone, name, playbook),
        })
    return out


def stale_units(zone, wanted, present):
    """The unit files of this zone's earlier jobs that ``wanted`` no longer lists: file names
    (``present``: the names found in the unit directory) to stop and remove."""
    prefix = unit_name(zone, "")
    keep = {job["unit"] + suffix for job in wanted for suffix in (".service", ".timer")}
    return sorted(name for name in present
                  if name.startswith(prefix) and name.endswith((".service", ".timer"))
                  and name not in keep)
