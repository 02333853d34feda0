"""Recording a network's trajectory: every named tensor per recorded row, with the linear Recorder's rules.

A network's parameters are kept as one packed (rows, P) matrix, its tensors side by side in layout order
(spec/network.py), and handed back as one (rows, size) view per tensor name: the judge compares, scales and
reports them tensor by tensor (compare.py: the first divergent tensor by name). The stop rule is the linear
model's over every tensor (max |value| past EXPLOSION_FACTOR x the start's, or non-finite); at scale
("checkpoints") every step keeps ||theta||, max|theta| and the digest of all tensors together, the tensors
themselves at the recorded rows. NumPy + stdlib only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from wdparity.engine import network
from wdparity.engine.recording import breaks_rule, digest, first_break, stop_limit


class NetworkRecorder:
    """What a network's training loop writes into: record(t, {name: array}) once for the start and once per step.

    Arrays may come in any shape of the right size (a framework's (fan_out, fan_in) weight must be transposed
    to the neutral (fan_in, fan_out) by its adapter first: only the element order matters here)."""

    def __init__(self, data: dict, steps: int, dtype):
        model = network.model_of(data)
        self.layout = network.layout(model, int(np.asarray(data["X_train"]).shape[1]))
        self.sizes = [int(np.prod(shape, dtype=np.int64)) for _, shape in self.layout]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.dtype = np.dtype(dtype)
        rows = data.get("record_steps")
        self.full = rows is None
        self.steps = np.arange(steps + 1) if self.full else np.asarray(rows, dtype=np.int64)
        self.slot = {int(s): i for i, s in enumerate(self.steps)}
        self.W = np.full((len(self.steps), int(self.offsets[-1])), np.nan, dtype=self.dtype)
        if not self.full:
            self.norm = np.full(steps + 1, np.nan)
            self.absmax = np.full(steps + 1, np.nan)
            self.digest = np.zeros(steps + 1, dtype=np.uint64)
        self.limit: Optional[float] = None
        self.stopped_at: Optional[int] = None
        self.last = -1

    def pack(self, params: dict) -> np.ndarray:
        missing = [name for name, _ in self.layout if name not in params]
        if missing:
            raise ValueError(f"the adapter's parameters lack {missing}; the model's tensors are "
                             f"{[name for name, _ in self.layout]}, received {sorted(params)}")
        parts = []
        for (name, _), size in zip(self.layout, self.sizes):
            flat = np.asarray(params[name]).reshape(-1)
            if flat.size != size:
                raise ValueError(f"tensor {name!r} has {flat.size} values, the model's has {size}")
            parts.append(flat)
        return np.concatenate(parts).astype(self.dtype, copy=False)

    def record(self, t: int, params: dict, check: bool = True) -> bool:
        if self.stopped_at is not None and t > self.stopped_at:
            return False
        theta = self.pack(params)
        self.last = max(self.last, t)
        if self.limit is None:
            self.limit = stop_limit(theta.astype(np.float64), 0.0)
        i = self.slot.get(t)
        if i is not None:
            self.W[i] = theta
        with np.errstate(all="ignore"):
            absmax = float(np.max(np.abs(theta), initial=0.0))
            if not self.full:
                self.norm[t] = np.linalg.norm(theta.astype(np.float64))
                self.absmax[t] = absmax
                self.digest[t] = digest(theta)
        if not check and self.full:
            return True
        finite = bool(np.isfinite(theta).all())
        if breaks_rule(absmax if finite else np.inf, 0.0, self.limit):
            self.stopped_at = t
            return False
        return True

    def _apply_stop_rule(self) -> None:
        if self.stopped_at is None and self.full:
            n = self.last + 1
            with np.errstate(all="ignore"):
                absmax = np.abs(self.W[:n]).max(axis=1, initial=0.0).astype(np.float64)
            self.stopped_at = first_break(absmax, np.zeros(n), np.isfinite(self.W[:n]).all(axis=1),
                                          self.limit or np.inf)
        if self.stopped_at is None:
            return
        s = self.stopped_at
        self.W[self.steps > s] = np.nan
        if not self.full:
            self.norm[s + 1:] = np.nan
            self.absmax[s + 1:] = np.nan

    def result(self) -> dict[str, np.ndarray]:
        self._apply_stop_rule()
        out = {name: self.W[:, self.offsets[i]:self.offsets[i + 1]] for i, (name, _) in enumerate(self.layout)}
        if not self.full:
            out.update(step=self.steps, norm=self.norm, absmax=self.absmax, digest=self.digest)
        return out


def recorder(data: dict, steps: int, dtype):
    """The recorder of this task: a NetworkRecorder for a network, else None (the caller's linear Recorder)."""
    return NetworkRecorder(data, steps, dtype) if "model_json" in data else None
