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
                           group=None, mode=None, intermediates=None, chain_dir=None)
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


# --------------------------------------------------------------------------- intermediates
#
# A zone with an intermediate CA: the leaves' CRL is the intermediate's. NSS imports it only
# when the intermediate's certificate is in the database (measured: SEC_ERROR_UNKNOWN_ISSUER
# otherwise), so the module holds the intermediate there, untrusted (",,").

def make_intermediate(root, cn):
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    cert = C.build_ca_certificate(key, C.zone_name_attributes("lab", cn, unique=cn[-2:]),
                                  NOW - DAY, NOW + 365 * DAY, path_length=0,
                                  issuer_cert=root[1], issuer_key=root[0])
    return key, cert


def make_leaf(issuer, cn):
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    return C.build_leaf_certificate(key.public_key(), C.zone_name_attributes("lab", cn), [cn], [],
                                    issuer[1], issuer[0], NOW - DAY, NOW + 30 * DAY,
                                    ["digital_signature"], ["server_auth"])


def ialias(ca):
    return T.alias_for("trustzone-lab-", ca[1], T.INTERMEDIATE_SUFFIX)


def apply_i(lab, roots, crls, intermediates=(), check=False, **params):
    nss, tmp = lab
    module = FakeModule(nss, tmp, check=check, roots=[C.certificate_pem(r[1]) for r in roots],
                        crls=crls, **params)
    if intermediates:
        module.params["intermediates"] = [C.certificate_pem(i[1]) for i in intermediates]
    nss.calls = []
    return nss_trust.run(module)


def test_an_intermediate_is_held_untrusted_with_its_crl_and_a_second_run_changes_nothing(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    inter = make_intermediate(root, "inter 01")
    crls = [make_crl(root, 3), make_crl(inter, 2)]
    result = apply_i(lab, [root], crls, [inter])
    assert result["changed"] and result["intermediates_added"] == [ialias(inter)]
    assert result["added"] == [alias(root)]  # the roots' list stays the roots'
    assert nss.certs[ialias(inter)] == (inter[1], ",,")  # never a trust anchor
    assert nss.certs[alias(root)][1] == "CT,,"
    assert nss.numbers() == {alias(root): 3, ialias(inter): 2}
    assert sorted(result["crls_imported"]) == sorted([alias(root), ialias(inter)])
    # the intermediate is in the database before its CRL is imported
    order = writes(nss)
    assert order.index(("certutil", "-A", ialias(inter))) < len(order) - 1
    assert order[-2:] == [("crlutil", "-I", ""), ("crlutil", "-I", "")]
    again = apply_i(lab, [root], crls, [inter])
    assert not again["changed"] and writes(nss) == []
    assert again["intermediates_added"] == [] == again["intermediates_removed"]


def test_the_intermediates_come_from_the_nodes_chain_files(lab, tmp_path):
    nss, _tmp = lab
    root = make_root("root 01")
    inter = make_intermediate(root, "inter 01")
    zone_dir = tmp_path / "zone"
    zone_dir.mkdir()
    leaf = make_leaf(inter, "node1.lab")
    (zone_dir / "server-fullchain.pem").write_text(C.certificate_pem(leaf)
                                                   + C.certificate_pem(inter[1]))
    (zone_dir / "server.crt").write_text(C.certificate_pem(leaf))  # not a chain file
    result = apply_i(lab, [root], [make_crl(root, 1), make_crl(inter, 4)],
                     chain_dir=str(zone_dir))
    assert result["intermediates_added"] == [ialias(inter)]
    assert nss.numbers() == {alias(root): 1, ialias(inter): 4}


def test_a_revocation_by_the_intermediate_reaches_the_database(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    inter = make_intermediate(root, "inter 01")
    apply_i(lab, [root], [make_crl(root, 3), make_crl(inter, 2)], [inter])
    check = apply_i(lab, [root], [make_crl(root, 3), make_crl(inter, 3, revoked=[77])], [inter],
                    check=True)
    assert check["changed"] and check["crls_imported"] == [ialias(inter)]
    assert "+ CRL of %s\n" % ialias(inter) in check["diff"]["after"]
    assert writes(nss) == [] and nss.numbers()[ialias(inter)] == 2
    result = apply_i(lab, [root], [make_crl(root, 3), make_crl(inter, 3, revoked=[77])], [inter])
    assert result["crls_imported"] == [ialias(inter)] and result["intermediates_added"] == []
    assert nss.numbers() == {alias(root): 3, ialias(inter): 3}
    assert 77 in [r.serial_number for r in nss.crls[ialias(inter)]]


def test_a_replaced_intermediate_stays_while_its_crl_is_published_then_goes_with_it(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    old, new = make_intermediate(root, "inter 01"), make_intermediate(root, "inter 02")
    apply_i(lab, [root], [make_crl(root, 3), make_crl(old, 2)], [old])
    # re-issued: the node's chains name the new one; the zone still publishes the old one's CRL
    result = apply_i(lab, [root], [make_crl(root, 3), make_crl(old, 3), make_crl(new, 1)], [new])
    assert result["intermediates_added"] == [ialias(new)] and result["intermediates_removed"] == []
    assert nss.numbers() == {alias(root): 3, ialias(old): 3, ialias(new): 1}
    # the old one's leaves expired: no CRL for it any more, so it leaves, its CRL first
    result = apply_i(lab, [root], [make_crl(root, 4), make_crl(new, 2)], [new])
    assert result["intermediates_removed"] == [ialias(old)]
    assert result["crls_deleted"] == [ialias(old)]
    assert set(nss.certs) == {alias(root), ialias(new)}
    assert nss.numbers() == {alias(root): 4, ialias(new): 2}
    order = writes(nss)
    assert order.index(("crlutil", "-D", ialias(old))) < order.index(("certutil", "-D",
                                                                      ialias(old)))


def test_a_retired_roots_intermediate_leaves_with_the_root(lab):
    nss, _tmp = lab
    old_root, new_root = make_root("root 01"), make_root("root 02")
    old, new = make_intermediate(old_root, "inter 01"), make_intermediate(new_root, "inter 02")
    crls = [make_crl(old_root, 3), make_crl(old, 2), make_crl(new_root, 1), make_crl(new, 1)]
    apply_i(lab, [old_root, new_root], crls, [old, new])
    assert set(nss.numbers()) == {alias(old_root), ialias(old), alias(new_root), ialias(new)}
    # retire: crl.pem may still hold the old CRLs, but their CAs no longer chain to a root
    result = apply_i(lab, [new_root], crls, [new])
    assert result["removed"] == [alias(old_root)]
    assert result["intermediates_removed"] == [ialias(old)]
    assert set(nss.certs) == {alias(new_root), ialias(new)}
    assert set(nss.numbers()) == {alias(new_root), ialias(new)}


def test_a_zone_intermediate_made_a_trust_anchor_is_untrusted_again(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    inter = make_intermediate(root, "inter 01")
    crls = [make_crl(root, 3), make_crl(inter, 2)]
    apply_i(lab, [root], crls, [inter])
    nss.certs[ialias(inter)] = (inter[1], "CT,C,C")
    result = apply_i(lab, [root], crls, [inter])
    assert result["changed"] and result["retrusted"] == [ialias(inter)]
    assert nss.certs[ialias(inter)][1] == ",,"


def test_check_mode_on_a_new_database_lists_the_intermediates_and_writes_nothing(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    inter = make_intermediate(root, "inter 01")
    result = apply_i(lab, [root], [make_crl(root, 1), make_crl(inter, 1)], [inter], check=True)
    assert result["created"] and result["intermediates_added"] == [ialias(inter)]
    assert sorted(result["crls_imported"]) == sorted([alias(root), ialias(inter)])
    assert nss.calls == [] and nss.certs == {}


def test_without_crl_parameters_no_intermediate_is_added(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    inter = make_intermediate(root, "inter 01")
    result = apply_i(lab, [root], None, [inter])
    assert result["intermediates_added"] == [] and set(nss.certs) == {alias(root)}


def test_an_intermediate_the_zone_publishes_no_crl_for_is_not_added(lab):
    nss, _tmp = lab
    root = make_root("root 01")
    inter = make_intermediate(root, "inter 01")
    result = apply_i(lab, [root], [make_crl(root, 1)], [inter])
    assert result["intermediates_added"] == [] and set(nss.certs) == {alias(root)}
