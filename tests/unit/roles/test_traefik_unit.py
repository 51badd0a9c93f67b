"""The proxy role's systemd unit for Traefik (roles/proxy/templates/traefik/traefik.service.j2),
rendered with the role's defaults and checked by systemd's own `systemd-analyze verify` where
this machine has it. The unit under a running systemd is tested by the molecule scenario
extensions/molecule/proxy_traefik (systemd as PID 1; its verify.yml checks the sandbox from
inside Traefik's mount namespace)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "proxy"


def render(**overrides):
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = {k: v for k, v in defaults.items() if k.startswith("trustzone_proxy_traefik_")}
    values.update(overrides)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((ROLE / "templates" / "traefik" / "traefik.service.j2").read_text()
                           ).render(**values)


def directives(text):
    """[Service] directives as (key, value) pairs, in order."""
    pairs, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#") and "=" in line and section == "Service":
            key, value = line.split("=", 1)
            pairs.append((key, value))
    return pairs


def test_the_sandbox_is_kept_and_opens_only_the_acme_storage():
    service = directives(render())
    assert ("ProtectSystem", "full") in service  # /etc read-only for Traefik
    assert ("PrivateTmp", "true") in service
    assert ("NoNewPrivileges", "true") in service
    # Traefik's ACME resolver writes acme.json below the read-only /etc
    assert [v for k, v in service if k == "ReadWritePaths"] == ["/etc/traefik/acme"]


def test_the_writable_path_follows_the_config_dir():
    service = directives(render(trustzone_proxy_traefik_config_dir="/srv/traefik"))
    assert ("ReadWritePaths", "/srv/traefik/acme") in service
    assert ("EnvironmentFile", "/srv/traefik/traefik.env") in service
    assert ("ExecStart", "/usr/local/bin/traefik --configFile=/srv/traefik/traefik.yml") in service


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    binary = tmp_path / "traefik"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    unit = tmp_path / "traefik.service"
    unit.write_text(render(trustzone_proxy_traefik_binary=str(binary),
                           trustzone_proxy_traefik_config_dir=str(tmp_path)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"),
                          check=False)
    # only this unit's own complaints count (the host's other units are not ours)
    own = [line for line in (proc.stdout + proc.stderr).splitlines() if "traefik.service" in line]
    assert own == [], "\n".join(own)
