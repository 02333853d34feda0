"""mlx.optimizers.Adafactor (mlx/optimizers/optimizers.py:727-866) as the neutral AdafactorSpec, and back.

Per tensor: v = b2*v + (1-b2)*(g^2 + eps[0]), b2 = 1 - step**decay_rate (decay_rate -0.8: the neutral 0.8),
u = g*rsqrt(v) / max(1, rms(u)/clip_threshold), step size min(1e-2, rsqrt(step)) with relative_step (learning_rate
ignored) else learning_rate, times max(eps[1], rms(w)) with scale_parameter, then beta_1's EMA of that step. The
task's weight is (1, d), which MLX factors (ndim >= 2): its row factor v_row/mean(v_row) is 1 exactly, so the
estimate is the unfactored one (measured: tests/test_mlx_adafactor.py). Pure: no MLX import.
"""

from __future__ import annotations

import numpy as np

from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError
from wdparity.spec.models import AdafactorSpec, Task

RELATIVE_LR = 1e-2       # min_step without warmup_init (optimizers.py:803)
RELATIVE_F64_STEPS = 10_000   # up to this step min(1e-2, rsqrt(step)) is float32(1e-2) exactly
F32_RELATIVE_LR = float(np.float32(RELATIVE_LR))
WEIGHT_DECAY_REASON = (
    "mlx.optimizers.Adafactor decays w by w*(1 - weight_decay*learning_rate) where learning_rate is its full step "
    "size, parameter_scale*step size = max(eps[1], rms(w))*min(1e-2, 1/sqrt(step)) (optimizers.py:801-812,863-864): "
    "a decoupled decay scaled by rms(w), which no neutral DecayRule scale (lr, schedule, none) states")

NETWORK_REASON = (
    "mlx.optimizers.Adafactor factors the second moment of every parameter with ndim >= 2 (optimizers.py:787-791, "
    "814-820): a hidden nn.Linear's (out, in) weight gets the rank-1 estimate v_row v_col^T / mean(v_row), not the "
    "per-element v of the neutral (unfactored) AdafactorSpec; nearest: Adafactor on the linear model, where the "
    "(1, d) weight's estimate is exact")


def error(key: str, value, why: str) -> InputError:
    return InputError("", key, why, value)


def check(sub, task: Task, arrays: bool, where: str = "") -> None:
    """What an Adafactor run may not be: the knobs outside the neutral model, and its float64 precision."""
    get = sub.get
    if not task.model.linear:
        raise error(f"{where}optimizer", "Adafactor", f"is not modelled on a network: {NETWORK_REASON}")
    if get("warmup_init"):
        raise error(f"{where}warmup_init", True, "must be false: with warmup_init MLX's step size is min(1e-6*step, "
                    "1/sqrt(step)) (optimizers.py:803-804), a linear warm-up the neutral Adafactor (min(lr_t, "
                    "1/sqrt(k))) does not state; nearest: relative_step = true, warmup_init = false")
    if get("weight_decay"):
        raise error(f"{where}weight_decay", get("weight_decay"), f"must be 0: {WEIGHT_DECAY_REASON}; nearest: a "
                    "loss `penalty` (coupled) or Adafactor without decay")
    if get("decay_rate") >= 0:
        raise error(f"{where}decay_rate", get("decay_rate"), "must be negative: MLX's b2 is 1 - step**decay_rate "
                    "(optimizers.py:830), the neutral decay rate is its negation (> 0)")
    if get("relative_step") and task.schedule.kind != "constant":
        raise error(f"{where}relative_step", True, f"must be false under a {task.schedule.kind!r} schedule: with "
                    "relative_step MLX ignores learning_rate (its step size is min(1e-2, 1/sqrt(step)), "
                    "optimizers.py:802-806), so the schedule would never apply; nearest: relative_step = false "
                    "with the scheduled learning_rate")
    if task.dtype != "float64":
        return
    if get("relative_step") and task.steps > RELATIVE_F64_STEPS:
        raise error(f"{where}relative_step", True, f"must be false in a float64 run of more than "
                    f"{RELATIVE_F64_STEPS} steps: mx.rsqrt(step) of the uint64 step is float32 (optimizers.py:804), "
                    "which the neutral relative step min(lr, 1/sqrt(k)) does not state once 1/sqrt(k) < 1e-2")
    if not arrays:
        raise error("hyperparameters_as_arrays", arrays, "must be true for a float64 Adafactor: with a Python "
                    "decay_rate, step**decay_rate is float32 (step is a uint64 array) and 1 minus it float64 "
                    "(optimizers.py:830), neither the neutral float32 b2 (1 - k^-d in float32) nor the exact one "
                    "(measured: 5e-8 relative in b2, tests/test_mlx_adafactor.py)")


def spec(sub, task: Task, lr) -> AdafactorSpec:
    """`lr`: the learning rate as MLX steps with it (float32-rounded where it is a float32 array)."""
    get = sub.get
    relative = bool(get("relative_step"))
    if relative:   # mx.minimum(1e-2, rsqrt(step)) is float32 (optimizers.py:803-804)
        lr = F32_RELATIVE_LR if task.dtype == "float64" else RELATIVE_LR
    eps = get("eps")
    return AdafactorSpec(name="adafactor", lr=lr, decay_rate=-get("decay_rate"), eps=eps[0],
                         clip_threshold=get("clip_threshold"), relative_step=relative,
                         parameter_scale=eps[1] if get("scale_parameter") else None, momentum=get("beta_1"),
                         decay_placement="after", decay_rate_dtype=decay_rate_dtype(task))


def decay_rate_dtype(task: Task):
    """float32: step**decay_rate and the whole update in float32; a float64 run takes a float64 decay_rate."""
    return "float32" if task.dtype == "float32" else None


def native(opt, task: Task) -> dict:
    """The Adafactor keywords that compute `opt` (an AdafactorSpec), or Inexpressible."""
    if opt.decay_placement == "before":
        raise Inexpressible("mlx.optimizers.Adafactor takes its parameter scale from w before the step "
                            "(optimizers.py:828-829); nearest: decay_placement = \"after\" (the same where no rule "
                            "is decoupled)")
    if opt.clip_threshold is None:
        raise Inexpressible("mlx.optimizers.Adafactor always divides u by max(1, rms(u)/clip_threshold) "
                            "(optimizers.py:852-854); nearest: clip_threshold = 1e30, no clip while rms(u) < 1e30")
    if opt.decay_rate_dtype != decay_rate_dtype(task):
        raise Inexpressible(f"mlx.optimizers.Adafactor computes b2 = 1 - step**decay_rate in the run's dtype "
                            f"({task.dtype}: a float64 decay_rate array, optimizers.py:830); nearest: decay_rate_dtype "
                            f"= {decay_rate_dtype(task)!r}")
    run = {"optimizer": "Adafactor", "decay_rate": -opt.decay_rate, "clip_threshold": opt.clip_threshold,
           "eps": [opt.eps, 1e-3 if opt.parameter_scale is None else opt.parameter_scale],
           "scale_parameter": opt.parameter_scale is not None, "relative_step": opt.relative_step}
    if opt.relative_step:
        if task.schedule.kind != "constant":
            raise Inexpressible("mlx.optimizers.Adafactor ignores learning_rate under relative_step (optimizers.py:"
                                "802-806), so no schedule applies; nearest: relative_step = false, scheduled")
        if opt.lr not in (RELATIVE_LR, F32_RELATIVE_LR):
            raise Inexpressible(f"mlx.optimizers.Adafactor's relative step is min(1e-2, 1/sqrt(step)) "
                                f"(optimizers.py:803-804), its cap fixed at 1e-2; nearest: relative_step = false "
                                f"with learning_rate = {opt.lr} (min(lr, 1/sqrt(k)) = lr while k <= 1/lr^2)")
    else:
        run["learning_rate"] = opt.lr
    if opt.momentum is not None:
        run["beta_1"] = opt.momentum
    # always: a float64 run of it needs a float64 decay_rate (check()), and the battery trains a realized table in both
    run["hyperparameters_as_arrays"] = True
    return run
