"""The Keras run's vocabulary: keras.optimizers class names and keywords, gradient clipping, the Dense layer's
regularizers, the Keras backend, what Keras takes but the neutral model does not (refused with Keras's reason),
and the measured precision findings of each Keras backend.

Shared by the adapter (keras_backend.py) and its describe/realize; the sources of every statement:
docs/adapters/keras.md.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
from pydantic import model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import TENSORS, Finite, NonNeg, Positive, Semantics, Strict, Task, Unit, check_tensors, fail
from wdparity.spec.network import LINEAR, in_scope
from wdparity.spec.rules import rules_from_coefficients

from .keras_adafactor import KEYWORDS as ADAFACTOR
from .keras_adafactor import check_beta_2_decay

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
# d|w|/dw at w = 0 through each backend's autodiff (tf.abs and torch.abs backward: sign(0) = 0; JAX: the
# `select(x >= 0, g, -g)` JVP of abs gives +1). Measured in tests/test_keras_backend.py::test_measured_facts.
L1_AT_ZERO = {"tensorflow": 0.0, "jax": 1.0, "torch": 0.0}
KERAS_NAME = {"weight": "kernel", "bias": "bias"}
# Each modelled keras.optimizers class: its learning_rate, weight_decay and own keywords with the installed
# constructor's defaults (sgd.py:43-59, adam.py:43-56, adamw.py:53-67, rmsprop.py:53-70, adagrad.py:35-50,
# adadelta.py:40-55, adamax.py:53-69, nadam.py:39-55, lion.py:44-59, lamb.py:38-55, adafactor.py:44-63; checked
# against inspect.signature by tests/test_keras_optimizer_facts.py::test_the_keyword_table_is_the_installed_signatures).
_ADAM = {"learning_rate": 0.001, "weight_decay": None, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
DEFAULTS = {
    "SGD": {"learning_rate": 0.01, "weight_decay": None, "momentum": 0.0, "nesterov": False},
    "Adam": {**_ADAM, "amsgrad": False},
    "AdamW": {**_ADAM, "weight_decay": 0.004, "amsgrad": False},
    "RMSprop": {"learning_rate": 0.001, "weight_decay": None, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                "centered": False},
    "Adagrad": {"learning_rate": 0.001, "weight_decay": None, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "Adadelta": {"learning_rate": 0.001, "weight_decay": None, "rho": 0.95, "epsilon": 1e-7},
    "Adamax": dict(_ADAM),
    "Nadam": dict(_ADAM),
    "Lion": {"learning_rate": 0.001, "weight_decay": None, "beta_1": 0.9, "beta_2": 0.99},
    "Lamb": dict(_ADAM),
    "Adafactor": {"learning_rate": 0.001, "weight_decay": None, **ADAFACTOR},   # keras_adafactor.KEYWORDS
}
DEFAULT_LR = {name: d["learning_rate"] for name, d in DEFAULTS.items()}
OWN = {name: tuple(k for k in d if k not in ("learning_rate", "weight_decay")) for name, d in DEFAULTS.items()}
# keras.optimizers classes outside the neutral model, refused by name with what they do
NOT_MODELLED = {
    "Ftrl": "is FTRL-proximal, a closed-form solve with its own l1/l2 regularization strengths (keras/src/optimizers/"
            "ftrl.py:171-219), which no neutral optimizer has",
    "Muon": "orthogonalizes the momentum of 2-D variables by Newton-Schulz iterations and runs AdamW on the others "
            "(keras/src/optimizers/muon.py:141-215), which no neutral optimizer has",
}
# The other keywords every keras 3.15 optimizer takes (BaseOptimizer.__init__, keras/src/optimizers/
# base_optimizer.py:68-82) but weight_decay and the clipping keywords (CLIP): each changes the update outside the
# neutral model, or nothing at all; named and refused, never dropped on the way to Keras. (`decay` is accepted: Keras
# ignores it with a warning, and describe() says so.)
_EMA = ("is not modelled: with use_ema Keras keeps a moving average of the weights and writes it into the model every "
        "ema_overwrite_frequency steps and at the end of fit() (keras/src/optimizers/base_optimizer.py:596-612, "
        "1008-1021); without use_ema Keras ignores this key")
_LEGACY = ("is a Keras 2 keyword that Keras 3 rejects: ValueError: Argument(s) not recognized (keras/src/optimizers/"
           "base_optimizer.py:89-90)")
KERAS_EXTRAS = {
    "use_ema": _EMA, "ema_momentum": _EMA, "ema_overwrite_frequency": _EMA,
    "loss_scale_factor": ("is not modelled: Keras multiplies the loss by it and divides the gradients back "
                          "(keras/src/optimizers/base_optimizer.py:691-699, 519-523), exact only up to rounding"),
    "gradient_accumulation_steps": ("is not modelled: Keras then updates once every N steps with the averaged gradient "
                                    "(keras/src/optimizers/base_optimizer.py:551-585), another step count than the task's"),
    "name": ("only names the Keras optimizer (keras/src/optimizers/base_optimizer.py:92-94) and changes no number: "
             "remove the key"),
    "lr": _LEGACY + "; the learning rate is `learning_rate`",
    "schedule_decay": _LEGACY + "; Keras 3's Nadam has the fixed 0.96^t momentum schedule (nadam.py:119-120)",
}
# Gradient clipping, BaseOptimizer's keywords -> the neutral Clip kind: at most one of them (ValueError, base_optimizer.py:
# 130-138); _clip_gradients clips the loss's gradient (the regularizers' terms included) before the decoupled
# weight_decay and the update (base_optimizer.py:586-594), with no eps: clipnorm g*c/max(||g||, c) per variable
# (tf.clip_by_norm on TensorFlow), global_clipnorm g*c*min(1/||g||, 1/c) over all, clipvalue clip(g, -c, c)
# (base_optimizer.py:870-881,1108-1119,1181-1197; tensorflow/optimizer.py:224-227).
CLIP = {"global_clipnorm": "global_norm", "clipnorm": "tensor_norm", "clipvalue": "value"}
DECAY_IGNORED = ("Keras 3 pops `decay` and ignores it, warning \"Argument `decay` is no longer supported and will be "
                 "ignored.\" (keras/src/optimizers/base_optimizer.py:85-88)")


class L1L2(Strict):
    """keras.regularizers.L1L2(l1, l2): adds l1*sum(|w|) + l2*sum(w^2) to the loss."""

    l1: NonNeg = 0.0
    l2: NonNeg = 0.0


class LayerRegularizers(Strict):
    """One layer's regularizer keywords (a network's `layers.NAME`): Dense's kernel_/bias_regularizer,
    LayerNormalization's gamma_/beta_regularizer (keras_network.regularizers checks which layer takes which)."""

    kernel_regularizer: Optional[L1L2] = None
    bias_regularizer: Optional[L1L2] = None
    gamma_regularizer: Optional[L1L2] = None
    beta_regularizer: Optional[L1L2] = None

    def given(self) -> list[str]:
        return [k for k in ("kernel_regularizer", "bias_regularizer", "gamma_regularizer", "beta_regularizer")
                if getattr(self, k) is not None]


class KerasRun(Strict):
    """keras.optimizers keywords (DEFAULTS), the Dense layer's regularizers, the Keras backend."""

    keras_backend: Literal["tensorflow", "jax", "torch"] = "tensorflow"
    optimizer: Literal["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion", "Lamb",
                       "Adafactor"]
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    nesterov: Optional[bool] = None
    beta_1: Optional[Unit] = None
    beta_2: Optional[Unit] = None
    epsilon: Optional[Positive] = None
    amsgrad: Optional[bool] = None
    rho: Optional[Unit] = None
    centered: Optional[bool] = None
    initial_accumulator_value: Optional[NonNeg] = None
    beta_2_decay: Optional[Finite] = None
    epsilon_1: Optional[Positive] = None
    epsilon_2: Optional[Positive] = None
    clip_threshold: Optional[Positive] = None
    relative_step: Optional[bool] = None
    weight_decay: Optional[NonNeg] = None
    exclude_from_weight_decay: Optional[list[str]] = None
    decay: Optional[NonNeg] = None   # accepted and ignored, as Keras 3 does (DECAY_IGNORED)
    clipnorm: Optional[Positive] = None
    clipvalue: Optional[Positive] = None
    global_clipnorm: Optional[Positive] = None
    kernel_regularizer: Optional[L1L2] = None
    bias_regularizer: Optional[L1L2] = None
    layers: Optional[dict[str, LayerRegularizers]] = None   # a network's per-layer regularizers (keras_network.py)

    @model_validator(mode="before")
    @classmethod
    def _keras_extras(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("optimizer") in NOT_MODELLED:
            name = data["optimizer"]
            raise fail("optimizer", name, f"is not modelled: keras.optimizers.{name} {NOT_MODELLED[name]}")
        for key in sorted(data) if isinstance(data, dict) else []:
            if key in KERAS_EXTRAS:
                raise fail(key, data[key], KERAS_EXTRAS[key])
        return data

    def get(self, key: str) -> Any:
        """The keyword as given, else the installed constructor's default (DEFAULTS)."""
        value = getattr(self, key)
        return DEFAULTS[self.optimizer][key] if value is None else value

    @model_validator(mode="after")
    def _consistent(self):
        check_run(self, OWN, "keras.optimizers.{optimizer}", self.get("weight_decay"), {
            "clips": "Keras raises ValueError (\"Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set\", "
                     "keras/src/optimizers/base_optimizer.py:130-138)",
            "nesterov": "keras.optimizers.SGD silently ignores nesterov without momentum, keras/src/optimizers/sgd.py:"
                        "104-124",
            "lion": "must be > 0: keras.optimizers.Lion raises ValueError (\"Otherwise, the optimizer degenerates to "
                    "SignSGD\", keras/src/optimizers/lion.py:77-81)"})
        return self


def check_run(c, own: dict, spelled: str, weight_decay, why: dict[str, str]) -> None:
    """The checks a Keras 3 and a Keras 2 run share (`why`: each framework's own reason and source)."""
    check_keywords(c, c.optimizer, own, spelled)
    check_beta_2_decay(c.beta_2_decay)
    clips = [k for k in CLIP if getattr(c, k) is not None]
    if len(clips) > 1:
        raise fail(clips[1], getattr(c, clips[1]), f"cannot be set with {clips[0]}: {why['clips']}")
    if c.nesterov and not c.momentum:
        raise fail("nesterov", True, f"needs momentum > 0 ({why['nesterov']})")
    if c.optimizer == "Lion" and c.beta_1 == 0:
        raise fail("beta_1", 0.0, why["lion"])
    if c.exclude_from_weight_decay is not None and network_scope():
        if not weight_decay:
            raise fail("exclude_from_weight_decay", c.exclude_from_weight_decay,
                       "needs weight_decay > 0 (otherwise it excludes from nothing)")
    elif c.exclude_from_weight_decay is not None:   # the linear model: neutral names, "weight" -> kernel
        check_tensors("exclude_from_weight_decay", c.exclude_from_weight_decay)
        if len(c.exclude_from_weight_decay) == len(TENSORS):
            raise fail("exclude_from_weight_decay", c.exclude_from_weight_decay,
                       "must leave at least one tensor decayed (excluding all makes weight_decay a no-op)")
        if not weight_decay:
            raise fail("exclude_from_weight_decay", c.exclude_from_weight_decay,
                       "needs weight_decay > 0 (otherwise it excludes from nothing)")


def network_scope() -> bool:
    """A network is being described (or trained: the worker validates its run in the data's scope): then
    exclude_from_weight_decay holds Keras var_names patterns, matched in describe() (keras_network.excluded)."""
    return in_scope() != LINEAR


def float32_inherent(semantics: Semantics, task: Task) -> Semantics:
    """What Keras 3 and Keras 2 do to every float32 run: Adam's 1 - beta^t from float32 betas, Adafactor's
    k^beta_2_decay in float32."""
    field = {"adam": "bias_correction_dtype", "adafactor": "decay_rate_dtype"}.get(semantics.optimizer.name)
    if field is None or task.dtype != "float32":
        return semantics
    return semantics.model_copy(update={"optimizer": semantics.optimizer.model_copy(update={field: "float32"})})


def f32(x: float) -> float:
    """x as tf.cast(x, float64) leaves it: rounded to float32 (keras/src/backend/tensorflow/core.py:210-218)."""
    return float(np.float32(x))


def regularizer_rules(kernel: Optional[L1L2], bias: Optional[L1L2], l1_at_zero: float, r=float) -> list:
    """Coupled rules of the Dense layer's regularizers, canonical order: l2 (merged when equal), then l1.
    d/dw l2*w^2 = 2*l2*w: the L2 coefficient is twice the regularizer's factor. They are loss terms (via_loss),
    clipped with the loss's gradient."""
    return per_tensor_rules({"weight": kernel or L1L2(), "bias": bias or L1L2()}, l1_at_zero, r)


def per_tensor_rules(regs: dict[str, L1L2], l1_at_zero: float, r=float) -> list:
    """regularizer_rules for {tensor: L1L2} (a network's Dense and LayerNormalization regularizers)."""
    regs = {k: regs.get(k) or L1L2() for k in in_scope()}
    return (rules_from_coefficients({k: 2.0 * r(g.l2) for k, g in regs.items()}, via_loss=True) +
            rules_from_coefficients({k: r(g.l1) for k, g in regs.items()}, norm="l1", l1_at_zero=l1_at_zero,
                                    via_loss=True))


GELU_FLOAT32 = ("gelu-constants-float32: tf.nn.gelu takes its constants through math_ops.cast of a Python float, "
                "float32-rounded in a float64 run: 0.044715 of the tanh form, 1/sqrt(2) of the erfc form 0.5*x*erfc(-x*c) "
                "(tensorflow/python/ops/nn_ops.py:3747-3757); the neutral gelu has no field for it")


def gelu_on_tf(task: Task) -> bool:
    """A network whose activation is a gelu: on TensorFlow in float64 it carries GELU_FLOAT32."""
    return not task.model.linear and task.model.activation in ("gelu", "gelu_tanh")


def precision_findings(config: KerasRun, task: Task) -> list[str]:
    """How this run departs from its own describe() by more than rounding (measured; the module docstring has
    the sources). Empty: the run matches its neutral semantics to the fidelity tolerance."""
    kb, out = config.keras_backend, []
    kind = task.schedule.kind
    # (Adam's float32 bias corrections are stated by describe(): AdamSpec.bias_correction_dtype)
    if task.dtype == "float64" and kb == "tensorflow":
        if kind != "constant":
            out.append("schedule-float32: the schedule computes lr_t in float32 (ops.convert_to_tensor of a "
                       "Python float, keras/src/optimizers/schedules/learning_rate_schedule.py:164-167)")
    if task.dtype == "float64" and kb == "tensorflow" and config.optimizer == "Adamax":
        out.append("adamax-bias-correction-float32: Adamax's bias correction 1 - beta_1^t takes ops.cast(beta_1), "
                   "float32-rounded by tf.cast, its moments the exact Python floats; the neutral Adamax has no "
                   "bias_correction_dtype (keras/src/optimizers/adamax.py:109-129)")
    if task.dtype == "float64" and kb == "tensorflow" and config.optimizer == "Nadam":
        out.append("nadam-float32-factors: update_step's u_t, u_t+1, 1 - beta_1, 1 - beta_2 and 1 - beta_2^t take "
                   "ops.cast(0.96), ops.cast(beta_1), ops.cast(beta_2), float32-rounded by tf.cast, while u_product is "
                   "formed from the exact Python floats; the neutral NAdam has one beta_1 (keras/src/optimizers/"
                   "nadam.py:95-139)")
    if task.dtype == "float64" and kb == "tensorflow" and config.optimizer == "Lamb":
        out.append("lamb-bias-correction-float32: Lamb's 1 - beta^t take ops.cast(beta_1), ops.cast(beta_2), float32-"
                   "rounded by tf.cast, its moments the exact Python floats; the neutral LAMB has no bias_correction_dtype "
                   "(its trust ratio cancels the uniform part, epsilon leaves the rest) (keras/src/optimizers/lamb.py:95-119)")
    if task.dtype == "float64" and kb in ("jax", "torch") and config.optimizer == "Adafactor":
        out.append("adafactor-mean-float32: ops.mean of a float64 tensor computes in float32 on JAX and torch (compute "
                   "dtype result_type(float64, float32), float32 off TensorFlow), so Adafactor's rms(w), rms(u) and its "
                   "factored row and column averages are float32-rounded; the neutral Adafactor has no field for it "
                   "(keras/src/backend/jax/numpy.py:226-262, keras/src/backend/torch/numpy.py:165-197, keras/src/"
                   "backend/common/dtypes.py:235-242, keras/src/optimizers/adafactor.py:140-141,166-197)")
    if task.dtype == "float64" and kb == "jax" and kind == "cosine":
        out.append("cosine-float32: CosineDecay's ops.cos returns float32 (keras/src/backend/common/dtypes.py:235-242, "
                   "keras/src/backend/jax/numpy.py:599-606)")
    if task.dtype == "float64" and kb == "torch" and (config.clipnorm or config.global_clipnorm):
        out.append("clip-scale-float32: ops.maximum(norm, clipnorm) and ops.minimum(1/norm, 1/global_clipnorm) of a "
                   "float64 tensor and a Python float return float32 on torch, so the clip scale is float32-rounded "
                   "(keras/src/optimizers/base_optimizer.py:1116-1118,1193, keras/src/backend/torch/numpy.py:1252-1263,"
                   "1320-1331)")
    if task.dtype == "float64" and kb == "tensorflow" and gelu_on_tf(task):
        out.append(GELU_FLOAT32)
    if task.dtype == "float64" and kb in ("jax", "torch") and not task.model.linear and task.model.norm == "layer":
        out.append("layer-norm-float32: ops.layer_normalization computes in result_type(x.dtype, float32), float32 "
                   "off TensorFlow, and casts back: a float64 LayerNormalization is float32-rounded on JAX and torch "
                   "(keras/src/ops/nn.py:3145-3147,3196, keras/src/backend/common/dtypes.py:235-242)")
    if task.dtype == "float64" and kb == "torch":
        out.append("matmul-float32: ops.matmul(float64, float64) computes in float32 on torch (keras/src/backend/"
                   "common/dtypes.py:235-242, keras/src/backend/torch/numpy.py:100-158)")
    return out
