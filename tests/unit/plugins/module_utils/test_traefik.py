"""Traefik's answers read by the proxy role (module_utils/_traefik.py): did Traefik take the
file just written, are its routers enabled, and which backends the zone's CRLs revoke."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _traefik as T
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

MARKER = "trustzone-routes-0123456789abcdef"


def raw(routers=None, middlewares=None, services=None):
    return {"routers": routers or {}, "services": services or {},
            "middlewares": dict({MARKER + "@file": {"status": "enabled"}}, **(middlewares or {}))}


def test_taken_and_enabled_is_no_problem():
    data = raw(routers={"web-https@file": {"status": "enabled", "using": ["websecure"]},
                        "ping@internal": {"status": "enabled"}})
    assert T.problems(data, MARKER, ["web-https"]) == []


def test_not_taken_names_traefiks_last_error():
    data = {"middlewares": {"trustzone-routes-ffff@file": {"status": "enabled"}}}
    out = T.problems(data, MARKER, ["web-https"], seconds=30,
                     last_error='ERR Error occurred during watcher callback error="x: time: '
                                'invalid duration \\"forever\\""')
    assert len(out) == 1
    assert out[0].startswith("Traefik did not take it within 30 s")
    assert "invalid duration" in out[0]


def test_no_answer_at_all_is_not_taken():
    assert T.problems(None, MARKER, ["web-https"])[0].startswith("Traefik did not take it")
    assert T.problems({}, MARKER, [])[0].startswith("Traefik did not take it")


def test_a_disabled_router_is_named_with_traefiks_error():
    data = raw(routers={"broken-http@file": {
        "status": "disabled",
        "error": ["error while parsing rule Host(`broken`.x`): raw string literal not terminated"]}})
    out = T.problems(data, MARKER, ["broken-http"])
    assert out == ["router broken-http is disabled: error while parsing rule "
                   "Host(`broken`.x`): raw string literal not terminated"]


def test_a_missing_router_and_errors_elsewhere_in_our_files():
    data = raw(routers={"other@file": {"status": "enabled"}},
               services={"web@file": {"status": "disabled", "error": ["transport not found"]},
                         "x@docker": {"status": "disabled", "error": ["not ours"]}})
    out = T.problems(data, MARKER, ["web-https"])
    assert out == ["router web-https is missing", "service web: transport not found"]


def test_one_line():
    data = raw(routers={"a@file": {"status": "disabled", "error": ["one\ntwo"]}})
    assert "\n" not in T.problem_line(T.problems(data, MARKER, ["a", "b"]))
    assert T.problem_line([]) == ""


LAB = {"name": "web", "zone": "lab", "backends": ["n1:8443", "n2:8443"]}


def test_backends_revoked_by_the_crls_are_left_out():
    out = T.backends([LAB, dict(LAB, name="api", backends=["n3:443"])],
                     [["ok n1:8443", "revoked n2:8443"], ["unreachable n3:443"]])
    assert out["live"] == {"web": ["n1:8443"], "api": ["n3:443"]}
    assert out["revoked"] == {"web": ["n2:8443"], "api": []}
    assert out["dead"] == []


def test_a_route_with_every_backend_revoked_is_dead():
    out = T.backends([LAB], [["revoked n1:8443", "revoked n2:8443"]])
    assert out["live"] == {"web": []} and out["dead"] == ["web"]


def test_no_check_keeps_every_backend():
    out = T.backends([LAB], None)
    assert out["live"] == {"web": ["n1:8443", "n2:8443"]} and out["dead"] == []


def test_a_check_for_another_set_of_routes_is_refused():
    with pytest.raises(TrustzoneError):
        T.backends([LAB], [[], []])
