"""What each keras.optimizers class computes, as a neutral optimizer (describe_optimizer), and the Keras class and
keywords of a neutral optimizer (realize_optimizer), or Inexpressible with the nearest Keras setting; likewise
BaseOptimizer's gradient clipping (describe_clip, realize_clip).

The sources, read at keras 3.15.1 and measured by the tests, are in docs/adapters/keras.md. A float64 run on
TensorFlow rounds every hyperparameter that passes through ops.cast (tf.cast of a Python float goes through
float32): SGD's momentum, Adam's bias-correction betas, Adagrad's initial accumulator, Lion's betas (described
float32-rounded), Adamax's, Nadam's and Lamb's (precision findings: their neutral models have no field for it).
"""

from __future__ import annotations

from typing import Optional

from wdparity.run.adapter import refuse_clip, refuse_no_bias_correction
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import (
    AdadeltaSpec,
    AdagradSpec,
    AdamaxSpec,
    AdamSpec,
    Clip,
    LambSpec,
    LionSpec,
    NadamSpec,
    RmspropSpec,
    Semantics,
    SgdSpec,
    Task,
)

from .keras_adafactor import describe_adafactor
from .keras_vocab import CLIP, OWN, KerasRun, f32

MODELLED = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion", "lamb", "adafactor")


def describe_optimizer(c: KerasRun, task: Task):
    """The neutral optimizer of a Keras run (weight_decay and the regularizers are the adapter's)."""
    opt, tf64 = c.optimizer, c.keras_backend == "tensorflow" and task.dtype == "float64"
    cast = f32 if tf64 else float   # what ops.cast(<Python float>, variable.dtype) leaves
    lr = c.get("learning_rate")
    if opt == "SGD":
        momentum = cast(c.get("momentum"))   # sgd.py:104
        return SgdSpec(name="sgd", lr=lr, momentum=momentum, nesterov=bool(c.nesterov),
                       momentum_form="velocity" if momentum > 0 else "buffer")   # identical without momentum
    if opt == "Adafactor":   # epsilon_2 through ops.cast (tf.cast: float32 in float64); beta_2_decay and epsilon_1
        # enter ops.power/ops.add as Python floats, floatx (float64) there (tests/test_keras_adafactor.py)
        return describe_adafactor(c.get, task, bool(c.get("weight_decay")), eps2=cast)
    betas = [c.get("beta_1"), c.get("beta_2")] if "beta_1" in OWN[opt] else None
    if opt in ("Adam", "AdamW"):
        # 1 - beta^t from ops.cast(beta, dtype): float32 betas in float32 runs and under tf.cast (TF float64)
        # (keras/src/optimizers/adam.py:106-117, keras/src/backend/tensorflow/core.py:210-218)
        f32_bc = task.dtype == "float32" or c.keras_backend == "tensorflow"
        return AdamSpec(name="adam", lr=lr, betas=betas, eps=c.get("epsilon"), eps_placement="uncorrected",
                        bias_correction_dtype="float32" if f32_bc else None, amsgrad="v" if c.get("amsgrad") else None)
    if opt == "RMSprop":   # rho, momentum, epsilon enter as Python floats, never cast (rmsprop.py:124-154)
        momentum = c.get("momentum")
        return RmspropSpec(name="rmsprop", lr=lr, rho=c.get("rho"), eps=c.get("epsilon"), eps_in_sqrt=True,
                           centered=c.get("centered"), momentum=momentum,
                           momentum_form="velocity" if momentum > 0 else "buffer")
    if opt == "Adagrad":   # the accumulator starts at Constant(value): ops.cast (constant_initializers.py:34-38)
        return AdagradSpec(name="adagrad", lr=lr, initial_accumulator=cast(c.get("initial_accumulator_value")),
                           eps=c.get("epsilon"), eps_in_sqrt=True)
    if opt == "Adadelta":
        return AdadeltaSpec(name="adadelta", lr=lr, rho=c.get("rho"), eps=c.get("epsilon"))
    if opt == "Adamax":
        return AdamaxSpec(name="adamax", lr=lr, betas=betas, eps=c.get("epsilon"), eps_placement="outside")
    if opt == "Nadam":
        return NadamSpec(name="nadam", lr=lr, betas=betas, eps=c.get("epsilon"), momentum_decay=1.0)
    if opt == "Lamb":
        # apply() decays w first (base_optimizer.py:586-594), update_step takes ||w|| of the decayed variable
        # (lamb.py:122); the moments' 1 - beta are Python floats (lamb.py:105-114), epsilon outside the root of
        # v_hat (lamb.py:116-119); the float32 beta powers on TensorFlow are a precision finding (keras_vocab)
        return LambSpec(name="lamb", lr=lr, betas=betas, eps=c.get("epsilon"), decay_placement="before")
    return LionSpec(name="lion", lr=lr, betas=[cast(b) for b in betas])   # lion.py:100-101


def _velocity_only(name: str, source: str, momentum: float) -> Inexpressible:
    return Inexpressible(f"keras.optimizers.{name} momentum is the velocity form (buf = momentum*buf + lr_t*step; "
                         f"w -= buf, {source}); nearest: momentum = {momentum} (identical while the learning rate is "
                         "constant, differs when the schedule changes lr_t)")


def realize_optimizer(opt) -> dict:
    """The Keras class and keywords of a neutral optimizer (learning_rate included), or Inexpressible."""
    if isinstance(opt, SgdSpec):
        if opt.dampening:
            raise Inexpressible(f"keras.optimizers.SGD has no dampening; nearest: momentum = {opt.momentum} "
                                f"without dampening (the velocity grows by 1/(1-{opt.dampening}))")
        if opt.momentum > 0 and opt.momentum_form != "velocity":
            raise Inexpressible(
                "keras.optimizers.SGD momentum is the velocity form (m = momentum*m - lr_t*g; w += m, "
                f"keras/src/optimizers/sgd.py:100-124); nearest: momentum = {opt.momentum} (identical while the "
                "learning rate is constant, differs when the schedule changes lr_t)")
        if opt.momentum == 0 and opt.momentum_form != "buffer":
            raise Inexpressible("without momentum Keras's SGD is described with momentum_form = \"buffer\" (the "
                                "two forms are identical); nearest: momentum_form = \"buffer\"")
        run = {"optimizer": "SGD", "learning_rate": opt.lr}
        if opt.momentum > 0:
            run["momentum"] = opt.momentum
        if opt.nesterov:
            run["nesterov"] = True
        return run
    refuse_no_bias_correction(opt, "Keras")
    if isinstance(opt, AdamSpec):
        if opt.eps_placement != "uncorrected":
            raise Inexpressible(f"Keras's Adam adds epsilon to sqrt(v) before the bias correction (keras/src/"
                                f"optimizers/adam.py:117-137); nearest: epsilon = {opt.eps}, eps_placement "
                                "\"uncorrected\" (its effective epsilon is smaller by sqrt(1-beta_2^t))")
        run = {"optimizer": "Adam", "learning_rate": opt.lr, "beta_1": opt.betas[0], "beta_2": opt.betas[1],
               "epsilon": opt.eps}
        # (amsgrad "v_hat" needs the corrected placement, refused above: Keras's max is of the uncorrected v)
        return {**run, "amsgrad": True} if opt.amsgrad == "v" else run
    if isinstance(opt, RmspropSpec):
        if not opt.eps_in_sqrt:
            raise Inexpressible(f"Keras's RMSprop adds epsilon inside the root, lr*g/sqrt(v + epsilon) (keras/src/"
                                f"optimizers/rmsprop.py:141-146); nearest: epsilon = {opt.eps} inside the root "
                                "(eps_in_sqrt), which differs where sqrt(v) is near epsilon")
        if opt.initial_scale:
            raise Inexpressible(f"Keras's RMSprop velocity starts at 0 (zeros, keras/src/optimizers/rmsprop.py:97); "
                                f"nearest: initial_scale = 0 instead of {opt.initial_scale} (differs from step 1)")
        if opt.bias_correction:
            raise Inexpressible("Keras's RMSprop has no bias correction of v (keras/src/optimizers/rmsprop.py:"
                                "126-146); nearest: bias_correction = false (larger first steps)")
        if opt.momentum > 0 and opt.momentum_form != "velocity":
            raise _velocity_only("RMSprop", "keras/src/optimizers/rmsprop.py:144-152", opt.momentum)
        run = {"optimizer": "RMSprop", "learning_rate": opt.lr, "rho": opt.rho, "epsilon": opt.eps}
        if opt.momentum > 0:
            run["momentum"] = opt.momentum
        return {**run, "centered": True} if opt.centered else run
    if isinstance(opt, AdagradSpec):
        if not opt.eps_in_sqrt:
            raise Inexpressible(f"Keras's Adagrad adds epsilon inside the root, lr*g/sqrt(s + epsilon) (keras/src/"
                                f"optimizers/adagrad.py:85-92); nearest: epsilon = {opt.eps} inside the root "
                                "(eps_in_sqrt), which differs where sqrt(s) is near epsilon")
        if opt.lr_decay:
            raise Inexpressible(f"Keras's Adagrad has no lr_decay (keras/src/optimizers/adagrad.py:35-50); nearest: "
                                f"lr_decay = 0 instead of {opt.lr_decay} (a task schedule of lr/(1 + t*lr_decay) is "
                                "not one of the neutral schedules)")
        return {"optimizer": "Adagrad", "learning_rate": opt.lr, "initial_accumulator_value": opt.initial_accumulator,
                "epsilon": opt.eps}
    if isinstance(opt, AdadeltaSpec):
        return {"optimizer": "Adadelta", "learning_rate": opt.lr, "rho": opt.rho, "epsilon": opt.eps}
    if isinstance(opt, AdamaxSpec):
        if opt.eps_placement != "outside":
            raise Inexpressible(f"Keras's Adamax adds epsilon outside the max, m_hat/(u + epsilon) with u = "
                                f"max(beta_2*u, |g|) (keras/src/optimizers/adamax.py:120-129); nearest: epsilon = "
                                f"{opt.eps}, eps_placement \"outside\" (differs while |g| is near epsilon)")
        return {"optimizer": "Adamax", "learning_rate": opt.lr, "beta_1": opt.betas[0], "beta_2": opt.betas[1],
                "epsilon": opt.eps}
    if isinstance(opt, NadamSpec):
        if opt.momentum_decay != 1.0:
            raise Inexpressible(f"Keras's Nadam momentum schedule is mu_t = beta_1*(1 - 0.5*0.96^t) (keras/src/"
                                f"optimizers/nadam.py:116-120), momentum_decay 1; nearest: momentum_decay = 1.0 "
                                f"instead of {opt.momentum_decay}")
        return {"optimizer": "Nadam", "learning_rate": opt.lr, "beta_1": opt.betas[0], "beta_2": opt.betas[1],
                "epsilon": opt.eps}
    if isinstance(opt, LionSpec):
        if opt.betas[0] == 0:
            raise Inexpressible("keras.optimizers.Lion rejects beta_1 = 0 (keras/src/optimizers/lion.py:77-81); "
                                "nearest: the smallest beta_1 > 0 (sign(g) of plain SignSGD up to it)")
        return {"optimizer": "Lion", "learning_rate": opt.lr, "beta_1": opt.betas[0], "beta_2": opt.betas[1]}
    if isinstance(opt, LambSpec):
        if opt.decay_placement != "before":
            raise Inexpressible(
                "keras.optimizers.Lamb decays w before the trust ratio: apply() runs _apply_weight_decay, then "
                "update_step takes ||w|| of the decayed variable (keras/src/optimizers/base_optimizer.py:586-594, "
                f"keras/src/optimizers/lamb.py:122-132); nearest: decay_placement = \"before\" instead of "
                f"\"{opt.decay_placement}\" (identical without a decoupled decay)")
        return {"optimizer": "Lamb", "learning_rate": opt.lr, "beta_1": opt.betas[0], "beta_2": opt.betas[1],
                "epsilon": opt.eps}
    raise Inexpressible(f"this Keras adapter models the optimizers {sorted(MODELLED)}, not {opt.name!r}")


def describe_clip(c: KerasRun) -> Optional[Clip]:
    """The clipping keyword (at most one, keras_vocab.CLIP): no eps, on the loss's gradient (the regularizers' terms
    included), before weight_decay. The thresholds enter as Python floats, exact in float64 on every backend."""
    key = next((k for k in CLIP if getattr(c, k) is not None), None)
    return None if key is None else Clip(kind=CLIP[key], threshold=getattr(c, key))


def realize_clip(semantics: Semantics) -> dict:
    """The Keras clipping keyword of the semantics' Clip ({} without one), or Inexpressible."""
    clip = semantics.clip
    if clip is None:
        return {}
    key = next(k for k in CLIP if CLIP[k] == clip.kind)
    outside = [r for r in semantics.decay if r.coupling == "gradient" and not r.via_loss]
    if clip.position == "after_coupled_decay":
        raise Inexpressible(f"Keras clips the gradient in apply_gradients before any term of the optimizer (keras/src/"
                            f"optimizers/base_optimizer.py:586-594), never after a coupled decay; nearest: {key} = "
                            f"{clip.threshold} at position 'loss_gradient'"
                            + (" with the coupled terms as regularizers (via_loss = true), the same clip(g + lambda*w) "
                               "stated the other way" if outside else ", identical here (no coupled decay outside the "
                               "loss)"))
    refuse_clip(semantics, {(kind, "loss_gradient"): k for k, kind in CLIP.items()}, "Keras")
    if clip.eps:
        raise Inexpressible(f"Keras's norm clipping adds no eps: global_clipnorm scales by c*min(1/||g||, 1/c), "
                            f"clipnorm by c/max(||g||, c) (keras/src/optimizers/base_optimizer.py:1108-1119,1190-1197)"
                            f"; nearest: eps = 0 instead of {clip.eps} (a relative {clip.eps:g}/||g|| apart while "
                            "clipping)")
    if outside:
        raise Inexpressible(f"Keras has no coupled decay outside the loss: its coupled L2/L1 is a regularizer, a loss "
                            f"term whose gradient {key} clips with the rest "
                            "(keras/src/optimizers/base_optimizer.py:586-594,870-881), and its weight_decay is "
                            f"decoupled; nearest: {outside[0].coefficient} on {outside[0].params} as a regularizer "
                            "(via_loss = true), which is clipped")
    return {key: clip.threshold}
