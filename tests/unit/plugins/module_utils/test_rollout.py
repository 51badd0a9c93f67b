"""_rollout: the rollout plan, every pure function, with a fixed clock.

Moved from test_report.py when the rollout plan left _report.py for _rollout.py.
"""

from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _report as R
from ansible_collections.trustzone.pki.plugins.module_utils import _rollout as RO
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

HOUR = datetime.timedelta(hours=1)
T = R.iso  # NOW -> '2025-06-01T12:00:00Z'


# --------------------------------------------------------------------------- rollout plan

ROOT = {"fingerprint": "a" * 64, "subject": "CN=old", "not_after": "2030-01-01T00:00:00Z",
        "days_left": 1000}
NEXT = {"fingerprint": "b" * 64, "subject": "CN=new", "not_after": "2035-01-01T00:00:00Z",
        "days_left": 3000}


@pytest.mark.parametrize("phase, nxt, states", [
    ("stable", None, [("a", "current")]),
    ("trust", NEXT, [("a", "current"), ("b", "incoming")]),
    ("use", NEXT, [("b", "current"), ("a", "retiring")]),
])
def test_root_states(phase, nxt, states):
    got = RO.root_states({"phase": phase, "root": ROOT, "next": nxt})
    assert [(r["fingerprint"][0], r["state"]) for r in got] == states
    assert got[0]["subject"] in ("CN=old", "CN=new")


def test_root_states_without_a_ca():
    assert RO.root_states(None) == []
    assert RO.root_states({"phase": "stable"}) == []


def request(*reasons):
    return {"csr": None, "reasons": [{"reason": r, "detail": "because %s" % r} for r in reasons]}


def node_result(requests=None, added=(), removed=(), files=(), zone_dir="/etc/trustzone/prod",
                trust=True):
    result = {"changed": bool(requests or files), "dir": zone_dir, "identities": {},
              "requests": requests or {}, "files": list(files)}
    if trust:
        result["trust"] = {"added": list(added), "removed": list(removed), "kept": [],
                           "rebuilt": bool(added or removed)}
    return result


CA = {"changed": True, "phase": "stable", "root": ROOT, "next": None, "created": False,
      "intermediate": None, "rotation": {"phase_before": "stable", "phase_after": "stable",
                                         "create_next": False, "promote": False,
                                         "changed": False},
      "crl_next_update": T(NOW + 7 * DAY), "crl_signed": "next update 2025-06-01T13:00:00Z is near"}


def known_plan(**kw):
    nodes = {
        "node1": node_result({"client": request("key_mismatch")}),
        "node2": node_result({"server": request("expiring"),
                              "client": request("missing_certificate")},
                             files=["/etc/trustzone/prod/crl.pem"]),
        "node3": node_result({"server": request("missing_key", "missing_certificate"),
                              "client": request("missing_key", "missing_certificate")},
                             added=["trustzone-prod-aaaaaaaaaaaaaaaa.crt"],
                             files=["/etc/trustzone/prod/", "/etc/trustzone/prod/roots.pem",
                                    "/etc/trustzone/prod/crl.pem"]),
        "node4": node_result(),
        "node5": {"failed": True, "msg": "boom"},
        "node6": {"unreachable": True, "msg": "ssh: no route"},
    }
    args = dict(signed={"changed": True, "refused": {"node2": ["profile x: no"]},
                        "would_issue": {}},
                reload={"node1": {"services": ["nginx"], "commands": [["systemctl", "kick"]]},
                        "node2": {"services": [], "commands": ["touch /x"]}})
    args.update(kw)
    return RO.rollout_plan("prod", ["node1", "node2", "node3", "node4", "node5", "node6",
                                    "node7"], nodes, CA, NOW, **args)


def test_rollout_plan_counts_exactly():
    plan = known_plan()
    assert plan["certificates"]["total"] == 5
    assert (plan["certificates"]["issue"], plan["certificates"]["renew"]) == (3, 2)
    assert plan["certificates"]["by_reason"] == {
        "expiring": 1, "key_mismatch": 1, "missing_certificate": 3, "missing_key": 2}
    assert [(i["host"], i["profile"], i["action"], i["reasons"])
            for i in plan["certificates"]["items"]] == [
        ("node1", "client", "renew", ["key_mismatch"]),
        ("node2", "client", "issue", ["missing_certificate"]),
        ("node2", "server", "renew", ["expiring"]),
        ("node3", "client", "issue", ["missing_key", "missing_certificate"]),
        ("node3", "server", "issue", ["missing_key", "missing_certificate"])]
    assert plan["certificates"]["items"][0]["details"] == ["because key_mismatch"]
    assert plan["hosts"] == {
        "inventory": ["node1", "node2", "node3", "node4", "node5", "node6", "node7"],
        "inspected": ["node1", "node2", "node3", "node4"], "not_inspected": ["node7"],
        "failed": {"node5": "boom", "node6": "ssh: no route"}}
    assert plan["reload"] == {"hosts": ["node1", "node2", "node3"], "by_host": {
        "node1": {"services": ["nginx"], "commands": ["systemctl kick"]},
        "node2": {"services": [], "commands": ["touch /x"]},
        "node3": {"services": [], "commands": []}}}
    assert plan["trust"] == {"hosts": ["node3"], "by_host": {"node3": {
        "added": ["trustzone-prod-aaaaaaaaaaaaaaaa.crt"], "removed": [], "roots_bundle": True}}}
    assert plan["crl_distribution"] == {"hosts": ["node2", "node3"]}
    assert plan["refused"] == {"node2": ["profile x: no"]}
    assert plan["ca"] == {"error": None, "root_created": False,
                          "roots": [dict(ROOT, state="current")], "intermediate": None,
                          "phase": "stable", "rotation": CA["rotation"]}
    assert plan["crl"] == {"next_update": "2025-06-08T12:00:00Z", "status": "ok",
                           "would_sign": "next update 2025-06-01T13:00:00Z is near"}
    assert (plan["zone"], plan["generated_at"], plan["check_mode"]) == (
        "prod", "2025-06-01T12:00:00Z", True)


def test_rollout_plan_merges_the_trust_roles_own_result():
    nodes = {"node1": node_result(trust=False)}
    trust = {"node1": {"changed": True, "trust": {"added": ["new.crt"], "removed": ["old.crt"]},
                       "files": ["/etc/trustzone/prod/roots.pem"]}}
    plan = RO.rollout_plan("prod", ["node1"], nodes, CA, NOW, trust_results=trust)
    assert plan["trust"]["by_host"] == {"node1": {"added": ["new.crt"], "removed": ["old.crt"],
                                                  "roots_bundle": True}}
    # a skipped trust result (site.yml defers the trust role) is ignored
    plan = RO.rollout_plan("prod", ["node1"], nodes, CA, NOW,
                           trust_results={"node1": {"skipped": True, "changed": False}})
    assert plan["trust"] == {"hosts": [], "by_host": {}}


def test_rollout_plan_without_a_ca_result_and_a_new_zone():
    plan = RO.rollout_plan("prod", [], {}, {"failed": True, "msg": "wrong passphrase"}, NOW)
    assert plan["ca"] == {"error": "wrong passphrase", "root_created": False, "roots": [],
                          "intermediate": None, "phase": None, "rotation": None}
    assert plan["crl"] == {"next_update": None, "status": None, "would_sign": None}
    assert plan["certificates"] == {"total": 0, "issue": 0, "renew": 0, "by_reason": {},
                                    "items": []}
    plan = RO.rollout_plan("prod", [], {}, dict(CA, created=True), NOW)
    assert plan["ca"]["root_created"] is True


def test_rollout_plan_during_a_rotation():
    ca = dict(CA, phase="use", next=NEXT, crl_next_update=T(NOW - HOUR), crl_signed=None)
    plan = RO.rollout_plan("prod", [], {}, ca, NOW, crl_near="2h")
    assert [(r["state"], r["fingerprint"][0]) for r in plan["ca"]["roots"]] == [
        ("current", "b"), ("retiring", "a")]
    assert plan["crl"]["status"] == "past"


def test_plan_lines():
    lines = RO.plan_lines(known_plan())
    assert lines == [
        "Zone prod: what this run would do on 7 node(s) (4 inspected)",
        "Certificates: 5 (3 issued, 2 renewed)",
        "  why: expiring 1, key_mismatch 1, missing_certificate 3, missing_key 2",
        "  node1/client: renew (key_mismatch)",
        "  node2/client: issue (missing_certificate)",
        "  node2/server: renew (expiring)",
        "  node3/client: issue (missing_key, missing_certificate)",
        "  node3/server: issue (missing_key, missing_certificate)",
        "Reload: node1 (nginx, systemctl kick), node2 (touch /x), "
        "node3 (no reload configured)",
        "Trust stores change: node3 (+1 anchor, roots.pem)",
        "CRL copies change: node2, node3",
        "Root current: aaaaaaaaaaaaaaaa (CN=old, 1000 days left)",
        "Rotation phase: stable",
        "CRL next update: 2025-06-08T12:00:00Z (ok); would be signed again: next update "
        "2025-06-01T13:00:00Z is near",
        "Refused for node2: profile x: no",
        "Failed: node5 (boom), node6 (ssh: no route)",
        "Not inspected in this run: node7",
    ]


def test_plan_lines_quiet_zone_and_ca_error():
    plan = RO.rollout_plan("prod", ["node1"], {"node1": node_result()},
                           dict(CA, created=True, crl_signed=None,
                                intermediate={"fingerprint": "c" * 64, "days_left": 1800}),
                           NOW)
    assert RO.plan_lines(plan) == [
        "Zone prod: what this run would do on 1 node(s) (1 inspected)",
        "Certificates: 0 (0 issued, 0 renewed)",
        "Reload: none",
        "Trust stores change: none",
        "CRL copies change: none",
        "Root: would be created",
        "Root current: aaaaaaaaaaaaaaaa (CN=old, 1000 days left)",
        "Intermediate: cccccccccccccccc (1800 days left)",
        "Rotation phase: stable",
        "CRL next update: 2025-06-08T12:00:00Z (ok)",
    ]
    plan = RO.rollout_plan("prod", [], {}, None, NOW)
    assert "CA: the CA was not inspected" in RO.plan_lines(plan)


def test_outputs_are_plain_json():
    plan = known_plan()
    assert json.loads(json.dumps(plan)) == plan


# --------------------------------------------------------------------------- several phases

def test_merge_results_unites_the_phases_of_a_run():
    first = node_result({"server": request("issuer")}, added=["new.crt"],
                        files=["/etc/trustzone/prod/roots.pem"])
    second = node_result({"client": request("expiring")}, removed=["old.crt"])
    third = node_result()
    merged = RO.merge_results([first, None, {"skipped": True}, second, third])
    assert sorted(merged["requests"]) == ["client", "server"]
    assert merged["files"] == ["/etc/trustzone/prod/roots.pem"]
    assert merged["trust"] == {"added": ["new.crt"], "removed": ["old.crt"]}
    # a later request for the same profile replaces the earlier one
    later = node_result({"server": request("expired")})
    assert RO.merge_results([first, later])["requests"]["server"]["reasons"][0]["reason"] == \
        "expired"


def test_merge_results_failures_and_nothing():
    failed = {"failed": True, "msg": "boom"}
    assert RO.merge_results([node_result(), failed]) is failed
    assert RO.merge_results([failed, {"skipped": True}]) is failed
    assert RO.merge_results([None, {"skipped": True}]) is None
    assert RO.merge_results([]) is None
    # a trust role result has no requests; none are invented
    assert "requests" not in RO.merge_results([{"changed": True, "files": [],
                                               "trust": {"added": ["a"], "removed": []}}])


def test_merge_ca_results_keeps_the_step_that_changes_something():
    trust_step = dict(CA, phase="trust", next=NEXT, crl_signed="the zone's CAs changed",
                      rotation=dict(CA["rotation"], phase_after="trust", changed=True,
                                    create_next=True))
    later = dict(CA, crl_signed=None, crl_next_update=T(NOW + 6 * DAY))
    merged = RO.merge_ca_results([trust_step, later, later])
    assert (merged["phase"], merged["next"], merged["crl_signed"], merged["crl_next_update"],
            merged["created"]) == ("trust", NEXT, "the zone's CAs changed",
                                   T(NOW + 6 * DAY), False)
    assert RO.merge_ca_results([later])["phase"] == "stable"
    assert RO.merge_ca_results([trust_step, {"failed": True, "msg": "x"}])["failed"] is True
    assert RO.merge_ca_results([None]) is None


def test_rollout_plan_of_a_rotation_sees_every_phase():
    use_step = dict(CA, phase="use", next=NEXT, crl_signed=None,
                    rotation=dict(CA["rotation"], phase_before="trust", phase_after="use",
                                  changed=True))
    history = {
        "node1": [{"node": None, "trust": node_result(added=["new.crt"], trust=True),
                   "ca": None},
                  {"node": node_result({"server": request("issuer")}), "trust": None,
                   "ca": None}],
        "ca": [{"ca": use_step, "node": None, "trust": None}],
    }
    final_ca = dict(CA, crl_signed=None)
    plan = RO.rollout_plan("prod", ["node1"], {"node1": node_result()}, final_ca, NOW,
                           trust_results={"node1": node_result()}, history=history)
    assert [(i["host"], i["profile"], i["reasons"]) for i in plan["certificates"]["items"]] \
        == [("node1", "server", ["issuer"])]
    assert plan["trust"]["by_host"] == {"node1": {"added": ["new.crt"], "removed": [],
                                                  "roots_bundle": False}}
    assert [(r["state"], r["fingerprint"][0]) for r in plan["ca"]["roots"]] == [
        ("current", "b"), ("retiring", "a")]
    assert "Rotation phase: use (this run: trust -> use)" in RO.plan_lines(plan)


def test_rollout_plan_reloads_a_host_whose_crl_alone_changes():
    # issue 14: a node whose crl.pem changed reloads what reads it, certificates or not
    crl = node_result(files=["/etc/trustzone/prod/crl.pem"])
    crl["crl_changed"] = True
    mode_only = node_result(files=["/etc/trustzone/prod/crl.pem"])
    mode_only["crl_changed"] = False  # crl.pem's mode put right: not a new CRL
    by_trust = node_result()
    plan = RO.rollout_plan(
        "prod", ["node1", "node2", "node3"], {"node1": crl, "node2": mode_only,
                                              "node3": by_trust}, CA, NOW,
        trust_results={"node3": {"changed": True, "crl_changed": True, "files": []}},
        reload={"node1": {"services": ["nginx"], "commands": []},
                "node2": {"services": ["nginx"], "commands": []},
                "node3": {"services": [], "commands": [["nginx", "-s", "reload"]]}})
    assert plan["reload"] == {"hosts": ["node1", "node3"], "by_host": {
        "node1": {"services": ["nginx"], "commands": []},
        "node3": {"services": [], "commands": ["nginx -s reload"]}}}
    assert plan["certificates"]["total"] == 0
