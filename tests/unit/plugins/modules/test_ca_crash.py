"""A crash at every filesystem step of every CA state change, and check mode on every state.

Each change (create, migration of the flat layout, intermediate_force, the trust/use/retire
phases of a rotation, extend, passphrase change) runs from a fresh copy of its starting
directory with the one filesystem layer of ``_ca`` (``Fs``: mkdir, write, fsync_dir, rename,
unlink, rmdir) replaced by a counter that crashes at step k - once by raising, once by
``os._exit`` in a forked child - for k = 1, 2, ... until the change runs to its end. After
each crash:

(a) a read-only load gives the state before the change or the one the change was writing,
    never a mix, and its issuer's key matches its certificate;
(b) the same change run again completes, with nothing for the operator to do;
(c) a leaf issued before the crash still chains to the roots the loaded state trusts, and a
    leaf issued by the loaded state does too.

Needs Ansible (the modules' run()) and cryptography.
"""

from __future__ import annotations

import datetime
import os
import shutil

import pytest

pytest.importorskip("ansible.module_utils.basic")

from ansible_collections.trustzone.pki.plugins.module_utils import _ca  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils import _fs  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as R  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import ca_passphrase  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import zone_root  # noqa: E402
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (  # noqa: E402
    counting_fs, crashed, module_runner, walk)

PASS = "correct horse battery staple"
NEW_PASS = "the new passphrase of the zone"
UID, GID = os.getuid(), os.getgid()
NOW = datetime.datetime.now(datetime.timezone.utc)
STEPS = ("mkdir", "write", "fsync_dir", "rename", "unlink", "rmdir")  # _ca.Fs


class Crash(Exception):
    pass


CALL = module_runner()


def zr(path, check=False, **params):
    merged = dict(zone="prod", dir=path, passphrase=PASS, owner=str(UID), group=str(GID),
                  key_curve="secp256r1", intermediate_lifetime="300d", lifetime="400d")
    merged.update(params)
    return CALL(zone_root, check, **merged)


def rekey(path, check=False, old=PASS, new=NEW_PASS):
    return CALL(ca_passphrase, check, zone="prod", dir=path, passphrase=old, new_passphrase=new)


# --------------------------------------------------------------------------- starting states

def flat(path):
    """The flat layout of earlier releases, in the middle of a rotation (phase use, with
    intermediates and a retired root), as the old code left it."""
    def pair(label, issuer=None, unique="1", days=3000, ca_path=None):
        key = C.generate_key(C.normalize_key_spec("ec", 4096, "secp256r1"))
        subject = C.zone_name_attributes("prod", "trustzone prod %s" % label, unique=unique)
        cert = C.build_ca_certificate(
            key, subject, NOW - datetime.timedelta(days=1), NOW + datetime.timedelta(days=days),
            path_length=ca_path, issuer_cert=issuer[1] if issuer else None,
            issuer_key=issuer[0] if issuer else None)
        return key, cert

    os.makedirs(path, mode=0o700)
    old, new, gone = pair("root CA", unique="01"), pair("root CA", unique="02"), \
        pair("root CA", unique="03")
    files = {"root": old, "next": new, "intermediate": pair("int", old, "a1", 300, 0),
             "next-intermediate": pair("int", new, "a2", 300, 0)}
    for stem, (key, cert) in files.items():
        _fs.atomic_write(os.path.join(path, stem + ".crt"), C.certificate_pem(cert), 0o644,
                         UID, GID)
        _fs.atomic_write(os.path.join(path, stem + ".key"), C.private_key_pem(key, PASS),
                         0o600, UID, GID)
    _fs.ensure_dir(os.path.join(path, "retired"), 0o700, UID, GID)
    fp16 = C.fingerprint(gone[1])[:16]
    _fs.atomic_write(os.path.join(path, "retired", fp16 + ".crt"),
                     C.certificate_pem(gone[1]), 0o644, UID, GID)
    _fs.atomic_write(os.path.join(path, "retired", fp16 + ".key"),
                     C.private_key_pem(gone[0], PASS), 0o600, UID, GID)
    _fs.atomic_write(os.path.join(path, "rotation.json"),
                     '{"phase": "use", "old": "%s", "new": "%s", "started": "x"}'
                     % (C.fingerprint(old[1]), C.fingerprint(new[1])), 0o600, UID, GID)


def built(*steps):
    def build(path):
        os.makedirs(path, mode=0o700)
        for params in steps:
            zr(path, **params)
    return build


INT = {"intermediate": True}
TRUST = {"rotate": "trust", "rotate_force": True}
USE = {"rotate": "use"}
RETIRE = {"rotate": "retire", "retire_confirmed": True}

# name: (build the starting directory, the change, does a re-run still change something)
CHANGES = {
    "create": (lambda p: None, zr, False),
    "create-intermediate": (lambda p: None, lambda p: zr(p, **INT), False),
    "migrate-flat-layout": (flat, lambda p: zr(p, **INT), False),
    "intermediate_force": (built(INT), lambda p: zr(p, intermediate_force=True, **INT), True),
    "trust": (built({}), lambda p: zr(p, **TRUST), False),
    "use": (built({}, TRUST), lambda p: zr(p, **USE), False),
    "retire": (built({}, TRUST, USE), lambda p: zr(p, **RETIRE), False),
    "trust-intermediate": (built(INT), lambda p: zr(p, **dict(TRUST, **INT)), False),
    "use-intermediate": (built(INT, dict(TRUST, **INT)), lambda p: zr(p, **dict(USE, **INT)),
                         False),
    "retire-intermediate": (built(INT, dict(TRUST, **INT), dict(USE, **INT)),
                            lambda p: zr(p, **dict(RETIRE, **INT)), False),
    "extend": (built({}), lambda p: zr(p, extend=True, rotate_force=True, rotate_before="30d"),
               True),
    "passphrase": (built(INT, dict(TRUST, **INT), dict(USE, **INT), dict(RETIRE, **INT)),
                   rekey, False),
}


@pytest.fixture(autouse=True)
def no_flush(monkeypatch):
    """A crash here is a process dying, not a power cut: flushing to the disk only costs time.
    The flushes still count as steps (``Fs.fsync_dir``) and are crashed at."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    base = tmp_path_factory.mktemp("templates")
    out = {}
    for name, (build, _change, _again) in CHANGES.items():
        path = str(base / name / "prod")
        os.makedirs(os.path.dirname(path))
        build(path)
        out[name] = path
    return out


def fresh(templates, name, tmp_path, label):
    path = str(tmp_path / label / "prod")
    os.makedirs(os.path.dirname(path))
    if os.path.exists(templates[name]):
        shutil.copytree(templates[name], path, symlinks=True)
    return path


# --------------------------------------------------------------------------- observing

def tree(path):
    """{relative path: (type+mode, uid, gid, sha256)} of everything under ``path``."""
    if not os.path.exists(path):
        return {}
    return {name: (st.st_mode, st.st_uid, st.st_gid, digest)
            for name, (st, digest) in walk(path).items()}


def passphrase_of(draft):
    if "root.key" not in draft.files:
        return PASS
    for candidate in (PASS, NEW_PASS):
        try:
            C.load_private_key(draft.files["root.key"], candidate)
            return candidate
        except Exception:  # noqa: BLE001 - the other passphrase
            continue
    raise AssertionError("the root key opens with neither passphrase")


def loaded(path):
    """What readers see (read only): ``(draft, passphrase)``, or ``(None, None)`` with no root."""
    if not os.path.exists(path):
        return None, None
    draft = _ca.CaDir(path).load(PASS)
    if not draft.has_root():
        return None, None
    passphrase = passphrase_of(draft)
    if passphrase != PASS:
        draft = _ca.CaDir(path).load(passphrase)
    return draft, passphrase


def trusted_roots(draft):
    phase = R.phase_of(draft.load_state())
    return R.roots_for(phase, draft.cert("root"), draft.cert("next"))[0]


def issue_leaf(draft, passphrase, label):
    key, cert, chain = draft.issuer(passphrase)
    assert C.same_public_key(key, cert)  # the issuer signs with the key of its certificate
    leaf_key = C.generate_key(C.normalize_key_spec("ec", 4096, "secp256r1"))
    subject = C.zone_name_attributes("prod", label, unique="ff")
    leaf = C.build_leaf_certificate(
        leaf_key.public_key(), subject, [label + ".example"], [], cert, key,
        NOW - datetime.timedelta(minutes=1), NOW + datetime.timedelta(days=30),
        ["digital_signature"], ["server_auth"])
    return leaf, list(chain)


def chains(leaf_and_chain, draft):
    leaf, chain = leaf_and_chain
    return C.chain_to(leaf, chain, trusted_roots(draft)) is not None


def ca_files(draft):
    return None if draft is None else dict(draft.files)


# --------------------------------------------------------------------------- crashing

def run_crashing(monkeypatch, change, path, at, how, attempted):
    """Run ``change`` with a crash before filesystem step ``at``; True if it crashed."""
    real_commit = _ca.CaDir.commit

    def commit(self, draft, *args, **kwargs):
        attempted.append(dict(draft.files))
        return real_commit(self, draft, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(_ca, "Fs", counting_fs(_ca.Fs, STEPS, at, how, Crash, {"steps": 0}))
        patch.setattr(_ca.CaDir, "commit", commit)
        # exit: the child's commit() call is not visible here; what it tried to write is
        # the newest generation directory, complete or not
        return crashed(lambda: change(path), how, Crash, "the change")


def newest_generation_files(path):
    gen_root = os.path.join(path, "gen")
    if not os.path.isdir(gen_root):
        return None
    names = sorted(n for n in os.listdir(gen_root) if _ca.GEN_RE.match(n))
    if not names:
        return None
    files, _stats = _ca._read_tree(os.path.join(gen_root, names[-1]))
    return files


@pytest.mark.parametrize("how", ["raise", "exit"])
@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_crash_at_every_step_leaves_the_old_or_the_new_state(templates, tmp_path, monkeypatch,
                                                               name, how):
    _build, change, reruns_change = CHANGES[name]
    at, crashes = 1, 0
    while True:
        path = fresh(templates, name, tmp_path, "%s-%d" % (how, at))
        before, before_pass = loaded(path)
        old_leaf = issue_leaf(before, before_pass, "before") if before is not None else None
        attempted = []
        if not run_crashing(monkeypatch, change, path, at, how, attempted):
            break  # ran to its end: every step has had its crash
        crashes += 1
        now, now_pass = loaded(path)
        # (a) the old state or the whole new one, never a mix
        wanted = attempted[-1] if attempted else newest_generation_files(path)
        assert ca_files(now) in (ca_files(before), wanted), \
            "%s: a crash before step %d left a mixed state" % (name, at)
        if now is not None:
            new_leaf = issue_leaf(now, now_pass, "after")  # the issuer's key matches too
            # (c) the zone keeps handshaking: old and new leaves chain to what is trusted
            assert chains(new_leaf, now)
            if old_leaf is not None:
                assert chains(old_leaf, now), \
                    "%s: after a crash before step %d a leaf issued before no longer " \
                    "chains to the trusted roots" % (name, at)
        # (b) the same change again completes it, nothing for the operator to do
        change(path)
        done, done_pass = loaded(path)
        assert done is not None
        assert chains(issue_leaf(done, done_pass, "done"), done)
        if old_leaf is not None:
            assert chains(old_leaf, done)
        left = [p for p in tree(path) if ".tmp" in p]
        assert left == [], "%s: leftovers after the re-run: %s" % (name, left)
        if not reruns_change:
            steady = tree(path)
            result = change(path)
            assert result["changed"] is False and tree(path) == steady
        at += 1
    assert crashes >= 5, "%s: only %d steps were crashed" % (name, crashes)
    print("%s/%s: %d crash points" % (name, how, crashes))
    # the crash-free run reached the new state
    final, final_pass = loaded(path)
    assert final is not None and chains(issue_leaf(final, final_pass, "final"), final)


# --------------------------------------------------------------------------- check mode

CHECKS = {
    "create": lambda p: zr(p, check=True),
    "intermediate": lambda p: zr(p, check=True, **INT),
    "intermediate_force": lambda p: zr(p, check=True, intermediate_force=True, **INT),
    "trust": lambda p: zr(p, check=True, **TRUST),
    "use": lambda p: zr(p, check=True, **USE),
    "retire": lambda p: zr(p, check=True, **RETIRE),
    "extend": lambda p: zr(p, check=True, extend=True, rotate_force=True, rotate_before="30d"),
    "owner": lambda p: zr(p, check=True, owner="nobody"),
    "passphrase": lambda p: rekey(p, check=True),
}


def leftovers_of_a_crash(path):
    """A directory with what a crash can leave: a staging generation, a written but never
    switched generation, the pointer's temporary file."""
    zr(path)
    gen_root = os.path.join(path, "gen")
    shutil.copytree(os.path.join(gen_root, "000001"), os.path.join(gen_root, ".000005.tmp"))
    shutil.copytree(os.path.join(gen_root, "000001"), os.path.join(gen_root, "000004"))
    with open(os.path.join(path, _ca.POINTER_TMP), "w") as fh:
        fh.write("gen/000004\n")


STATES = {
    "missing": None,
    "flat-layout": flat,
    "stable": built({}),
    "stable-intermediate": built(INT),
    "trust": built({}, TRUST),
    "use-intermediate": built(INT, dict(TRUST, **INT), dict(USE, **INT)),
    "after-retire": built({}, TRUST, USE, RETIRE),
    "crash-leftovers": leftovers_of_a_crash,
}


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("state", sorted(STATES))
def test_check_mode_leaves_the_directory_byte_identical(tmp_path, state, check):
    path = str(tmp_path / "prod")
    if STATES[state] is not None:
        if STATES[state] is flat:
            flat(path)
        elif STATES[state] is leftovers_of_a_crash:
            os.makedirs(path, mode=0o700)
            leftovers_of_a_crash(path)
        else:
            STATES[state](path)
    before = tree(path)
    try:
        CHECKS[check](path)
    except Exception as exc:  # noqa: BLE001 - a refusal is fine, a write is not
        assert "Traceback" not in str(exc)
    assert tree(path) == before


def test_check_mode_reports_a_migration_and_leftovers_as_changes(tmp_path):
    path = str(tmp_path / "prod")
    flat(path)
    assert zr(path, check=True, **INT)["changed"] is True
    zr(path, **INT)
    assert zr(path, check=True, **INT)["changed"] is False
    other = str(tmp_path / "other")
    os.makedirs(other, mode=0o700)
    leftovers_of_a_crash(other)
    assert zr(other, check=True)["changed"] is True
    assert zr(other)["changed"] is True
    assert zr(other, check=True)["changed"] is False
    assert sorted(os.listdir(os.path.join(other, "gen"))) == ["000001"]


def test_migration_keeps_every_pair_and_removes_the_flat_files(tmp_path):
    path = str(tmp_path / "prod")
    flat(path)
    before = _ca.CaDir(path).load(PASS)
    result = zr(path, **INT)
    assert result["changed"] is True and result["phase"] == "use"
    after = _ca.CaDir(path).load(PASS)
    assert after.source == "gen/000001" and after.files == before.files
    assert sorted(os.listdir(path)) == ["crl.pem", "current", "gen", "ledger.db", "ledger.lock"]


def test_old_generations_are_kept_for_audit_but_only_a_few(tmp_path):
    path = str(tmp_path / "prod")
    os.makedirs(path, mode=0o700)
    zr(path, **INT)
    for _round in range(5):
        zr(path, intermediate_force=True, **INT)
    assert sorted(os.listdir(os.path.join(path, "gen"))) == ["000004", "000005", "000006"]
    assert open(os.path.join(path, "current")).read() == "gen/000006\n"


def test_a_passphrase_change_keeps_no_copy_under_the_old_passphrase(tmp_path):
    path = str(tmp_path / "prod")
    os.makedirs(path, mode=0o700)
    zr(path, **INT)
    zr(path, intermediate_force=True, **INT)
    rekey(path)
    assert sorted(os.listdir(os.path.join(path, "gen"))) == ["000003"]
    for rel, data in _ca.CaDir(path).load().files.items():
        if rel.endswith(".key"):
            C.load_private_key(data, NEW_PASS)


def test_a_damaged_pointer_is_one_clear_line(tmp_path):
    path = str(tmp_path / "prod")
    os.makedirs(path, mode=0o700)
    zr(path)
    with open(os.path.join(path, "current"), "w") as fh:
        fh.write("gen/000009\n")
    with pytest.raises(Exception) as err:
        _ca.CaDir(path).issuer(PASS)
    assert "names gen/000009, which does not exist" in str(err.value)
    assert "restore the CA directory from a backup" in str(err.value)


def test_a_lost_pointer_is_never_read_as_no_ca(tmp_path):
    """Someone removed ``current``: the generations are not leftovers, no new root is made."""
    path = str(tmp_path / "prod")
    os.makedirs(path, mode=0o700)
    zr(path)
    zr(path, **TRUST)
    os.unlink(os.path.join(path, "current"))
    before = tree(path)
    for attempt in (lambda: zr(path), lambda: zr(path, check=True),
                    lambda: _ca.CaDir(path).issuer(PASS)):
        with pytest.raises(Exception) as err:
            attempt()
        assert "the CA state pointer is missing but 2 generation(s) exist" in str(err.value)
        assert "gen/000002" in str(err.value)
    assert tree(path) == before
