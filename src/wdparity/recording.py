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
CHECKPOINT_VALUES = 5_000_000  # w values one run keeps in checkpoint mode (sets the default `every`)
MODES = ("auto", "full", "checkpoints")


def task_steps(task: dict) -> int:
    """Optimizer steps of a task given as a dict (Task.steps for the validated model)."""
    return int(task["epochs"]) * -(-int(task["n_train"]) // int(task["batch_size"]))


def plan(task: dict) -> dict:
    """The recording of a task: {"mode": "full"} or {"mode": "checkpoints", "every": k}."""
    steps = task_steps(task)
    d = int(task["num_inputs"])
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

    record() returns False once the parameters are not finite (a loop may stop there; the
    remaining rows stay NaN).
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

    def record(self, t: int, w, b, check: bool = True) -> bool:
        """Keep step t's parameters. check=False (a loop that never stops early) skips the finiteness test
        in full mode and returns True: after a compiled step it costs ~8 us, 10-15% of a jitted loop at
        1000 inputs (benchmarks/RESULTS.md section 2)."""
        w = np.asarray(w).reshape(-1)
        self.B[t] = np.asarray(b).reshape(-1)[0]
        if self.full:
            self.W[t] = w
            return not check or bool(np.isfinite(self.B[t]) and np.isfinite(self.W[t]).all())
        i = self.slot.get(t)
        if i is not None:
            self.W[i] = w
        w = w.astype(self.dtype, copy=False)
        with np.errstate(all="ignore"):
            self.norm[t] = np.linalg.norm(w.astype(np.float64))
            self.absmax[t] = np.max(np.abs(w)) if w.size else 0.0
        self.digest[t] = digest(w)
        return bool(np.isfinite(self.B[t]) and np.isfinite(self.norm[t]))

    def result(self) -> dict[str, np.ndarray]:
        if self.full:
            return {"weight": self.W, "bias": self.B}
        return {"weight": self.W, "bias": self.B[self.steps], "step": self.steps, "bias_all": self.B,
                "norm": self.norm, "absmax": self.absmax, "digest": self.digest}


def scale_upto(traj: dict, name: str, upto_row: Optional[int]) -> Optional[float]:
    """max |tensor| over every step up to the given recorded row, from the per-step summaries (None in full
    mode, where the rows themselves hold every step)."""
    if "step" not in traj:
        return None
    steps = np.asarray(traj["step"])[:upto_row]
    if not len(steps):
        return 0.0
    per_step = traj["absmax"] if name == "weight" else np.abs(np.asarray(traj["bias_all"], dtype=np.float64))
    return float(np.max(np.asarray(per_step, dtype=np.float64)[: int(steps[-1]) + 1], initial=0.0))


def as_trajectory(arrays: dict) -> dict:
    """A worker's arrays as the judge reads them: weight as (rows, d), bias flat, summaries kept."""
    w = np.asarray(arrays["weight"])
    return {**arrays, "weight": w.reshape(len(w), -1), "bias": np.asarray(arrays["bias"]).reshape(-1)}


def steps_of(traj: dict) -> np.ndarray:
    """The optimizer step of each recorded row."""
    return np.asarray(traj["step"]) if "step" in traj else np.arange(len(traj["weight"]))


def norms(traj: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, ||w||) at every step: recorded per step at scale, else computed from the full rows."""
    if "norm" in traj:
        return np.arange(len(traj["norm"])), np.asarray(traj["norm"], dtype=np.float64)
    w = np.asarray(traj["weight"], dtype=np.float64)
    with np.errstate(all="ignore"):
        return np.arange(len(w)), np.linalg.norm(w, axis=1)


def biases(traj: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, bias) at every step."""
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
