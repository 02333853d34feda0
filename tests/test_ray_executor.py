"""`--executor ray` (run/ray_executor.py) on a real local Ray: the same reports as the local executor apart from
timing and memory fields, for run, check, sweep and the release matrix; two nodes of a `ray.cluster_utils.Cluster`
share the workers, and a node killed while it trains costs only the runs of the worker it held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, cli

from wdparity.judge.check import check_cases, without_timing

ray = pytest.importorskip("ray", reason='Ray is an extra: pip install "wdparity[ray]"')
pytestmark = pytest.mark.slow

CASES = [str(ROOT / "comparisons" / name) for name in (
    "penalty_vs_coupled.toml",                        # numpy
    "l1_at_zero_torch_vs_jax_vs_mxnet.toml",          # torch, optax, MXNet's own venv
    "keras_l1_regularizer_at_zero_backends.toml",     # Keras on three backends: one worker per KERAS_BACKEND
)]
FAULTS = "slow=fault_backends.faulty:slow"


def test_run_reports_are_the_local_executors(tmp_path):
    local, remote = tmp_path / "local", tmp_path / "ray"
    a = cli("run", *CASES, "--out", str(local), "--no-plots")
    b = cli("run", *CASES, "--out", str(remote), "--no-plots", "--executor", "ray")
    assert a.returncode == b.returncode == 0, (a.stderr[-2000:], b.stderr[-2000:])
    assert "workers run on Ray" in b.stderr and "workers run on Ray" not in a.stderr
    doc_a, doc_b = (json.loads((d / "report.json").read_text()) for d in (local, remote))
    assert len(doc_a["cases"]) == 3 and all(c["claim"]["holds"] for c in doc_a["cases"])
    assert without_timing(doc_a) == without_timing(doc_b)
    assert (local / "report.md").read_text() != ""   # the human report is written by both


def test_check_and_sweep_are_the_local_executors(tmp_path):
    case = str(ROOT / "comparisons/adam_coupled_vs_decoupled.toml")
    a, b = (cli("check", case, "--json", *extra) for extra in ((), ("--executor", "ray")))
    assert a.returncode == b.returncode and without_timing(json.loads(a.stdout)) == without_timing(json.loads(b.stdout))
    sweep = str(next((ROOT / "sweeps").glob("*.toml")))
    for name, extra in (("local", ()), ("ray", ("--executor", "ray"))):
        proc = cli("sweep", sweep, "--out", str(tmp_path / name), "--no-plots", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
    sa, sb = (json.loads((tmp_path / n / "sweep.json").read_text()) for n in ("local", "ray"))
    assert without_timing(sa) == without_timing(sb)


def test_the_release_matrix_is_the_local_executors(tmp_path):
    """Every release of the matrix is submitted at once under Ray; the release report is the same."""
    from wdparity.tools.releases import installed_version
    from wdparity_backends import release_setup as rs

    version = installed_version(rs.FRAMEWORKS["optax"])
    case = str(ROOT / "comparisons/adam_coupled_vs_decoupled.toml")
    extra = [str(ROOT / "comparisons/l1_at_zero_torch_vs_jax_vs_mxnet.toml")]
    docs = []
    for name, more in (("local", ()), ("ray", ("--executor", "ray"))):
        proc = cli("run", case, *extra, "--out", str(tmp_path / name), "--releases", f"optax={version}", "--no-setup",
                   *more)
        assert proc.returncode == 0, proc.stderr[-2000:]
        docs.append(json.loads((tmp_path / name / "releases.json").read_text()))
    assert without_timing(docs[0]) == without_timing(docs[1])
    assert docs[0]["frameworks"]["optax"]["releases"][0]["version"] == version


@pytest.mark.parametrize("args,words", [
    (("--executor", "dask"), "`--executor` must be one of ['local', 'ray']. Received: --executor=\"dask\""),
    (("--ray-address", "127.0.0.1:6379"), "`--ray-address` needs --executor ray"),
    (("--executor", "ray", "--ray-address", "127.0.0.1:1"), "`--ray-address` must be a reachable Ray cluster"),
    (("--executor", "ray", "--ray-address", "no-port"), "`--ray-address` must be HOST:PORT"),
])
def test_bad_executor_arguments_are_one_line_exit_2(args, words):
    proc = cli("check", str(ROOT / "comparisons/penalty_vs_coupled.toml"), *args)
    assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_bad_ray_address_names_the_environment_variable():
    proc = cli("check", str(ROOT / "comparisons/penalty_vs_coupled.toml"), "--executor", "ray",
               env={"RAY_ADDRESS": "127.0.0.1:1"})
    assert proc.returncode == 2 and "`RAY_ADDRESS` must be a reachable Ray cluster" in proc.stderr, proc.stderr


def test_the_local_executor_never_imports_ray():
    code = f"""
import sys
from wdparity.cli import main
rc = main(["check", {str(ROOT / 'comparisons/penalty_vs_coupled.toml')!r}, "--json"])
print("RC", rc, sorted(m for m in sys.modules if m.split(".")[0] == "ray"))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().splitlines()[-1] == "RC 0 []", proc.stderr[-2000:]


@pytest.fixture
def two_nodes(tmp_path, monkeypatch):
    """A head that takes no work and two one-CPU nodes, each its own raylet on this machine; the environment the
    nodes start with carries the test backends (their workers' environment is the node's)."""
    from ray.cluster_utils import Cluster

    marker = tmp_path / "slow.pid"
    monkeypatch.setenv("WDPARITY_TEST_MARKER", str(marker))
    monkeypatch.setenv("WDPARITY_EXTRA_BACKENDS", FAULTS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    fast = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": fast})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        yield cluster, nodes, marker
    finally:
        cluster.shutdown()


def test_two_nodes_share_the_workers_and_report_as_local(two_nodes):
    from wdparity.run import executors
    from wdparity.run.ray_executor import RayExecutor

    cluster, _, _ = two_nodes
    local = [without_timing(r.json) for r in check_cases(CASES[:2])]
    with executors.using(RayExecutor(cluster.address)) as ex:   # an address: wdparity shipped as py_modules
        remote = [without_timing(r.json) for r in check_cases(CASES[:2])]
        wheres = {entry["where"] for entry in ex.log}
        assert "2 nodes" in ex.describe() or "3 nodes" in ex.describe()
    assert remote == local
    assert len(wheres) == 2, ex.log   # both worker nodes trained


def _raylet_of(pid: int, nodes) -> object:
    """The node whose raylet is an ancestor of process `pid` (worker -> Ray worker -> raylet)."""
    raylets = {n.all_processes["raylet"][0].process.pid: n for n in nodes}
    for _ in range(6):
        if pid in raylets:
            return raylets[pid]
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise AssertionError("the slow worker is not under either node's raylet")


def test_a_killed_node_costs_only_the_runs_it_held(two_nodes, write_case):
    from wdparity.run import executors
    from wdparity.run.ray_executor import RayExecutor

    cluster, nodes, marker = two_nodes
    text = 'title = "a node dies"\nclaim = "equivalent"\n[task]\nepochs = 1\n'
    for name, backend in (("r0_numpy", "numpy"), ("r1_slow", "slow"), ("r2_numpy", "numpy")):
        text += f'[runs.{name}]\nbackend = "{backend}"\noptimizer = "sgd"\nlr = 0.003\n'
    path = write_case(text)
    import threading

    found: dict = {}
    with executors.using(RayExecutor(cluster.address)):
        th = threading.Thread(target=lambda: found.setdefault("res", check_cases([str(path)])[0].json), daemon=True)
        started = time.monotonic()
        th.start()
        while not marker.exists():
            assert time.monotonic() - started < 120 and th.is_alive(), "the slow run never started"
            time.sleep(0.2)
        victim = _raylet_of(int(marker.read_text()), nodes)
        cluster.remove_node(victim, allow_graceful=False)
        th.join(timeout=120)
        assert not th.is_alive(), "the driver did not notice the dead node"
        after = check_cases([CASES[0]])[0].json   # the cluster still runs on the surviving node
    runs = found["res"]["runs"]
    assert runs["r1_slow"]["status"] == "error" and "lost before this run" in runs["r1_slow"]["reason"], runs["r1_slow"]
    assert time.monotonic() - started < 55   # reported when the node died, not when the run would have ended
    assert runs["r0_numpy"]["status"] == runs["r2_numpy"]["status"] == "ok"
    pair = [p for p in found["res"]["pairs"] if {p["a"], p["b"]} == {"r0_numpy", "r2_numpy"}][0]
    assert pair["verdict"] == "equivalent"
    assert after["claim"]["holds"] is True
