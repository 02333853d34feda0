"""The reference's Adafactor (spec/optimizers.py AdafactorSpec): its per-tensor transforms, which unlike the
other families end in the step itself (the parameter scale and the momentum come after the learning rate).

Per tensor and per config (a grid's (G, d) weight and (G,) bias): the second moment, the block-RMS clip, the
step size min(lr_t, 1/sqrt(k)) or lr_t, the parameter scale max(e, rms(w)) and an optional momentum on the
scaled step. Under an active RandomRounding each computed quantity gets a rounding error of its own size, as in
adaptive.py. NumPy + stdlib only.
"""

from __future__ import annotations

import numpy as np

from wdparity.engine.rounding import current, hyper, is_grid, jitter, per_config
from wdparity.engine.schedules import multiplier
from wdparity.engine.transforms import Transform, decay_direction, decay_scale, stateless, zeros


def _rms(x: np.ndarray, grid: bool):
    """A tensor's root mean square per config: over the last axis of a grid's (G, d) weight, all of a single
    run's weight; a bias is its own |b|."""
    if (grid and x.ndim == 1) or x.ndim == 0:
        return np.abs(x)
    return np.sqrt(np.mean(x * x, axis=-1) if (grid or x.ndim == 1) else np.mean(x * x))


def second_moment_decay(decay_rate: float, dtype_name, dtype):
    """b2_k = 1 - k^(-decay_rate) at step k = t + 1, exact or computed in float32 (optax's _decay_rate_pow)."""
    if dtype_name == "float32":
        return lambda t: dtype(np.float32(1.0) - np.float32(t + 1) ** np.float32(-decay_rate))
    return lambda t: dtype(1.0 - (t + 1) ** (-decay_rate))


def scale_by_factored_rms(decay_rate, eps, decay_rate_dtype, dtype, h=float) -> Transform:
    """v = b2_k*v + (1-b2_k)*(g^2 + eps), u = g/sqrt(v)."""
    eps_, beta = hyper(eps, dtype, h), second_moment_decay(decay_rate, decay_rate_dtype, dtype)

    def update(g, v, p, t):
        rr = current()
        b2 = beta(t)
        sq = {k: jitter(rr, g[k] * g[k] + eps_, lambda: g[k] * g[k] + eps_) for k in g}
        v = {k: jitter(rr, b2 * v[k] + (dtype(1) - b2) * sq[k], lambda: b2 * v[k] + (dtype(1) - b2) * sq[k]) for k in g}
        out = {k: g[k] / np.sqrt(v[k]) for k in g}
        return (out if rr is None else {k: rr(x, 2 * np.abs(x)) for k, x in out.items()}), v

    return Transform(zeros, update)


def clip_by_block_rms(threshold, dtype, h=float) -> Transform:
    """u / max(1, rms(u)/threshold), per tensor."""
    c = hyper(threshold, dtype, h)

    def fn(u, p, t):
        grid = is_grid(u)
        out = {}
        for k, x in u.items():
            r = jitter(current(), _rms(x, grid), lambda: 2 * _rms(x, grid))
            out[k] = x / per_config(np.maximum(dtype(1), r / c), x)
        return out

    return stateless(fn)


def adafactor_core(opt: dict, lr, schedule: dict, dtype, h, decoupled: list[tuple[dict, object]]) -> list[Transform]:
    """Adafactor up to its step (the decoupled rules stay outside, after it; with decay_placement "before" the
    parameter scale is taken from w - lr_t*lambda*dir(w))."""
    parts = [scale_by_factored_rms(opt["decay_rate"], opt["eps"], opt.get("decay_rate_dtype"), dtype, h)]
    if opt["clip_threshold"] is not None:
        parts.append(clip_by_block_rms(opt["clip_threshold"], dtype, h))
    relative, scale = opt["relative_step"], opt["parameter_scale"]
    floor = None if scale is None else hyper(scale, dtype, h)

    def weights(p: dict, t: int) -> dict:
        if opt["decay_placement"] != "before":
            return p
        out = dict(p)
        for rule, c in decoupled:
            own = rule.get("schedule")
            amplitude = dtype(h(decay_scale(rule["scale"], lr, schedule, t)) * h(c if own is None else c * multiplier(own, t)))
            for k in rule["params"]:
                out[k] = out[k] - per_config(amplitude, out[k]) * decay_direction(p[k], rule["norm"], rule["l1_at_zero"])
        return out

    def step_size(u, p, t):
        rr = current()
        rho = dtype(h(lr * multiplier(schedule, t)))
        if relative:
            rho = np.minimum(rho, dtype(1.0 / np.sqrt(t + 1.0)))
        out = {k: per_config(rho, x) * x for k, x in u.items()}
        if floor is not None:
            grid = is_grid(u)
            w = weights(p, t)
            out = {k: per_config(np.maximum(floor, jitter(rr, _rms(w[k], grid), lambda: 2 * _rms(w[k], grid))), x) * x
                   for k, x in out.items()}
        return out if rr is None else {k: rr(x, 2 * np.abs(x)) for k, x in out.items()}

    parts.append(stateless(step_size))
    if opt["momentum"] is not None:
        b1 = hyper(opt["momentum"], dtype, h)
        keep = dtype(1.0 - h(opt["momentum"]))

        def ema(u, m, p, t):
            rr = current()
            m = {k: jitter(rr, b1 * m[k] + keep * u[k], lambda: np.abs(b1 * m[k]) + np.abs(keep * u[k])) for k in u}
            return m, m

        parts.append(Transform(zeros, ema))
    parts.append(stateless(lambda u, p, t: {k: -x for k, x in u.items()}))
    return parts
