"""TrustzoneError: one line, with the path and the fix."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


@pytest.mark.parametrize("path, fix, expected", [
    (None, None, "it broke"),
    ("/etc/x.key", None, "/etc/x.key: it broke"),
    (None, "do this", "it broke Fix: do this"),
    ("/etc/x.key", "do this", "/etc/x.key: it broke Fix: do this"),
])
def test_render(path, fix, expected):
    err = TrustzoneError("it broke", path, fix=fix)
    assert str(err) == expected
    assert err.render() == expected
    assert (err.message, err.path, err.fix) == ("it broke", path, fix)
    assert "\n" not in str(err)


def test_is_an_exception():
    with pytest.raises(TrustzoneError, match="boom"):
        raise TrustzoneError("boom")
    assert issubclass(TrustzoneError, Exception)
