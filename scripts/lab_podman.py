"""Lab fleet for trustzone.pki, podman and the host: commands, containers, the network,
the node image, and which subnets and ports of this machine are taken (see lab_plan.py)."""

from __future__ import annotations

import errno
import ipaddress
import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Sequence

from lab_plan import (BUILD_IMAGE, LABEL_IP, LABEL_HOST, LABEL_PORT, LABEL_PREFIX, SSHD_CMD,
                      Host, LabError, _as_network, add_host_args)


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


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


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
