"""Which OS layout the stores role picks, for RHEL-family, Debian-family and unknown systems:
the role's own include_vars/first_found task, run on the controller with pretended facts (no
node, nothing installed or written). The trust-store layout is worked out on the node by the
node module instead (module_utils/_trust, tests/unit/plugins/module_utils/test_trust.py).

Each role runs through ``include_role`` with ``--tags`` selecting only its OS-vars task, on
an inventory of local hosts that each pretend to be one OS (``set_fact ... cacheable``, with
an in-memory fact cache so the real one is never touched). The ``ansible.posix.json``
callback reports which vars file each host loaded and the values the role then uses.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]

# host: (distribution, major version, os_family) as gather_facts reports them; None = no facts
SYSTEMS = {
    "rhel9": ("RedHat", "9", "RedHat"),
    "rocky9": ("Rocky", "9", "RedHat"),
    "alma9": ("AlmaLinux", "9", "RedHat"),
    "centos9": ("CentOS", "9", "RedHat"),
    "oracle8": ("OracleLinux", "8", "RedHat"),
    "fedora40": ("Fedora", "40", "RedHat"),
    "debian12": ("Debian", "12", "Debian"),
    "debian13": ("Debian", "13", "Debian"),
    "ubuntu24": ("Ubuntu", "24", "Debian"),
    "nofacts": None,
}
EXPECTED_FILE = {host: "RedHat.yml" for host in SYSTEMS if SYSTEMS[host] and
                 SYSTEMS[host][2] == "RedHat"}
EXPECTED_FILE.update({"debian12": "Debian.yml", "debian13": "Debian.yml",
                      "ubuntu24": "Debian.yml", "nofacts": "default.yml"})

PLAYBOOK = """
- name: Pick the OS layout of {role} with pretended facts
  hosts: all
  gather_facts: false
  tasks:
    - name: Pretend to be this host's OS
      ansible.builtin.set_fact:
        ansible_distribution: "{{{{ pretend[0] }}}}"
        ansible_distribution_major_version: "{{{{ pretend[1] }}}}"
        ansible_os_family: "{{{{ pretend[2] }}}}"
        cacheable: true
      when: pretend is not none
      tags: [always]
    - name: Run the role, limited by --tags to its OS vars
      ansible.builtin.include_role:
        name: trustzone.pki.{role}
        public: true  # the role's own vars, for the report below
      tags: [always]
    - name: Report what the role will use
      ansible.builtin.debug:
        msg: "{{{{ {report} }}}}"
      tags: [always]
"""


def ansible_playbook():
    found = Path(sys.executable).parent / "ansible-playbook"
    if found.exists():
        return str(found)
    found = REPO / ".venv" / "bin" / "ansible-playbook"
    if found.exists():
        return str(found)
    which = shutil.which("ansible-playbook")
    if which is None:
        pytest.fail("ansible-playbook not found: run scripts/bootstrap")
    return which


def run_role(tmp, role, tag, report, extra_vars):
    top = tmp / "collections"
    (top / "ansible_collections" / "trustzone").mkdir(parents=True)
    os.symlink(REPO, top / "ansible_collections" / "trustzone" / "pki")
    inventory = {"all": {"vars": {"ansible_connection": "local",
                                  "ansible_python_interpreter": sys.executable},
                         "hosts": {h: {"pretend": list(p) if p else None}
                                   for h, p in SYSTEMS.items()}}}
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "play.yml").write_text(PLAYBOOK.format(role=role, report=report))
    (tmp / "ansible.cfg").write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(top), ANSIBLE_CACHE_PLUGIN="memory",
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_DEPRECATION_WARNINGS="false")
    proc = subprocess.run([ansible_playbook(), "-i", str(tmp / "hosts.yml"),
                           str(tmp / "play.yml"), "--tags", tag,
                           "-e", json.dumps(extra_vars)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    doc = json.loads(proc.stdout[proc.stdout.index("{"):])
    loaded, reported = {}, {}
    for task in doc["plays"][0]["tasks"]:
        for host, result in task["hosts"].items():
            files = result.get("ansible_included_var_files")
            if files:
                loaded[host] = [os.path.basename(f) for f in files]
            if task["task"]["name"] == "Report what the role will use":
                reported[host] = result["msg"]
    return loaded, reported


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return run_role(
        tmp_path_factory.mktemp("stores"), "stores", "trustzone_stores_os",
        "{'packages': __trustzone_stores_packages, 'cacerts': __trustzone_stores_java_cacerts}",
        {"trustzone_name": "t", "trustzone_stores_java": True, "trustzone_stores_nss": True,
         "trustzone_stores_java_truststore_password": "unused-here"})


def this_os_family_file():
    """The stores role gathers the OS facts a play did not: for the `nofacts` host (a local
    connection) they are this machine's."""
    release = platform.freedesktop_os_release()
    ids = [release.get("ID", "")] + release.get("ID_LIKE", "").split()
    if "debian" in ids:
        return "Debian.yml"
    if {"rhel", "fedora", "centos"} & set(ids):
        return "RedHat.yml"
    return "default.yml"


@pytest.mark.parametrize("host", sorted(SYSTEMS))
def test_stores_role_loads_the_expected_vars_file(stores, host):
    loaded, _reported = stores
    expected = this_os_family_file() if host == "nofacts" else EXPECTED_FILE[host]
    assert loaded[host] == [expected]


def test_stores_role_installs_each_familys_packages(stores):
    _loaded, reported = stores
    assert reported["rhel9"] == {"packages": ["java-17-openjdk-headless", "nss-tools"],
                                 "cacerts": ""}
    assert reported["debian13"] == {"packages": ["default-jre-headless", "libnss3-tools"],
                                    "cacerts": "/etc/ssl/certs/java/cacerts"}
