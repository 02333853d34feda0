"""How a trajectory is recorded: every step in full, or at scale per-step summaries plus checkpoints.

Full recording keeps (steps + 1) x num_inputs values per run: 800 MB for 100 000 inputs and 1 000
steps in float64, held by the worker, written to the .npz, read back and replayed by the judge. In
"checkpoints" mode a run keeps, for every step, the bias, ||w|| (float64) and a 64-bit digest of
w's bytes, and w itself only at the recorded steps: every `every` steps, the last step, and any
replay window. A divergence found between two checkpoints is localized to the exact step by running
both sides again with that window recorded in full (check.py).

The plan travels inside the task data (`data["record_steps"]`, absent in full mode), so the
reference, every adapter and the worker record the same rows without any signature change; a
Recorder is what an adapter's training loop writes into. This module imports only numpy and the
standard library: it also runs in MXNet's venv (numpy < 1.24).
"""

from __future__ import annotations

import hashlib
import math
from typing import Optional

import numpy as np

FULL_LIMIT = 20_000_000       # w values of one run kept in full before "auto" switches to checkpoints
# The one stop rule of every adapter and the reference: a run whose parameters become non-finite, or
# grow past this factor of their initial scale (max(1, max|w0|, |b0|)), is stopped at that step; the
# step itself is kept, every later row is NaN (seed 000's run explodes this way).
EXPLOSION_FACTOR = 1e6
CHECKPOINT_VALUES = 5_000_000  # w values one run keeps in checkpoint mode (sets the default `every`)
MODES = ("auto", "full", "checkpoints")


def task_steps(task: dict) -> int:
    """Optimizer steps of a task given as a dict (Task.steps for the validated model)."""
    return int(task["epochs"]) * -(-int(task["n_train"]) // int(task["batch_size"]))


def values_per_row(task: dict) -> int:
    """Parameter values one recorded row holds: d for the linear model's w, every tensor of a network."""
    model = task.get("model") or {}
    if not model.get("hidden"):
        return int(task["num_inputs"])
    from wdparity.engine import network

    return sum(int(np.prod(shape, dtype=np.int64)) for _, shape in network.layout(model, int(task["num_inputs"])))


def plan(task: dict) -> dict:
    """The recording of a task: {"mode": "full"} or {"mode": "checkpoints", "every": k}."""
    steps = task_steps(task)
    d = values_per_row(task)
    mode = task.get("record", "auto")
    if mode == "auto":
        mode = "full" if (steps + 1) * d <= FULL_LIMIT else "checkpoints"
    if mode == "full":
        return {"mode": "full"}
    every = task.get("checkpoint_every") or max(1, math.ceil(steps / max(1, CHECKPOINT_VALUES // d - 1)))
    return {"mode": "checkpoints", "every": int(min(every, max(1, steps)))}


def recorded_steps(steps: int, every: int, window: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Steps whose w is kept: 0, every, 2*every, ..., the last step, and lo..hi of a replay window."""
    rows = set(range(0, steps + 1, every)) | {steps}
    if window is not None:
        lo, hi = window
        rows |= set(range(max(0, lo), min(steps, hi) + 1))
    return np.array(sorted(rows), dtype=np.int64)


def with_window(data: dict, window: tuple[int, int]) -> dict:
    """The same task data recording steps lo..hi in full as well (arrays shared, not copied)."""
    rows = data["record_steps"]
    lo, hi = max(0, int(window[0])), min(int(rows[-1]), int(window[1]))
    out = dict(data)
    out["record_steps"] = np.union1d(rows, np.arange(lo, hi + 1, dtype=np.int64))
    return out


def digest(w: np.ndarray) -> np.uint64:
    """64 bits of BLAKE2b over the row's bytes: equal digests mean bit-identical parameters."""
    return np.uint64(int.from_bytes(hashlib.blake2b(np.ascontiguousarray(w).tobytes(), digest_size=8).digest(),
                                    "little"))


class Recorder:
    """What a training loop writes its parameters into, once for the start and once per step.

        rec = Recorder(data, steps, d, dtype)
        rec.record(0, w0, b0)
        for t, ...: ...; rec.record(t + 1, w, b)
        return rec.result()

    record() returns False once the stop rule is hit (non-finite, or past EXPLOSION_FACTOR x the start's
    scale): a loop should stop there. A loop that records with check=False gets the same rule applied in
    result(): the first row that breaks it is kept and every later row becomes NaN, so every adapter's
    trajectory ends exactly where the reference's does.
    """

    def __init__(self, data: dict, steps: int, d: int, dtype):
        self.dtype = np.dtype(dtype)
        rows = data.get("record_steps")
        self.full = rows is None
        self.steps = np.arange(steps + 1) if self.full else np.asarray(rows, dtype=np.int64)
        self.slot = None if self.full else {int(s): i for i, s in enumerate(self.steps)}
        self.W = np.full((len(self.steps), d), np.nan, dtype=self.dtype)
        self.B = np.full(steps + 1, np.nan, dtype=self.dtype)
        if not self.full:
            self.norm = np.full(steps + 1, np.nan)
            self.absmax = np.full(steps + 1, np.nan)   # the comparison's scale, exactly as full recording has it
            self.digest = np.zeros(steps + 1, dtype=np.uint64)
        self.limit: Optional[float] = None
        self.stopped_at: Optional[int] = None
        self.last = -1   # the last step written

    def record(self, t: int, w, b, check: bool = True) -> bool:
        """Keep step t's parameters. check=False (a loop that never stops early) skips the finiteness test
        in full mode and returns True: after a compiled step it costs ~8 us, 10-15% of a jitted loop at
        1000 inputs (benchmarks/RESULTS.md section 2)."""
        w = np.asarray(w).reshape(-1)
        if self.stopped_at is not None and t > self.stopped_at:
            return False   # past the stop: rows stay NaN
        self.B[t] = np.asarray(b).reshape(-1)[0]
        self.last = max(self.last, t)
        if self.limit is None:
            self.limit = stop_limit(np.asarray(w, dtype=np.float64), float(self.B[t]))
        if self.full:
            self.W[t] = w
            if not check:
                return True
            return self._keep_going(t, _absmax(self.W[t]), float(self.B[t]))
        i = self.slot.get(t)
        if i is not None:
            self.W[i] = w
        w = w.astype(self.dtype, copy=False)
        with np.errstate(all="ignore"):
            self.norm[t] = np.linalg.norm(w.astype(np.float64))
            self.absmax[t] = np.max(np.abs(w)) if w.size else 0.0
        self.digest[t] = digest(w)
        return self._keep_going(t, float(self.absmax[t]) if np.isfinite(self.norm[t]) else np.inf, float(self.B[t]))

    def _keep_going(self, t: int, absmax: float, bias: float) -> bool:
        if breaks_rule(absmax, bias, self.limit):
            self.stopped_at = t
            return False
        return True

    def _apply_stop_rule(self) -> None:
        """check=False loops: find the first row that breaks the rule and blank everything after it."""
        if self.stopped_at is None:
            arrays = {"weight": self.W, "bias": self.B} if self.full else {
                "absmax": self.absmax, "bias_all": self.B, "norm": self.norm}
            absmax, bias, finite = per_step(arrays)
            n = self.last + 1   # rows never written are NaN, not a break
            self.stopped_at = first_break(absmax[:n], bias[:n], finite[:n], self.limit or np.inf)
        if self.stopped_at is None:
            return
        s = self.stopped_at
        self.B[s + 1:] = np.nan
        if self.full:
            self.W[s + 1:] = np.nan
        else:
            self.W[self.steps > s] = np.nan
            self.norm[s + 1:] = np.nan
            self.absmax[s + 1:] = np.nan

    def result(self) -> dict[str, np.ndarray]:
        self._apply_stop_rule()
        if self.full:
            return {"weight": self.W, "bias": self.B}
        return {"weight": self.W, "bias": self.B[self.steps], "step": self.steps, "bias_all": self.B,
                "norm": self.norm, "absmax": self.absmax, "digest": self.digest}


class GridRecorder:
    """G Recorders in one, for a grid trained with a leading config axis (reference.run with a list).

    Full recording writes every config's row at once and applies the one stop rule to all configs with a
    few array operations (a config that breaks it keeps that row, its later rows become NaN, the others go
    on); checkpoint recording keeps one Recorder per config. record() returns False once every config stopped."""

    def __init__(self, data: dict, steps: int, d: int, dtype, configs: int):
        self.full = data.get("record_steps") is None
        if not self.full:
            self.recs = [Recorder(data, steps, d, dtype) for _ in range(configs)]
            self.alive = list(range(configs))
            return
        self.W = np.full((configs, steps + 1, d), np.nan, dtype=np.dtype(dtype))   # config-major: rows contiguous
        self.B = np.full((configs, steps + 1), np.nan, dtype=np.dtype(dtype))
        self.last = np.full(configs, steps)
        self.live = np.ones(configs, dtype=bool)
        self.limit: Optional[np.ndarray] = None

    def record(self, t: int, W: np.ndarray, B: np.ndarray) -> bool:
        if not self.full:
            self.alive = [g for g in self.alive if self.recs[g].record(t, W[g], B[g])]
            return bool(self.alive)
        self.W[:, t], self.B[:, t] = W, B
        with np.errstate(all="ignore"):
            wmax = np.abs(W).max(axis=1, initial=0.0).astype(np.float64)   # NaN/inf where a row is non-finite
            babs = np.abs(B).astype(np.float64)
            if self.limit is None:
                self.limit = np.array([stop_limit(W[g].astype(np.float64), float(B[g])) for g in range(len(B))])
            finite = np.isfinite(wmax) & np.isfinite(babs)
            stop = self.live & (~finite | (np.maximum(wmax, babs) > self.limit))   # breaks_rule, per config
        if stop.any():
            self.last[stop], self.live = t, self.live & ~stop
        return bool(self.live.any())

    def result(self) -> list[dict[str, np.ndarray]]:
        if not self.full:
            return [rec.result() for rec in self.recs]
        for g, last in enumerate(self.last):
            self.W[g, last + 1:], self.B[g, last + 1:] = np.nan, np.nan
        return [{"weight": self.W[g], "bias": self.B[g]} for g in range(len(self.B))]


def stop_limit(w0: np.ndarray, b0: float) -> float:
    """The stop rule's threshold for a run starting at (w0, b0)."""
    with np.errstate(all="ignore"):
        start = max(_absmax(w0), abs(float(b0)))
    return EXPLOSION_FACTOR * max(1.0, start if np.isfinite(start) else 0.0)


SUMMARIES = ("step", "bias_all", "norm", "absmax", "digest")


def tensor_names(traj: dict) -> tuple[str, ...]:
    """The tensors a trajectory holds, in layout order: the linear model's ("weight", "bias"), or a network's
    (network_recording.py), every key that is not a per-step summary."""
    if "weight" in traj:
        return ("weight", "bias")
    return tuple(k for k in traj if k not in SUMMARIES)


def packed(traj: dict) -> np.ndarray:
    """A network's recorded rows as one float64 (rows, P) matrix, its tensors side by side in layout order."""
    return np.concatenate([np.asarray(traj[k], dtype=np.float64).reshape(len(traj[k]), -1)
                           for k in tensor_names(traj)], axis=1)


def per_step(traj: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max|w|, bias, finite) for every step: from the per-step summaries at scale, else from the full rows.
    A network's max|w| is over every tensor and its `bias` 0 (its output bias is one of the tensors)."""
    with np.errstate(all="ignore"):
        if "weight" not in traj:
            if "absmax" in traj:
                a = np.asarray(traj["absmax"], dtype=np.float64)
                return a, np.zeros_like(a), np.isfinite(np.asarray(traj["norm"], dtype=np.float64))
            w = packed(traj)
            return np.abs(w).max(axis=1, initial=0.0), np.zeros(len(w)), np.isfinite(w).all(axis=1)
        if "absmax" in traj:
            bias = np.asarray(traj["bias_all"], dtype=np.float64)
            return (np.asarray(traj["absmax"], dtype=np.float64), bias,
                    np.isfinite(np.asarray(traj["norm"], dtype=np.float64)) & np.isfinite(bias))
        w = np.asarray(traj["weight"], dtype=np.float64)
        w = w.reshape(len(w), -1)
        bias = np.asarray(traj["bias"], dtype=np.float64).reshape(-1)
        return np.abs(w).max(axis=1, initial=0.0), bias, np.isfinite(w).all(axis=1) & np.isfinite(bias)


def first_break(absmax: np.ndarray, bias: np.ndarray, finite: np.ndarray, limit: float) -> Optional[int]:
    """The first step that breaks the stop rule (non-finite, or max(|w|, |b|) past `limit`), or None."""
    with np.errstate(all="ignore"):
        bad = ~finite | (np.fmax(absmax, np.abs(bias)) > limit)
    return int(np.argmax(bad)) if bad.any() else None


def breaks_rule(absmax: float, bias: float, limit: Optional[float]) -> bool:
    big = max(absmax, abs(bias)) if np.isfinite(absmax) and np.isfinite(bias) else np.inf
    return not np.isfinite(big) or (limit is not None and big > limit)


def _absmax(w: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return float(np.max(np.abs(w), initial=0.0)) if np.isfinite(w).all() else np.inf


def scale_upto(traj: dict, name: str, upto_row: Optional[int]) -> Optional[float]:
    """max |tensor| over every step up to the given recorded row, from the per-step summaries (None in full
    mode, where the rows themselves hold every step)."""
    if "step" not in traj:
        return None
    steps = np.asarray(traj["step"])[:upto_row]
    if not len(steps):
        return 0.0
    if "weight" not in traj:   # a network keeps one summary over all its tensors: not a per-tensor scale
        return None
    per_step = traj["absmax"] if name == "weight" else np.abs(np.asarray(traj["bias_all"], dtype=np.float64))
    return float(np.max(np.asarray(per_step, dtype=np.float64)[: int(steps[-1]) + 1], initial=0.0))


def as_trajectory(arrays: dict) -> dict:
    """A worker's arrays as the judge reads them: weight as (rows, d), bias flat, summaries kept."""
    if "weight" not in arrays:
        return {**arrays, **{k: np.asarray(arrays[k]).reshape(len(arrays[k]), -1) for k in tensor_names(arrays)}}
    w = np.asarray(arrays["weight"])
    return {**arrays, "weight": w.reshape(len(w), -1), "bias": np.asarray(arrays["bias"]).reshape(-1)}


def steps_of(traj: dict) -> np.ndarray:
    """The optimizer step of each recorded row."""
    return np.asarray(traj["step"]) if "step" in traj else np.arange(len(traj[tensor_names(traj)[0]]))


def norms(traj: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, ||w||) at every step: recorded per step at scale, else computed from the full rows."""
    if "norm" in traj:
        return np.arange(len(traj["norm"])), np.asarray(traj["norm"], dtype=np.float64)
    w = np.asarray(traj["weight"], dtype=np.float64) if "weight" in traj else packed(traj)
    with np.errstate(all="ignore"):
        return np.arange(len(w)), np.linalg.norm(w, axis=1)


def group_norms(traj: dict) -> tuple[np.ndarray, np.ndarray]:
    """A network's (||weight matrices||, ||every other tensor||) at each recorded row: its two layer groups."""
    def norm(names):
        if not names:
            return np.zeros(len(steps_of(traj)))
        with np.errstate(all="ignore"):
            return np.sqrt(sum((np.asarray(traj[k], dtype=np.float64).reshape(len(traj[k]), -1) ** 2).sum(axis=1)
                               for k in names))

    names = tensor_names(traj)
    return norm([k for k in names if k.endswith(".weight")]), norm([k for k in names if not k.endswith(".weight")])


def biases(traj: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, bias) at every step (a network's: its output bias, at the recorded rows)."""
    if "weight" not in traj:
        b = np.asarray(traj["out.bias"], dtype=np.float64).reshape(-1)
        return steps_of(traj), b
    b = traj.get("bias_all", traj["bias"])
    return np.arange(len(b)), np.asarray(b, dtype=np.float64).reshape(-1)


def describe(data: dict, task_plan: dict) -> dict:
    """The JSON `recording` entry of a case: mode, rows kept, and the memory that saved."""
    rows = data.get("record_steps")
    out = dict(task_plan)
    if rows is not None:
        out["recorded_rows"] = int(len(rows))
        out["per_step"] = ["bias", "norm", "absmax", "digest"]
    return out
