"""Envelope samples trained as one stack (engine/stacking.py): every member bit for bit its lone run, and the
envelopes measured through the stack equal to those measured run by run, for every semantics of the catalogue
on the linear model and on networks, stopped runs included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wdparity.engine import reference, stacking
from wdparity.engine.data import make_data
from wdparity.engine.rounding import RandomRounding
from wdparity.judge import envelope
from wdparity.run.cases import load_case
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope

ROOT = Path(__file__).resolve().parents[1]
U32, U64 = envelope.UNIT_ROUNDOFF["float32"], envelope.UNIT_ROUNDOFF["float64"]
NOISES = [None, (1, U32), (2, U64), (3, U32)]
MODELS = {"linear": None,
          "tanh-layer": {"hidden": [5, 4], "activation": "tanh", "norm": "layer", "norm_eps": 1e-5},
          "gelu": {"hidden": [6], "activation": "gelu"}}


def _catalogue_semantics() -> list[dict]:
    """Each distinct neutral semantics of the catalogue's runs (its optimizers, decays, clips, schedules)."""
    seen = {}
    for path in sorted((ROOT / "comparisons").glob("*.toml")):
        for run in load_case(path).runs.values():
            sem = run.semantics.neutral()
            seen.setdefault(json.dumps(sem, sort_keys=True), sem)
    return list(seen.values())


SEMANTICS = _catalogue_semantics()


def _task(model):
    task = Task(num_inputs=6, n_train=12, batch_size=4, epochs=2, **({"model": model} if model else {}))
    return task, make_data(task.model_dump())


def _on(sem: dict, tensors: list[str]) -> dict:
    """The semantics with its masks renamed onto the model's tensors (the linear model's weight -> every
    matrix, bias -> every vector), so a network trains the same chain."""
    if "weight" in tensors:
        return sem
    mats = [t for t in tensors if t.endswith(".weight")]
    vecs = [t for t in tensors if not t.endswith(".weight")]

    def rename(names):
        return sorted({n for name in names for n in (mats if name == "weight" else vecs if name == "bias" else [name])})

    out = json.loads(json.dumps(sem))
    for rule in out.get("decay", []):
        rule["params"] = rename(rule["params"])
    if out.get("frozen"):
        out["frozen"] = rename(out["frozen"])
    return out


def _lone(sem, data, bs, noise) -> list[tuple[int, dict]]:
    return list(reference.trajectory(sem, data, bs, "float64", noise))


@pytest.mark.parametrize("model", list(MODELS), ids=list(MODELS))
def test_every_member_is_its_lone_run_bit_for_bit(model):
    task, data = _task(MODELS[model])
    checked = 0
    with tensor_scope(task.tensors):
        for sem in SEMANTICS:
            sem = _on(sem, list(task.tensors))
            if not stacking.stackable(sem, data):
                continue
            stack = list(stacking.trajectory(sem, data, task.batch_size, NOISES))
            for i, noise in enumerate(NOISES):
                lone = _lone(sem, data, task.batch_size, noise)
                members = [(t, p) for t, p, alive in stack if alive[i]]
                assert [t for t, _ in members] == [t for t, _ in lone], (sem["optimizer"]["name"], noise)
                for (_, got), (_, want) in zip(members, lone):
                    for name in want:
                        assert np.array_equal(got[name][i], want[name], equal_nan=True), (sem, noise, name)
            checked += 1
    assert checked >= 40


def test_members_stop_at_their_own_steps():
    """An exploding network: each member ends where its lone run ends (the stop rule per member)."""
    task, data = _task(MODELS["gelu"])
    sem = {"optimizer": {"name": "sgd", "lr": 10.0, "momentum": 0.9, "dampening": 0.0, "nesterov": False}, "decay": []}
    stack = list(stacking.trajectory(sem, data, task.batch_size, NOISES))
    ends = [max(t for t, _, alive in stack if alive[i]) for i in range(len(NOISES))]
    assert ends == [_lone(sem, data, task.batch_size, n)[-1][0] for n in NOISES]
    assert max(ends) < task.steps


@pytest.mark.parametrize("model", list(MODELS), ids=list(MODELS))
def test_stacked_envelopes_equal_the_lone_ones(model, monkeypatch):
    task, data = _task(MODELS[model])
    with tensor_scope(task.tensors):
        sems = [_on(s, list(task.tensors)) for s in SEMANTICS[::3]]
        stacked = [(envelope.envelope(s, data, 4, "float32"), envelope.envelope(s, data, 4, "float64"),
                    envelope.dtype_gap(s, data, 4)) for s in sems]
        envelope._MEMO.clear()
        monkeypatch.setattr(stacking, "stackable", lambda sem, data: False)
        for s, (e32, e64, gap) in zip(sems, stacked):
            assert envelope.dtype_gap(s, data, 4) == gap
            for got, dtype in ((e32, "float32"), (e64, "float64")):
                want = envelope.envelope(s, data, 4, dtype)
                assert all(np.array_equal(got[k], want[k]) for k in want), (s, dtype)
    envelope._MEMO.clear()


def test_networks_with_per_tensor_norms_and_large_tasks_train_each_member_alone(monkeypatch):
    _, net = _task(MODELS["gelu"])
    _, lin = _task(None)
    adam = {"optimizer": {"name": "adam"}, "decay": []}
    for sem in ({"optimizer": {"name": "lamb"}}, {"optimizer": {"name": "adafactor"}}, {**adam, "clip": {"kind": "global_norm"}}):
        assert not stacking.stackable(sem, net) and stacking.stackable(sem, lin)
    assert stacking.stackable(adam, net)
    monkeypatch.setattr(stacking, "MAX_PARAMETERS", 6)   # the linear task has 7: members alone past the bound
    assert not stacking.stackable(adam, lin)


def test_a_quantity_without_the_member_axis_is_refused():
    rr = stacking.StackedRounding([None, RandomRounding(1, U32)])
    assert rr(1.0, 1.0).shape == (2,) and rr(1.0, 1.0)[0] == 1.0
    with pytest.raises(ValueError, match="member axis"):
        rr(np.ones(3), np.ones(3))


def test_a_member_drawing_another_members_errors_is_caught(monkeypatch):
    """The bit-for-bit comparison can fail: members that share one generator are not their lone runs."""
    task, data = _task(MODELS["tanh-layer"])
    sem = {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False}, "decay": []}
    shared = RandomRounding(1, U32)
    monkeypatch.setattr(stacking, "RandomRounding", lambda seed, unit: shared)
    stack = list(stacking.trajectory(sem, data, task.batch_size, [None, (1, U32), (1, U32)]))
    lone = _lone(sem, data, task.batch_size, (1, U32))
    assert not np.array_equal(stack[-1][1]["out.weight"][2], lone[-1][1]["out.weight"])
