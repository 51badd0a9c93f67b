"""The publish module: DER files named by CA id, written only when they differ, a retired
CA's files removed, nothing else touched, check mode writes nothing."""

from __future__ import annotations

import datetime
import os

import pytest
from cryptography import x509

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _publish as P
from ansible_collections.trustzone.pki.plugins.modules import publish
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (
    module_runner)

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
OWNER = {"owner": str(os.getuid()), "group": str(os.getgid())}


def ca(label):
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    cert = C.build_ca_certificate(key, C.zone_name_attributes("prod", label, unique="01"),
                                  NOW - DAY, NOW + 300 * DAY)
    return key, cert


@pytest.fixture(scope="module")
def cas():
    return ca("root"), ca("old root")


@pytest.fixture
def call():
    runner = module_runner()

    def run(directory, certs, crls, check_mode=False):
        return runner(publish, check_mode, dir=str(directory),
                      certificates=[C.certificate_pem(c) for c in certs],
                      crl="".join(C.crl_pem(c) for c in crls), **OWNER)
    return run


def test_publish_writes_der_then_nothing_then_removes_a_retired_ca(tmp_path, cas, call):
    (key, cert), (okey, ocert) = cas
    crl = C.build_crl(cert, key, [(7, NOW, "key_compromise")], NOW, NOW + DAY, 2)
    ocrl = C.build_crl(ocert, okey, [], NOW, NOW + DAY, 1)
    pub = tmp_path / "pub"
    (tmp_path / "pub").mkdir()
    (pub / "index.html").write_text("not ours")
    cid, oid = P.ca_id(cert), P.ca_id(ocert)

    dry = call(pub, [cert, ocert], [crl, ocrl], check_mode=True)
    assert dry["changed"] and len(dry["written"]) == 4
    assert sorted(os.listdir(pub)) == ["index.html"]

    first = call(pub, [cert, ocert], [crl, ocrl])
    assert first["changed"]
    assert first["written"] == first["files"] == sorted(
        ["%s.crt" % cid, "%s.crl" % cid, "%s.crt" % oid, "%s.crl" % oid])
    assert x509.load_der_x509_certificate((pub / ("%s.crt" % cid)).read_bytes()) == cert
    got = x509.load_der_x509_crl((pub / ("%s.crl" % cid)).read_bytes())
    assert got.get_revoked_certificate_by_serial_number(7) is not None
    assert oct(os.stat(pub / ("%s.crl" % cid)).st_mode & 0o777) == "0o644"

    again = call(pub, [cert, ocert], [crl, ocrl])
    assert (again["changed"], again["written"], again["removed"]) == (False, [], [])

    newer = C.build_crl(cert, key, [(7, NOW, "key_compromise"), (9, NOW, None)], NOW,
                        NOW + DAY, 3)
    retired = call(pub, [cert], [newer])
    assert retired["written"] == ["%s.crl" % cid]
    assert retired["removed"] == sorted(["%s.crt" % oid, "%s.crl" % oid])
    assert sorted(os.listdir(pub)) == sorted(["index.html", "%s.crt" % cid, "%s.crl" % cid])
    assert (pub / "index.html").read_text() == "not ours"


def test_publish_refuses_a_symlink_in_place_of_a_file(tmp_path, cas, call):
    (key, cert), _old = cas
    pub = tmp_path / "pub"
    pub.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.symlink(target, pub / ("%s.crt" % P.ca_id(cert)))
    with pytest.raises(Exception, match="symlink|link"):
        call(pub, [cert], [])
    assert target.read_text() == "keep"


def test_publish_checks_the_url_before_writing(tmp_path, cas, call):
    (_key, cert), _old = cas
    runner = module_runner()
    pub = tmp_path / "pub"
    out = runner(publish, False, dir=str(pub), certificates=[C.certificate_pem(cert)],
                 url="http://pki.lab.example/tz/", **OWNER)
    assert (out["url"], out["host"], out["port"], out["path"]) == (
        "http://pki.lab.example/tz", "pki.lab.example", 80, "/tz")
    bad = tmp_path / "bad"
    with pytest.raises(Exception, match="trustzone_ca_publish_url"):
        runner(publish, False, dir=str(bad), certificates=[C.certificate_pem(cert)],
               url="http://pki.lab.example/tz?x", **OWNER)
    assert not bad.exists()
