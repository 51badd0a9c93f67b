"""site.yml, renew.yml and rotate_root.yml run their certificate-changing node play in the
rollout's batches (issue 21, docs/rollout.md): the batches are worked out just before it, the
play takes its hosts and serial from playbooks/vars/rollout.yml and starts with the gate, and
the nodes that failed their probe fail the run only after the lease is given back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
BATCHED = "{{ __trustzone_rollout_hosts }}"


def plays(name):
    return yaml.safe_load((ROOT / "playbooks" / name).read_text())


def first_tasks(play):
    return (play.get("pre_tasks") or []) + (play.get("tasks") or [])


@pytest.mark.parametrize("playbook, batched", [
    ("site.yml", ["Ensure every node trusts the zone and holds its identities"]),
    ("renew.yml", ["Renew node certificates where needed"]),
    ("rotate_root.yml", ["Rotate, phase use: every leaf moves to the next root"]),
])
def test_the_node_play_runs_in_batches_between_the_plan_and_the_verdict(playbook, batched):
    entries = plays(playbook)
    imports = [p.get("ansible.builtin.import_playbook") for p in entries]
    names = [p.get("name") for p in entries]
    assert [p["name"] for p in entries if p.get("hosts") == BATCHED] == batched
    node = names.index(batched[0])
    assert imports[node - 1] == "rollout_batches.yml"
    play = entries[node]
    assert play["serial"] == "{{ __trustzone_rollout_serial }}"
    assert play["vars_files"] == ["vars/rollout.yml"]
    gates = [t.get("ansible.builtin.import_tasks") for t in first_tasks(play)]
    assert "tasks/rollout_gate.yml" in gates
    # the verdict comes last, after the lease is given back
    assert imports[-1] == "rollout_verdict.yml"
    assert imports.index("lease_release.yml") < len(imports) - 1


def test_the_trust_phase_is_never_batched():
    (trust,) = [p for p in plays("rotate_root.yml")
                if p.get("name") == "Rotate, phase trust: every node trusts the next root beside the current one"]
    assert trust["hosts"] == "trustzone_nodes" and "serial" not in trust


def test_every_retire_play_stops_when_the_use_phase_rollout_stopped():
    retire = [p for p in plays("rotate_root.yml")
              if str(p.get("name", "")).startswith("Rotate, phase retire:") and "hosts" in p]
    assert len(retire) == 4
    for play in retire:
        first = first_tasks(play)[0]
        assert first.get("ansible.builtin.import_tasks") == "tasks/retire_gate.yml", play["name"]
    gate = yaml.safe_load((ROOT / "playbooks/tasks/retire_gate.yml").read_text())
    assert "rollout_halted" in gate[0]["when"]


def test_without_a_plan_the_rollout_plays_have_no_hosts_and_the_node_play_all_nodes():
    (batches,) = plays("rollout_batches.yml")
    assert "else []" in batches["hosts"]
    (verdict,) = plays("rollout_verdict.yml")
    assert "rollout_halted" in verdict["hosts"]
    rollout = yaml.safe_load((ROOT / "playbooks/vars/rollout.yml").read_text())
    assert "or 'trustzone_nodes'" in rollout["__trustzone_rollout_hosts"]
    assert "default(0)" in rollout["__trustzone_rollout_serial"]
