"""End-to-end tests over a real lab fleet: podman containers reached over SSH on loopback.

Each test module brings up its own fleet (its own prefix, network and ports) and removes it
afterwards, so the tests never touch the quick-start fleet.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
LAB = REPO / "scripts" / "lab"


def fleet_prefix(name):
    """The lab prefix of a test module's fleet: ``name``, or ``$TRUSTZONE_E2E_PREFIX`` + the
    part of ``name`` after ``tz`` (``TRUSTZONE_E2E_PREFIX=tzp`` turns ``tze2e`` into
    ``tzpe2e``), so that two checkouts can run the suites side by side."""
    base = os.environ.get("TRUSTZONE_E2E_PREFIX")
    return base + name[2:] if base else name


def ansible_env():
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    # one line per result, so that messages can be matched as written
    env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"
    env["PATH"] = "%s:%s" % (VENV_BIN, env.get("PATH", ""))
    return env


class Fleet:
    """A running lab fleet and the commands tests run against it."""

    def __init__(self, prefix, inventory, zone):
        self.prefix = prefix
        self.inventory = Path(inventory)
        self.zone = zone
        self.hosts = yaml.safe_load(self.inventory.read_text())

    def container(self, host):
        return "%s-%s" % (self.prefix, host)

    def fqdn(self, host):
        return "%s.%s.trustzone.test" % (host, self.zone)

    def playbook(self, playbook="site.yml", *args, inventory=None, check=True, timeout=900):
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory or self.inventory),
               str(REPO / "playbooks" / playbook), *args]
        proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        proc.output = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError("ansible-playbook %s %s failed (rc=%d):\n%s" % (
                playbook, " ".join(args), proc.returncode, proc.output[-6000:]))
        return proc

    def sh(self, host, script, check=True, input=None, timeout=120):
        proc = subprocess.run(["podman", "exec", "-i", self.container(host), "sh", "-c", script],
                              capture_output=True, text=True, input=input, timeout=timeout, check=False)
        proc.output = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError("on %s: %s failed (rc=%d):\n%s" % (
                host, script, proc.returncode, proc.output[-3000:]))
        return proc

    def read(self, host, path):
        return self.sh(host, "cat %s" % path).stdout

    def exists(self, host, path):
        return self.sh(host, "test -e %s" % path, check=False).returncode == 0


def recap(output):
    """``{host: {'ok': n, 'changed': n, 'failed': n, ...}}`` from ansible's PLAY RECAP."""
    stats = {}
    for line in output.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if not match:
            continue
        stats[match.group(1)] = {k: int(v)
                                 for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return stats


def lab(*args, timeout=900):
    proc = subprocess.run([str(LAB), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise AssertionError("scripts/lab %s failed (rc=%d):\n%s%s" % (
            " ".join(args), proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


@pytest.fixture(scope="module")
def make_fleet(request):
    """Factory: ``make_fleet(prefix, nodes=3, zone='lab')`` -> Fleet, torn down after the module."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run scripts/bootstrap (the README's test command "
                    "does)")
    started = []

    def factory(prefix, nodes=3, zone="lab"):
        inventory = REPO / ".lab" / prefix / "hosts.yml"
        lab("down", "--prefix", prefix)
        lab("up", "--prefix", prefix, "--nodes", str(nodes), "--zone", zone,
            "--inventory", str(inventory))
        started.append(prefix)
        return Fleet(prefix, inventory, zone)

    yield factory
    if os.environ.get("TRUSTZONE_KEEP_FLEET") != "1":
        for prefix in started:
            lab("down", "--prefix", prefix)
