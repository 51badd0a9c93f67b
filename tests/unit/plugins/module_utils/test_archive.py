"""_archive: the CA backup archive - round trip, manifest, and every way an archive is refused
(tampered anywhere, truncated anywhere, wrong passphrase), each with its own error.

Needs only cryptography (runs against Debian 12's 38.0.4). The scrypt cost is lowered for
most tests (``FAST``) so that every byte of an archive can be flipped; one test uses the
default cost.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _archive as A
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

PASS = "archive passphrase 0123"
CA_PASS = "ca passphrase 456789"
FAST = {"n": 2 ** 4, "r": 8, "p": 1}
CREATED = "2025-06-01T12:00:00Z"


def _root(keys, label, unique):
    key = keys.get("p256#arch-" + label)
    cert = C.build_ca_certificate(
        key, C.zone_name_attributes("prod", "trustzone prod root CA", unique=unique),
        NOW - DAY, NOW + 3650 * DAY)
    return key, cert


@pytest.fixture(scope="module")
def ca_files(keys):
    """A CA directory in the middle of a rotation, with a retired root and a ledger."""
    root_key, root = _root(keys, "root", "01")
    next_key, nxt = _root(keys, "next", "02")
    _old_key, old = _root(keys, "old", "03")
    return {
        "root.crt": (0o644, C.certificate_pem(root).encode()),
        "root.key": (0o600, C.private_key_pem(root_key, CA_PASS)),
        "next.crt": (0o644, C.certificate_pem(nxt).encode()),
        "next.key": (0o600, C.private_key_pem(next_key, CA_PASS)),
        "rotation.json": (0o600, b'{"phase": "trust"}'),
        "retired/%s.crt" % C.fingerprint(old)[:16]: (0o644, C.certificate_pem(old).encode()),
        "ledger.db": (0o600, A.SQLITE_MAGIC + bytes(range(256)) * 4),
        "crl.pem": (0o644, b"-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n"),
        "empty": (0o600, b""),
    }, (root, nxt, old)


@pytest.fixture(scope="module")
def manifest(ca_files):
    files, _certs = ca_files
    return A.make_manifest("prod", files, CREATED, "0.2.0", ca_dir="/var/lib/trustzone/prod")


@pytest.fixture(scope="module")
def archive(ca_files, manifest):
    files, _certs = ca_files
    return A.build(manifest, files, PASS, kdf=FAST)


def with_checksum(data):
    """``data`` with its trailing checksum recomputed (what a deliberate tamperer does)."""
    body = data[:-A.CHECKSUM_LEN]
    return body + hashlib.sha256(body).digest()


def flip(data, index):
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


# --------------------------------------------------------------------------- round trip

def test_round_trip_gives_back_every_file_with_its_mode(ca_files, archive):
    files, _certs = ca_files
    manifest, restored = A.open_archive(archive, PASS)
    assert restored == files
    assert manifest["zone"] == "prod"


def test_default_cost_round_trip_and_header_records_it(ca_files, manifest):
    files, _certs = ca_files
    data = A.build(manifest, files, PASS)
    header, _end = A.read_header(data)
    assert header["kdf"]["name"] == "scrypt"
    assert (header["kdf"]["n"], header["kdf"]["r"], header["kdf"]["p"]) == (2 ** 17, 8, 1)
    assert header["cipher"]["name"] == "AES-256-GCM"
    assert A.open_archive(data, PASS)[1] == files


def test_two_archives_of_the_same_files_differ(ca_files, manifest):
    files, _certs = ca_files
    one = A.build(manifest, files, PASS, kdf=FAST)
    two = A.build(manifest, files, PASS, kdf=FAST)
    assert one != two  # fresh salt and nonce every time
    assert A.open_archive(one, PASS)[1] == A.open_archive(two, PASS)[1]


def test_archive_shows_no_plaintext(ca_files, archive):
    files, _certs = ca_files
    assert archive.startswith(A.MAGIC)
    for needle in (b"PRIVATE KEY", b"CERTIFICATE", b"rotation", b"prod", b"SQLite",
                   PASS.encode(), CA_PASS.encode()):
        assert needle not in archive
    # not even compressed-but-unencrypted
    with pytest.raises(zlib.error):
        zlib.decompress(archive[A.PREFIX_LEN:])


# --------------------------------------------------------------------------- manifest

def test_manifest_names_zone_roots_time_version_and_every_file(ca_files, manifest):
    files, (root, nxt, old) = ca_files
    assert manifest["zone"] == "prod"
    assert manifest["created_at"] == CREATED
    assert manifest["collection_version"] == "0.2.0"
    assert manifest["format"] == A.FORMAT
    assert manifest["roots"] == {"current": C.fingerprint(root), "next": C.fingerprint(nxt),
                                 "retired": [C.fingerprint(old)], "intermediate": None,
                                 "next_intermediate": None}
    entries = {e["path"]: e for e in manifest["files"]}
    assert set(entries) == set(files)
    for path, (mode, data) in files.items():
        assert entries[path] == {"path": path, "mode": mode, "size": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest()}


def test_manifest_travels_inside_the_encryption(archive, manifest):
    got, _files = A.open_archive(archive, PASS)
    assert got == json.loads(json.dumps(manifest))
    assert A.describe(got)["files"][0]["mode"] in ("0600", "0644")


def test_manifest_refuses_a_directory_without_a_root(ca_files):
    files, _certs = ca_files
    rest = {p: v for p, v in files.items() if p != "root.crt"}
    with pytest.raises(TrustzoneError, match="no root.crt"):
        A.make_manifest("prod", rest, CREATED, "0.2.0")


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/",
                                  "", "a b", "a\nb", "retired/..", "x\x00y"])
def test_unsafe_file_names_are_refused(path):
    with pytest.raises(A.ArchiveInvalid):
        A.check_relpath(path)


def test_archive_whose_manifest_names_an_unsafe_path_is_refused_even_when_authentic():
    """A hostile builder who knows the passphrase still cannot write outside the CA dir."""
    path, data = "../../etc/cron.d/x", b"* * * * * root true\n"
    manifest = {"format": A.FORMAT, "zone": "prod", "files": [
        {"path": path, "mode": 0o600, "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest()}]}
    archive = A.build(manifest, {path: (0o600, data)}, PASS, kdf=FAST)
    with pytest.raises(A.ArchiveInvalid, match="not a plain relative path"):
        A.open_archive(archive, PASS)


# --------------------------------------------------------------------------- refusals

def test_every_single_byte_flip_is_refused(archive):
    kinds = set()
    for index in range(len(archive)):
        with pytest.raises(A.ArchiveError) as info:
            A.open_archive(flip(archive, index), PASS)
        kinds.add(type(info.value))
    # the signature gives "not an archive"; everything else "damaged"
    assert kinds == {A.ArchiveInvalid, A.ArchiveDamaged}


def test_body_flip_with_a_recomputed_checksum_fails_authentication(archive):
    header, end = A.read_header(archive)
    for index in (end, end + 1, (end + len(archive)) // 2, len(archive) - A.CHECKSUM_LEN - 1):
        with pytest.raises(A.ArchiveTampered, match="failed authentication"):
            A.open_archive(with_checksum(flip(archive, index)), PASS)


def test_header_change_with_recomputed_checks_is_still_refused(archive):
    """The header is bound to the body as associated data: re-encoding it (same meaning,
    other bytes) with valid CRC and checksum still fails authentication."""
    header, end = A.read_header(archive)
    raw = json.loads(archive[A.PREFIX_LEN:end])
    raw["compression"] = "zlib"
    new_header = json.dumps(raw, sort_keys=True, indent=1).encode()
    prefix = A.MAGIC + struct.pack(">BII", A.FORMAT, len(new_header),
                                   zlib.crc32(new_header)) + new_header
    forged = with_checksum(prefix + archive[end:])
    with pytest.raises(A.ArchiveTampered):
        A.open_archive(forged, PASS)


def test_changed_scrypt_parameters_are_refused(archive):
    header, end = A.read_header(archive)
    raw = json.loads(archive[A.PREFIX_LEN:end])
    raw["kdf"]["n"] = 2 ** 5
    new_header = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    prefix = A.MAGIC + struct.pack(">BII", A.FORMAT, len(new_header),
                                   zlib.crc32(new_header)) + new_header
    with pytest.raises((A.ArchiveWrongPassphrase, A.ArchiveTampered)):
        A.open_archive(with_checksum(prefix + archive[end:]), PASS)


def test_excessive_scrypt_parameters_are_refused_before_deriving(archive):
    header, end = A.read_header(archive)
    raw = json.loads(archive[A.PREFIX_LEN:end])
    raw["kdf"]["n"] = 2 ** 30
    new_header = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    prefix = A.MAGIC + struct.pack(">BII", A.FORMAT, len(new_header),
                                   zlib.crc32(new_header)) + new_header
    with pytest.raises(A.ArchiveInvalid, match="scrypt parameters beyond the limit"):
        A.open_archive(with_checksum(prefix + archive[end:]), PASS)


def test_truncation_at_every_length_is_refused_as_truncated(archive):
    for length in range(len(archive)):
        with pytest.raises(A.ArchiveTruncated, match="truncated"):
            A.open_archive(archive[:length], PASS)


def test_trailing_bytes_are_refused(archive):
    with pytest.raises(A.ArchiveDamaged, match="unexpected bytes"):
        A.open_archive(archive + b"\0", PASS)


def test_wrong_passphrase_is_refused_as_such(archive):
    with pytest.raises(A.ArchiveWrongPassphrase, match="wrong backup passphrase") as info:
        A.open_archive(archive, PASS + "x")
    assert PASS not in str(info.value)


def test_not_an_archive(tmp_path):
    with pytest.raises(A.ArchiveInvalid, match="not a trustzone backup"):
        A.open_archive(b"-----BEGIN CERTIFICATE-----\n", PASS)


def test_unsupported_format_version_is_named(archive):
    future = with_checksum(archive[:8] + bytes([2]) + archive[9:])
    with pytest.raises(A.ArchiveInvalid, match="format 2 is not supported"):
        A.open_archive(future, PASS)


def test_errors_are_distinct_classes_of_one_family():
    classes = {A.ArchiveInvalid, A.ArchiveTruncated, A.ArchiveDamaged,
               A.ArchiveWrongPassphrase, A.ArchiveTampered}
    assert len(classes) == 5
    assert all(issubclass(c, A.ArchiveError) and issubclass(c, TrustzoneError)
               for c in classes)


def test_short_passphrase_is_refused_when_building(ca_files, manifest):
    files, _certs = ca_files
    with pytest.raises(TrustzoneError, match="at least 12"):
        A.build(manifest, files, "short", kdf=FAST)


def test_file_changed_between_manifest_and_build_is_refused(ca_files, manifest):
    files, _certs = ca_files
    changed = dict(files, **{"rotation.json": (0o600, b'{"phase": "use"}')})
    with pytest.raises(A.ArchiveInvalid, match="changed while"):
        A.build(manifest, changed, PASS, kdf=FAST)


# --------------------------------------------------------------------------- CA checks

def test_check_ca_files_opens_every_key_with_the_ca_passphrase(ca_files):
    files, _certs = ca_files
    A.check_ca_files(files, CA_PASS)
    A.check_ca_files(files)  # without a passphrase only certificates are parsed
    with pytest.raises(TrustzoneError, match="does not open with trustzone_ca_passphrase"):
        A.check_ca_files(files, "another passphrase")


def test_check_ca_files_refuses_a_key_of_another_certificate(ca_files):
    files, _certs = ca_files
    swapped = dict(files, **{"next.key": files["root.key"]})
    with pytest.raises(TrustzoneError, match="does not belong"):
        A.check_ca_files(swapped, CA_PASS)


# --------------------------------------------------------------------------- restore plan

def test_restore_plan(ca_files, manifest, keys):
    files, _certs = ca_files
    assert A.plan_restore(manifest, files, None, "prod")["action"] == "create"
    assert A.plan_restore(manifest, files, {}, "prod")["action"] == "create"
    assert A.plan_restore(manifest, files, dict(files), "prod")["action"] == "none"
    with pytest.raises(TrustzoneError, match="backup of zone 'prod', not of zone 'lab'"):
        A.plan_restore(manifest, files, None, "lab")
    _key, other = _root(keys, "other", "09")
    different = {"root.crt": (0o644, C.certificate_pem(other).encode())}
    with pytest.raises(TrustzoneError, match="holds a different root"):
        A.plan_restore(manifest, files, different, "prod")
    assert A.plan_restore(manifest, files, different, "prod", force=True)["action"] == "replace"
    newer = dict(files, **{"ledger.db": (0o600, A.SQLITE_MAGIC + b"more rows")})
    with pytest.raises(TrustzoneError, match="same root but differs .* ledger.db"):
        A.plan_restore(manifest, files, newer, "prod")
    remoded = dict(files, **{"root.key": (0o644, files["root.key"][1])})
    with pytest.raises(TrustzoneError, match="root.key"):
        A.plan_restore(manifest, files, remoded, "prod")
    with pytest.raises(TrustzoneError, match="not empty .* no root.crt"):
        A.plan_restore(manifest, files, {"junk": (0o600, b"x")}, "prod")
