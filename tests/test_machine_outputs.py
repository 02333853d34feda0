"""Outputs for machines: --junit (run, check), --trajectories (run, check), translate --json, sweep --csv, and
their bad arguments (exit 2 with one line naming the option and the value, before anything runs)."""

from __future__ import annotations

import csv
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import WRONG_CLAIM

from wdparity import cli

ROOT = Path(__file__).resolve().parents[1]
PASSING = ROOT / "comparisons" / "adam_coupled_vs_decoupled.toml"
FAILING = WRONG_CLAIM
# a run whose interpreter is missing is skipped, as a run of a framework that is not installed
SKIPPED = """title = "a run that cannot start"
claim = "equivalent"
[task]
epochs = 1
[runs.a]
backend = "numpy"
optimizer = "sgd"
lr = 0.01
[runs.b]
backend = "numpy"
optimizer = "sgd"
lr = 0.01
python = "/nonexistent/bin/python"
"""
SWEEP = """title = "a tiny lambda sweep"
[task]
epochs = 1
[sweep]
values = [0.0, 0.1, 1.0]
[conventions.penalty]
label = "loss + c*||w||^2"
key = "penalty.l2"
factor = 0.5
[conventions.penalty.run]
backend = "numpy"
optimizer = "sgd"
lr = 0.003
penalty = { l2 = 0.0, params = ["weight"] }
[conventions.coupled]
label = "coupled L2"
key = "decay.0.coefficient"
[conventions.coupled.run]
backend = "numpy"
optimizer = "sgd"
lr = 0.003
decay = [{ coupling = "gradient", coefficient = 0.0, params = ["weight"] }]
"""


@pytest.fixture
def catalogue(tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(PASSING, cases / "passing.toml")
    (cases / "failing.toml").write_text(FAILING)
    (cases / "skipped.toml").write_text(SKIPPED)
    return cases


def test_run_writes_junit_and_trajectories(catalogue, tmp_path, capsys):
    junit, traj = tmp_path / "ci" / "report.xml", tmp_path / "traj"
    code = cli.main(["run", str(catalogue), "--out", str(tmp_path / "out"), "--no-plots",
                     "--junit", str(junit), "--trajectories", str(traj)])
    assert code == 1   # the failing claim
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("3", "1", "1", "0")
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    assert set(cases) == {"passing", "failing", "skipped"}
    assert {tc.get("classname") for tc in cases.values()} == {str(catalogue)}
    failure = cases["failing"].find("failure")
    assert "claim equivalent fails" in failure.get("message")
    assert "pairs" in failure.text and "coupling" in failure.text and "\x1b[" not in failure.text
    assert "does not exist" in cases["skipped"].find("skipped").get("message")
    assert cases["passing"].find("failure") is None and cases["passing"].find("skipped") is None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["numpy"] == np.__version__ and "wdparity" in props

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    case = next(c for c in report["cases"] if c["case"].endswith("passing.toml"))
    for name, run in case["runs"].items():
        with np.load(traj / f"passing__{name}.npz") as npz:
            steps = int(npz["steps"])
            assert npz["weight"].shape == (steps + 1, 200) and npz["bias"].shape == (steps + 1,)
            assert str(npz["dtype"]) == run["dtype"] == "float32"
            assert np.linalg.norm(npz["weight"][-1].astype(np.float64)) == pytest.approx(run["final"]["weight_l2"], rel=1e-12)
            assert float(npz["bias"][-1]) == pytest.approx(run["final"]["bias"], rel=1e-12, abs=1e-300)
            assert run["final"]["step"] == steps
    assert not list(traj.glob("skipped__b.npz"))   # a run that never trained has no trajectory


def test_check_writes_junit(tmp_path, capsys):
    junit = tmp_path / "check.xml"
    assert cli.main(["check", str(PASSING), "--junit", str(junit), "--trajectories", str(tmp_path / "t")]) == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("1", "0", "0")
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [f"{PASSING.stem}__coupled.npz",
                                                                   f"{PASSING.stem}__decoupled.npz"]


def test_translate_json(capsys):
    assert cli.main(["translate", str(PASSING), "--run", "decoupled", "--to", "torch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exact"] is True and out["residual"] == 0.0 and out["differences"] == []
    assert out["table"]["backend"] == "torch" and out["table"]["optimizer"] == "AdamW"
    assert out["name"] == "decoupled_as_torch" and out["toml"].startswith("# exact")
    assert set(out) >= {"table", "exact", "residual", "tolerance", "differences", "notes"}


def test_sweep_csv(tmp_path, capsys):
    grid = tmp_path / "tiny.toml"
    grid.write_text(SWEEP)
    path = tmp_path / "sweep.csv"
    assert cli.main(["sweep", str(grid), "--out", str(tmp_path / "out"), "--no-plots", "--csv", str(path)]) == 0
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 6
    assert [r["convention"] for r in rows] == ["penalty"] * 3 + ["coupled"] * 3
    assert {r["status"] for r in rows} == {"ok"} and {float(r["lr"]) for r in rows} == {0.003}
    doc = json.loads((tmp_path / "out" / "sweep.json").read_text())
    configs = doc["sweeps"][0]["conventions"]["coupled"]["configs"]
    assert [float(r["test_loss"]) for r in rows[3:]] == [c["test_loss"] for c in configs]
    assert [float(r["lambda"]) for r in rows[3:]] == [0.0, 0.1, 1.0]
    # penalty c*||w||^2 with c = lambda/2 is coupled L2 lambda: the same final loss
    assert [float(r["train_loss"]) for r in rows[:3]] == pytest.approx([float(r["train_loss"]) for r in rows[3:]], rel=1e-5)   # float32 rounding apart


@pytest.mark.parametrize("argv, option", [
    (["check", str(PASSING), "--junit", "{tmp}"], "--junit"),
    (["run", str(PASSING), "--junit", "{tmp}/afile/x.xml"], "--junit"),
    (["run", str(PASSING), "--trajectories", "{tmp}/afile"], "--trajectories"),
    (["check", str(PASSING), "--trajectories", "{tmp}/afile/sub"], "--trajectories"),
    (["sweep", "sweeps/d2l_lambda_sweep.toml", "--csv", "{tmp}"], "--csv"),
    (["sweep", "sweeps/d2l_lambda_sweep.toml", "--csv", "{tmp}/afile/x.csv"], "--csv"),
])
def test_bad_output_paths_exit_2_before_anything_runs(argv, option, tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("previous")
    import wdparity.judge.check as check

    monkeypatch.setattr(check, "check_cases", lambda *a, **k: pytest.fail("ran before the arguments were checked"))
    monkeypatch.chdir(ROOT)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + (["--out", str(out)] if argv[0] != "check" else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"`{option}`" in err[0] and str(tmp_path) in err[0]
    assert (tmp_path / "afile").read_text() == "keep me" and (out / "report.json").read_text() == "previous"
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
