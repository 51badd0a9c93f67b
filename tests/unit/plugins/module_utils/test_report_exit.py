"""_report.failures: the findings that make report.yml exit non-zero (issue 19, part 2).

The report is built by ``fleet_report`` from the same synthetic node_info / ledger_info
results as test_report.py, with a fixed clock.
"""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _report as R
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.test_report import (
    HOUR, T, item, ledger_info, ledger_row, node_info)
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

D = "/etc/trustzone/prod"


def healthy():
    nodes = {"web1": node_info(item("server", fingerprint="a1"),
                               item("client", fingerprint="a2", days=20)),
             "web2": node_info(item("server", fingerprint="b1", days=100))}
    ledger = ledger_info([ledger_row("web1", "server", "a1"), ledger_row("web1", "client", "a2"),
                          ledger_row("web2", "server", "b1")])
    return nodes, ledger


def lines(report):
    return [f["line"] for f in report["failures"]]


def test_a_healthy_zone_has_no_failures_even_with_certificates_soon():
    nodes, ledger = healthy()
    report = R.fleet_report("prod", ["web1", "web2"], nodes, ledger, NOW)
    assert report["zones"]["prod"]["health"] == "warning"  # web1/client: 20 days, "soon"
    assert (report["fail_within"], report["failures"]) == ("7d", [])


def test_a_certificate_inside_the_threshold_fails_naming_host_and_certificate():
    nodes, ledger = healthy()
    report = R.fleet_report("prod", ["web1", "web2"], nodes, ledger, NOW, fail_within="21d")
    assert report["failures"] == [{
        "kind": "expiring", "host": "web1", "profile": "client", "path": D + "/client.crt",
        "line": "web1/client: %s/client.crt expires %s, 20d left (threshold 21d)"
                % (D, T(NOW + 20 * DAY))}]
    # exactly at the threshold is not inside it
    report = R.fleet_report("prod", ["web1", "web2"], nodes, ledger, NOW, fail_within="20d")
    assert report["failures"] == []


def test_a_percentage_threshold_is_a_share_of_each_certificate_lifetime():
    # one-day certificates: 7d would always fail; 25% of a day is 6 hours
    nodes = {"web1": node_info(item("server", fingerprint="a1", days=0.2,
                                    not_before=T(NOW - 0.8 * DAY)),
                               item("client", fingerprint="a2", days=0.5,
                                    not_before=T(NOW - 0.5 * DAY)))}
    ledger = ledger_info([ledger_row("web1", "server", "a1"), ledger_row("web1", "client", "a2")],
                         crl_next=3 * DAY)
    report = R.fleet_report("prod", ["web1"], nodes, ledger, NOW, fail_within="25%")
    assert lines(report) == ["web1/server: %s/server.crt expires %s, 4h left (threshold 25%% "
                             "of its lifetime, 6h)" % (D, T(NOW + 0.2 * DAY))]


@pytest.mark.parametrize("value", ["soon", "0%", "101%", "-1d", "0", "x%"])
def test_a_bad_threshold_is_an_error_naming_the_variable(value):
    nodes, ledger = healthy()
    with pytest.raises(TrustzoneError, match="trustzone_report_fail_within"):
        R.fleet_report("prod", ["web1"], nodes, ledger, NOW, fail_within=value)


def test_every_failing_condition_one_line_each_and_warnings_do_not_fail():
    nodes = {
        "web1": node_info(item("server", fingerprint="a1", days=-2),
                          item("client", exists=False),
                          item(None, kind="extra", fingerprint="rogue", days=-5,
                               chain_valid=False, key_match=None),
                          crl_next=-HOUR),
        "web2": {"failed": True, "msg": "web2: unreachable"},
        "web3": node_info(item("server", fingerprint="c1", key_match=False),
                          item("client", fingerprint="c2"), roots=["ee"], crl_next=2 * HOUR),
    }
    ledger = ledger_info([ledger_row("web1", "server", "a1"), ledger_row("web1", "client", "a2"),
                          ledger_row("web3", "server", "c1"),
                          ledger_row("web3", "client", "c2", status="revoked")],
                         cas=[{"name": "root", "fingerprint": "ff", "subject": "CN=root",
                               "not_after": T(NOW + 3 * DAY), "days_left": 3, "trusted": True,
                               "signing": True}])
    report = R.fleet_report("prod", ["web1", "web2", "web3", "web4"], nodes, ledger, NOW,
                            crl_near="3h")
    assert [(f["kind"], f["host"], f["profile"]) for f in report["failures"]] == [
        ("not_inspected", "web2", None), ("not_inspected", "web4", None),
        ("missing", "web1", "client"), ("expired", "web1", "server"),
        ("key_mismatch", "web3", "server"), ("revoked_in_use", "web3", "client"),
        ("crl_past", "web1", None), ("crl_near", "web3", None),
        ("ca_expiring", None, None)]
    assert lines(report) == [
        "web2: not inspected: web2: unreachable",
        "web4: not inspected: not inspected",
        "web1/client: %s/client.crt missing" % D,
        "web1/server: %s/server.crt expired %s" % (D, T(NOW - 2 * DAY)),
        "web3/server: %s/server.crt key_mismatch" % D,
        "web3/client: %s/client.crt revoked in use: revoked %s (key_compromise)"
        % (D, T(NOW - HOUR)),
        "web1: CRL %s/crl.pem past its nextUpdate %s" % (D, T(NOW - HOUR)),
        "web3: CRL %s/crl.pem within 3h of its nextUpdate %s" % (D, T(NOW + 2 * HOUR)),
        "CA root: CN=root expires %s, 3d left (threshold 7d)" % T(NOW + 3 * DAY)]
    # the rogue certificate (no profile), roots_differ, unknown_to_ledger: warnings only
    kinds = {f["kind"] for f in report["findings"]}
    assert {"unknown_to_ledger", "roots_differ"} <= kinds


def test_an_unreadable_ledger_or_ca_crl_fails():
    nodes, _ledger = healthy()
    report = R.fleet_report("prod", ["web1", "web2"], nodes,
                            {"failed": True, "msg": "ledger.db: damaged"}, NOW)
    assert lines(report) == ["CA host: the issuance ledger could not be read: ledger.db: "
                             "damaged"]
    ledger = ledger_info([ledger_row("web1", "server", "a1"), ledger_row("web1", "client", "a2"),
                          ledger_row("web2", "server", "b1")])
    ledger["crl"]["error"] = "crl.pem: not a CRL"
    report = R.fleet_report("prod", ["web1", "web2"], nodes, ledger, NOW)
    assert lines(report) == ["CA host: CRL /var/lib/trustzone/prod/crl.pem unreadable: "
                             "crl.pem: not a CRL"]
