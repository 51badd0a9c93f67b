"""_trust: the OS trust-store layout, worked out on the node from os-release and commands."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _trust as T
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n'
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n'
ROCKY = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
RHEL = 'NAME="Red Hat Enterprise Linux"\nID="rhel"\nVERSION_ID="9.4"\n'
ALMA_LIKE_ONLY = "ID=someos\nID_LIKE='rhel fedora'\n"
ALPINE = "NAME=\"Alpine Linux\"\nID=alpine\n"
# /etc/os-release of the other RHEL-family systems, as they ship it
ALMA = 'NAME="AlmaLinux"\nID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'
CENTOS = 'NAME="CentOS Stream"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="9"\n'
ORACLE = 'NAME="Oracle Linux Server"\nID="ol"\nID_LIKE="fedora"\nVERSION_ID="8.9"\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n'
DEBIAN13 = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'


def test_parse_os_release_strips_quotes_and_comments():
    assert T.parse_os_release('# comment\nID="rocky"\nID_LIKE=\'rhel centos\'\n\nBAD LINE\n') == {
        "ID": "rocky", "ID_LIKE": "rhel centos"}
    assert T.parse_os_release(None) == {}


@pytest.mark.parametrize("text, family", [
    (DEBIAN, "debian"), (UBUNTU, "debian"), (ROCKY, "redhat"), (RHEL, "redhat"),
    (ALMA_LIKE_ONLY, "redhat"), (ALMA, "redhat"), (CENTOS, "redhat"), (ORACLE, "redhat"),
    (FEDORA, "redhat"), (DEBIAN13, "debian"), (ALPINE, None), (None, None), ("", None)])
def test_detect_family_from_os_release(text, family):
    assert T.detect_family(text, []) == family


def test_os_release_wins_over_the_commands_found():
    assert T.detect_family(DEBIAN, ["update-ca-trust"]) == "debian"


@pytest.mark.parametrize("commands, family", [
    (["update-ca-certificates"], "debian"), (["update-ca-trust"], "redhat"), ([], None)])
def test_commands_decide_when_os_release_names_no_family(commands, family):
    assert T.detect_family(ALPINE, commands) == family


def test_layout_of_each_family():
    assert T.trust_layout({}, "debian") == {
        "anchor_dir": "/usr/local/share/ca-certificates", "suffix": ".crt",
        "update_command": ["update-ca-certificates"],
        "fresh_command": ["update-ca-certificates", "--fresh"]}
    assert T.trust_layout(None, "redhat") == {
        "anchor_dir": "/etc/pki/ca-trust/source/anchors", "suffix": ".pem",
        "update_command": ["update-ca-trust", "extract"],
        "fresh_command": ["update-ca-trust", "extract"]}


def test_each_setting_given_overrides_its_part_only():
    given = {"anchor_dir": "/opt/anchors", "suffix": None, "update_command": None,
             "fresh_command": []}
    assert T.trust_layout(given, "debian") == {
        "anchor_dir": "/opt/anchors", "suffix": ".crt",
        "update_command": ["update-ca-certificates"],
        "fresh_command": ["update-ca-certificates", "--fresh"]}


def test_full_settings_need_no_detection():
    given = {"anchor_dir": "/a", "suffix": ".pem", "update_command": ["u"],
             "fresh_command": ["f"]}
    assert not T.needs_detection(given)
    assert T.needs_detection({"anchor_dir": "/a"})
    assert T.needs_detection(None)
    assert T.trust_layout(given, None) == given


def test_unknown_os_without_settings_is_a_clear_error():
    with pytest.raises(TrustzoneError) as info:
        T.trust_layout({"suffix": ".crt"}, None)
    assert "cannot tell this node's OS trust-store layout" in str(info.value)
    assert "trustzone_trust_anchor_dir" in info.value.fix
    assert "trustzone_trust_update_command" in info.value.fix
    assert "\n" not in str(info.value)


def test_unknown_os_with_dir_and_command_set_defaults_the_suffix():
    layout = T.trust_layout({"anchor_dir": "/a", "update_command": ["u"]}, None)
    assert layout == {"anchor_dir": "/a", "suffix": ".crt", "update_command": ["u"],
                      "fresh_command": None}


@pytest.mark.parametrize("unset", [None, "", [], [""]])
def test_an_unset_part_takes_the_detected_one(unset):
    """ansible-core before 2.19 renders an unset part as "" and the module's list type
    makes that [""]: it must never become the command the node runs."""
    layout = T.trust_layout({"update_command": unset, "anchor_dir": unset}, "debian")
    assert layout["update_command"] == ["update-ca-certificates"]
    assert layout["anchor_dir"] == "/usr/local/share/ca-certificates"
