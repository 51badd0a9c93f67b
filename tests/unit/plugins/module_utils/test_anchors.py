"""_anchors.plan_anchors / anchor_name / same_pem: the OS trust-store files of a zone."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _anchors as A
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import make_root


@pytest.fixture(scope="module")
def roots(keys):
    return [make_root(keys.get("p256#anchor-a"), unique="a"),
            make_root(keys.get("p256#anchor-b"), unique="b")]


def test_anchor_name(roots):
    name = A.anchor_name("prod", roots[0])
    assert name == "trustzone-prod-%s.crt" % C.fingerprint(roots[0])[:16]
    assert A.anchor_name("prod", roots[0], ".pem").endswith(".pem")
    assert name.startswith(A.anchor_prefix("prod"))
    assert A.anchor_name("prod", roots[0]) != A.anchor_name("prod", roots[1])


def test_add_all_when_nothing_exists(roots):
    plan = A.plan_anchors({}, roots, "prod")
    assert sorted(plan["write"]) == sorted(A.anchor_name("prod", r) for r in roots)
    for name, pem in plan["write"].items():
        assert C.load_certificate(pem) in roots
    assert plan["remove"] == [] and plan["keep"] == []


@pytest.mark.parametrize("mangle", [
    lambda pem: pem,
    lambda pem: pem.encode("ascii"),
    lambda pem: pem.replace("\n", "\r\n"),
    lambda pem: pem.replace("\n", "\r\n").encode("ascii"),
    lambda pem: "\n\n" + pem + "\n\n",
    lambda pem: pem.rstrip("\n"),
    lambda pem: "\n".join("  " + line + "  " for line in pem.splitlines()),
])
def test_keep_same_content_in_other_whitespace(roots, mangle):
    name = A.anchor_name("prod", roots[0])
    plan = A.plan_anchors({name: mangle(C.certificate_pem(roots[0]))}, roots[:1], "prod")
    assert plan == {"write": {}, "remove": [], "keep": [name]}


def test_rewrite_damaged_or_different_content(roots):
    name = A.anchor_name("prod", roots[0])
    for content in (b"", "garbage", C.certificate_pem(roots[1])):
        plan = A.plan_anchors({name: content}, roots[:1], "prod")
        assert list(plan["write"]) == [name]
        assert plan["keep"] == [] and plan["remove"] == []


def test_remove_retired_root(roots):
    old, new = roots
    existing = {A.anchor_name("prod", old): C.certificate_pem(old),
                A.anchor_name("prod", new): C.certificate_pem(new)}
    plan = A.plan_anchors(existing, [new], "prod")
    assert plan == {"write": {}, "remove": [A.anchor_name("prod", old)],
                    "keep": [A.anchor_name("prod", new)]}


def test_remove_anchor_of_unknown_root(roots):
    existing = {"trustzone-prod-0000000000000000.crt": "x"}
    plan = A.plan_anchors(existing, roots, "prod")
    assert plan["remove"] == ["trustzone-prod-0000000000000000.crt"]
    assert len(plan["write"]) == 2


def test_other_zones_are_never_touched(roots):
    lab = {A.anchor_name("lab", r): C.certificate_pem(r) for r in roots}
    foreign = {"ca-certificates.crt": "x", "trustzone-labs-1111111111111111.crt": "x"}
    plan = A.plan_anchors(dict(lab, **foreign), roots[:1], "prod")
    assert plan["remove"] == []
    assert list(plan["write"]) == [A.anchor_name("prod", roots[0])]
    # and the lab zone, planned with no roots, removes only its own
    plan = A.plan_anchors(dict(lab, **foreign), [], "lab")
    assert plan["remove"] == sorted(lab)


def test_no_roots_removes_everything_of_the_zone(roots):
    existing = {A.anchor_name("prod", r): C.certificate_pem(r) for r in roots}
    assert A.plan_anchors(existing, [], "prod") == {"write": {}, "remove": sorted(existing),
                                                    "keep": []}


def test_zone_whose_name_extends_another_is_not_touched(roots):
    eu = {A.anchor_name("prod-eu", r): C.certificate_pem(r) for r in roots}
    assert all(name.startswith(A.anchor_prefix("prod")) for name in eu)  # what node.py lists
    plan = A.plan_anchors(eu, roots[:1], "prod")
    assert plan["remove"] == []


@pytest.mark.parametrize("a, b, same", [
    ("A\nB\n", "A\r\nB\r\n", True),
    ("A\nB", b"A\nB\n", True),
    ("  A\n\tB  ", "A\nB", True),
    ("A\nB", "A\nC", False),
    ("AB", "A\nB", False),
    ("", b"", True),
])
def test_same_pem(a, b, same):
    assert A.same_pem(a, b) is same
