"""Revocation and CRLs (module_utils/_revocation.py): every live certificate stays revocable,
every CA with live leaves has a CRL, and CRL numbers never go backwards - across crashes
(an exception between every pair of file/database steps of a publication; an exception or
os._exit before every step of the learning after a restore and the publication after it) and
across a restore from an old backup (the fleet teaches the restored CA what happened after it).

The zone_root-driven tests run the module's whole logic against real CA directories.
"""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import sqlite3
import subprocess

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _catree
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils import _assess as A
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _revocation as R
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (
    crashed as crashed_at, zone_root_runner)

PASS = "correct horse battery staple"
UID, GID = os.getuid(), os.getgid()
UTC = datetime.timezone.utc


def row(serial, host, status="valid", days_left=100, profile="server", issuer_fp="i1",
        now=NOW):
    return {"serial": serial, "zone": "prod", "host": host, "profile": profile,
            "subject": "CN=%s" % host, "sans": {"dns": [host], "ip": []},
            "not_before": _layout.iso(now - 10 * DAY), "not_after": _layout.iso(now + days_left * DAY),
            "fingerprint": "fp-" + serial, "issuer": "CN=ca", "issuer_fingerprint": issuer_fp,
            "issued_at": _layout.iso(now - 10 * DAY), "status": status,
            "revocation_reason": "unspecified" if status == "revoked" else None,
            "revoked_at": _layout.iso(now - DAY) if status == "revoked" else None}


# --------------------------------------------------------------------------- selection

@pytest.fixture
def ledger_rows():
    return [
        row("a1", "node2", "valid"),
        row("a2", "node2", "superseded"),               # renewed: still on the node as .prev
        row("a3", "node2", "superseded", days_left=-1),  # expired: nothing to revoke
        row("a4", "node2", "revoked"),
        row("a5", "node2", "superseded", profile="client", days_left=3),
        row("b1", "node1", "valid"),
        row("b2", "node1", "superseded"),
    ]


def serials(rows):
    return [r["serial"] for r in rows]


def test_revoking_a_host_takes_every_unexpired_certificate_it_holds(ledger_rows):
    assert serials(R.select(ledger_rows, [], ["node2"], None, NOW)) == ["a1", "a2", "a5"]


def test_pruning_takes_every_unexpired_certificate_of_hosts_that_left(ledger_rows):
    assert serials(R.select(ledger_rows, [], [], ["node1"], NOW)) == ["a1", "a2", "a5"]
    assert serials(R.select(ledger_rows, [], [], ["node1", "node2"], NOW)) == []


def test_serial_revocation_is_unchanged(ledger_rows):
    # any status but revoked, expired or not, leading zeros and case ignored
    assert serials(R.select(ledger_rows, ["00A3", "b2", "a4"], [], None, NOW)) == ["a3", "b2"]
    with pytest.raises(TrustzoneError, match="no certificate with serial ff"):
        R.select(ledger_rows, ["ff"], [], None, NOW)


def test_a_host_is_empty_once_everything_expired(ledger_rows):
    assert R.select(ledger_rows, [], ["node2"], None, NOW + 200 * DAY) == []


# --------------------------------------------------------------------------- crl_due

def test_crl_due_compares_the_set_of_cas(keys):
    k1, k2 = keys.get("p256#crl-1"), keys.get("p256#crl-2")
    c1 = C.build_ca_certificate(k1, C.zone_name_attributes("prod", "one"), NOW - DAY,
                                NOW + 900 * DAY)
    c2 = C.build_ca_certificate(k2, C.zone_name_attributes("prod", "two"), NOW - DAY,
                                NOW + 900 * DAY)
    crl1 = C.build_crl(c1, k1, [], NOW - DAY, NOW + 7 * DAY, 3)
    crl2 = C.build_crl(c2, k2, [], NOW - DAY, NOW + 7 * DAY, 3)

    def due(crls, cas, committed=None):
        return R.crl_due(crls, cas, NOW, 2 * 86400, "1", "1", committed_number=committed)

    assert due([crl1, crl2], [c2, c1]) is None
    assert due([crl1, crl2], [c1]) == "the zone's CAs changed"          # a CA left
    assert due([crl1], [c1, c2]) == "the zone's CAs changed"            # a CA came
    assert due([crl1, crl1], [c1, c2]) == "the zone's CAs changed"      # same count, not set
    assert due([crl1, crl2], [c1, c2], committed=3) is None
    assert due([crl1, crl2], [c1, c2], committed=4).startswith("CRL number 4 was committed")


def test_crl_signers_keep_retired_cas_only_while_their_leaves_live(keys):
    def ca(label, cn, key_label=None):
        key = keys.get("p256#" + (key_label or label))
        return key, C.build_ca_certificate(key, C.zone_name_attributes("prod", cn), NOW - DAY,
                                           NOW + 900 * DAY)
    root, inter, old_inter = ca("s-root", "root"), ca("s-int", "int"), ca("s-old", "old int")
    extended_from = ca("s-ext", "root", key_label="s-root")       # same subject and key

    def fp(pair):
        return C.fingerprint(pair[1])

    rows = [row("1", "n", issuer_fp=fp(old_inter), days_left=5, status="superseded"),
            row("2", "n", issuer_fp=fp(extended_from), days_left=-1)]
    live = R.live_issuers(rows, NOW)
    signers = R.crl_signers([root, inter], [old_inter, extended_from], live)
    assert [C.fingerprint(cert) for _k, cert, _f in signers] == [
        fp(root), fp(inter), fp(old_inter)]
    assert signers[0][2] == {fp(root), fp(extended_from)}          # one CRL for both
    # once the old intermediate's last leaf expired, its CRL goes
    later = R.live_issuers(rows, NOW + 6 * DAY)
    assert len(R.crl_signers([root, inter], [old_inter, extended_from], later)) == 2
    assert R.needs_retired([root, inter], live) and not R.needs_retired([root, inter], later)


# --------------------------------------------------------------------------- zone_root runs

@pytest.fixture
def zone_root():
    """``run(dir, check=False, **params)`` -> zone_root.run's result, with the module's own
    defaults."""
    return zone_root_runner(passphrase=PASS, owner=str(UID), group=str(GID),
                            key_curve="secp256r1")


@pytest.fixture
def ca(tmp_path):
    path = tmp_path / "ca"
    path.mkdir(mode=0o700)
    return CaDir(str(path), UID, GID)


def now_utc():
    return datetime.datetime.now(UTC)


def issue(ca, keys, host, profile="server", issuer=None, days=300, dns=None):
    """A leaf signed by the CA's issuer now (or ``issuer`` = (key, cert)), recorded in the
    ledger the way the sign action records it (the host/profile's valid one is superseded)."""
    if issuer is None:
        ikey, icert, _chain = ca.issuer(PASS)
    else:
        ikey, icert = issuer
    now = now_utc()
    names = dns or [host, host + ".prod.example"]
    leaf = C.build_leaf_certificate(
        keys.get("p256#leaf-%s-%s" % (host, profile)).public_key(),
        C.zone_name_attributes("prod", names[-1]), names, [], icert, ikey,
        now - datetime.timedelta(minutes=1), min(now + days * DAY, C.not_after(icert)),
        ["digital_signature"], ["server_auth" if profile == "server" else "client_auth"])
    conn = _ledger.connect(ca.path)
    _ledger.record(conn, [{
        "serial": "%x" % leaf.serial_number, "zone": "prod", "host": host, "profile": profile,
        "subject": C.subject_text(leaf), "sans": C.names_of(leaf),
        "not_before": _layout.iso(C.not_before(leaf)), "not_after": _layout.iso(C.not_after(leaf)),
        "fingerprint": C.fingerprint(leaf), "issuer": C.subject_text(icert),
        "issuer_fingerprint": C.fingerprint(icert)}], _layout.iso(now))
    conn.close()
    return leaf


def revoke_host(ca, host, reason="key_compromise"):
    conn = _ledger.connect(ca.path)
    chosen = R.select(_ledger.rows(conn), [], [host], None, now_utc())
    _ledger.revoke(conn, [r["serial"] for r in chosen], reason, _layout.iso(now_utc()))
    conn.close()
    return chosen


def published(ca):
    return C.load_crls(_fs.read_file(ca.file("crl.pem")) or b"")


def revoked_by_crl(crls, cert):
    """Whether a CRL signed by ``cert``'s issuer key lists it (as a verifier decides)."""
    return any(crl.issuer == cert.issuer and cert.serial_number in C.crl_serials(crl)
               for crl in crls)


def crl_of(crls, ca_cert):
    mine = [crl for crl in crls if C.crl_signed_by(crl, ca_cert)]
    assert len(mine) <= 1, "two CRLs for one CA"
    return mine[0] if mine else None


def openssl_verify(tmp_path, root, untrusted, crl_text, leaf):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl")
    files = {}
    for name, pems in (("root", [root]), ("untrusted", untrusted), ("leaf", [leaf])):
        files[name] = tmp_path / (name + ".pem")
        files[name].write_text("".join(C.certificate_pem(c) for c in pems))
    (tmp_path / "crl.pem").write_text(crl_text)
    argv = ["openssl", "verify", "-crl_check_all", "-CAfile", str(files["root"]),
            "-CRLfile", str(tmp_path / "crl.pem")]
    if untrusted:
        argv += ["-untrusted", str(files["untrusted"])]
    out = subprocess.run(argv + [str(files["leaf"])], capture_output=True, text=True,
                         check=False)
    return out.returncode, out.stdout + out.stderr


def test_old_intermediate_keeps_a_crl_while_its_leaves_live(zone_root, ca, keys, tmp_path):
    first = zone_root(ca.path, intermediate=True)
    root = C.load_certificate(first["roots"][0])
    old_int = C.load_certificate(first["issuer"])
    before = issue(ca, keys, "node2")                       # signed by the old intermediate
    rotated = zone_root(ca.path, intermediate=True, intermediate_force=True)
    new_int = C.load_certificate(rotated["issuer"])
    assert C.fingerprint(new_int) != C.fingerprint(old_int)
    # the old intermediate still has a live leaf: it keeps its CRL
    assert crl_of(published(ca), old_int) is not None
    after = issue(ca, keys, "node2")                        # renewal: `before` superseded
    assert {r["serial"] for r in revoke_host(ca, "node2")} == {
        "%x" % before.serial_number, "%x" % after.serial_number}
    result = zone_root(ca.path, intermediate=True)
    assert result["crl_signed"] == "revocations changed"
    crls = published(ca)
    assert crl_of(crls, old_int) is not None and crl_of(crls, new_int) is not None
    assert crl_of(crls, root) is not None
    assert revoked_by_crl(crls, before) and revoked_by_crl(crls, after)
    # a real verifier holding the node's crl.pem refuses both
    for leaf, inter in ((before, old_int), (after, new_int)):
        code, out = openssl_verify(tmp_path, root, [inter], result["crl"], leaf)
        assert code != 0 and "revoked" in out, out
    # nodes see both as revoked (what node.py decides with)
    revoked = A.revoked_set(C.load_crls(result["crl"]))
    assert (before.issuer.rfc4514_string(), before.serial_number) in revoked


def test_retired_root_keeps_a_crl_until_its_leaves_expire(zone_root, ca, keys, tmp_path):
    zone_root(ca.path)
    old_root = C.load_certificate(zone_root(ca.path)["roots"][0])
    leaf = issue(ca, keys, "node2")
    zone_root(ca.path, rotate="trust", rotate_force=True)
    zone_root(ca.path, rotate="use")
    done = zone_root(ca.path, rotate="retire", retire_confirmed=True)
    new_root = C.load_certificate(done["roots"][0])
    assert C.fingerprint(new_root) != C.fingerprint(old_root)
    revoke_host(ca, "node2")
    result = zone_root(ca.path)
    crls = C.load_crls(result["crl"])
    assert crl_of(crls, old_root) is not None and revoked_by_crl(crls, leaf)
    code, out = openssl_verify(tmp_path, old_root, [], result["crl"], leaf)
    assert code != 0 and "revoked" in out, out
    number = C.crl_number(crls[0])
    # once every leaf of the old root expired, its CRL goes (and the number still grows)
    db = sqlite3.connect(ca.file("ledger.db"))
    db.execute("UPDATE issuance SET not_after = ?", (_layout.iso(now_utc() - DAY),))
    db.commit()
    db.close()
    gone = zone_root(ca.path)
    assert gone["crl_signed"] == "the zone's CAs changed"
    crls = C.load_crls(gone["crl"])
    assert crl_of(crls, old_root) is None and crl_of(crls, new_root) is not None
    assert C.crl_number(crls[0]) > number


def test_extended_root_has_one_crl_listing_leaves_of_both_certificates(zone_root, ca, keys):
    zone_root(ca.path)
    leaf = issue(ca, keys, "node2")                       # under the first root certificate
    extended = zone_root(ca.path, extend=True, rotate_force=True, rotate_before="30d")
    assert extended["extended"] is True
    revoke_host(ca, "node2")
    crls = C.load_crls(zone_root(ca.path)["crl"])
    assert len(crls) == 1                                  # same subject and key: one CRL
    assert revoked_by_crl(crls, leaf)


def test_nothing_to_do_changes_nothing_and_check_mode_writes_nothing(zone_root, ca, keys):
    zone_root(ca.path, intermediate=True)
    issue(ca, keys, "node2")
    zone_root(ca.path, intermediate=True, intermediate_force=True)
    revoke_host(ca, "node2")

    def listing():
        return {n: _fs.read_file(ca.file(n)) for n in ("crl.pem", "ledger.db")}

    before = listing()
    planned = zone_root(ca.path, check=True, intermediate=True)
    assert planned["crl_signed"] == "revocations changed"
    assert listing() == before
    zone_root(ca.path, intermediate=True)
    again = zone_root(ca.path, intermediate=True)
    assert again["crl_signed"] is None and again["changed"] is False


# --------------------------------------------------------------------------- crashes

class Crash(BaseException):
    pass


STEPS = ((_ledger, "set_meta"), (_ledger, "transaction"), (_fs, "atomic_write"),
         (os, "replace"), (os, "fsync"), (_fs, "_fsync_dir"))


def crash_at(monkeypatch, k, after):
    """Make the k-th file/database step raise (before it runs, or right after)."""
    count = {"n": 0}

    def wrap(real):
        def step(*args, **kwargs):
            count["n"] += 1
            mine = count["n"]
            if mine == k and not after:
                raise Crash("before step %d (%s)" % (k, real.__name__))
            value = real(*args, **kwargs)
            if mine == k and after:
                if hasattr(value, "__enter__"):  # a transaction: crash inside, before COMMIT
                    return _crashing(value, k)
                raise Crash("after step %d (%s)" % (k, real.__name__))
            return value
        return step

    for module, name in STEPS:
        if hasattr(module, name):
            monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    return count


class _crashing:
    def __init__(self, inner, k):
        self.inner, self.k = inner, k

    def __enter__(self):
        return self.inner.__enter__()

    def __exit__(self, *exc):
        if exc[0] is None:
            exc = (Crash, Crash("inside transaction %d" % self.k), None)
        self.inner.__exit__(*exc)
        raise exc[1]


def snapshot_number(ca, seen):
    """Record crl.pem's number -> content; the same number with other content fails."""
    data = _fs.read_file(ca.file("crl.pem"))
    if data is None:
        return None
    crls = C.load_crls(data)
    number = C.crl_number(crls[0])
    assert len({C.crl_number(c) for c in crls}) == 1
    assert seen.setdefault(number, data) == data, "CRL number %d published twice" % number
    return number


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_crash_between_any_two_crl_steps_never_repeats_a_number(zone_root, tmp_path, keys,
                                                                  monkeypatch, after):
    crashed_points = 0
    for k in range(1, 30):
        path = tmp_path / ("ca-%s-%d" % (after, k))
        path.mkdir(mode=0o700)
        ca = CaDir(str(path), UID, GID)
        seen = {}
        zone_root(ca.path)
        first = snapshot_number(ca, seen)
        leaf = issue(ca, keys, "node2")
        revoke_host(ca, "node2")
        with monkeypatch.context() as patch:
            count = crash_at(patch, k, after)
            try:
                zone_root(ca.path)
                crashed = False
            except Crash:
                crashed = True
        if not crashed:
            assert count["n"] < k
            break
        crashed_points += 1
        middle = snapshot_number(ca, seen)
        # a crash left no stray temp file behind that a reader could take for crl.pem
        assert _fs.read_file(ca.file("crl.pem")) is not None
        result = zone_root(ca.path)
        last = snapshot_number(ca, seen)
        assert last > first, (k, first, middle, last)
        if middle == first:  # the crash stopped the publication: the next run makes one,
            assert last > middle, (k, first, middle, last)  # with a higher number
        # (a crash after crl.pem was complete leaves nothing to do; `seen` proves that every
        # number ever on disk had one content)
        assert revoked_by_crl(C.load_crls(result["crl"]), leaf), k
        assert zone_root(ca.path)["crl_signed"] is None, k     # and then it is stable
    assert crashed_points >= 4  # the publication has at least commit, write, fsync, rename


# --------------------------------------------------------------------------- restore

def learn(ca, fleet, check=False):
    pytest.importorskip("ansible.module_utils.basic")
    from ansible_collections.trustzone.pki.plugins.modules import ledger_learn as L

    class Module:
        check_mode = check
        params = {"zone": "prod", "dir": ca.path, "passphrase": PASS, "ca_certs": [],
                  "fleet": fleet}
    return L.run(Module())


def names_of(host):
    return {"common_name": host + ".prod.example", "dns": [host, host + ".prod.example"],
            "ip": []}


def test_restore_from_an_old_backup_learns_revocations_issuances_and_the_number(
        zone_root, ca, keys, tmp_path):
    zone_root(ca.path)
    node1 = issue(ca, keys, "node1")
    backup = tmp_path / "backup"
    shutil.copytree(ca.path, str(backup))                      # the backup
    backup_number = C.crl_number(published(ca)[0])
    # after the backup: node2 joins, node1 is revoked, CRLs are published and distributed
    node2 = issue(ca, keys, "node2")
    revoke_host(ca, "node1")
    zone_root(ca.path)
    issue(ca, keys, "node1")                                    # node1's replacement ...
    node1_new = issue(ca, keys, "node1")                        # ... renewed again
    stolen = issue(ca, keys, "node1", profile="client")         # only node2 will show it
    fleet_crl = zone_root(ca.path)["crl"]
    fleet_number = C.crl_number(C.load_crls(fleet_crl)[0])
    assert fleet_number > backup_number
    # a hostile node2 also shows node1's certificate and a forged CRL with a huge number
    evil = keys.get("p256#evil")
    ikey, icert, _chain = ca.issuer(PASS)
    forged = C.crl_pem(C.build_crl(
        C.build_ca_certificate(evil, icert.subject, now_utc() - DAY, now_utc() + DAY), evil,
        [(node2.serial_number, now_utc(), "unspecified")], now_utc() - DAY,
        now_utc() + DAY, 10 ** 6))
    fleet = [
        {"host": "node1", "names": names_of("node1"),            # as restore.yml sends it
         "files": [{"profile": "crl",
                    "content_b64": base64.b64encode(fleet_crl.encode()).decode()},
                   {"profile": "server", "content": C.certificate_pem(node1_new)},
                   {"profile": "server.prev", "content": C.certificate_pem(node1)}]},
        {"host": "node2", "names": names_of("node2"),
         "files": [{"profile": "crl", "content": forged},
                   {"profile": "server", "content": C.certificate_pem(node2)},
                   {"profile": "client", "content": C.certificate_pem(stolen)}]},
    ]
    # restore the old backup
    shutil.rmtree(ca.path)
    shutil.copytree(str(backup), ca.path)
    assert learn(ca, fleet, check=True)["changed"] is True
    assert _fs.read_file(os.path.join(ca.path, "ledger.db")) == _fs.read_file(
        str(backup / "ledger.db"))                                     # check mode wrote nothing
    result = learn(ca, fleet)
    assert result["seen_crl_number"] == fleet_number
    assert result["crl_number"] == fleet_number
    assert {(r["host"], r["serial"]) for r in result["learned"]} == {
        ("node2", "%x" % node2.serial_number), ("node1", "%x" % node1_new.serial_number)}
    assert [r["serial"] for r in result["revoked"]] == ["%x" % node1.serial_number]
    assert any("no zone CA signed" in line for line in result["ignored"])
    assert any("does not grant" in line for line in result["ignored"])
    assert "1 revocation(s) put back" in result["msg"]
    assert learn(ca, fleet)["changed"] is False                        # learning twice: no-op
    crl = zone_root(ca.path)
    crls = C.load_crls(crl["crl"])
    assert C.crl_number(crls[0]) > fleet_number                        # strictly greater
    assert revoked_by_crl(crls, node1) and not revoked_by_crl(crls, node2)
    rows = {r["serial"]: r for r in _ledger.rows(_ledger.connect(ca.path))}
    assert rows["%x" % node1.serial_number]["status"] == "revoked"
    assert rows["%x" % node1.serial_number]["revocation_reason"] == "key_compromise"
    assert rows["%x" % node2.serial_number]["status"] == "valid"
    assert rows["%x" % node2.serial_number]["host"] == "node2"
    # node2's learned certificate is revocable by host again
    assert [r["serial"] for r in revoke_host(ca, "node2")] == ["%x" % node2.serial_number]


def test_a_revocation_of_a_certificate_nobody_shows_is_kept(zone_root, ca, keys, tmp_path):
    zone_root(ca.path)
    backup = tmp_path / "backup"
    shutil.copytree(ca.path, str(backup))
    lost = issue(ca, keys, "node3")                             # issued and revoked after
    revoke_host(ca, "node3")
    fleet_crl = zone_root(ca.path)["crl"]
    shutil.rmtree(ca.path)
    shutil.copytree(str(backup), ca.path)
    result = learn(ca, [{"host": "node1", "names": names_of("node1"),
                         "files": [{"profile": "crl", "content": fleet_crl}]}])
    assert [r["known"] for r in result["revoked"]] == [False]
    crls = C.load_crls(zone_root(ca.path)["crl"])
    assert revoked_by_crl(crls, lost)


def test_plan_learn_without_a_fleet_changes_nothing():
    # (two valid rows of one host and profile are left as they are: nothing was learned)
    plan = R.plan_learn([row("a1", "node1"), row("a2", "node1")], "prod", [], [], 7, NOW)
    assert (plan["rows"], plan["revoke"], plan["supersede"], plan["crl_number"]) == (
        [], [], [], 7)


def test_learning_survives_whatever_a_hostile_node_returns(zone_root, ca, keys):
    zone_root(ca.path)
    issue(ca, keys, "node1")
    junk = [{"host": 1}, "x", None,
            {"host": "node1", "names": "all of them",
             "files": ["junk", {"content_b64": {"a": 1}}, {"content_b64": "!!!not base64"},
                       {"content": "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"},
                       {"content": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"},
                       {"content": ["not", "text"]}, {"content": "x" * (2 * 1024 * 1024)}]}]
    result = learn(ca, junk)
    assert (result["changed"], result["learned"], result["revoked"]) == (False, [], [])
    assert len(result["ignored"]) == 2  # the two malformed PEM blocks, each named


# --------------------------------------------------------------------------- learning, crashed

WRITES = ("BEGIN", "COMMIT", "INSERT", "UPDATE", "DELETE", "REPLACE")


class _CountingConn:
    """A ledger connection whose every write statement (and BEGIN/COMMIT) is a step."""

    def __init__(self, conn, tick):
        self._conn, self._tick = conn, tick

    def execute(self, sql, *args):
        if sql.split(None, 1)[0].upper() in WRITES:
            self._tick("sql " + " ".join(sql.split()[:3]))
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def crash_learning_at(patch, k, how):
    """Crash before the k-th database or file step (raise, or os._exit(17))."""
    count = {"n": 0}

    def tick(what):
        count["n"] += 1
        if count["n"] == k:
            if how == "exit":
                os._exit(17)
            raise Crash("before step %d (%s)" % (k, what))

    real_connect = _ledger.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        return None if conn is None else _CountingConn(conn, tick)

    patch.setattr(_ledger, "connect", connect)
    for name in ("replace", "rename", "unlink", "fsync"):
        real = getattr(os, name)

        def step(*args, _real=real, _name=name, **kwargs):
            tick("os.%s" % _name)
            return _real(*args, **kwargs)

        patch.setattr(os, name, step)
    return count


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_crash_at_every_step_of_learning_and_the_crl_after_it(zone_root, tmp_path, keys,
                                                                monkeypatch, how):
    """Learning after a restore (ledger_learn's merge) and the CRL publication that follows
    it (zone_root), crashed before every database write and file step: the re-run completes,
    no revocation the fleet showed is lost, no CRL number is published with two contents,
    and the numbers end above every number the fleet holds."""
    ca = CaDir(str(tmp_path / "live"), UID, GID)
    os.makedirs(ca.path, mode=0o700)
    zone_root(ca.path)
    node1 = issue(ca, keys, "node1")
    backup = str(tmp_path / "backup")
    shutil.copytree(ca.path, backup)                                   # the backup
    node2 = issue(ca, keys, "node2")
    revoke_host(ca, "node1")
    lost = issue(ca, keys, "node3")                                    # nobody will show it
    revoke_host(ca, "node3")
    node1_new = issue(ca, keys, "node1")
    fleet_crl = zone_root(ca.path)["crl"]
    fleet_number = C.crl_number(C.load_crls(fleet_crl)[0])
    fleet = [
        {"host": "node1", "names": names_of("node1"),
         "files": [{"profile": "crl", "content": fleet_crl},
                   {"profile": "server", "content": C.certificate_pem(node1_new)},
                   {"profile": "server.prev", "content": C.certificate_pem(node1)}]},
        {"host": "node2", "names": names_of("node2"),
         "files": [{"profile": "server", "content": C.certificate_pem(node2)}]},
    ]
    revoked = {"%x" % c.serial_number for c in (node1, lost)}

    def learn_and_publish(target):
        learn(target, fleet)
        return zone_root(target.path)

    def ledger_of(target):
        conn = _ledger.connect(target.path)
        try:
            return {r["serial"]: (r["host"], r["profile"], r["status"],
                                  r["revocation_reason"]) for r in _ledger.rows(conn)}
        finally:
            conn.close()

    clean = CaDir(str(tmp_path / "crash-free"), UID, GID)                # what a run without
    shutil.copytree(backup, clean.path)                                # a crash ends with
    _catree.mark_restored(clean.path, "sha256:unit", UID, GID)
    learn_and_publish(clean)
    want = ledger_of(clean)
    assert {s for s, r in want.items() if r[2] == "revoked"} == revoked
    assert want["%x" % node2.serial_number] == ("node2", "server", "valid", None)
    assert want["%x" % node1_new.serial_number][:2] == ("node1", "server")

    crashes = 0
    for k in range(1, 400):
        target = CaDir(str(tmp_path / ("restored-%d" % k)), UID, GID)
        shutil.copytree(backup, target.path)                           # the restore, as
        _catree.mark_restored(target.path, "sha256:unit", UID, GID)    # ca_restore notes it
        seen = {fleet_number: fleet_crl.encode("ascii")}
        snapshot_number(target, seen)
        with monkeypatch.context() as patch:
            count = crash_learning_at(patch, k, how)  # armed here, for the child too
            crashed = crashed_at(lambda: learn_and_publish(target), how, Crash, "learning")
        if not crashed:
            if how == "raise":
                assert count["n"] < k
            break
        crashes += 1
        middle = snapshot_number(target, seen)   # never a number twice with other content
        assert middle is not None
        # the re-run completes with nothing for the operator to do
        learn(target, fleet)
        result = zone_root(target.path)
        last = snapshot_number(target, seen)
        assert last > fleet_number, (k, middle, last)
        crls = C.load_crls(result["crl"])
        assert revoked_by_crl(crls, node1) and revoked_by_crl(crls, lost), k
        assert not revoked_by_crl(crls, node2) and not revoked_by_crl(crls, node1_new), k
        assert ledger_of(target) == want, k          # no revocation or row lost or doubled
        assert want["%x" % node1.serial_number][2:] == ("revoked", "key_compromise")
        assert not _catree.learning_pending(target.path), k
        # and then it is stable
        assert learn(target, fleet)["changed"] is False, k
        assert zone_root(target.path)["crl_signed"] is None, k
        assert snapshot_number(target, seen) == last
    assert crashes >= 8, "only %d steps were crashed" % crashes
    print("learning/%s: %d crash points" % (how, crashes))
