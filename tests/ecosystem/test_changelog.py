"""antsibull-changelog: fragments are valid, and CHANGELOG.md is generated from them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def test_semantic_version():
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    assert SEMVER.match(str(version)), version


def test_fragments_lint(eco):
    eco.changelog_lint()


def test_changelog_is_generated_and_current(eco):
    """`antsibull-changelog release --version <galaxy.yml version>` (offline) reproduces the
    committed changelogs/changelog.yaml and CHANGELOG.md: every fragment and every new
    plugin is in them. Fix: scripts/ecosystem changelog."""
    differ = eco.changelog_release(apply=False)
    assert not differ, (
        "%s out of date with changelogs/fragments and the plugins: run "
        "`scripts/ecosystem changelog` and commit the result" % " and ".join(sorted(differ)))
