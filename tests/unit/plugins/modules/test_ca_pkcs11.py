"""CA keys in a PKCS#11 token (SoftHSM2), through the real zone_root and sign modules: the
keys are made in the token and never exist in a file; roots, intermediates, leaves and CRLs
are signed by the token; a rotation makes its next root there too; a wrong PIN or token is
one line naming the variable, with nothing written."""

from __future__ import annotations

import os

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.plugins.module_utils import _pkcs11 as P
from ansible_collections.trustzone.pki.plugins.module_utils._archive import not_carried
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils import test_pkcs11 as H
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (
    module_runner, zone_root_runner)

PASS = "correct horse battery staple"
TOKEN = "tz-zone"


@pytest.fixture(scope="module")
def module_path(tmp_path_factory):
    yield from H.softhsm_tokens(tmp_path_factory, (TOKEN,))


def token_labels(module_path):
    with P.Token(module_path, TOKEN, H.PIN) as token:
        return sorted(k.label for k in token.session.get_objects(
            {P.Attribute.CLASS: P.ObjectClass.PRIVATE_KEY}))


def files_under(path):
    out = {}
    for base, _dirs, names in os.walk(path):
        for name in names:
            with open(os.path.join(base, name), "rb") as handle:
                out[os.path.relpath(os.path.join(base, name), path)] = handle.read()
    return out


def current(path, name):
    with open(os.path.join(path, "current")) as handle:
        gen = handle.read().strip()
    with open(os.path.join(path, gen, name), "rb") as handle:
        return handle.read()


@pytest.fixture
def zone(module_path, tmp_path):
    run = zone_root_runner(passphrase=PASS, owner=str(os.getuid()), group=str(os.getgid()),
                           key_curve="secp256r1", intermediate=True, pkcs11_token=TOKEN,
                           pkcs11_module=module_path, pkcs11_pin=H.PIN)
    return run, str(tmp_path / "ca")


def test_the_zones_keys_are_made_in_the_token_and_never_in_a_file(module_path, zone):
    run, path = zone
    before = token_labels(module_path)
    result = run(path)
    made = sorted(set(token_labels(module_path)) - set(before))
    assert len(made) == 2 and all(label.startswith("trustzone-prod-") for label in made)
    assert sorted([current(path, "root.pkcs11").decode(),
                   current(path, "intermediate.pkcs11").decode()]) == made
    tree = files_under(path)
    assert not [rel for rel, data in tree.items() if b"PRIVATE KEY" in data or rel.endswith(
        ".key")]
    root = C.load_certificate(current(path, "root.crt"))
    inter = C.load_certificate(current(path, "intermediate.crt"))
    assert C.is_signed_by(root, root) and C.is_signed_by(inter, root)
    crls = C.load_crls(tree["crl.pem"])
    assert sorted(C.crl_signed_by(crl, c) for crl in crls for c in (root, inter)) == [
        False, False, True, True]
    assert result["pkcs11"] == {"module": module_path, "token": TOKEN}
    again = run(path)
    assert again["changed"] is False
    assert any("PKCS#11 token" in line for line in not_carried(
        dict(files_under(path), current=current_pointer(path))))


def current_pointer(path):
    with open(os.path.join(path, "current"), "rb") as handle:
        return handle.read()


def test_leaves_are_signed_by_the_intermediate_in_the_token(module_path, zone):
    run, path = zone
    run(path)
    names = I.node_names("node1", fqdn="node1.prod.example")
    profile = I.resolve_profiles([{"name": "server", "extended_key_usage": ["server_auth"]}],
                                 "prod", "/etc/trustzone/prod", names)[0]
    key = C.generate_key(profile["key"])
    csr = C.build_csr(key, profile["common_name"], profile["dns"], profile["ip"])
    from ansible_collections.trustzone.pki.plugins.modules import sign
    result = module_runner()(sign, zone="prod", dir=path, passphrase=PASS,
                             pkcs11_token=TOKEN, pkcs11_module=module_path, pkcs11_pin=H.PIN,
                             requests=[{"host": "node1", "profile": profile,
                                        "csr": C.csr_pem(csr), "reasons": ["missing"]}])
    leaf = C.load_certificate(result["certificates"]["node1"]["server"]["certificate"])
    assert C.is_signed_by(leaf, C.load_certificate(current(path, "intermediate.crt")))


def test_a_rotation_makes_the_next_root_in_the_token(module_path, zone):
    run, path = zone
    run(path)
    before = set(token_labels(module_path))
    trust = run(path, rotate="trust", rotate_force=True)
    assert len(trust["roots"]) == 2
    assert len(set(token_labels(module_path)) - before) == 2  # next root, its intermediate
    run(path, rotate="use")
    run(path, rotate="retire", retire_confirmed=True)
    tree = files_under(path)
    assert not [rel for rel, data in tree.items() if b"PRIVATE KEY" in data]
    assert current(path, "root.pkcs11").decode() in token_labels(module_path)


@pytest.mark.parametrize("param, value, text", [
    ("pkcs11_pin", "wrong-pin-1234", "check trustzone_ca_pkcs11_pin"),
    ("pkcs11_token", "no-such-token", "check trustzone_ca_pkcs11_token"),
    ("pkcs11_module", "/nonexistent/libpkcs11.so", "check trustzone_ca_pkcs11_module"),
])
def test_a_wrong_pin_token_or_module_is_one_line_and_writes_nothing(zone, param, value, text):
    run, path = zone
    run(path)
    before = files_under(path)
    with pytest.raises(TrustzoneError) as err:
        run(path, intermediate_force=True, **{param: value})
    assert text in str(err.value) and "\n" not in str(err.value)
    assert value not in str(err.value) or param != "pkcs11_pin"
    assert files_under(path) == before


def test_check_mode_makes_no_key_in_the_token(module_path, zone):
    run, path = zone
    before = token_labels(module_path)
    result = run(path, check=True)
    assert result["changed"] is True
    assert token_labels(module_path) == before and not os.path.exists(path)


def test_an_ed25519_key_cannot_be_made_in_the_token(zone):
    run, path = zone
    with pytest.raises(TrustzoneError, match="ed25519 key cannot be made in the PKCS#11 token"):
        run(path, key_type="ed25519")


def test_without_the_token_certificates_still_read_and_signing_names_the_variables(zone):
    run, path = zone
    run(path)
    from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir
    key, cert, chain = CaDir(path).issuer(PASS)  # e.g. ledger_learn: certificates only
    assert chain == [cert] and key.label == current(path, "intermediate.pkcs11").decode()
    with pytest.raises(TrustzoneError, match="lives in a PKCS#11 token, but no token is given"):
        key.signer()


def test_what_the_token_signs_is_clean_under_pkilint(zone):
    lint = pytest.importorskip(
        "ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.test_rfc5280_lint")
    run, path = zone
    run(path)
    root = C.load_certificate(current(path, "root.crt"))
    inter = C.load_certificate(current(path, "intermediate.crt"))
    findings = lint.lint_certificate(root)[1] + lint.lint_certificate(inter)[1]
    findings += lint.lint_chain(root, inter)
    for crl in C.load_crls(files_under(path)["crl.pem"]):
        findings += lint.lint_crl(crl)
    assert lint.unaccepted(findings) == []


def test_an_offline_root_with_its_intermediate_in_the_token(module_path, tmp_path):
    offline = pytest.importorskip(
        "ansible_collections.trustzone.pki.tests.unit.plugins.action.test_offline_root")
    zone = offline.Zone(tmp_path)
    token = dict(pkcs11_token=TOKEN, pkcs11_module=module_path, pkcs11_pin=H.PIN)
    result = zone.run(pkcs11_keys=["intermediate"], **token)
    assert result.get("failed") is not True, result
    assert zone.current("root.offline") and zone.current("intermediate.pkcs11")
    assert not [rel for rel, data in zone.tree().items() if b"PRIVATE KEY" in data]
    offline.assert_no_root_key_on_the_ca_host(zone)
    refused = zone.run(**token)  # the root cannot be both offline and in the token
    assert refused["failed"] is True and "both offline and in the PKCS#11 token" in refused["msg"]
