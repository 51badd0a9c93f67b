"""Build the lab node image's systemd flavour: the image of scripts/build-image with systemd
as its init, for tests that must see a real service manager (extensions/molecule/proxy_traefik).

  python3 scripts/build_image_systemd.py [--force] [SUITE]     SUITE: bookworm (default), trixie

A layer on top of the suite's image (scripts/build-image SUITE, built first if needed): Debian's
systemd and systemd-sysv installed with apt inside a container of it, then committed with
/lib/systemd/systemd as the command. Boot it with `podman run --systemd=always` (molecule:
`systemd: always`). The flavour adds nothing that starts at boot but systemd's own units and
sshd (host keys made on first start, as the base image's sshd command does); nginx stays
installed and stopped, as in the base image, until a role starts it.

Tags localhost/trustzone-node:SUITE-systemd-<recipe hash> and localhost/trustzone-node:SUITE-systemd.
The recipe hash covers the base image (its own recipe hash), the flavour's packages and this
file: scripts/build-image itself is untouched, so the base image keeps its recipe hash and no
fleet rebuilds its image because this flavour exists. The last line of stdout is the image
reference to use; progress goes to stderr. Run as root (rootful podman).
"""

import argparse
import fcntl
import hashlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
FLAVOUR = "systemd"
PACKAGES = ["systemd", "systemd-sysv"]
# Run in a container of the base image before the commit. sshd: Debian's ssh.service checks its
# configuration (sshd -t) before it starts, which fails without host keys; they are made first.
# nginx: its package enabled nginx.service; disabled, so that it runs only where a role starts it
# (on a Traefik proxy it would hold port 80). The apt lists go, and the machine id is emptied
# (systemd makes one per container at boot).
SETUP = """set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
apt-get install -y -q --no-install-recommends {packages}
systemctl disable nginx.service 2>/dev/null || true
mkdir -p /etc/systemd/system/ssh.service.d
printf '%s\\n' '[Service]' 'ExecStartPre=' 'ExecStartPre=/usr/bin/ssh-keygen -A' \\
    'ExecStartPre=/usr/sbin/sshd -t' > /etc/systemd/system/ssh.service.d/trustzone-host-keys.conf
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /var/log/apt/* /var/log/*.log
: > /etc/machine-id
test -x /lib/systemd/systemd
"""


def load_base():
    """scripts/build-image as a module (its name has a dash and no .py)."""
    path = os.path.join(HERE, "build-image")
    loader = importlib.machinery.SourceFileLoader("trustzone_build_image", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def recipe_hash(base_ref):
    with open(os.path.realpath(__file__), "rb") as fh:
        own = fh.read()
    recipe = f"base={base_ref}\npackages={','.join(PACKAGES)}\n".encode() + own
    return hashlib.sha256(recipe).hexdigest()[:12]


def build(base, base_ref, suite, ref, alias, recipe):
    """A container of the base image runs SETUP; its file system becomes the flavour image."""
    start = time.monotonic()
    name = f"trustzone-build-{FLAVOUR}-{os.getpid()}"
    base.log(f"installing {' '.join(PACKAGES)} on {base_ref} (about a minute)")
    proc = subprocess.run(
        ["podman", "run", "--name", name, base_ref, "sh", "-c",
         SETUP.format(packages=" ".join(PACKAGES))],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        check=False)
    try:
        if proc.returncode != 0:
            sys.stderr.write("".join(proc.stdout.splitlines(keepends=True)[-30:]))
            base.die(f"installing {FLAVOUR} failed with exit code {proc.returncode}")
        base.log(f"committing {ref}")
        base.podman("commit", "--quiet",
                    "--change", 'CMD ["/lib/systemd/systemd"]',
                    "--change", "STOPSIGNAL SIGRTMIN+3",
                    "--change", f"LABEL trustzone.recipe={recipe}",
                    "--change", f"LABEL trustzone.suite={suite}",
                    "--change", f"LABEL trustzone.flavour={FLAVOUR}",
                    name, ref)
    finally:
        base.podman("rm", "--force", name, check=False)
    base.podman("tag", ref, alias)
    # Drop tags of older recipes of this flavour (an image still used by a container stays).
    listing = base.podman("images", "--format", "{{.Repository}}:{{.Tag}}", base.IMAGE_REPO,
                          check=False)
    prefix = f"{base.IMAGE_REPO}:{suite}-{FLAVOUR}-"
    for old in (listing.stdout or "").split():
        if (old.startswith(prefix) and old != ref and len(old) == len(prefix) + 12
                and base.podman("rmi", old, check=False).returncode == 0):
            base.log(f"removed old {old}")
    base.log(f"built in {time.monotonic() - start:.0f} s")


def main():
    base = load_base()
    parser = argparse.ArgumentParser(prog="scripts/build_image_systemd.py",
                                     description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("suite", nargs="?", default="bookworm", choices=sorted(base.NGINX))
    args = parser.parse_args()
    if os.geteuid() != 0:
        base.die("must run as root (rootful podman)")

    # The base image first (cached, or built under its own lock): its reference is its recipe.
    proc = subprocess.run([sys.executable, os.path.join(HERE, "build-image"), args.suite],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        base.die(f"scripts/build-image {args.suite} failed (exit {proc.returncode})")
    base_ref = proc.stdout.strip().splitlines()[-1]

    recipe = recipe_hash(base_ref)
    ref = f"{base.IMAGE_REPO}:{args.suite}-{FLAVOUR}-{recipe}"
    alias = f"{base.IMAGE_REPO}:{args.suite}-{FLAVOUR}"
    with open(base.LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not args.force and base.podman("image", "exists", ref, check=False).returncode == 0:
            base.podman("tag", ref, alias, check=False)
            base.log(f"{FLAVOUR}: cached")
        else:
            build(base, base_ref, args.suite, ref, alias, recipe)
    print(ref, flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
