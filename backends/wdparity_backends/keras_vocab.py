"""The Keras run's vocabulary: keras.optimizers class names and keywords, the Dense layer's regularizers, the
Keras backend, what Keras takes but the neutral model does not (refused with Keras's reason), and the
measured precision findings of each Keras backend.

Shared by the adapter (keras_backend.py) and its describe/realize; the sources of every statement:
docs/adapters/keras.md.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
from pydantic import model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import TENSORS, NonNeg, Positive, Strict, Task, Unit, check_tensors, fail
from wdparity.spec.rules import rules_from_coefficients

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
# d|w|/dw at w = 0 through each backend's autodiff (tf.abs and torch.abs backward: sign(0) = 0; JAX: the
# `select(x >= 0, g, -g)` JVP of abs gives +1). Measured in tests/test_keras_backend.py::test_measured_facts.
L1_AT_ZERO = {"tensorflow": 0.0, "jax": 1.0, "torch": 0.0}
DEFAULT_LR = {"SGD": 0.01, "Adam": 0.001, "AdamW": 0.001}          # sgd.py:45, adam.py:45, adamw.py:55
KERAS_NAME = {"weight": "kernel", "bias": "bias"}
OWN = {"SGD": ("momentum", "nesterov"), "Adam": ("beta_1", "beta_2", "epsilon", "amsgrad"),
       "AdamW": ("beta_1", "beta_2", "epsilon", "amsgrad")}
# The other keywords every keras 3.15 optimizer takes (BaseOptimizer.__init__, keras/src/optimizers/
# base_optimizer.py:68-82): each changes the update outside the neutral model, or nothing at all; named and refused,
# never dropped on the way to Keras.
_CLIP = ("is not modelled: Keras clips the gradient before the update (BaseOptimizer._clip_gradients, keras/src/"
         "optimizers/base_optimizer.py:870-881), outside the neutral model")
_EMA = ("is not modelled: with use_ema Keras keeps a moving average of the weights and writes it into the model every "
        "ema_overwrite_frequency steps and at the end of fit() (keras/src/optimizers/base_optimizer.py:596-612, "
        "1008-1021); without use_ema Keras ignores this key")
KERAS_EXTRAS = {
    "clipnorm": _CLIP, "clipvalue": _CLIP, "global_clipnorm": _CLIP,
    "use_ema": _EMA, "ema_momentum": _EMA, "ema_overwrite_frequency": _EMA,
    "loss_scale_factor": ("is not modelled: Keras multiplies the loss by it and divides the gradients back "
                          "(keras/src/optimizers/base_optimizer.py:691-699, 519-523), exact only up to rounding"),
    "gradient_accumulation_steps": ("is not modelled: Keras then updates once every N steps with the averaged gradient "
                                    "(keras/src/optimizers/base_optimizer.py:551-585), another step count than the task's"),
    "name": ("only names the Keras optimizer (keras/src/optimizers/base_optimizer.py:92-94) and changes no number: "
             "remove the key"),
    "decay": ("is ignored by Keras 3 with a warning (keras/src/optimizers/base_optimizer.py:85-88); a learning-rate "
              "decay is the task's `schedule`, a weight decay is `weight_decay`"),
}


class L1L2(Strict):
    """keras.regularizers.L1L2(l1, l2): adds l1*sum(|w|) + l2*sum(w^2) to the loss."""

    l1: NonNeg = 0.0
    l2: NonNeg = 0.0


class KerasRun(Strict):
    """keras.optimizers.SGD / Adam / AdamW keywords, the Dense layer's regularizers, the Keras backend."""

    keras_backend: Literal["tensorflow", "jax", "torch"] = "tensorflow"
    optimizer: Literal["SGD", "Adam", "AdamW"]
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    nesterov: Optional[bool] = None
    beta_1: Optional[Unit] = None
    beta_2: Optional[Unit] = None
    epsilon: Optional[Positive] = None
    amsgrad: Optional[bool] = None
    weight_decay: Optional[NonNeg] = None
    exclude_from_weight_decay: Optional[list[str]] = None
    kernel_regularizer: Optional[L1L2] = None
    bias_regularizer: Optional[L1L2] = None

    @model_validator(mode="before")
    @classmethod
    def _keras_extras(cls, data: Any) -> Any:
        for key in sorted(data) if isinstance(data, dict) else []:
            if key in KERAS_EXTRAS:
                raise fail(key, data[key], KERAS_EXTRAS[key])
        return data

    @model_validator(mode="after")
    def _consistent(self):
        check_keywords(self, self.optimizer, OWN, "keras.optimizers.{optimizer}")
        if self.amsgrad:
            raise fail("amsgrad", True, "must be false: AMSGrad (keras/src/optimizers/adam.py:128-131) is outside "
                       "the neutral model")
        if self.nesterov and not self.momentum:
            raise fail("nesterov", True, "needs momentum > 0 (keras.optimizers.SGD silently ignores nesterov "
                       "without momentum, keras/src/optimizers/sgd.py:104-124)")
        if self.exclude_from_weight_decay is not None:
            check_tensors("exclude_from_weight_decay", self.exclude_from_weight_decay)
            if len(self.exclude_from_weight_decay) == len(TENSORS):
                raise fail("exclude_from_weight_decay", self.exclude_from_weight_decay,
                           "must leave at least one tensor decayed (excluding all makes weight_decay a no-op)")
            wd = self.weight_decay if self.weight_decay is not None else (0.004 if self.optimizer == "AdamW" else 0.0)
            if not wd:
                raise fail("exclude_from_weight_decay", self.exclude_from_weight_decay,
                           "needs weight_decay > 0 (otherwise it excludes from nothing)")
        return self


def f32(x: float) -> float:
    """x as tf.cast(x, float64) leaves it: rounded to float32 (keras/src/backend/tensorflow/core.py:210-218)."""
    return float(np.float32(x))


def regularizer_rules(kernel: Optional[L1L2], bias: Optional[L1L2], l1_at_zero: float, r=float) -> list:
    """Coupled rules of the Dense layer's regularizers, canonical order: l2 (merged when equal), then l1.
    d/dw l2*w^2 = 2*l2*w: the L2 coefficient is twice the regularizer's factor."""
    regs = {"weight": kernel or L1L2(), "bias": bias or L1L2()}
    return (rules_from_coefficients({k: 2.0 * r(g.l2) for k, g in regs.items()}) +
            rules_from_coefficients({k: r(g.l1) for k, g in regs.items()}, norm="l1", l1_at_zero=l1_at_zero))


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
    if task.dtype == "float64" and kb == "jax" and kind == "cosine":
        out.append("cosine-float32: CosineDecay's ops.cos returns float32 (keras/src/backend/common/dtypes.py:235-242, "
                   "keras/src/backend/jax/numpy.py:599-606)")
    if task.dtype == "float64" and kb == "torch":
        out.append("matmul-float32: ops.matmul(float64, float64) computes in float32 on torch (keras/src/backend/"
                   "common/dtypes.py:235-242, keras/src/backend/torch/numpy.py:100-158)")
    return out
