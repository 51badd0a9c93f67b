"""Lab fleet for trustzone.pki, SSH: the options Ansible connects with, and whether each
host of a fleet answers and lets us log in (see lab_plan.py)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import time
from pathlib import Path
from typing import Sequence

from lab_plan import LABEL_IP, LABEL_PORT, SSH_WAIT_SECONDS, Host, LabError
from lab_podman import container_name, podman, run


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


def ssh_banner(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """True when something on host:port speaks SSH (reads the server banner)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


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


def clear_control_sockets(prefix: str) -> None:
    for sock in Path("/tmp").glob(f"tz-{prefix}-*"):
        with contextlib.suppress(OSError):
            sock.unlink()
