"""scripts/build_image_systemd.py, the lab image's systemd flavour (no podman needed): its
recipe follows the base image's, its tags never look like a base image's (scripts/build-image
removes older tags of its suite by their shape), and the base image's recipe is not touched."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
sys.path.insert(0, str(REPO / "scripts"))
# pylint: disable=wrong-import-position,import-error
import build_image_systemd  # noqa: E402


def test_the_recipe_follows_the_base_image():
    one = build_image_systemd.recipe_hash("localhost/trustzone-node:bookworm-aaaaaaaaaaaa")
    two = build_image_systemd.recipe_hash("localhost/trustzone-node:bookworm-bbbbbbbbbbbb")
    assert one != two and len(one) == 12
    assert one == build_image_systemd.recipe_hash("localhost/trustzone-node:bookworm-aaaaaaaaaaaa")


def test_flavour_tags_are_never_taken_for_old_base_tags():
    """scripts/build-image drops <repo>:<suite>-<12 hex> tags of older recipes: the flavour's
    tags must not have that shape, or building the base would delete the flavour."""
    base = build_image_systemd.load_base()
    for suite in base.NGINX:
        for tag in ("%s-%s-%s" % (suite, build_image_systemd.FLAVOUR, "0" * 12),
                    "%s-%s" % (suite, build_image_systemd.FLAVOUR)):
            assert not (tag.startswith(suite + "-") and len(tag) == len(suite) + 13), tag


def test_the_base_recipe_does_not_include_the_flavour():
    base = build_image_systemd.load_base()
    for suite in base.NGINX:
        assert not set(build_image_systemd.PACKAGES) & set(base.packages(suite))
