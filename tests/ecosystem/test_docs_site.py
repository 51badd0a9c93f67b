"""The collection's static HTML docs site builds offline (scripts/docs)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_site_builds(eco, tmp_path):
    index = eco.docs_site(tmp_path / "html")
    pages = index.parent / "collections" / eco.NAMESPACE / eco.NAME
    for kind, name in sorted(eco.collection_content(REPO)):
        page = pages / ("%s_%s.html" % (name, kind))
        assert page.exists(), "no page for %s %s in the docs site" % (kind, name)
        assert "%s.%s" % (eco.FQCN, name) in page.read_text(encoding="utf-8")
    assert (pages / "index.html").exists()
