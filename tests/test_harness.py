"""Workers: one per backend, faults cost only their own runs, missing frameworks are skipped."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, cli

from wdparity.judge.check import TIMING_FIELDS

FAULTS = ",".join(f"{n}=fault_backends.faulty:{n}" for n in ("raises", "crashes", "hangs", "garbage", "missing"))
ENV = {"WDPARITY_EXTRA_BACKENDS": FAULTS, "PYTHONPATH": str(ROOT / "tests")}

RUN = """
[runs.{name}]
backend = "{backend}"
optimizer = "sgd"
lr = 0.003
"""


def case_with(*backends: str) -> str:
    text = 'title = "faults"\nclaim = "equivalent"\n[task]\nepochs = 1\n'
    return text + "".join(RUN.format(name=f"r{i}_{b}", backend=b) for i, b in enumerate(backends))


@pytest.mark.parametrize("fault,status,words", [
    ("raises", "error", "deliberate failure inside train"),
    ("crashes", "error", "exited with code 3"),
    ("garbage", "error", "bad trajectory"),
    ("missing", "skipped", "pip install a-framework"),
])
def test_a_faulty_backend_costs_only_its_own_runs(write_case, fault, status, words):
    path = write_case(case_with("numpy", fault, "numpy"))
    proc = cli("check", str(path), "--json", env=ENV)
    out = json.loads(proc.stdout)
    runs = out["runs"]
    assert runs[f"r1_{fault}"]["status"] == status and words in runs[f"r1_{fault}"]["reason"]
    assert runs["r0_numpy"]["status"] == "ok" and runs["r2_numpy"]["status"] == "ok"
    ok_pair = [p for p in out["pairs"] if {p["a"], p["b"]} == {"r0_numpy", "r2_numpy"}][0]
    assert ok_pair["verdict"] == "equivalent"
    assert proc.returncode == (1 if status == "error" else 0)


def test_a_hanging_backend_times_out(write_case):
    path = write_case(case_with("numpy", "hangs", "numpy"))
    proc = cli("check", str(path), "--json", "--timeout", "5", env=ENV)
    out = json.loads(proc.stdout)
    assert out["runs"]["r1_hangs"]["status"] == "error" and "timed out after 5 s" in out["runs"]["r1_hangs"]["reason"]
    assert out["runs"]["r0_numpy"]["status"] == "ok"
    assert proc.returncode == 1


def test_interpreter_override_that_does_not_exist_skips_with_reason(write_case):
    path = write_case(case_with("numpy", "numpy"))
    proc = cli("check", str(path), "--json", "--python", "numpy=/nonexistent/python")
    out = json.loads(proc.stdout)
    assert all(r["status"] == "skipped" and "/nonexistent/python" in r["reason"] for r in out["runs"].values())
    assert out["claim"]["holds"] is None


def test_interpreter_override_runs_the_worker_with_that_interpreter(write_case):
    path = write_case(case_with("numpy", "numpy"))
    proc = cli("check", str(path), "--json", "--python", f"numpy={sys.executable}")
    out = json.loads(proc.stdout)
    assert all(r["status"] == "ok" for r in out["runs"].values())


def test_core_imports_no_framework():
    """Importing wdparity and running a numpy-only check loads no deep-learning framework."""
    code = f"""
import sys
from wdparity.judge.check import check_cases
res = check_cases([{str(ROOT / 'comparisons/penalty_vs_coupled.toml')!r}])
assert res[0].json["claim"]["holds"] is True
frameworks = ("torch", "tensorflow", "keras", "jax", "optax", "mxnet", "flax", "paddle", "mlx", "ray")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in frameworks)
print(",".join(loaded))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_same_case_twice_gives_identical_json_apart_from_timings():
    a = json.loads(cli("check", str(ROOT / "comparisons/adam_coupled_vs_decoupled.toml"), "--json").stdout)
    b = json.loads(cli("check", str(ROOT / "comparisons/adam_coupled_vs_decoupled.toml"), "--json").stdout)
    for doc in (a, b):
        for run in doc["runs"].values():
            for key in TIMING_FIELDS:
                run.pop(key, None)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
