"""Argument-spec fragments (module_utils/_args.py) and the layout constants (_layout.py)."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def test_fragments_and_own_options_make_one_spec_with_the_fragments_constraints():
    kwargs = _args.module_args(_args.ZONE_CA_KEYS, _args.STORE_ROOTS,
                               extra=dict(type="str"), mutually_exclusive=[("extra", "dir")])
    assert list(kwargs["argument_spec"]) == ["zone", "dir", "passphrase", "roots",
                                             "roots_path", "extra"]
    assert kwargs["argument_spec"]["passphrase"]["no_log"] is True
    assert kwargs["required_one_of"] == [("roots", "roots_path")]
    assert kwargs["mutually_exclusive"] == [("roots", "roots_path"), ("extra", "dir")]
    assert kwargs["supports_check_mode"] is True


def test_a_module_cannot_change_a_fragment_for_the_next_one():
    kwargs = _args.module_args(_args.OWNER_GROUP)
    kwargs["argument_spec"]["owner"]["default"] = "nobody"
    assert _args.module_args(_args.OWNER_GROUP)["argument_spec"]["owner"]["default"] == "root"


def test_an_option_given_twice_is_a_mistake():
    with pytest.raises(ValueError, match="dir given twice"):
        _args.module_args(_args.ZONE_CA, dir=dict(type="path"))


def test_probe_bounds_are_one_spec_with_each_modules_defaults():
    probe = _args.module_args(_args.probe_bounds(timeout=5, retries=3, delay=2))
    proxy = _args.module_args(_args.probe_bounds(timeout=5, retries=5, delay=1))
    assert probe["argument_spec"] == {"timeout": {"type": "float", "default": 5},
                                      "retries": {"type": "int", "default": 3},
                                      "delay": {"type": "float", "default": 2}}
    assert [proxy["argument_spec"][n]["default"] for n in ("timeout", "retries", "delay")] == \
        [5, 5, 1]


def test_zone_and_its_directories():
    assert _args.zone_and_ca_dir({"zone": "prod", "dir": None}) == (
        "prod", "/var/lib/trustzone/prod")
    assert _args.zone_and_ca_dir({"zone": "prod", "dir": "/srv/ca"}) == ("prod", "/srv/ca")
    assert _args.zone_and_node_dir({"zone": "prod", "dir": None}) == (
        "prod", "/etc/trustzone/prod")
    with pytest.raises(TrustzoneError, match="zone name 'NO' is not a valid name"):
        _args.zone_and_node_dir({"zone": "NO", "dir": None})


def test_layout_time_format():
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert _layout.iso(moment) == "2026-01-02T03:04:05Z"
    assert _layout.MIN_PASSPHRASE == 12
