"""ansible-doc renders every module, plugin and role of the collection; antsibull-docs
finds nothing wrong in the documentation."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_content_found(eco):
    content = eco.collection_content(REPO)
    assert {"module", "filter", "role"} <= {kind for kind, _name in content}, content
    for item in (("module", "zone_root"), ("module", "node"), ("module", "sign"),
                 ("filter", "profiles"), ("filter", "node_names"),
                 ("role", "ca"), ("role", "trust"), ("role", "certs")):
        assert item in content


def test_renders(eco, staged, doc_item):
    kind, name = doc_item
    eco.check_doc(kind, name, staged)


def test_listing_matches_files(eco, staged, doc_kind):
    """`ansible-doc -l` lists exactly what the collection's files define (a plugin that
    ansible-doc cannot see, or docs without a plugin, both fail)."""
    proc = eco.run([eco.venv_bin("ansible-doc"), "-t", doc_kind, "-l", "--json", eco.FQCN],
                   cwd=staged, env=eco.doc_env(staged))
    listed = {key.split(".")[-1] for key in json.loads(proc.stdout[proc.stdout.index("{"):])}
    assert listed == {name for k, name in eco.collection_content(REPO) if k == doc_kind}


def test_antsibull_docs_lint(eco, staged):
    """Markup, cross references and schema, as docs.ansible.com's tooling sees them."""
    eco.lint_collection_docs(staged)
