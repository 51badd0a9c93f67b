"""ansible-test sanity and units, on a copy at ansible_collections/trustzone/pki."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_sanity(eco):
    """Every sanity test passes; the only ignores are the justified ones (each line of
    tests/sanity/ignore-*.txt carries its reason, and ansible-test's own `ignores` test
    fails on an entry that is no longer needed)."""
    proc = eco.sanity()
    assert "FATAL" not in proc.output, proc.output[-6000:]


def test_ignore_entries_are_justified():
    for path in sorted((REPO / "tests" / "sanity").glob("ignore-*.txt")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert " # " in line and line.split(" # ", 1)[1].strip(), (
                "%s:%d has no justification comment: %s" % (path.name, number, line))


def test_units(eco):
    """ansible-test units runs tests/unit (module_utils and controller groups)."""
    proc = eco.units()
    assert " passed" in proc.output and " failed" not in proc.output, proc.output[-6000:]
