"""End-to-end tests over a real lab fleet: podman containers reached over SSH on loopback.

Each test module brings up its own fleet (its own prefix, network and ports) and removes it
afterwards, so the tests never touch the quick-start fleet.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
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

    def tree(self, host, path):
        """``{'./relative path': bytes}`` of every file under ``path`` on ``host``."""
        proc = self.sh(host, "tar -C %s -cf - . | base64 -w0" % path)
        out = {}
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(proc.stdout))) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    out[member.name] = tar.extractfile(member).read()
        return out

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


def assert_nothing_changed(proc, hosts=("ca", "node1", "node2", "node3")):
    """The run went over exactly ``hosts`` (the default: a fleet of three nodes) and changed
    nothing on any of them."""
    stats = recap(proc.output)
    assert set(stats) == set(hosts), proc.output[-3000:]
    assert {h: s["changed"] for h, s in stats.items()} == dict.fromkeys(stats, 0), \
        proc.output[-6000:]


def run_and_kill(fleet, playbook, args, kill_here, deadline):
    """Run ``playbook`` on ``fleet`` and SIGKILL its whole process group at the first output
    line for which ``kill_here(line)`` is true (it may sleep first), or once ``deadline``
    seconds have passed. Returns ``(the output so far, whether it was killed)``."""
    env = ansible_env()
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory),
           str(REPO / "playbooks" / playbook), *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    lines, killed = [], False
    started = time.monotonic()
    try:
        for line in proc.stdout:
            lines.append(line)
            if kill_here(line):
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
            if time.monotonic() - started > deadline:
                break
    finally:
        if not killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
    return "".join(lines), killed


def start_s_server(fleet, host, zone_dir, port=8443, chain=False):
    """(Re)start ``openssl s_server`` on ``host`` with the zone's server certificate, asking
    for a client certificate that chains to the zone's roots: it reads roots.pem only when
    it starts. With ``chain`` it also sends the intermediate (server-fullchain.pem) and
    accepts a client chain one CA deeper."""
    extra = "-cert_chain {d}/server-fullchain.pem -Verify 2" if chain else "-Verify 1"
    fleet.sh(host, (
        "pkill -x openssl; while pgrep -x openssl >/dev/null; do sleep 0.05; done; "
        "rm -f /tmp/s_server.log; "
        "nohup openssl s_server -accept {port} -cert {d}/server.crt -key {d}/server.key "
        "-CAfile {d}/roots.pem " + extra + " -verify_return_error -www "
        "> /tmp/s_server.log 2>&1 & "
        "for i in $(seq 50); do grep -q ACCEPT /tmp/s_server.log && exit 0; sleep 0.1; done;"
        " cat /tmp/s_server.log; exit 1").format(port=port, d=zone_dir))


def mtls_status(fleet, server, client, zone_dir, port=8443):
    """The HTTP status ``client`` gets from an ``openssl s_server`` (re)started on ``server``
    with its zone identity and full chain, presenting its own client identity and full chain:
    ``'200'`` when both sides accepted the other."""
    start_s_server(fleet, server, zone_dir, port, chain=True)
    return fleet.sh(client, (
        "curl -sS -o /dev/null -w '%{{http_code}}' --cacert {d}/roots.pem "
        "--cert {d}/client-fullchain.pem --key {d}/client.key https://{n}:{p}/"
    ).format(d=zone_dir, n=fleet.fqdn(server), p=port), check=False).stdout


def nginx_conf(zone_dir, port=8444, verify_depth=None):
    """An nginx server on ``port`` with the zone's server certificate that lets in only
    clients whose certificate chains to the zone's roots and is not on its CRL."""
    depth = "    ssl_verify_depth %d;\n" % verify_depth if verify_depth else ""
    return ("\nserver {\n"
            "    listen %(p)d ssl;\n"
            "    ssl_certificate %(d)s/server-fullchain.pem;\n"
            "    ssl_certificate_key %(d)s/server.key;\n"
            "    ssl_client_certificate %(d)s/roots.pem;\n"
            "    ssl_verify_client on;\n"
            "%(depth)s"
            "    ssl_crl %(d)s/crl.pem;\n"
            "    location / { return 200 \"hello $ssl_client_s_dn\\n\"; }\n"
            "}\n") % {"d": zone_dir, "p": port, "depth": depth}


def curl_status(fleet, client, zone_dir, cert, key, port=8444, expect=None, within=20):
    """The HTTP status nginx on node1 answers ``client`` presenting ``cert`` and ``key``.

    With ``expect``, asked again until the answer is ``expect`` or ``within`` seconds have
    passed (the last answer is returned): ``nginx -s reload`` only signals the master, and
    until its new workers run, the old ones answer with the old configuration and CRL."""
    deadline = time.monotonic() + within
    while True:
        answer = fleet.sh(client, (
            "curl -s -o /dev/null -w '%%{http_code}' --cacert %s/roots.pem --cert %s --key %s "
            "https://%s:%d/") % (zone_dir, cert, key, fleet.fqdn("node1"), port),
            check=False).stdout.strip()
        if expect is None or answer == expect or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


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


def _lablib():
    """scripts/lablib.py and the lab_*.py beside it (they import each other by name)."""
    sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        # pylint: disable=import-outside-toplevel,import-error
        import lab_plan
        import lab_ssh
        import lablib
    finally:
        sys.path.pop(0)
    return lab_plan, lab_ssh, lablib


def recreate_ca_container(fleet):
    """Replace the CA container by a new, empty one with the same name, address, SSH port
    and key (what an operator gets from a rebuilt VM), the way scripts/lab creates hosts."""
    plan_lib, ssh_lib, lab = _lablib()
    prefix = fleet.prefix
    state = lab.load_state(prefix)
    plan = plan_lib.fleet_plan(prefix, state["zone"], state["nodes"], state["subnet"],
                               state["port_base"])
    ca = plan[0]
    key = lab.state_dir(prefix) / "id_ed25519"
    subprocess.run(["podman", "rm", "-f", "-t", "0", ca.container], check=True,
                   capture_output=True)
    subprocess.run([
        "podman", "run", "-d", "--name", ca.container, "--hostname", ca.fqdn,
        "--network", "%s-net" % prefix, "--ip", ca.ip, *plan_lib.add_host_args(plan),
        "--publish", "127.0.0.1:%d:22" % ca.port,
        "--mount", "type=bind,src=%s,dst=/root/.ssh/authorized_keys,ro=true"
                   % key.with_suffix(".pub"),
        "--label", "%s=%s" % (plan_lib.LABEL_PREFIX, prefix),
        "--label", "%s=%s" % (plan_lib.LABEL_HOST, ca.name),
        "--label", "%s=%s" % (plan_lib.LABEL_IP, ca.ip),
        "--label", "%s=%s" % (plan_lib.LABEL_PORT, ca.port),
        "--label", "trustzone.lab.zone=%s" % state["zone"],
        "--stop-timeout", "2", state["image"], "sh", "-c", plan_lib.SSHD_CMD,
    ], check=True, capture_output=True)
    ssh_lib.clear_control_sockets(prefix)
    ssh_lib.wait_for_ssh([ca], key)
