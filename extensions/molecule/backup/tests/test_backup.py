"""Verify the backup role (testinfra): the archive on the controller is private, opens with
the backup passphrase only, and holds every file of the CA directory as it is on the CA host."""

import os
import sys

import pytest

ARCHIVE = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""),
                       "backups", "molbak.tzbackup")
CA_DIR = "/var/lib/trustzone/molbak"
PASSPHRASE = "molecule-only-backup-passphrase"


@pytest.fixture
def ca(container):
    return container("ca")


@pytest.fixture
def archive_module():
    """The collection's own archive reader (plugins/module_utils/_archive.py)."""
    sys.path.insert(0, os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], ".collections"))
    try:
        from ansible_collections.trustzone.pki.plugins.module_utils import _archive  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    return _archive


def read_archive():
    with open(ARCHIVE, "rb") as fh:
        return fh.read()


def test_archive_is_on_the_controller_and_private(host):
    archive = host.file(ARCHIVE)
    assert archive.is_file and archive.mode == 0o600
    assert read_archive().startswith(b"TZBACKUP")


def test_archive_refuses_another_passphrase(archive_module):
    with pytest.raises(archive_module.ArchiveWrongPassphrase):
        archive_module.open_archive(read_archive(), "not the backup passphrase")


def test_archive_holds_the_ca_directory_as_it_is(ca, archive_module):
    manifest, files = archive_module.open_archive(read_archive(), PASSPHRASE)
    assert manifest["zone"] == "molbak"
    on_host = ca.check_output("cd %s && find . -type f | sed 's|^./||' | sort" % CA_DIR).split()
    assert sorted(files) == on_host
    for path, (_mode, data) in files.items():
        if path != "ledger.db":  # the ledger is copied through SQLite's backup API
            assert data == ca.file("%s/%s" % (CA_DIR, path)).content, path
    generation = files["current"][1].decode().strip()
    assert files[generation + "/root.key"][1].startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_nothing_is_left_on_the_ca_host(ca):
    assert ca.run("find /tmp -name '*.trustzone-backup*'").stdout.strip() == ""
