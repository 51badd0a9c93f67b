"""site.yml and renew.yml keep built proxies in step with the zone files they change (issue 18).

nginx and Traefik hold the client certificate, roots and CRLs they loaded, not the files: a
renewal by site.yml or renew.yml reaches a proxy only when something reloads it. Both
playbooks import proxy_in_step.yml after their node plays; it runs the proxy role's refresh
entry point only on proxies whose zone files changed in the run, and refresh builds nothing
proxy.yml did not build. tests/e2e/test_proxy_zones.py proves it over a fleet (renew.yml alone,
nginx and Traefik, users asking all along).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]


def plays(name):
    return yaml.safe_load((ROOT / "playbooks" / name).read_text())


@pytest.mark.parametrize("playbook", ["site.yml", "renew.yml"])
def test_the_node_plays_are_followed_by_proxy_in_step_before_the_lease_is_released(playbook):
    entries = plays(playbook)
    imports = [p.get("ansible.builtin.import_playbook") for p in entries]
    # the node play runs in the rollout's batches (hosts from playbooks/vars/rollout.yml)
    nodes = max(i for i, p in enumerate(entries)
                if p.get("hosts") in ("trustzone_nodes", "{{ __trustzone_rollout_hosts }}"))
    step = imports.index("proxy_in_step.yml")
    assert nodes < step < imports.index("lease_release.yml")


def test_only_proxies_whose_zone_files_changed_are_refreshed():
    (play,) = plays("proxy_in_step.yml")
    assert play["hosts"] == "trustzone_proxies" and play["gather_facts"] is False
    (task,) = play["tasks"]
    assert task["ansible.builtin.include_role"] == {
        "name": "trustzone.pki.proxy", "tasks_from": "refresh"}
    assert "__trustzone_certs_node" in task["when"] and "is changed" in task["when"]
    assert "__trustzone_certs_installed" in task["when"]


def test_refresh_builds_nothing_proxy_yml_did_not_build():
    tasks = yaml.safe_load((ROOT / "roles/proxy/tasks/refresh.yml").read_text())
    stat, include = tasks
    assert "trustzone-proxy.conf" in stat["ansible.builtin.stat"]["path"]
    assert "trustzone-routes.yml" in stat["ansible.builtin.stat"]["path"]
    assert include["ansible.builtin.include_tasks"] == "main.yml"
    assert include["when"] == "__trustzone_proxy_built.stat.exists"


def test_refresh_takes_the_same_options_as_main():
    specs = yaml.safe_load((ROOT / "roles/proxy/meta/argument_specs.yml").read_text())
    assert specs["argument_specs"]["refresh"]["options"] == \
        specs["argument_specs"]["main"]["options"]
