"""Trajectory comparison and tolerance calibration.

The metric, per tensor: |a_t - b_t| (max over elements) divided by the tensor's scale (the largest
|value| either run reaches). A pair is equivalent when that relative error stays within the
tolerance at every step. The float32 tolerance is calibrated per case, never guessed: it is
`FLOOR_FACTOR` times the float32 noise floor, the largest difference between the reference run in
float32 and in float64 over the case's runs. Runs that are both float64 use `TOL64`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import recording, reference

TOL64 = 1e-9            # float64 vs float64: the fidelity standard of every adapter
FLOOR_FACTOR = 10.0     # float32 tolerance = this x the measured float32 noise floor
MIN_TOL32 = 10 * float(np.finfo(np.float32).eps)
TENSOR_ORDER = ("weight", "bias")


def stable_length(traj: dict[str, np.ndarray]) -> int:
    """How many leading recorded steps are finite and below the explosion limit."""
    w = np.asarray(traj["weight"], dtype=np.float64).reshape(len(traj["weight"]), -1)
    b = np.asarray(traj["bias"], dtype=np.float64).reshape(len(traj["bias"]), -1)
    with np.errstate(all="ignore"):
        big = np.maximum(np.abs(w).max(axis=1, initial=0.0), np.abs(b).max(axis=1, initial=0.0))
    start = big[0] if np.isfinite(big[0]) else 0.0
    limit = reference.EXPLOSION_FACTOR * max(1.0, float(start))
    bad = ~np.isfinite(big) | (big > limit)
    return int(np.argmax(bad)) if bad.any() else len(big)


def errors(a: dict[str, np.ndarray], b: dict[str, np.ndarray], upto: Optional[int] = None) -> dict[str, dict]:
    """Per tensor: abs error per step and the scale it is measured against."""
    out = {}
    for name in TENSOR_ORDER:
        x = np.asarray(a[name], dtype=np.float64).reshape(len(a[name]), -1)[:upto]
        y = np.asarray(b[name], dtype=np.float64).reshape(len(b[name]), -1)[:upto]
        with np.errstate(all="ignore"):
            diff = np.abs(x - y).max(axis=1, initial=0.0)
            sx, sy = recording.scale_upto(a, name, upto), recording.scale_upto(b, name, upto)
            scale = max(float(np.abs(x).max(initial=0.0)) if sx is None else sx,
                        float(np.abs(y).max(initial=0.0)) if sy is None else sy)
        out[name] = {"abs": diff, "scale": scale, "rel": diff / scale if scale > 0 else np.zeros_like(diff)}
    return out


def summarize(a: dict[str, np.ndarray], b: dict[str, np.ndarray], tol: float, upto: Optional[int] = None) -> dict:
    """max_abs_err, max_rel_err, first divergent step and tensor, verdict, per-step curve."""
    errs = errors(a, b, upto)
    rel = np.stack([errs[n]["rel"] for n in TENSOR_ORDER])       # (tensors, steps)
    over = rel > tol
    first, tensor = None, None
    if over.any():
        first = int(np.argmax(over.any(axis=0)))
        tensor = TENSOR_ORDER[int(np.argmax(rel[:, first]))]
    return {
        "verdict": "diverges" if first is not None else "equivalent",
        "max_abs_err": float(max(errs[n]["abs"].max(initial=0.0) for n in TENSOR_ORDER)),
        "max_rel_err": float(rel.max(initial=0.0)),
        "first_divergent_step": first,
        "tensor": tensor,
        "curve": {n: errs[n]["rel"] for n in TENSOR_ORDER},
    }


def max_rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray], upto: Optional[int] = None) -> float:
    errs = errors(a, b, upto)
    return float(max(errs[n]["rel"].max(initial=0.0) for n in TENSOR_ORDER))


def noise_floor(semantics: list[dict], data: dict, batch_size: int) -> float:
    """The float32 noise floor: max over runs of rel err(reference float32, reference float64)."""
    floor = 0.0
    for sem in semantics:
        if "record_steps" in data:   # at scale: over every step, as full recording measures it
            floor = max(floor, lockstep_floor(sem, data, batch_size))
            continue
        r64 = reference.run_cached(sem, data, batch_size, "float64")
        r32 = reference.run_cached(sem, data, batch_size, "float32")
        n = min(stable_length(r64), stable_length(r32))
        if n > 1:
            floor = max(floor, max_rel(r32, r64, n))
    return floor


def lockstep_floor(sem: dict, data: dict, batch_size: int) -> float:
    """max_rel(reference float32, float64) over every stable step, training both side by side and keeping
    per-step maxima only: the same number `noise_floor` gets from full trajectories, without the rows."""
    per_step = []   # |dw|, |db|, max|w32|, max|w64|, |b32|, |b64|
    for (_, p32), (_, p64) in zip(reference.trajectory(sem, data, batch_size, "float32"),
                                  reference.trajectory(sem, data, batch_size, "float64")):
        w32, w64 = p32["weight"].astype(np.float64), p64["weight"].astype(np.float64)
        b32, b64 = float(p32["bias"]), float(p64["bias"])
        with np.errstate(all="ignore"):
            per_step.append((np.max(np.abs(w32 - w64), initial=0.0), abs(b32 - b64), np.max(np.abs(w32), initial=0.0),
                             np.max(np.abs(w64), initial=0.0), abs(b32), abs(b64)))
    s = np.array(per_step, dtype=np.float64)
    n = min(_stable(np.maximum(s[:, 2], s[:, 4])), _stable(np.maximum(s[:, 3], s[:, 5])))
    if n <= 1:
        return 0.0
    s = s[:n]
    out = 0.0
    for diff, scale in ((s[:, 0], max(s[:, 2].max(), s[:, 3].max())), (s[:, 1], max(s[:, 4].max(), s[:, 5].max()))):
        if scale > 0:
            out = max(out, float((diff / scale).max(initial=0.0)))
    return out


def _stable(big: np.ndarray) -> int:
    """stable_length's rule on per-step max |parameter|."""
    start = big[0] if np.isfinite(big[0]) else 0.0
    with np.errstate(all="ignore"):
        bad = ~np.isfinite(big) | (big > reference.EXPLOSION_FACTOR * max(1.0, float(start)))
    return int(np.argmax(bad)) if bad.any() else len(big)


def tolerance_for(dtypes: tuple[str, ...], tol32: float) -> float:
    return TOL64 if all(d == "float64" for d in dtypes) else tol32


def calibrate(floor: float) -> float:
    return max(FLOOR_FACTOR * floor, MIN_TOL32)
