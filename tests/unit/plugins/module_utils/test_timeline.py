"""_timeline: the HTML report's expiry timeline, laid out for 100 synthetic nodes (issue 19,
part 4): one row per certificate and CRL copy, grouped per host, labels that never overlap,
every mark inside the chart."""

from __future__ import annotations

import itertools

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _report as R
from ansible_collections.trustzone.pki.plugins.module_utils import _timeline as TL
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.test_report import (
    T, item, ledger_info, ledger_row, node_info)
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

HOSTS = ["node%03d.a-rather-long-domain.example.org" % i for i in range(100)]


def hundred_nodes():
    """The report of a zone of 100 nodes (two profiles and a CRL copy each), one of them
    not inspected, in the trust phase of a root rotation."""
    nodes, rows, windows = {}, [], {}
    for index, host in enumerate(HOSTS):
        server, client = "s%d" % index, "c%d" % index
        nodes[host] = node_info(item("server", fingerprint=server, days=10 + index * 3),
                                item("client", fingerprint=client, days=300),
                                crl_next=7 * DAY)
        rows += [ledger_row(host, "server", server), ledger_row(host, "client", client)]
        windows[host] = {"server": 30 * 86400, "client": 30 * 86400}
    nodes[HOSTS[7]] = {"failed": True, "msg": "unreachable"}
    ledger = ledger_info(rows)
    ledger["phase"] = "trust"
    ledger["cas"].append({"name": "next", "fingerprint": "ee", "subject": "CN=next",
                          "not_after": T(NOW + 7000 * DAY), "days_left": 7000,
                          "trusted": True, "signing": False})
    return R.fleet_report("prod", HOSTS, nodes, ledger, NOW, renew_windows=windows)


@pytest.fixture(scope="module")
def report():
    return hundred_nodes()


def test_one_row_per_certificate_and_crl_copy_grouped_per_host(report):
    tl = report["timeline"]
    # CA host: 2 CA certificates and the CA's CRL; 99 nodes with 2 certificates and a CRL
    # copy each; the node that could not be inspected: one row
    assert len(tl["rows"]) == 3 + 99 * 3 + 1
    assert [g["host"] for g in tl["groups"]] == [None] + sorted(HOSTS)
    assert sum(g["height"] for g in tl["groups"]) == tl["height"] == len(tl["rows"]) * TL.ROW
    assert [r["label"] for r in tl["rows"][:3]] == ["root (signs)", "next (incoming)",
                                                    "crl.pem"]
    first = [r for r in tl["rows"] if r["host"] == HOSTS[0]]
    assert [(r["label"], r["kind"], r["status"]) for r in first] == [
        ("client", "certificate", "ok"), ("server", "certificate", "soon"),
        ("crl.pem", "crl", "ok")]
    assert [r["host_label"] for r in first] == [TL.cut(HOSTS[0]), "", ""]
    assert [r["label"] for r in tl["rows"] if r["host"] == HOSTS[7]] == ["not inspected"]
    assert tl["phase"] == "trust"


def test_labels_never_overlap_and_stay_in_their_column(report):
    tl = report["timeline"]
    boxes = []
    for row in tl["rows"]:
        if row["host_label"]:
            boxes.append(TL.label_box(tl["host_x"], row["y"], row["host_label"]))
        boxes.append(TL.label_box(tl["item_x"], row["y"], row["label"]))
    assert len(boxes) == len(tl["rows"]) + 101  # every host named once, plus "CA host"
    for x0, _y0, x1, _y1 in boxes:
        assert 0 <= x0 and x1 <= tl["label_width"]
    for a, b in itertools.combinations(sorted(boxes, key=lambda b: b[1]), 2):
        if b[1] >= a[3]:
            continue  # b starts below the bottom of a
        assert a[2] <= b[0] or b[2] <= a[0], (a, b)
    ticks = tl["axis"]["ticks"]
    assert 2 <= len(ticks) <= TL.MAX_TICKS
    for a, b in zip(ticks, ticks[1:]):
        assert a["x"] + len(a["label"]) * TL.CHAR < b["x"]


def test_bars_renew_windows_and_now_are_inside_the_chart(report):
    tl = report["timeline"]
    left, right = tl["left"], tl["right"]
    assert left <= tl["now"]["x"] <= right and tl["now"]["time"] == T(NOW)
    assert left < tl["threshold"]["x"] < right and tl["threshold"]["text"] == "7d"
    drawn = [r for r in tl["rows"] if r["bar"]]
    assert len(drawn) == 2 + 99 * 2
    for row in drawn:
        drawn_bar = row["bar"]
        assert left <= drawn_bar["x"] and drawn_bar["x"] + drawn_bar["width"] <= right + 0.1
        if row["kind"] == "certificate":
            renew = row["renew"]
            assert drawn_bar["x"] <= renew["x"]
            assert renew["x"] + renew["width"] == pytest.approx(
                drawn_bar["x"] + drawn_bar["width"], abs=0.2)
    # the longest-lived root runs past the axis: cut, and said so
    assert [r["cut_right"] for r in tl["rows"][:2]] == [True, True]
    crls = [r for r in tl["rows"] if r["kind"] == "crl"]
    assert len(crls) == 100 and all(left <= r["marker"]["x"] <= right for r in crls)
    # the axis ends at the last notAfter of a leaf (node099's server: 10 + 99 * 3 days)
    assert tl["end"] == T(NOW + 307 * DAY)


def test_a_share_threshold_draws_no_line_and_an_empty_zone_still_lays_out():
    report = R.fleet_report("prod", [], {}, ledger_info([]), NOW, fail_within="20%")
    tl = report["timeline"]
    assert tl["threshold"] is None
    assert [r["label"] for r in tl["rows"]] == ["root (signs)", "crl.pem"]
    assert tl["axis"]["ticks"]
