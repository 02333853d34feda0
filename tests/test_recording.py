"""Recording modes: checkpoints + per-step summaries give the verdicts and the exact first divergent
step that full recording gives, and the output says which mode was used."""

from __future__ import annotations

import numpy as np
import pytest

from wdparity.engine import recording
from wdparity.engine.data import make_data
from wdparity.judge.check import check_cases

CASE = """
title = "coupled vs decoupled momentum SGD, recorded {record}"
claim = "diverges"
causes = ["coupling"]
[task]
epochs = 12
dtype = "float64"
record = "{record}"
{extra}
[runs.coupled]
backend = "numpy"
optimizer = "sgd"
lr = 0.0005
momentum = 0.9
decay = [{{ coupling = "gradient", coefficient = 1.0 }}]
[runs.sgdw]
backend = "numpy"
optimizer = "sgd"
lr = 0.0005
momentum = 0.9
decay = [{{ coupling = "decoupled", coefficient = 1.0, scale = "lr" }}]
{third}
"""
SGDW32 = """[runs.sgdw32]
backend = "numpy"
dtype = "float32"
optimizer = "sgd"
lr = 0.0005
momentum = 0.9
decay = [{ coupling = "decoupled", coefficient = 1.0, scale = "lr" }]
"""
TORCH = """[runs.torch]
backend = "torch"
optimizer = "SGD"
lr = 0.0005
momentum = 0.9
weight_decay = 1.0
"""


def test_recorded_steps_keep_the_start_the_end_and_the_window():
    rows = recording.recorded_steps(100, 30, window=(41, 44))
    assert rows.tolist() == [0, 30, 41, 42, 43, 44, 60, 90, 100]


def test_auto_switches_to_checkpoints_past_the_limit():
    small = {"num_inputs": 200, "n_train": 20, "batch_size": 1, "epochs": 10}
    big = {"num_inputs": 100_000, "n_train": 100, "batch_size": 1, "epochs": 10}
    assert recording.plan(small) == {"mode": "full"}
    how = recording.plan(big)
    assert how["mode"] == "checkpoints" and 1 < how["every"] < 1000
    rows = recording.recorded_steps(1000, how["every"])
    assert len(rows) * 100_000 <= recording.CHECKPOINT_VALUES


def test_recorder_keeps_summaries_every_step_and_rows_only_at_checkpoints():
    data = {"record_steps": recording.recorded_steps(10, 4)}
    rec = recording.Recorder(data, 10, 3, "float32")
    for t in range(11):
        assert rec.record(t, np.full(3, float(t)), np.array([t / 2]))
    out = rec.result()
    assert out["step"].tolist() == [0, 4, 8, 10]
    assert out["weight"][:, 0].tolist() == [0.0, 4.0, 8.0, 10.0] and out["weight"].dtype == np.float32
    assert out["bias"].tolist() == [0.0, 2.0, 4.0, 5.0]
    np.testing.assert_allclose(out["norm"], np.sqrt(3) * np.arange(11))
    assert out["absmax"].tolist() == [float(t) for t in range(11)]
    assert len(set(out["digest"].tolist())) == 11
    assert recording.digest(np.full(3, 2.0, np.float32)) == out["digest"][2]
    assert not rec.record(3, np.array([1.0, np.inf, 0.0]), np.array([0.0]))


def _pair(doc, a, b):
    return next(p for p in doc["pairs"] if (p["a"], p["b"]) == (a, b))


def test_checkpoints_find_the_same_verdicts_and_first_divergent_step_as_full(write_case):
    full = write_case(CASE.format(record="full", extra="", third=SGDW32), "full.toml")
    ckpt = write_case(CASE.format(record="checkpoints", extra="checkpoint_every = 17", third=SGDW32), "ckpt.toml")
    res_full, res_ckpt = check_cases([str(full), str(ckpt)])
    jf, jc = res_full.json, res_ckpt.json
    assert jf["recording"] == {"mode": "full"}
    assert jc["recording"]["mode"] == "checkpoints" and jc["recording"]["every"] == 17
    assert jf["claim"]["holds"] is True and jc["claim"]["holds"] is True
    assert jc["tolerance"] == jf["tolerance"]   # the float32 noise floor over every step, in lockstep
    for a, b in (("coupled", "sgdw"), ("coupled", "sgdw32"), ("sgdw", "sgdw32")):
        pf, pc = _pair(jf, a, b), _pair(jc, a, b)
        assert pc["verdict"] == pf["verdict"], (a, b)
        assert pc["first_divergent_step"] == pf["first_divergent_step"], (a, b)
        assert pc["causes"] == pf["causes"]
        if pc["verdict"] == "equivalent":   # the scale comes from per-step summaries: same metric at the same rows
            assert pc["max_rel_err"] <= pf["max_rel_err"]
    diverging = _pair(jc, "coupled", "sgdw")
    assert diverging["first_divergent_step"] % 17 != 0   # found inside a window, not at a checkpoint
    assert diverging["localized"]["window"][0] <= diverging["first_divergent_step"] <= diverging["localized"]["window"][1]
    assert "reason" not in diverging["localized"]
    # the float32 run of the same semantics stays within tolerance in both modes
    assert _pair(jc, "sgdw", "sgdw32")["verdict"] == "equivalent"


def test_checkpoint_data_carry_the_plan_to_every_backend():
    task = {"num_inputs": 5, "n_train": 10, "n_test": 3, "true_w": 0.01, "true_b": 0.05, "noise": 0.01,
            "seed": 0, "epochs": 3, "batch_size": 2, "record": "checkpoints", "checkpoint_every": 4}
    data = make_data(task)
    assert data["record_steps"].tolist() == [0, 4, 8, 12, 15]
    assert "record_steps" not in make_data({**task, "record": "full"})


@pytest.mark.slow
def test_torch_and_optax_record_checkpoints_like_the_reference(write_case):
    case = write_case(CASE.format(record="checkpoints", extra="checkpoint_every = 9", third=TORCH))
    res = check_cases([str(case)])[0]
    torch = res.json["runs"]["torch"]
    assert torch["status"] == "ok" and torch["fidelity"]["holds"] is True
    assert res.trajectories["torch"]["step"].tolist() == res.trajectories["coupled"]["step"].tolist()
    assert _pair(res.json, "coupled", "torch")["verdict"] == "equivalent"


def test_windows_add_up_without_changing_the_checkpoints():
    data = {"record_steps": recording.recorded_steps(100, 30)}
    both = recording.with_window(recording.with_window(data, (1, 3)), (95, 120))
    assert both["record_steps"].tolist() == [0, 1, 2, 3, 30, 60, 90, 95, 96, 97, 98, 99, 100]
    assert data["record_steps"].tolist() == [0, 30, 60, 90, 100]
