"""The support matrix: ansible-core versions other than the .venv's (2.19), each in its own
venv (~/.cache/trustzone-pki-ecosystem) with the collections of PyPI's `ansible` 11
(community.crypto 2.26; see MATRIX in scripts/ecolib.py for why). 2.20 and 2.21 need Python
>= 3.12: their venvs (with `ansible` 13 and 14) live in a Debian 13 container, and each test
runs its step there (scripts/newcore.py; the lab fleet stays on the host).

Which versions: TRUSTZONE_MATRIX (default "2.16", the oldest that meta/runtime.yml
allows; "2.16 2.17 2.18" for all older ones, "2.20 2.21" for the newer ones; "none" to
skip). 2.19 is what every other test in this directory runs on."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.matrix


def _load_newcore():
    sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
    spec = importlib.util.spec_from_file_location("newcore", REPO / "scripts" / "newcore.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def core_venv(eco, matrix_core):
    """The venv of ``matrix_core`` (a path), or for 2.20 and later its container runner."""
    if matrix_core is None:
        pytest.skip("TRUSTZONE_MATRIX=none")
    if matrix_core in eco.CONTAINER_CORES:
        if not eco.lab_available():
            pytest.skip("needs root and podman (scripts/bootstrap) for the Debian 13 container")
        runner = _load_newcore().ContainerCore(matrix_core)
        assert runner.prepare()["ansible-core"].startswith(matrix_core + ".")
        return runner
    venv = eco.ensure_matrix_venv(matrix_core)
    assert eco.core_version(venv).startswith(matrix_core + ".")
    return venv


def in_container(eco, matrix_core):
    return matrix_core in eco.CONTAINER_CORES


def lab_prefix(matrix_core):
    return (os.environ.get("TRUSTZONE_E2E_PREFIX") or "tzm") + matrix_core.replace(".", "")


def test_oldest_supported_is_tested(eco):
    """meta/runtime.yml's requires_ansible floor is the oldest row of the matrix."""
    requires = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["requires_ansible"]
    oldest = min(eco.MATRIX, key=lambda v: tuple(int(p) for p in v.split(".")))
    assert requires.startswith(">=" + oldest), requires


def test_sanity(eco, core_venv, matrix_core):
    """Every sanity test of that ansible-test except pylint: the docs schema, metadata,
    imports and syntax are what differ between ansible-core versions; pylint (the slowest
    test, with an older pylint and its own opinions) runs on the newest version."""
    assert (REPO / "tests" / "sanity" / ("ignore-%s.txt" % matrix_core)).exists()
    if in_container(eco, matrix_core):
        proc = core_venv.sanity()  # also without pylint
    else:
        proc = eco.sanity(core_venv, skip=("pylint",))
    assert "FATAL" not in proc.output, proc.output[-6000:]


def test_units(eco, core_venv, matrix_core):
    proc = core_venv.units() if in_container(eco, matrix_core) else eco.units(core_venv)
    assert " passed" in proc.output and " failed" not in proc.output, proc.output[-6000:]


def test_install_and_syntax_check(eco, core_venv, matrix_core, built, tmp_path):
    if in_container(eco, matrix_core):
        # built and installed with that core's ansible-galaxy, every playbook checked
        assert "syntax-checked" in core_venv.install().output
        return
    collections = tmp_path / "collections"
    eco.install(built, collections, venv=core_venv)
    assert "site.yml" in eco.check_installed(collections, tmp_path, venv=core_venv)


@pytest.mark.lab
def test_site_runs_on_lab(eco, core_venv, matrix_core, built, tmp_path):
    if not eco.lab_available():
        pytest.skip("needs root and podman (scripts/bootstrap) for the lab fleet")
    if in_container(eco, matrix_core):
        # fails unless the second site.yml changes nothing (ecolib.run_site_twice)
        assert "again (no change)" in core_venv.site(lab_prefix(matrix_core), zone="ecom").output
        return
    collections = tmp_path / "collections"
    eco.install(built, collections, venv=core_venv)
    eco.run_site_on_lab(collections, tmp_path, venv=core_venv,
                        prefix=lab_prefix(matrix_core), zone="ecom")
