"""Bad case files and arguments: exit 2, one line naming the file, the key and the value; no traceback."""

from __future__ import annotations

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
