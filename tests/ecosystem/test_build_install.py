"""`ansible-galaxy collection build` output installs into a clean collections path, and the
quick-start playbook runs from the INSTALLED collection, not from the checkout."""

from __future__ import annotations

import tarfile

import pytest


def test_tarball_contents(eco, built):
    with tarfile.open(built) as tar:
        names = set(tar.getnames())
    for required in ("MANIFEST.json", "FILES.json", "meta/runtime.yml", "README.md",
                     "LICENSE", "CHANGELOG.md", "changelogs/changelog.yaml",
                     "playbooks/site.yml", "plugins/modules/node.py",
                     "plugins/filter/node_names.yml", "roles/certs/meta/argument_specs.yml",
                     "meta/execution-environment.yml", "meta/ee-requirements.txt"):
        assert required in names, "%s is not in %s" % (required, built.name)


def test_installed_playbooks_parse(eco, installed, tmp_path):
    """The installed collection is the only trustzone.pki Ansible sees (ansible-galaxy
    collection list, ansible-doc's file name), and every installed playbook passes
    --syntax-check there."""
    checked = eco.check_installed(installed, tmp_path)
    assert "site.yml" in checked


@pytest.mark.lab
def test_installed_site_runs_on_lab(eco, installed, tmp_path):
    """A one-node lab fleet (podman over SSH): the installed site.yml converges it, and a
    second run changes nothing."""
    if not eco.lab_available():
        pytest.skip("needs root and podman (scripts/bootstrap) for the lab fleet")
    first, second = eco.run_site_on_lab(installed, tmp_path)
    assert first > 0 and second > 0
