"""Sweeps: the nominal lambda written into each convention's knob, run natively, in the report."""

from __future__ import annotations

import json

from conftest import cli

SWEEP = """
title = "penalty vs coupled decay over lambda"
[task]
epochs = 2
[sweep]
values = [0.0, 1.0, 4.0]
[conventions.penalty_half]
label = "loss + lambda/2 |w|^2"
key = "penalty.l2"
factor = 0.5
[conventions.penalty_half.run]
backend = "numpy"
optimizer = "sgd"
lr = 0.003
penalty = { l2 = 0.0, params = ["weight"] }
[conventions.coupled]
label = "coupled lambda on the weight"
key = "decay.0.coefficient"
[conventions.coupled.run]
backend = "numpy"
optimizer = "sgd"
lr = 0.003
decay = [{ coefficient = 0.0, params = ["weight"] }]
[conventions.penalty_full]
label = "loss + lambda |w|^2"
key = "penalty.l2"
[conventions.penalty_full.run]
backend = "numpy"
optimizer = "sgd"
lr = 0.003
penalty = { l2 = 0.0, params = ["weight"] }
"""


def test_sweep_runs_every_convention_and_lands_in_the_report(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    out = tmp_path / "out"
    proc = cli("run", str(path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "report.json").read_text())
    conv = doc["sweeps"][0]["conventions"]
    assert conv["penalty_half"]["test_loss"] == conv["coupled"]["test_loss"]      # lambda/2 penalty == coupled lambda
    assert conv["penalty_full"]["test_loss"][0] == conv["coupled"]["test_loss"][0]  # lambda = 0: all the same
    assert conv["penalty_full"]["test_loss"][2] != conv["coupled"]["test_loss"][2]  # factor 2 apart otherwise
    assert "penalty vs coupled decay over lambda" in (out / "report.html").read_text()


def test_sweep_key_that_leads_nowhere_is_an_input_error(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.replace('key = "decay.0.coefficient"', 'key = "decay.3.coefficient"'))
    proc = cli("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "conventions.coupled.key" in proc.stderr and not (tmp_path / "out").exists()
