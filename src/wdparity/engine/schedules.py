"""Learning-rate schedule multipliers eta_t, shared by the reference and every adapter.

Plain functions of a schedule dict (`Semantics.neutral()["schedule"]`) so that workers, which
may run under another interpreter without pydantic, can use them too. NumPy + stdlib only.
"""

from __future__ import annotations

import math

import numpy as np


def multiplier(schedule: dict, t: int) -> float:
    """eta_t, the factor on the base learning rate at optimizer step t (t = 0 is the first update)."""
    kind = schedule.get("kind", "constant")
    if kind == "constant":
        return 1.0
    if kind == "step":
        return float(schedule["factor"]) ** (t // int(schedule["every"]))
    if kind == "cosine":
        total, floor = int(schedule["total"]), float(schedule.get("floor", 0.0))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
    if kind == "inverse_time":
        return 1.0 / (1.0 + float(schedule["rate"]) * t)
    raise ValueError("`schedule.kind` must be one of ['constant', 'step', 'cosine', 'inverse_time']. "
                     f"Received: kind={kind!r}")


def multipliers(schedule: dict, steps: int) -> np.ndarray:
    """eta_t for t = 0 .. steps-1, float64."""
    return np.array([multiplier(schedule, t) for t in range(steps)], dtype=np.float64)
