"""The reference's transforms: small (init, update) pairs chained the optax way.

"Coupled vs decoupled" is literally where the decay transform sits: before the optimizer's moments (it
edits the gradient) or after them (it edits the step).

    gradient -> [coupled decay] -> sgd_buffer | sgd_velocity | scale_by_adam | scale_by_rms -> [scale_by_lr]
             -> [decoupled decay] -> [freeze] -> w <- w + update

A grid's tensors carry a leading config axis (G runs trained together; a single run's have none) and every
hyperparameter is a Python float or a (G,) vector (as optax hyperparameters may be scalars or arrays):
one chain serves a single run and a grid, with the same IEEE operations in the same order per config.
Under an active RandomRounding (rounding.py) each computed quantity also gets a rounding error of its
own size, for the envelopes. NumPy + stdlib only.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from wdparity.engine.rounding import current, hyper, is_grid, is_vector, jitter, per_config, sum_sq
from wdparity.engine.schedules import multiplier

Params = dict[str, np.ndarray]
State = Any


class Transform(NamedTuple):
    init: Callable[[Params], State]
    update: Callable[[Params, State, Params, int], tuple[Params, State]]


def chain(*transforms: Transform) -> Transform:
    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params, t):
        new_state = []
        for transform, s in zip(transforms, state):
            updates, s = transform.update(updates, s, params, t)
            new_state.append(s)
        return updates, tuple(new_state)

    return Transform(init, update)


def stateless(fn: Callable[[Params, Params, int], Params]) -> Transform:
    return Transform(lambda params: None, lambda u, s, p, t: (fn(u, p, t), None))


def zeros(params: Params) -> Params:
    return {k: np.zeros_like(x) for k, x in params.items()}


def decay_direction(w: np.ndarray, norm: str, l1_at_zero: float) -> np.ndarray:
    """d/dw of the penalty shape: w for l2, sign(w) for l1 with sign(0) = l1_at_zero."""
    if norm == "l2":
        return w
    one = np.ones_like(w)
    return np.where(w > 0, one, np.where(w < 0, -one, one * w.dtype.type(l1_at_zero)))


def _as_float(x):
    """float(x) for a scalar, a float64 array for a (G,) vector."""
    return np.asarray(x, dtype=np.float64) if is_vector(x) else float(x)


# ---------------------------------------------------------------- decay
def add_gradient_decay(rule: dict, dtype, h=float, coefficient=None) -> Transform:
    """Coupled decay: g <- g + lambda * dir(w) on the masked tensors (L2 penalty, torch weight_decay).
    A loss penalty's term is computed in the weights' dtype, never handed over as a hyperparameter."""
    coef = rule["coefficient"] if coefficient is None else coefficient
    lam = dtype(coef) if rule.get("via_loss") else hyper(coef, dtype, h)
    own = rule.get("schedule")

    def fn(u, p, t):
        rr = current()
        lam_t = lam if own is None else hyper(coef * multiplier(own, t), dtype, h)
        out = {}
        for k in u:
            if k not in rule["params"]:
                out[k] = u[k]
                continue
            term = per_config(lam_t, u[k]) * decay_direction(p[k], rule["norm"], rule["l1_at_zero"])
            out[k] = jitter(rr, u[k] + term, lambda: np.abs(u[k]) + np.abs(term))
        return out

    return stateless(fn)


def decay_scale(scale: str, lr, schedule: dict, t: int):
    """s in w <- w - s*lambda*w: lr_t ("lr", every framework), eta_t ("schedule", the AdamW paper), 1 ("none")."""
    if scale == "lr":
        return lr * multiplier(schedule, t)
    if scale == "schedule":
        return multiplier(schedule, t)
    if scale == "none":
        return 1.0
    raise ValueError(f"`scale` must be one of ['lr', 'schedule', 'none']. Received: scale={scale!r}")


def add_decoupled_decay(rule: dict, lr, schedule: dict, dtype, h=float, coefficient=None) -> Transform:
    """Decoupled decay (AdamW): step <- step - s_t*lambda*dir(w), outside the optimizer's moments."""
    coef = rule["coefficient"] if coefficient is None else coefficient
    own = rule.get("schedule")

    def fn(u, p, t):
        rr = current()
        lam_t = coef if own is None else coef * multiplier(own, t)
        c = dtype(h(decay_scale(rule["scale"], lr, schedule, t)) * h(lam_t))
        out = {}
        for k in u:
            if k not in rule["params"]:
                out[k] = u[k]
                continue
            term = per_config(c, u[k]) * decay_direction(p[k], rule["norm"], rule["l1_at_zero"])
            out[k] = jitter(rr, u[k] - term, lambda: np.abs(u[k]) + np.abs(term))
        return out

    return stateless(fn)


def clip(kind: str, threshold, eps, dtype, h=float) -> Transform:
    """Gradient clipping (spec Clip): by the global norm over every tensor, by each tensor's norm, or by value.
    A norm scale is min(1, threshold / (norm + eps)) per config (a grid's norms are taken per row)."""
    c, e = hyper(threshold, dtype, h), hyper(eps, dtype, h)

    def fn(u, p, t):
        rr = current()
        if kind == "value":
            return {k: np.clip(u[k], -c, c) for k in u}
        grid = is_grid(u)
        sq = {k: sum_sq(x, grid) for k, x in u.items()}
        if kind == "global_norm":
            total = np.sqrt(sum(sq.values()))
            norms = {k: total for k in u}
        else:
            norms = {k: np.sqrt(v) for k, v in sq.items()}
        out = {}
        for k, x in u.items():
            scale = np.minimum(dtype(1.0), c / (norms[k] + e))
            scale = scale[:, None] if (grid and x.ndim == 2) else scale
            out[k] = x * scale
        if rr is not None:
            out = {k: rr(x, 3 * np.abs(x)) for k, x in out.items()}
        return out

    return stateless(fn)


def freeze(names: list[str]) -> Transform:
    """Frozen tensors (torch: named in no param group): their update is exactly 0, the last transform of the
    chain, so no gradient step and no decay reach them and w + 0 keeps each value bit for bit."""
    return stateless(lambda u, p, t: {k: (np.zeros_like(u[k]) if k in names else u[k]) for k in u})


# ---------------------------------------------------------------- SGD
def sgd_buffer(momentum, dampening, nesterov: bool, dtype, h=float) -> Transform:
    """torch.optim.SGD's buffer: buf_0 = g, buf = m*buf + (1-d)*g; nesterov uses g + m*buf."""
    if np.all(np.asarray(momentum) == 0):
        return stateless(lambda u, p, t: u)
    m, keep = hyper(momentum, dtype, h), dtype(1.0 - h(dampening))

    def update(u, buf, p, t):
        rr = current()
        if buf is None:
            buf = {k: u[k].copy() for k in u}
        else:
            buf = {k: jitter(rr, per_config(m, u[k]) * buf[k] + per_config(keep, u[k]) * u[k],
                             lambda: np.abs(per_config(m, u[k]) * buf[k]) + np.abs(per_config(keep, u[k]) * u[k]))
                   for k in u}
        if not nesterov:
            return buf, buf
        return {k: jitter(rr, u[k] + per_config(m, u[k]) * buf[k], lambda: np.abs(u[k]) + np.abs(per_config(m, u[k]) * buf[k]))
                for k in u}, buf

    return Transform(lambda params: None, update)


def scheduled_lr(rr, lr, schedule: dict, t: int, dtype, h=float):
    """lr_t = lr * eta_t as the update receives it, for a velocity form that keeps lr inside its buffer."""
    eta = multiplier(schedule, t)
    return jitter(rr, hyper(lr * eta, dtype, h), lambda: abs(lr * eta))


def sgd_velocity(lr, momentum, nesterov: bool, schedule: dict, dtype, h=float) -> Transform:
    """Keras/MXNet momentum: v = m*v - lr_t*g; step = v (nesterov: m*v - lr_t*g). Emits the final step."""
    m = hyper(momentum, dtype, h)

    def update(u, v, p, t):
        rr = current()
        lr_t = scheduled_lr(rr, lr, schedule, t, dtype, h)

        def step(k, prev):
            mv, lg = per_config(m, u[k]) * prev, per_config(lr_t, u[k]) * u[k]
            return jitter(rr, mv - lg, lambda: np.abs(mv) + np.abs(lg))

        v = {k: step(k, v[k]) for k in u}
        return ({k: step(k, v[k]) for k in u} if nesterov else v), v

    return Transform(zeros, update)


# ---------------------------------------------------------------- Adam
def bias_corrections(b1, b2, bc_dtype, dtype) -> Callable[[int], tuple]:
    """(1 - b1^t, 1 - b2^t) at step t: exact, or (Keras) from float32 betas in the run's arithmetic."""
    if bc_dtype == "float32":
        q = dtype
        B1, B2 = q(np.float32(b1)), q(np.float32(b2))

        def exact(t):
            return _as_float(q(1) - B1 ** q(t + 1)), _as_float(q(1) - B2 ** q(t + 1))
    else:
        def exact(t):
            return 1.0 - b1 ** (t + 1), 1.0 - b2 ** (t + 1)

    def corrections(t: int) -> tuple:
        rr = current()
        if rr is None:
            return exact(t)
        # 1 - b^t cancels: its rounding error is u * (1 + b^t), large relative to the result early on
        return tuple(_as_float(rr(c, 1.0 + b ** (t + 1))) for c, b in zip(exact(t), (b1, b2)))

    return corrections


def scale_by_adam(b1, b2, eps, placement: str, dtype, h=float, bc_dtype=None, amsgrad=None,
                  bias_correction=True) -> Transform:
    """Adam's direction. corrected: m_hat/(sqrt(v_hat)+eps); uncorrected: m/(sqrt(v)+eps), its bias
    correction c_t = sqrt(1-b2^t)/(1-b1^t) folded into the step size (see adam_step_factor); no
    bias_correction: m/(sqrt(v)+eps) and no factor (MLX).
    amsgrad "v": v replaced by the running max of v; "v_hat": v_hat by the running max of v_hat."""
    b1_, b2_, eps_ = hyper(b1, dtype, h), hyper(b2, dtype, h), hyper(eps, dtype, h)
    c1, c2 = dtype(1.0 - h(b1)), dtype(1.0 - h(b2))
    corrections = bias_corrections(b1, b2, bc_dtype, dtype)

    def update(u, state, p, t):
        mu, nu, nu_max = state
        rr = current()
        P = per_config
        mu = {k: jitter(rr, P(b1_, u[k]) * mu[k] + P(c1, u[k]) * u[k],
                        lambda: np.abs(P(b1_, u[k]) * mu[k]) + np.abs(P(c1, u[k]) * u[k])) for k in u}
        nu = {k: jitter(rr, P(b2_, u[k]) * nu[k] + P(c2, u[k]) * u[k] * u[k],
                        lambda: P(b2_, u[k]) * nu[k] + P(c2, u[k]) * u[k] * u[k]) for k in u}
        second = nu
        if amsgrad == "v":
            nu_max = second = {k: np.maximum(nu_max[k], nu[k]) for k in u}
        if placement == "corrected" and bias_correction:
            bc1, bc2 = corrections(t)
            if amsgrad == "v_hat":
                nu_max = {k: np.maximum(nu_max[k], nu[k] / P(dtype(bc2), u[k])) for k in u}
                out = {k: (mu[k] / P(dtype(bc1), u[k])) / (np.sqrt(nu_max[k]) + P(eps_, u[k])) for k in u}
            else:
                out = {k: (mu[k] / P(dtype(bc1), u[k])) / (np.sqrt(second[k] / P(dtype(bc2), u[k])) + P(eps_, u[k]))
                       for k in u}
        else:
            out = {k: mu[k] / (np.sqrt(second[k]) + P(eps_, u[k])) for k in u}
        if rr is not None:   # a division, a square root and a sum: a few roundings of the result's size
            out = {k: rr(x, 3 * np.abs(x)) for k, x in out.items()}
        return out, (mu, nu, nu_max)

    return Transform(lambda params: (zeros(params), zeros(params), zeros(params)), update)


def adam_step_factor(b1, b2, bc_dtype=None, dtype=np.float64) -> Callable[[int], float]:
    """c_t = sqrt(1-b2^t)/(1-b1^t): the uncorrected placement's lr_t = lr * c_t (Keras, MXNet, TF)."""
    corrections = bias_corrections(b1, b2, bc_dtype, dtype)
    if bc_dtype == "float32":
        return lambda t: _as_float(np.sqrt(dtype(corrections(t)[1])) / dtype(corrections(t)[0]))
    return lambda t: _as_float(np.sqrt(corrections(t)[1]) / corrections(t)[0])


# ---------------------------------------------------------------- RMSprop
def scale_by_rms(rho, eps, eps_in_sqrt: bool, centered: bool, momentum, dtype, h=float, initial_scale=0.0,
                 bias_correction: bool = False, velocity: Optional[tuple] = None) -> Transform:
    """RMSprop's direction d = g / (sqrt(v) + eps) (eps_in_sqrt: g / sqrt(v + eps)), v = rho*v + (1-rho)*g^2 from
    v_0 = initial_scale, centered: v - a^2 with a = rho*a + (1-rho)*g; bias_correction: v, a over 1 - rho^t.
    momentum m > 0: buf = m*buf + d emitted in place of d; with velocity = (lr, schedule): buf = m*buf + lr_t*d
    and the step -buf is emitted (no scale_by_lr after it)."""
    rho_, c, eps_, m = hyper(rho, dtype, h), dtype(1.0 - h(rho)), hyper(eps, dtype, h), hyper(momentum, dtype, h)
    with_momentum = not np.all(np.asarray(momentum) == 0)

    def update(u, state, p, t):
        nu, avg, buf = state
        rr = current()
        P = per_config
        nu = {k: jitter(rr, P(rho_, u[k]) * nu[k] + P(c, u[k]) * u[k] * u[k],
                        lambda: P(rho_, u[k]) * nu[k] + P(c, u[k]) * u[k] * u[k]) for k in u}
        if centered:
            avg = {k: jitter(rr, P(rho_, u[k]) * avg[k] + P(c, u[k]) * u[k],
                             lambda: np.abs(P(rho_, u[k]) * avg[k]) + np.abs(P(c, u[k]) * u[k])) for k in u}
        nu_hat, avg_hat = nu, avg
        if bias_correction:
            bc = dtype(1.0 - h(rho) ** (t + 1))
            nu_hat = {k: nu[k] / bc for k in u}
            avg_hat = {k: avg[k] / bc for k in u} if centered else avg
        second = {k: nu_hat[k] - avg_hat[k] * avg_hat[k] for k in u} if centered else nu_hat
        if eps_in_sqrt:
            out = {k: u[k] / np.sqrt(second[k] + P(eps_, u[k])) for k in u}
        else:
            out = {k: u[k] / (np.sqrt(second[k]) + P(eps_, u[k])) for k in u}
        if rr is not None:   # a division, a square root and a sum: a few roundings of the result's size
            out = {k: rr(x, 3 * np.abs(x)) for k, x in out.items()}
        if velocity is not None:
            lr_t = scheduled_lr(rr, *velocity, t, dtype, h)
            out = {k: P(lr_t, u[k]) * out[k] for k in u}
        if with_momentum:
            buf = {k: jitter(rr, P(m, u[k]) * buf[k] + out[k], lambda: np.abs(P(m, u[k]) * buf[k]) + np.abs(out[k]))
                   for k in u}
            out = buf
        if velocity is not None:
            out = {k: -x for k, x in out.items()}
        return out, (nu, avg, buf)

    def init(params):
        nu = {k: np.full_like(x, dtype(initial_scale)) for k, x in params.items()}
        return nu, zeros(params), zeros(params)

    return Transform(init, update)


# ---------------------------------------------------------------- the learning rate
def scale_by_lr(lr, schedule: dict, dtype, h=float, factor: Callable[[int], float] = lambda t: 1.0) -> Transform:
    """step = -lr_t * direction, lr_t = lr * eta_t * factor(t), handed to the update as one number."""
    cache: dict = {}   # (eta_t, factor(t)) -> the step: constant under a constant schedule

    def fn(u, p, t):
        rr = current()
        eta, f = multiplier(schedule, t), factor(t)
        if rr is not None:
            step = jitter(rr, dtype(-h(lr * eta * f)), lambda: 2 * abs(dtype(-h(lr * eta * f))))
            return {k: rr(per_config(step, u[k]) * u[k], np.abs(per_config(step, u[k]) * u[k])) for k in u}
        key = None if is_vector(f) else (eta, f)
        if key is None or key not in cache:
            step = dtype(-h(lr * eta * f))
            cache.clear()
            cache[key] = {k: per_config(step, u[k]) for k in u}
        steps = cache[key]
        return {k: steps[k] * u[k] for k in u}

    return stateless(fn)
