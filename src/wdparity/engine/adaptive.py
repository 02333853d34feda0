"""The reference's directions for the adaptive families beyond Adam and RMSprop: Adagrad, Adadelta, Adamax,
NAdam, RAdam and Lion, each an (init, update) pair of transforms.py emitting a direction d that scale_by_lr
turns into the step -lr_t*d (spec/optimizers.py states each formula); and LAMB's trust ratio, which meets the
decoupled decay where each framework puts it.

Optimizer hyperparameters other than lr are one number per run (a grid varies only lr and the decay
coefficients, batching.py), so only the gradient-shaped state carries the config axis. Under an active
RandomRounding each computed quantity gets a rounding error of its own size, as in transforms.py.
NumPy + stdlib only.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from wdparity.engine.rounding import current, hyper, is_grid, jitter, per_config, sum_sq
from wdparity.engine.schedules import multiplier
from wdparity.engine.transforms import Transform, bias_corrections, decay_direction, scale_by_adam, scale_by_lr, stateless, zeros


def _moment(rr, decay, keep, state, x):
    """decay*state + keep*x, with the rounding error of its terms' size."""
    return jitter(rr, decay * state + keep * x, lambda: np.abs(decay * state) + np.abs(keep * x))


def _rounded(rr, out: dict, ops: int = 3) -> dict:
    """A division, a square root and a sum or two: a few roundings of the result's size."""
    return out if rr is None else {k: rr(x, ops * np.abs(x)) for k, x in out.items()}


def scale_by_adagrad(initial_accumulator, eps, eps_in_sqrt: bool, dtype, h=float) -> Transform:
    """s = s + g^2 from s_0 = initial_accumulator; d = g / (sqrt(s) + eps), or g / sqrt(s + eps)."""
    eps_ = hyper(eps, dtype, h)

    def update(u, s, p, t):
        rr = current()
        s = {k: jitter(rr, s[k] + u[k] * u[k], lambda: s[k] + u[k] * u[k]) for k in u}
        if eps_in_sqrt:
            out = {k: u[k] / np.sqrt(s[k] + eps_) for k in u}
        else:
            out = {k: u[k] / (np.sqrt(s[k]) + eps_) for k in u}
        return _rounded(rr, out), s

    return Transform(lambda params: {k: np.full_like(x, dtype(initial_accumulator)) for k, x in params.items()},
                     update)


def adagrad_lr_decay(lr_decay: float):
    """torch.optim.Adagrad's lr_decay as a factor on lr_t: 1 / (1 + t*lr_decay) at step t = 0, 1, ..."""
    return lambda t: 1.0 / (1.0 + t * lr_decay)


def scale_by_adadelta(rho, eps, dtype, h=float) -> Transform:
    """v = rho*v + (1-rho)*g^2; d = sqrt(x + eps)/sqrt(v + eps) * g; x = rho*x + (1-rho)*d^2."""
    rho_, c, eps_ = hyper(rho, dtype, h), dtype(1.0 - h(rho)), hyper(eps, dtype, h)

    def update(u, state, p, t):
        v, x = state
        rr = current()
        v = {k: _moment(rr, rho_, c, v[k], u[k] * u[k]) for k in u}
        d = _rounded(rr, {k: np.sqrt(x[k] + eps_) / np.sqrt(v[k] + eps_) * u[k] for k in u}, 4)
        x = {k: _moment(rr, rho_, c, x[k], d[k] * d[k]) for k in u}
        return d, (v, x)

    return Transform(lambda params: (zeros(params), zeros(params)), update)


def scale_by_adamax(b1, b2, eps, placement: str, dtype, h=float, bias_correction=True) -> Transform:
    """m = b1*m + (1-b1)*g; "in_max": u = max(b2*u, |g| + eps), d = m_hat/u; "outside": u = max(b2*u, |g|),
    d = m_hat/(u + eps); m_hat = m/(1-b1^t), or m itself without bias_correction (MLX)."""
    b1_, b2_, c1, eps_ = hyper(b1, dtype, h), hyper(b2, dtype, h), dtype(1.0 - h(b1)), hyper(eps, dtype, h)
    corrections = bias_corrections(b1, b2, None, dtype)

    def update(g, state, p, t):
        m, u = state
        rr = current()
        m = {k: _moment(rr, b1_, c1, m[k], g[k]) for k in g}
        bc1 = dtype(corrections(t)[0]) if bias_correction else dtype(1.0)
        if placement == "in_max":
            u = {k: np.maximum(b2_ * u[k], jitter(rr, np.abs(g[k]) + eps_, lambda: np.abs(g[k]) + eps_)) for k in g}
            out = {k: (m[k] / per_config(bc1, m[k])) / u[k] for k in g}
        elif placement == "in_max_decayed":
            u = {k: np.maximum(jitter(rr, b2_ * u[k] + eps_, lambda: b2_ * u[k] + eps_), np.abs(g[k])) for k in g}
            out = {k: (m[k] / per_config(bc1, m[k])) / u[k] for k in g}
        else:
            u = {k: np.maximum(b2_ * u[k], np.abs(g[k])) for k in g}
            out = {k: (m[k] / per_config(bc1, m[k])) / (u[k] + eps_) for k in g}
        return _rounded(rr, out), (m, u)

    return Transform(lambda params: (zeros(params), zeros(params)), update)


def nadam_momentum(b1: float, momentum_decay: Optional[float]):
    """mu_t at step t = 1, 2, ...: b1*(1 - 0.5*0.96^(t*momentum_decay)), or b1 throughout (None)."""
    if momentum_decay is None:
        return lambda t: b1
    return lambda t: b1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


def scale_by_nadam(b1, b2, eps, momentum_decay: Optional[float], dtype, h=float) -> Transform:
    """NAdam: d = ((1-mu_t)/(1-P_t)*g + mu_{t+1}/(1-P_t*mu_{t+1})*m) / (sqrt(v/(1-b2^t)) + eps)."""
    b1_, b2_, c1, c2, eps_ = (hyper(b1, dtype, h), hyper(b2, dtype, h), dtype(1.0 - h(b1)), dtype(1.0 - h(b2)),
                              hyper(eps, dtype, h))
    mu = nadam_momentum(float(h(b1)), momentum_decay)
    corrections = bias_corrections(b1, b2, None, dtype)

    def update(g, state, p, t):
        m, v, product = state
        rr = current()
        m = {k: _moment(rr, b1_, c1, m[k], g[k]) for k in g}
        v = {k: _moment(rr, b2_, c2, v[k], g[k] * g[k]) for k in g}
        mu_t, mu_next = mu(t + 1), mu(t + 2)
        product = product * mu_t
        a, b = dtype((1.0 - mu_t) / (1.0 - product)), dtype(mu_next / (1.0 - product * mu_next))
        bc2 = dtype(corrections(t)[1])
        out = {k: (a * g[k] + b * m[k]) / (np.sqrt(v[k] / per_config(bc2, v[k])) + eps_) for k in g}
        return _rounded(rr, out, 4), (m, v, product)

    return Transform(lambda params: (zeros(params), zeros(params), 1.0), update)


def radam_rectification(b2: float, t: int) -> tuple[float, float]:
    """(rho_t, r_t) at step t = 1, 2, ... (r_t is NaN where rho_t <= 4, never used there)."""
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho_t = rho_inf - 2.0 * t * b2 ** t / (1.0 - b2 ** t)
    if rho_t <= 4.0:
        return rho_t, math.nan
    return rho_t, math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))


def scale_by_radam(b1, b2, eps, placement: str, threshold: float, inclusive: bool, dtype, h=float) -> Transform:
    """RAdam: rectified Adam while rho_t passes the threshold, else the bias-corrected momentum m_hat."""
    b1_, b2_, c1, c2, eps_ = (hyper(b1, dtype, h), hyper(b2, dtype, h), dtype(1.0 - h(b1)), dtype(1.0 - h(b2)),
                              hyper(eps, dtype, h))
    corrections = bias_corrections(b1, b2, None, dtype)
    beta2 = float(h(b2))

    def update(g, state, p, t):
        m, v = state
        rr = current()
        m = {k: _moment(rr, b1_, c1, m[k], g[k]) for k in g}
        v = {k: _moment(rr, b2_, c2, v[k], g[k] * g[k]) for k in g}
        bc1, bc2 = (dtype(c) for c in corrections(t))
        rho_t, r_t = radam_rectification(beta2, t + 1)
        if not (rho_t >= threshold if inclusive else rho_t > threshold):
            return _rounded(rr, {k: m[k] / per_config(bc1, m[k]) for k in g}, 1), (m, v)
        r = dtype(r_t)
        if placement == "corrected":
            out = {k: r * (m[k] / per_config(bc1, m[k])) / (np.sqrt(v[k] / per_config(bc2, v[k])) + eps_) for k in g}
        else:
            out = {k: (m[k] / per_config(bc1, m[k])) * r * (per_config(np.sqrt(bc2), v[k]) / (np.sqrt(v[k]) + eps_)) for k in g}
        return _rounded(rr, out, 4), (m, v)

    return Transform(lambda params: (zeros(params), zeros(params)), update)


def scale_by_lion(b1, b2, dtype, h=float) -> Transform:
    """Lion: d = sign(b1*m + (1-b1)*g), then m = b2*m + (1-b2)*g (sign(0) = 0)."""
    b1_, b2_, c1, c2 = hyper(b1, dtype, h), hyper(b2, dtype, h), dtype(1.0 - h(b1)), dtype(1.0 - h(b2))

    def update(g, m, p, t):
        rr = current()
        d = {k: np.sign(_moment(rr, b1_, c1, m[k], g[k])) for k in g}
        m = {k: _moment(rr, b2_, c2, m[k], g[k]) for k in g}
        return d, m

    return Transform(zeros, update)


def _norms(x: dict, grid: bool) -> dict:
    """Each tensor's L2 norm per config: over the last axis of a grid's (G, d) weight, all of a single run's."""
    return {k: (np.abs(v) if (grid and v.ndim == 1) or v.ndim == 0 else np.sqrt(sum_sq(v, grid))) for k, v in x.items()}


def trust_ratio(weights=None, cap=None) -> Transform:
    """LAMB's per-tensor trust ratio: u * ||w|| / ||u||, 1 where either norm is 0, at most `cap` (None: no cap).
    `weights(p, t)`: the w whose norm is taken (default: the params before the step)."""

    def update(u, state, p, t):
        grid = is_grid(u)
        w = p if weights is None else weights(p, t)
        wn, un = _norms(w, grid), _norms(u, grid)
        out = {}
        for k, x in u.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = wn[k] / un[k] if cap is None else np.minimum(wn[k] / un[k], cap)   # the 1 is never capped
                r = np.where((wn[k] == 0) | (un[k] == 0), 1.0, ratio).astype(x.dtype)
            out[k] = x * (r[:, None] if (grid and x.ndim == 2) else r)
        return _rounded(current(), out, 4), state

    return Transform(lambda params: None, update)


def lamb_core(opt: dict, lr, schedule: dict, dtype, h, decoupled: list[tuple[dict, object]]) -> list[Transform]:
    """LAMB's transforms up to the step, with its decoupled rules placed as opt["decay_placement"] says:
    inside the ratio (u = d + lambda*dir(w)), before it (r from w - lr_t*lambda*dir(w)), or after it."""
    adam = scale_by_adam(*opt["betas"], opt["eps"], "corrected", dtype, h)

    def with_terms(x: dict, p: dict, scale, t: int) -> dict:
        """x + scale*lambda_t*dir(w) for each decoupled rule (lambda_t: its own schedule, DecayRule.schedule),
        scale*lambda_t formed in the run's dtype as the decay transforms form it (a float or a grid's (G,) vector)."""
        out = dict(x)
        for rule, c in decoupled:
            own = rule.get("schedule")
            amplitude = dtype(h(scale) * h(c if own is None else c * multiplier(own, t)))
            for k in rule["params"]:
                out[k] = out[k] + per_config(amplitude, out[k]) * decay_direction(p[k], rule["norm"], rule["l1_at_zero"])
        return out

    placement, cap = opt["decay_placement"], opt.get("max_trust_ratio")
    if placement == "inside_trust_ratio":
        inside = stateless(lambda u, p, t: with_terms(u, p, 1.0, t))
        return [adam, inside, trust_ratio(cap=cap), scale_by_lr(lr, schedule, dtype, h)]
    if placement == "before":
        def decayed(p, t):
            return with_terms(p, p, -(lr * multiplier(schedule, t)), t)
        return [adam, trust_ratio(decayed, cap), scale_by_lr(lr, schedule, dtype, h)]
    return [adam, trust_ratio(cap=cap), scale_by_lr(lr, schedule, dtype, h)]
