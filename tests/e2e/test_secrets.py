"""The zone secrets key (issue 20) over a real fleet: a CA host and three Debian 12 nodes.

The tests run in file order against one fleet and build on each other: site.yml issues every
node a ``secrets`` certificate, secrets.yml installs the keyring wrapped to it (the nodes'
own ``openssl cms`` opens it), seal.yml seals a random value on the controller and every node
opens it; a second run changes nothing; a node of another zone and a node with a forged
certificate get nothing; values sealed before a root rotation open during and after it; a
pruned node is locked out of values sealed after the next rotation; and ``-vvv`` output holds
no key and no cleartext.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess

import pytest
import yaml

from conftest import REPO, VENV_BIN, ansible_env, fleet_prefix, recap

PREFIX = fleet_prefix("tzsec")
ZONE = "lab"
DIR = "/etc/trustzone/%s" % ZONE
NODES = ("node1", "node2", "node3")
OWNER = "tzsvc"  # node2's trustzone_secrets_owner
DEST = "/root/db.password"
OPEN = REPO / "tests" / "e2e" / "playbooks" / "open_secret.yml"
FORCE = ("-e", "trustzone_ca_rotate_force=true")
SECRETS_PROFILE = {"name": "secrets", "key_type": "rsa", "key_size": 3072,
                   "key_usage": ["key_encipherment"], "extended_key_usage": []}
PROFILES = [{"name": "server", "extended_key_usage": ["server_auth"]},
            {"name": "client", "extended_key_usage": ["client_auth"]}, SECRETS_PROFILE]

STATE = {}  # cleartexts, tokens, inventories, keys seen: shared by the tests in file order
OUTPUTS = []  # every playbook's output, for the last test


def inventory(fleet, path, zone=ZONE, nodes=NODES):
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["vars"]["trustzone_name"] = zone
    group = inv["all"]["children"]["trustzone_nodes"]
    group["hosts"] = {h: v for h, v in group["hosts"].items() if h in nodes}
    group["vars"] = {"trustzone_certs_profiles": PROFILES}
    if "node2" in group["hosts"] and zone == ZONE:
        group["hosts"]["node2"]["trustzone_secrets_owner"] = OWNER
    path.write_text(yaml.safe_dump(inv))
    return path


@pytest.fixture(scope="module")
def fleet(make_fleet, tmp_path_factory):
    fleet = make_fleet(PREFIX, nodes=3, zone=ZONE)
    fleet.work = tmp_path_factory.mktemp("secrets")
    fleet.inventory = inventory(fleet, fleet.work / "hosts.yml")
    fleet.sh("node2", "id %s || useradd --system --no-create-home %s" % (OWNER, OWNER))
    return fleet


# --------------------------------------------------------------------------- helpers

def run(fleet, playbook, *args, inventory=None, check=True):
    proc = fleet.playbook(playbook, *args, inventory=inventory, check=check)
    OUTPUTS.append(proc.output)
    return proc


def run_helper(fleet, playbook, *args, inventory=None, check=True):
    """A playbook of tests/e2e/playbooks (Fleet.playbook runs those of playbooks/)."""
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory or fleet.inventory),
           str(playbook), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL, check=False)
    proc.output = proc.stdout + proc.stderr
    OUTPUTS.append(proc.output)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc=%d):\n%s" % (playbook.name, proc.returncode,
                                                         proc.output[-6000:]))
    return proc


def fatal(output):
    """``{host: msg}`` of every failed task in ``output`` (the json result format)."""
    return {host: json.loads(body).get("msg", "")
            for host, body in re.findall(r"^fatal: \[(\S+)\]: FAILED! => (\{.*\})$",
                                         output, re.M)}


def seal(fleet, name, *args, inventory=None):
    """Seal a new random cleartext as ``name`` with seal.yml (the cleartext in a vars file
    passed with -e @file); remember both, return the token."""
    cleartext = "%s %s" % (name, secrets.token_urlsafe(24))
    values = fleet.work / ("seal-%s.yml" % name)
    values.write_text(yaml.safe_dump({"trustzone_seal_values": {name: cleartext}}))
    out = fleet.work / ("sealed-%s.yml" % name)
    run(fleet, "seal.yml", "-e", "@%s" % values, "-e", "trustzone_seal_output=%s" % out,
        *args, inventory=inventory)
    token = yaml.safe_load(out.read_text())["%s_sealed" % name]
    assert token.startswith("gAAAAA") and cleartext not in token
    STATE.setdefault("cleartexts", {})[name] = cleartext
    STATE.setdefault("tokens", {})[name] = token
    return token


def open_on_nodes(fleet, name, *args, inventory=None, check=True):
    """Open the token ``name`` with trustzone.pki.secret on every node of the inventory into
    DEST.<name> (the token reaches the play in a vars file)."""
    token = fleet.work / ("token-%s.json" % name)
    token.write_text(json.dumps({"open_token": STATE["tokens"][name],
                                 "open_dest": "%s.%s" % (DEST, name)}))
    return run_helper(fleet, OPEN, "-e", "@%s" % token, *args, inventory=inventory,
                      check=check)


def assert_opened(fleet, name, nodes=NODES):
    for host in nodes:
        out = fleet.sh(host, "stat -c '%%a %%U' %s.%s && cat %s.%s"
                       % (DEST, name, DEST, name)).stdout
        meta, value = out.split("\n", 1)
        assert meta == "600 root"
        assert value == STATE["cleartexts"][name], host


def keyring_on(fleet, host):
    """The keyring a node holds, opened by the node's own openssl: ``[(generation, key)]``."""
    out = fleet.sh(host, "cd %s && openssl cms -decrypt -inkey secrets.key -recip secrets.crt "
                         "-in keyring.p7m -inform PEM" % DIR).stdout
    data = json.loads(out)
    assert data["zone"] == ZONE
    keys = [(k["generation"], k["key"]) for k in data["keys"]]
    STATE.setdefault("keys", set()).update(k for _g, k in keys)
    return keys


def ca_result(output):
    """The zone_secrets task's result on the CA host (a run with -v)."""
    match = re.search(r"^(?:ok|changed): \[ca\] => (\{.*\"key_ids\".*\})$", output, re.M)
    assert match, output[-4000:]
    return json.loads(match.group(1))


def rotate_fully(fleet, inventory=None):
    """A whole root rotation, one playbook call per phase, secrets.yml after each."""
    for stop in ("trust", "use", "retire"):
        args = ("-e", "trustzone_rotate_stop_after=%s" % stop)
        run(fleet, "rotate_root.yml", *args, *(FORCE if stop == "trust" else ()),
            inventory=inventory)
        STATE.setdefault("after_phase", {})[stop] = run(fleet, "secrets.yml", "-v",
                                                        inventory=inventory)
        yield stop


# --------------------------------------------------------------------------- the tests

def test_every_node_gets_the_keyring_which_its_own_openssl_opens(fleet):
    run(fleet, "site.yml")
    for host in NODES:
        issued = fleet.sh(host, "openssl x509 -in %s/secrets.crt -noout -text" % DIR).stdout
        assert "Key Encipherment" in issued and "3072 bit" in issued
    checked = run(fleet, "secrets.yml", "--check")  # no keyring yet: says so, writes nothing
    assert "the zone's keyring would change first" in checked.output
    assert {h: s["failed"] for h, s in recap(checked.output).items()} == dict.fromkeys(
        ("ca",) + NODES, 0)
    for host in NODES:
        assert fleet.sh(host, "test -e %s/keyring.p7m" % DIR, check=False).returncode == 1
    proc = run(fleet, "secrets.yml")
    assert "create secrets key generation 1 for root" in proc.output
    stats = recap(proc.output)
    assert {h: s["changed"] for h, s in stats.items()} == dict.fromkeys(("ca",) + NODES, 1)
    owners = {"node1": "root", "node2": OWNER, "node3": "root"}
    for host in NODES:
        meta = fleet.sh(host, "stat -c '%%a %%U %%G' %s/keyring.p7m" % DIR).stdout.split()
        assert meta == ["600", owners[host], "root"], host
        keys = keyring_on(fleet, host)
        assert [g for g, _k in keys] == [1]
    assert len(STATE["keys"]) == 1  # one zone key, the same on every node


def test_a_value_sealed_on_the_controller_opens_on_every_node(fleet):
    seal(fleet, "db_password")
    proc = open_on_nodes(fleet, "db_password")
    assert {h: s["changed"] for h, s in recap(proc.output).items()} == dict.fromkeys(NODES, 1)
    assert_opened(fleet, "db_password")


def test_a_second_run_changes_nothing(fleet):
    for proc in (run(fleet, "secrets.yml"), open_on_nodes(fleet, "db_password")):
        stats = recap(proc.output)
        assert {h: s["changed"] for h, s in stats.items()} == dict.fromkeys(stats, 0), \
            proc.output[-4000:]
    assert_opened(fleet, "db_password")


def test_the_postgres_example_hands_the_password_to_every_node(fleet):
    """playbooks/examples/postgres_password.yml, without its systemd part (no systemd in
    the lab's containers): the sealed value from the inventory, a root-only file."""
    sealed = fleet.work / "example-vars.json"
    sealed.write_text(json.dumps({"app_db_password_sealed": STATE["tokens"]["db_password"],
                                  "trustzone_example_service": ""}))
    proc = run(fleet, "examples/postgres_password.yml", "-e", "@%s" % sealed)
    assert {h: s["changed"] for h, s in recap(proc.output).items()} == dict.fromkeys(NODES, 1)
    for host in NODES:
        out = fleet.sh(host, "stat -c '%%a %%U' %s/app-db-password && cat %s/app-db-password"
                       % (DIR, DIR)).stdout
        meta, value = out.split("\n", 1)
        assert meta == "600 root" and value == STATE["cleartexts"]["db_password"], host
    again = run(fleet, "examples/postgres_password.yml", "-e", "@%s" % sealed)
    assert {h: s["changed"] for h, s in recap(again.output).items()} == dict.fromkeys(NODES, 0)


def test_a_node_of_another_zone_cannot_open_the_value(fleet):
    dev = inventory(fleet, fleet.work / "dev.yml", zone="dev", nodes=("node1",))
    run(fleet, "site.yml", inventory=dev)
    run(fleet, "secrets.yml", inventory=dev)
    assert fleet.exists("node1", "/etc/trustzone/dev/keyring.p7m")
    proc = open_on_nodes(fleet, "db_password", inventory=dev, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.output
    msg = fatal(proc.output)["node1"]
    assert "\n" not in msg
    assert "does not open with zone 'dev''s secrets key" in msg, msg


def test_a_node_whose_certificate_is_not_the_one_in_the_ledger_gets_nothing(fleet):
    fleet.sh("node3", (
        "cd {d} && cp secrets.crt /tmp/secrets.crt.good && cp keyring.p7m /tmp/keyring.good && "
        "openssl req -x509 -newkey rsa:3072 -nodes -keyout /tmp/forged.key -days 30 "
        "-subj \"$(openssl x509 -in secrets.crt -noout -subject -nameopt compat | cut -d= -f2-)\" "
        "-addext keyUsage=critical,keyEncipherment -out secrets.crt 2>/dev/null").format(d=DIR))
    subjects = fleet.sh("node3", "for c in /tmp/secrets.crt.good {d}/secrets.crt; do "
                                 "openssl x509 -in $c -noout -subject; done".format(d=DIR))
    good, forged = subjects.stdout.splitlines()
    assert good == forged and "node3" in good  # the same subject, not the zone's certificate
    proc = run(fleet, "secrets.yml", check=False)
    assert proc.returncode != 0
    stats = recap(proc.output)
    assert stats["node3"]["failed"] == 1
    assert all(stats[h]["failed"] == 0 for h in ("ca", "node1", "node2"))
    msg = fatal(proc.output)["node3"]
    assert "\n" not in msg and "Traceback" not in proc.output
    assert "host node3 sent a 'secrets' certificate" in msg, msg
    assert "that is not its valid one in the CA's ledger" in msg
    # nothing was written on node3
    assert fleet.sh("node3", "cmp %s/keyring.p7m /tmp/keyring.good" % DIR,
                    check=False).returncode == 0
    # site.yml re-issues the certificate, secrets.yml wraps the keyring to it
    run(fleet, "site.yml")
    run(fleet, "secrets.yml")
    assert [g for g, _k in keyring_on(fleet, "node3")] == [1]
    open_on_nodes(fleet, "db_password")
    assert_opened(fleet, "db_password")


def test_values_sealed_before_a_root_rotation_open_during_and_after_it(fleet):
    before = {h: keyring_on(fleet, h) for h in NODES}
    for phase in rotate_fully(fleet):
        proc = open_on_nodes(fleet, "db_password")
        assert_opened(fleet, "db_password")
        if phase == "trust":
            assert all(keyring_on(fleet, h) == before[h] for h in NODES)
    # the use phase's secrets.yml added generation 2 for the new root
    assert ca_result(STATE["after_phase"]["trust"].output)["changed"] is False
    use = ca_result(STATE["after_phase"]["use"].output)
    assert [g["generation"] for g in use["generations"]] == [1, 2]
    assert len(use["changes"]) == 1 and "add secrets key generation 2" in use["changes"][0]
    retire = ca_result(STATE["after_phase"]["retire"].output)
    assert retire["changed"] is False and retire["generations"] == use["generations"]
    for host in NODES:
        assert [g for g, _k in keyring_on(fleet, host)] == [2, 1]
    assert "generation 1" in proc.output  # the old value opened with the old generation
    seal(fleet, "after_rotation")
    proc = open_on_nodes(fleet, "after_rotation")
    assert "generation 2" in proc.output
    assert_opened(fleet, "after_rotation")
    # the value sealed before, sealed again with generation 2 (seal.yml's reseal)
    reseal = fleet.work / "reseal.yml"
    reseal.write_text(yaml.safe_dump({"trustzone_seal_reseal": {
        "resealed": STATE["tokens"]["db_password"]}}))
    out = fleet.work / "resealed.yml"
    run(fleet, "seal.yml", "-e", "@%s" % reseal, "-e", "trustzone_seal_output=%s" % out)
    STATE["tokens"]["resealed"] = yaml.safe_load(out.read_text())["resealed"]
    STATE["cleartexts"]["resealed"] = STATE["cleartexts"]["db_password"]
    assert STATE["tokens"]["resealed"] != STATE["tokens"]["db_password"]
    assert "generation 2" in open_on_nodes(fleet, "resealed").output
    assert_opened(fleet, "resealed")


def test_a_pruned_node_is_locked_out_of_values_sealed_after_the_next_rotation(fleet):
    smaller = inventory(fleet, fleet.work / "without-node3.yml", nodes=("node1", "node2"))
    only3 = inventory(fleet, fleet.work / "only-node3.yml", nodes=("node3",))
    run(fleet, "prune.yml", inventory=smaller)
    for _phase in rotate_fully(fleet, inventory=smaller):
        pass
    assert "node3" not in recap(STATE["after_phase"]["use"].output)
    assert [g["generation"] for g in ca_result(STATE["after_phase"]["use"].output)
            ["generations"]] == [1, 2, 3]
    seal(fleet, "after_prune")
    open_on_nodes(fleet, "after_prune", inventory=smaller)
    assert_opened(fleet, "after_prune", nodes=("node1", "node2"))
    assert [g for g, _k in keyring_on(fleet, "node3")] == [2, 1]
    # node3 still holds the old keys: the old value opens, the new one does not
    proc = open_on_nodes(fleet, "after_rotation", inventory=only3)
    assert_opened(fleet, "after_rotation", nodes=("node3",))
    proc = open_on_nodes(fleet, "after_prune", inventory=only3, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.output
    msg = fatal(proc.output)["node3"]
    assert "does not open with zone 'lab''s secrets key" in msg, msg
    assert not fleet.exists("node3", "%s.after_prune" % DEST)
    # and the node's own openssl shows the same: no key of generation 3 on node3
    new_key = keyring_on(fleet, "node1")[0]
    assert new_key[0] == 3 and new_key not in keyring_on(fleet, "node3")


def test_no_key_and_no_cleartext_in_verbose_output(fleet):
    smaller = fleet.work / "without-node3.yml"
    verbose = [run(fleet, "secrets.yml", "-vvv", inventory=smaller).output]
    seal(fleet, "verbose", "-vvv", inventory=smaller)
    verbose.append(OUTPUTS[-1])
    verbose.append(open_on_nodes(fleet, "verbose", "-vvv", inventory=smaller).output)
    # without a destination the value is returned, and the result is hidden
    proc = open_on_nodes(fleet, "verbose", "-vvv", "-e", "open_dest=", inventory=smaller)
    verbose.append(proc.output)
    assert "censored" in proc.output and "generation 3" in proc.output
    for host in NODES:
        keyring_on(fleet, host)
    assert len(STATE["keys"]) == 3  # generations 1, 2 and 3, read on the nodes themselves
    passphrase = (REPO / ".lab" / PREFIX / "ca-passphrase").read_text().strip()
    hidden = sorted(STATE["keys"]) + sorted(STATE["cleartexts"].values()) + [passphrase]
    for output in verbose:
        assert "ESTABLISH" in output  # really -vvv
    for output in OUTPUTS:  # every run of this module, the verbose ones included
        for secret in hidden:
            assert secret not in output
