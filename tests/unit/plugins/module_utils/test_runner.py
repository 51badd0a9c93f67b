"""_runner.run_module: how every module ends (result, clear failure, check-mode change)."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _runner
from ansible_collections.trustzone.pki.plugins.module_utils import _sources
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


class Exited(Exception):
    pass


class FakeModule:
    """Records how the module ended; like AnsibleModule, exit/fail never return."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self.ended = None

    def exit_json(self, **result):
        self.ended = ("exit", result)
        raise Exited()

    def fail_json(self, **result):
        self.ended = ("fail", result)
        raise Exited()


def end(run, check_mode=False):
    module = FakeModule(check_mode)
    with pytest.raises(Exited):
        _runner.run_module(module, run)
    return module.ended


def test_the_result_of_run_is_the_modules_result():
    assert end(lambda m: {"changed": True, "path": "/x"}) == (
        "exit", {"changed": True, "path": "/x"})


def test_run_gets_the_module():
    seen = []
    end(lambda m: seen.append(m) or {"changed": False})
    assert isinstance(seen[0], FakeModule)


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_trustzone_error_is_one_line_naming_the_file_and_the_fix(check_mode):
    def run(_module):
        raise TrustzoneError("is not a certificate", "/etc/trustzone/prod/server.crt",
                             fix="remove it; the next run makes a new one")
    kind, result = end(run, check_mode)
    assert kind == "fail"
    assert result == {"msg": "/etc/trustzone/prod/server.crt: is not a certificate Fix: "
                             "remove it; the next run makes a new one"}


def test_a_missing_source_fails_for_real():
    def run(_module):
        raise _sources.MissingSource("does not exist", "/etc/trustzone/prod/roots.pem")
    kind, result = end(run)
    assert kind == "fail" and "/etc/trustzone/prod/roots.pem: does not exist" in result["msg"]


def test_a_missing_source_is_a_change_in_check_mode():
    def run(_module):
        raise _sources.MissingSource("does not exist", "/etc/trustzone/prod/roots.pem")
    kind, result = end(run, check_mode=True)
    assert kind == "exit" and result["changed"] is True
    assert "/etc/trustzone/prod/roots.pem: does not exist" in result["msg"]


def test_any_other_exception_is_not_swallowed():
    def run(_module):
        raise KeyError("bug")
    with pytest.raises(KeyError):
        _runner.run_module(FakeModule(), run)


def test_without_cryptography_the_module_says_so(monkeypatch):
    monkeypatch.setattr(C, "HAS_CRYPTOGRAPHY", False)
    monkeypatch.setattr(C, "CRYPTOGRAPHY_IMPORT_ERROR", ImportError("no cryptography"), raising=False)
    called = []
    kind, result = end(lambda m: called.append(m) or {})
    assert kind == "fail" and "cryptography" in result["msg"]
    assert result["exception"] == "no cryptography" and not called
