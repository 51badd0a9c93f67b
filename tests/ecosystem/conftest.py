"""The Ansible ecosystem's own tools against trustzone.pki (issue 10).

Each test runs one tool the way a collection user or Ansible's own CI would - ansible-test,
ansible-lint, ansible-doc, antsibull-docs, antsibull-changelog, ansible-galaxy,
ansible-builder - through scripts/ecolib.py. Run them with ``scripts/ecosystem`` (which
installs requirements-ecosystem.txt into .venv first).

The support matrix (ansible-core versions other than the .venv's) runs the versions listed in
TRUSTZONE_MATRIX (default: the oldest supported, 2.16; ``TRUSTZONE_MATRIX=none`` skips it).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_ecolib():
    sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
    spec = importlib.util.spec_from_file_location("ecolib", REPO / "scripts" / "ecolib.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ecolib"] = module
    spec.loader.exec_module(module)
    return module


ecolib = _load_ecolib()


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: starts a podman lab fleet (scripts/lab)")
    config.addinivalue_line("markers", "matrix: another ansible-core version in its own venv")


def matrix_versions():
    raw = os.environ.get("TRUSTZONE_MATRIX", "2.16").replace(",", " ").split()
    if raw in (["none"], ["0"], []):
        return []
    unknown = [v for v in raw if v not in ecolib.MATRIX]
    if unknown:
        raise pytest.UsageError("TRUSTZONE_MATRIX: unknown ansible-core %s (known: %s)"
                                % (unknown, sorted(ecolib.MATRIX)))
    return raw


def pytest_generate_tests(metafunc):
    """doc_item: every (type, name) the collection ships; doc_kind: every type of them;
    matrix_core: the ansible-core versions of TRUSTZONE_MATRIX."""
    content = sorted(ecolib.collection_content(REPO))
    if "doc_item" in metafunc.fixturenames:
        metafunc.parametrize("doc_item", content, ids=["%s:%s" % item for item in content])
    if "doc_kind" in metafunc.fixturenames:
        metafunc.parametrize("doc_kind", sorted({kind for kind, _name in content}))
    if "matrix_core" in metafunc.fixturenames:
        versions = matrix_versions()
        metafunc.parametrize("matrix_core", versions or [None],
                             ids=versions or ["skipped"], scope="module")


@pytest.fixture(scope="session")
def eco():
    return ecolib


@pytest.fixture(scope="session")
def staged(tmp_path_factory):
    """A copy of the checkout at <top>/ansible_collections/trustzone/pki; yields <top>."""
    top = tmp_path_factory.mktemp("staged")
    ecolib.stage(top)
    return top


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The tarball `ansible-galaxy collection build` makes (from a staged copy)."""
    return ecolib.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed(built, tmp_path_factory):
    """The built collection installed into a clean collections directory; yields that
    directory (it holds ansible_collections/trustzone/pki and nothing else)."""
    collections = tmp_path_factory.mktemp("collections")
    ecolib.install(built, collections)
    return collections
