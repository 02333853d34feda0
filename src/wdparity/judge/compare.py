"""Trajectory comparison under per-pair, per-step tolerances measured from envelopes.

The metric, per tensor and per recorded step: |a_t - b_t| (max over elements) divided by the
tensor's scale (the largest |value| either run reaches). Two runs are compared while both are
finite. At step t the tolerance is

    tol_t = FACTOR * (E_a(t) + E_b(t)) / scale + FLOOR[dtype]

with E_a, E_b each side's own envelope (envelope.py: the reference of that side's semantics in its
dtype, perturbed in ways that cannot change its meaning). Nothing from another pair enters. A step
is *decidable* while tol_t <= CEILING: beyond it rounding alone moves the runs that far and no
verdict about semantics can be read off. The pair diverges at the first decidable step where its
error leaves the tolerance; it is equivalent when every compared step is decidable and within it;
otherwise it is `undecidable` (agrees on the decidable steps, `decidable_steps` says how many).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from wdparity.engine import recording
from wdparity.judge import envelope as env_mod
from wdparity.judge.envelope import finite_length, rows

FACTOR = 10.0           # tolerance = this x the pair's measured envelope
CEILING = 1e-3          # a step whose tolerance exceeds this (relative) is undecidable
FLOOR = {"float32": 10 * float(np.finfo(np.float32).eps), "float64": 10 * float(np.finfo(np.float64).eps)}
TENSOR_ORDER = ("weight", "bias")   # the linear model's; a network's are its layout (recording.tensor_names)
RULE = (f"per pair and per step: {FACTOR:g} x (envelope of a + envelope of b) / scale + {FLOOR['float32']:.3g} "
        f"(float32) or {FLOOR['float64']:.3g} (float64), each envelope measured on the reference of that run's "
        f"own semantics in its own dtype; a step whose tolerance exceeds {CEILING:g} is undecidable; relative "
        "to each tensor's largest magnitude")


def finite(x) -> Optional[float]:
    """A float for JSON: NaN and inf become null."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def finite_fields(d: dict) -> dict:
    """A result dict for JSON: its float fields through finite()."""
    return {k: (finite(v) if isinstance(v, float) else v) for k, v in d.items()}


def pair_dtype(dtypes: tuple[str, ...]) -> str:
    return "float64" if all(d == "float64" for d in dtypes) else "float32"


def stable_length(traj: dict) -> int:
    """Leading recorded rows where the run is finite (kept name: the stop rule ends every run the same way)."""
    return finite_length(traj)


def errors(a: dict, b: dict, upto: Optional[int] = None) -> dict[str, dict]:
    """Per tensor: abs error per row and the scale it is measured against."""
    out = {}
    for name in recording.tensor_names(a):
        x, y = rows(a, name)[:upto], rows(b, name)[:upto]
        with np.errstate(all="ignore"):
            diff = np.abs(x - y).max(axis=1, initial=0.0)
            sx, sy = recording.scale_upto(a, name, upto), recording.scale_upto(b, name, upto)
            scale = max(float(np.abs(x).max(initial=0.0)) if sx is None else sx,
                        float(np.abs(y).max(initial=0.0)) if sy is None else sy)
        out[name] = {"abs": diff, "scale": scale, "rel": diff / scale if scale > 0 else np.zeros_like(diff)}
    return out


def tolerances(errs: dict, envs: list[dict], dtype: str, n: int) -> dict[str, np.ndarray]:
    """Per tensor, per row: the relative tolerance FACTOR * (sum of envelopes) / scale + FLOOR."""
    total = env_mod.combined(envs)
    out = {}
    for name in errs:
        e = np.full(n, np.inf)
        m = min(n, len(total[name]))
        e[:m] = total[name][:m]
        scale = errs[name]["scale"]
        with np.errstate(all="ignore"):
            # a tensor both runs keep exactly at 0 has nothing to measure: its error is 0 at every step
            out[name] = (FACTOR * e / scale if scale > 0 else np.zeros(n)) + FLOOR[dtype]
    return out


def judge(a: dict, b: dict, envs: list[dict], dtype: str) -> dict:
    """Verdict of two trajectories under the envelopes `envs` (one per side, or more)."""
    n = min(finite_length(a), finite_length(b))
    errs = errors(a, b, n)
    tol = tolerances(errs, envs, dtype, n)
    names = tuple(errs)
    rel = np.stack([errs[k]["rel"] for k in names]) if n else np.zeros((len(names), 0))
    tols = np.stack([tol[k] for k in names]) if n else np.zeros((len(names), 0))
    undecidable = (tols > CEILING).any(axis=0)
    k = int(np.argmax(undecidable)) if undecidable.any() else n       # decidable rows: [0, k)
    over = (rel[:, :k] > tols[:, :k]).any(axis=0)
    first = int(np.argmax(over)) if over.any() else None
    if first is not None:
        verdict = "diverges"
    elif k < n:
        verdict = "undecidable"
    else:
        verdict = "equivalent"
    steps = recording.steps_of(a)
    with np.errstate(all="ignore"):
        worst_tol = float(tols[:, :k].max(initial=0.0)) if k else None
    return {
        "verdict": verdict,
        "max_abs_err": float(max(errs[t]["abs"].max(initial=0.0) for t in names)),
        "max_rel_err": float(rel.max(initial=0.0)),
        "first_divergent_row": first,
        "first_divergent_step": None if first is None else int(steps[first]),
        "tensor": None if first is None else names[int(np.argmax(rel[:, first] - tols[:, first]))],
        "compared_steps": int(steps[n - 1]) if n else 0,
        "decidable_steps": int(steps[k - 1]) if k else 0,
        "tol": worst_tol,
        "tol_at_first": None if first is None else float(tols[:, first].max()),
        "curve": {t: errs[t]["rel"] for t in names},
        "tol_curve": {t: tol[t] for t in names},
    }


def max_rel(a: dict, b: dict, upto: Optional[int] = None) -> float:
    errs = errors(a, b, upto)
    return float(max(errs[n]["rel"].max(initial=0.0) for n in errs))
