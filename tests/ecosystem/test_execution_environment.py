"""execution-environment.yml is accepted by ansible-builder and matches galaxy.yml."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def load(path):
    return yaml.safe_load((REPO / path).read_text())


def test_in_line_with_galaxy_yml():
    ee = load("execution-environment.yml")
    galaxy = load("galaxy.yml")
    assert ee["version"] == 3
    tarball = "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"])
    assert [f["src"] for f in ee["additional_build_files"]] == [tarball]
    collections = {c["name"]: c for c in ee["dependencies"]["galaxy"]["collections"]}
    assert collections["collections/" + tarball]["type"] == "file"
    for name, version in galaxy["dependencies"].items():
        assert collections[name]["version"] == version, name
    # the collection declares its own Python needs for ansible-builder's introspection
    meta_ee = load("meta/execution-environment.yml")
    assert meta_ee["dependencies"]["python"] == ee["dependencies"]["python"]
    assert (REPO / ee["dependencies"]["python"]).exists()


def test_builder_create(eco, built, installed, tmp_path):
    """`ansible-builder create` accepts the file (building the image needs a registry and
    is not done here); the build context holds our tarball and Python requirements, and
    ansible-builder's own introspection of the installed collection finds our EE
    requirements (meta/ee-requirements.txt), not the development requirements.txt."""
    work = tmp_path / "ee"
    work.mkdir()
    shutil.copy(REPO / "execution-environment.yml", work)
    (work / "meta").mkdir()
    shutil.copy(REPO / "meta" / "ee-requirements.txt", work / "meta")
    shutil.copy(built, work)
    containerfile = eco.ee_create(work / "context", ee_file=work / "execution-environment.yml")
    context = containerfile.parent
    assert (context / "_build" / "collections" / built.name).exists()
    assert "cryptography" in (context / "_build" / "requirements.txt").read_text()
    introspect = context / "_build" / "scripts" / "introspect.py"
    proc = eco.run([eco.venv_bin("python"), introspect, "introspect", installed],
                   cwd=tmp_path)
    assert "cryptography" in proc.output and "molecule" not in proc.output, proc.output


def test_ansible_runner_is_the_one_the_slices_test_runs():
    """The EE installs the ansible-runner range that tests/e2e/test_runner_slices.py drives
    site.yml with (requirements.txt; docs/awx.md)."""
    ee = load("execution-environment.yml")
    wanted = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.startswith("ansible-runner")]
    assert wanted == [ee["dependencies"]["ansible_runner"]["package_pip"]]
