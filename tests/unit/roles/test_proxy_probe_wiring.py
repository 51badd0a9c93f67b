"""Where the proxy role probes its front door (roles/proxy): only after the engine took a
change - nginx's probe is the last handler, listening to the reload's topics; Traefik's is
included only when its routes file changed - so a run that changes nothing runs no probe
task. The argument spec and the defaults agree on every probe variable."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "proxy"


def load(*parts):
    return yaml.safe_load((ROLE.joinpath(*parts)).read_text())


def test_nginx_probes_in_the_last_handler_after_every_reload():
    handlers = load("handlers", "main.yml")
    probe = handlers[-1]
    assert probe["ansible.builtin.include_tasks"] == "probe.yml"
    reloads = [h for h in handlers if h["name"].startswith("Reload nginx")]
    assert reloads and all(sorted(h["listen"]) == sorted(probe["listen"]) for h in reloads)
    assert "trustzone_proxy_probe | bool" in probe["when"]
    assert "not ansible_check_mode" in probe["when"]


def test_traefik_probes_only_when_its_routes_file_changed():
    tasks = load("tasks", "traefik", "routes.yml")
    names = [t["name"] for t in tasks]
    at = names.index("Probe the front door after Traefik took the new routes")
    assert names[at - 1] == "Write the HTTPS routers, services and zone transports"
    probe = tasks[at]
    assert probe["ansible.builtin.include_tasks"] == "probe.yml"
    assert "__trustzone_proxy_traefik_written is changed" in probe["when"]
    # nothing else in the role names the probe module outside probe.yml
    for path in ROLE.joinpath("tasks").rglob("*.yml"):
        if path.name != "probe.yml":
            assert "proxy_probe:" not in path.read_text(), path


def test_probe_variables_have_defaults_and_argument_specs():
    defaults = load("defaults", "main.yml")
    spec = load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    names = [n for n in defaults if n.startswith("trustzone_proxy_probe")]
    assert sorted(names) == sorted(["trustzone_proxy_probe", "trustzone_proxy_probe_address",
                                    "trustzone_proxy_probe_timeout",
                                    "trustzone_proxy_probe_retries",
                                    "trustzone_proxy_probe_delay", "trustzone_proxy_probe_dir"])
    for name in names:
        assert spec[name]["default"] == defaults[name], name
