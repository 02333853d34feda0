"""Bad case files and arguments: exit 2, one line naming the file, the key and the value; no traceback."""

from __future__ import annotations

import json

import pytest
from conftest import cli

GOOD_B = '[runs.b]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.1\n'
RUN_A = '[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\n'

BAD = {
    "typo_key": ('title = "x"\n' + RUN_A + 'lr = 0.1\nweight_decya = 1\n' + GOOD_B, "runs.a.weight_decya", "weight_decya=1"),
    "mask_weights": ('title = "x"\n' + RUN_A + 'lr = 0.1\ndecay = [{coefficient = 1.0, params = ["weights"]}]\n' + GOOD_B,
                     "runs.a.decay[0].params", '["weights"]'),
    "negative_lr": ('title = "x"\n' + RUN_A + 'lr = -0.1\n' + GOOD_B, "runs.a.lr", "lr=-0.1"),
    "one_run": ('title = "x"\n' + GOOD_B, "runs", 'runs=["b"]'),
    "toml_syntax": ('title = "x\n' + GOOD_B, "(toml)", "not valid TOML"),
    "unknown_backend": ('title = "x"\n[runs.a]\nbackend = "tf"\n' + GOOD_B, "runs.a.backend", 'backend="tf"'),
    "nan_noise": ('title = "x"\n[task]\nnoise = nan\n' + RUN_A + 'lr = 0.1\n' + GOOD_B, "task.noise", "nan"),
    "string_number": ('title = "x"\n' + RUN_A + 'lr = "0.1"\n' + GOOD_B, "runs.a.lr", 'lr="0.1"'),
    "empty": ("", "(file)", "must not be empty"),
    "zero_batch": ('title = "x"\n[task]\nbatch_size = 0\n' + RUN_A + 'lr = 0.1\n' + GOOD_B, "task.batch_size", "batch_size=0"),
    "bad_cause": ('title = "x"\nclaim = "diverges"\ncauses = ["vibes"]\n' + RUN_A + 'lr = 0.1\n' + GOOD_B, "causes", "vibes"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_case_file_exits_2_with_one_line(tmp_path, name):
    text, key, value = BAD[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    proc = cli("check", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and key in lines[0] and value in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_binary_file_exits_2(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    proc = cli("check", str(path))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and str(path) in proc.stderr


@pytest.mark.parametrize("args,words", [
    (["check"], "required"),
    (["check", "nothere.toml"], "nothere.toml"),
    (["frobnicate"], "frobnicate"),
    (["check", "comparisons/penalty_vs_coupled.toml", "--timeout", "soon"], "soon"),
    (["check", "comparisons/penalty_vs_coupled.toml", "--python", "numpy"], "--python"),
    (["run", "nothere/"], "nothere/"),
    (["setup", "tensorflow"], "tensorflow"),
])
def test_bad_arguments_exit_2_with_one_line(args, words):
    proc = cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- sizes against memory, internal errors
TWO_RUNS = RUN_A + 'lr = 0.1\n' + GOOD_B
HUGE = 'title = "big"\n[task]\nnum_inputs = 10000000\nn_train = 1000000000000\n' + TWO_RUNS   # the example
MODERATE = 'title = "moderate"\n[task]\nnum_inputs = 2000\nn_train = 1000\nbatch_size = 10\nepochs = 5\n' + TWO_RUNS
SMALL_BUDGET = {"WDPARITY_MEMORY_BYTES": "20000000"}   # 20 MB: the default task fits, MODERATE does not


def _one_line(proc) -> str:
    assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_task_too_big_for_memory_exits_2_with_the_estimate_and_writes_nothing(tmp_path, command):
    path = tmp_path / "big.toml"
    path.write_text(HUGE)
    out = tmp_path / "report"
    proc = cli(command, str(path), *(["--out", str(out)] if command == "run" else []))
    assert proc.returncode == 2
    line = _one_line(proc)
    assert line.startswith(f"wdparity: error: {path}: `task` needs an estimated "), line
    assert "is available" in line, line
    assert line.endswith("Received: task.num_inputs=10000000, task.n_train=1000000000000"), line
    assert not out.exists()


def test_a_moderate_task_over_the_available_memory_exits_2(tmp_path):
    path = tmp_path / "moderate.toml"
    path.write_text(MODERATE)
    proc = cli("check", str(path), "--json", env=SMALL_BUDGET)
    assert proc.returncode == 2
    line = _one_line(proc)
    assert f"{path}: `task` needs an estimated " in line and "MiB" in line, line
    assert "19.1 MiB is available (WDPARITY_MEMORY_BYTES)" in line, line
    assert "task.num_inputs=2000, task.n_train=1000, task.batch_size=10, task.epochs=5" in line, line


def test_a_task_under_the_available_memory_still_runs(write_case):
    path = write_case('title = "small"\n' + RUN_A + 'lr = 0.003\n' + GOOD_B.replace("0.1", "0.003"))
    proc = cli("check", str(path), "--json", env=SMALL_BUDGET)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert {run["status"] for run in json.loads(proc.stdout)["runs"].values()} == {"ok"}


def test_a_sweep_too_big_for_memory_exits_2_before_anything_runs(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('title = "s"\n[task]\nnum_inputs = 2000\nn_train = 1000\nbatch_size = 10\nepochs = 5\n'
                    '[sweep]\nvalues = [0.0, 0.1]\n[conventions.a]\nlabel = "a"\nkey = "penalty.l2"\n'
                    '[conventions.a.run]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.01\n')
    out = tmp_path / "report"
    for command in ("sweep", "run"):
        proc = cli(command, str(path), "--out", str(out), env=SMALL_BUDGET)
        assert proc.returncode == 2
        line = _one_line(proc)
        assert f"{path}: `task` needs an estimated " in line and "2 runs" in line, line
        assert not out.exists()


def test_the_estimate_is_arithmetic_only(monkeypatch):
    """Absurd sizes are estimated without allocating anything (no set(range(steps)), no numpy products)."""
    from wdparity.spec import budget
    from wdparity.spec.models import Task

    task = Task(num_inputs=10_000_000, n_train=10**12, epochs=10**9, record="checkpoints", checkpoint_every=1)
    est = budget.estimate(task.model_dump(), runs=2, workers=1)
    assert est.total > 10**30 and isinstance(est.total, int)
    full = budget.estimate(Task(num_inputs=1000, n_train=1000, record="full").model_dump(), runs=2, workers=1)
    ckpt = budget.estimate(Task(num_inputs=1000, n_train=1000, record="checkpoints").model_dump(), runs=2, workers=1)
    assert ckpt.total < full.total
    monkeypatch.setenv("WDPARITY_MEMORY_BYTES", "12345")
    assert budget.available() == (12345, "WDPARITY_MEMORY_BYTES")


def test_a_bad_memory_override_exits_2(write_case):
    path = write_case('title = "small"\n' + TWO_RUNS)
    proc = cli("check", str(path), env={"WDPARITY_MEMORY_BYTES": "lots"})
    assert proc.returncode == 2
    assert "WDPARITY_MEMORY_BYTES" in _one_line(proc) and "lots" in proc.stderr


def _internal_error(monkeypatch):
    from wdparity.judge import check

    def judge(*args, **kwargs):
        raise ValueError("deliberate failure inside the judge")
    monkeypatch.setattr(check, "judge", judge)


def test_an_internal_error_prints_one_line_naming_the_case_and_exits_1(write_case, monkeypatch, capsys):
    from wdparity import cli as cli_module

    _internal_error(monkeypatch)
    path = write_case('title = "x"\n[task]\nepochs = 1\n' + TWO_RUNS)
    assert cli_module.main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0] == (f"wdparity: internal error while checking {path}: ValueError: deliberate failure inside the "
                        "judge; rerun with --debug for the traceback")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(write_case, monkeypatch, capsys, where):
    from wdparity import cli as cli_module

    _internal_error(monkeypatch)
    path = write_case('title = "x"\n[task]\nepochs = 1\n' + TWO_RUNS)
    argv = ["--debug", "check", str(path)] if where == "before" else ["check", str(path), "--debug"]
    assert cli_module.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "deliberate failure inside the judge" in err


def test_debug_keeps_bad_input_to_one_line(tmp_path):
    path = tmp_path / "neg.toml"
    path.write_text(BAD["negative_lr"][0])
    proc = cli("--debug", "check", str(path))
    assert proc.returncode == 2 and "runs.a.lr" in _one_line(proc)
