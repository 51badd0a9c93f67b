"""nss_trust against the real NSS tools (certutil, crlutil, vfychain from Debian
libnss3-tools), in a throw-away database: a zone with an intermediate CA. The fake database of
test_nss_trust_crls.py pins the order of the commands; this pins that NSS itself accepts them
and then refuses a revoked leaf the intermediate signed. Skipped where the tools are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.modules import nss_trust
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.test_nss_trust_crls import (
    ialias, make_crl, make_intermediate, make_leaf, make_root)
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (
    module_defaults)

TOOLS = ("certutil", "crlutil", "vfychain")
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS),
                                reason="NSS tools not installed (Debian libnss3-tools)")


class RealModule:
    """Enough of AnsibleModule for ``nss_trust.run``, running the real commands."""

    def __init__(self, tmpdir, check=False, **params):
        self.params = module_defaults(nss_trust)
        self.params.update(zone="lab", **params)
        self.check_mode = check
        self._diff = False
        self.tmpdir = str(tmpdir)

    def get_bin_path(self, name, required=False):
        return shutil.which(name)

    def run_command(self, argv, data=None, binary_data=False, environ_update=None):
        proc = subprocess.run(argv, input=data, capture_output=True, timeout=60, check=False,
                              env=dict(os.environ, **(environ_update or {})))
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def vfychain(db, cert):
    """NSS's classic verification of ``cert`` given alone: ``(exit code, output)``."""
    path = os.path.join(os.path.dirname(db), "peer.crt")
    with open(path, "w", encoding="ascii") as handle:
        handle.write(C.certificate_pem(cert))
    proc = subprocess.run(["vfychain", "-d", "sql:%s" % db, "-u", "1", "-a", path],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_nss_refuses_a_revoked_leaf_of_the_intermediate_and_trusts_only_the_root(tmp_path):
    db, zone_dir = str(tmp_path / "nssdb"), tmp_path / "zone"
    zone_dir.mkdir()
    root = make_root("root 01")
    inter = make_intermediate(root, "inter 01")
    leaf1, leaf2 = make_leaf(inter, "node1.lab"), make_leaf(inter, "node2.lab")
    (zone_dir / "server-fullchain.pem").write_text(C.certificate_pem(leaf1)
                                                   + C.certificate_pem(inter[1]))

    def apply(crls, check=False):
        return nss_trust.run(RealModule(tmp_path, check=check, db=db, chain_dir=str(zone_dir),
                                        roots=[C.certificate_pem(root[1])], crls=crls))

    crls = [make_crl(root, 1), make_crl(inter, 1)]
    assert apply(crls)["intermediates_added"] == [ialias(inter)]
    listing = subprocess.run(["certutil", "-L", "-d", "sql:%s" % db], capture_output=True,
                             text=True, check=True).stdout
    assert "%s ,," % ialias(inter) in " ".join(listing.split())
    assert vfychain(db, leaf2)[0] == 0  # the path is built from the database
    assert not apply(crls)["changed"]
    revoked = [make_crl(root, 1), make_crl(inter, 2, revoked=[leaf2.serial_number])]
    assert apply(revoked, check=True)["crls_imported"] == [ialias(inter)]
    assert vfychain(db, leaf2)[0] == 0  # check mode imported nothing
    assert apply(revoked)["crls_imported"] == [ialias(inter)]
    code, out = vfychain(db, leaf2)
    assert code != 0 and "revoked" in out, out
    assert vfychain(db, leaf1)[0] == 0
    assert not apply(revoked)["changed"]
    # the intermediate is not a trust anchor: without the root, nothing it signed validates
    subprocess.run(["certutil", "-D", "-n", nss_trust.T.alias_for("trustzone-lab-", root[1]),
                    "-d", "sql:%s" % db], check=True)
    assert vfychain(db, leaf1)[0] != 0
