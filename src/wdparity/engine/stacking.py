"""Random-rounding samples trained as one stack: an envelope's float64 members at about the cost of one run.

An envelope (judge/envelope.py) trains its semantics several times in float64: the exact reference and
SAMPLES random-rounding samples at one unit roundoff or two. Alone, each pays the chain's Python overhead
step by step; stacked along a leading member axis they pay it once (the linear model's members as a grid
of equal configs, batching.py; a network's tensors with a leading axis, network.py). Member i's rounding
errors come from its own RandomRounding, drawn in the order a lone run draws them, and every operation acts
within a member, so each member is bit for bit the trajectory it would be alone (tests/test_stacking.py
compares every member with its lone run). A network's chain stacks only when every transform acts element
by element: clipping, LAMB and Adafactor take norms per tensor, which a stacked network would mix across
members (the linear model's grid takes them per config, so its chains all stack). NumPy + stdlib only.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from wdparity.engine import network, reference
from wdparity.engine.data import batches, loss_factor
from wdparity.engine.rounding import RandomRounding

PER_TENSOR_NORMS = ("lamb", "adafactor")   # optimizers whose update reads a tensor's norm
MAX_PARAMETERS = 200_000   # beyond it a stack gains nothing (2 hidden layers at 200 inputs: 6 977 parameters)


class StackedRounding:
    """The RandomRounding of a stack: member i perturbed by members[i] (None: the exact member, unperturbed).
    A quantity shared by every member (a 0-d hyperparameter) becomes one value per member."""

    def __init__(self, members: list[Optional[RandomRounding]]):
        self.exact = sum(1 for rr in members if rr is None)
        if any(rr is not None for rr in members[:self.exact]) or any(rr is None for rr in members[self.exact:]):
            raise ValueError("a stack lists its exact members before its random-rounding samples")
        self.noisy = members[self.exact:]
        self.size = len(members)

    def __call__(self, x, magnitude):
        """x + error, each sample's error from its own draw (RandomRounding.__call__ member by member, in one
        multiply-add over the samples: the same numbers)."""
        x = np.asarray(x)
        if x.ndim == 0:
            x = np.full(self.size, x, dtype=x.dtype)
        elif x.shape[0] != self.size:
            raise ValueError(f"a stacked quantity must lead with the member axis ({self.size}); got {x.shape}")
        m = np.asarray(magnitude)
        n = x[0].size
        draws = np.concatenate([rr._draw(n) for rr in self.noisy]).reshape((len(self.noisy),) + x.shape[1:])
        out = x.copy()
        out[self.exact:] += draws * (m[self.exact:] if m.ndim == x.ndim else m)
        return out


def stackable(semantics: dict, data: dict) -> bool:
    """Whether these semantics' members may train as one stack (see the module docstring). Past
    MAX_PARAMETERS a step is bound by its elements, not by overhead: the members then train alone, so that a
    stack's temporaries (members x parameters) never multiply the judge's memory for nothing."""
    if _parameters(data) > MAX_PARAMETERS:
        return False
    if network.model_of(data) is None:
        return True
    return semantics["optimizer"]["name"] not in PER_TENSOR_NORMS and semantics.get("clip") is None


def member(params: dict, i: int) -> dict:
    """Member i's params (views into the stack), as its lone run holds them."""
    return {k: v[i] for k, v in params.items()}


def _parameters(data: dict) -> int:
    if network.model_of(data) is None:
        return int(np.asarray(data["w0"]).size) + 1
    return sum(int(v.size) for v in network.start(data).values())


def trajectory(semantics: dict, data: dict, batch_size: int,
               noises: list[Optional[tuple[int, float]]]) -> Iterator[tuple[int, dict, list[bool]]]:
    """Yields (t, params, alive) from t = 0: params with a leading axis of len(noises) members (member i the
    float64 reference under noises[i], None: exact), alive[i] False from the step after member i broke the
    stop rule (where its lone trajectory ends). Ends when no member is alive."""
    S = len(noises)
    rr = StackedRounding([RandomRounding(*n) if n is not None else None for n in noises])
    dt = np.float64
    X, y = data["X_train"].astype(dt), data["y_train"].astype(dt)
    model = network.model_of(data)
    if model is None:
        start = {"weight": np.repeat(data["w0"].astype(dt)[None, :], S, axis=0),
                 "bias": np.full(S, np.asarray(data["b0"], dtype=dt))}
    else:
        start = {k: np.repeat(v.astype(dt)[None], S, axis=0) for k, v in network.start(data).items()}
    params = {k: rr(v, np.abs(v)).astype(dt) for k, v in start.items()}
    factor = dt(loss_factor(semantics.get("loss", "half_mse")))
    hyper_dtype = semantics.get("hyper_dtype", "float64")
    opt = reference.build(semantics, dt)
    state = opt.init(params)
    limits = [reference.stop_threshold(member(params, i)) for i in range(S)]
    alive = [True] * S
    yield 0, params, list(alive)
    with np.errstate(all="ignore"):
        for t, rows in enumerate(batches(data["order"], batch_size)):
            if model is None:
                grads = reference.gradients(params, X[rows], y[rows], factor, hyper_dtype, rr)
            else:
                grads = network.gradients(params, X[rows], y[rows], factor, model, hyper_dtype, rr)
            params, state = reference.apply_update(opt, grads, state, params, t, rr, dt)
            yield t + 1, params, list(alive)
            for i in range(S):
                if alive[i] and reference.stops(member(params, i), limits[i]):
                    alive[i] = False
            if not any(alive):
                return
