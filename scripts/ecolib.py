"""The Ansible ecosystem's own checks for trustzone.pki (issue 10).

ansible-test sanity and units, ansible-lint, ansible-doc, antsibull-docs, antsibull-changelog,
ansible-galaxy build + install, ansible-builder, and the ansible-core support matrix. Used by
``scripts/ecosystem`` (command line), ``scripts/docs`` and ``tests/ecosystem`` (pytest).

Everything runs offline apart from PyPI: Ansible Galaxy is never contacted, and the pip
bootstrap script that ansible-test downloads from its own CI host is replaced by a local
stand-in (``ensurepip`` + ``pip install`` from PyPI) in a dedicated HOME, see ansible_test_home().
Python 3 standard library only, plus PyYAML (from the .venv) where galaxy.yml is read.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
NAMESPACE, NAME = "trustzone", "pki"
FQCN = "%s.%s" % (NAMESPACE, NAME)
REQUIREMENTS = [REPO / "requirements.txt", REPO / "requirements-ecosystem.txt",
                REPO / "requirements-docs.txt"]
# Long-lived caches (ansible-test's sanity venvs, the support-matrix venvs, pip's cache):
# outside the checkout so that a fresh clone on the same machine reuses them.
CACHE = Path(os.environ.get("TRUSTZONE_ECOSYSTEM_CACHE")
             or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                             "trustzone-pki-ecosystem"))
# What never goes into a staged copy of the collection, when git cannot tell us.
STAGE_EXCLUDES = {".git", ".venv", ".lab", ".collections", ".cache", ".pytest_cache",
                  ".ansible", "__pycache__", "tests/output"}
# The ansible-core versions of the support matrix, each in its own venv. Our dependencies
# come from one `ansible` package, installed without its ansible-core pin (--no-deps): the
# acme role needs community.crypto >= 2.24 (the ACME order modules), which `ansible` 9 and 10
# (the generations of ansible-core 2.16 and 2.17) do not bundle - they carry 2.22. A 2.16
# user installs community.crypto from Galaxy; Galaxy is out of reach here, so `ansible` 11
# (community.crypto 2.26, which supports ansible-core 2.9 and later) stands in for it.
# The .venv's row (2.19) is the project's own (requirements.txt). 2.20 and later need
# Python >= 3.12, which this machine lacks: they run in a Debian 13 container (Python 3.13,
# scripts/newcore.py), with the collections of their own generation's `ansible` package.
MATRIX = {
    "2.16": "ansible-core>=2.16,<2.17",
    "2.17": "ansible-core>=2.17,<2.18",
    "2.18": "ansible-core>=2.18,<2.19",
    "2.20": "ansible-core>=2.20,<2.21",
    "2.21": "ansible-core>=2.21,<2.22",
}
MATRIX_COLLECTIONS = "ansible>=11,<12"
MATRIX_COLLECTIONS_OF = {"2.20": "ansible>=13,<14", "2.21": "ansible>=14,<15"}
CONTAINER_CORES = ("2.20", "2.21")  # controller Python >= 3.12: scripts/newcore.py
# python-pkcs11 and asn1crypto: the PKCS#11 signer and detached signing (offline root) are
# unit-tested in every matrix venv too (SoftHSM2 comes from scripts/bootstrap --tests)
MATRIX_EXTRA = ["cryptography>=41", "pytest>=8", "pytest-xdist>=3", "pytest-mock>=3",
                "mock>=5", "pyyaml", "asn1crypto>=1.5", "python-pkcs11>=0.10,<0.11"]
LAB_PREFIX, LAB_ZONE = "tzeco", "eco"


class EcoError(Exception):
    """A check failed; the message says which and shows the tool's output."""


# --------------------------------------------------------------------------- helpers
def log(msg):
    print("ecosystem: %s" % msg, file=sys.stderr, flush=True)


def venv_bin(name, venv=VENV):
    return str(Path(venv) / "bin" / name)


def venv_python_version(venv=VENV):
    """``3.X`` of the venv's Python (from its lib/python3.X directory)."""
    return Path(site_packages(venv)).parent.name[len("python"):]


def site_packages(venv=VENV):
    found = sorted(glob.glob(str(Path(venv) / "lib" / "python3*" / "site-packages")))
    if not found:
        raise EcoError("no site-packages in %s: run scripts/bootstrap" % venv)
    return found[-1]


def galaxy_meta():
    import yaml  # from the .venv (PyYAML comes with ansible-core)

    with open(REPO / "galaxy.yml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def tool_env(venv=VENV, collections=None, home=None, **extra):
    """Environment for a tool: the venv first on PATH, no colour, and no ANSIBLE_* setting
    inherited from the caller (scripts/test exports ANSIBLE_CONFIG for the checkout).

    ``collections``: the only places collections come from (ANSIBLE_COLLECTIONS_PATH, with
    the sys.path scan off)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANSIBLE_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "%s:%s" % (Path(venv) / "bin", env.get("PATH", "/usr/bin:/bin"))
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1", PY_COLORS="0",
               ANSIBLE_DEPRECATION_WARNINGS="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               LC_ALL=env.get("LC_ALL", "C.UTF-8"))
    if collections is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(str(p) for p in collections)
        env["ANSIBLE_COLLECTIONS_SCAN_SYS_PATH"] = "False"
    if home is not None:
        env["HOME"] = str(home)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd, cwd=None, env=None, timeout=900, check=True, what=None):
    """Run ``cmd``; return the CompletedProcess with ``.output`` (stdout + stderr)."""
    cmd = [str(c) for c in cmd]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=str(cwd) if cwd else None, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    proc.output = proc.stdout
    proc.seconds = time.monotonic() - started
    if check and proc.returncode != 0:
        raise EcoError("%s failed (exit %d, %.0f s): %s\n%s" % (
            what or Path(cmd[0]).name, proc.returncode, proc.seconds, " ".join(cmd),
            tail(proc.output)))
    return proc


def tail(text, limit=12000):
    return text if len(text) <= limit else "...\n" + text[-limit:]


def files_of_checkout():
    """Relative paths of the checkout's files: tracked plus untracked-but-not-ignored (what a
    fresh clone would hold once the work in progress is committed)."""
    if (REPO / ".git").exists() and shutil.which("git"):
        out = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  cwd=REPO).output
        paths = sorted({p for p in out.split("\0") if p})
        return [p for p in paths
                if os.path.lexists(REPO / p) and not (REPO / p).is_dir()
                and "__pycache__" not in p.split("/")]
    paths = []
    for root, dirs, names in os.walk(REPO):
        rel_root = os.path.relpath(root, REPO)
        dirs[:] = [d for d in dirs
                   if d not in STAGE_EXCLUDES and not d.startswith(".venv")
                   and os.path.normpath(os.path.join(rel_root, d)) not in STAGE_EXCLUDES]
        for name in names:
            paths.append(os.path.normpath(os.path.join(rel_root, name)))
    return sorted(paths)


def stage(top):
    """Copy the collection to ``<top>/ansible_collections/trustzone/pki`` (the layout that
    ansible-test and the collection loader need); return that directory."""
    dest = Path(top) / "ansible_collections" / NAMESPACE / NAME
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel in files_of_checkout():
        src = REPO / rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), target)
        else:
            shutil.copy2(src, target)
    return dest


# --------------------------------------------------------------------------- deps
def requirements_digest():
    digest = hashlib.sha256()
    for path in REQUIREMENTS:
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def ensure_deps(venv=VENV):
    """pip install requirements*.txt into the .venv when they changed (stamp file)."""
    if not Path(venv_bin("python", venv)).exists():
        raise EcoError("%s has no python: run scripts/bootstrap first" % venv)
    stamp = Path(venv) / ".ecosystem-requirements.sha256"
    want = requirements_digest()
    if stamp.exists() and stamp.read_text().strip() == want:
        return False
    log("pip install -r requirements.txt -r requirements-ecosystem.txt into %s" % venv)
    cmd = [venv_bin("python", venv), "-m", "pip", "install", "-q", "--progress-bar", "off"]
    for path in REQUIREMENTS[:2]:
        cmd += ["-r", path]
    run(cmd, timeout=1800, what="pip install")
    stamp.write_text(want + "\n")
    return True


def pip_wheel():
    """A pip wheel to bootstrap pip with where the Python has no ensurepip (Debian's python3
    without python3-venv): $TRUSTZONE_PIP_WHEEL, or None."""
    wheel = os.environ.get("TRUSTZONE_PIP_WHEEL")
    return Path(wheel) if wheel else None


def make_venv(venv):
    """``python3 -m venv``; without ensurepip, a venv without pip and pip from pip_wheel()."""
    python = sys.executable if sys.version_info[:2] == (3, 11) else "python3"
    wheel = pip_wheel()
    if wheel is None:
        run([python, "-m", "venv", venv], what="python3 -m venv")
        return
    run([python, "-m", "venv", "--without-pip", venv], what="python3 -m venv --without-pip")
    run([venv_bin("python", venv), wheel / "pip", "install", "-q", "--progress-bar", "off",
         wheel], timeout=600, what="pip install %s" % wheel.name)


def ensure_matrix_venv(core):
    """A venv with ansible-core ``core`` and the collections of its `ansible` package
    (MATRIX_COLLECTIONS_OF, else MATRIX_COLLECTIONS)."""
    venv = CACHE / ("venv-ansible-core-%s" % core)
    spec = MATRIX[core]
    collections = MATRIX_COLLECTIONS_OF.get(core, MATRIX_COLLECTIONS)
    stamp = venv / ".trustzone-matrix"
    want = json.dumps([spec, collections] + MATRIX_EXTRA)
    if stamp.exists() and stamp.read_text() == want:
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    log("creating %s (%s)" % (venv, spec))
    make_venv(venv)
    run([venv_bin("python", venv), "-m", "pip", "install", "-q", "--progress-bar", "off",
         spec] + MATRIX_EXTRA, timeout=1800, what="pip install %s" % spec)
    run([venv_bin("python", venv), "-m", "pip", "install", "-q", "--progress-bar", "off",
         "--no-deps", collections], timeout=1800,
        what="pip install --no-deps %s" % collections)
    stamp.write_text(want)
    return venv


def core_version(venv=VENV):
    out = run([venv_bin("python", venv), "-c",
               "import ansible.release as r; print(r.__version__)"]).output
    return out.strip().splitlines()[-1]


# --------------------------------------------------------------------------- ansible-test
GET_PIP_STAND_IN = '''\
"""Offline stand-in for get-pip.py, written by trustzone.pki scripts/ecolib.py.

ansible-test bootstraps pip in each sanity venv with a script it downloads from its own CI
host, which these machines cannot reach. Same contract: pip install the arguments, where
--no-setuptools / --no-wheel are get-pip options. Uses the interpreter's ensurepip, then PyPI;
without ensurepip (Debian's python3 without python3-venv), the pip wheel beside this file.
"""
import glob
import importlib.util
import os
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
wheels = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "pip-*.whl")))
if importlib.util.find_spec("ensurepip") is None and wheels:
    subprocess.check_call([sys.executable, os.path.join(wheels[-1], "pip"), "install",
                           "--upgrade"] + args)
else:
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                          stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade"] + args)
if "--no-setuptools" in sys.argv[1:] and not any(a.startswith("setuptools") for a in args):
    subprocess.call([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "setuptools"])
'''


def ansible_test_home(venv=VENV):
    """A HOME for ansible-test whose ~/.ansible/test/cache holds the get-pip stand-in for the
    pip version this ansible-test pins (its sanity venvs are cached there too)."""
    home = CACHE / "ansible-test-home"
    cache = home / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    source = Path(site_packages(venv)) / "ansible_test" / "_internal" / "python_requirements.py"
    versions = set(re.findall(r"pip='([0-9.]+)'", source.read_text(encoding="utf-8")))
    for version in versions:
        path = cache / ("get_pip_%s.py" % version.replace(".", "_"))
        if not path.exists() or path.read_text() != GET_PIP_STAND_IN:
            path.write_text(GET_PIP_STAND_IN)
    wheel = pip_wheel()
    if wheel is not None and not (cache / wheel.name).exists():
        shutil.copy2(wheel, cache / wheel.name)
    return home


def ansible_test(command, venv=VENV, extra=(), timeout=1800):
    """Stage the collection and run ``ansible-test <command>`` in it (local, no containers)."""
    with tempfile.TemporaryDirectory(prefix="trustzone-ansible-test-") as top:
        dest = stage(top)
        env = tool_env(venv, home=ansible_test_home(venv))
        cmd = [venv_bin("ansible-test", venv), command, "--python", venv_python_version(venv),
               "--local",
               "--color", "no"] + list(extra)
        return run(cmd, cwd=dest, env=env, timeout=timeout,
                   what="ansible-test %s (ansible-core %s)" % (command, core_version(venv)))


def sanity(venv=VENV, skip=()):
    extra = []
    for test in skip:
        extra += ["--skip-test", test]
    return ansible_test("sanity", venv, extra=extra)


def units(venv=VENV):
    return ansible_test("units", venv)


# --------------------------------------------------------------------------- ansible-lint
def lint():
    """ansible-lint (profile and scope in .ansible-lint) on the checkout itself."""
    env = tool_env(VIRTUAL_ENV=VENV,  # its cache goes to .venv/.ansible, not the checkout
                   ANSIBLE_CONFIG=REPO / "ansible.cfg")  # trustzone.pki via .collections
    if not (REPO / ".collections" / "ansible_collections" / NAMESPACE / NAME).exists():
        raise EcoError(".collections/ is missing: run scripts/bootstrap (it links the checkout)")
    return run([venv_bin("ansible-lint"), "--nocolor"], cwd=REPO, env=env, timeout=900,
               what="ansible-lint")


# --------------------------------------------------------------------------- ansible-doc
PLUGIN_DIRS = {  # plugins/<dir> -> ansible-doc type, for the types this collection may ship
    "modules": "module", "filter": "filter", "test": "test", "lookup": "lookup",
    "callback": "callback", "inventory": "inventory", "connection": "connection",
    "become": "become", "cache": "cache", "vars": "vars", "strategy": "strategy",
}
JINJA_MAP = re.compile(r"""["']([A-Za-z_][A-Za-z0-9_]*)["']\s*:""")


def collection_content(root=REPO):
    """``{(type, name)}`` of every plugin and role the collection ships, from its files (not
    from ansible-doc, so that something ansible-doc cannot see is noticed)."""
    found = set()
    for directory, kind in PLUGIN_DIRS.items():
        for path in sorted((Path(root) / "plugins" / directory).glob("*.py")):
            if path.name.startswith("_") or path.name == "__init__.py":
                continue
            if kind in ("filter", "test"):
                text = path.read_text(encoding="utf-8")
                body = text.split("def filters(self)" if kind == "filter" else "def tests(self)")
                if len(body) < 2:
                    continue
                found.update((kind, name) for name in JINJA_MAP.findall(body[1]))
            else:
                found.add((kind, path.stem))
    for role in sorted((Path(root) / "roles").glob("*/")):
        if (role / "tasks").is_dir():
            found.add(("role", role.name))
    return found


def doc_env(top, venv=VENV):
    return tool_env(venv, collections=[top, site_packages(venv)])


def ansible_doc_json(kind, name, top, venv=VENV):
    """``ansible-doc --json`` for one plugin or role of the staged collection."""
    cmd = [venv_bin("ansible-doc", venv), "-t", kind, "--json", "%s.%s" % (FQCN, name)]
    proc = run(cmd, cwd=top, env=doc_env(top, venv), timeout=300,
               what="ansible-doc -t %s %s.%s" % (kind, FQCN, name))
    data = json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else {}
    return proc, data.get("%s.%s" % (FQCN, name)) or {}


def check_doc(kind, name, top, venv=VENV):
    """Render one plugin's or role's documentation; raise EcoError when it does not."""
    label = "ansible-doc -t %s %s.%s" % (kind, FQCN, name)
    text = run([venv_bin("ansible-doc", venv), "-t", kind, "%s.%s" % (FQCN, name)], cwd=top,
               env=doc_env(top, venv), timeout=300, what=label)
    problems = [line for line in text.output.splitlines()
                if "[WARNING]" in line or "[ERROR]" in line or "ERROR!" in line]
    proc, data = ansible_doc_json(kind, name, top, venv)
    if kind == "role":
        entry = (data.get("entry_points") or {}).get("main") or {}
        if not entry.get("short_description"):
            problems.append("role has no meta/argument_specs.yml entry point 'main' with a "
                            "short_description")
        doc_name = name
    else:
        doc = data.get("doc") or {}
        doc_name = doc.get("name") or doc.get("module")
        if not doc.get("short_description") or not doc.get("description"):
            problems.append("no short_description/description")
        if not data.get("examples"):
            problems.append("no EXAMPLES")
        added, version = str(doc.get("version_added") or ""), str(galaxy_meta()["version"])
        if added and _version_key(added) > _version_key(version):
            problems.append("version_added %s is later than the collection's version %s "
                            "(galaxy.yml): a plugin new in the unreleased version is new in "
                            "%s" % (added, version, version))
    if doc_name != name:
        problems.append("documentation is for %r, not %r (a file with several filters needs "
                        "one sidecar .yml per filter)" % (doc_name, name))
    if problems:
        raise EcoError("%s:\n  %s" % (label, "\n  ".join(problems)))
    return text.output


def _version_key(text):
    return tuple(int(part) if part.isdigit() else 0
                 for part in re.split(r"[.+-]", text)[:3])


def lint_collection_docs(top):
    """antsibull-docs' own checks of the collection's docs (markup, references, schema)."""
    dest = Path(top) / "ansible_collections" / NAMESPACE / NAME
    return run([venv_bin("antsibull-docs"), "lint-collection-docs", "--plugin-docs",
                "--skip-rstcheck", "."], cwd=dest, env=doc_env(top), timeout=600,
               what="antsibull-docs lint-collection-docs")


# --------------------------------------------------------------------------- docs site
DOCS_CFG_OVERRIDES = '''
# trustzone.pki (scripts/docs): the collection is not on Ansible Galaxy.
collection_url = {
  * = "%(repository)s"
}
collection_install = {
  * = "ansible-galaxy collection install {namespace}-{name}-%(version)s.tar.gz"
}
'''
DOCS_CONF_OFFLINE = '''
# trustzone.pki (scripts/docs): build offline. Intersphinx would download the inventories of
# the Python, Jinja and Ansible docs; without them, references into those docs stay plain
# text (scripts/ecolib.py tolerates exactly those warnings).
intersphinx_mapping = {}
'''
# Warnings of an offline build that are not about this collection's docs: labels that live in
# the Ansible docs (resolved by intersphinx when online).
OFFLINE_WARNING = re.compile(r"WARNING: undefined label: '(?!ansible_collections\.%s\.%s\.)"
                             % (NAMESPACE, NAME))


def docs_site(dest):
    """Build the collection's static HTML site with antsibull-docs + Sphinx into ``dest``
    (made if missing); return the path of index.html."""
    dest = Path(dest).resolve()
    meta = galaxy_meta()
    with tempfile.TemporaryDirectory(prefix="trustzone-docs-") as top:
        stage(top)
        env = doc_env(top)
        work = Path(top) / "site"
        work.mkdir(mode=0o700)  # antsibull-docs wants a directory only its owner may write
        run([venv_bin("antsibull-docs"), "sphinx-init", "--use-current", "--dest-dir", work,
             FQCN], cwd=top, env=env, what="antsibull-docs sphinx-init")
        cfg = work / "antsibull-docs.cfg"
        text = re.sub(r"(?ms)^collection_(url|install) = \{.*?^\}\n?", "",
                      cfg.read_text(encoding="utf-8"))
        cfg.write_text(text + DOCS_CFG_OVERRIDES % {"repository": meta.get("repository", ""),
                                                    "version": meta["version"]},
                       encoding="utf-8")
        with open(work / "conf.py", "a", encoding="utf-8") as fh:
            fh.write(DOCS_CONF_OFFLINE)
        rst = work / "rst"
        rst.mkdir(exist_ok=True)
        os.chmod(rst, 0o700)
        run([venv_bin("antsibull-docs"), "--config-file", work / "antsibull-docs.cfg",
             "collection", "--cleanup", "everything", "--use-current", "--dest-dir", rst,
             FQCN], cwd=work, env=env, timeout=600, what="antsibull-docs collection")
        warnings_file = work / "sphinx-warnings.log"
        build = work / "build"
        run([venv_bin("sphinx-build"), "-M", "html", rst, build, "-c", work,
             "--keep-going", "-q", "-w", warnings_file], cwd=work, env=env, timeout=900,
            what="sphinx-build")
        warnings = [w for w in (warnings_file.read_text().splitlines()
                                if warnings_file.exists() else []) if "WARNING" in w
                    or "ERROR" in w]
        real = [w for w in warnings if not OFFLINE_WARNING.search(w)]
        if real:
            raise EcoError("sphinx-build reported problems in the collection's docs (besides "
                           "%d offline-only warnings):\n%s" % (len(warnings) - len(real),
                                                               "\n".join(real)))
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(build / "html", dest)
    index = dest / "index.html"
    if not index.exists():
        raise EcoError("the docs build wrote no %s" % index)
    return index


# --------------------------------------------------------------------------- changelog
def changelog_copy(top):
    """Stage the collection and return its directory (antsibull-changelog works in place)."""
    return stage(top)


def changelog_lint(top=None):
    with tempfile.TemporaryDirectory(prefix="trustzone-changelog-") as tmp:
        dest = changelog_copy(top or tmp)
        env = doc_env(Path(dest).parents[2])
        out = run([venv_bin("antsibull-changelog"), "lint"], cwd=dest, env=env,
                  what="antsibull-changelog lint").output
        if (dest / "changelogs" / "changelog.yaml").exists():
            out += run([venv_bin("antsibull-changelog"), "lint-changelog-yaml",
                        "changelogs/changelog.yaml"], cwd=dest, env=env,
                       what="antsibull-changelog lint-changelog-yaml").output
        problems = [line for line in out.splitlines() if line.strip()]
        if problems:
            raise EcoError("antsibull-changelog lint:\n%s" % out)
        return out


def changelog_release(apply=False):
    """``antsibull-changelog release --version <galaxy.yml version> --refresh`` on a staged
    copy: it folds every fragment (new, edited or removed; keep_fragments is true) and every
    plugin into that release and writes CHANGELOG.md, offline (plugins are found with
    ansible-doc). Returns ``{path: (committed, generated)}`` for the files that
    differ; with ``apply`` the generated files replace the checkout's."""
    version = galaxy_meta()["version"]
    with tempfile.TemporaryDirectory(prefix="trustzone-changelog-") as top:
        dest = stage(top)
        env = doc_env(top)
        run([venv_bin("antsibull-changelog"), "release", "--version", version, "--refresh"],
            cwd=dest, env=env, timeout=600,
            what="antsibull-changelog release --version %s --refresh" % version)
        differ = {}
        for rel in ("changelogs/changelog.yaml", "CHANGELOG.md"):
            generated = (dest / rel).read_text(encoding="utf-8")
            committed = ((REPO / rel).read_text(encoding="utf-8")
                         if (REPO / rel).exists() else None)
            if generated != committed:
                differ[rel] = (committed, generated)
                if apply:
                    (REPO / rel).write_text(generated, encoding="utf-8")
        return differ


# --------------------------------------------------------------------------- build/install
SHIPPED_NEVER = (".venv", ".lab", ".collections", ".cache", ".git/", ".pytest_cache",
                 "tests/output", ".ansible/", "__pycache__", "inventories/lab/hosts.yml")


def build(out_dir, venv=VENV):
    """ansible-galaxy collection build from a staged copy; returns the tarball's path."""
    with tempfile.TemporaryDirectory(prefix="trustzone-build-") as top:
        dest = stage(top)
        env = tool_env(venv)
        run([venv_bin("ansible-galaxy", venv), "collection", "build", "--force",
             "--output-path", Path(out_dir).resolve()], cwd=dest, env=env,
            what="ansible-galaxy collection build")
    version = galaxy_meta()["version"]
    tarball = Path(out_dir) / ("%s-%s-%s.tar.gz" % (NAMESPACE, NAME, version))
    if not tarball.exists():
        raise EcoError("ansible-galaxy collection build wrote no %s" % tarball)
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    bad = [n for n in names if any(s in n for s in SHIPPED_NEVER)]
    if bad:
        raise EcoError("the built collection ships files it must not: %s" % bad[:20])
    return tarball


def install(tarball, collections_dir, venv=VENV):
    """Install the tarball into a clean collections directory. Dependencies (community.crypto)
    resolve offline against the venv's bundled collections; Galaxy is never asked."""
    collections_dir = Path(collections_dir).resolve()
    collections_dir.mkdir(parents=True, exist_ok=True)
    env = tool_env(venv, collections=[collections_dir, site_packages(venv)])
    run([venv_bin("ansible-galaxy", venv), "collection", "install", "--offline",
         "-p", collections_dir, tarball], cwd=collections_dir, env=env, timeout=600,
        what="ansible-galaxy collection install --offline")
    installed = collections_dir / "ansible_collections" / NAMESPACE / NAME
    if not (installed / "MANIFEST.json").exists():
        raise EcoError("%s has no MANIFEST.json after the install" % installed)
    return installed


def installed_env(collections_dir, workdir, venv=VENV):
    """Environment in which trustzone.pki can only come from ``collections_dir`` (and other
    collections only from the venv's `ansible` package), with an ansible.cfg of our own."""
    cfg = Path(workdir) / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\ninterpreter_python = auto_silent\n"
                   "forks = 20\n[ssh_connection]\npipelining = true\n")
    return tool_env(venv, collections=[Path(collections_dir).resolve(), site_packages(venv)],
                    ANSIBLE_CONFIG=cfg)


def check_installed(collections_dir, workdir, venv=VENV):
    """The installed collection is the one Ansible uses, and its playbooks parse."""
    installed = Path(collections_dir).resolve() / "ansible_collections" / NAMESPACE / NAME
    env = installed_env(collections_dir, workdir, venv)
    listing = run([venv_bin("ansible-galaxy", venv), "collection", "list", FQCN, "--format",
                   "json"], cwd=workdir, env=env, what="ansible-galaxy collection list").output
    data = json.loads(listing[listing.index("{"):])
    paths = [p for p, colls in data.items() if FQCN in colls]
    if [str(Path(p).resolve()) for p in paths] != [str(installed.parents[1])]:
        raise EcoError("trustzone.pki resolves from %s, not only from %s" % (
            paths, installed.parents[1]))
    _proc, doc = ansible_doc_json("module", "node", Path(collections_dir).resolve(), venv)
    filename = (doc.get("doc") or {}).get("filename", "")
    if not filename.startswith(str(installed)):
        raise EcoError("ansible-doc reads trustzone.pki.node from %s" % filename)
    inventory = installed / "inventories" / "example"
    if not inventory.is_dir():
        inventory = REPO / "inventories" / "example"
    results = {}
    for playbook in sorted((installed / "playbooks").glob("*.yml")):
        proc = run([venv_bin("ansible-playbook", venv), "-i", inventory, playbook,
                    "--syntax-check"], cwd=workdir, env=env, timeout=300,
                   what="ansible-playbook --syntax-check %s (installed)" % playbook.name)
        results[playbook.name] = proc.seconds
    return results


def recap(output):
    stats = {}
    for line in output.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            stats[match.group(1)] = {k: int(v) for k, v in
                                     re.findall(r"(\w+)=(\d+)", match.group(2))}
    return stats


def lab(*args, check=True, timeout=600):
    return run([sys.executable, REPO / "scripts" / "lab"] + list(args), cwd=REPO,
               env=tool_env(), timeout=timeout, check=check, what="scripts/lab %s" % args[0])


def lab_available():
    return shutil.which("podman") is not None and os.geteuid() == 0


def run_site_on_lab(collections_dir, workdir, venv=VENV, prefix=LAB_PREFIX, zone=LAB_ZONE):
    """Start a one-node lab fleet, run the INSTALLED playbooks/site.yml on it twice (the
    second run must change nothing), remove the fleet. Returns the two runs' seconds."""
    inventory = REPO / ".lab" / prefix / "hosts.yml"
    lab("up", "--prefix", prefix, "--nodes", "1", "--zone", zone, "--inventory", inventory)
    try:
        return run_site_twice(collections_dir, workdir, inventory, venv)
    finally:
        lab("down", "--prefix", prefix, check=False)


def run_site_twice(collections_dir, workdir, inventory, venv=VENV, outputs=None):
    """Run the INSTALLED playbooks/site.yml on ``inventory`` twice: the first run succeeds
    everywhere, the second changes nothing. Returns the two runs' seconds; their output is
    appended to the list ``outputs`` when given."""
    installed = Path(collections_dir).resolve() / "ansible_collections" / NAMESPACE / NAME
    env = installed_env(collections_dir, workdir, venv)
    times = []
    for attempt in ("first", "second"):
        proc = run([venv_bin("ansible-playbook", venv), "-i", inventory,
                    installed / "playbooks" / "site.yml"], cwd=workdir, env=env,
                   timeout=900, what="installed site.yml (%s run)" % attempt)
        stats = recap(proc.output)
        if not stats or any(s.get("failed") or s.get("unreachable") for s in stats.values()):
            raise EcoError("installed site.yml %s run: %s\n%s"
                           % (attempt, stats, tail(proc.output)))
        if attempt == "second" and any(s.get("changed") for s in stats.values()):
            raise EcoError("installed site.yml is not idempotent: %s\n%s" % (
                stats, tail(proc.output)))
        times.append(proc.seconds)
        if outputs is not None:
            outputs.append(proc.output)
    return times


# --------------------------------------------------------------------------- EE
def ee_create(context, ee_file=REPO / "execution-environment.yml"):
    """``ansible-builder create`` for ``ee_file`` into ``context``; returns the Containerfile.
    Files the EE names (meta/ee-requirements.txt, the collection tarball) are relative to
    ``ee_file``'s directory."""
    context = Path(context).resolve()
    proc = run([venv_bin("ansible-builder"), "create", "--file", ee_file, "--context",
                context], cwd=Path(ee_file).parent, env=tool_env(), timeout=300,
               what="ansible-builder create")
    containerfile = context / "Containerfile"
    if not containerfile.exists():
        raise EcoError("ansible-builder create wrote no Containerfile:\n%s" % proc.output)
    return containerfile


# --------------------------------------------------------------------------- CLI
def _timed(label, func, *args):
    started = time.monotonic()
    result = func(*args)
    log("%s: ok (%.1f s)" % (label, time.monotonic() - started))
    return result


def cli_docs(args):
    ensure_deps()
    index = _timed("docs site", docs_site, args.dest)
    print(index)
    return 0


def cli_changelog(args):
    ensure_deps()
    _timed("antsibull-changelog lint", changelog_lint)
    differ = _timed("antsibull-changelog release", changelog_release, True)
    for rel in differ:
        log("updated %s" % rel)
    if not differ:
        log("CHANGELOG.md and changelogs/changelog.yaml were up to date")
    return 0


def cli_tool(args):
    ensure_deps()
    if args.command == "deps":
        return 0
    if args.command == "sanity":
        print(_timed("ansible-test sanity", sanity).output)
    elif args.command == "units":
        print(_timed("ansible-test units", units).output)
    elif args.command == "lint":
        print(_timed("ansible-lint", lint).output)
    elif args.command == "build":
        print(_timed("build", build, args.dest or REPO))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/ecosystem",
                                     description=__doc__.split("\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    docs = sub.add_parser("docs", help="build the HTML docs site (antsibull-docs + Sphinx)")
    docs.add_argument("--dest", default=str(REPO / ".cache" / "docs-site"),
                      help="output directory (default .cache/docs-site)")
    docs.set_defaults(func=cli_docs)
    chg = sub.add_parser("changelog", help="fold changelogs/fragments into the galaxy.yml "
                                           "version: changelog.yaml and CHANGELOG.md")
    chg.set_defaults(func=cli_changelog)
    for name, text in (("deps", "install requirements-ecosystem.txt into .venv"),
                       ("sanity", "ansible-test sanity on a staged copy"),
                       ("units", "ansible-test units on a staged copy"),
                       ("lint", "ansible-lint (.ansible-lint)"),
                       ("build", "ansible-galaxy collection build (from a staged copy)")):
        cmd = sub.add_parser(name, help=text)
        if name == "build":
            cmd.add_argument("--dest", help="output directory (default: the checkout)")
        cmd.set_defaults(func=cli_tool)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EcoError as exc:
        print("ecosystem: FAILED: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
