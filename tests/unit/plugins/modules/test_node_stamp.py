"""The node's fast path (module_utils/_stamp.py) on real files: a run that found everything
right leaves a stamp, the next identical run is answered from it with the same result, and a
change to any input - one at a time: a byte of a certificate with the same size and mtime, a
mode, an owner, a root, a CRL, a profile, an anchor, a staged file, the trust layout, the
code, the clock passing a renew-at or going back - makes the full check run and find it."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import types

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _node
from ansible_collections.trustzone.pki.plugins.module_utils import _stamp
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as ID
from ansible_collections.trustzone.pki.plugins.modules import node as N
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.test_node_identity import (
    NAMES, fake_module, sign)

UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="profiles are owned by root")


class Zone:
    """A zone directory with a trust anchor directory, driven like the module's main()."""

    def __init__(self, tmp_path, ca):
        self.ca = ca
        self.dir = tmp_path / "prod"
        self.anchors = tmp_path / "anchors"
        self.anchors.mkdir()
        self.profiles = ID.resolve_profiles(None, "prod", str(self.dir), dict(NAMES))
        self.updates = []
        self.params = dict(zone="prod", dir=str(self.dir), roots=[ca.pem], issuers=None,
                           crl=None, profiles=self.profiles, certificates=None, rollback=[],
                           trust={"anchor_dir": str(self.anchors), "suffix": ".crt",
                                  "update_command": ["update"], "fresh_command": None},
                           fast_path=True, code="c0de")

    def module(self, params, check=False):
        module = fake_module(params, check)

        def run_command(command, **_kwargs):
            self.updates.append(command)
            return 0, "", ""
        module.run_command = run_command
        return module

    def call(self, check=False, now=None, **extra):
        """(answered from the stamp, result), as modules/node.py's main() does it."""
        params = dict(self.params, **extra)
        fast = _stamp.answer(params, False, lambda _name: None, now)
        if fast is not None:
            return True, fast
        return False, N.run(self.module(params, check))

    def issue(self, **sign_args):
        _fast, first = self.call()
        certificates = {}
        for name, item in first["requests"].items():
            csr = C.load_csr(item["csr"])
            profile = [p for p in self.profiles if p["name"] == name][0]
            certificates[name] = {"certificate": C.certificate_pem(
                sign(self.ca, csr.public_key(), profile, **sign_args)), "chain": []}
        self.call(certificates=certificates)

    def stamped(self):
        """Issue, then one full no-op run that leaves the stamp; the next call answers
        from it."""
        self.issue()
        fast, result = self.call()
        assert not fast and not result["changed"] and result["requests"] == {}
        assert os.path.exists(self.stamp_path)
        fast, again = self.call()
        assert fast, "an unchanged node must be answered from its stamp"
        return again

    @property
    def stamp_path(self):
        return str(self.dir / _stamp.NAME)

    def server(self, key):
        return self.profiles[0][key]


def make_ca(unique):
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    now = datetime.datetime.now(UTC)
    cert = C.build_ca_certificate(key, C.zone_name_attributes("prod", "trustzone prod root CA",
                                                              unique=unique),
                                  now - DAY, now + 3650 * DAY)
    return types.SimpleNamespace(key=key, cert=cert, pem=C.certificate_pem(cert))


@pytest.fixture(scope="module")
def ca():
    return make_ca("01")


@pytest.fixture
def zone(tmp_path, ca):
    return Zone(tmp_path, ca)


def other_ca():
    return make_ca("02").pem


# --------------------------------------------------------------------------- the answer

def test_the_stamp_answers_exactly_what_the_full_check_says(zone):
    fast = zone.stamped()
    full = N.run(zone.module(dict(zone.params, fast_path=False)))
    assert fast == full
    assert fast["changed"] is False and sorted(fast["installed"]) == ["client", "server"]
    assert fast["identities"]["server"]["state"] == "valid"


def test_a_full_run_that_changed_something_leaves_no_stamp(zone):
    zone.issue()
    assert not os.path.exists(zone.stamp_path)  # the install run changed files
    os.chmod(zone.server("key_path"), 0o644)
    fast, result = zone.call()
    assert not fast and result["changed"]  # it put the mode back: no stamp yet
    assert not os.path.exists(zone.stamp_path)
    assert zone.call() == (False, zone.call(fast_path=False)[1])  # now stamped
    assert zone.call()[0]


def test_check_mode_is_answered_but_never_writes_a_stamp(zone):
    zone.issue()
    fast, result = zone.call(check=True)
    assert not fast and not result["changed"] and not os.path.exists(zone.stamp_path)
    zone.call()
    assert zone.call(check=True)[0]


def test_the_stamp_is_private_and_not_in_the_zone_listing(zone):
    zone.stamped()
    st = os.lstat(zone.stamp_path)
    assert oct(st.st_mode & 0o777) == "0o600" and st.st_uid == os.geteuid()
    stamp = json.loads(open(zone.stamp_path).read())
    assert _stamp.NAME not in stamp["seen"]["dirs"][str(zone.dir)]["entries"]
    assert "PRIVATE KEY" not in open(zone.stamp_path).read()


def test_days_left_is_counted_at_answer_time(zone):
    zone.stamped()
    stamp = json.loads(open(zone.stamp_path).read())
    later = datetime.datetime.now(UTC) + datetime.timedelta(hours=20)
    fast, result = zone.call(now=later)
    assert fast
    end = datetime.datetime.strptime(stamp["result"]["identities"]["server"]["not_after"],
                                     "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert result["identities"]["server"]["days_left"] == int((end - later).total_seconds()
                                                              // 86400)


# --------------------------------------------------------------------------- one input at a time

def flip_byte_same_size_and_mtime(path):
    st = os.stat(path)
    data = bytearray(open(path, "rb").read())
    middle = data.index(b"\n") + 40  # inside the base64 body
    data[middle] = ord("A") if data[middle] != ord("A") else ord("B")
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_a_byte_of_a_certificate_with_the_same_size_and_mtime(zone):
    zone.stamped()
    flip_byte_same_size_and_mtime(zone.server("cert_path"))
    fast, result = zone.call()
    assert not fast and "server" in result["requests"]


def test_a_mode(zone):
    zone.stamped()
    os.chmod(zone.server("key_path"), 0o644)
    fast, result = zone.call()
    assert not fast and result["changed"] and zone.server("key_path") in result["files"]
    assert oct(os.stat(zone.server("key_path")).st_mode & 0o777) == "0o600"


def test_an_owner(zone):
    zone.stamped()
    os.chown(zone.server("cert_path"), 1, 1)
    fast, result = zone.call()
    assert not fast and result["changed"]
    assert os.stat(zone.server("cert_path")).st_uid == 0


def test_a_root(zone):
    zone.stamped()
    fast, result = zone.call(roots=[zone.ca.pem, other_ca()])
    assert not fast and result["changed"] and len(result["trust"]["added"]) == 1


def test_a_crl(zone):
    before = zone.stamped()
    serial = int(before["identities"]["server"]["serial"], 16)
    now = datetime.datetime.now(UTC)
    pem = C.crl_pem(C.build_crl(zone.ca.cert, zone.ca.key, [(serial, now, None)], now,
                                now + DAY, 1))
    fast, result = zone.call(crl=pem)
    assert not fast
    assert [r["reason"] for r in result["requests"]["server"]["reasons"]] == ["revoked"]


def test_a_profile(zone):
    zone.stamped()
    zone.profiles[0]["dns"] = zone.profiles[0]["dns"] + ["web1-alias.prod.example"]
    fast, result = zone.call()
    assert not fast and "names" in [r["reason"] for r in result["requests"]["server"]["reasons"]]


def test_an_anchor(zone):
    zone.stamped()
    anchor = sorted(os.listdir(zone.anchors))[0]
    with open(os.path.join(zone.anchors, anchor), "w") as handle:
        handle.write(other_ca())
    fast, result = zone.call()
    assert not fast and result["changed"] and zone.updates[-1] == ["update"]


def test_an_anchor_removed(zone):
    zone.stamped()
    for name in os.listdir(zone.anchors):
        os.unlink(os.path.join(zone.anchors, name))
    fast, result = zone.call()
    assert not fast and len(result["trust"]["added"]) == 1


def test_a_staged_certificate_left_by_a_crash(zone):
    zone.stamped()
    staged = zone.server("cert_path") + ".new-0123456789abcdef"
    with open(staged, "w") as handle:
        handle.write("leftover")
    fast, result = zone.call()
    assert not fast and staged in result["files"]  # recover() discarded it


def test_the_trust_layout(zone, tmp_path):
    zone.stamped()
    elsewhere = tmp_path / "anchors2"
    elsewhere.mkdir()
    fast, result = zone.call(trust=dict(zone.params["trust"], anchor_dir=str(elsewhere)))
    assert not fast and result["trust"]["added"]


def test_the_code(zone):
    zone.stamped()
    assert not zone.call(code="other")[0]


def test_the_clock_passing_a_renew_at(zone, monkeypatch):
    zone.issue(days=31.5)  # renew-at (30 days before the end) is about half a day away
    assert not zone.call()[0]
    now = datetime.datetime.now(UTC)
    assert zone.call(now=now + datetime.timedelta(hours=2))[0]
    later = now + datetime.timedelta(hours=13)
    assert _stamp.answer(zone.params, False, lambda _name: None, later) is None

    class Later(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return later
    monkeypatch.setattr(_node, "datetime", types.SimpleNamespace(
        datetime=Later, timezone=datetime.timezone, timedelta=datetime.timedelta))
    fast, result = zone.call(now=later)
    assert not fast
    assert [r["reason"] for r in result["requests"]["server"]["reasons"]] == ["expiring"]


def test_the_clock_going_back_or_a_day_passing(zone):
    zone.stamped()
    now = datetime.datetime.now(UTC)
    assert not zone.call(now=now - datetime.timedelta(minutes=5))[0]
    assert not zone.call(now=now + _stamp.MAX_AGE + datetime.timedelta(minutes=1))[0]


@pytest.mark.parametrize("how", ["mode", "owner", "link", "garbage"])
def test_a_stamp_that_is_not_the_modules_own_is_ignored(zone, how):
    zone.stamped()
    path = zone.stamp_path
    if how == "mode":
        os.chmod(path, 0o644)
    elif how == "owner":
        os.chown(path, 1, 1)
    elif how == "link":
        os.rename(path, path + ".real")
        os.symlink(path + ".real", path)
    else:
        with open(path, "w") as handle:
            handle.write("{not json")
    assert not zone.call()[0]


def test_the_content_hash_decides_even_when_every_stat_field_matches(zone):
    """A byte changed with size, mtime - and here even ctime and inode - as before (a clock
    set back, a restore that keeps them): only the SHA-256 still differs, and it is enough."""
    zone.stamped()
    stamp = json.loads(open(zone.stamp_path).read())
    flip_byte_same_size_and_mtime(zone.server("cert_path"))
    seen = _stamp.observe(*_stamp.watched(zone.params, _stamp.layout_of(zone.params,
                                                                        lambda _n: None)))
    directory, name = os.path.split(zone.server("cert_path"))
    now_entry = seen["dirs"][directory]["entries"][name]
    old_entry = stamp["seen"]["dirs"][directory]["entries"][name]
    assert now_entry[-1] != old_entry[-1]
    old_entry[:-1] = now_entry[:-1]  # every stat field as it is now; the old hash
    assert _stamp.replay(stamp, stamp["inputs"], seen, datetime.datetime.now(UTC)) is None
    old_entry[-1] = now_entry[-1]  # and with the hash too, the same stamp would stand
    assert _stamp.replay(stamp, stamp["inputs"], seen, datetime.datetime.now(UTC)) is not None


def test_a_file_that_moves_while_the_full_check_runs_leaves_no_stamp(zone):
    zone.issue()

    def moving():
        result = N.run(zone.module(dict(zone.params, fast_path=False)))
        os.utime(zone.server("chain_path"))
        return result
    _stamp.run_full(zone.params, False, lambda _n: None, moving)
    assert not os.path.exists(zone.stamp_path)


def test_a_pending_key_leaves_no_stamp(zone):
    zone.issue()
    pending = zone.server("key_path") + ".next-0123456789abcdef"
    with open(pending, "w") as handle:
        handle.write("x")
    zone.call()
    assert not os.path.exists(zone.stamp_path)


def test_fast_path_off_never_answers_from_the_stamp(zone):
    zone.stamped()
    assert not zone.call(fast_path=False)[0]
    assert not zone.call(code=None)[0]


# --------------------------------------------------------------------------- no cryptography

def test_answering_from_the_stamp_imports_no_cryptography(zone):
    zone.stamped()
    script = r"""
import json, sys
params = json.loads(sys.stdin.read())
from ansible_collections.trustzone.pki.plugins.modules import node
from ansible_collections.trustzone.pki.plugins.module_utils import _stamp
result = _stamp.answer(params, False, lambda _name: None)
print(json.dumps({"answered": result is not None,
                  "crypto": sorted(m for m in sys.modules if m.split(".")[0] == "cryptography")}))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", script], input=json.dumps(zone.params),
                         capture_output=True, text=True, env=env, check=True)
    seen = json.loads(out.stdout)
    assert seen == {"answered": True, "crypto": []}


def test_the_check_round_may_keep_the_stamp_in_check_mode(zone):
    zone.issue()
    fast, _result = zone.call(check=True, stamp_in_check_mode=True)
    assert not fast and os.path.exists(zone.stamp_path)
    # the flag is no input: the real run's call (without it) is answered from that stamp
    assert zone.call()[0] and zone.call(check=True)[0]
