"""ansible-core releases that need a newer controller Python than this machine's (issue 15).

ansible-core 2.20 and 2.21 need Python >= 3.12; the build machines run Debian 12 (3.11). Their
controller side runs inside a Debian 13 container instead: the lab's trixie image
(scripts/build-image trixie, Python 3.13), on the host network so that it reaches a lab
fleet's SSH ports on loopback. Per ansible-core version, in that container:

  venv    ansible-core 2.X and its own generation's `ansible` package (--no-deps), cached in
          ~/.cache/trustzone-pki-ecosystem/debian13/ (pip's cache too: a second run is fast)
  sanity  ansible-test sanity, all but pylint (as the matrix does for the older cores)
  units   ansible-test units
  install ansible-galaxy build + install, --syntax-check of every playbook
  site    install, then the installed playbooks/site.yml twice on a lab fleet (the second
          run changes nothing)

  scripts/ecosystem newcore                          2.20 and 2.21, every step
  scripts/ecosystem newcore --cores 2.21 --steps sanity units
  TRUSTZONE_MATRIX="2.20 2.21" scripts/ecosystem -k matrix   the same through pytest

The lab fleet is started and removed on the host (scripts/lab); only the controller runs in
the container. Python 3 standard library only on the host; in the container the same file
runs as ``newcore.py inner`` and reuses scripts/ecolib.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load_ecolib():
    if "ecolib" in sys.modules:
        return sys.modules["ecolib"]
    sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
    spec = importlib.util.spec_from_file_location("ecolib", HERE / "ecolib.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ecolib"] = module
    spec.loader.exec_module(module)
    return module


eco = _load_ecolib()

SUITE = "trixie"  # Debian 13: Python 3.13
HOST_CACHE = eco.CACHE / "debian13"
# Inside the container.
CACHE_IN = "/cache"
SRC_IN = "/src"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PIP_CONF = "[global]\ncert = %s\n" % CA_BUNDLE
STEPS = ("sanity", "units", "install", "site")  # site: install, then site.yml twice
VERSIONS_MARK = "newcore-versions: "


def log(msg):
    print("newcore: %s" % msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- host side
def ensure_image():
    """The lab's Debian 13 image (built locally once, cached); returns its reference."""
    proc = eco.run([sys.executable, HERE / "build-image", SUITE], timeout=1800,
                   what="scripts/build-image %s" % SUITE)
    return proc.stdout.strip().splitlines()[-1]


def ensure_pip_wheel():
    """A pip wheel in the cache: Debian's python3 has no ensurepip without python3-venv, so
    the container's venvs (ours and ansible-test's) get pip from it."""
    wheels = HOST_CACHE / "wheels"
    found = sorted(wheels.glob("pip-*.whl"))
    if found:
        return found[-1]
    wheels.mkdir(parents=True, exist_ok=True)
    eco.run([eco.venv_bin("python"), "-m", "pip", "download", "-q", "--no-deps",
             "--only-binary=:all:", "--dest", wheels, "pip"], timeout=600,
            what="pip download pip")
    found = sorted(wheels.glob("pip-*.whl"))
    if not found:
        raise eco.EcoError("pip download wrote no pip wheel into %s" % wheels)
    return found[-1]


class ContainerCore:
    """The controller side of one ansible-core version, run in a Debian 13 container."""

    def __init__(self, core, image=None):
        if core not in eco.CONTAINER_CORES:
            raise eco.EcoError("ansible-core %s runs on the host (scripts/ecolib.py MATRIX)"
                               % core)
        self.core = core
        self.image = image
        self.versions = {}

    def _podman(self, steps, stage_dir, mounts=(), extra=(), timeout=3600):
        if self.image is None:
            self.image = ensure_image()
        wheel = ensure_pip_wheel()
        (HOST_CACHE / "pip").mkdir(parents=True, exist_ok=True)
        pip_conf = HOST_CACHE / "pip.conf"
        if not pip_conf.exists() or pip_conf.read_text() != PIP_CONF:
            pip_conf.write_text(PIP_CONF)
        volumes = [(HOST_CACHE, CACHE_IN, "rw"), (HOST_CACHE / "pip", "/root/.cache/pip", "rw"),
                   (pip_conf, "/etc/pip.conf", "ro"), (stage_dir, SRC_IN, "ro")]
        if Path(CA_BUNDLE).exists():  # the host's trust store (a proxy's CA) for pip
            volumes.append((CA_BUNDLE, CA_BUNDLE, "ro"))
        volumes += [(path, path, "ro") for path in mounts]
        cmd = ["podman", "run", "--rm", "--network", "host", "--name",
               "trustzone-newcore-%s-%d" % (self.core.replace(".", ""), os.getpid())]
        for source, target, mode in volumes:
            cmd += ["-v", "%s:%s:%s" % (source, target, mode)]
        cmd += ["-e", "TRUSTZONE_ECOSYSTEM_CACHE=%s" % CACHE_IN,
                "-e", "TRUSTZONE_PIP_WHEEL=%s/wheels/%s" % (CACHE_IN, wheel.name),
                "-e", "PIP_DISABLE_PIP_VERSION_CHECK=1",
                self.image, "python3", "%s/scripts/newcore.py" % SRC_IN, "inner",
                "--core", self.core] + list(extra) + list(steps)
        proc = eco.run(cmd, timeout=timeout, what="ansible-core %s in %s: %s" % (
            self.core, self.image, " ".join(steps)))
        for line in proc.output.splitlines():
            if line.startswith(VERSIONS_MARK):
                self.versions = json.loads(line[len(VERSIONS_MARK):])
        return proc

    def _with_stage(self, steps, **kwargs):
        with tempfile.TemporaryDirectory(prefix="trustzone-newcore-") as top:
            return self._podman(steps, eco.stage(top), **kwargs)

    def prepare(self):
        """The container's venv for this core (created once); returns the versions seen."""
        self._with_stage(["venv"], timeout=1800)
        return self.versions

    def sanity(self):
        return self._with_stage(["sanity"])

    def units(self):
        return self._with_stage(["units"])

    def install(self):
        return self._with_stage(["install"])

    def site(self, prefix, zone="ecom", nodes=1):
        """Start a lab fleet on the host, build + install + syntax-check the collection and run
        its site.yml twice from the container, remove the fleet. Returns the container's run."""
        inventory = eco.REPO / ".lab" / prefix / "hosts.yml"
        eco.lab("up", "--prefix", prefix, "--nodes", str(nodes), "--zone", zone,
                "--inventory", inventory)
        try:
            return self._with_stage(["site"], mounts=[inventory.parent],
                                    extra=["--inventory", str(inventory)])
        finally:
            eco.lab("down", "--prefix", prefix, check=False)


def cli_host(args):
    results = []
    for core in args.cores:
        runner = ContainerCore(core)
        started = time.monotonic()
        versions = runner.prepare()
        log("%s: %s (%.0f s)" % (core, json.dumps(versions, sort_keys=True),
                                 time.monotonic() - started))
        for step in args.steps:
            started = time.monotonic()
            if step == "site":
                proc = runner.site("%s%s" % (args.prefix, core.replace(".", "")))
            else:
                proc = getattr(runner, step)()
            seconds = time.monotonic() - started
            log("%s %s: ok (%.0f s)" % (core, step, seconds))
            if args.verbose:
                print(proc.output)
            results.append({"core": core, "step": step, "seconds": round(seconds),
                            "versions": versions})
    print(json.dumps(results, indent=1))
    return 0


# --------------------------------------------------------------------------- container side
def versions_of(venv):
    """ansible-core, ansible, community.crypto, cryptography and Python of ``venv``."""
    code = ("import json, sys, importlib.metadata as m, ansible.release as r\n"
            "out = {'ansible-core': r.__version__, 'python': sys.version.split()[0],\n"
            "       'ansible': m.version('ansible'), 'cryptography': m.version('cryptography')}\n"
            "import pathlib, ansible_collections\n"
            "root = pathlib.Path(list(ansible_collections.__path__)[0])\n"
            "man = json.loads((root / 'community' / 'crypto' / 'MANIFEST.json').read_text())\n"
            "out['community.crypto'] = man['collection_info']['version']\n"
            "print(json.dumps(out, sort_keys=True))\n")
    return json.loads(eco.run([eco.venv_bin("python", venv), "-c", code]).output.strip()
                      .splitlines()[-1])


def cli_inner(args):
    """Run the steps inside the container. The venv step runs on the system python3 (standard
    library only); the others re-run this file on the venv's Python (PyYAML for galaxy.yml)."""
    unknown = [s for s in args.steps if s not in ("venv",) + STEPS]
    if unknown:
        raise eco.EcoError("unknown steps %s" % unknown)
    venv = eco.ensure_matrix_venv(args.core)
    if not args.in_venv:
        print(VERSIONS_MARK + json.dumps(versions_of(venv), sort_keys=True), flush=True)
        steps = [s for s in args.steps if s != "venv"]
        if not steps:
            return 0
        argv = [eco.venv_bin("python", venv), __file__, "inner", "--core", args.core,
                "--in-venv"]
        if args.inventory:
            argv += ["--inventory", args.inventory]
        os.execv(argv[0], argv + steps)
    for step in args.steps:
        started = time.monotonic()
        if step == "sanity":
            proc = eco.sanity(venv, skip=("pylint",))
            if "FATAL" in proc.output:
                raise eco.EcoError("ansible-test sanity:\n%s" % eco.tail(proc.output))
            print(eco.tail(proc.output, 3000))
        elif step == "units":
            proc = eco.units(venv)
            if " passed" not in proc.output or " failed" in proc.output:
                raise eco.EcoError("ansible-test units:\n%s" % eco.tail(proc.output))
            print(eco.tail(proc.output, 1500))
        elif step in ("install", "site"):
            work = Path(tempfile.mkdtemp(prefix="trustzone-newcore-site-"))
            try:
                tarball = eco.build(work / "dist", venv)
                collections = work / "collections"
                eco.install(tarball, collections, venv)
                checked = eco.check_installed(collections, work, venv)
                print("built, installed, syntax-checked %d playbooks" % len(checked))
                if step == "site":
                    outputs = []
                    first, second = eco.run_site_twice(collections, work, args.inventory,
                                                       venv, outputs)
                    print("site.yml %.1f s, again (no change) %.1f s" % (first, second))
                    warnings = sorted({line.strip() for out in outputs
                                       for line in out.splitlines() if "WARNING" in line})
                    print("%d distinct warning lines%s" % (
                        len(warnings), "".join("\n  " + w for w in warnings)))
            finally:
                shutil.rmtree(work, ignore_errors=True)
        log("%s %s: ok (%.0f s)" % (args.core, step, time.monotonic() - started))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/ecosystem newcore",
                                     description=__doc__.split("\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command")
    inner = sub.add_parser("inner", help="(in the container) run steps for one core")
    inner.add_argument("--core", required=True, choices=eco.CONTAINER_CORES)
    inner.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    inner.add_argument("--inventory")
    inner.add_argument("steps", nargs="*", help="venv, %s" % ", ".join(STEPS))
    inner.set_defaults(func=cli_inner)
    parser.add_argument("--cores", nargs="+", default=list(eco.CONTAINER_CORES),
                        choices=eco.CONTAINER_CORES)
    parser.add_argument("--steps", nargs="+", default=["sanity", "units", "site"],
                        choices=STEPS)
    parser.add_argument("--prefix", default=os.environ.get("TRUSTZONE_E2E_PREFIX") or "tznew",
                        help="lab fleet prefix; the fleet is <prefix><core digits>")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each step's output")
    parser.set_defaults(func=cli_host)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except eco.EcoError as exc:
        print("newcore: FAILED: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
