"""Unit tests for bench/run's pure parts: controller memory (process-tree RSS), Mitogen
selection and set-up, and the report's tables (no podman, no fleet)."""

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

sys.dont_write_bytecode = True  # keep bench/ free of __pycache__


def _load_bench():
    loader = importlib.machinery.SourceFileLoader("bench_run", str(REPO / "bench" / "run"))
    spec = importlib.util.spec_from_loader("bench_run", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


bench = _load_bench()

MIB = 1024  # KiB


# -- process tree and RSS ---------------------------------------------------

def test_parse_ppid_survives_odd_process_names():
    assert bench.parse_ppid("123 (ssh) S 45 123 123 0 -1") == 45
    assert bench.parse_ppid("77 (a) b) (c) R 9 77 77 0 -1") == 9


def test_descendants_walks_the_whole_tree_and_nothing_else():
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1, 21: 20}
    assert sorted(bench.descendants(10, parents)) == [10, 11, 12, 13]
    assert bench.descendants(13, parents) == [13]


def _fake_proc(tmp_path, procs):
    """procs: {pid: (ppid, rss_pages, pss_kib)} as /proc/<pid>/stat, statm and smaps_rollup."""
    for pid, (ppid, pages, pss) in procs.items():
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "stat").write_text("%d (python3 x) S %d 1 1 0 -1\n" % (pid, ppid))
        (d / "statm").write_text("9999 %d 100 1 0 50 0\n" % pages)
        (d / "smaps_rollup").write_text("00400000-ffffffff ---p 00000000 00:00 0 [rollup]\n"
                                        "Rss:    %d kB\nPss:    %d kB\nPss_Anon: 1 kB\n"
                                        % (pages * 4, pss))
    (tmp_path / "self").mkdir()  # not a pid: ignored
    return tmp_path


def test_tree_rss_and_pss_sum_the_tree_of_root_only(tmp_path):
    proc = str(_fake_proc(tmp_path, {100: (1, 1000, 3000), 101: (100, 200, 300),
                                     102: (101, 30, 40), 200: (1, 5000, 20000)}))
    tree = bench.descendants(100, bench.read_parents(proc))
    assert sorted(tree) == [100, 101, 102]
    assert bench.tree_rss_kib(tree, proc) == (1000 + 200 + 30) * bench.PAGE_KIB
    assert bench.tree_pss_kib(tree, proc) == 3000 + 300 + 40
    # a process that vanished between the reads is skipped, not an error
    (tmp_path / "102" / "statm").unlink()
    (tmp_path / "102" / "smaps_rollup").unlink()
    assert bench.tree_rss_kib(tree, proc) == 1200 * bench.PAGE_KIB
    assert bench.tree_pss_kib(tree, proc) == 3300


def test_poller_keeps_the_peak_and_the_pss_read_at_it(tmp_path):
    _fake_proc(tmp_path, {100: (1, 1000, 3000), 101: (100, 200, 300)})
    poller = bench.TreeRssPoller(100, proc=str(tmp_path))
    poller.sample()
    assert poller.peak_kib == 1200 * bench.PAGE_KIB and poller.peak_pss_kib == 3300
    (tmp_path / "101" / "statm").write_text("1 10 1 1 0 1 0\n")  # the tree shrinks: peak kept
    poller.sample()
    assert poller.peak_kib == 1200 * bench.PAGE_KIB and poller.peak_pss_kib == 3300


def test_run_measured_reports_tree_sum_and_largest_process(tmp_path):
    # a parent and its child each hold about 60 MiB for a second: the tree's peak is their
    # sum, the largest single process (wait4's ru_maxrss) only one of them
    script = textwrap.dedent("""
        import subprocess, sys, time
        blob = bytearray(60 * 1024 * 1024)
        if sys.argv[1] == "parent":
            child = subprocess.Popen([sys.executable, __file__, "child"])
            time.sleep(1.0)
            child.wait()
        else:
            time.sleep(1.0)
    """)
    path = tmp_path / "hog.py"
    path.write_text(script)
    rc, seconds, mem = bench.run_measured([sys.executable, str(path), "parent"])
    assert rc == 0 and seconds >= 1.0
    assert 60 * MIB <= mem["max_kib"] < 110 * MIB
    assert mem["tree_kib"] >= 115 * MIB, mem
    assert 115 * MIB <= mem["pss_kib"] <= mem["tree_kib"], mem  # the blobs are not shared
    assert bench.run_measured([sys.executable, "-c", "raise SystemExit(3)"])[0] == 3


# -- Mitogen ----------------------------------------------------------------

def test_mitogen_select():
    assert bench.mitogen_select(set(), False) == []
    assert bench.mitogen_select(set(), True) == bench.MITOGEN_FIGURES
    assert bench.mitogen_select({"floor", "ours-noop"}, True) == bench.MITOGEN_FIGURES
    assert bench.mitogen_select({"floor", "ours-noop-mitogen"}, False) == ["ours-noop-mitogen"]
    assert set(bench.MITOGEN_FIGURES) <= set(bench.FIGURES)
    assert all(f in bench.LABELS for f in bench.FIGURES)


def test_mitogen_env_points_at_the_strategy_plugin(tmp_path):
    env = bench.mitogen_env(tmp_path)
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    # the lab inventory's StrictHostKeyChecking=no, said to Mitogen (which overrides ssh's)
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert env["ANSIBLE_STRATEGY_PLUGINS"] == str(tmp_path / "ansible_mitogen" / "plugins"
                                                  / "strategy")


def test_mitogen_is_a_bench_requirement_only():
    req = (REPO / "bench" / "requirements-mitogen.txt").read_text()
    assert "mitogen==" in req
    for path in ("requirements.txt", "meta/ee-requirements.txt"):
        if (REPO / path).exists():
            assert "mitogen" not in (REPO / path).read_text().lower()
    assert bench.MITOGEN_DIR.parent == REPO / ".lab"  # outside the venv, ignored by git


def test_mitogen_setup_reports_a_failed_install(tmp_path, monkeypatch):
    # the Python running the tests (ansible-test units runs them in a copy without .venv)
    monkeypatch.setattr(bench, "VENV_BIN", Path(sys.executable).parent)
    version, why = bench.mitogen_setup(tmp_path / "m", tmp_path / "no-such-requirements.txt")
    assert version is None and why.startswith("pip install failed:")
    assert not (tmp_path / "m").exists()


def test_mitogen_setup_reports_why_ansible_cannot_load_it(tmp_path, monkeypatch):
    # an installed Mitogen whose loader refuses this ansible-core: the reason is its error
    monkeypatch.setattr(bench, "VENV_BIN", Path(sys.executable).parent)
    pkg = tmp_path / "ansible_mitogen"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "loaders.py").write_text(
        "raise ImportError('Your version of Ansible (2, 99) is too recent')\n")
    (tmp_path / "mitogen").mkdir()
    (tmp_path / "mitogen" / "__init__.py").write_text("__version__ = (0, 0, 1)\n")
    version, why = bench.mitogen_setup(tmp_path)
    assert version is None
    assert "ImportError: Your version of Ansible (2, 99) is too recent" in why


def test_first_error_line():
    log = "PLAY [x] ***\n\nERROR! the strategy plugin failed\nmore\n"
    assert bench.first_error_line(log) == "ERROR! the strategy plugin failed"
    tb = "Traceback (most recent call last):\n  File x\nModuleNotFoundError: No module named 'y'\n"
    assert bench.first_error_line(tb) == "ModuleNotFoundError: No module named 'y'"
    assert bench.first_error_line("") == "no output"


# -- report -------------------------------------------------------------------

def _mem(tree_mib, max_mib, pss_mib=None):
    return {"tree_kib": tree_mib * MIB, "max_kib": max_mib * MIB,
            "pss_kib": (pss_mib or tree_mib // 4) * MIB}


def test_table_has_memory_columns_and_mitogen_ratios():
    samples = {f: [] for f in bench.FIGURES}
    samples.update({"floor": [10.0, 12.0], "ours-noop": [11.0], "floor-mitogen": [5.0],
                    "ours-noop-mitogen": [6.0]})
    memory = {"floor": [_mem(900, 60), _mem(1000, 70)], "ours-noop": [_mem(1200, 80)]}
    lines, med, targets = bench.table(100, samples, memory)
    floor = next(x for x in lines if x.startswith("floor: 1 ping/node"))
    assert floor.split()[-3:] == ["1000M", "250M", "70M"]  # the worst run's peaks
    assert "RSS sum" in lines[2] and "PSS sum" in lines[2] and "1 proc" in lines[2]
    mito = next(x for x in lines if x.startswith("floor, mitogen_linear"))
    assert "M" not in mito.split()[-1]  # no memory samples: no RSS columns
    assert any(x.startswith("mitogen speed-up, floor ") and x.endswith("2.20x") for x in lines)
    assert any(x.startswith("mitogen speed-up, no-op ") and x.endswith("1.83x") for x in lines)
    assert all(len(x.split("  ")[0]) <= 34 for x in lines[3:])  # labels fit their column
    assert any(x.startswith("ours-noop-mitogen / floor-mitogen") and x.endswith("1.20x")
               for x in lines)
    assert med["ours-noop-mitogen"] == 6.0
    assert [t[0] for t in targets] == ["no-op <= 1.15x floor (N=100)"]  # mitogen sets no target
    # without memory (older callers) the table is as before
    lines = bench.table(100, samples)[0]
    assert all("M " not in x for x in lines[3:])


def test_lower_bounds_are_set_against_their_targets_and_set_none():
    samples = {f: [] for f in bench.FIGURES}
    samples.update({"floor": [2.0, 2.0], "ours-noop": [4.0], "ours-rotate": [28.0],
                    "bound-nodecall": [2.6], "bound-stores": [14.4]})
    lines, med, targets = bench.table(10, samples)
    assert "1.30x" in next(x for x in lines if x.startswith("bound: 1 node call/node")).split()
    assert any(x.startswith("no-op bound / floor") and "1.30x" in x
               and "above the 1.15x target: out of reach here" in x for x in lines)
    assert any(x.startswith("forced rotation bound / floor") and "7.20x" in x
               and "above the 6x target" in x for x in lines)
    assert [t[0] for t in targets] == ["no-op <= 1.15x floor (N=10)",
                                       "forced rotation <= 6x floor (N=10)"]
    samples.update({"bound-stores": [10.0]})
    lines = bench.table(10, samples)[0]
    assert any(x.startswith("forced rotation bound / floor") and "within the 6x target" in x
               for x in lines)


def test_bound_playbooks_parse_and_stay_minimal():
    import yaml
    stores = yaml.safe_load((bench.BENCH / "bound_stores.yml").read_text())
    assert [t["ansible.builtin.command"] for t in stores[0]["tasks"]] == [
        "update-ca-certificates", "update-ca-certificates --fresh"]
    call = yaml.safe_load((bench.BENCH / "bound_node_call.yml").read_text())
    check = yaml.safe_load((bench.REPO / "playbooks" / "zone_check.yml").read_text())
    node_task = next(t for t in check[0]["tasks"] if "ansible.builtin.import_tasks" in t)
    # the same files as the check round's node call, and only that call
    assert [t["ansible.builtin.import_tasks"] for t in call[0]["tasks"]] == [
        "../playbooks/" + node_task["ansible.builtin.import_tasks"]]
    assert call[0]["vars_files"] == ["../playbooks/" + f for f in check[0]["vars_files"]]


def test_growth_lines_cover_every_size():
    meds = {10: {"floor": 4.0, "ours-noop": 5.0}, 50: {"floor": 11.0, "ours-noop": 17.0},
            100: {"floor": 26.0, "ours-noop": 30.0, "ours-first": 100.0}}
    lines = bench.growth_lines(meds)
    assert "N=10" in lines[2] and "N=50" in lines[2] and "N=100" in lines[2]
    floor = next(x for x in lines if x.startswith("floor: 1 ping/node"))
    assert "0.400 (x1.00)" in floor and "0.220 (x0.55)" in floor and "0.260 (x0.65)" in floor
    assert not any(x.startswith("ours first run") for x in lines)  # not measured at every N


def test_memory_lines():
    lines = bench.memory_lines(100, {"floor": [_mem(900, 60), _mem(1000, 70), _mem(950, 65)],
                                     "ours-noop": []})
    assert "N=100" in lines[1]
    row = next(x for x in lines if x.startswith("floor: 1 ping/node"))
    assert row.split()[-4:] == ["950M", "1000M", "250M", "70M"]
    assert not any(x.startswith("ours no-op") for x in lines)


def test_bench_run_help_names_mitogen():
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "run"), "--help"], check=True,
                         capture_output=True, text=True, env=env)
    flat = "".join(out.stdout.split())  # argparse wraps lines, also at hyphens
    assert "--mitogen" in flat and "ours-noop-mitogen" in flat


def test_sign_throughput_runs_against_this_checkout():
    """bench/sign_throughput.py imports what it measures from module_utils: a rename there
    must fail here, not in the next bench/run."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "sign_throughput.py"),
                           "--certs", "20", "--repeat", "1", "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"ours' in proc.stdout
