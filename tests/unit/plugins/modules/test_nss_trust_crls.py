"""nss_trust's CRL handling, run against a fake NSS database that behaves as Debian 12's
certutil/crlutil 3.87 were measured to: one CRL per issuer, found by the issuer certificate's
nickname; crlutil -I refuses a CRL whose this-update is not later (SEC_ERROR_OLD_CRL) and one
whose issuer is not in the database; crlutil -L -n fails with SEC_ERROR_CRL_NOT_FOUND.
The pure decision is tested in module_utils/test_truststores.py; here the order of the
commands, check mode and idempotence."""

from __future__ import annotations

import datetime
import os

import pytest
from cryptography import x509

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _truststores as T
from ansible_collections.trustzone.pki.plugins.modules import nss_trust

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
WRITES = {("certutil", "-A"), ("certutil", "-D"), ("certutil", "-M"), ("certutil", "-N"),
          ("crlutil", "-I"), ("crlutil", "-D")}


def make_root(cn):
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    cert = C.build_ca_certificate(key, C.zone_name_attributes("lab", cn, unique=cn[-2:]),
                                  NOW - DAY, NOW + 3650 * DAY)
    return key, cert


def make_crl(root, number, this_update=None, revoked=()):
    key, cert = root
    this_update = this_update or NOW - datetime.timedelta(minutes=60 - number)
    return C.crl_pem(C.build_crl(cert, key, [(s, this_update, "unspecified") for s in revoked],
                                 this_update, this_update + 7 * DAY, number))


def this_update(crl):
    return getattr(crl, "last_update_utc", None) or crl.last_update.replace(tzinfo=UTC)


class FakeNss:
    def __init__(self, directory):
        self.directory = directory
        self.certs = {}   # nickname -> (cert, trust)
        self.crls = {}    # nickname -> crl
        self.calls = []

    def __call__(self, argv, data=None, binary_data=False, environ_update=None):
        tool, args = os.path.basename(argv[0]), argv[1:-2]
        assert argv[-2:] == ["-d", "sql:%s" % self.directory]
        self.calls.append((tool, args[0], args[2] if len(args) > 2 and args[1] == "-n" else ""))
        return getattr(self, tool)(args, data)

    def certutil(self, args, data):
        op = args[0]
        if op == "-N":
            for name in nss_trust.DB_FILES:
                open(os.path.join(self.directory, name), "w").close()
            return 0, "", ""
        if op == "-L" and len(args) == 1:
            lines = ["", "Certificate Nickname                                         "
                     "Trust Attributes", "                                                 "
                     "            SSL,S/MIME,JAR/XPI", ""]
            lines += ["%-60s %s" % (n, t) for n, (_c, t) in sorted(self.certs.items())]
            return 0, "\n".join(lines) + "\n", ""
        name = args[2]
        if op == "-L":
            if name not in self.certs:
                return 255, "", "certutil: Could not find cert: %s" % name
            return 0, C.certificate_pem(self.certs[name][0]), ""
        if op == "-A":
            self.certs[name] = (C.load_certificate(data.decode()), args[4])
        elif op == "-M":
            self.certs[name] = (self.certs[name][0], args[4])
        elif op == "-D":
            del self.certs[name]
        return 0, "", ""

    def crlutil(self, args, data):
        op = args[0]
        if op == "-I":
            with open(args[2], "rb") as handle:
                crl = x509.load_der_x509_crl(handle.read())
            issuer = [n for n, (c, _t) in self.certs.items() if c.subject == crl.issuer]
            if not issuer or not crl.is_signature_valid(self.certs[issuer[0]][0].public_key()):
                return 255, "", "crlutil: unable to import CRL: SEC_ERROR_UNKNOWN_ISSUER"
            old = self.crls.get(issuer[0])
            if old is not None and this_update(crl) <= this_update(old):
                return 255, "", ("crlutil: unable to import CRL: SEC_ERROR_OLD_CRL: New CRL is "
                                 "not later than the current one.")
            self.crls[issuer[0]] = crl
            return 0, "", ""
        name = args[2]
        if op == "-L":
            if name not in self.crls:
                return 1, "", ("crlutil: could not find %s's CRL: SEC_ERROR_CRL_NOT_FOUND: No "
                               "matching CRL was found." % name)
            number = C.crl_number(self.crls[name])
            return 0, ("CRL Info:\n:\n    Version: 2 (0x1)\n    CRL Extensions:\n"
                       "        Name: CRL Number\n        Data: %d (0x%x)\n\n" % (number, number)), ""
        if op == "-D":
            self.crls.pop(name, None)  # crlutil -D exits 0 even when there is none
            return 0, "", ""
        raise AssertionError(args)

    def numbers(self):
        return {n: C.crl_number(c) for n, c in self.crls.items()}


class FakeModule:
    def __init__(self, nss, tmpdir, check=False, **params):
        self.params = dict(db=nss.directory, trust="CT,,", zone="lab", nickname_prefix=None,
                           roots=None, roots_path=None, crls=None, crl_path=None,
                           crlutil="crlutil", create=True, certutil="certutil", owner=None,
                           group=None, mode=None)
        self.params.update(params)
        self.check_mode = check
        self._diff = True
        self.tmpdir = str(tmpdir)
        self.run_command = nss

    def get_bin_path(self, name, required=False):
        return "/usr/bin/%s" % name


@pytest.fixture
def lab(tmp_path):
    db = tmp_path / "nssdb"
    db.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return FakeNss(str(db)), tmp


def apply(lab, roots, crls, check=False):
    nss, tmp = lab
    module = FakeModule(nss, tmp, check=check,
                        roots=[C.certificate_pem(r[1]) for r in roots], crls=crls)
    nss.calls = []
    return nss_trust.run(module)


def writes(nss):
    return [c for c in nss.calls if c[:2] in WRITES]


def alias(root):
    return T.alias_for("trustzone-lab-", root[1])


def test_a_new_database_gets_each_roots_crl_and_a_second_run_changes_nothing(lab):
    nss, tmp = lab
    root = make_root("root 01")
    result = apply(lab, [root], [make_crl(root, 3)])
    assert result["changed"] and result["crls_imported"] == [alias(root)]
    assert nss.numbers() == {alias(root): 3}
    again = apply(lab, [root], [make_crl(root, 3)])
    assert not again["changed"] and again["crls_imported"] == [] == again["crls_deleted"]
    assert writes(nss) == []
    assert os.listdir(str(tmp)) == []  # the temporary DER file is gone


def test_check_mode_reports_a_newer_crl_and_writes_nothing(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    apply(lab, [root], [make_crl(root, 3)])
    result = apply(lab, [root], [make_crl(root, 4, revoked=[77])], check=True)
    assert result["changed"] and result["crls_imported"] == [alias(root)]
    assert "+ CRL of %s\n" % alias(root) in result["diff"]["after"]
    assert writes(nss) == [] and nss.numbers() == {alias(root): 3}


def test_a_newer_crl_replaces_the_old_one_and_an_older_one_never_does(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    apply(lab, [root], [make_crl(root, 3)])
    assert apply(lab, [root], [make_crl(root, 5, revoked=[77])])["changed"]
    assert nss.numbers() == {alias(root): 5}
    assert 77 in [r.serial_number for r in nss.crls[alias(root)]]
    stale = apply(lab, [root], [make_crl(root, 4)])
    assert not stale["changed"] and writes(nss) == [] and nss.numbers() == {alias(root): 5}


def test_a_higher_number_with_the_same_date_replaces_the_crl_nss_calls_old(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    apply(lab, [root], [make_crl(root, 3, this_update=NOW)])
    result = apply(lab, [root], [make_crl(root, 4, this_update=NOW, revoked=[9])])
    assert result["crls_imported"] == [alias(root)] and nss.numbers() == {alias(root): 4}
    assert [c for c in writes(nss) if c[0] == "crlutil"] == [
        ("crlutil", "-I", ""), ("crlutil", "-D", alias(root)), ("crlutil", "-I", "")]


def test_a_retired_roots_crl_goes_before_the_root(lab):
    nss, _tmp = lab
    old, new = make_root("root 01"), make_root("root 02")
    apply(lab, [old, new], [make_crl(old, 3), make_crl(new, 1)])
    assert nss.numbers() == {alias(old): 3, alias(new): 1}
    # retire: roots.pem has only the new root, crl.pem may still hold the old root's CRL
    result = apply(lab, [new], [make_crl(old, 4), make_crl(new, 2)])
    assert result["removed"] == [alias(old)] and result["crls_deleted"] == [alias(old)]
    assert nss.numbers() == {alias(new): 2} and list(nss.certs) == [alias(new)]
    order = writes(nss)
    assert order.index(("crlutil", "-D", alias(old))) < order.index(("certutil", "-D", alias(old)))


def test_crls_no_root_signed_are_not_imported(lab):
    nss, _tmp = lab
    root, other = make_root("root 01"), make_root("root 09")
    result = apply(lab, [root], [make_crl(other, 8)])
    assert result["crls_imported"] == [] and nss.numbers() == {}


def test_without_crl_parameters_the_databases_crls_are_left_alone(lab):
    nss, tmp = lab
    root = make_root("root 01")
    apply(lab, [root], [make_crl(root, 3)])
    module = FakeModule(nss, tmp, roots=[C.certificate_pem(root[1])])
    nss.calls = []
    result = nss_trust.run(module)
    assert not result["changed"] and nss.numbers() == {alias(root): 3}
    assert [c for c in nss.calls if c[0] == "crlutil"] == []


def test_an_empty_crl_list_deletes_the_roots_crls(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    apply(lab, [root], [make_crl(root, 3)])
    result = apply(lab, [root], [])
    assert result["crls_deleted"] == [alias(root)] and nss.numbers() == {}
