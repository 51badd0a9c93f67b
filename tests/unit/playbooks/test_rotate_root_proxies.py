"""rotate_root.yml keeps the proxies' nginx in step with every phase (issue 18).

nginx holds the roots, CRLs and client certificate it loaded, not the files. Each phase of a
root rotation changes one of them on the proxy (a node of the zone), so each phase's node
play is followed by proxy.yml under that phase's tag, before the next phase's CA play: the
proxy trusts the next root before any backend presents a leaf of it, and presents its own
renewed client certificate before the backends stop trusting the old root.
tests/e2e/test_proxy_zones.py proves the same over a fleet, under a steady request load.
"""

from __future__ import annotations

from pathlib import Path

import yaml

PLAYBOOK = Path(__file__).resolve().parents[3] / "playbooks" / "rotate_root.yml"


def entries():
    return yaml.safe_load(PLAYBOOK.read_text())


def test_each_phase_node_play_is_followed_by_proxy_yml_under_its_tag():
    plays = entries()
    for phase in ("trust", "use", "retire"):
        node_plays = [i for i, p in enumerate(plays)
                      if p.get("hosts") in ("trustzone_nodes", "{{ __trustzone_rollout_hosts }}")
                      and str(p.get("name", "")).startswith("Rotate, phase %s:" % phase)]
        assert node_plays, phase
        after = plays[node_plays[-1] + 1]
        assert after.get("ansible.builtin.import_playbook") == "proxy.yml", (phase, after)
        assert after.get("tags") == ["rotate_%s" % phase]


def test_the_proxies_are_in_step_before_the_next_phase_starts():
    names = [str(p.get("name", "")) for p in entries()]
    proxies = [i for i, p in enumerate(entries())
               if p.get("ansible.builtin.import_playbook") == "proxy.yml"]
    assert len(proxies) == 3
    use_ca = names.index("Rotate, phase use: the next root signs")
    retire_ca = names.index("Rotate, phase retire: the CA retires the old root")
    assert proxies[0] < use_ca < proxies[1] < retire_ca < proxies[2]
