"""node_info and ledger_info, run on real files in a temporary directory (a fake module
object carries the parameters). Both must read, never write."""

from __future__ import annotations

import datetime
import os
import types

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.modules import ledger_info, node_info

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)
DAY = datetime.timedelta(days=1)
NAMES = {"common_name": "web1.prod.example", "dns": ["web1", "web1.prod.example"],
         "ip": ["10.0.0.11"]}


def root(cn="trustzone prod root CA"):
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    cert = C.build_ca_certificate(key, C.zone_name_attributes("prod", cn, unique="01"),
                                  NOW - DAY, NOW + 3650 * DAY)
    return key, cert


def leaf(ca_key, ca_cert, key, profile, days=300):
    return C.build_leaf_certificate(
        key.public_key(), C.zone_name_attributes("prod", profile["common_name"]),
        profile["dns"], profile["ip"], ca_cert, ca_key, NOW - DAY, NOW + days * DAY,
        profile["key_usage"], profile["extended_key_usage"])


def write(path, data, mode):
    with open(path, "w" if isinstance(data, str) else "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def snapshot(top):
    out = {}
    for base, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            with open(path, "rb") if not os.path.islink(path) else open(os.devnull, "rb") as f:
                out[path] = (st.st_mode, st.st_mtime_ns, f.read())
    return out


@pytest.fixture
def node_dir(tmp_path):
    ca_key, ca_cert = root()
    zone_dir = tmp_path / "prod"
    zone_dir.mkdir()
    profiles = I.resolve_profiles(None, "prod", str(zone_dir), dict(NAMES))
    server, client = profiles
    skey = C.generate_key(server["key"])
    scert = leaf(ca_key, ca_cert, skey, server)
    write(server["cert_path"], C.certificate_pem(scert), 0o644)
    write(server["chain_path"], C.certificate_pem(scert), 0o644)
    write(server["key_path"], C.private_key_pem(skey), 0o600)
    ckey = C.generate_key(client["key"])
    ccert = leaf(ca_key, ca_cert, ckey, client, days=5)
    write(client["cert_path"], C.certificate_pem(ccert), 0o640)
    write(client["key_path"], C.private_key_pem(C.generate_key(client["key"])), 0o600)
    other_key, other = root("someone else")
    write(str(zone_dir / "rogue.crt"), C.certificate_pem(other), 0o644)
    write(str(zone_dir / "rogue.key"), C.private_key_pem(other_key), 0o644)
    write(str(zone_dir / "junk.crt"), "not a certificate", 0o644)
    os.symlink("/etc/hostname", str(zone_dir / "link.crt"))
    write(str(zone_dir / "roots.pem"), C.certificate_pem(ca_cert), 0o644)
    crl = C.build_crl(ca_cert, ca_key, [(7, NOW - DAY, "key_compromise")], NOW - DAY,
                      NOW + 2 * DAY, 9)
    write(str(zone_dir / "crl.pem"), C.crl_pem(crl), 0o644)
    return types.SimpleNamespace(dir=str(zone_dir), profiles=profiles, ca=ca_cert, scert=scert,
                                 ccert=ccert, other=other)


def run_node(d, **params):
    args = dict(zone="prod", dir=d.dir, profiles=d.profiles, roots=None, intermediates=[],
                scan=True)
    args.update(params)
    return node_info.run(types.SimpleNamespace(params=args))


def test_node_info_describes_every_certificate(node_dir):
    before = snapshot(node_dir.dir)
    result = run_node(node_dir)
    assert snapshot(node_dir.dir) == before  # read-only
    assert result["changed"] is False
    assert result["roots_source"] == "roots.pem"
    assert result["roots_bundle"] == [C.fingerprint(node_dir.ca)]
    by_path = {os.path.basename(c["path"]): c for c in result["certificates"]}
    assert list(by_path) == ["server.crt", "client.crt", "junk.crt", "link.crt", "rogue.crt"]
    server = by_path["server.crt"]
    assert {k: server[k] for k in ("profile", "kind", "exists", "error", "subject", "sans",
                                   "serial", "chain_valid", "key_match", "mode", "key_mode",
                                   "chain_mode", "expected_mode", "expected_key_mode",
                                   "owner", "days_left")} == {
        "profile": "server", "kind": "profile", "exists": True, "error": None,
        "subject": "CN=web1.prod.example,OU=prod,O=trustzone",
        "sans": {"dns": ["web1", "web1.prod.example"], "ip": ["10.0.0.11"]},
        "serial": "%x" % node_dir.scert.serial_number, "chain_valid": True, "key_match": True,
        "mode": "0644", "key_mode": "0600", "chain_mode": "0644", "expected_mode": "0644",
        "expected_key_mode": "0600", "owner": server["owner"], "days_left": 299}
    assert server["chain_root"] == C.fingerprint(node_dir.ca)
    client = by_path["client.crt"]
    assert (client["key_match"], client["mode"], client["chain_mode"], client["days_left"]) == (
        False, "0640", None, 4)
    rogue = by_path["rogue.crt"]
    assert (rogue["profile"], rogue["kind"], rogue["chain_valid"], rogue["key_match"],
            rogue["key_mode"], rogue["expected_mode"]) == (None, "extra", False, True, "0644",
                                                           None)
    assert "no PEM certificate found" in by_path["junk.crt"]["error"]
    assert "symbolic link" in by_path["link.crt"]["error"]
    assert "fingerprint" not in by_path["link.crt"]
    assert result["crl"]["exists"] is True
    assert result["crl"]["number"] == 9
    assert result["crl"]["crls"][0]["revoked"] == 1
    assert result["crl"]["crls"][0]["signed_by"] == C.fingerprint(node_dir.ca)


def test_node_info_with_the_zones_roots_and_no_scan(node_dir):
    _key, other_root = root("another root")
    result = run_node(node_dir, roots=[C.certificate_pem(other_root)], scan=False)
    assert result["roots_source"] == "parameter"
    assert [os.path.basename(c["path"]) for c in result["certificates"]] == ["server.crt",
                                                                             "client.crt"]
    assert all(c["chain_valid"] is False for c in result["certificates"])


def test_node_info_on_a_node_that_never_joined(tmp_path):
    profiles = I.resolve_profiles(None, "prod", str(tmp_path / "prod"), dict(NAMES))
    result = node_info.run(types.SimpleNamespace(params=dict(
        zone="prod", dir=str(tmp_path / "prod"), profiles=profiles, roots=None,
        intermediates=[], scan=True)))
    assert [(c["profile"], c["exists"], c["key_path"]) for c in result["certificates"]] == [
        ("server", False, None), ("client", False, None)]
    assert result["crl"] == {"path": str(tmp_path / "prod" / "crl.pem"), "exists": False,
                             "error": None, "next_update": None, "number": None, "crls": []}
    assert result["roots_bundle"] is None
    assert not (tmp_path / "prod").exists()


def test_node_info_refuses_unresolved_profiles(tmp_path):
    with pytest.raises(TrustzoneError, match="lacks 'cert_path'"):
        node_info.run(types.SimpleNamespace(params=dict(
            zone="prod", dir=str(tmp_path), profiles=[{"name": "server"}], roots=None,
            intermediates=[], scan=True)))


@pytest.fixture
def ca_dir(tmp_path):
    key, cert = root()
    ca = tmp_path / "ca"
    ca.mkdir(mode=0o700)
    write(str(ca / "root.crt"), C.certificate_pem(cert), 0o644)
    conn = _ledger.connect(str(ca))
    _ledger.record(conn, [{"serial": "1a", "zone": "prod", "host": "web1", "profile": "server",
                           "subject": "CN=web1", "sans": {"dns": ["web1"], "ip": []},
                           "not_before": "2025-01-01T00:00:00Z",
                           "not_after": "2026-01-01T00:00:00Z", "fingerprint": "f1",
                           "issuer": "CN=root", "issuer_fingerprint": "r1"},
                          {"serial": "2b", "zone": "prod", "host": "web2", "profile": "server",
                           "subject": "CN=web2", "sans": {"dns": ["web2"], "ip": []},
                           "not_before": "2025-01-01T00:00:00Z",
                           "not_after": "2026-01-01T00:00:00Z", "fingerprint": "f2",
                           "issuer": "CN=root", "issuer_fingerprint": "r1"}],
                   "2025-01-01T00:00:00Z")
    _ledger.revoke(conn, ["2b"], "key_compromise", "2025-02-01T00:00:00Z")
    conn.close()
    crl = C.build_crl(cert, key, [(0x2b, NOW - DAY, "key_compromise")], NOW - DAY,
                      NOW + 7 * DAY, 3)
    write(str(ca / "crl.pem"), C.crl_pem(crl), 0o644)
    return types.SimpleNamespace(dir=str(ca), cert=cert)


def run_ledger(d, **params):
    args = dict(zone="prod", dir=d.dir, host=None, status=None)
    args.update(params)
    return ledger_info.run(types.SimpleNamespace(params=args))


def test_ledger_info_reads_rows_cas_and_crl(ca_dir):
    before = snapshot(ca_dir.dir)
    result = run_ledger(ca_dir)
    assert snapshot(ca_dir.dir) == before  # read-only: no schema, no journal, no lock
    assert result["ledger_exists"] is True
    assert [(r["serial"], r["host"], r["status"]) for r in result["rows"]] == [
        ("1a", "web1", "valid"), ("2b", "web2", "revoked")]
    assert result["rows"][1]["revocation_reason"] == "key_compromise"
    assert result["phase"] == "stable"
    assert result["cas"] == [{"name": "root", "fingerprint": C.fingerprint(ca_dir.cert),
                              "subject": C.subject_text(ca_dir.cert),
                              "not_after": result["cas"][0]["not_after"], "days_left": 3649,
                              "trusted": True, "signing": True}]
    assert result["roots"] == [C.certificate_pem(ca_dir.cert)]
    assert result["intermediates"] == []
    assert (result["crl"]["number"], result["crl"]["crls"][0]["revoked"],
            result["crl"]["crls"][0]["signed_by"]) == (3, 1, C.fingerprint(ca_dir.cert))
    assert [r["serial"] for r in run_ledger(ca_dir, status="valid")["rows"]] == ["1a"]
    assert [r["serial"] for r in run_ledger(ca_dir, host="web2")["rows"]] == ["2b"]


def test_ledger_info_without_ledger_and_with_a_bad_crl(tmp_path):
    ca = tmp_path / "ca"
    ca.mkdir()
    write(str(ca / "crl.pem"), "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
          0o644)
    result = ledger_info.run(types.SimpleNamespace(params=dict(zone="prod", dir=str(ca),
                                                               host=None, status=None)))
    assert (result["ledger_exists"], result["rows"], result["cas"]) == (False, [], [])
    assert "malformed CRL" in result["crl"]["error"]
    assert not (ca / "ledger.db").exists()


def test_ledger_info_damaged_ledger_is_a_clear_error(ca_dir):
    path = os.path.join(ca_dir.dir, "ledger.db")
    with open(path, "r+b") as handle:
        handle.seek(0)
        handle.write(b"garbage" * 20)
    before = snapshot(ca_dir.dir)
    with pytest.raises(TrustzoneError, match="the issuance ledger is damaged") as err:
        run_ledger(ca_dir)
    assert "restore it from a backup" in str(err.value)
    assert snapshot(ca_dir.dir) == before


def test_ledger_info_rotation_phase(ca_dir):
    write(os.path.join(ca_dir.dir, "rotation.json"), '{"phase": "use"}', 0o600)
    assert run_ledger(ca_dir)["phase"] == "use"
    write(os.path.join(ca_dir.dir, "rotation.json"), "{nope", 0o600)
    with pytest.raises(TrustzoneError, match="not valid JSON"):
        run_ledger(ca_dir)
