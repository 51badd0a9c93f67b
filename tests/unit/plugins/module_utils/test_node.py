"""_node: the node module's run without Ansible (the host's services as functions) - a
check-mode inspect of a new node writes nothing and says what it would do; --diff lines;
and node_info's describe_zone of a node that never joined."""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as ID
from ansible_collections.trustzone.pki.plugins.module_utils import _node
from ansible_collections.trustzone.pki.plugins.module_utils import _stamp
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import NAMES


def params(directory, zone, **extra):
    out = dict(zone="prod", dir=str(directory), roots=[C.certificate_pem(zone.cert)],
               issuers=None, crl=None, trust=None,
               profiles=ID.resolve_profiles(None, "prod", str(directory), dict(NAMES)),
               certificates=None, rollback=[])
    out.update(extra)
    return out


def no_command(*_args, **_kwargs):
    raise AssertionError("no command runs in check mode")


def test_check_mode_inspect_of_a_new_node(tmp_path, zone):
    directory = tmp_path / "prod"
    result = _node.run(params(directory, zone), True, True, no_command, lambda _name: None)
    assert not directory.exists()
    assert result["changed"] and result["crl_changed"] is False
    assert result["files"] == [str(directory) + "/", str(directory / _node.ROOTS_BUNDLE)]
    names = sorted(p["name"] for p in params(directory, zone)["profiles"])
    assert sorted(result["requests"]) == names and result["installed"] == {}
    for name in names:
        assert result["requests"][name]["csr"] is None
        assert [r["reason"] for r in result["requests"][name]["reasons"]] == [
            "missing_key", "missing_certificate"]
        assert result["identities"][name]["state"] == "renew"
    assert result["diff"]["after"] == "file %s/\nfile %s\n" % (
        directory, directory / _node.ROOTS_BUNDLE) + "".join(
        "request %s: missing_key, missing_certificate\n" % name for name in names)


def test_diff_text_lists_installs():
    assert _stamp.diff_text({"installed": ["server"]}, ["/a"]) == "file /a\ninstall server\n"


def test_describe_zone_of_a_node_that_never_joined(tmp_path, zone):
    result = _node.describe_zone(dict(zone="prod", dir=str(tmp_path / "prod"), profiles=[],
                                      roots=None, intermediates=[], scan=False))
    assert result == {"changed": False, "zone": "prod", "dir": str(tmp_path / "prod"),
                      "certificates": [], "roots_bundle": None, "roots_source": "none",
                      "crl": {"path": str(tmp_path / "prod" / _node.CRL_FILE),
                              "exists": False, "error": None, "next_update": None,
                              "number": None, "crls": []}}
