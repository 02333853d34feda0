"""The NumPy reference with a leading config axis: G runs that differ only in lr and decay coefficients.

Why it exists: a lambda x lr grid (`wdparity sweep`) trains the same chain of transforms G times with
other numbers in it. Run one by one, the reference spends its time in Python (a dict comprehension
per transform per step); here every transform of reference.py is mirrored on (G, d) weights and (G,)
biases with per-config hyperparameter vectors, so a step costs about what one serial step costs.

It gives the same numbers as `reference.run` per config, bit for bit (tests/test_grid.py): each
per-config scalar is formed with the same IEEE operations, in the same order, as the serial code
forms it in Python floats (lr * eta_t * factor(t), then the optional float32 rounding, then the
cast), and the forward product uses np.matmul on stacked (n, d) @ (d, 1) blocks, which calls the same
BLAS routine per config as the serial (n, d) @ (d,).

Only lr (optimizer.lr) and the decay coefficients may differ between the configs of a batch; every
other field is structure (`structure_key`). A config without a rule the others have (lambda = 0 drops
a penalty's rule) joins them with that rule at coefficient 0 (`align`), which changes no number.
NumPy + stdlib only, like reference.py: the numpy backend's worker imports it.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

import numpy as np

from . import reference as ref
from .data import batches, loss_factor
from .schedules import multiplier

Vec = np.ndarray   # (G,) float64: one hyperparameter per config


def structure_key(semantics: dict) -> str:
    """What must be equal for two semantics to train in one batch: all but lr and the coefficients."""
    sem = json.loads(json.dumps(semantics))
    sem["optimizer"]["lr"] = None
    for rule in sem.get("decay", []):
        rule["coefficient"] = None
    return json.dumps(sem, sort_keys=True)


def _signature(rule: dict) -> str:
    return json.dumps({k: v for k, v in rule.items() if k != "coefficient"}, sort_keys=True)


def loose_key(semantics: dict) -> str:
    """structure_key without the decay rules: semantics that differ in which rules they have (lambda = 0
    drops a penalty's rule) may still train together once `align` gives them the same rules."""
    return structure_key({**semantics, "decay": []})


def align(semantics: list[dict]) -> Optional[list[dict]]:
    """The semantics with one list of decay rules: a rule a config lacks is added with coefficient 0.0.
    Exact: g + 0*dir(w) == g and step - 0*dir(w) == step for finite w (a non-finite run is stopped).
    None when the configs' own rules do not all fit in that order (an addition order would change)."""
    longest = [_signature(r) for r in max(semantics, key=lambda s: len(s.get("decay", [])))["decay"]]
    if len(set(longest)) != len(longest):
        return None
    out = []
    for sem in semantics:
        own = {_signature(r): r for r in sem.get("decay", [])}
        position = iter(longest)
        if len(own) != len(sem.get("decay", [])) or not all(sig in position for sig in own):
            return None
        decay = [own.get(sig) or {**json.loads(sig), "coefficient": 0.0} for sig in longest]
        out.append({**sem, "decay": decay})
    return out


def groups(semantics: list[dict], extra: list[str]) -> list[list[int]]:
    """Which configs the batched reference trains together: equal `extra` (task, dtype) and loose_key,
    and rules that `align`; a set that does not align falls back to equal structure_key."""
    out = []
    for loose in partition([f"{e}|{loose_key(s)}" for e, s in zip(extra, semantics)]):
        if len(loose) == 1 or align([semantics[i] for i in loose]) is not None:
            out.append(loose)
        else:
            out += [[loose[i] for i in strict] for strict in partition([structure_key(semantics[i]) for i in loose])]
    return out


def partition(keys: list[Optional[str]]) -> list[list[int]]:
    """Indices grouped by equal key, in first-seen order; a None key always stands alone."""
    groups: dict[str, list[int]] = {}
    out: list[list[int]] = []
    for i, key in enumerate(keys):
        if key is None:
            out.append([i])
        elif key in groups:
            groups[key].append(i)
        else:
            groups[key] = [i]
            out.append(groups[key])
    return out


def train_grouped(groups: list[list[int]], jobs: list[dict], data: dict, train: Callable,
                  vectorized: Callable) -> list[dict]:
    """An adapter's train_batch: each group of two or more jobs through `vectorized(jobs, data)`, a job
    alone through `train(job, data)`; trajectories returned in the jobs' order."""
    out: list = [None] * len(jobs)
    for group in groups:
        if len(group) == 1:
            out[group[0]] = train(jobs[group[0]], data)
            continue
        for i, traj in zip(group, vectorized([jobs[i] for i in group], data)):
            out[i] = traj
    return out


def _rounding(hyper_dtype: str) -> Callable[[Vec], Vec]:
    """reference.rounder on a vector: as is, or through a C float (MXNet's float32 hyperparameters)."""
    if hyper_dtype == "float32":
        return lambda x: np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)
    return lambda x: np.asarray(x, dtype=np.float64)


def _per_config(vec: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A (G,) vector shaped to broadcast against a (G, ...) tensor."""
    return vec.reshape((-1,) + (1,) * (like.ndim - 1))


def _gradient_decay(rule: dict, coef: Vec, dtype, H) -> ref.Transform:
    lam = (coef if rule.get("via_loss") else H(coef)).astype(dtype)

    def fn(u, p, t):
        return {k: (u[k] + _per_config(lam, u[k]) * ref.decay_direction(p[k], rule["norm"], rule["l1_at_zero"])
                    if k in rule["params"] else u[k]) for k in u}

    return ref._stateless(fn)


def _sgd_velocity(lr: Vec, momentum: float, nesterov: bool, schedule: dict, dtype, h, H) -> ref.Transform:
    m = dtype(h(momentum))

    def update(u, v, p, t):
        lr_t = H(lr * multiplier(schedule, t)).astype(dtype)
        v = {k: m * v[k] - _per_config(lr_t, u[k]) * u[k] for k in u}
        out = {k: m * v[k] - _per_config(lr_t, u[k]) * u[k] for k in u} if nesterov else v
        return out, v

    return ref.Transform(lambda params: {k: np.zeros_like(x) for k, x in params.items()}, update)


def _scale_by_lr(lr: Vec, schedule: dict, dtype, H, factor: Callable[[int], float] = lambda t: 1.0) -> ref.Transform:
    cache: dict[tuple, dict] = {}   # per (eta_t, factor(t)): constant under a constant schedule

    def fn(u, p, t):
        m, f = multiplier(schedule, t), factor(t)
        if (m, f) not in cache:
            step = (-H(lr * m * f)).astype(dtype)
            cache.clear()
            cache[(m, f)] = {k: _per_config(step, u[k]) for k in u}
        steps = cache[(m, f)]
        return {k: steps[k] * u[k] for k in u}

    return ref._stateless(fn)


def _decoupled_decay(rule: dict, coef: Vec, lr: Vec, schedule: dict, dtype, H) -> ref.Transform:
    def fn(u, p, t):
        if rule["scale"] == "lr":
            s = lr * multiplier(schedule, t)
        else:   # "schedule" / "none": the same number for every config
            s = np.full(len(lr), ref.decay_scale(rule["scale"], 1.0, schedule, t))
        c = (H(s) * H(coef)).astype(dtype)
        return {k: (u[k] - _per_config(c, u[k]) * ref.decay_direction(p[k], rule["norm"], rule["l1_at_zero"])
                    if k in rule["params"] else u[k]) for k in u}

    return ref._stateless(fn)


def build(semantics: list[dict], dtype=np.float64) -> ref.Transform:
    """reference.build for G semantics of one structure: the same chain, vectors where they differ."""
    first = semantics[0]
    opt, schedule = first["optimizer"], first.get("schedule", {"kind": "constant"})
    rules = first.get("decay", [])
    hyper = first.get("hyper_dtype", "float64")
    h, H = ref.rounder(hyper), _rounding(hyper)
    lr = np.array([s["optimizer"]["lr"] for s in semantics], dtype=np.float64)
    coef = [np.array([s["decay"][i]["coefficient"] for s in semantics], dtype=np.float64) for i in range(len(rules))]
    parts = [_gradient_decay(r, coef[i], dtype, H) for i, r in enumerate(rules) if r["coupling"] == "gradient"]
    if opt["name"] == "sgd" and opt.get("momentum_form", "buffer") == "velocity":
        parts.append(_sgd_velocity(lr, opt["momentum"], opt["nesterov"], schedule, dtype, h, H))
    elif opt["name"] == "sgd":
        parts.append(ref.sgd_buffer(opt["momentum"], opt["dampening"], opt["nesterov"], dtype, h))   # no lr in it
        parts.append(_scale_by_lr(lr, schedule, dtype, H))
    elif opt["name"] == "adam":
        b1, b2 = opt["betas"]
        bc_dtype = opt.get("bias_correction_dtype")
        parts.append(ref.scale_by_adam(b1, b2, opt["eps"], opt["eps_placement"], dtype, h, bc_dtype))   # no lr in it
        factor = (ref.adam_step_factor(b1, b2, bc_dtype, dtype) if opt["eps_placement"] == "uncorrected"
                  else (lambda t: 1.0))
        parts.append(_scale_by_lr(lr, schedule, dtype, H, factor))
    else:
        raise ValueError(f"`optimizer.name` must be one of ['sgd', 'adam']. Received: name={opt['name']!r}")
    parts += [_decoupled_decay(r, coef[i], lr, schedule, dtype, H) for i, r in enumerate(rules)
              if r["coupling"] == "decoupled"]
    if first.get("frozen"):   # structure: every config of a batch freezes the same tensors
        parts.append(ref.freeze(first["frozen"]))   # shape-agnostic: zeros_like on (G, d) and (G,)
    return ref.chain(*parts)


def gradients(params: dict, X: np.ndarray, y: np.ndarray, factor, hyper_dtype: str = "float64") -> dict:
    """reference.gradients per config: params {"weight": (G, d), "bias": (G,)}, one batch of rows."""
    r = np.matmul(X, params["weight"][:, :, None])[:, :, 0] + params["bias"][:, None] - y   # (G, n)
    if r.shape[1] == 1:   # X.T @ r with one row is x_j * r: one product per element, the same number
        xr = r * X
    else:
        xr = np.matmul(X.T, r[:, :, None])[:, :, 0]                                         # (G, d)
    if hyper_dtype == "float32":
        scale = r.dtype.type(np.float32(1.0 / r.shape[1]))
        return {"weight": scale * (factor * xr), "bias": scale * (factor * r.sum(axis=1))}
    n = r.dtype.type(r.shape[1])
    return {"weight": factor * xr / n, "bias": factor * r.sum(axis=1) / n}


def run(semantics: list[dict], data: dict, batch_size: int, dtype: str = "float64") -> list[dict[str, np.ndarray]]:
    """reference.run for G semantics of one structure, together; one trajectory per config.

    As in the reference, a config whose weights become non-finite or explode is stopped at that step
    (its later rows are NaN); the others go on.
    """
    semantics = align(semantics) or semantics
    keys = {structure_key(s) for s in semantics}
    if len(keys) != 1:
        raise ValueError(f"a batch must share one structure (all but lr and coefficients); got {len(keys)}")
    G = len(semantics)
    dt = np.dtype(dtype).type
    X, y = data["X_train"].astype(dt), data["y_train"].astype(dt)
    w0, b0 = data["w0"].astype(dt), np.asarray(data["b0"], dtype=dt)
    params = {"weight": np.repeat(w0[None, :], G, axis=0), "bias": np.full(G, b0, dtype=dt)}
    factor = dt(loss_factor(semantics[0].get("loss", "half_mse")))
    hyper = semantics[0].get("hyper_dtype", "float64")
    steps = batches(data["order"], batch_size)
    opt = build(semantics, dt)
    state = opt.init(params)
    W = np.empty((G, len(steps) + 1, w0.size), dtype=dt)   # config-major: each config's rows are contiguous
    B = np.empty((G, len(steps) + 1), dtype=dt)
    W[:, 0], B[:, 0] = params["weight"], params["bias"]
    last = np.full(G, len(steps))   # the last recorded step per config; rows after it stay NaN, as in the reference
    limit = ref.EXPLOSION_FACTOR * max(1.0, float(np.max(np.abs(w0), initial=0.0)), abs(float(b0)))
    alive = np.ones(G, dtype=bool)
    with np.errstate(all="ignore"):
        for t, rows in enumerate(steps):
            grads = gradients(params, X[rows], y[rows], factor, hyper)
            updates, state = opt.update(grads, state, params, t)
            params = {k: params[k] + updates[k] for k in params}
            W[:, t + 1], B[:, t + 1] = params["weight"], params["bias"]
            if float(np.abs(params["weight"]).max()) <= limit and float(np.abs(params["bias"]).max()) <= limit:
                continue   # every config finite and within the limit (NaN fails <=): none stops here
            wmax = np.abs(params["weight"]).max(axis=1).astype(np.float64)   # d >= 1: initial=0 changes nothing
            babs = np.abs(params["bias"]).astype(np.float64)
            big = np.where(babs > wmax, babs, wmax)          # Python's max(wmax, babs), NaN included
            stop = alive & ~(np.isfinite(big) & ~(big > limit))
            last[stop], alive = t + 1, alive & ~stop
            if not alive.any():
                break
    for g in range(G):
        W[g, last[g] + 1:], B[g, last[g] + 1:] = np.nan, np.nan
    return [{"weight": W[g], "bias": B[g]} for g in range(G)]
