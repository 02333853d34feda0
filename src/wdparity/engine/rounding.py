"""Random rounding for the envelopes, and the hyperparameter arithmetic every transform shares.

Why one module: a transform's numbers are formed in a fixed order of IEEE operations (that order is what
makes a grid bit-identical to its single runs, and what the envelopes perturb), so the few helpers that
form them live once: `hyper` casts a hyperparameter as the framework hands it over (optionally through a
C float), `per_config` lets a (G,) hyperparameter broadcast over a (G, ...) tensor, and `RandomRounding`
with `jitter` perturbs a computed quantity by a rounding error of its own size. NumPy + stdlib only.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

import numpy as np

_LOCAL = threading.local()   # the random rounding of the step being computed, if any


def current() -> Optional["RandomRounding"]:
    """The RandomRounding of the step being computed (set by reference.trajectory around each update)."""
    return getattr(_LOCAL, "rounding", None)


def set_current(rounding: Optional["RandomRounding"]) -> None:
    _LOCAL.rounding = rounding


def jitter(rr: Optional["RandomRounding"], x, magnitude: Callable[[], object]):
    """x with a random rounding error of the given magnitude (the sum of |terms| x was computed from);
    `magnitude` is called only when a rounding is active."""
    return x if rr is None else rr(x, magnitude())


def rounder(hyper_dtype: str) -> Callable:
    """How a hyperparameter reaches the update: as is, or rounded to a C float (MXNet). Scalars stay Python
    floats (the serial arithmetic), arrays (a leading config axis) are rounded elementwise: the same numbers."""
    if hyper_dtype == "float32":
        return lambda x: x.astype(np.float32).astype(np.float64) if is_vector(x) else float(np.float32(x))
    return lambda x: np.asarray(x, dtype=np.float64) if is_vector(x) else float(x)


def is_vector(x) -> bool:
    """A (G,) hyperparameter (a grid's), as opposed to a scalar of a single run."""
    return type(x) is np.ndarray and x.ndim > 0


def is_grid(u: dict) -> bool:
    """Tensors with a leading config axis: a grid of the linear model, its weight (G, d). A network (its tensors
    named as spec/network.py says, no `weight`) trains one run at a time."""
    w = u.get("weight")
    return w is not None and w.ndim == 2


def sum_sq(x: np.ndarray, grid: bool):
    """A tensor's sum of squares per config: over the last axis of a grid's (G, d) weight, every element of a
    single run's tensor (the linear model's weight or bias, a network's matrix)."""
    if grid:
        return np.sum(x * x, axis=-1) if x.ndim == 2 else x * x
    return np.sum(x * x, axis=-1) if x.ndim == 1 else (x * x if x.ndim == 0 else np.sum(x * x))


def per_config(x, like: np.ndarray):
    """A hyperparameter shaped to broadcast against a tensor with a leading config axis: a scalar as is, a
    (G,) vector as (G, 1, ...)."""
    if type(x) is not np.ndarray or x.ndim == 0 or like.ndim <= 1:   # the common case, checked cheaply
        return x
    return x.reshape((-1,) + (1,) * (like.ndim - 1))


def hyper(x, dtype, h=float):
    """A hyperparameter as the update computes with it: through `h` (the framework's hand-over), cast to the
    run's dtype. Python float -> numpy scalar; (G,) vector -> (G,) array of dtype."""
    return dtype(h(x))


class RandomRounding:
    """Random rounding in the manner of Monte Carlo Arithmetic (Verificarlo, Verrou), at the level of the
    quantities the reference computes: each carries an error uniform in +-u times the magnitude of the
    terms it was computed from (a sum's error scales with the sum of |terms|, not with the result).

    u is the unit roundoff of the run's dtype; the arithmetic itself stays float64. Applied to the
    initial weights (one rounding each), every residual r = Xw + b - y, every gradient and every
    parameter update, it shows how far rounding of that size can move the run: how the task amplifies
    an ulp. Seeded: the same (seed, u) gives the same sample."""

    CHUNK = 1 << 16

    def __init__(self, seed: int, unit: float):
        self.rng = np.random.default_rng(seed)
        self.unit = unit
        self.buf, self.pos = np.empty(0), 0

    def _draw(self, size: int) -> np.ndarray:
        """size uniforms in +-unit, cut from a pre-drawn chunk (one generator call per ~65k roundings)."""
        if self.pos + size > len(self.buf):
            self.buf = self.unit * self.rng.uniform(-1.0, 1.0, max(self.CHUNK, size))
            self.pos = 0
        out = self.buf[self.pos:self.pos + size]
        self.pos += size
        return out

    def __call__(self, x, magnitude):
        x = np.asarray(x)
        return x + self._draw(x.size).reshape(x.shape) * magnitude
