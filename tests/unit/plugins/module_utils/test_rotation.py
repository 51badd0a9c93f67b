"""_rotation: the root-rotation state machine (plan), roots per phase, and the retire check.

Pure functions: no keys, no files. Roots are stand-in objects, since ``roots_for`` only
arranges them.
"""

from __future__ import annotations

import itertools

import pytest

from ansible_collections.trustzone.pki.plugins.filter import retire_offenders as F
from ansible_collections.trustzone.pki.plugins.filter import retire_to_inspect as FI
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as R
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import make_root

OLD = "a" * 64
NEW = "b" * 64
OTHER = "c" * 64

STATES = {
    "stable": None,
    "trust": {"phase": "trust", "old": OLD, "new": NEW, "started": "2025-06-01T12:00:00Z"},
    "use": {"phase": "use", "old": OLD, "new": NEW, "started": "2025-06-01T12:00:00Z"},
}


def unchanged(phase):
    return {"phase_before": phase, "phase_after": phase, "create_next": False,
            "promote": False, "changed": False}


# (phase, action, due) -> the plan, or the start of the error message. Every combination of
# the three phases, four actions and both values of ``due`` is listed: 24 cases.
EXPECTED = {
    ("stable", "none", True): unchanged("stable"),
    ("stable", "none", False): unchanged("stable"),
    ("stable", "trust", True): {"phase_before": "stable", "phase_after": "trust",
                                "create_next": True, "promote": False, "changed": True},
    ("stable", "trust", False): unchanged("stable"),  # not due: no new rotation
    ("stable", "use", True): unchanged("stable"),  # nothing under way to use
    ("stable", "use", False): unchanged("stable"),
    ("stable", "retire", True): unchanged("stable"),  # a finished rotation re-run
    ("stable", "retire", False): unchanged("stable"),
    ("trust", "none", True): unchanged("trust"),
    ("trust", "none", False): unchanged("trust"),
    ("trust", "trust", True): unchanged("trust"),  # the next root is made only once
    ("trust", "trust", False): unchanged("trust"),
    ("trust", "use", True): {"phase_before": "trust", "phase_after": "use",
                             "create_next": False, "promote": False, "changed": True},
    ("trust", "use", False): {"phase_before": "trust", "phase_after": "use",
                              "create_next": False, "promote": False, "changed": True},
    ("trust", "retire", True): "cannot retire the old root: the next root does not sign yet",
    ("trust", "retire", False): "cannot retire the old root: the next root does not sign yet",
    ("use", "none", True): unchanged("use"),
    ("use", "none", False): unchanged("use"),
    ("use", "trust", True): unchanged("use"),  # forcing does not restart a rotation under way
    ("use", "trust", False): unchanged("use"),
    ("use", "use", True): unchanged("use"),
    ("use", "use", False): unchanged("use"),
    ("use", "retire", True): {"phase_before": "use", "phase_after": "stable",
                              "create_next": False, "promote": True, "changed": True},
    ("use", "retire", False): {"phase_before": "use", "phase_after": "stable",
                               "create_next": False, "promote": True, "changed": True},
}


def test_the_table_covers_every_combination():
    assert set(EXPECTED) == set(itertools.product(R.PHASES, R.ACTIONS, (True, False)))


@pytest.mark.parametrize("phase,action,due", sorted(EXPECTED))
def test_plan(phase, action, due):
    expected = EXPECTED[(phase, action, due)]
    state = STATES[phase]
    if isinstance(expected, str):
        with pytest.raises(TrustzoneError) as err:
            R.plan(state, action, due=due)
        assert str(err.value).startswith(expected)
        assert "Fix: run the use phase first" in str(err.value)
    else:
        assert R.plan(state, action, due=due) == expected


@pytest.mark.parametrize("phase,action,due", sorted(
    k for k, v in EXPECTED.items() if not isinstance(v, str)))
def test_plan_never_goes_backwards_and_only_retire_completes(phase, action, due):
    step = R.plan(STATES[phase], action, due=due)
    order = {"stable": 0, "trust": 1, "use": 2}
    if step["promote"]:
        assert (phase, step["phase_after"]) == ("use", "stable")
    else:
        assert order[step["phase_after"]] >= order[phase]
        # a step moves at most one phase on
        assert order[step["phase_after"]] - order[phase] <= 1
    assert step["changed"] == (step["phase_after"] != phase)


@pytest.mark.parametrize("phase", R.PHASES)
def test_plan_repeating_a_step_is_a_no_op(phase):
    """After a step, the same step from the new phase changes nothing (an interrupted run that
    already got that far), except retire, which is a no-op once stable anyway."""
    for action in ("trust", "use", "retire"):
        try:
            first = R.plan(STATES[phase], action, due=True)
        except TrustzoneError:
            continue
        after = STATES[first["phase_after"]]
        again = R.plan(after, action, due=True)
        assert again["changed"] is False
        assert again["phase_after"] == first["phase_after"]


def test_plan_due_defaults_to_true():
    assert R.plan(None, "trust")["create_next"] is True


def test_plan_empty_state_is_stable():
    assert R.plan({}, "trust", due=True)["phase_before"] == "stable"
    assert R.phase_of({}) == "stable"
    assert R.phase_of(None) == "stable"


@pytest.mark.parametrize("action", ["rotate", "", None, "Trust", "promote"])
def test_plan_refuses_unknown_actions(action):
    with pytest.raises(TrustzoneError) as err:
        R.plan(None, action)
    assert "unknown rotation step" in str(err.value)
    assert "none, trust, use, retire" in str(err.value)


@pytest.mark.parametrize("state", [
    {"phase": "retire"}, {"phase": "stable"}, {"phase": None}, {"phase": "USE"},
    {"old": OLD, "new": NEW}, {"phase": ["use"]},
])
def test_unknown_phase_in_the_state_is_refused(state):
    with pytest.raises(TrustzoneError) as err:
        R.plan(state, "none")
    assert "unknown rotation phase" in str(err.value)
    assert "rotation.json" in str(err.value)
    with pytest.raises(TrustzoneError):
        R.phase_of(state)


def test_unknown_action_is_reported_before_the_state_is_read():
    with pytest.raises(TrustzoneError) as err:
        R.plan({"phase": "bogus"}, "bogus")
    assert "unknown rotation step" in str(err.value)


# --------------------------------------------------------------------------- roots_for

CUR, NXT = object(), object()


@pytest.mark.parametrize("phase,expected", [
    ("stable", ([CUR], CUR)),
    ("trust", ([CUR, NXT], CUR)),
    ("use", ([CUR, NXT], NXT)),
])
def test_roots_for_each_phase(phase, expected):
    trusted, issuer = R.roots_for(phase, CUR, NXT)
    assert trusted == expected[0] and issuer is expected[1]
    assert trusted[0] is CUR  # the current root is trusted until it is retired


@pytest.mark.parametrize("phase", R.PHASES)
def test_roots_for_without_a_next_root_is_the_current_root_alone(phase):
    # also the CA after promotion, before rotation.json is removed (phase use, no next)
    assert R.roots_for(phase, CUR, None) == ([CUR], CUR)


def test_roots_for_returns_a_new_list_every_time():
    a, _b = R.roots_for("trust", CUR, NXT)
    a.append("x")
    assert R.roots_for("trust", CUR, NXT)[0] == [CUR, NXT]


# --------------------------------------------------------------------------- retire_offenders

def ident(root):
    return {"state": "valid", "reasons": [], "root_fingerprint": root,
            "serial": "1", "fingerprint": "f" * 64}


HOSTS = ["node1", "node2", "node3"]


def test_retire_offenders_all_good():
    by_host = {h: {"server": ident(NEW), "client": ident(NEW)} for h in HOSTS}
    assert R.retire_offenders(HOSTS, by_host, NEW) == []


def test_retire_offenders_names_every_leaf_on_the_old_root():
    by_host = {h: {"server": ident(NEW), "client": ident(NEW)} for h in HOSTS}
    by_host["node3"] = {"server": ident(OLD), "client": ident(OLD)}
    assert R.retire_offenders(HOSTS, by_host, NEW) == [
        "node3/client: chains to %s" % OLD[:16],
        "node3/server: chains to %s" % OLD[:16],
    ]


def test_retire_offenders_not_inspected_hosts_block_retiring():
    by_host = {"node1": {"server": ident(NEW)}, "node2": None}
    assert R.retire_offenders(HOSTS, by_host, NEW) == [
        "node2: not inspected in this run (unreachable or left out by --limit)",
        "node3: not inspected in this run (unreachable or left out by --limit)",
    ]


@pytest.mark.parametrize("facts", [ident(None), {"state": "renew", "reasons": []}, None, {}])
def test_retire_offenders_leaf_without_a_current_root_is_an_offender(facts):
    # a missing, unreadable or foreign certificate: its facts have no (or a None) root
    by_host = {"node1": {"server": facts}}
    assert R.retire_offenders(["node1"], by_host, NEW) == [
        "node1/server: chains to no current root"]


def test_retire_offenders_any_other_root_is_an_offender():
    by_host = {"node1": {"server": ident(OTHER), "client": ident(NEW)}}
    assert R.retire_offenders(["node1"], by_host, NEW) == [
        "node1/server: chains to %s" % OTHER[:16]]


def test_retire_offenders_compares_whole_fingerprints_not_prefixes():
    almost = NEW[:16] + "0" * 48
    by_host = {"node1": {"server": ident(almost)}}
    assert R.retire_offenders(["node1"], by_host, NEW) == [
        "node1/server: chains to %s" % NEW[:16]]


def test_retire_offenders_is_sorted_and_mixes_both_kinds():
    by_host = {"b": {"z": ident(OLD), "a": ident(OLD), "m": ident(NEW)}, "a": None}
    assert R.retire_offenders(["c", "b", "a"], by_host, NEW) == [
        "a: not inspected in this run (unreachable or left out by --limit)",
        "b/a: chains to %s" % OLD[:16],
        "b/z: chains to %s" % OLD[:16],
        "c: not inspected in this run (unreachable or left out by --limit)",
    ]


def test_retire_offenders_host_with_no_identities_holds_nothing_old():
    assert R.retire_offenders(["node1"], {"node1": {}}, NEW) == []


def test_retire_offenders_only_expected_hosts_count():
    # a host outside the zone's node group (e.g. the CA host) is not asked about
    by_host = {"node1": {"server": ident(NEW)}, "ca": {"server": ident(OLD)}}
    assert R.retire_offenders(["node1"], by_host, NEW) == []


# --------------------------------------------------------------------------- the filter glue

def test_filter_reads_the_recorded_identities_from_hostvars():
    hostvars = {
        "node1": {"__trustzone_rotate_identities": {"server": ident(NEW)}},
        "node2": {"__trustzone_rotate_identities": {"server": ident(OLD)}},
        "node3": {"other": 1},  # not inspected in this run
    }
    assert F.retire_offenders(HOSTS, hostvars, NEW) == [
        "node2/server: chains to %s" % OLD[:16],
        "node3: not inspected in this run (unreachable or left out by --limit)",
    ]
    assert F.FilterModule().filters()["retire_offenders"] is F.retire_offenders
    assert FI.FilterModule().filters()["retire_to_inspect"] is FI.retire_to_inspect


@pytest.mark.parametrize("value", [None, "", [], "server", 0])
def test_filter_treats_anything_but_a_dict_as_not_inspected(value):
    hostvars = {"node1": {"__trustzone_rotate_identities": value}}
    assert F.retire_offenders(["node1"], hostvars, NEW) == [
        "node1: not inspected in this run (unreachable or left out by --limit)"]


def test_filter_missing_host_and_custom_variable():
    hostvars = {"node1": {"mine": {"server": ident(NEW)}}}
    assert F.retire_offenders(["node1", "node9"], hostvars, NEW, var="mine") == [
        "node9: not inspected in this run (unreachable or left out by --limit)"]


# --------------------------------------------------------------------------- after the use phase
#
# rotate_root.yml does not look at every node again before retiring when this run's use phase
# already did: what each node holds follows from the use phase's own results (its node call,
# what the CA signed for it, what it installed). A node whose use phase did not finish is
# inspected as before.

def use_result(identities, requests=()):
    return {"changed": bool(requests), "identities": identities,
            "requests": {name: {"csr": "x", "reasons": [{"reason": "issuer"}]}
                         for name in requests}, "installed": {}}


def test_use_phase_holdings_unrequested_leaves_keep_their_root():
    node = use_result({"server": ident(NEW), "client": ident(OLD)})
    assert R.use_phase_holdings(node, None, {}) == {
        "server": {"root_fingerprint": NEW}, "client": {"root_fingerprint": OLD}}


def test_use_phase_holdings_installed_leaves_chain_to_what_the_ca_signed():
    node = use_result({"server": ident(OLD), "client": ident(OLD)}, requests=["server", "client"])
    installed = {"changed": True, "installed": ["client", "server"]}
    assert R.use_phase_holdings(node, installed, {"server": NEW, "client": OLD}) == {
        "server": {"root_fingerprint": NEW}, "client": {"root_fingerprint": OLD}}
    # signed, installed, but the CA's certificate chains to no current root
    assert R.use_phase_holdings(node, installed, {"server": NEW}) == {
        "server": {"root_fingerprint": NEW}, "client": {"root_fingerprint": None}}


@pytest.mark.parametrize("node,installed", [
    (None, None),
    ({"failed": True, "msg": "boom"}, None),
    ({"skipped": True}, None),
    ({"identities": "server"}, None),
    # requested, but nothing installed: a failed or skipped install, check mode, a refusal
    (use_result({"server": ident(OLD)}, requests=["server"]), None),
    (use_result({"server": ident(OLD)}, requests=["server"]), {"failed": True}),
    (use_result({"server": ident(OLD)}, requests=["server"]), {"installed": []}),
    (use_result({"server": ident(OLD), "client": ident(OLD)}, requests=["server", "client"]),
     {"installed": ["server"]}),
    (use_result({"server": ident(OLD)}, requests=["server"]), {"skipped": True}),
])
def test_use_phase_holdings_unfinished_use_phase_is_unknown(node, installed):
    assert R.use_phase_holdings(node, installed, {"server": NEW, "client": NEW}) is None


def signed_by(zone, keys, issuer_cert, issuer_key, label):
    cert = zone.leaf(keys.get("p256#%s" % label).public_key(), cn=label,
                     issuer_cert=issuer_cert, issuer_key=issuer_key)
    return {"certificate": C.certificate_pem(cert), "chain": [], "fingerprint": C.fingerprint(cert)}


@pytest.fixture(scope="module")
def two_roots(keys, zone):
    """The zone's root (old) and a next root (new), as a rotation has them."""
    new_key = keys.get("p384#next")
    new = make_root(new_key, unique="fedcba9876543210")
    return {"old": (zone.cert, zone.key), "new": (new, new_key),
            "pems": [C.certificate_pem(zone.cert), C.certificate_pem(new)]}


def use_hostvars(zone, keys, two_roots, issuer="new"):
    """node1 renewed both leaves in this run's use phase (signed by ``issuer``); node2 was on
    the new root already; node3 was not in the play."""
    cert, key = two_roots[issuer]
    new_fp = C.fingerprint(two_roots["new"][0])
    signed = {"changed": True, "refused": {}, "certificates": {"node1": {
        "server": signed_by(zone, keys, cert, key, "n1s"),
        "client": signed_by(zone, keys, cert, key, "n1c")}}}
    return {
        "node1": {"__trustzone_certs_node": use_result(
            {"server": ident(OLD), "client": ident(OLD)}, requests=["server", "client"]),
            "__trustzone_certs_signed": signed,
            "__trustzone_certs_installed": {"changed": True, "installed": ["client", "server"]}},
        "node2": {"__trustzone_certs_node": use_result(
            {"server": ident(new_fp), "client": ident(new_fp)}),
            "__trustzone_certs_signed": signed},
        "node3": {},
    }, new_fp


def test_filter_after_the_use_phase_needs_no_second_look(zone, keys, two_roots):
    hostvars, new_fp = use_hostvars(zone, keys, two_roots)
    assert F.retire_offenders(HOSTS, hostvars, new_fp, roots=two_roots["pems"]) == [
        "node3: not inspected in this run (unreachable or left out by --limit)"]
    assert FI.retire_to_inspect(HOSTS, hostvars) == ["node3"]
    # without the CA's roots the use phase's results are not read: the old behaviour
    assert F.retire_offenders(HOSTS, hostvars, new_fp) == [
        "%s: not inspected in this run (unreachable or left out by --limit)" % h for h in HOSTS]


def test_filter_after_the_use_phase_names_a_leaf_still_on_the_old_root(zone, keys, two_roots):
    # the CA signed node1's renewals with the old root: retiring it would cut node1 off
    hostvars, new_fp = use_hostvars(zone, keys, two_roots, issuer="old")
    old16 = C.fingerprint(two_roots["old"][0])[:16]
    assert F.retire_offenders(HOSTS[:2], hostvars, new_fp, roots=two_roots["pems"]) == [
        "node1/client: chains to %s" % old16, "node1/server: chains to %s" % old16]
    # a leaf the use phase did not renew and that is still on the old root
    hostvars["node2"]["__trustzone_certs_node"]["identities"]["client"] = ident(OLD)
    assert "node2/client: chains to %s" % OLD[:16] in F.retire_offenders(
        HOSTS[:2], hostvars, new_fp, roots=two_roots["pems"])
    # a certificate from another CA altogether chains to no current root
    hostvars, new_fp = use_hostvars(zone, keys, two_roots)
    stranger_key = keys.get("p384#stranger")
    stranger = make_root(stranger_key, zone="other", unique="1111111111111111")
    hostvars["node1"]["__trustzone_certs_signed"]["certificates"]["node1"]["server"] = \
        signed_by(zone, keys, stranger, stranger_key, "n1x")
    assert F.retire_offenders(["node1"], hostvars, new_fp, roots=two_roots["pems"]) == [
        "node1/server: chains to no current root"]


def test_filter_a_node_whose_install_did_not_finish_is_inspected_again(zone, keys, two_roots):
    hostvars, new_fp = use_hostvars(zone, keys, two_roots)
    hostvars["node1"]["__trustzone_certs_installed"] = {"failed": True, "msg": "refused"}
    assert FI.retire_to_inspect(HOSTS, hostvars) == ["node1", "node3"]
    assert F.retire_offenders(["node1"], hostvars, new_fp, roots=two_roots["pems"]) == [
        "node1: not inspected in this run (unreachable or left out by --limit)"]
    # the read-only look at it (the retire phase's inspect play) decides then
    hostvars["node1"]["__trustzone_rotate_identities"] = {"server": ident(new_fp),
                                                          "client": ident(OLD)}
    assert FI.retire_to_inspect(HOSTS, hostvars) == ["node3"]
    assert F.retire_offenders(["node1"], hostvars, new_fp, roots=two_roots["pems"]) == [
        "node1/client: chains to %s" % OLD[:16]]


def test_filter_follows_the_chain_of_a_zone_with_an_intermediate(zone, keys, two_roots):
    """With an intermediate, the CA's result carries it as the chain: the renewed leaf chains
    to the root above the intermediate (the next root's next-intermediate in phase use)."""
    hostvars, new_fp = use_hostvars(zone, keys, two_roots)
    new, new_key = two_roots["new"]
    int_key = keys.get("p256#next-intermediate")
    inter = C.build_ca_certificate(
        int_key, C.zone_name_attributes("prod", "trustzone prod issuing CA"),
        new.not_valid_before_utc, new.not_valid_after_utc, path_length=0,
        issuer_cert=new, issuer_key=new_key)
    item = signed_by(zone, keys, inter, int_key, "n1i")
    item["chain"] = [C.certificate_pem(inter)]
    certificates = hostvars["node1"]["__trustzone_certs_signed"]["certificates"]["node1"]
    certificates["server"] = certificates["client"] = item
    assert F.retire_offenders(["node1"], hostvars, new_fp, roots=two_roots["pems"]) == []
    # without the intermediate the leaf reaches no current root
    item["chain"] = []
    assert F.retire_offenders(["node1"], hostvars, new_fp, roots=two_roots["pems"]) == [
        "node1/client: chains to no current root", "node1/server: chains to no current root"]


def test_a_node_rolled_back_in_the_use_phase_must_be_looked_at_again():
    # issue 21: the install went through, then the probe failed and the node was put back on
    # its previous (old-root) leaves; the use phase's own results no longer say what it holds
    node = use_result({"server": ident(OLD), "client": ident(OLD)}, requests=["server", "client"])
    installed = {"changed": True, "installed": ["client", "server"]}
    assert R.use_phase_holdings(node, installed, {"server": NEW, "client": NEW}) is not None
    for rolled_back in ({"changed": True, "rolled_back": ["server"]},
                        {"failed": True, "msg": "there is no previous certificate"}):
        assert R.use_phase_holdings(node, installed, {"server": NEW, "client": NEW},
                                    rolled_back) is None
    # a rollback task that did not run (the probe passed) changes nothing
    assert R.use_phase_holdings(node, installed, {"server": NEW, "client": NEW},
                                {"skipped": True}) is not None
