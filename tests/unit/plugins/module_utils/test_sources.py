"""_sources: reading a node's zone files for the store and export modules (on a temp dir)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _sources as S
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import NAMES


@pytest.fixture
def zone_dir(tmp_path, keys, zone):
    key = keys.get("p256#sources-leaf")
    cert = zone.leaf(key.public_key(), NAMES)
    (tmp_path / "roots.pem").write_text(C.certificate_pem(zone.cert))
    (tmp_path / "server.key").write_bytes(C.private_key_pem(key))
    (tmp_path / "server.crt").write_text(C.certificate_pem(cert))
    (tmp_path / "server-fullchain.pem").write_text(C.certificate_pem(cert) +
                                                   C.certificate_pem(zone.cert))
    return tmp_path, key, cert


def test_roots_come_from_the_file_or_the_list(zone_dir, zone, other_zone):
    path, _key, _cert = zone_dir
    assert S.roots(path=str(path / "roots.pem")) == [zone.cert]
    assert S.roots([C.certificate_pem(other_zone.cert)], path=str(path / "roots.pem")) == [
        other_zone.cert]
    with pytest.raises(TrustzoneError, match="no roots given"):
        S.roots()


def test_a_missing_roots_file_names_the_trust_role(tmp_path):
    with pytest.raises(S.MissingSource, match="roots.pem: does not exist.*run the trust role"):
        S.roots(path=str(tmp_path / "roots.pem"))


def test_identity_with_and_without_a_chain_file(zone_dir, zone):
    path, key, cert = zone_dir
    got_key, got_cert, intermediates = S.identity(str(path / "server.crt"),
                                                  str(path / "server.key"),
                                                  str(path / "server-fullchain.pem"))
    assert C.same_public_key(got_key, key) and got_cert == cert
    assert intermediates == [zone.cert]  # what follows the leaf in the chain file
    assert S.identity(str(path / "server.crt"), str(path / "server.key"))[2] == []
    assert S.identity(str(path / "server.crt"), str(path / "server.key"),
                      str(path / "absent.pem"))[2] == []


def test_a_missing_identity_names_the_certs_role(zone_dir):
    path, _key, _cert = zone_dir
    os.unlink(path / "server.key")
    with pytest.raises(S.MissingSource, match="server.key: does not exist.*certs role"):
        S.identity(str(path / "server.crt"), str(path / "server.key"))


def test_a_symlinked_source_is_refused(zone_dir):
    path, _key, _cert = zone_dir
    os.rename(path / "server.crt", path / "real.crt")
    os.symlink(path / "real.crt", path / "server.crt")
    with pytest.raises(TrustzoneError, match="symbolic link"):
        S.identity(str(path / "server.crt"), str(path / "server.key"))


def test_check_mode_result_reports_a_change_and_why(tmp_path):
    exc = S.MissingSource("does not exist", str(tmp_path / "server.crt"), fix="run certs")
    result = S.check_mode_result(exc, path="/x")
    assert result["changed"] is True and result["path"] == "/x"
    assert "server.crt: does not exist" in result["msg"]
