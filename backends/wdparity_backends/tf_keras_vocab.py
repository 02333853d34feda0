"""The tf_keras run's vocabulary: Keras 2's optimizer class names (tf_keras.optimizers.* and, prefixed `legacy.`,
tf_keras.optimizers.legacy.*) with their keywords and installed defaults, gradient clipping, the Dense layer's
regularizers (keras_vocab.L1L2), and what tf_keras takes but the neutral model does not (refused with the reason).

Paths are under site-packages/tf_keras/src/ of tf_keras 2.21.0; every statement: docs/adapters/tf_keras.md.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import model_validator

from wdparity.spec.models import Finite, NonNeg, Positive, Strict, Unit, fail

from .keras_adafactor import KEYWORDS as ADAFACTOR
from .keras_vocab import CLIP, L1L2, LayerRegularizers, check_run  # noqa: F401  (the same clipping keywords and regularizer as Keras 3)

# The defaults of each modelled class (optimizers/sgd.py, adam.py, adamw.py, rmsprop.py, adagrad.py, adadelta.py,
# adamax.py, nadam.py, lion.py and optimizers/legacy/*.py at 2.21.0; tests/test_tf_keras_facts.py compares this
# table with inspect.signature). `weight_decay` is the new optimizers' (optimizer.py:739-746), `decay` the legacy
# ones' (legacy/optimizer_v2.py:406-410), `schedule_decay` legacy Nadam's (legacy/nadam.py:78).
_ADAM = {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
_NEW = {"weight_decay": None, "jit_compile": True}
NEW = {
    "SGD": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False, **_NEW},
    "Adam": {**_ADAM, "adaptive_epsilon": False, "amsgrad": False, **_NEW},
    "AdamW": {**_ADAM, "amsgrad": False, **_NEW, "weight_decay": 0.004},
    "RMSprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False, **_NEW},
    "Adagrad": {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7, **_NEW},
    "Adadelta": {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7, **_NEW},
    "Adamax": {**_ADAM, **_NEW},
    "Nadam": {**_ADAM, **_NEW},
    "Lion": {"learning_rate": 0.0001, "beta_1": 0.9, "beta_2": 0.99, **_NEW},
    "Adafactor": {"learning_rate": 0.001, **ADAFACTOR, **_NEW},   # optimizers/adafactor.py:68-86
}
LEGACY = {
    "legacy.SGD": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False, "decay": 0.0},
    "legacy.Adam": {**_ADAM, "amsgrad": False, "decay": 0.0},
    "legacy.RMSprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False,
                       "decay": 0.0},
    "legacy.Adagrad": {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7, "decay": 0.0},
    "legacy.Adadelta": {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7, "decay": 0.0},
    "legacy.Adamax": {**_ADAM, "decay": 0.0},
    "legacy.Nadam": {**_ADAM, "schedule_decay": 0.004},
}
DEFAULTS = {**NEW, **LEGACY}
OWN = {name: tuple(k for k in d if k != "learning_rate") for name, d in DEFAULTS.items()}
# Classes outside the neutral model, refused by name
NOT_MODELLED = {
    "Ftrl": "is FTRL-proximal, a closed-form solve with its own l1/l2 strengths (optimizers/ftrl.py), which no "
            "neutral optimizer has",
    "legacy.Ftrl": "is FTRL-proximal (optimizers/legacy/ftrl.py, tf.raw_ops.ResourceApplyFtrlV2), which no neutral "
                   "optimizer has",
}
_EMA = ("is not modelled: with use_ema tf_keras keeps a moving average of the weights and overwrites the model with "
        "it every ema_overwrite_frequency steps (optimizers/optimizer.py:39-95, _update_model_variables_moving_average)")
TF_KERAS_EXTRAS = {
    "use_ema": _EMA, "ema_momentum": _EMA, "ema_overwrite_frequency": _EMA,
    "name": "only names the optimizer and changes no number: remove the key",
    "lr": ("is the deprecated alias of learning_rate (optimizers/optimizer.py:125-131, legacy/optimizer_v2.py:"
           "364-370): write learning_rate"),
    "gradient_aggregator": ("is not modelled: a custom all-reduce of the gradients (legacy/optimizer_v2.py:312-316); "
                            "the new optimizers raise ValueError on it (optimizers/optimizer.py:132-143)"),
    "gradient_transformers": ("is not modelled: arbitrary gradient transforms (legacy/optimizer_v2.py:312-316); the new "
                              "optimizers raise ValueError on it (optimizers/optimizer.py:132-143)"),
}
# What the new optimizers raise on `decay=` (optimizers/optimizer.py:132-143), quoted in the validation error
DECAY_REJECTED = ("{name}(decay=...) raises ValueError in tf_keras: \"decay is deprecated in the new TF-Keras optimizer, "
                  "please check the docstring for valid arguments, or use the legacy optimizer, e.g., "
                  "tf.keras.optimizers.legacy.{name}.\" (optimizers/optimizer.py:132-143)")
NADAM_DECAY = ("is not a keyword of legacy.Nadam: its constructor overwrites `decay` with schedule_decay "
               "(kwargs[\"decay\"] = kwargs.pop(\"schedule_decay\", 0.004), legacy/nadam.py:78), the exponent of its "
               "momentum schedule; a given decay is silently lost. Write schedule_decay")


class TfKerasRun(Strict):
    """tf_keras.optimizers keywords (DEFAULTS) and the Dense layer's regularizers."""

    optimizer: Literal["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion",
                       "Adafactor", "legacy.SGD", "legacy.Adam", "legacy.RMSprop", "legacy.Adagrad",
                       "legacy.Adadelta",
                       "legacy.Adamax", "legacy.Nadam"]
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    nesterov: Optional[bool] = None
    beta_1: Optional[Unit] = None
    beta_2: Optional[Unit] = None
    epsilon: Optional[Positive] = None
    adaptive_epsilon: Optional[bool] = None
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
    jit_compile: Optional[bool] = None
    decay: Optional[NonNeg] = None
    schedule_decay: Optional[NonNeg] = None
    clipnorm: Optional[Positive] = None
    clipvalue: Optional[Positive] = None
    global_clipnorm: Optional[Positive] = None
    kernel_regularizer: Optional[L1L2] = None
    bias_regularizer: Optional[L1L2] = None
    layers: Optional[dict[str, LayerRegularizers]] = None   # a network's per-layer regularizers (keras_network.py)

    @model_validator(mode="before")
    @classmethod
    def _extras(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("optimizer")
        if name in NOT_MODELLED:
            raise fail("optimizer", name, f"is not modelled: tf_keras.optimizers.{name} {NOT_MODELLED[name]}")
        for key in sorted(data):
            if key in TF_KERAS_EXTRAS:
                raise fail(key, data[key], TF_KERAS_EXTRAS[key])
        if name in NEW and data.get("decay") is not None:
            raise fail("decay", data["decay"], DECAY_REJECTED.format(name=name))
        if name == "legacy.Nadam" and data.get("decay") is not None:
            raise fail("decay", data["decay"], NADAM_DECAY)
        return data

    @property
    def legacy(self) -> bool:
        return self.optimizer.startswith("legacy.")

    def get(self, key: str) -> Any:
        """The keyword as given, else the installed constructor's default (DEFAULTS)."""
        value = getattr(self, key)
        return DEFAULTS[self.optimizer][key] if value is None else value

    @model_validator(mode="after")
    def _consistent(self):
        check_run(self, OWN, "tf_keras.optimizers.{optimizer}", self.weight_decay or DEFAULTS[self.optimizer].get(
            "weight_decay"), {
            "clips": "tf_keras raises ValueError for clipnorm with global_clipnorm (optimizers/optimizer.py:97-102, "
                     "legacy/optimizer_v2.py:427-435) and otherwise applies only one of them (optimizers/optimizer.py:"
                     "283-308)",
            "nesterov": "tf_keras's SGD without momentum ignores nesterov, optimizers/sgd.py:update_step, legacy/"
                        "gradient_descent.py:_resource_apply_dense",
            "lion": "must be in ]0, 1]: tf_keras.optimizers.Lion raises ValueError (optimizers/lion.py:93-97)"})
        return self
