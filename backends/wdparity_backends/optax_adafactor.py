"""optax.adafactor: its keywords checked, described as the neutral AdafactorSpec, and realized back.

optax 0.2.8 builds chain(scale_by_factored_rms, clip_by_block_rms(clipping_threshold), scale_by_learning_rate(lr,
flip_sign=False), scale_by_param_block_rms(), ema(momentum, debias=False, accumulator_dtype=dtype_momentum),
add_decayed_weights(weight_decay_rate, mask), scale(-1)) (optax/_src/alias.py:303-326), each optional part
only when its keyword asks for it. The task's kernel is (d, 1): its factored estimate is the unfactored one (the
row factor is v_row/mean(v_row) = 1 exactly, factorized.py:183-197), so min_dim_size_to_factor and factored
change nothing here (measured: tests/test_optax_adafactor.py). Pure: no JAX import.
"""

from __future__ import annotations

from typing import Any, Optional

from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError
from wdparity.spec.models import TENSORS, DecayRule, Semantics, Task, fail

from .optax_network import resolve
from .optax_schedules import check_alias, native, neutral

MIN_SCALE = 1e-3   # scale_by_param_block_rms's min_scale, which optax.adafactor leaves at its default (transform.py:540)
DTYPES = ("float32", "float64")   # dtype_momentum values whose accumulator can be the run's own dtype
# Adafactor's chain transforms: the chain reader cannot place them, so a chain naming one is refused by name
CHAIN_REFUSED = {
    "scale_by_factored_rms": "scale_by_factored_rms is Adafactor's second moment: write optimizer = \"adafactor\" "
                             "(optax/_src/alias.py:303-307); a chain of its parts is not read by this adapter",
    "scale_by_param_block_rms": "scale_by_param_block_rms is Adafactor's parameter scale: write optimizer = "
                                "\"adafactor\" with multiply_by_parameter_scale (optax/_src/alias.py:314-315)",
    "ema": "ema is Adafactor's momentum here: write optimizer = \"adafactor\" with momentum (optax/_src/alias.py:"
           "316-319); an ema in another chain is outside the chains this adapter reads",
}
CLIP_REASON = ("clip_by_block_rms is Adafactor's clip: write optimizer = \"adafactor\" with clipping_threshold "
               "(optax/_src/alias.py:310-311); elsewhere it divides each tensor by max(1, sqrt(mean(u^2))/threshold) "
               "(optax/transforms/_clipping.py:66-70): an RMS bound, i.e. a norm bound of threshold*sqrt(size) per "
               "tensor, which the neutral gradient Clip does not hold")


def clip_threshold(run) -> Optional[float]:
    """clipping_threshold as optax takes it: false is optax's None, no clip (alias.py:310; TOML has no null, and
    a run's None is "not given", optax's default 1.0, so the harness's model_dump round trip keeps it)."""
    value = run.clipping_threshold
    if value is False:
        return None
    return 1.0 if value is None else value


def check(run) -> None:
    """The alias's keywords that the neutral model cannot hold, or that optax would silently ignore."""
    if run.decay_offset not in (None, 0):
        raise fail("decay_offset", run.decay_offset, "must be 0: optax's b2 at step k is 1 - (k - decay_offset)^"
                   "(-decay_rate) (optax/_src/factorized.py:170), a shifted schedule outside the neutral Adafactor "
                   "(b2_k = 1 - k^(-decay_rate))")
    if run.dtype_momentum is not None and run.momentum is None:
        raise fail("dtype_momentum", run.dtype_momentum, "has no effect without momentum (optax.adafactor builds "
                   "the ema only for a momentum, optax/_src/alias.py:316-319)")
    if run.dtype_momentum is not None and run.dtype_momentum not in DTYPES:
        raise fail("dtype_momentum", run.dtype_momentum, f"must be one of {list(DTYPES)}: an ema accumulator stored "
                   "in a narrower dtype is rounded each step (optax/transforms/_accumulation.py:128), outside the "
                   "neutral model")
    if run.weight_decay_mask is not None and run.weight_decay_rate is None:
        raise fail("weight_decay_mask", run.weight_decay_mask, "has no effect without weight_decay_rate "
                   "(optax/_src/alias.py:320-323)")
    check_alias("weight_decay_rate", run.weight_decay_rate)


def momentum_dtype(run, dtype: str) -> str:
    """The ema accumulator's dtype in a run of `dtype`: dtype_momentum (default float32, alias.py:232)
    canonicalised by JAX, so float64 is float32 without x64 (optax/_src/utils.py:34-40)."""
    given = run.dtype_momentum or "float32"
    return given if dtype == "float64" else "float32"


NETWORK_REASON = ("optax.adafactor on a network is not modelled by this adapter yet: its factored second moment of "
                  "a kernel of at least min_dim_size_to_factor rows and columns (optax/_src/factorized.py) is not "
                  "read against the neutral Adafactor's")


def describe(run, task: Task) -> tuple[dict, list[DecayRule]]:
    """(neutral optimizer dict, decay rules) of an optax.adafactor run (the linear model only)."""
    if not task.model.linear:
        raise InputError("", "optimizer", NETWORK_REASON, "adafactor")
    if run.learning_rate is None and task.schedule.kind != "constant":
        raise InputError("", "learning_rate", f"must be given under a {task.schedule.kind} schedule: with "
                         "learning_rate None optax.adafactor has no scale_by_learning_rate (optax/_src/alias.py:"
                         "312-313), so the run's schedule would be silently ignored", None)
    if run.momentum is not None and momentum_dtype(run, task.dtype) != task.dtype:
        raise InputError("", "dtype_momentum", "must be \"float64\" in a float64 run with momentum: optax.adafactor's "
                         "ema accumulator is dtype_momentum, float32 by default (optax/_src/alias.py:232,318; "
                         "transforms/_accumulation.py:128), rounded to float32 each step, outside the neutral model",
                         run.dtype_momentum or "float32 (the default)")
    v = run.value
    opt = {"name": "adafactor", "lr": 1.0 if run.learning_rate is None else run.learning_rate,
           "decay_rate": v("decay_rate"), "eps": v("eps"), "clip_threshold": clip_threshold(run),
           "relative_step": False, "parameter_scale": MIN_SCALE if v("multiply_by_parameter_scale") else None,
           "momentum": run.momentum, "decay_placement": "after", "decay_rate_dtype": "float32"}
    rules = []
    if run.weight_decay_rate is not None:
        wd, sched = neutral(run.weight_decay_rate)
        if wd != 0.0:   # a constant 0 is skipped (transforms/_adding.py:68); a schedule from 0 adds 0*w
            params = resolve("weight_decay_mask", run.weight_decay_mask)
            rules.append(DecayRule(norm="l2", coupling="decoupled", coefficient=wd, scale="none", params=params,
                                   schedule=sched))
    return opt, rules


def realize(semantics: Semantics, task: Task, penalty: Any) -> dict:
    """An AdafactorSpec as optax.adafactor, or Inexpressible naming optax's nearest setting. `penalty(rules)`:
    the adapter's loss penalty of the L1 / loss-borne L2 rules."""
    opt, rules = semantics.optimizer, list(semantics.decay)
    if not task.model.linear:
        raise Inexpressible(NETWORK_REASON + "; nearest: the same optimizer on the linear model")
    if opt.relative_step:
        raise Inexpressible("optax.adafactor has no relative step min(lr_t, 1/sqrt(k)) (optax/_src/alias.py:224-236, "
                            "303-326: the step size is learning_rate or 1); nearest: relative_step = false")
    if opt.decay_rate_dtype != "float32":
        raise Inexpressible("optax computes b2_k = 1 - k^(-decay_rate) in float32 even under x64 (optax/_src/"
                            "factorized.py:31-32); nearest: decay_rate_dtype = \"float32\"")
    if opt.parameter_scale not in (None, MIN_SCALE):
        raise Inexpressible(f"optax.adafactor's parameter scale is scale_by_param_block_rms() at its min_scale "
                            f"{MIN_SCALE:g} (optax/_src/alias.py:314-315; transform.py:540); nearest: "
                            f"parameter_scale = {MIN_SCALE:g}")
    if opt.decay_placement == "before":
        raise Inexpressible("optax.adafactor's parameter scale reads the params before the step (scale_by_param_"
                            "block_rms, optax/_src/transform.py:554-561) and adds weight_decay_rate*w after it "
                            "(alias.py:320-323); nearest: decay_placement = \"after\" (the same where no rule is "
                            "decoupled or parameter_scale is None)")
    if semantics.clip is not None:
        raise Inexpressible("optax.adafactor clips only its own direction (clip_by_block_rms, optax/_src/alias.py:"
                            "310-311), never the gradient; nearest: no gradient clip")
    loss = [r for r in rules if r.norm == "l1" and r.coupling == "gradient" or r.via_loss]
    rest = [r for r in rules if r not in loss]
    if any(r.coupling == "gradient" for r in rest):
        raise Inexpressible("optax.adafactor has no coupled weight decay (optax/_src/alias.py:303-326: its "
                            "weight_decay_rate is added after the step); nearest: the same L2 term as a loss "
                            "`penalty` (via_loss)")
    if any(r.norm == "l1" for r in rest):
        raise Inexpressible("optax.adafactor's weight_decay_rate adds lambda*w, an L2 decay (optax/transforms/"
                            "_adding.py:70-75); nearest: the L1 term as a loss `penalty`")
    if any(r.effective_scale != "none" for r in rest):
        raise Inexpressible("optax.adafactor adds weight_decay_rate*w to the step after the learning rate and the "
                            "parameter scale (optax/_src/alias.py:312-323), unscaled; nearest: scale = \"none\"")
    if len(rest) > 1:
        raise Inexpressible("optax.adafactor has one weight_decay_rate (with one weight_decay_mask); nearest: a "
                            "single decoupled rule")
    if rest and rest[0].coefficient < 0:
        raise Inexpressible("optax.adafactor's weight_decay_rate is >= 0 here (a negative one grows the weights); "
                            "nearest: weight_decay_rate = 0")
    out = {"optimizer": "adafactor", "learning_rate": opt.lr, "decay_rate": opt.decay_rate, "eps": opt.eps,
           "clipping_threshold": False if opt.clip_threshold is None else opt.clip_threshold,
           "multiply_by_parameter_scale": opt.parameter_scale is not None}
    if opt.momentum is not None:   # float64 is exact in both runs: float32 without x64 (utils.py:34-40)
        out.update(momentum=opt.momentum, dtype_momentum="float64")
    if rest:
        out["weight_decay_rate"] = native(rest[0].coefficient, rest[0].schedule)
        if len(rest[0].params) < len(TENSORS):
            out["weight_decay_mask"] = list(rest[0].params)
    return {**out, **penalty(loss)}
