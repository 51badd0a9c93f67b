"""site.yml's check round (module_utils/_zonecheck.py): when a run may end after it, and the
controller's cache of the CA outputs it checks the nodes against."""

from __future__ import annotations

import os

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _zonecheck as ZC

OUT = {"roots": ["R1"], "issuer": "I1", "crl": "C1"}
FP = {"server": "aa" * 32, "client": "bb" * 32}


def ca(**extra):
    result = dict(OUT, changed=False, would_change=False, ledger_valid={
        "n1": {"server": [FP["server"]], "client": [FP["client"]]},
        "n2": {"server": [FP["server"]], "client": [FP["client"]]}})
    result.update(extra)
    return result


def node(**extra):
    result = {"checked_against": ZC.checked_digest(OUT["roots"], [OUT["issuer"]], OUT["crl"]),
              "changed": False, "files": [], "requests": {}, "crl_changed": False,
              "trust": {"added": [], "removed": [], "rebuilt": False},
              "installed": {p: {"certificate": "PEM", "fingerprint": f} for p, f in FP.items()}}
    result.update(extra)
    return result


def verdict(ca_result=None, checked=("ca", "n1", "n2"), nodes=("n1", "n2"), results=None,
            variables=None):
    results = results if results is not None else {"n1": node(), "n2": node()}
    return ZC.settled(ca() if ca_result is None else ca_result, list(checked), list(nodes),
                      results, variables or {},
                      (ca() if ca_result is None else ca_result).get("ledger_valid"))


def test_a_zone_needing_nothing_is_settled():
    assert verdict() == (True, [])


@pytest.mark.parametrize("ca_result,why", [
    (ca(would_change=True, changed=False), "the CA would change"),
    (ca(changed=True, would_change=None), None),
    (ca(crl="C2"), "n1 was checked against other roots, issuer or CRL than the CA's"),
    (ca(roots=["R1", "R2"]), "n1 was checked against other roots"),
    (ca(issuer="I2"), "n2 was checked against other roots"),
    (dict(ca(), failed=True), "the CA host was not checked"),
    ({k: v for k, v in ca().items() if k != "ledger_valid"}, "the CA did not report its ledger"),
])
def test_the_ca_side(ca_result, why):
    done, reasons = verdict(ca_result)
    assert not done
    if why:
        assert any(r.startswith(why) for r in reasons), reasons


@pytest.mark.parametrize("result", [
    node(files=["/etc/trustzone/lab/roots.pem"]),
    node(requests={"server": {"csr": None, "reasons": []}}),
    node(crl_changed=True),
    node(trust={"rebuilt": True}),
])
def test_a_node_that_would_change(result):
    assert verdict(results={"n1": result, "n2": node()}) == (False, ["n1 would change"])


def test_a_node_result_that_says_changed_is_not_settled_either():
    # the check round registers changed: false, so its lists decide; a result that still
    # says changed (not from the check round) counts as a change
    assert verdict(results={"n1": node(changed=True), "n2": node()})[0] is False
    assert verdict(results={"n1": node(changed=False), "n2": node()})[0] is True


@pytest.mark.parametrize("results,checked", [
    ({"n1": node()}, ("ca", "n1", "n2")),                      # no result for n2
    ({"n1": node(), "n2": node()}, ("ca", "n1")),              # n2 not in the round
    ({"n1": node(), "n2": dict(node(), failed=True)}, ("ca", "n1", "n2")),
    ({"n1": node(), "n2": dict(node(), unreachable=True)}, ("ca", "n1", "n2")),
    ({"n1": node(), "n2": dict(node(), skipped=True)}, ("ca", "n1", "n2")),
])
def test_every_node_of_the_run_must_have_been_checked(results, checked):
    assert verdict(results=results, checked=checked) == (False, ["n2 was not checked"])


def test_a_limit_to_some_nodes_judges_only_those():
    assert verdict(results={"n1": node()}, checked=("ca", "n1"), nodes=("n1",)) == (True, [])


def test_the_ledger_must_hold_what_each_node_holds():
    other = ca(ledger_valid={"n1": {"server": ["cc" * 32], "client": [FP["client"]]},
                             "n2": {"server": [FP["server"]], "client": [FP["client"]]}})
    assert verdict(other) == (False, ["the ledger would learn n1's server certificate"])
    two = ca(ledger_valid={"n1": {"server": [FP["server"], "cc" * 32],
                                  "client": [FP["client"]]},
                           "n2": {"server": [FP["server"]], "client": [FP["client"]]}})
    assert verdict(two)[0] is False  # the signing step would supersede one of two valid rows
    missing = ca(ledger_valid={"n2": {"server": [FP["server"]], "client": [FP["client"]]}})
    assert not verdict(missing)[0]


@pytest.mark.parametrize("name,value", [("trustzone_stores_java", True),
                                        ("trustzone_stores_nss", True),
                                        ("trustzone_stores_pkcs12", [{"name": "x"}]),
                                        ("trustzone_stores_pem_sets", [{"name": "y"}])])
def test_nodes_with_stores_take_the_full_path(name, value):
    done, why = verdict(variables={"n2": {name: value}})
    assert not done and why == ["n2 keeps Java, NSS or exported stores"]


def test_no_cache_is_never_settled():
    # zone_check.yml ends every host of the round when the controller keeps no outputs: the
    # CA host has no result then, and no node says what it was checked against
    assert not verdict(ca_result={})[0]
    bare = {k: v for k, v in node().items() if k != "checked_against"}
    assert verdict(results={"n1": bare, "n2": node()}) == (
        False, ["n1 was checked against other roots, issuer or CRL than the CA's"])


def test_each_node_is_judged_by_what_it_was_checked_against():
    # a run overlapping another: n1 was checked against the outputs kept before the other
    # run rotated the issuer, n2 after; the CA's check sees the new issuer
    old = ZC.checked_digest(["R1"], ["I0"], "C1")
    results = {"n1": node(checked_against=old), "n2": node()}
    assert verdict(results=results) == (
        False, ["n1 was checked against other roots, issuer or CRL than the CA's"])


def test_the_digest_covers_each_output_and_its_place():
    base = ZC.checked_digest(["R1", "R2"], ["I1"], "C1")
    assert base == ZC.outputs_digest({"roots": ["R1", "R2"], "issuer": "I1", "crl": "C1"})
    others = [ZC.checked_digest(["R2", "R1"], ["I1"], "C1"),  # the order of the roots
              ZC.checked_digest(["R1"], ["R2", "I1"], "C1"),  # a root moved to the issuers
              ZC.checked_digest(["R1", "R2"], ["I1"], ""),
              ZC.checked_digest(["R1", "R2"], [], "C1"),
              ZC.checked_digest(["R1", "R2"], ["I1"], "C1 ")]
    assert base not in others and len(set(others)) == len(others)
    # an empty issuer or CRL is what the role sends for them: nothing
    assert ZC.outputs_digest({"roots": ["R"], "issuer": "", "crl": None}) == \
        ZC.checked_digest(["R"], [], None) == ZC.checked_digest(["R"], None, "")


def test_the_cache_round_trip_and_its_refusals(tmp_path):
    path = ZC.cache_path(str(tmp_path / "c"), "lab", "ca", "127.0.0.1", 23000)
    assert ZC.read_cache(path) is None
    assert ZC.write_cache(path, dict(OUT, changed=True, ledger_valid={}))
    assert ZC.read_cache(path) == OUT
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    with open(path, "w") as handle:
        handle.write('{"format": 99, "roots": []}')
    assert ZC.read_cache(path) is None
    with open(path, "w") as handle:
        handle.write("{broken")
    assert ZC.read_cache(path) is None
    os.unlink(path)
    os.symlink(str(tmp_path / "elsewhere.json"), path)
    assert ZC.read_cache(path) is None


def test_two_fleets_with_one_zone_name_do_not_share_a_cache():
    one = ZC.cache_path_of("lab", "ca", {"ansible_host": "127.0.0.1", "ansible_port": 23000})
    two = ZC.cache_path_of("lab", "ca", {"ansible_host": "127.0.0.1", "ansible_port": 24000})
    assert one != two and os.path.basename(one).startswith("lab-")
    assert ZC.cache_path_of("lab", "ca", {"trustzone_zone_cache_dir": "/x"}).startswith("/x/")
