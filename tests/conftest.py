"""Shared test helpers: write case files, run the CLI in-process or as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_case(tmp_path):
    def write(text: str, name: str = "case.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `wdparity ARGS` in a fresh interpreter, as a user would."""
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "wdparity.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=600)


@pytest.fixture
def bad_run(write_case):
    """The InputError that loading a case with `run` (a backend's keys) raises, via a real TOML file."""
    from wdparity.run.cases import load_case
    from wdparity.spec.errors import InputError
    from wdparity.tools.translate import toml_value

    def load(backend: str, run: dict, task: str = ""):
        body = "\n".join(f"{k} = {toml_value(v)}" for k, v in run.items())
        path = write_case(f'title = "t"\n[task]\n{task}\n[runs.a]\nbackend = "{backend}"\n{body}\n'
                          '[runs.b]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.1\n')
        with pytest.raises(InputError) as err:
            load_case(path)
        return err.value
    return load


def _green(cases: dict, dtype: str) -> dict:
    """Train every battery case natively: each holds against its own describe() (1e-9 relative in float64)."""
    from wdparity.judge import fidelity

    report = fidelity.run_battery(cases, dtype)
    failed = {k: (v["status"], v.get("reason"), v.get("max_rel_err"), v.get("tol")) for k, v in report.items()
              if v["status"] != "ok" or not v["holds"]}
    assert not failed
    if dtype == "float64":
        assert max(v["max_rel_err"] for v in report.values()) <= 1e-9
    return report


def assert_battery_green(name: str, dtype: str, realized: int, inexpressible: int) -> dict:
    """The whole fidelity battery of backend `name`: every case runs and meets the reference of its own
    describe() (1e-9 relative in float64); the counts pin how much of the neutral battery it expresses."""
    from wdparity.judge import fidelity

    cases, refused = fidelity.native_battery(name)
    extras = len(fidelity.registry.get(name).battery_extras())
    assert (len(cases), len(refused)) == (realized + extras, inexpressible)
    return _green(cases, dtype)


def assert_network_battery_green(name: str, dtype: str, realized: int, inexpressible: int) -> dict:
    """The network battery (judge/network_battery.py) of backend `name`: every case meets the reference of its own
    describe() tensor by tensor (1e-9 relative in float64); the counts pin how much of it the backend expresses."""
    from wdparity.judge import network_battery

    cases, refused = network_battery.network_battery(name)
    assert (len(cases), len(refused)) == (realized, inexpressible), sorted(refused.items())[:3]
    return _green(cases, dtype)


def detects_a_wrong_model(backend, case: str, mutate) -> None:
    """A native battery case of `backend` meets its own describe() in float64 and fails the semantics `mutate`
    changes (a neighbouring model), so the battery can tell the two apart."""
    from wdparity.engine.data import make_data
    from wdparity.judge import fidelity
    from wdparity.spec.models import Task

    task_over, run = backend.battery_extras()[case]
    task = Task.model_validate({**fidelity.BATTERY_TASK, **task_over, "dtype": "float64"})
    sem = backend.describe(backend.parse(run), task).neutral()
    data = make_data(task.model_dump())
    job = {"task": task.model_dump(), "run": backend.parse(run).model_dump(), "semantics": sem, "dtype": "float64"}
    native = backend.train(job, data)
    assert fidelity.fidelity(sem, native, data, task.batch_size, "float64")["holds"]
    wrong = json.loads(json.dumps(sem))
    mutate(wrong)
    assert not fidelity.fidelity(wrong, native, data, task.batch_size, "float64")["holds"]


def probe_by_x64(code: str):
    """A probe run once per JAX_ENABLE_X64 setting and remembered: get(x64) -> its JSON (which reports "x64")."""
    cache: dict = {}

    def get(x64: bool) -> dict:
        if x64 not in cache:
            cache[x64] = run_probe(code, env={"JAX_ENABLE_X64": "1" if x64 else "0"})
            assert cache[x64]["x64"] is x64
        return cache[x64]
    return get


def run_probe(code: str, env: dict | None = None) -> dict:
    """Run a measuring script in a fresh interpreter; it prints one JSON object on its last line."""
    import os

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_json(path: Path, *extra: str) -> tuple[int, dict]:
    proc = cli("check", str(path), "--json", *extra)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


# A case whose claim does not hold (Adam + L2 is not AdamW): the failing case of the plugin and machine-output tests
WRONG_CLAIM = """title = "Adam + L2 is AdamW (it is not)"
claim = "equivalent"
[task]
epochs = 2
[runs.coupled]
backend = "numpy"
optimizer = "adam"
lr = 0.01
[[runs.coupled.decay]]
coupling = "gradient"
coefficient = 0.1
[runs.decoupled]
backend = "numpy"
optimizer = "adam"
lr = 0.01
[[runs.decoupled.decay]]
coupling = "decoupled"
coefficient = 0.1
scale = "lr"
"""
