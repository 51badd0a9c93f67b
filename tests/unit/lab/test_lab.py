"""Unit tests for the lab fleet helpers in scripts/lablib.py and scripts/lab_*.py (no podman
needed)."""

import ipaddress
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

yaml = pytest.importorskip("yaml")  # PyYAML comes with ansible-core

sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
sys.path.insert(0, str(REPO / "scripts"))
# pylint: disable=wrong-import-position,import-error
import lab_inventory  # noqa: E402
import lab_plan  # noqa: E402
import lab_podman  # noqa: E402
import lab_ssh  # noqa: E402
import lablib  # noqa: E402


# -- names -------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["tzlab", "tzt1", "a", "e2e-run-7", "x" * 20])
def test_valid_prefixes(prefix):
    assert lab_plan.validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "1abc", "TZ", "tz_lab", "tz.lab", "x" * 21, "tz-", "tz lab"])
def test_invalid_prefixes(prefix):
    with pytest.raises(lab_plan.LabError):
        lab_plan.validate_prefix(prefix)


@pytest.mark.parametrize("zone,ok", [("lab", True), ("zone-2", True), ("-x", False),
                                     ("a.b", False), ("Lab", False), ("", False)])
def test_zone_validation(zone, ok):
    if ok:
        assert lab_plan.validate_zone(zone) == zone
    else:
        with pytest.raises(lab_plan.LabError):
            lab_plan.validate_zone(zone)


def test_stable_hash_is_deterministic():
    assert lab_plan.stable_hash("tzlab") == lab_plan.stable_hash("tzlab")
    assert lab_plan.stable_hash("tzlab") != lab_plan.stable_hash("tzt1")


# -- subnets -----------------------------------------------------------------

def test_choose_subnet_is_in_pool_and_deterministic():
    a = lab_plan.choose_subnet("tzlab", [])
    assert a == lab_plan.choose_subnet("tzlab", [])
    assert a.prefixlen == 24
    assert a.subnet_of(ipaddress.ip_network("10.89.0.0/16"))
    assert a != ipaddress.ip_network("10.89.0.0/24")  # podman's own first pick


def test_choose_subnet_skips_used_and_overlapping():
    first = lab_plan.choose_subnet("tzlab", [])
    second = lab_plan.choose_subnet("tzlab", [str(first)])
    assert second != first
    # a wider used network (e.g. a host route) blocks every /24 inside it
    wide = ipaddress.ip_network(first).supernet(new_prefix=20)
    third = lab_plan.choose_subnet("tzlab", [wide])
    assert not third.overlaps(wide)
    # an address route (/32) inside a candidate blocks it too
    host_route = f"{first.network_address + 5}/32"
    assert lab_plan.choose_subnet("tzlab", [host_route]) != first


def test_choose_subnet_two_prefixes_never_collide_when_registered():
    used = []
    for prefix in ["tzlab", "tzt1", "tzt2", "tzt3"]:
        net = lab_plan.choose_subnet(prefix, used)
        assert all(not net.overlaps(ipaddress.ip_network(u)) for u in used)
        used.append(str(net))


def test_choose_subnet_exhausted():
    with pytest.raises(lab_plan.LabError):
        lab_plan.choose_subnet("tzlab", ["10.89.0.0/16"])


def test_choose_subnet_ignores_other_ip_versions():
    assert lab_plan.choose_subnet("tzlab", ["fd00::/8"]).version == 4


# -- ports -------------------------------------------------------------------

def test_default_port_base_range():
    for prefix in ["tzlab", "tzt1", "a", "zz-top"]:
        base = lab_plan.default_port_base(prefix)
        assert lab_plan.PORT_MIN <= base and base + lab_plan.MAX_NODES < lab_plan.PORT_MAX
        assert (base - lab_plan.PORT_MIN) % lab_plan.PORT_BLOCK == 0


def test_choose_port_base_default_and_fallback():
    base = lab_plan.choose_port_base("tzlab", 3, None, lambda p: True)
    assert base == lab_plan.default_port_base("tzlab")
    busy = base + 2
    moved = lab_plan.choose_port_base("tzlab", 3, None, lambda p: p != busy)
    assert moved != base and busy not in lab_plan.fleet_ports(moved, 3)
    reserved = lab_plan.choose_port_base("tzlab", 3, None, lambda p: True, reserved={base})
    assert reserved != base


def test_choose_port_base_explicit_busy_fails_clearly():
    with pytest.raises(lab_plan.LabError, match=r"2203.*already in use"):
        lab_plan.choose_port_base("tzlab", 3, 2200, lambda p: p != 2203)
    assert lab_plan.choose_port_base("tzlab", 3, 2200, lambda p: True) == 2200
    with pytest.raises(lab_plan.LabError, match="out of range"):
        lab_plan.choose_port_base("tzlab", 3, 65534, lambda p: True)


def test_port_is_free_detects_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert lab_podman.port_is_free(port) is False
        assert lab_ssh.ssh_banner(port, timeout=0.2) is False  # listens, but no SSH banner


# -- plan --------------------------------------------------------------------

def test_fleet_plan():
    plan = lab_plan.fleet_plan("tzlab", "lab", 3, "10.89.7.0/24", 24000)
    assert [h.name for h in plan] == ["ca", "node1", "node2", "node3"]
    assert [h.container for h in plan] == ["tzlab-ca", "tzlab-node1", "tzlab-node2", "tzlab-node3"]
    assert [h.ip for h in plan] == ["10.89.7.10", "10.89.7.11", "10.89.7.12", "10.89.7.13"]
    assert [h.port for h in plan] == [24000, 24001, 24002, 24003]
    assert plan[2].fqdn == "node2.lab.trustzone.test"
    with pytest.raises(lab_plan.LabError):
        lab_plan.fleet_plan("tzlab", "lab", lab_plan.MAX_NODES + 1, "10.89.7.0/24", 24000)


def test_add_host_args_cover_every_host_by_fqdn_and_short_name():
    plan = lab_plan.fleet_plan("tzlab", "lab", 2, "10.89.7.0/24", 24000)
    args = lab_plan.add_host_args(plan)
    pairs = {args[i + 1] for i in range(0, len(args), 2)}
    assert all(args[i] == "--add-host" for i in range(0, len(args), 2))
    for h in plan:
        assert f"{h.fqdn}:{h.ip}" in pairs and f"{h.name}:{h.ip}" in pairs
    assert len(pairs) == 2 * len(plan)


def test_control_path_fits_unix_socket_limit():
    cp = lab_ssh.control_path("x" * 20).replace("%C", "f" * 40)
    assert len(cp) + 17 < 104  # ssh adds a temporary 17-char suffix; macOS limit is 104


# -- YAML / inventory -------------------------------------------------------

@pytest.mark.parametrize("value", ["yes", "No", "on", "null", "~", "1.0", "0x10", "123", "a: b",
                                   "-o x", "{{ x }}", "it's", 'say "hi"', "", "#c", "10.89.1.1",
                                   "/tmp/tz-%C", "ü", "a:", "127.0.0.1", "_x", ".inf", "-1"])
def test_yaml_scalar_roundtrip(value):
    assert yaml.safe_load(lab_inventory.to_yaml({"k": value}))["k"] == value


def test_to_yaml_roundtrip_nested():
    data = {"a": {"b": [1, "x"], "c": {}, "d": True, "e": [{"f": 1}, {"g": [2]}]}, "h": None}
    assert yaml.safe_load(lab_inventory.to_yaml(data)) == data


def _inventory(tmp_path):
    plan = lab_plan.fleet_plan("tzt1", "lab", 2, "10.89.9.0/24", 26000)
    text = lab_inventory.render_inventory("tzt1", "lab", plan, tmp_path / "id_ed25519",
                                          tmp_path / "ca-passphrase")
    return text, yaml.safe_load(text)


def test_render_inventory_structure(tmp_path):
    text, inv = _inventory(tmp_path)
    assert lab_inventory.inventory_prefix(text) == "tzt1"
    children = inv["all"]["children"]
    assert list(children["trustzone_ca"]["hosts"]) == ["ca"]
    assert list(children["trustzone_nodes"]["hosts"]) == ["node1", "node2"]
    node2 = children["trustzone_nodes"]["hosts"]["node2"]
    assert node2 == {
        "ansible_host": "127.0.0.1",
        "ansible_port": 26002,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(tmp_path / "id_ed25519"),
        "trustzone_node_fqdn": "node2.lab.trustzone.test",
        "trustzone_node_addresses": ["10.89.9.12"],
        "lab_container": "tzt1-node2",
    }
    v = inv["all"]["vars"]
    assert v["ansible_python_interpreter"] == "/usr/bin/python3"
    assert v["trustzone_name"] == "lab"
    assert v["trustzone_ca_passphrase"] == (
        "{{ lookup('ansible.builtin.file', '%s') }}" % (tmp_path / "ca-passphrase"))
    for opt in ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "ControlMaster=auto",
                "ControlPersist=60s", "ControlPath=/tmp/tz-tzt1-%C"]:
        assert f"-o {opt}" in v["ansible_ssh_common_args"]


def test_render_inventory_is_stable(tmp_path):
    assert _inventory(tmp_path)[0] == _inventory(tmp_path)[0]


def test_inventory_prefix_of_foreign_file():
    assert lab_inventory.inventory_prefix("all:\n  hosts: {}\n") is None


def test_default_inventory_path():
    assert lab_inventory.default_inventory_path("tzlab") == REPO / "inventories" / "lab" / "hosts.yml"
    assert lab_inventory.default_inventory_path("tzt1") == REPO / ".lab" / "tzt1" / "hosts.yml"


# -- parsing podman / ip output ---------------------------------------------

def test_route_subnets():
    out = ('[{"dst":"default","gateway":"10.0.0.1"},{"dst":"10.88.0.0/16","dev":"podman0"},'
           '{"dst":"192.168.5.7","dev":"eth0"}]')
    assert lab_podman.route_subnets(out) == ["10.88.0.0/16", "192.168.5.7/32"]
    assert lab_podman.route_subnets("") == []


def test_network_subnets():
    out = ('[{"name":"podman","subnets":[{"subnet":"10.88.0.0/16","gateway":"10.88.0.1"}]},'
           '{"name":"tzlab-net","subnets":[{"subnet":"10.89.42.0/24"}]},{"name":"none"}]')
    assert lab_podman.network_subnets(out) == {"podman": ["10.88.0.0/16"],
                                               "tzlab-net": ["10.89.42.0/24"], "none": []}


def test_health_without_ssh_for_broken_containers(tmp_path):
    plan = lab_plan.fleet_plan("tzlab", "lab", 1, "10.89.7.0/24", 24000)
    containers = [{"Names": ["tzlab-ca"], "State": "exited", "Labels": {}}]
    status = lab_ssh.health(plan, tmp_path / "key", containers)
    assert status == {"ca": "container exited", "node1": "missing"}


def test_cli_parser():
    args = lablib.build_parser().parse_args(
        ["up", "--prefix", "tzt1", "--nodes", "2", "--inventory", "x.yml", "--port-base", "2300"])
    assert (args.prefix, args.nodes, args.inventory, args.port_base, args.suite, args.zone) == \
        ("tzt1", 2, "x.yml", 2300, "bookworm", "lab")
    args = lablib.build_parser().parse_args(["exec", "node1", "--", "getent", "hosts", "ca"])
    assert args.name == "node1" and args.cmd[-3:] == ["getent", "hosts", "ca"]


def test_choose_port_base_large_fleet_spans_consecutive_blocks():
    # 50 nodes + the ca need 51 ports: two consecutive blocks, never past PORT_MAX
    base = lab_plan.choose_port_base("tzlab", 50, None, lambda p: True)
    assert (base - lab_plan.PORT_MIN) % lab_plan.PORT_BLOCK == 0
    assert lab_plan.fleet_ports(base, 50)[-1] < lab_plan.PORT_MAX
    last = lab_plan.PORT_MAX - lab_plan.PORT_BLOCK  # a fleet of 50 cannot start in the last block
    assert lab_plan.choose_port_base("tzlab", 50, None, lambda p: p < last or p >= lab_plan.PORT_MAX) < last
    plan = lab_plan.fleet_plan("tzlab", "lab", 50, "10.89.7.0/24", base)
    assert plan[-1].ip == "10.89.7.60" and plan[-1].port == base + 50


def test_render_inventory_lines_fit_lint(tmp_path):
    """The quick start's generated inventory is linted too (ansible-lint reads every YAML
    file in the tree): no line may pass yamllint's 160 characters, even with the longest
    prefix and deep paths, and folding must not change any value."""
    prefix = "t" * 20
    plan = lab_plan.fleet_plan(prefix, "lab", 3, "10.89.9.0/24", 26000)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    text = lab_inventory.render_inventory(prefix, "lab", plan, deep / "id_ed25519", deep / "pass")
    assert max(len(line) for line in text.splitlines()) <= 160
    args = yaml.safe_load(text)["all"]["vars"]["ansible_ssh_common_args"]
    assert args == lab_ssh.ssh_common_args(prefix)


@pytest.mark.parametrize("value", ["-o A=1 " * 30, "a b", "x" * 200, "a  b " * 40,
                                   "w " * 100 + "end", "-o x=y\n" * 20])
def test_to_yaml_folding_roundtrip(value):
    data = {"k": value.strip() if "\n" not in value else value}
    assert yaml.safe_load(lab_inventory.to_yaml(data)) == data


# -- 100 nodes (issue 17 part 4) ---------------------------------------------

def test_max_nodes_reaches_100_and_fits_subnet_and_port_range():
    assert lab_plan.MAX_NODES >= 100
    # the largest fleet still fits its /24 (ca = .HOST_OFFSET, last node below .255) and one
    # run of consecutive ports inside [PORT_MIN, PORT_MAX)
    hosts = 2 ** (32 - lab_plan.SUBNET_PREFIXLEN) - 2
    assert lab_plan.HOST_OFFSET + lab_plan.MAX_NODES <= hosts
    assert lab_plan.fleet_ports(lab_plan.PORT_MIN, lab_plan.MAX_NODES)[-1] < lab_plan.PORT_MAX
    plan = lab_plan.fleet_plan("tzlab", "lab", lab_plan.MAX_NODES, "10.89.7.0/24", 24000)
    assert len(plan) == lab_plan.MAX_NODES + 1 and len({h.ip for h in plan}) == len(plan)


def test_fleet_plan_100_nodes():
    plan = lab_plan.fleet_plan("tzh12", "bench", 100, "10.89.7.0/24", 24000)
    assert len(plan) == 101
    assert plan[-1].name == "node100" and plan[-1].container == "tzh12-node100"
    assert plan[-1].ip == "10.89.7.110" and plan[-1].port == 24100
    assert plan[-1].fqdn == "node100.bench.trustzone.test"


def test_choose_port_base_100_nodes_takes_three_consecutive_blocks():
    # 100 nodes + the ca need 101 ports: three blocks of 50, starting on a block boundary
    for prefix in ("tzh12", "tzb100", "tzlab", "tzt1"):
        base = lab_plan.choose_port_base(prefix, 100, None, lambda p: True)
        assert (base - lab_plan.PORT_MIN) % lab_plan.PORT_BLOCK == 0
        ports = lab_plan.fleet_ports(base, 100)
        assert len(ports) == 101 and ports[0] >= lab_plan.PORT_MIN and ports[-1] < lab_plan.PORT_MAX
    # a start block whose 101st port would pass PORT_MAX is skipped: with only the last
    # three blocks free the fleet starts in the first of them, with only the last two there
    # is no room
    last3 = lab_plan.PORT_MAX - 3 * lab_plan.PORT_BLOCK
    assert lab_plan.choose_port_base("tzb100", 100, None, lambda p: p >= last3) == last3
    with pytest.raises(lab_plan.LabError, match="no free block of 101 ports"):
        lab_plan.choose_port_base("tzb100", 100, None,
                                  lambda p: p >= lab_plan.PORT_MAX - 2 * lab_plan.PORT_BLOCK)
    # a busy port anywhere in the 101 moves the fleet on, past the busy one
    base = lab_plan.choose_port_base("tzb100", 100, None, lambda p: True)
    busy = base + 100
    moved = lab_plan.choose_port_base("tzb100", 100, None, lambda p: p != busy)
    assert moved != base and busy not in lab_plan.fleet_ports(moved, 100)
    # ports of other fleets (reserved) count as taken too
    moved = lab_plan.choose_port_base("tzb100", 100, None, lambda p: True, reserved={base + 77})
    assert base + 77 not in lab_plan.fleet_ports(moved, 100)


def test_existing_fleets_keep_their_default_ports():
    # lifting MAX_NODES must not move any fleet that fitted before
    expected = {"tzlab": 25150, "tzt1": 30250, "a": 20500, "zz-top": 21650, "tzb10": 20300,
                "tzb50": 27050}
    for prefix, base in expected.items():
        assert lab_plan.default_port_base(prefix) == base
        assert lab_plan.choose_port_base(prefix, 3, None, lambda p: True) == base
    assert lab_plan.choose_port_base("tzb50", 50, None, lambda p: True) == 27050


def test_cli_accepts_100_nodes_and_refuses_more_than_max(tmp_path, monkeypatch):
    args = lablib.build_parser().parse_args(["up", "--prefix", "tzh12", "--nodes", "100"])
    assert args.nodes == 100 <= lab_plan.MAX_NODES
    args = lablib.build_parser().parse_args(["up", "--prefix", "tzh12", "--nodes",
                                             str(lab_plan.MAX_NODES + 1)])
    monkeypatch.setattr(lablib, "STATE_ROOT", tmp_path)
    with pytest.raises(lab_plan.LabError, match=f"between 0 and {lab_plan.MAX_NODES}"):
        lablib._up(args)  # pylint: disable=protected-access
