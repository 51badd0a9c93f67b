"""The support matrix: ansible-core versions other than the .venv's (2.19), each in its own
venv (~/.cache/trustzone-pki-ecosystem) with the collections of PyPI's `ansible` 11
(community.crypto 2.26; see MATRIX in scripts/ecolib.py for why).

Which versions: TRUSTZONE_MATRIX (default "2.16", the oldest that meta/runtime.yml
allows; "2.16 2.17 2.18" for all; "none" to skip). The newest, 2.19, is what every other
test in this directory runs on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.matrix


@pytest.fixture(scope="module")
def core_venv(eco, matrix_core):
    if matrix_core is None:
        pytest.skip("TRUSTZONE_MATRIX=none")
    venv = eco.ensure_matrix_venv(matrix_core)
    assert eco.core_version(venv).startswith(matrix_core + ".")
    return venv


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
    proc = eco.sanity(core_venv, skip=("pylint",))
    assert "FATAL" not in proc.output, proc.output[-6000:]


def test_units(eco, core_venv):
    proc = eco.units(core_venv)
    assert " passed" in proc.output and " failed" not in proc.output, proc.output[-6000:]


def test_install_and_syntax_check(eco, core_venv, built, tmp_path):
    collections = tmp_path / "collections"
    eco.install(built, collections, venv=core_venv)
    assert "site.yml" in eco.check_installed(collections, tmp_path, venv=core_venv)


@pytest.mark.lab
def test_site_runs_on_lab(eco, core_venv, matrix_core, built, tmp_path):
    if not eco.lab_available():
        pytest.skip("needs root and podman (scripts/bootstrap) for the lab fleet")
    collections = tmp_path / "collections"
    eco.install(built, collections, venv=core_venv)
    eco.run_site_on_lab(collections, tmp_path, venv=core_venv,
                        prefix="tzm" + matrix_core.replace(".", ""), zone="ecom")
