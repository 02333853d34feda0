"""What each tf_keras optimizer computes, as a neutral optimizer (describe_optimizer), and the tf_keras classes a
neutral optimizer could be (candidates; the adapter keeps those whose describe() is the asked semantics).

Float64 runs: the new optimizers (tf_keras.optimizers.*) tf.cast their Python-float hyperparameters to the
variable's dtype, and tf.cast(<Python float>, float64) goes through float32, so SGD's momentum, Adam's, Adamax's,
Nadam's and Lion's betas, Nadam's 0.96 and weight_decay are float32-rounded; the legacy optimizers keep theirs in
floatx variables (_set_hyper/_get_hyper), exact, but for `decay` (tf.cast, legacy/optimizer_v2.py:1189-1192) and
legacy Nadam's 0.96 (legacy/nadam.py:124). Sources: docs/adapters/tf_keras.md.
"""

from __future__ import annotations

import math

from wdparity.spec.models import (
    AdadeltaSpec,
    AdagradSpec,
    AdamaxSpec,
    AdamSpec,
    LionSpec,
    NadamSpec,
    RmspropSpec,
    SgdSpec,
    Task,
    fail,
)

from .keras_adafactor import describe_adafactor, realize_adafactor
from .keras_vocab import f32
from .tf_keras_vocab import TfKerasRun

NEW_NADAM = ("is not modelled: its u_t products are cached by a Python counter (self._u_product_counter, compared with "
             "iterations + 2 in tf.cond, optimizers/nadam.py update_step) that a tf.function, as fit() compiles it, "
             "fixes at trace time, so from the second step the product is multiplied again for every variable after "
             "the first (the bias: 0.27 relative off NAdam, tests/test_tf_keras_facts.py); legacy.Nadam is exact")
MODELLED = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion", "adafactor")
# 0.96^x as tf.cast(0.96, float64)^x: the neutral 0.96^(x*k) with k = ln(f32(0.96))/ln(0.96)
NADAM_96 = math.log(f32(0.96)) / math.log(0.96)


def describe_optimizer(c: TfKerasRun, task: Task):
    """The neutral optimizer of a tf_keras run (weight_decay, decay and the regularizers are the adapter's).

    In float64 runs `cast` is what tf.cast(<Python float>, float64) leaves (the new optimizers' momentum, betas,
    0.96), `hyper` what a legacy optimizer's float32 hyper variable leaves (add_weight's default dtype tf.float32,
    legacy/optimizer_v2.py:1353-1354, then _get_hyper's tf.cast, :913-922): lr (without a schedule), momentum, rho,
    betas; epsilon enters as tf.convert_to_tensor(epsilon, var_dtype), exact."""
    f64 = task.dtype == "float64"
    name, legacy = c.optimizer.removeprefix("legacy."), c.legacy
    cast = f32 if f64 else float
    hyper = f32 if (f64 and legacy) else (lambda x: x)
    lr = c.get("learning_rate")
    lr = hyper(lr) if task.schedule.kind == "constant" else lr   # a schedule is called, no hyper variable
    betas = [hyper(c.get("beta_1")), hyper(c.get("beta_2"))] if name in ("Adam", "AdamW", "Adamax", "Nadam", "Lion") \
        else None
    if name == "Adafactor":   # epsilon_2 through tf.cast (float32 in float64); beta_2_decay, epsilon_1 exact (tf.pow,
        # + convert the Python float to the variable's dtype): adafactor.py:158-180 (tests/test_tf_keras_adafactor.py)
        return describe_adafactor(c.get, task, bool(c.get("weight_decay")), eps2=cast)
    if name == "SGD":   # sgd.py update_step: m = -g*lr + m*momentum, w += m; legacy: ResourceApplyKerasMomentum
        momentum = hyper(c.get("momentum")) if legacy else cast(c.get("momentum"))
        return SgdSpec(name="sgd", lr=lr, momentum=momentum, nesterov=bool(c.nesterov),
                       momentum_form="velocity" if momentum > 0 else "buffer")
    if name in ("Adam", "AdamW"):
        # new: 1 - beta^t from tf.cast(beta): float32 betas in every run (adam.py, adamw.py update_step); legacy: the
        # float32 hyper betas throughout (legacy/adam.py _prepare_local)
        corrected = bool(c.adaptive_epsilon)   # epsilon_hat = epsilon*sqrt(1 - beta_2^t) (adam.py update_step)
        f32_bc = not legacy or not f64
        return AdamSpec(name="adam", lr=lr, betas=betas, eps=c.get("epsilon"),
                        eps_placement="corrected" if corrected else "uncorrected",
                        bias_correction_dtype="float32" if f32_bc else None, amsgrad="v" if c.get("amsgrad") else None)
    if name == "RMSprop":
        momentum = hyper(c.get("momentum"))
        # new: lr*g*rsqrt(v + eps) (rmsprop.py update_step); legacy: ResourceApplyRMSProp (eps inside the root)
        # with momentum, lr*g/(sqrt(v) + eps) without (legacy/rmsprop.py:192-250)
        in_sqrt = not legacy or momentum > 0
        return RmspropSpec(name="rmsprop", lr=lr, rho=hyper(c.get("rho")), eps=c.get("epsilon"), eps_in_sqrt=in_sqrt,
                           centered=c.get("centered"), momentum=momentum,
                           momentum_form="velocity" if momentum > 0 else "buffer")
    if name == "Adagrad":   # new: lr*g/sqrt(s + eps); legacy: ResourceApplyAdagradV2, lr*g/(sqrt(s) + eps)
        return AdagradSpec(name="adagrad", lr=lr, initial_accumulator=c.get("initial_accumulator_value"),
                           eps=c.get("epsilon"), eps_in_sqrt=not legacy)
    if name == "Adadelta":
        return AdadeltaSpec(name="adadelta", lr=lr, rho=hyper(c.get("rho")), eps=c.get("epsilon"))
    if name == "Adamax":   # m_hat/(u + eps), u = max(beta_2*u, |g|) (adamax.py; legacy: ResourceApplyAdaMax)
        if f64 and not legacy:
            raise fail("optimizer", c.optimizer, "is not modelled in float64: its bias correction 1 - beta_1^t takes "
                       "tf.cast(beta_1) (float32-rounded) while m takes the exact Python beta_1 (optimizers/adamax.py "
                       "update_step), which the neutral Adamax cannot state; legacy.Adamax is exact")
        return AdamaxSpec(name="adamax", lr=lr, betas=betas, eps=c.get("epsilon"), eps_placement="outside")
    if name == "Nadam":
        if legacy:   # mu_t = beta_1*(1 - 0.5*0.96^(schedule_decay*t)) (legacy/nadam.py:117-135)
            sd = c.get("schedule_decay")
            if sd == 0:
                raise fail("schedule_decay", sd, "0 makes legacy.Nadam's momentum the constant 0.5*beta_1 "
                           "(legacy/nadam.py:124-129), which the neutral NAdam cannot state")
            return NadamSpec(name="nadam", lr=lr, betas=betas, eps=c.get("epsilon"),
                             momentum_decay=sd * NADAM_96 if f64 else sd)
        raise fail("optimizer", c.optimizer, NEW_NADAM)
    return LionSpec(name="lion", lr=lr, betas=[cast(b) for b in betas])   # lion.py update_step


def candidates(opt, task: Task, decayed: bool) -> list[dict]:
    """tf_keras runs (class and keywords) that may compute the neutral optimizer `opt`; the adapter keeps those
    whose describe() is exactly `opt`. decayed: the semantics have a decoupled decay (Adafactor's placement)."""
    out: list[dict] = []
    if opt.name == "adafactor":   # (or Inexpressible with the nearest setting)
        return [realize_adafactor(opt, task, decayed, "tf_keras")]
    lr = {"learning_rate": opt.lr}
    if isinstance(opt, SgdSpec):
        kw = {**lr, **({"momentum": opt.momentum} if opt.momentum else {}), **({"nesterov": True} if opt.nesterov else {})}
        out = [{"optimizer": "SGD", **kw}, {"optimizer": "legacy.SGD", **kw}]
    elif isinstance(opt, AdamSpec):
        kw = {**lr, "beta_1": opt.betas[0], "beta_2": opt.betas[1], "epsilon": opt.eps,
              **({"amsgrad": True} if opt.amsgrad else {})}
        out = [{"optimizer": "Adam", **kw, **({"adaptive_epsilon": True} if opt.eps_placement == "corrected" else {})},
               {"optimizer": "legacy.Adam", **kw}]
    elif isinstance(opt, RmspropSpec):
        kw = {**lr, "rho": opt.rho, "epsilon": opt.eps, **({"momentum": opt.momentum} if opt.momentum else {}),
              **({"centered": True} if opt.centered else {})}
        out = [{"optimizer": "RMSprop", **kw}, {"optimizer": "legacy.RMSprop", **kw}]
    elif isinstance(opt, AdagradSpec):
        kw = {**lr, "initial_accumulator_value": opt.initial_accumulator, "epsilon": opt.eps}
        out = [{"optimizer": "Adagrad", **kw}, {"optimizer": "legacy.Adagrad", **kw}]
    elif isinstance(opt, AdadeltaSpec):
        kw = {**lr, "rho": opt.rho, "epsilon": opt.eps}
        out = [{"optimizer": "Adadelta", **kw}, {"optimizer": "legacy.Adadelta", **kw}]
    elif isinstance(opt, AdamaxSpec):
        kw = {**lr, "beta_1": opt.betas[0], "beta_2": opt.betas[1], "epsilon": opt.eps}
        out = [{"optimizer": "legacy.Adamax", **kw}]   # (the new Adamax is not exact in float64, describe_optimizer)
    elif isinstance(opt, NadamSpec):
        kw = {**lr, "beta_1": opt.betas[0], "beta_2": opt.betas[1], "epsilon": opt.eps}
        if opt.momentum_decay is not None:   # (the new Nadam is not modelled: NEW_NADAM)
            out = [{"optimizer": "legacy.Nadam", **kw, "schedule_decay": opt.momentum_decay}]
    elif isinstance(opt, LionSpec) and opt.betas[0] > 0:
        out = [{"optimizer": "Lion", **lr, "beta_1": opt.betas[0], "beta_2": opt.betas[1]}]
    return out
