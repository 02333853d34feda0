"""Noise envelopes: how far a run's own semantics can move, step by step, without changing meaning.

A verdict is only as good as its tolerance. A run's envelope is measured on the reference of its
own semantics, in its own dtype, under perturbations that cannot change what the run means:

- `dtype`: the reference computed in the run's dtype against float64 (float32 runs only);
- `rounding`: SAMPLES random-rounding samples (engine/rounding.py: Monte Carlo Arithmetic's
  random rounding at the unit roundoff of the run's dtype on the initial weights, every residual,
  gradient and update; seeded, so an envelope is reproducible).

Per tensor and per recorded row, the envelope is the largest absolute distance of any sample from
the float64 reference (max over elements), made non-decreasing over steps (a perturbation that
happens to cross zero at a step does not make that step tighter). Past the step where a sample
stops (the stop rule) while the reference goes on, the envelope is infinite: that far, rounding
alone decides the run. Both runs of a pair contribute their own envelopes; nothing from another
pair or run enters. compare.py turns envelopes into per-step tolerances and verdicts. The float64 members
(the reference and the samples of both unit roundoffs) train as one stack where the chain allows
(engine/stacking.py), each bit for bit its lone run: the same envelope, the chain's overhead paid once.
"""

from __future__ import annotations

import itertools
import json
from typing import Optional

import numpy as np

from wdparity.engine import network, reference, stacking
from wdparity.engine.data import batches
from wdparity.engine.recording import tensor_names

SAMPLES = 3                       # random-rounding samples per (semantics, dtype)
UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}
PERTURBATIONS = ("dtype: the reference in the run's dtype vs float64 (float32 runs)",
                 f"rounding: {SAMPLES} random-rounding samples (Monte Carlo Arithmetic style, at the unit "
                 "roundoff of the run's dtype: initial weights, residuals, gradients, updates)")

_MEMO: dict[tuple, tuple[dict, dict]] = {}
MEMO_SIZE = 256


def rows(traj: dict, name: str) -> np.ndarray:
    """A tensor's recorded rows as float64 (rows, elements)."""
    x = np.asarray(traj[name], dtype=np.float64)
    return x.reshape(len(x), -1)


def finite_length(traj: dict) -> int:
    """Leading recorded rows where every value is finite (the stop rule blanks every row after its stop)."""
    ok = np.logical_and.reduce([np.isfinite(rows(traj, name)).all(axis=1) for name in tensor_names(traj)])
    return int(np.argmin(ok)) if not ok.all() else len(ok)


def envelope(semantics: dict, data: dict, batch_size: int, dtype: str) -> dict[str, np.ndarray]:
    """{tensor: (rows,) absolute envelope} of these semantics run in `dtype`, at the recorded rows."""
    return _measure(semantics, data, batch_size, dtype)["envelope"]


def dtype_gap(semantics: dict, data: dict, batch_size: int) -> float:
    """The float32-vs-float64 gap of the reference (relative to each tensor's scale): the old case-wide
    "noise floor", kept as an informative figure."""
    return _measure(semantics, data, batch_size, "float32")["dtype_gap"]


def _measure(semantics: dict, data: dict, batch_size: int, dtype: str) -> dict:
    """Every sample trained in lockstep with the float64 reference, step by step (so that full and checkpoint
    recording see the same per-step maxima without keeping any rows), then read at the recorded rows. A
    float32 run's float64 envelope (its fidelity reads both) is measured in the same pass."""
    key = _key(semantics, data, batch_size, dtype)
    hit = _MEMO.get(key)
    if hit is not None and hit[0] is data:
        return hit[1]
    dtypes = ("float32", "float64") if dtype == "float32" else ("float64",)
    steps = len(batches(data["order"], batch_size))
    TENSORS = tuple(network.names_of(data))   # the model's tensors (the linear model's weight and bias)
    dist = {d: {name: np.full(steps + 1, np.inf) for name in TENSORS} for d in dtypes}
    scale = {name: 0.0 for name in TENSORS}
    gap = {name: 0.0 for name in TENSORS}
    noisy = [(d, (seed, UNIT_ROUNDOFF[d])) for d in dtypes for seed in range(1, SAMPLES + 1)]
    with np.errstate(all="ignore"):
        for t, base, f32, samples in _lockstep(semantics, data, batch_size, dtype, [n for _, n in noisy]):
            if not _finite(base):
                break   # the reference left the finite numbers: nothing past it is compared
            ok = [sample is not None and _finite(sample) for sample in samples]   # once per sample, not per tensor
            f32_ok = f32 is not None and _finite(f32)
            for name in TENSORS:
                b = np.asarray(base[name], dtype=np.float64).reshape(-1)
                scale[name] = max(scale[name], float(np.abs(b).max(initial=0.0)))
                worst = {d: 0.0 for d in dtypes}
                if "float32" in dtypes:
                    if f32_ok:
                        worst["float32"] = _distance(f32[name], b)
                        gap[name] = max(gap[name], worst["float32"])
                    else:
                        worst["float32"] = np.inf   # a sample stopped where the reference did not: rounding decides
                for (d, _), sample, fine in zip(noisy, samples, ok):
                    if worst[d] != np.inf:
                        worst[d] = max(worst[d], _distance(sample[name], b)) if fine else np.inf
                for d in dtypes:
                    dist[d][name][t] = worst[d]
    rows = np.asarray(data["record_steps"]) if "record_steps" in data else np.arange(steps + 1)
    rel_gap = max((gap[n] / scale[n] if scale[n] > 0 else 0.0) for n in TENSORS)
    for d in dtypes:
        env = {}
        for name in TENSORS:
            e = np.maximum.accumulate(dist[d][name])[rows]
            e.setflags(write=False)
            env[name] = e
        _remember(_key(semantics, data, batch_size, d), data,
                  {"envelope": env, "dtype_gap": float(rel_gap) if d == "float32" else 0.0})
    return _MEMO[key][1]


def _lockstep(semantics: dict, data: dict, batch_size: int, dtype: str, noises: list):
    """Yields (t, float64 reference, float32 reference or None, [each noisy sample or None]) step by step:
    the float64 members as one stack where the chain allows (engine/stacking.py: each member bit for bit its
    lone run), else each alone."""
    f32 = reference.trajectory(semantics, data, batch_size, "float32") if dtype == "float32" else None
    if stacking.stackable(semantics, data):
        gens = [stacking.trajectory(semantics, data, batch_size, [None] + noises)]
        members = (_members(item) for item in gens[0])
    else:
        gens = [reference.trajectory(semantics, data, batch_size, "float64", n) for n in [None] + noises]
        members = (_lone_step(gens) for _ in itertools.count())
    try:
        for t in itertools.count():
            got = next(members, None)
            if got is None or got[0] is None:
                return   # the reference stopped
            lone = next(f32, None) if f32 is not None else None
            yield t, got[0], (lone[1] if lone is not None else None), got[1:]
    finally:
        for g in gens + [f32]:
            if g is not None:
                g.close()


def _members(item) -> list:
    _, params, alive = item
    return [stacking.member(params, i) if live else None for i, live in enumerate(alive)]


def _lone_step(gens: list) -> list:
    """The next params of each lone trajectory (None once it has ended)."""
    return [item[1] if (item := next(g, None)) is not None else None for g in gens]


def _distance(sample: np.ndarray, base: np.ndarray) -> float:
    return float(np.abs(np.asarray(sample, dtype=np.float64).reshape(-1) - base).max(initial=0.0))


def _key(semantics: dict, data: dict, batch_size: int, dtype: str) -> tuple:
    return (json.dumps(semantics, sort_keys=True), id(data), batch_size, dtype)


def _remember(key: tuple, data: dict, out: dict) -> None:
    while len(_MEMO) >= MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[key] = (data, out)


def _finite(params: dict) -> bool:
    return all(np.isfinite(np.asarray(v)).all() for v in params.values())


def describe() -> dict:
    return {"perturbations": list(PERTURBATIONS), "samples": SAMPLES}


def combined(envs: list[Optional[dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    """The sum of several envelopes (a pair: its two sides), row by row."""
    out = {}
    for name in next(e for e in envs if e is not None):
        parts = [e[name] for e in envs if e is not None]
        n = min(len(p) for p in parts)
        out[name] = np.sum([p[:n] for p in parts], axis=0)
    return out
