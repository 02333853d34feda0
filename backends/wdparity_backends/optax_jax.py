"""What runs inside an optax worker: JAX's x64 flag, the Dense(1) parameters and loss, the optax chain (a
network's params, loss and masks: optax_network.py).

Shared by the adapter's train() and the vmapped grid (optax_batch.py), so both train exactly one model
with one transformation builder. JAX itself is passed in (imported by the caller inside the worker).
"""

from __future__ import annotations

import numpy as np

from wdparity.spec.models import TENSORS

from .optax_adafactor import clip_threshold
from .optax_network import optax_mask
from .optax_schedules import build as weight_decay_value
from .optax_vocab import OptaxRun

X64_VAR = "JAX_ENABLE_X64"   # read by JAX once, at import, into jax_enable_x64


def x64_env(dtype: str) -> dict[str, str]:
    """The worker environment fixing JAX's x64 flag for a run of `dtype` (float64 needs it, float32 runs
    without it, as a JAX user's float32 program does): the harness starts one worker per env."""
    return {X64_VAR: "1" if np.dtype(dtype) == np.float64 else "0"}


def require_x64(jax, dtype) -> None:
    """Raise unless this process's jax_enable_x64 is the one a `dtype` run is started with (x64_env): JAX
    expects the flag set once at start-up, so a worker started wrongly refuses the job rather than
    computing it in another precision (without x64 a float64 array is silently float32)."""
    want = x64_env(dtype)[X64_VAR] == "1"
    have = bool(jax.config.jax_enable_x64)
    if have != want:
        import os

        given = os.environ.get(X64_VAR)
        raise RuntimeError(f"this JAX worker runs with jax_enable_x64={have} ("
                           f"{X64_VAR + ' unset' if given is None else f'{X64_VAR}={given}'} at start-up), the job "
                           f"is {np.dtype(dtype)}: it must run in a worker started with {X64_VAR}="
                           f"{x64_env(dtype)[X64_VAR]} (worker_env)")


def dense_params(jnp, data: dict, dtype) -> dict:
    """The initial params as a Flax nn.Dense(1) user has them: {"weight": kernel (d, 1), "bias": (1,)}."""
    w0, b0 = np.asarray(data["w0"], dtype), np.asarray(data["b0"], dtype)
    return {"weight": jnp.asarray(w0.reshape(w0.size, 1)), "bias": jnp.asarray(b0.reshape(1))}


def dense_loss(jnp, factor: float, pen):
    """loss(params, X, y): the regression loss of a Dense(1) layer, y an (n, 1) column (shapes checked at
    trace time: an (n,) y against the (n, 1) prediction would broadcast r to (n, n)), plus the penalty."""

    def loss_fn(params, X, y):
        r = X @ params["weight"] + params["bias"] - y
        if r.shape != (X.shape[0], 1):
            raise ValueError(f"residual of shape {r.shape}, expected ({X.shape[0]}, 1)")
        loss = jnp.mean(r ** 2) * (factor / 2)       # half_mse: mean(r^2)/2; mse: mean(r^2)
        if pen is not None:
            for k in pen.params:
                loss = loss + pen.l2 * jnp.sum(params[k] ** 2) + pen.l1 * jnp.sum(jnp.abs(params[k]))
        return loss

    return loss_fn


def transformation(optax, run: OptaxRun, schedule, dtype=np.float64, tensors: tuple[str, ...] = TENSORS):
    """The run's optax GradientTransformation; `schedule(init_value)` gives the optax schedule or None for a
    constant (train() and the vmapped grid, whose fields may be tracers, share this one builder); a scheduled
    weight_decay is built for a run of `dtype`; masks as optax takes them for the model of `tensors`
    (optax_network.optax_mask). Every keyword the run model holds is passed to optax by its own name."""

    def mask(value):
        return optax_mask(value, tensors)

    special = {  # the transforms whose data stands for something else (a mask, a schedule)
        "add_decayed_weights": lambda t: optax.add_decayed_weights(
            weight_decay=weight_decay_value(optax, t.weight_decay, dtype), mask=mask(t.mask)),
        "scale_by_learning_rate": lambda t: optax.scale_by_learning_rate(
            schedule(t.learning_rate) or t.learning_rate, flip_sign=t.flip_sign),
        "scale_by_schedule": lambda t: optax.scale_by_schedule(
            schedule(t.init_value) or optax.constant_schedule(t.init_value)),
    }

    def build(t):
        if t.transform in special:
            return special[t.transform](t)
        return getattr(optax, t.transform)(**{k: getattr(t, k) for k in type(t).model_fields if k != "transform"})

    if run.chain is not None:
        return optax.chain(*[build(t) for t in run.chain])
    lr = None if run.learning_rate is None else schedule(run.learning_rate) or run.learning_rate
    given = run.given()
    if run.optimizer == "adafactor" and run.clipping_threshold is False:   # false: optax's None, no clip
        given["clipping_threshold"] = clip_threshold(run)
    for key in ("mask", "weight_decay_mask"):
        if key in given:
            given[key] = mask(given[key])
    for key in ("weight_decay", "weight_decay_rate"):
        if key in given:
            given[key] = weight_decay_value(optax, given[key], dtype)
    return getattr(optax, run.optimizer)(learning_rate=lr, **given)
