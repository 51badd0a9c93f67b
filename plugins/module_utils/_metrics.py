# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The zone's state as Prometheus metrics, for node_exporter's textfile collector
(``docs/metrics.md``).

``node_text`` renders a node's file from the ``metrics`` part of the node module's result
(per certificate its profile, path, notBefore, notAfter, whether it is in its validity period,
chains to the zone's roots and matches its key, and the renewal reasons; per CRL copy its
issuer and nextUpdate; the rotation phase as the node sees it). ``ca_text`` renders the CA
host's file (the ledger's counts by status, the rotation phase, the CA's CRLs, the time of the
last successful run). Both are pure functions of their data: the same data gives the same
bytes, so a file is rewritten only when the zone's state changed - and the node's stamp
(``_stamp``), which keeps the result, keeps what is needed to render it again without
cryptography.

``publish`` writes ``<dir>/<name>`` atomically (``_fs``: a hidden temporary file in the same
directory, which node_exporter ignores as it does not end in ``.prom``; mode 0644) only when
its content differs. Standard library only.
"""

from __future__ import annotations

import os

from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

PREFIX = "trustzone_"
PHASES = ("stable", "trust", "use")
LEDGER_STATUSES = ("valid", "superseded", "revoked")
# Debian's prometheus-node-exporter reads *.prom files here (its default
# --collector.textfile.directory); used when the role variable is left unset.
DEFAULT_DIR = "/var/lib/prometheus/node-exporter"
VARIABLE = "trustzone_metrics_textfile_dir"

# name: help text (every series is a gauge)
NODE_SERIES = (
    ("certificate_not_before_seconds", "Start of the certificate's validity period (notBefore), "
                                       "seconds since the epoch."),
    ("certificate_not_after_seconds", "End of the certificate's validity period (notAfter), "
                                      "seconds since the epoch."),
    ("certificate_renew_at_seconds", "When the certificate enters its renew window (notAfter "
                                     "minus the profile's renew_before), seconds since the "
                                     "epoch."),
    ("certificate_valid", "1 when the certificate was inside its validity period at the last "
                          "check, else 0."),
    ("certificate_chain_valid", "1 when the certificate chains to one of the zone's roots."),
    ("certificate_key_match", "1 when the private key beside the certificate matches it."),
    ("certificate_renewal_pending", "1 when the certificate must be (re)issued, else 0."),
    ("certificate_renewal_reason", "One series per reason the certificate must be "
                                   "(re)issued, value 1."),
    ("certificate_present", "1 when the profile's certificate file exists and parses."),
    ("crl_next_update_seconds", "nextUpdate of each CRL in the node's copy of the zone's CRLs, "
                                "seconds since the epoch."),
    ("rotation_phase", "The zone's root rotation phase: 1 for the current phase, 0 for the "
                       "others."),
)
CA_SERIES = (
    ("ledger_certificates", "Certificates in the CA's ledger, by status."),
    ("rotation_phase", "The zone's root rotation phase: 1 for the current phase, 0 for the "
                       "others."),
    ("crl_next_update_seconds", "nextUpdate of each CRL the CA publishes, seconds since the "
                                "epoch."),
    ("last_success_timestamp_seconds", "When a run of the zone last completed on the CA "
                                       "host, seconds since the epoch."),
)


# --------------------------------------------------------------------------- rendering (pure)

def escape_label(value):
    """A label value as the text exposition format wants it: backslash, double quote and
    line feed escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text):
    return str(text).replace("\\", "\\\\").replace("\n", "\\n")


def seconds(value):
    """An ISO 8601 UTC time of the collection (``_layout.iso``) as whole seconds since the
    epoch."""
    moment = _layout.parse_time(value)
    return int(moment.timestamp())


def sample(name, labels, value):
    """One line: ``trustzone_<name>{k="v",...} value`` (labels in the order given)."""
    if isinstance(value, bool):
        value = int(value)
    text = ",".join('%s="%s"' % (key, escape_label(val)) for key, val in labels)
    return "%s%s{%s} %s\n" % (PREFIX, name, text, value)


def render(series, samples):
    """The exposition text: for each series of ``series`` (``(name, help)``) that has
    samples, its HELP and TYPE lines then its samples (``samples[name]``, lines)."""
    out = []
    for name, help_text in series:
        lines = samples.get(name) or []
        if not lines:
            continue
        out.append("# HELP %s%s %s\n" % (PREFIX, name, escape_help(help_text)))
        out.append("# TYPE %s%s gauge\n" % (PREFIX, name))
        out.extend(lines)
    return "".join(out)


def _phase_lines(zone, phase):
    if phase not in PHASES:
        return []
    return [sample("rotation_phase", (("zone", zone), ("phase", name)), int(name == phase))
            for name in PHASES]


def _crl_lines(zone, crls):
    lines = []
    for crl in crls or []:
        if crl.get("next_update"):
            lines.append(sample("crl_next_update_seconds",
                                (("zone", zone), ("issuer", crl.get("issuer") or ""),
                                 ("path", crl.get("path") or "")),
                                seconds(crl["next_update"])))
    return lines


def node_text(zone, facts):
    """A node's metrics file from ``facts`` (the node module's ``metrics``:
    ``{certificates: [{profile, path, not_before, not_after, renew_at, valid, chain_valid,
    key_match, reasons}], crls: [{issuer, path, next_update}], phase}``)."""
    samples = {}

    def add(name, labels, value):
        samples.setdefault(name, []).append(sample(name, labels, value))

    for item in facts.get("certificates") or []:
        labels = (("zone", zone), ("profile", item["profile"]), ("path", item["path"]))
        present = bool(item.get("not_after"))
        add("certificate_present", labels, present)
        if present:
            add("certificate_not_before_seconds", labels, seconds(item["not_before"]))
            add("certificate_not_after_seconds", labels, seconds(item["not_after"]))
            if item.get("renew_at"):
                add("certificate_renew_at_seconds", labels, seconds(item["renew_at"]))
            add("certificate_valid", labels, bool(item.get("valid")))
            add("certificate_chain_valid", labels, bool(item.get("chain_valid")))
            add("certificate_key_match", labels, bool(item.get("key_match")))
        reasons = sorted(set(item.get("reasons") or []))
        add("certificate_renewal_pending", labels, bool(reasons))
        for reason in reasons:
            add("certificate_renewal_reason", labels + (("reason", reason),), 1)
    samples["crl_next_update_seconds"] = _crl_lines(zone, facts.get("crls"))
    samples["rotation_phase"] = _phase_lines(zone, facts.get("phase"))
    return render(NODE_SERIES, samples)


def ca_text(zone, facts):
    """The CA host's metrics file from ``facts``: ``{ledger: {status: count}, phase,
    crls: [{issuer, path, next_update}], last_success: ISO time or None}``."""
    ledger = facts.get("ledger") or {}
    samples = {
        "ledger_certificates": [
            sample("ledger_certificates", (("zone", zone), ("status", status)),
                   int(ledger.get(status) or 0))
            for status in sorted(set(LEDGER_STATUSES) | set(ledger))],
        "rotation_phase": _phase_lines(zone, facts.get("phase")),
        "crl_next_update_seconds": _crl_lines(zone, facts.get("crls")),
    }
    if facts.get("last_success"):
        samples["last_success_timestamp_seconds"] = [
            sample("last_success_timestamp_seconds", (("zone", zone),),
                   seconds(facts["last_success"]))]
    return render(CA_SERIES, samples)


def node_file(zone):
    return "%s%s.prom" % (PREFIX, zone)


def ca_file(zone):
    """The CA host's file: a zone name has no dot, so it never meets a node's file."""
    return "%s%s.ca.prom" % (PREFIX, zone)


# --------------------------------------------------------------------------- the file (I/O)

def target(directory, optional):
    """The directory to write in, or None when there is nothing to write: no directory
    given, or an ``optional`` one (the role's default) that does not exist. A directory set
    on purpose that is missing or not writable stops the run before anything is written."""
    if not directory:
        return None
    if not os.path.isdir(directory):
        if optional:
            return None
        raise TrustzoneError(
            "the metrics textfile directory (%s) does not exist" % VARIABLE, directory,
            fix="install prometheus-node-exporter (or create the directory its "
                "--collector.textfile.directory names), or set %s to \"\" to write no "
                "metrics" % VARIABLE)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise TrustzoneError(
            "the metrics textfile directory (%s) is not writable" % VARIABLE, directory,
            fix="make it writable for the user Ansible becomes, or set %s to another "
                "directory (or \"\" to write no metrics)" % VARIABLE)
    return directory


def crl_facts(data, path):
    """Issuer and nextUpdate of every CRL in ``data`` (the PEM read from ``path``; None or
    empty: none), as the node's and the CA host's files list them."""
    # pylint: disable=import-outside-toplevel
    from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C

    facts = []
    for crl in C.load_crls(data, path=path) if data else []:
        when = C.crl_next_update(crl)
        facts.append({"issuer": crl.issuer.rfc4514_string(), "path": path,
                      "next_update": _layout.iso(when) if when is not None else None})
    return facts


def publish(directory, name, text):
    """Write ``<directory>/<name>`` (0644, owned by this user) atomically when its content
    differs; True when written. Metrics are never a change of the run."""
    path = os.path.join(directory, name)
    data = text.encode("utf-8")
    if _fs.read_file(path) == data:
        return False
    _fs.atomic_write(path, data, 0o644, os.geteuid(), os.getegid())
    return True
