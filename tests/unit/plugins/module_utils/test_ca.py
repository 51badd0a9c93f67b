"""_ca.CaDir: the CA host's directory - key pairs, rotation state, issuer per phase, archive
and promotion of the next root, including every point where a promotion of the old (flat)
layout could be interrupted: such a directory is read without being changed and migrated into
a generation by the next apply.

The last section drives ``zone_root.run`` (the module's whole logic, with a stand-in for
AnsibleModule) over the same directories, to show what an operator's re-run does after an
interruption. It needs Ansible and is skipped without it; the rest needs only cryptography.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir, Fs
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (
    zone_root_runner)

PASS = "correct horse battery staple"
UID, GID = os.getuid(), os.getgid()


# --------------------------------------------------------------------------- builders

class Pair:
    def __init__(self, key, cert):
        self.key, self.cert = key, cert
        self.fp = C.fingerprint(cert)
        self.fp16 = self.fp[:16]


def make_root(keys, label, unique):
    key = keys.get("p256#ca-" + label)
    cert = C.build_ca_certificate(
        key, C.zone_name_attributes("prod", "trustzone prod root CA", unique=unique),
        NOW - 30 * DAY, NOW + 3650 * DAY)
    return Pair(key, cert)


def make_intermediate(keys, label, root, unique):
    key = keys.get("p256#ca-" + label)
    cert = C.build_ca_certificate(
        key, C.zone_name_attributes("prod", "trustzone prod intermediate CA", unique=unique),
        NOW - 30 * DAY, NOW + 1800 * DAY, path_length=0, issuer_cert=root.cert,
        issuer_key=root.key)
    return Pair(key, cert)


@pytest.fixture
def old(keys):
    return make_root(keys, "old", "0000000000000001")


@pytest.fixture
def new(keys):
    return make_root(keys, "new", "0000000000000002")


@pytest.fixture
def old_int(keys, old):
    return make_intermediate(keys, "old-int", old, "00000000000000a1")


@pytest.fixture
def new_int(keys, new):
    return make_intermediate(keys, "new-int", new, "00000000000000a2")


class LegacyCa(CaDir):
    """A CA directory in the flat layout, written the way the code before generations wrote
    it (certificate first, then key; promotion by renames), to build migration inputs."""

    def write_pair(self, stem, key, cert, passphrase):
        _fs.atomic_write(self.file(stem + ".crt"), C.certificate_pem(cert), 0o644,
                         self.uid, self.gid)
        _fs.atomic_write(self.file(stem + ".key"), C.private_key_pem(key, passphrase), 0o600,
                         self.uid, self.gid)

    def write_state(self, state):
        if state is None:
            _fs.remove(self.file("rotation.json"))
            return
        _fs.atomic_write(self.file("rotation.json"), json.dumps(state, sort_keys=True,
                                                                indent=1),
                         0o600, self.uid, self.gid)

    def archive(self, stem):
        crt = _fs.read_file(self.file(stem + ".crt"))
        if crt is None:
            return
        _fs.ensure_dir(self.file("retired"), 0o700, self.uid, self.gid)
        prefix = "" if stem in ("root", "next") else "intermediate-"
        target = os.path.join(self.file("retired"),
                              prefix + C.fingerprint(C.load_certificate(crt))[:16])
        _fs.atomic_write(target + ".crt", crt, 0o644, self.uid, self.gid)
        key = _fs.read_file(self.file(stem + ".key"))
        if key is not None:
            _fs.atomic_write(target + ".key", key, 0o600, self.uid, self.gid)


@pytest.fixture
def ca(tmp_path):
    path = tmp_path / "ca"
    path.mkdir(mode=0o700)
    return LegacyCa(str(path), UID, GID)


def migrate(ca, change=None):
    """What the next apply does: load (with the passphrase), change, write generation 1."""
    draft = ca.load(PASS)
    draft.validate(PASS)
    if change is not None:
        change(draft)
    return CaDir(ca.path, UID, GID).commit(draft)


def tree(ca):
    """Every file, directory and symlink under the CA directory with its bytes and metadata."""
    out = {}
    for base, dirs, files in os.walk(ca.path):
        for name in dirs + files:
            full = os.path.join(base, name)
            st = os.lstat(full)
            data = open(full, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(full, ca.path)] = (st.st_mode, st.st_uid, st.st_gid, data)
    return out


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def listing(ca):
    out = []
    for base, dirs, files in os.walk(ca.path):
        rel = os.path.relpath(base, ca.path)
        out.extend(os.path.normpath(os.path.join(rel, f)) for f in files)
    return sorted(out)


def state(phase, old, new):
    return {"phase": phase, "old": old.fp, "new": new.fp, "started": "2025-06-01T12:00:00Z"}


def rotating(ca, old, new, phase="use", old_int=None, new_int=None):
    """The CA directory in the middle of a rotation: current and next root (and
    intermediates), and rotation.json in ``phase``."""
    ca.write_pair("root", old.key, old.cert, PASS)
    ca.write_pair("next", new.key, new.cert, PASS)
    if old_int is not None:
        ca.write_pair("intermediate", old_int.key, old_int.cert, PASS)
    if new_int is not None:
        ca.write_pair("next-intermediate", new_int.key, new_int.cert, PASS)
    ca.write_state(state(phase, old, new))


# --------------------------------------------------------------------------- key pairs

def test_write_pair_load_pair_round_trip_with_passphrase(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    key, cert = ca.load_pair("root", PASS)
    assert C.fingerprint(cert) == old.fp
    assert C.same_public_key(key, old.key)
    assert listing(ca) == ["root.crt", "root.key"]
    assert mode(ca.file("root.key")) == 0o600
    assert mode(ca.file("root.crt")) == 0o644
    data = open(ca.file("root.key"), "rb").read()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert PASS.encode() not in data
    assert os.stat(ca.file("root.key")).st_uid == UID


def test_write_pair_replaces_an_existing_pair(ca, old, new):
    ca.write_pair("next", old.key, old.cert, PASS)
    ca.write_pair("next", new.key, new.cert, PASS)
    _key, cert = ca.load_pair("next", PASS)
    assert C.fingerprint(cert) == new.fp
    assert listing(ca) == ["next.crt", "next.key"]  # no temporary or .prev files


def test_load_pair_with_the_wrong_passphrase_is_a_clear_error(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    with pytest.raises(TrustzoneError) as err:
        ca.load_pair("root", "not-the-passphrase")
    assert str(err.value).startswith(
        "%s: cannot decrypt the private key: wrong passphrase" % ca.file("root.key"))
    assert "not-the-passphrase" not in str(err.value)


def test_load_pair_without_a_passphrase_is_a_clear_error(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    with pytest.raises(TrustzoneError) as err:
        ca.load_pair("root", None)
    assert "the private key is encrypted and no passphrase was given" in str(err.value)


def test_load_pair_absent(ca):
    assert ca.load_pair("root", PASS) == (None, None)
    assert ca.load_pair("next", PASS) == (None, None)
    with pytest.raises(TrustzoneError) as err:
        ca.load_pair("root", PASS, required=True)
    assert str(err.value).startswith("%s: the zone has no root CA here" % ca.path)


def test_load_pair_certificate_without_key(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    os.unlink(ca.file("root.key"))
    with pytest.raises(TrustzoneError) as err:
        ca.load_pair("root", PASS)
    assert str(err.value).startswith(
        "%s: the certificate exists but its key is missing" % ca.file("root.key"))


def test_load_pair_key_without_certificate(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    os.unlink(ca.file("root.crt"))
    with pytest.raises(TrustzoneError) as err:
        ca.load_pair("root", PASS)
    assert str(err.value).startswith(
        "%s: the key exists but its certificate is missing" % ca.file("root.crt"))


def test_load_pair_refuses_a_certificate_of_another_key(ca, old, new):
    ca.write_pair("root", old.key, new.cert, PASS)
    with pytest.raises(TrustzoneError) as err:
        ca.load_pair("root", PASS)
    assert str(err.value).startswith(
        "%s: the certificate does not belong to the key" % ca.file("root.crt"))


def test_load_pair_refuses_a_damaged_certificate(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    with open(ca.file("root.crt"), "w") as fh:
        fh.write("not a certificate\n")
    with pytest.raises(TrustzoneError) as err:
        ca.load_pair("root", PASS)
    assert ca.file("root.crt") in str(err.value)
    assert "no PEM certificate found" in str(err.value)


def test_write_pair_interrupted_leaves_a_certificate_without_key(ca, old, monkeypatch):
    """The documented crash order: certificate first, so a crash never leaves an unknown key."""
    real = _fs.atomic_write

    def crash_on_key(path, *args, **kwargs):
        if path.endswith(".key"):
            raise KeyboardInterrupt("killed")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(_fs, "atomic_write", crash_on_key)
    with pytest.raises(KeyboardInterrupt):
        ca.write_pair("next", old.key, old.cert, PASS)
    monkeypatch.undo()
    assert listing(ca) == ["next.crt"]
    # no rotation started yet, so nobody trusts it and it never signed: it is left out ...
    assert ca.load_pair("next", PASS) == (None, None)
    assert listing(ca) == ["next.crt"]  # ... by reading, which changes nothing
    migrate(ca)
    assert "next.crt" not in ca.load().files and not os.path.exists(ca.file("next.crt"))


# --------------------------------------------------------------------------- rotation state

def test_state_absent_is_none(ca):
    assert ca.load_state() is None


def test_state_round_trip_and_removal(ca, old, new):
    ca.write_state(state("trust", old, new))
    assert ca.load_state() == state("trust", old, new)
    assert mode(ca.file("rotation.json")) == 0o600
    assert json.loads(open(ca.file("rotation.json")).read())["phase"] == "trust"
    ca.write_state(dict(state("trust", old, new), phase="use"))
    assert ca.load_state()["phase"] == "use"
    ca.write_state(None)
    assert ca.load_state() is None
    assert listing(ca) == []
    ca.write_state(None)  # removing an absent state is fine


@pytest.mark.parametrize("content,message", [
    ("{not json", "the rotation state is not valid JSON"),
    ("", "the rotation state is not valid JSON"),
    (b"\xff\xfe{}", "the rotation state is not valid JSON"),
    ("[]", "the rotation state is not a JSON object"),
    ('"use"', "the rotation state is not a JSON object"),
    ("42", "the rotation state is not a JSON object"),
    ("null", "the rotation state is not a JSON object"),
    ('{"phase": "retire"}', "unknown rotation phase 'retire'"),
    ('{"phase": "stable"}', "unknown rotation phase 'stable'"),
    ('{"old": "x"}', "unknown rotation phase None"),
])
def test_state_errors(ca, content, message):
    with open(ca.file("rotation.json"), "wb") as fh:
        fh.write(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TrustzoneError) as err:
        ca.load_state()
    assert message in str(err.value)
    if "phase" not in message:
        assert str(err.value).startswith(ca.file("rotation.json"))
        assert "Fix: restore it from a backup" in str(err.value)


def test_empty_json_object_is_stable(ca):
    with open(ca.file("rotation.json"), "w") as fh:
        fh.write("{}")
    assert ca.load_state() == {}


def test_state_that_is_a_symlink_is_refused(ca, tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text('{"phase": "use"}')
    os.symlink(str(target), ca.file("rotation.json"))
    with pytest.raises(TrustzoneError) as err:
        ca.load_state()
    assert "is a symbolic link" in str(err.value)


# --------------------------------------------------------------------------- issuer

def issuing(ca):
    key, cert, chain = ca.issuer(PASS)
    return C.fingerprint(cert), [C.fingerprint(c) for c in chain], key


def test_issuer_without_a_root(ca):
    with pytest.raises(TrustzoneError) as err:
        ca.issuer(PASS)
    assert "the zone has no root CA here" in str(err.value)


def test_issuer_stable_is_the_root(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    fp, chain, key = issuing(ca)
    assert (fp, chain) == (old.fp, [])
    assert C.same_public_key(key, old.key)


@pytest.mark.parametrize("phase,who", [("trust", "old"), ("use", "new")])
def test_issuer_follows_the_rotation_phase(ca, old, new, phase, who):
    rotating(ca, old, new, phase)
    fp, chain, key = issuing(ca)
    expected = {"old": old, "new": new}[who]
    assert (fp, chain) == (expected.fp, [])
    assert C.same_public_key(key, expected.key)


def test_issuer_after_promotion_before_the_state_is_removed(ca, old, new):
    # promote_next done, rotation.json not yet removed: the new root is root.* and signs
    ca.write_pair("root", new.key, new.cert, PASS)
    ca.write_state(state("use", old, new))
    assert issuing(ca)[:2] == (new.fp, [])


def test_issuer_in_use_phase_with_the_next_root_missing(ca, old, new):
    ca.write_pair("root", old.key, old.cert, PASS)
    ca.write_state(state("use", old, new))
    with pytest.raises(TrustzoneError) as err:
        ca.issuer(PASS)
    assert str(err.value).startswith(
        "%s: the rotation is in phase 'use' but the next root is missing" % ca.file("next.crt"))


def test_issuer_with_the_wrong_passphrase(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    with pytest.raises(TrustzoneError) as err:
        ca.issuer("wrong passphrase!")
    assert "wrong passphrase" in str(err.value)


def test_issuer_with_a_broken_state(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    with open(ca.file("rotation.json"), "w") as fh:
        fh.write("{")
    with pytest.raises(TrustzoneError) as err:
        ca.issuer(PASS)
    assert "not valid JSON" in str(err.value)


def test_issuer_stable_with_an_intermediate(ca, old, old_int):
    ca.write_pair("root", old.key, old.cert, PASS)
    ca.write_pair("intermediate", old_int.key, old_int.cert, PASS)
    fp, chain, key = issuing(ca)
    assert (fp, chain) == (old_int.fp, [old_int.fp])
    assert C.same_public_key(key, old_int.key)


@pytest.mark.parametrize("phase,who", [("trust", "old_int"), ("use", "new_int")])
def test_issuer_with_intermediates_follows_the_phase(ca, old, new, old_int, new_int,
                                                     phase, who):
    rotating(ca, old, new, phase, old_int, new_int)
    expected = {"old_int": old_int, "new_int": new_int}[who]
    assert issuing(ca)[:2] == (expected.fp, [expected.fp])


def test_issuer_use_phase_never_signs_with_the_old_roots_intermediate(ca, old, new, old_int):
    rotating(ca, old, new, "use", old_int, None)
    assert issuing(ca)[:2] == (new.fp, [])


def test_issuer_ignores_an_intermediate_of_another_root(ca, old, new, new_int):
    ca.write_pair("root", old.key, old.cert, PASS)
    ca.write_pair("intermediate", new_int.key, new_int.cert, PASS)
    assert issuing(ca)[:2] == (old.fp, [])


# --------------------------------------------------------------------------- archive

def gen_listing(ca):
    """The files of the generation in force, relative to it."""
    gen = ca.file(ca.pointer())
    out = []
    for base, _dirs, files in os.walk(gen):
        rel = os.path.relpath(base, gen)
        out.extend(os.path.normpath(os.path.join(rel, f)) for f in files)
    return sorted(out)


def test_archive_root_and_intermediate(ca, old, old_int):
    ca.write_pair("root", old.key, old.cert, PASS)
    ca.write_pair("intermediate", old_int.key, old_int.cert, PASS)

    def archive(draft):
        draft.archive("root")
        draft.archive("intermediate")
        draft.archive("root")  # repeatable

    migrate(ca, archive)
    assert gen_listing(ca) == sorted([
        "intermediate.crt", "intermediate.key", "root.crt", "root.key",
        "retired/%s.crt" % old.fp16, "retired/%s.key" % old.fp16,
        "retired/intermediate-%s.crt" % old_int.fp16,
        "retired/intermediate-%s.key" % old_int.fp16])
    gen = ca.file(ca.pointer())
    assert mode(os.path.join(gen, "retired")) == 0o700
    assert mode(os.path.join(gen, "retired/%s.key" % old.fp16)) == 0o600
    assert mode(os.path.join(gen, "retired/%s.crt" % old.fp16)) == 0o644
    # kept encrypted, still a usable pair
    _key, cert = ca.load(PASS).load_pair("retired/" + old.fp16, PASS)
    assert C.fingerprint(cert) == old.fp


def test_archive_of_nothing_does_nothing(ca):
    draft = ca.load(PASS)
    draft.archive("intermediate")
    assert draft.files == {} and listing(ca) == []


def test_archive_certificate_without_key(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    draft = ca.load(PASS)
    del draft.files["root.key"]
    draft.archive("root")
    assert sorted(draft.files) == ["retired/%s.crt" % old.fp16, "root.crt"]


# --------------------------------------------------------------------------- promote_next

def assert_promoted(ca, old, new, old_int=None, new_int=None):
    """The generation in force holds the promoted state; nothing of the flat layout is left
    beside it."""
    expected = ["retired/%s.crt" % old.fp16, "retired/%s.key" % old.fp16,
                "root.crt", "root.key", "rotation.json"]
    if new_int is not None:
        expected += ["intermediate.crt", "intermediate.key",
                     "retired/intermediate-%s.crt" % old_int.fp16,
                     "retired/intermediate-%s.key" % old_int.fp16]
    state = ca.load()
    if "rotation.json" not in state.files:  # a migration that recognised a finished promotion
        expected.remove("rotation.json")
    assert gen_listing(ca) == sorted(expected)
    assert [n for n in listing(ca) if not n.startswith("gen/")
            and n not in ("crl.pem", "ledger.db", "ledger.lock")] == ["current"]
    key, cert = ca.load_pair("root", PASS)
    assert C.fingerprint(cert) == new.fp and C.same_public_key(key, new.key)
    _key, cert = ca.load(PASS).load_pair("retired/" + old.fp16, PASS)
    assert C.fingerprint(cert) == old.fp
    if new_int is not None:
        key, cert = ca.load_pair("intermediate", PASS)
        assert C.fingerprint(cert) == new_int.fp and C.same_public_key(key, new_int.key)
        _key, cert = ca.load(PASS).load_pair("retired/intermediate-" + old_int.fp16, PASS)
        assert C.fingerprint(cert) == old_int.fp
    # the CA reads back as the promoted root: state still 'use' until zone_root removes it
    assert issuing(ca)[0] == (new_int or new).fp
    retired = ca.retired_pairs(PASS)
    assert {C.fingerprint(c) for _k, c in retired} == (
        {old.fp} | ({old_int.fp} if old_int is not None else set()))
    assert all(C.same_public_key(k, c) for k, c in retired)


def promote(draft):
    draft.promote_next()


def test_promote_next(ca, old, new):
    rotating(ca, old, new)
    migrate(ca, promote)
    assert_promoted(ca, old, new)


def test_promote_next_with_intermediates(ca, old, new, old_int, new_int):
    rotating(ca, old, new, "use", old_int, new_int)
    migrate(ca, promote)
    assert_promoted(ca, old, new, old_int, new_int)


def test_promote_next_twice_changes_nothing(ca, old, new, old_int, new_int):
    rotating(ca, old, new, "use", old_int, new_int)
    draft = ca.load(PASS)
    draft.promote_next()
    before = dict(draft.files)
    draft.promote_next()
    assert draft.files == before


def promotion_steps(ca, old, new, old_int=None, new_int=None):
    """What promote_next does, one durable step at a time, so that a test can stop after
    any of them (a crash) and look at what is left."""
    retired = ca.file("retired")

    def copy(src, dst, mode_):
        _fs.atomic_write(dst, open(src, "rb").read(), mode_, UID, GID)

    steps = [
        ("mkdir retired", lambda: _fs.ensure_dir(retired, 0o700, UID, GID)),
        ("archive root.crt", lambda: copy(ca.file("root.crt"),
                                          "%s/%s.crt" % (retired, old.fp16), 0o644)),
        ("archive root.key", lambda: copy(ca.file("root.key"),
                                          "%s/%s.key" % (retired, old.fp16), 0o600)),
    ]
    if new_int is not None:
        steps += [
            ("archive intermediate.crt", lambda: copy(
                ca.file("intermediate.crt"),
                "%s/intermediate-%s.crt" % (retired, old_int.fp16), 0o644)),
            ("archive intermediate.key", lambda: copy(
                ca.file("intermediate.key"),
                "%s/intermediate-%s.key" % (retired, old_int.fp16), 0o600)),
            ("rename next-intermediate.crt", lambda: os.replace(
                ca.file("next-intermediate.crt"), ca.file("intermediate.crt"))),
            ("rename next-intermediate.key", lambda: os.replace(
                ca.file("next-intermediate.key"), ca.file("intermediate.key"))),
        ]
    steps += [
        ("rename next.crt", lambda: os.replace(ca.file("next.crt"), ca.file("root.crt"))),
        ("rename next.key", lambda: os.replace(ca.file("next.key"), ca.file("root.key"))),
    ]
    return steps


PLAIN_STOPS = ["nothing", "mkdir retired", "archive root.crt", "archive root.key",
               "rename next.crt", "rename next.key"]
INT_STOPS = ["nothing", "mkdir retired", "archive root.crt", "archive root.key",
             "archive intermediate.crt", "archive intermediate.key",
             "rename next-intermediate.crt", "rename next-intermediate.key",
             "rename next.crt", "rename next.key"]


def interrupted(ca, old, new, old_int, new_int, stop):
    rotating(ca, old, new, "use", old_int, new_int)
    steps = promotion_steps(ca, old, new, old_int, new_int)
    names = ["nothing"] + [name for name, _step in steps]
    assert stop in names
    for name, step in steps[:names.index(stop)]:
        step()


def test_promotion_steps_match_promote_next(ca, tmp_path, old, new, old_int, new_int):
    """The hand-made steps end where promote_next ends (so the interruptions below are the
    real ones)."""
    interrupted(ca, old, new, old_int, new_int, "rename next.key")  # every step done
    by_hand = {p: open(os.path.join(ca.path, p), "rb").read() for p in listing(ca)}
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    real = LegacyCa(str(other), UID, GID)
    rotating(real, old, new, "use", old_int, new_int)
    draft = real.load(PASS)
    draft.promote_next()
    assert sorted(by_hand) == sorted(draft.files)
    for name in ("root.crt", "intermediate.crt"):
        assert by_hand[name] == draft.files[name]


@pytest.mark.parametrize("stop", PLAIN_STOPS)
def test_promote_next_finishes_after_an_interruption(ca, old, new, stop):
    interrupted(ca, old, new, None, None, stop)
    migrate(ca, promote)
    assert_promoted(ca, old, new)
    CaDir(ca.path, UID, GID).commit(ca.load(PASS))  # promoting again changes nothing
    assert_promoted(ca, old, new)


@pytest.mark.parametrize("stop", INT_STOPS)
def test_promote_next_with_intermediates_finishes_after_an_interruption(
        ca, old, new, old_int, new_int, stop):
    interrupted(ca, old, new, old_int, new_int, stop)
    migrate(ca, promote)
    assert_promoted(ca, old, new, old_int, new_int)


def what_a_rerun_reads(ca):
    """What the next run of zone_root reads before anything else (root, state, next root,
    intermediates) and what sign reads (issuer)."""
    key, cert = ca.load_pair("root", PASS, required=True)
    ca.load_state()
    ca.load_pair("next", PASS)
    ca.load_pair("intermediate", PASS)
    ca.load_pair("next-intermediate", PASS)
    ca.issuer(PASS)
    return C.fingerprint(cert)


# Where a re-run reads the promoted root: once next.crt has become root.crt.
PROMOTED_AT = {"rename next.crt", "rename next.key"}


@pytest.mark.parametrize("stop", PLAIN_STOPS)
def test_ca_is_readable_at_every_point_of_an_interrupted_promotion(ca, old, new, stop):
    """Found by this test: stopped between 'rename next.crt' and 'rename next.key', root.crt
    (new) sat beside root.key (old) and every later CA run failed; load_pair now finishes
    the promotion (646e7ef)."""
    interrupted(ca, old, new, None, None, stop)
    before = tree(ca)
    assert what_a_rerun_reads(ca) == (new.fp if stop in PROMOTED_AT else old.fp)
    assert tree(ca) == before  # reading changed nothing
    migrate(ca, promote)
    assert_promoted(ca, old, new)


@pytest.mark.parametrize("stop", INT_STOPS)
def test_ca_with_intermediates_is_readable_at_every_point_of_an_interrupted_promotion(
        ca, old, new, old_int, new_int, stop):
    interrupted(ca, old, new, old_int, new_int, stop)
    before = tree(ca)
    assert what_a_rerun_reads(ca) == (new.fp if stop in PROMOTED_AT else old.fp)
    assert tree(ca) == before  # reading changed nothing
    migrate(ca, promote)
    assert_promoted(ca, old, new, old_int, new_int)


def test_load_pair_finishes_a_promotion_stopped_between_the_renames(ca, old, new):
    interrupted(ca, old, new, None, None, "rename next.crt")
    assert "next.key" in listing(ca) and "next.crt" not in listing(ca)
    key, cert = ca.load_pair("root", PASS)
    assert C.fingerprint(cert) == new.fp and C.same_public_key(key, new.key)
    assert "next.key" in listing(ca)  # recognised in memory, renamed by nobody
    assert ca.load_pair("next", PASS) == (None, None)
    migrate(ca)
    assert "next.key" not in listing(ca) and "next.key" not in gen_listing(ca)
    assert C.same_public_key(ca.load_pair("root", PASS)[0], new.key)


def test_load_pair_leaves_a_stray_next_key_that_does_not_match(ca, old, new):
    # not a half-done promotion (the waiting key is not root.crt's): nothing is renamed
    ca.write_pair("root", old.key, old.cert, PASS)
    ca.write_pair("next", new.key, new.cert, PASS)
    ca.write_state(state("use", old, new))
    os.unlink(ca.file("next.crt"))
    key, cert = ca.load_pair("root", PASS)
    assert C.fingerprint(cert) == old.fp and C.same_public_key(key, old.key)
    assert "next.key" in listing(ca)
    with pytest.raises(TrustzoneError) as err:
        ca.load_pair("next", PASS)
    assert "the key exists but its certificate is missing" in str(err.value)


def test_keyless_next_certificate_during_a_rotation_is_an_error_not_dropped(ca, old, new):
    # once rotation.json names it, nodes may trust it: never silently removed
    rotating(ca, old, new, "trust")
    os.unlink(ca.file("next.key"))
    with pytest.raises(TrustzoneError) as err:
        ca.load_pair("next", PASS)
    assert "the certificate exists but its key is missing" in str(err.value)
    assert "next.crt" in listing(ca)


def test_keyless_root_certificate_is_an_error_not_dropped(ca, old):
    ca.write_pair("root", old.key, old.cert, PASS)
    os.unlink(ca.file("root.key"))
    for _round in range(2):
        with pytest.raises(TrustzoneError):
            ca.load_pair("root", PASS)
    assert listing(ca) == ["root.crt"]


def test_keyless_intermediate_certificate_is_dropped(ca, old, old_int):
    ca.write_pair("root", old.key, old.cert, PASS)
    ca.write_pair("intermediate", old_int.key, old_int.cert, PASS)
    os.unlink(ca.file("intermediate.key"))
    assert ca.load_pair("intermediate", PASS) == (None, None)
    assert listing(ca) == ["intermediate.crt", "root.crt", "root.key"]  # reading removes nothing
    assert issuing(ca)[:2] == (old.fp, [])
    migrate(ca)
    assert gen_listing(ca) == ["root.crt", "root.key"]
    assert not os.path.exists(ca.file("intermediate.crt"))
    assert issuing(ca)[:2] == (old.fp, [])


def test_intermediate_reissue_stopped_between_certificate_and_key_keeps_the_old_pair(
        ca, old, old_int, keys):
    """The old code archived the intermediate, then wrote the new certificate over the old one
    and stopped before the key: the key is still the old intermediate's."""
    ca.write_pair("root", old.key, old.cert, PASS)
    ca.write_pair("intermediate", old_int.key, old_int.cert, PASS)
    ca.archive("intermediate")
    other = make_intermediate(keys, "other-int", old, "00000000000000a9")
    _fs.atomic_write(ca.file("intermediate.crt"), C.certificate_pem(other.cert), 0o644, UID, GID)
    assert issuing(ca)[:2] == (old_int.fp, [old_int.fp])
    migrate(ca)
    assert issuing(ca)[:2] == (old_int.fp, [old_int.fp])
    assert ca.retired_pairs(PASS) == []  # the archived copy is the one in use


def test_a_key_matching_no_certificate_is_an_error_never_guessed(ca, old, new):
    ca.write_pair("root", old.key, new.cert, PASS)
    with pytest.raises(TrustzoneError) as err:
        migrate(ca)
    assert "the certificate does not belong to the key" in str(err.value)
    assert listing(ca) == ["root.crt", "root.key"]


# --------------------------------------------------------------------------- zone_root re-runs

@pytest.fixture
def zone_root():
    """``run(dir, check=False, **params)`` -> zone_root.run's result, with the module's own
    defaults."""
    return zone_root_runner(passphrase=PASS, owner=str(UID), group=str(GID),
                            key_curve="secp256r1")


def pairs(ca):
    """The key pairs, state and archive of the generation in force (not the CRL or the
    ledger)."""
    return [n for n in gen_listing(ca) if n.endswith((".crt", ".key")) or n == "rotation.json"]


class Crash(Exception):
    pass


class CrashingFs(Fs):
    """The filesystem layer of CaDir, crashing at the first call ``when`` accepts."""

    def __init__(self, when):
        self.when = when

    def _step(self, name, path):
        if self.when(name, path):
            raise Crash("killed at %s %s" % (name, path))

    def mkdir(self, path, *a):
        self._step("mkdir", path)
        return super().mkdir(path, *a)

    def write(self, path, *a):
        self._step("write", path)
        return super().write(path, *a)

    def rename(self, src, dst):
        self._step("rename", dst)
        return super().rename(src, dst)


def crashing(monkeypatch, when):
    real = CaDir.__init__

    def init(self, path, uid=0, gid=0, fs=None, token=None):
        real(self, path, uid, gid, CrashingFs(when), token)

    monkeypatch.setattr(CaDir, "__init__", init)


def rotate_to_use(zone_root, path):
    zone_root(path)
    first = zone_root(path, rotate="trust", rotate_force=True)
    assert first["phase"] == "trust"
    used = zone_root(path, rotate="use")
    assert used["phase"] == "use"
    return used["root"]["fingerprint"], used["next"]["fingerprint"]


def test_zone_root_walks_a_whole_rotation(zone_root, ca):
    old_fp, new_fp = rotate_to_use(zone_root, ca.path)
    done = zone_root(ca.path, rotate="retire", retire_confirmed=True)
    assert (done["phase"], done["root"]["fingerprint"], done["next"]) == ("stable", new_fp, None)
    assert pairs(ca) == sorted(["root.crt", "root.key", "retired/%s.crt" % old_fp[:16],
                                "retired/%s.key" % old_fp[:16]])
    before = tree(ca)
    again = zone_root(ca.path, rotate="retire", retire_confirmed=True)
    assert again["changed"] is False
    assert tree(ca) == before


def test_zone_root_retire_re_run_after_the_new_generation_was_written_not_switched(
        zone_root, ca, monkeypatch):
    _old_fp, new_fp = rotate_to_use(zone_root, ca.path)
    crashing(monkeypatch, lambda step, path: step == "rename" and path.endswith("/current"))
    with pytest.raises(Crash):
        zone_root(ca.path, rotate="retire", retire_confirmed=True)
    monkeypatch.undo()
    assert ca.load_state()["phase"] == "use"
    # rotate_root.yml again: trust (no-op), use (no-op), retire
    assert zone_root(ca.path, rotate="trust", rotate_force=True)["phase"] == "use"
    assert zone_root(ca.path, rotate="use")["issuer"] == zone_root(ca.path)["roots"][1]
    done = zone_root(ca.path, rotate="retire", retire_confirmed=True)
    assert (done["phase"], done["root"]["fingerprint"]) == ("stable", new_fp)
    assert ca.load_state() is None


def test_zone_root_finishes_a_retire_interrupted_while_writing_the_generation(
        zone_root, ca, monkeypatch):
    _old_fp, new_fp = rotate_to_use(zone_root, ca.path)
    crashing(monkeypatch, lambda step, path: step == "write" and path.endswith("root.key"))
    with pytest.raises(Crash):
        zone_root(ca.path, rotate="retire", retire_confirmed=True)
    monkeypatch.undo()
    # the operator re-runs rotate_root.yml: its first step is the CA's trust phase
    zone_root(ca.path, rotate="trust", rotate_force=True)
    done = zone_root(ca.path, rotate="retire", retire_confirmed=True)
    assert (done["phase"], done["root"]["fingerprint"]) == ("stable", new_fp)
    assert not [n for n in listing(ca) if ".tmp" in n]


def test_zone_root_recovers_from_a_trust_phase_interrupted_while_writing_the_next_root(
        zone_root, ca, monkeypatch):
    first = zone_root(ca.path)
    crashing(monkeypatch, lambda step, path: step == "write" and path.endswith("next.key"))
    with pytest.raises(Crash):
        zone_root(ca.path, rotate="trust", rotate_force=True)
    monkeypatch.undo()
    assert pairs(ca) == ["root.crt", "root.key"]  # the half-written generation is not in force
    # site.yml keeps working with the current root ...
    assert zone_root(ca.path)["root"]["fingerprint"] == first["root"]["fingerprint"]
    # ... and re-running the rotation makes a usable next root
    again = zone_root(ca.path, rotate="trust", rotate_force=True)
    assert again["phase"] == "trust" and again["next"] is not None
    assert ca.load_pair("next", PASS)[1] is not None


def test_a_flat_directory_half_way_through_an_old_passphrase_change_is_finished(
        ca, old, new, old_int, new_int, keys):
    """The old ca_passphrase renamed keys one by one: some under the new passphrase, some
    under the old. The new one reads such a directory and finishes in one generation."""
    pytest.importorskip("ansible.module_utils.basic")
    from ansible_collections.trustzone.pki.plugins.modules import ca_passphrase

    rotating(ca, old, new, "use", old_int, new_int)
    newer = "a new passphrase of the zone"
    _fs.atomic_write(ca.file("intermediate.key"), C.private_key_pem(old_int.key, newer), 0o600,
                     UID, GID)

    class Module:
        check_mode = False
        params = {"zone": "prod", "dir": ca.path, "passphrase": PASS, "new_passphrase": newer}

    result = ca_passphrase.run(Module())
    assert result["changed"] and "intermediate.key" in result["already"]
    state = ca.load(newer)
    state.validate(newer)
    assert state.source == "gen/000001"
    key, cert, _chain = CaDir(ca.path).issuer(newer)
    assert C.fingerprint(cert) == new_int.fp and C.same_public_key(key, new_int.key)


@pytest.mark.parametrize("stop", INT_STOPS)
def test_site_run_on_a_flat_directory_stopped_mid_promotion_mints_nothing(
        zone_root, ca, old, new, old_int, new_int, stop):
    """The old code's ordinary site.yml run "repaired" such a directory by minting fresh
    intermediates and retiring the one in use. The migration finishes the confirmed retire
    (once the root was archived, its first step) or leaves the rotation as it was."""
    interrupted(ca, old, new, old_int, new_int, stop)
    result = zone_root(ca.path, intermediate=True)
    promoted = stop not in ("nothing", "mkdir retired")
    assert (result["phase"], result["root"]["fingerprint"]) == (
        ("stable", new.fp) if promoted else ("use", old.fp))
    key, cert, chain = ca.issuer(PASS)
    assert (C.fingerprint(cert), [C.fingerprint(c) for c in chain]) == (
        new_int.fp, [new_int.fp])
    assert C.same_public_key(key, new_int.key)
    if promoted:
        assert_promoted(ca, old, new, old_int, new_int)
    else:
        assert C.fingerprint(ca.load().cert("next-intermediate")) == new_int.fp
    assert zone_root(ca.path, intermediate=True)["changed"] is False
