"""The offline root, end to end in one process: the zone_root action plugin (controller,
holding the root store) drives the real zone_root module (CA host) in rounds, and the root
key never lands in the CA directory."""

from __future__ import annotations

import datetime
import os
import types
from unittest import mock

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ansible_collections.trustzone.pki.plugins.action.zone_root import ActionModule
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _offline
from ansible_collections.trustzone.pki.tests.unit.plugins.action.tz_fakeinventory import (
    FakeInventory)
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (
    FakeModule, module_defaults)

zone_root = pytest.importorskip(
    "ansible_collections.trustzone.pki.plugins.modules.zone_root")

PASS = "correct horse battery staple"
ROOT_PASS = "a different offline root passphrase"
ZONE = {"ca": {"trustzone_node_fqdn": "ca.lab.test"},
        "node1": {"trustzone_node_fqdn": "node1.lab.test"}}


class Zone:
    """A CA directory, an offline root store and the action that joins them."""

    def __init__(self, tmp_path):
        self.ca_dir = str(tmp_path / "ca")
        self.store = str(tmp_path / "controller" / "offline-root")
        self.defaults = module_defaults(zone_root)
        self.rounds = []

    def run(self, check=False, **extra):
        args = {"zone": "lab", "dir": self.ca_dir, "passphrase": PASS, "ca_hosts": ["ca"],
                "owner": str(os.getuid()), "group": str(os.getgid()),
                "key_curve": "secp256r1", "intermediate": True, "root_offline": True,
                "root_dir": self.store, "root_passphrase": ROOT_PASS}
        args.update(extra)
        task = types.SimpleNamespace(args=args, async_val=0, check_mode=check,
                                     action="trustzone.pki.zone_root")
        connection = types.SimpleNamespace(_shell=types.SimpleNamespace(tmpdir="/tmp/x"))
        action = ActionModule(task, connection, play_context=None, loader=None, templar=None,
                              shared_loader_obj=None)
        action._load_name = "trustzone.pki.zone_root"
        inventory = FakeInventory(ZONE, ca_hosts=["ca"])
        action._inventory_source = lambda: inventory

        def execute(module_name, module_args, task_vars):
            assert module_name == "trustzone.pki.zone_root"
            assert "root_passphrase" not in module_args and "root_dir" not in module_args
            assert ROOT_PASS not in repr(module_args)  # the store's secret stays here
            self.rounds.append(module_args.get("root_signed"))
            try:
                answer = zone_root.run(FakeModule(dict(self.defaults, **module_args), check))
            except zone_root.TrustzoneError as exc:
                answer = {"failed": True, "msg": str(exc)}
            self.answers.append(answer)
            return answer
        action._execute_module = mock.Mock(side_effect=execute)
        self.rounds, self.answers = [], []
        with mock.patch("ansible_collections.trustzone.pki.plugins.action.zone_root.Display"):
            return action.run(task_vars={"inventory_hostname": "ca"})

    def tree(self):
        out = {}
        for base, _dirs, names in os.walk(self.ca_dir):
            for name in names:
                path = os.path.join(base, name)
                with open(path, "rb") as handle:
                    out[os.path.relpath(path, self.ca_dir)] = handle.read()
        return out

    def current(self, name):
        with open(os.path.join(self.ca_dir, "current")) as handle:
            gen = handle.read().strip()
        path = os.path.join(self.ca_dir, gen, name)
        if not os.path.exists(path):
            return None
        with open(path, "rb") as handle:
            return handle.read()

    def store_roots(self):
        return {name[:-4] for name in os.listdir(self.store) if name.endswith(".key")}


def assert_no_root_key_on_the_ca_host(zone):
    """No file of the CA directory (every generation, pending files, retired/) holds the
    private key of any root the store holds, encrypted or not, under any name."""
    roots = [C.load_certificate(pem) for pem in _offline.Store(zone.store, ROOT_PASS)
             .certificates()]
    assert roots
    spki = {C.fingerprint(r): r.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        for r in roots}
    for rel, data in zone.tree().items():
        assert not rel.endswith(("root.key", "next.key")), rel
        if b"PRIVATE KEY" not in data:
            continue
        key = serialization.load_pem_private_key(data, PASS.encode())
        mine = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        assert mine not in spki.values(), rel


@pytest.fixture
def zone(tmp_path):
    return Zone(tmp_path)


def test_a_new_zone_makes_its_root_on_the_controller_and_says_what_the_key_did(zone):
    result = zone.run()
    assert result.get("failed") is not True, result
    used = result["root_key_used"]
    assert used[0].startswith("made the new root ")
    assert any("signed the CA certificate" in line and "intermediate" in line for line in used)
    assert any(line.startswith("signed the CRL ") for line in used)
    assert len(zone.store_roots()) == 1
    assert zone.current("root.offline").decode() == list(zone.store_roots())[0]
    assert zone.current("root.key") is None and zone.current("intermediate.key") is not None
    root = x509.load_pem_x509_certificate(zone.current("root.crt"))
    inter = x509.load_pem_x509_certificate(zone.current("intermediate.crt"))
    assert C.is_signed_by(inter, root)
    crls = C.load_crls(open(os.path.join(zone.ca_dir, "crl.pem"), "rb").read())
    assert sorted(C.crl_signed_by(crl, root) for crl in crls) == [False, True]
    root_crl = [crl for crl in crls if C.crl_signed_by(crl, root)][0]
    assert C.crl_next_update(root_crl) - datetime.datetime.now(
        datetime.timezone.utc) > datetime.timedelta(days=300)  # the root's long schedule
    assert not os.path.exists(os.path.join(zone.ca_dir, _offline.PENDING_FILE))
    assert_no_root_key_on_the_ca_host(zone)
    assert result["issuer"] == zone.current("intermediate.crt").decode()


def test_a_second_run_needs_nothing_of_the_root(zone):
    zone.run()
    before = zone.tree()
    result = zone.run()
    assert result["changed"] is False and result["root_key_used"] == []
    assert zone.rounds == [{}]  # one round: the CA host asked nothing
    assert zone.tree() == before


def test_an_intermediate_reissue_is_signed_on_the_controller(zone):
    zone.run()
    first = zone.current("intermediate.crt")
    result = zone.run(intermediate_force=True)
    assert zone.current("intermediate.crt") != first
    used = result["root_key_used"]
    assert len(used) == 1  # the root's CRL is not due: no second use
    assert used[0].startswith("signed the CA certificate ") and "intermediate CA" in used[0]
    assert_no_root_key_on_the_ca_host(zone)


def test_a_full_rotation_keeps_every_root_key_off_the_ca_host(zone):
    zone.run()
    old = list(zone.store_roots())[0]
    trust = zone.run(rotate="trust", rotate_force=True)
    assert trust.get("failed") is not True, [
        [(r["op"], r.get("what")) for r in a.get("root_requests", [])] for a in zone.answers]
    assert trust["root_key_used"][0].startswith("made the next root ")
    assert len(trust["roots"]) == 2
    assert_no_root_key_on_the_ca_host(zone)
    use = zone.run(rotate="use")
    assert use["root_key_used"] == []  # switching issuers needs no root key
    new = (zone.store_roots() - {old}).pop()
    retire = zone.run(rotate="retire", retire_confirmed=True)
    assert retire.get("failed") is not True, retire
    assert zone.current("root.offline").decode() == new
    assert [C.fingerprint(C.load_certificate(r)) for r in retire["roots"]] == [new]
    assert_no_root_key_on_the_ca_host(zone)
    again = zone.run()
    assert again["changed"] is False and again["root_key_used"] == []


def test_a_wrong_root_passphrase_is_one_line_and_writes_nothing(zone):
    zone.run()
    before = zone.tree()
    result = zone.run(intermediate_force=True, root_passphrase="not the right one at all")
    assert result["failed"] is True
    assert "trustzone_ca_root_passphrase does not open the offline root key" in result["msg"]
    assert "\n" not in result["msg"].split(" Fix:")[0]
    # the round that asked left its plan pending; it is never in force
    assert {k: v for k, v in zone.tree().items() if k != _offline.PENDING_FILE} == before
    assert zone.run()["changed"] is False  # the next run discards it


def test_a_signature_by_another_key_is_refused(zone, monkeypatch):
    zone.run()
    real = _offline.fulfill

    def forged(requests, store, make_root):
        signed, used = real(requests, store, make_root)
        other = C.generate_key(C.normalize_key_spec("ec", None, "secp384r1"))
        for request in requests:
            if request["op"] == "sign":
                from ansible_collections.trustzone.pki.plugins.module_utils import _detached
                import base64
                signed[request["id"]] = base64.b64encode(_detached.sign_placeholder(
                    base64.b64decode(request["der"]), other)).decode()
        return signed, used
    monkeypatch.setattr(_offline, "fulfill", forged)
    before = zone.current("intermediate.crt")
    result = zone.run(intermediate_force=True)
    assert result["failed"] is True and "refused the signed CA certificate" in result["msg"]
    assert zone.current("intermediate.crt") == before


def test_a_round_abandoned_by_a_crash_is_discarded_and_redone(zone):
    zone.run()
    zone.run(intermediate_force=True, root_dir=zone.store + "-missing")  # fails after round 1
    assert os.path.exists(os.path.join(zone.ca_dir, _offline.PENDING_FILE))
    result = zone.run(intermediate_force=True)
    assert result.get("failed") is not True, result
    assert not os.path.exists(os.path.join(zone.ca_dir, _offline.PENDING_FILE))
    assert_no_root_key_on_the_ca_host(zone)


def test_check_mode_on_a_new_zone_writes_nothing_anywhere(zone):
    result = zone.run(check=True)
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert any(line.startswith("would sign the CA certificate")
               for line in result["root_key_used"])
    assert not os.path.exists(zone.store)
    assert zone.tree() == {}


@pytest.mark.parametrize("extra, text", [
    ({"root_passphrase": "short"}, "ca: trustzone_ca_root_passphrase must be set"),
    ({"root_passphrase": PASS}, "trustzone_ca_root_passphrase is the CA passphrase"),
    ({"intermediate": False}, "an offline root signs only intermediates"),
    ({"root_dir": None}, "trustzone_ca_root_dir is not set"),
])
def test_bad_offline_inputs_stop_before_the_ca_host(zone, extra, text):
    result = zone.run(**extra)
    assert result["failed"] is True and text in result["msg"]
    assert zone.rounds == [] and not os.path.exists(zone.ca_dir)


def test_a_zone_whose_root_key_is_on_the_ca_host_is_not_silently_taken_offline(zone):
    zone.run(root_offline=False)
    result = zone.run()
    assert result["failed"] is True and "root key is on the CA host" in result["msg"]


def test_what_the_offline_root_signs_is_clean_under_pkilint(zone):
    lint = pytest.importorskip(
        "ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.test_rfc5280_lint")
    zone.run()
    root = x509.load_pem_x509_certificate(zone.current("root.crt"))
    inter = x509.load_pem_x509_certificate(zone.current("intermediate.crt"))
    findings = lint.lint_certificate(root)[1] + lint.lint_certificate(inter)[1]
    findings += lint.lint_chain(root, inter)
    with open(os.path.join(zone.ca_dir, "crl.pem"), "rb") as handle:
        for crl in C.load_crls(handle.read()):
            findings += lint.lint_crl(crl)
    assert lint.unaccepted(findings) == []
