# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The fleet report's expiry timeline: where everything goes on the HTML page's inline SVG.

A pure function of the report (``_report.fleet_report``'s output) and the profiles' renew
windows. It returns coordinates only; ``playbooks/templates/report.html.j2`` draws them (and
escapes every label). No script, nothing fetched.

Layout, chosen to stay readable at 100 nodes: one group of rows per host (its certificates,
profiles first, then its CRL copy), the CA host's group (CA certificates and its CRL) first;
a compact row height; the rows scroll inside a container of bounded height while the time
axis stays above it. Labels are cut to fit their column (the full text is the row's title),
in a monospace font so their width is known here.
"""

from __future__ import annotations

import datetime

from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils._layout import DAY, iso, parse_time

LABEL_WIDTH = 264   # px: the host column and the certificate column
HOST_X, ITEM_X = 4, 134
LABEL_CHARS = 18    # characters per label column
CHART_WIDTH = 880   # px: the time axis
RIGHT_PAD = 16
ROW = 14            # px per row
FONT = 11           # px, monospace
CHAR = 6.7          # px per character of that font (0.6 em, plus a margin)
AXIS_HEIGHT = 34
MAX_TICKS = 8
HOUR = 3600
STEPS = (HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY,
         91 * DAY, 182 * DAY, 365 * DAY, 730 * DAY, 1825 * DAY)


def cut(text, chars=LABEL_CHARS):
    """``text`` shortened to ``chars`` characters (an ellipsis marks the cut)."""
    text = str(text or "")
    return text if len(text) <= chars else text[:chars - 1] + "\u2026"


def label_box(x, y, text):
    """The box a label drawn at ``(x, y)`` (baseline) covers: ``(x0, y0, x1, y1)``."""
    return (x, y - FONT, x + len(text) * CHAR, y + 2)


def _span(report, now):
    """The axis: from the earliest leaf notBefore (or now) to the last leaf notAfter or CRL
    nextUpdate (at least a day after now). CA certificates outside it are cut at its edges."""
    times = [now, now + datetime.timedelta(days=1)]
    for row in report.get("certificates") or []:
        for key in ("not_before", "not_after"):
            if row.get(key):
                times.append(parse_time(row[key]))
    crl = report.get("crl") or {}
    for entry in [crl.get("ca") or {}] + list((crl.get("nodes") or {}).values()):
        if entry.get("next_update"):
            times.append(parse_time(entry["next_update"]))
    return min(times), max(times)


def _ticks(start, end, scale):
    seconds = (end - start).total_seconds()
    step = next((s for s in STEPS if seconds / s <= MAX_TICKS), STEPS[-1])
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    first = int((start - epoch).total_seconds() // step + 1) * step
    fmt = "%Y-%m-%d" if step >= DAY else "%m-%d %H:%M"
    ticks, moment = [], first
    while moment <= (end - epoch).total_seconds():
        when = epoch + datetime.timedelta(seconds=moment)
        ticks.append({"x": scale(when), "label": when.strftime(fmt), "time": iso(when)})
        moment += step
    return ticks


def _bar(scale, begin, finish, left, right):
    x0, x1 = max(scale(begin), left), min(scale(finish), right)
    return {"x": x0, "width": max(x1 - x0, 1.0)} if x1 >= left and x0 <= right else None


def timeline(report, renew_windows=None):
    """Coordinates of the report's timeline (see the module's docstring).

    ``renew_windows[host][profile]``: the profile's renew_before in seconds (shaded before
    each certificate's notAfter). Returns ``width``, ``height`` (of the rows), ``axis``
    (``height``, ``ticks``), ``now`` (``x``, ``time``), ``threshold`` (x of now plus the
    report's fail_within when it is a duration, else None), ``phase``, ``groups`` (per host:
    ``y``, ``height``) and ``rows`` (``y`` of the baseline, labels, ``status``, ``bar``,
    ``renew``, ``marker``, ``cut_left``/``cut_right``).
    """
    now = parse_time(report["generated_at"])
    start, end = _span(report, now)
    total = max((end - start).total_seconds(), 1.0)
    left, right = float(LABEL_WIDTH), float(LABEL_WIDTH + CHART_WIDTH)

    def scale(moment):
        return round(left + (moment - start).total_seconds() / total * CHART_WIDTH, 1)

    windows = renew_windows or {}
    groups, rows = [], []

    def add(host_label, host, item, title, status, kind, **drawn):
        rows.append(dict({"host": host, "host_label": host_label, "label": cut(item),
                          "title": title, "status": status, "kind": kind, "bar": None,
                          "renew": None, "marker": None, "cut_left": False,
                          "cut_right": False}, **drawn))

    def certificate(host, first, row):
        label = row.get("profile") or row.get("path", "").rsplit("/", 1)[-1]
        title = "%s %s: %s, notAfter %s" % (host, row.get("path"), row.get("status"),
                                            row.get("not_after") or "none")
        drawn = {}
        if row.get("not_after"):
            begin = parse_time(row["not_before"]) if row.get("not_before") else start
            finish = parse_time(row["not_after"])
            drawn["bar"] = _bar(scale, begin, finish, left, right)
            renew = (windows.get(host) or {}).get(row.get("profile"))
            if renew and row.get("kind") == "profile":
                drawn["renew"] = _bar(scale, max(finish - datetime.timedelta(seconds=renew),
                                                 begin), finish, left, right)
                title += ", renews from %s" % iso(finish - datetime.timedelta(seconds=renew))
        add(cut(host) if first else "", host, label, title, row.get("status"), "certificate",
            **drawn)

    def crl_copy(host_label, host, entry):
        title = "%s CRL %s: %s, nextUpdate %s" % (host or "CA host", entry.get("path"),
                                                  entry.get("status"),
                                                  entry.get("next_update") or "none")
        drawn = {}
        if entry.get("next_update"):
            moment = parse_time(entry["next_update"])
            near = datetime.timedelta(seconds=(report.get("crl") or {}).get("near_seconds") or 0)
            drawn = {"marker": {"x": min(max(scale(moment), left), right)},
                     "renew": _bar(scale, moment - near, moment, left, right)}
        add(host_label, host, "crl.pem", title, entry.get("status"), "crl", **drawn)

    def group(host, fill):
        top = len(rows) * ROW
        fill()
        groups.append({"host": host, "y": top, "height": len(rows) * ROW - top})

    def ca_rows():
        for index, ca in enumerate(report.get("cas") or []):
            role = "signs" if ca.get("signing") else ("incoming" if ca.get("trusted")
                                                      else "retiring")
            drawn = {}
            if ca.get("not_after"):
                finish = parse_time(ca["not_after"])
                drawn = {"bar": _bar(scale, start, finish, left, right),
                         "cut_left": True, "cut_right": finish > end}
            add("CA host" if index == 0 else "", None, "%s (%s)" % (ca.get("name"), role),
                "CA %s: %s, notAfter %s" % (ca.get("name"), ca.get("subject"),
                                            ca.get("not_after")), "ca", "ca", **drawn)
        ca_crl = (report.get("crl") or {}).get("ca") or {}
        if ca_crl.get("path") or ca_crl.get("next_update"):
            crl_copy("" if report.get("cas") else "CA host", None, ca_crl)

    group(None, ca_rows)
    by_host = {}
    for row in report.get("certificates") or []:
        by_host.setdefault(row["host"], []).append(row)
    node_crls = (report.get("crl") or {}).get("nodes") or {}
    for host in sorted(report.get("hosts") or {}):

        def fill(host=host):
            facts = report["hosts"][host]
            if not facts.get("inspected"):
                add(cut(host), host, "not inspected", "%s: not inspected: %s"
                    % (host, facts.get("error")), "unreadable", "host")
                return
            mine = sorted(by_host.get(host) or [],
                          key=lambda r: (r.get("profile") is None, r.get("profile") or "",
                                         r.get("path") or ""))
            for index, row in enumerate(mine):
                certificate(host, index == 0, row)
            entry = node_crls.get(host) or {}
            if entry.get("next_update") or entry.get("error"):
                crl_copy("" if mine else cut(host), host, entry)
            if not rows or rows[-1]["host"] != host:
                add(cut(host), host, "no certificates", host + ": no zone certificates",
                    "missing", "host")

        group(host, fill)
    for index, row in enumerate(rows):
        row["y"] = index * ROW + ROW - 3
        row["top"] = index * ROW
    threshold = None
    fail_within = str(report.get("fail_within") or "")
    if fail_within and not fail_within.endswith("%"):
        seconds = _parse.parse_duration(fail_within, "trustzone_report_fail_within")
        x = scale(now + datetime.timedelta(seconds=seconds))
        threshold = {"x": x, "text": fail_within} if x <= right else None
    return {
        "width": int(right + RIGHT_PAD), "height": len(rows) * ROW, "row_height": ROW,
        "font": FONT, "label_width": LABEL_WIDTH, "host_x": HOST_X, "item_x": ITEM_X,
        "left": left, "right": right, "start": iso(start), "end": iso(end),
        "axis": {"height": AXIS_HEIGHT, "ticks": _ticks(start, end, scale)},
        "now": {"x": scale(now), "time": iso(now)}, "threshold": threshold,
        "phase": report.get("phase") or "unknown", "groups": groups, "rows": rows,
    }
