"""ansible-lint with the production profile on everything Ansible in the repository."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_config_demands_production():
    config = yaml.safe_load((REPO / ".ansible-lint").read_text())
    assert config["profile"] == "production"
    assert config.get("offline") is True  # Galaxy is unreachable here
    # nothing is skipped wholesale: one sub-rule, replaced by the collection's own pattern
    assert config.get("skip_list", []) == ["var-naming[no-role-prefix]"]
    assert config["var_naming_pattern"].startswith("^_{0,2}trustzone_")
    assert not (REPO / ".ansible-lint-ignore").exists() or not [
        line for line in (REPO / ".ansible-lint-ignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")]
    for scope in ("roles", "playbooks", "inventories/example"):
        assert not any(scope.startswith(p.rstrip("/")) for p in config["exclude_paths"])


@pytest.fixture
def quickstart_inventory():
    """The inventory `scripts/quickstart` leaves in the tree (git ignores it, ansible-lint
    does not): the lint runs as it would after the README's first command. An inventory the
    quick start already wrote is linted as it is; otherwise one is rendered the same way
    (scripts/lab_inventory.py, the longest prefix) and removed afterwards."""
    path = REPO / "inventories" / "lab" / "hosts.yml"
    if path.exists():
        yield path
        return
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import lab_inventory  # pylint: disable=import-outside-toplevel
        import lab_plan  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    prefix = "tzlab" + "q" * 15
    plan = lab_plan.fleet_plan(prefix, "lab", 3, "10.89.9.0/24", 26000)
    lab_dir = REPO / ".lab" / prefix
    path.write_text(lab_inventory.render_inventory(prefix, "lab", plan, lab_dir / "id_ed25519",
                                                   lab_dir / "ca-passphrase"))
    try:
        yield path
    finally:
        path.unlink()


def test_production_profile(eco, quickstart_inventory):
    proc = eco.lint()
    assert "Profile 'production' was required, and it passed" in proc.output, proc.output
    # the quick start's generated inventory was part of what passed
    assert quickstart_inventory.exists()
