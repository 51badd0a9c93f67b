"""Lab fleet for trustzone.pki: podman containers reachable over SSH on loopback.

Python 3 standard library only. `scripts/lab` is the command-line entry point;
everything here is importable so the pure helpers (names, subnet and port
selection, inventory rendering) can be unit tested without podman.

A fleet with prefix P consists of
  * podman network  P-net           (its own /24 from 10.89.0.0/16)
  * containers      P-ca, P-node1..N (hostname <short>.<zone>.trustzone.test)
  * state dir       <repo>/.lab/P/  (ssh key, CA passphrase, fleet.json, ...)
and an Ansible inventory (YAML) describing it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
BUILD_IMAGE = REPO / "scripts" / "build-image"
STATE_ROOT = REPO / ".lab"
DEFAULT_PREFIX = "tzlab"
DEFAULT_ZONE = "lab"
DEFAULT_NODES = 3
DEFAULT_SUITE = "bookworm"
DEFAULT_INVENTORY = Path("inventories/lab/hosts.yml")  # relative to the repo
DOMAIN = "trustzone.test"
SUITES = ("bookworm", "trixie")

SUBNET_POOL = ipaddress.ip_network("10.89.0.0/16")
SUBNET_PREFIXLEN = 24
HOST_OFFSET = 10  # ca = .10, nodeN = .10+N; .1 is podman's gateway
MAX_NODES = 99  # more than PORT_BLOCK - 1 nodes take consecutive blocks (ca = .10 .. node99 = .109)
PORT_BLOCK = 50  # port blocks start at multiples of this: ca = base, nodeN = base+N
PORT_MIN = 20000
PORT_MAX = 32000  # stay below Linux's ephemeral range (32768-60999)

LABEL_PREFIX = "trustzone.lab.prefix"
LABEL_HOST = "trustzone.lab.host"
LABEL_IP = "trustzone.lab.ip"
LABEL_PORT = "trustzone.lab.port"
INVENTORY_MARKER = "# trustzone-lab-inventory prefix="

SSHD_CMD = "ssh-keygen -A >/dev/null && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e"
LOCK_FILE = Path("/var/tmp/trustzone-lab.lock")
SSH_WAIT_SECONDS = 60.0

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class LabError(Exception):
    """A failure with a message meant for the user."""


# --------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------

def validate_prefix(prefix: str) -> str:
    if not NAME_RE.match(prefix) or prefix.endswith("-"):
        raise LabError(
            f"invalid prefix {prefix!r}: lowercase letter first, then [a-z0-9-], at most 20 characters"
        )
    return prefix


def validate_zone(zone: str) -> str:
    if not LABEL_RE.match(zone):
        raise LabError(f"invalid zone {zone!r}: one DNS label, lowercase [a-z0-9-]")
    return zone


def stable_hash(text: str) -> int:
    """Deterministic across runs and machines (unlike hash())."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _as_network(item) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return item if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)) \
        else ipaddress.ip_network(str(item), strict=False)


def choose_subnet(prefix: str, used: Iterable, pool: str | ipaddress.IPv4Network = SUBNET_POOL,
                  prefixlen: int = SUBNET_PREFIXLEN) -> ipaddress.IPv4Network:
    """First free /prefixlen of pool, probing from a slot derived from prefix.

    Slot 0 (10.89.0.0/24) is skipped: it is podman's first automatic choice.
    Any overlap with a used network (other podman networks, host routes) rules
    a candidate out.
    """
    pool = _as_network(pool)
    used_nets = [_as_network(u) for u in used]
    candidates = list(pool.subnets(new_prefix=prefixlen))[1:]
    start = stable_hash(prefix) % len(candidates)
    for i in range(len(candidates)):
        cand = candidates[(start + i) % len(candidates)]
        if not any(cand.version == u.version and cand.overlaps(u) for u in used_nets):
            return cand
    raise LabError(f"no free /{prefixlen} left in {pool}")


def default_port_base(prefix: str) -> int:
    blocks = (PORT_MAX - PORT_MIN) // PORT_BLOCK
    return PORT_MIN + (stable_hash(prefix) % blocks) * PORT_BLOCK


def fleet_ports(port_base: int, nodes: int) -> list[int]:
    return [port_base + i for i in range(nodes + 1)]


def choose_port_base(prefix: str, nodes: int, explicit: int | None,
                     is_free: Callable[[int], bool], reserved: Iterable[int] = ()) -> int:
    """Pick the SSH port block for a fleet.

    explicit: the user's --port-base; every port in its block must be free,
    otherwise LabError names the busy ports. Without it, start at the block
    derived from the prefix and move on block by block until one is free
    (ports of other lab fleets, even stopped ones, count as taken).
    """
    reserved = set(reserved)
    if explicit is not None:
        ports = fleet_ports(explicit, nodes)
        if ports[0] < 1 or ports[-1] > 65535:
            raise LabError(f"--port-base {explicit}: ports {ports[0]}-{ports[-1]} out of range")
        busy = [p for p in ports if p in reserved or not is_free(p)]
        if busy:
            raise LabError(
                f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use; "
                f"choose another --port-base (needs {len(ports)} consecutive ports)"
            )
        return explicit
    blocks = (PORT_MAX - PORT_MIN) // PORT_BLOCK
    first = (default_port_base(prefix) - PORT_MIN) // PORT_BLOCK
    for i in range(blocks):
        base = PORT_MIN + ((first + i) % blocks) * PORT_BLOCK
        ports = fleet_ports(base, nodes)  # a large fleet spans several consecutive blocks
        if ports[-1] < PORT_MAX and all(p not in reserved and is_free(p) for p in ports):
            return base
    raise LabError(f"no free block of {nodes + 1} ports between {PORT_MIN} and {PORT_MAX}")


@dataclasses.dataclass(frozen=True)
class Host:
    name: str        # inventory name and short host name: ca, node1, ...
    fqdn: str        # node1.lab.trustzone.test
    container: str   # tzlab-node1
    ip: str          # container IP on the fleet network
    port: int        # SSH port on 127.0.0.1


def fleet_plan(prefix: str, zone: str, nodes: int, subnet, port_base: int) -> list[Host]:
    subnet = _as_network(subnet)
    if not 0 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes must be between 0 and {MAX_NODES}")
    names = ["ca"] + [f"node{i}" for i in range(1, nodes + 1)]
    hosts = []
    for i, name in enumerate(names):
        hosts.append(Host(
            name=name,
            fqdn=f"{name}.{zone}.{DOMAIN}",
            container=f"{prefix}-{name}",
            ip=str(subnet.network_address + HOST_OFFSET + i),
            port=port_base + i,
        ))
    return hosts


def add_host_args(plan: Sequence[Host]) -> list[str]:
    """--add-host for every lab host's FQDN and short name (podman takes one name per flag)."""
    args = []
    for h in plan:
        args += ["--add-host", f"{h.fqdn}:{h.ip}", "--add-host", f"{h.name}:{h.ip}"]
    return args


def control_path(prefix: str) -> str:
    # %C is a 40-char hash: /tmp/tz-<prefix<=20>-<hash> stays far below the
    # 108-byte unix socket limit (ssh appends a 17-char suffix while creating it).
    return f"/tmp/tz-{prefix}-%C"


def ssh_common_args(prefix: str) -> str:
    return " ".join([
        "-o StrictHostKeyChecking=no",
        "-o UserKnownHostsFile=/dev/null",
        "-o LogLevel=ERROR",
        "-o IdentitiesOnly=yes",
        "-o ControlMaster=auto",
        "-o ControlPersist=60s",
        f"-o ControlPath={control_path(prefix)}",
    ])


_PLAIN_RE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@+=:-]*$")  # no leading digit/sign/dot
_YAML_SPECIAL = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def yaml_scalar(value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN_RE.match(text) and text.lower() not in _YAML_SPECIAL and not text.endswith(":"):
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


FOLD_AT = 80  # strings longer than this, made of words, are written folded (see to_yaml)


def _needs_folding(value) -> bool:
    """A long string of words that a folded block scalar (``>-``) carries exactly: single
    spaces only, no leading or trailing blanks, no line breaks or tabs."""
    return (isinstance(value, str) and len(value) > FOLD_AT and " " in value
            and "  " not in value and value == value.strip()
            and not any(c in value for c in "\n\r\t")
            and max(len(word) for word in value.split(" ")) <= FOLD_AT)


def _quoted_lines(text: str, pad: str) -> str:
    """``text`` as a YAML double-quoted scalar over several lines: each line but the last
    ends in an escaped line break (``\\``), and lines never start with a blank (YAML drops
    leading blanks after an escaped break) or split an escape sequence."""
    body = json.dumps(text)[1:-1]
    units = re.findall(r'\\u[0-9a-fA-F]{4}|\\.|.', body)
    out, line = [], ""
    for unit in units:
        if len(line) >= FOLD_AT and unit != " " and not line.endswith(" "):
            out.append(line)
            line = ""
        line += unit
    out.append(line)
    return '"' + ("\\\n" + pad).join(out) + '"'


def _fold_words(text: str) -> list[str]:
    """Word groups of ``text`` (single spaces) no longer than FOLD_AT where possible: a folded
    scalar joins its lines with one space, so the groups read back as ``text`` exactly."""
    out, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > FOLD_AT:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    out.append(line)
    return out


def to_yaml(data, indent: int = 0) -> str:
    """Tiny block-style YAML emitter for dicts/lists/scalars (inventory only)."""
    pad = "  " * indent
    lines = []
    if isinstance(data, dict):
        for key, value in data.items():
            k = yaml_scalar(key)
            if isinstance(value, dict) and value:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(value, indent + 1))
            elif isinstance(value, dict):
                lines.append(f"{pad}{k}: {{}}")
            elif isinstance(value, list):
                if all(not isinstance(v, (dict, list)) for v in value):
                    lines.append(f"{pad}{k}: [{', '.join(yaml_scalar(v) for v in value)}]")
                else:
                    lines.append(f"{pad}{k}:")
                    lines.append(to_yaml(value, indent + 1))
            elif isinstance(value, str) and len(pad) + len(k) + len(value) > FOLD_AT + 20 \
                    and not _needs_folding(value):
                # long with no spaces to fold at (a deep path): a double-quoted scalar whose
                # line breaks are escaped, which YAML reads back without them
                lines.append(f"{pad}{k}: " + _quoted_lines(value, f"{pad}  "))
            elif _needs_folding(value):
                # a long string of words as a folded block scalar, one word group a line, so
                # that no line of the generated inventory passes yamllint's (and
                # ansible-lint's production profile's) 160-character limit
                lines.append(f"{pad}{k}: >-")
                lines.extend(f"{pad}  {part}" for part in _fold_words(value))
            else:
                lines.append(f"{pad}{k}: {yaml_scalar(value)}")
    elif isinstance(data, list):
        for value in data:
            if isinstance(value, (dict, list)):
                body = to_yaml(value, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {yaml_scalar(value)}")
    else:
        lines.append(pad + yaml_scalar(data))
    return "\n".join(lines)


def inventory_data(prefix: str, zone: str, plan: Sequence[Host], key_file: Path,
                   passphrase_file: Path) -> dict:
    def host_vars(h: Host) -> dict:
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": h.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key_file),
            "trustzone_node_fqdn": h.fqdn,
            "trustzone_node_addresses": [h.ip],
            "lab_container": h.container,
        }

    if "'" in str(passphrase_file):
        raise LabError(f"path {passphrase_file} contains a single quote")
    ca = [h for h in plan if h.name == "ca"]
    nodes = [h for h in plan if h.name != "ca"]
    return {
        "all": {
            "vars": {
                "ansible_ssh_common_args": ssh_common_args(prefix),
                "ansible_pipelining": True,
                "ansible_python_interpreter": "/usr/bin/python3",
                "trustzone_name": zone,
                "trustzone_ca_passphrase":
                    "{{ lookup('ansible.builtin.file', '%s') }}" % passphrase_file,
                "lab_prefix": prefix,
            },
            "children": {
                "trustzone_ca": {"hosts": {h.name: host_vars(h) for h in ca}},
                "trustzone_nodes": {"hosts": {h.name: host_vars(h) for h in nodes}},
            },
        }
    }


def render_inventory(prefix: str, zone: str, plan: Sequence[Host], key_file: Path,
                     passphrase_file: Path) -> str:
    header = (
        f"{INVENTORY_MARKER}{prefix}\n"
        f"# Generated by `scripts/lab up --prefix {prefix}`; rewritten on every run, do not edit.\n"
        "---\n"
    )
    return header + to_yaml(inventory_data(prefix, zone, plan, key_file, passphrase_file)) + "\n"


def inventory_prefix(text: str) -> str | None:
    """The prefix recorded in a generated inventory's first line, or None."""
    first = text.split("\n", 1)[0]
    return first[len(INVENTORY_MARKER):].strip() if first.startswith(INVENTORY_MARKER) else None


def default_inventory_path(prefix: str) -> Path:
    """inventories/lab/hosts.yml for the default fleet; other fleets keep theirs
    under .lab/<prefix>/ so they never overwrite each other's inventory."""
    if prefix == DEFAULT_PREFIX:
        return REPO / DEFAULT_INVENTORY
    return STATE_ROOT / prefix / "hosts.yml"


def route_subnets(ip_json: str) -> list[str]:
    """Destinations from `ip -j -4 route` output (default route ignored)."""
    out = []
    for r in json.loads(ip_json or "[]"):
        dst = r.get("dst", "")
        if dst and dst != "default":
            out.append(dst if "/" in dst else f"{dst}/32")
    return out


def network_subnets(inspect_json: str) -> dict[str, list[str]]:
    """{network name: [subnet, ...]} from `podman network inspect` JSON."""
    result = {}
    for net in json.loads(inspect_json or "[]"):
        subs = [s.get("subnet") for s in (net.get("subnets") or []) if s.get("subnet")]
        result[net.get("name", "")] = subs
    return result


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def ssh_banner(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """True when something on host:port speaks SSH (reads the server banner)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


# --------------------------------------------------------------------------
# Side effects: podman, files, ssh
# --------------------------------------------------------------------------

def say(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def run(cmd: Sequence[str], check: bool = True, capture: bool = True,
        timeout: float | None = 300) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(cmd), text=True, stdin=subprocess.DEVNULL,
                              capture_output=capture, timeout=timeout, check=False)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} not found: run scripts/bootstrap") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout} s: {' '.join(cmd)}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip() if capture else ""
        raise LabError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{detail}".rstrip())
    return proc


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["podman", *args], check=check)


@contextlib.contextmanager
def global_lock():
    """Serialise fleet creation/removal on this machine (subnet/port choice)."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def state_dir(prefix: str) -> Path:
    return STATE_ROOT / prefix


def ensure_state(prefix: str) -> tuple[Path, Path, Path]:
    """State dir with the fleet's ssh key and CA passphrase (both created once)."""
    sdir = state_dir(prefix)
    sdir.mkdir(parents=True, exist_ok=True)
    os.chmod(sdir, 0o700)
    key = sdir / "id_ed25519"
    if not key.exists() or not key.with_suffix(".pub").exists():
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"trustzone-lab-{prefix}",
             "-f", str(key)])
    os.chmod(key, 0o600)
    os.chmod(key.with_suffix(".pub"), 0o644)
    passfile = sdir / "ca-passphrase"
    if not passfile.exists() or not passfile.read_text().strip():
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    os.chmod(passfile, 0o600)
    return sdir, key, passfile


def load_state(prefix: str) -> dict | None:
    try:
        return json.loads((state_dir(prefix) / "fleet.json").read_text())
    except (OSError, ValueError):
        return None


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def build_image(suite: str) -> str:
    proc = subprocess.run([str(BUILD_IMAGE), suite], text=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, check=False)  # stderr (progress) goes to the user
    lines = [ln for ln in (proc.stdout or "").splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise LabError(f"scripts/build-image {suite} failed (exit {proc.returncode})")
    return lines[-1].strip()


def image_id(ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def lab_containers() -> list[dict]:
    """All containers of all lab fleets (podman ps JSON entries)."""
    out = podman("ps", "-a", "--filter", f"label={LABEL_PREFIX}", "--format", "json").stdout
    return json.loads(out or "[]")


def container_name(c: dict) -> str:
    names = c.get("Names") or []
    return names[0] if isinstance(names, list) and names else str(names)


def used_subnets(exclude_network: str | None = None) -> list[str]:
    names = [n for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split() if n]
    names = [n for n in names if n != exclude_network]
    used = []
    if names:
        for subs in network_subnets(podman("network", "inspect", *names).stdout).values():
            used += subs
    ip = shutil.which("ip")
    if ip:
        proc = run([ip, "-j", "-4", "route", "show", "table", "all"], check=False)
        if proc.returncode == 0:
            used += [d for d in route_subnets(proc.stdout)
                     if ipaddress.ip_network(d, strict=False).prefixlen > 0
                     and not ipaddress.ip_network(d, strict=False).is_loopback]
    return used


def ssh_login(key: Path, port: int, timeout: int = 5) -> tuple[bool, str]:
    proc = run(["ssh", "-i", str(key), "-p", str(port),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "IdentitiesOnly=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-o", f"ConnectTimeout={timeout}", "root@127.0.0.1", "true"],
               check=False, timeout=timeout + 10)
    return proc.returncode == 0, (proc.stderr or "").strip()


def health(plan: Sequence[Host], key: Path, containers: list[dict]) -> dict[str, str]:
    """{host name: 'ok' or a reason}. Checks container state, labels and SSH login."""
    by_name = {container_name(c): c for c in containers}
    result = {}
    for h in plan:
        c = by_name.get(h.container)
        labels = (c or {}).get("Labels") or {}
        if c is None:
            result[h.name] = "missing"
        elif c.get("State") != "running":
            result[h.name] = f"container {c.get('State')}"
        elif labels.get(LABEL_IP) != h.ip or labels.get(LABEL_PORT) != str(h.port):
            result[h.name] = "configuration differs"
    todo = [h for h in plan if h.name not in result]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(todo)))) as pool:
        for h, (ok, err) in zip(todo, pool.map(lambda h: ssh_login(key, h.port), todo)):
            result[h.name] = "ok" if ok else f"ssh failed: {err or 'no answer'}"
    return {h.name: result[h.name] for h in plan}


def wait_for_ssh(plan: Sequence[Host], key: Path, deadline_s: float = SSH_WAIT_SECONDS) -> None:
    deadline = time.monotonic() + deadline_s
    pending = list(plan)
    while pending and time.monotonic() < deadline:
        pending = [h for h in pending if not ssh_banner(h.port, timeout=1.0)]
        if pending:
            time.sleep(0.2)
    if pending:
        logs = []
        for h in pending:
            proc = podman("logs", "--tail", "20", h.container, check=False)
            logs.append(f"--- {h.container} ---\n{(proc.stdout or '') + (proc.stderr or '')}".rstrip())
        raise LabError(
            f"sshd did not answer within {deadline_s:.0f} s on: "
            + ", ".join(f"{h.container} (127.0.0.1:{h.port})" for h in pending)
            + "\n" + "\n".join(logs)
        )
    failures = {}
    while True:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(plan)))) as pool:
            results = list(pool.map(lambda h: ssh_login(key, h.port), plan))
        failures = {h.container: err for h, (ok, err) in zip(plan, results) if not ok}
        if not failures or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if failures:
        raise LabError("ssh login failed: " + "; ".join(f"{n}: {e}" for n, e in failures.items()))


def remove_fleet_containers(prefix: str, containers: list[dict], plan: Sequence[Host] = ()) -> None:
    names = {container_name(c) for c in containers
             if (c.get("Labels") or {}).get(LABEL_PREFIX) == prefix}
    names |= {h.container for h in plan}
    if names:
        podman("rm", "-f", "-i", "-t", "0", *sorted(names))


def remove_network(prefix: str) -> None:
    net = f"{prefix}-net"
    if podman("network", "exists", net, check=False).returncode == 0:
        podman("network", "rm", "-f", net)


def clear_control_sockets(prefix: str) -> None:
    for sock in Path("/tmp").glob(f"tz-{prefix}-*"):
        with contextlib.suppress(OSError):
            sock.unlink()


def create_fleet(prefix: str, plan: Sequence[Host], subnet, image: str, key: Path,
                 zone: str) -> None:
    net = f"{prefix}-net"
    subnet = _as_network(subnet)
    podman("network", "create", "--subnet", str(subnet),
           "--gateway", str(subnet.network_address + 1),
           "--label", f"{LABEL_PREFIX}={prefix}", net)
    hosts_args = add_host_args(plan)
    for h in plan:
        podman(
            "run", "-d", "--name", h.container,
            "--hostname", h.fqdn,
            "--network", net, "--ip", h.ip,
            *hosts_args,
            "--publish", f"127.0.0.1:{h.port}:22",
            "--mount", f"type=bind,src={key.with_suffix('.pub')},dst=/root/.ssh/authorized_keys,ro=true",
            "--label", f"{LABEL_PREFIX}={prefix}",
            "--label", f"{LABEL_HOST}={h.name}",
            "--label", f"{LABEL_IP}={h.ip}",
            "--label", f"{LABEL_PORT}={h.port}",
            "--label", f"trustzone.lab.zone={zone}",
            "--stop-timeout", "2",
            image, "sh", "-c", SSHD_CMD,
        )


def write_inventory(path: Path, prefix: str, zone: str, plan: Sequence[Host], key: Path,
                    passfile: Path) -> None:
    if path.exists():
        owner = inventory_prefix(path.read_text())
        if owner is None:
            raise LabError(f"{path} exists and was not generated by scripts/lab; not overwriting it")
        if owner != prefix and (state_dir(owner) / "fleet.json").exists():
            raise LabError(f"{path} belongs to running fleet {owner!r}; pass --inventory")
    write_file(path, render_inventory(prefix, zone, plan, key, passfile))


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

def cmd_up(args) -> int:
    """Bring the fleet up; a state dir made by a run that failed before any
    container existed is removed again."""
    fresh = not state_dir(args.prefix).exists() if NAME_RE.match(args.prefix) else False
    try:
        return _up(args)
    except LabError:
        sdir = state_dir(args.prefix)
        with contextlib.suppress(LabError):
            if fresh and sdir.exists() and not (sdir / "fleet.json").exists() and not [
                    c for c in lab_containers()
                    if (c.get("Labels") or {}).get(LABEL_PREFIX) == args.prefix]:
                shutil.rmtree(sdir, ignore_errors=True)
        raise


def _up(args) -> int:
    t0 = time.monotonic()
    prefix = validate_prefix(args.prefix)
    zone = validate_zone(args.zone)
    if not 0 <= args.nodes <= MAX_NODES:
        raise LabError(f"--nodes must be between 0 and {MAX_NODES}")
    inventory = Path(args.inventory).resolve() if args.inventory else default_inventory_path(prefix)
    sdir, key, passfile = ensure_state(prefix)
    image = build_image(args.suite)
    want_image_id = image_id(image)

    with global_lock():
        state = load_state(prefix)
        containers = lab_containers()
        ours = [c for c in containers if (c.get("Labels") or {}).get(LABEL_PREFIX) == prefix]

        if state and not args.force:
            same = (state.get("zone") == zone and state.get("nodes") == args.nodes
                    and state.get("suite") == args.suite and state.get("image_id") == want_image_id
                    and (args.port_base is None or args.port_base == state.get("port_base")))
            if same:
                plan = fleet_plan(prefix, zone, args.nodes, state["subnet"], state["port_base"])
                extra = {container_name(c) for c in ours} - {h.container for h in plan}
                status = health(plan, key, ours)
                if not extra and all(v == "ok" for v in status.values()):
                    write_inventory(inventory, prefix, zone, plan, key, passfile)
                    state["inventory"] = str(inventory)
                    write_file(sdir / "fleet.json", json.dumps(state, indent=2) + "\n")
                    say(f"fleet {prefix} already up and healthy ({len(plan)} hosts, "
                        f"{time.monotonic() - t0:.1f} s)")
                    print(inventory)
                    return 0
                bad = {n: s for n, s in status.items() if s != "ok"}
                say(f"fleet {prefix} unhealthy ({bad or 'extra containers'}); recreating")
            else:
                say(f"fleet {prefix} exists with other settings; recreating")

        # (Re)create from scratch: our containers and network go first so their
        # ports/subnet are free again.
        if ours:
            remove_fleet_containers(prefix, ours)
        net = f"{prefix}-net"
        if podman("network", "exists", net, check=False).returncode == 0:
            labels = json.loads(podman("network", "inspect", net).stdout)[0].get("labels") or {}
            if labels.get(LABEL_PREFIX) != prefix:
                raise LabError(f"podman network {net} exists but is not a lab network of {prefix!r}")
            remove_network(prefix)
        clear_control_sockets(prefix)

        others = [c for c in containers if (c.get("Labels") or {}).get(LABEL_PREFIX) != prefix]
        reserved = set()
        for c in others:
            label = (c.get("Labels") or {}).get(LABEL_PORT)
            if label and label.isdigit():
                reserved.add(int(label))
        port_base = choose_port_base(prefix, args.nodes, args.port_base, port_is_free, reserved)
        subnet = choose_subnet(prefix, used_subnets())
        plan = fleet_plan(prefix, zone, args.nodes, subnet, port_base)
        say(f"starting {len(plan)} containers on {prefix}-net {subnet}, ssh ports "
            f"{plan[0].port}-{plan[-1].port} (image {image})")
        t1 = time.monotonic()
        try:
            create_fleet(prefix, plan, subnet, image, key, zone)
            wait_for_ssh(plan, key)
        except LabError:
            say(f"fleet {prefix} failed to start; `scripts/lab down --prefix {prefix}` cleans up")
            raise
        state = {
            "prefix": prefix, "zone": zone, "nodes": args.nodes, "suite": args.suite,
            "image": image, "image_id": want_image_id, "subnet": str(subnet),
            "port_base": port_base, "inventory": str(inventory),
        }
        write_file(sdir / "fleet.json", json.dumps(state, indent=2) + "\n")
        write_inventory(inventory, prefix, zone, plan, key, passfile)
    say(f"fleet {prefix} up: containers+ssh {time.monotonic() - t1:.1f} s, total "
        f"{time.monotonic() - t0:.1f} s")
    print(inventory)
    return 0


def cmd_down(args) -> int:
    prefix = validate_prefix(args.prefix)
    with global_lock():
        state = load_state(prefix) or {}
        plan = []
        if state.get("subnet") and state.get("port_base") is not None:
            plan = fleet_plan(prefix, state.get("zone", DEFAULT_ZONE), state.get("nodes", 0),
                              state["subnet"], state["port_base"])
        remove_fleet_containers(prefix, lab_containers(), plan)
        remove_network(prefix)
        clear_control_sockets(prefix)
        inv = state.get("inventory")
        if inv and Path(inv).is_file():
            with contextlib.suppress(OSError):
                if inventory_prefix(Path(inv).read_text()) == prefix:
                    Path(inv).unlink()
        sdir = state_dir(prefix)
        if sdir.exists():
            shutil.rmtree(sdir)
    say(f"fleet {prefix} removed")
    return 0


def cmd_status(args) -> int:
    prefix = validate_prefix(args.prefix)
    state = load_state(prefix)
    ours = [c for c in lab_containers() if (c.get("Labels") or {}).get(LABEL_PREFIX) == prefix]
    if not state and not ours:
        print(f"fleet {prefix}: not created")
        return 3
    if not state:
        print(f"fleet {prefix}: containers without state (run `scripts/lab down --prefix {prefix}`)")
        for c in ours:
            print(f"  {container_name(c)}  {c.get('State')}")
        return 1
    plan = fleet_plan(prefix, state["zone"], state["nodes"], state["subnet"], state["port_base"])
    status = health(plan, state_dir(prefix) / "id_ed25519", ours)
    print(f"fleet {prefix}: zone={state['zone']} subnet={state['subnet']} image={state['image']}")
    print(f"inventory: {state.get('inventory')}")
    by_name = {container_name(c): c for c in ours}
    print(f"  {'CONTAINER':<22} {'STATE':<10} {'IP':<15} {'SSH':<17} HEALTH")
    for h in plan:
        c = by_name.get(h.container) or {}
        print(f"  {h.container:<22} {c.get('State', 'missing'):<10} {h.ip:<15} "
              f"127.0.0.1:{h.port:<7} {status[h.name]}")
    healthy = all(v == "ok" for v in status.values())
    print(f"health: {'ok' if healthy else 'DEGRADED (scripts/lab up recreates it)'}")
    return 0 if healthy else 1


def cmd_exec(args) -> int:
    prefix = validate_prefix(args.prefix)
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        cmd = ["bash"]
    tty = ["-it"] if sys.stdin.isatty() and sys.stdout.isatty() else ["-i"]
    os.execvp("podman", ["podman", "exec", *tty, f"{prefix}-{args.name}", *cmd])
    return 127  # not reached


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/lab", description=__doc__.split("\n", maxsplit=1)[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add_prefix(sp):
        sp.add_argument("--prefix", default=DEFAULT_PREFIX,
                        help=f"fleet name prefix (default {DEFAULT_PREFIX})")

    up = sub.add_parser("up", help="build the image (cached), start the fleet, write the inventory")
    add_prefix(up)
    up.add_argument("--nodes", type=int, default=DEFAULT_NODES, help="number of nodes (default 3)")
    up.add_argument("--zone", default=DEFAULT_ZONE, help="DNS zone label: <host>.<zone>.trustzone.test")
    up.add_argument("--inventory", help="inventory path (default inventories/lab/hosts.yml for "
                    "prefix tzlab, .lab/<prefix>/hosts.yml otherwise)")
    up.add_argument("--suite", default=DEFAULT_SUITE, choices=SUITES)
    up.add_argument("--port-base", type=int, help="ssh port of the ca; node N gets base+N "
                    "(default: derived from the prefix, first free block)")
    up.add_argument("--force", action="store_true", help="recreate even if healthy")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="remove containers, network and .lab/<prefix>/")
    add_prefix(down)
    down.set_defaults(func=cmd_down)

    st = sub.add_parser("status", help="containers, ports, health (exit 0 healthy, 1 degraded, 3 absent)")
    add_prefix(st)
    st.set_defaults(func=cmd_status)

    ex = sub.add_parser("exec", help="run a command in a lab container: exec NAME -- CMD...")
    add_prefix(ex)
    ex.add_argument("name", help="ca, node1, ...")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LabError as exc:
        print(f"lab: ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
