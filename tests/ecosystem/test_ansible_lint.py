"""ansible-lint with the production profile on everything Ansible in the repository."""

from __future__ import annotations

from pathlib import Path

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


def test_production_profile(eco):
    proc = eco.lint()
    assert "Profile 'production' was required, and it passed" in proc.output, proc.output
