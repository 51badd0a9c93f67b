"""Lab fleet for trustzone.pki, the plan: names, subnets, ports and hosts of a fleet.

Pure functions of their arguments (no podman, no files): unit tested without podman in
tests/unit/lab. The other parts of the lab: lab_podman.py (containers, networks, the
host's free ports and subnets), lab_ssh.py (SSH settings and checks), lab_inventory.py
(the Ansible inventory), lablib.py (the fleet's state and the commands of `scripts/lab`).

A fleet with prefix P consists of
  * podman network  P-net           (its own /24 from 10.89.0.0/16)
  * containers      P-ca, P-node1..N (hostname <short>.<zone>.trustzone.test)
  * state dir       <repo>/.lab/P/  (ssh key, CA passphrase, fleet.json, ...)
and an Ansible inventory (YAML) describing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
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
PORT_BLOCK = 50  # port blocks start at multiples of this: ca = base, nodeN = base+N
# A fleet of more than PORT_BLOCK - 1 nodes takes consecutive blocks; at most four (the ca and
# 199 nodes: ports base..base+199, addresses .10 .. .209 of the fleet's /24). Fleets that fitted
# before keep their default blocks: only the bound moved (it was 99).
MAX_NODES = 4 * PORT_BLOCK - 1
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
