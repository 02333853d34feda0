"""mlx.optimizers' class names and constructor keywords (MLX 0.32.4) as the `mlx` run's vocabulary.

One row per class: its keywords and numeric defaults (tests/test_mlx_facts.py reads both from the installed
signatures). Adafactor and Muon are named so that they are refused by name, with the reason. The sources of
every statement: docs/adapters/mlx.md.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import NonNeg, Penalty, Positive, Strict, Unit, fail

DEFAULTS = {
    "SGD": {"momentum": 0.0, "weight_decay": 0.0, "dampening": 0.0, "nesterov": False},
    "RMSprop": {"alpha": 0.99, "eps": 1e-8},
    "Adagrad": {"eps": 1e-8},
    "AdaDelta": {"rho": 0.9, "eps": 1e-6},
    "Adam": {"betas": [0.9, 0.999], "eps": 1e-8, "bias_correction": False},
    "AdamW": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "bias_correction": False},
    "Adamax": {"betas": [0.9, 0.999], "eps": 1e-8},
    "Lion": {"betas": [0.9, 0.99], "weight_decay": 0.0},
}
KEYWORDS = {name: ("learning_rate", *d) for name, d in DEFAULTS.items()}
# classes of mlx.optimizers the neutral model has no family for: refused by name
REFUSED = {
    "Adafactor": "mlx.optimizers.Adafactor factors the second moment over rows and columns, clips the update by "
                 "its RMS and by default computes its own relative step size (mlx/optimizers/optimizers.py:801-865): "
                 "the neutral model has no Adafactor family; nearest: Adam (bias_correction = true)",
    "Muon": "mlx.optimizers.Muon orthogonalizes the momentum of each 2-D parameter by Newton-Schulz iterations "
            "(mlx/optimizers/optimizers.py:913-966): the neutral model has no Muon family; nearest: SGD(momentum, "
            "nesterov, weight_decay), which Muon is for 0-D/1-D parameters up to its (1 - momentum) dampening",
    "MultiOptimizer": "mlx.optimizers.MultiOptimizer (one optimizer per filtered subset of parameters) is not "
                      "modelled by this adapter; nearest: one optimizer for every parameter",
}
MLX_NAMES = tuple(DEFAULTS)


class MlxRun(Strict):
    """An mlx run: `optimizer` is the mlx.optimizers class, its keywords spelled as MLX spells them."""

    optimizer: str
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    weight_decay: Optional[NonNeg] = None
    dampening: Optional[Unit] = None
    nesterov: Optional[bool] = None
    betas: Optional[list[Unit]] = Field(None, min_length=2, max_length=2)
    eps: Optional[Positive] = None
    bias_correction: Optional[bool] = None
    alpha: Optional[Unit] = None
    rho: Optional[Unit] = None
    # a loss penalty c2*sum(w^2) + c1*sum(|w|) added to the loss before nn.value_and_grad
    penalty: Optional[Penalty] = None
    # mlx.optimizers.clip_grad_norm(grads, max_norm) between value_and_grad and optimizer.update
    clip_grad_norm: Optional[Positive] = None
    # true: learning_rate (and a schedule's init, decay_rate, end, decay_steps) are handed to MLX as mx.array(x,
    # dtype=the parameters' dtype), and in a float64 run the betas too, as a float64 MLX user must write them to
    # keep them float64; false/None: Python floats, the learning rate then a float32 array (docs/adapters/mlx.md)
    hyperparameters_as_arrays: Optional[bool] = None
    # true: the step is mx.compile'd with the model's and the optimizer's state as inputs and outputs
    # (bit-identical to eager, measured in tests/test_mlx_facts.py)
    compile: Optional[bool] = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.optimizer in REFUSED:
            raise fail("optimizer", self.optimizer, f"is not modelled: {REFUSED[self.optimizer]}")
        if self.optimizer not in DEFAULTS:
            raise fail("optimizer", self.optimizer, f"must be one of {list(MLX_NAMES) + list(REFUSED)} "
                       "(mlx.optimizers' class names, spelled as MLX 0.32.4 spells them)")
        check_keywords(self, self.optimizer, KEYWORDS, "mlx.optimizers.{optimizer}")
        if self.learning_rate is None:
            raise fail("learning_rate", None, f"is required: mlx.optimizers.{self.optimizer}(learning_rate, ...) has "
                       "no default (mlx/optimizers/optimizers.py)")
        if self.nesterov and (not self.momentum or self.dampening):
            raise fail("nesterov", True, "requires a momentum and zero dampening (MLX raises ValueError, "
                       "mlx/optimizers/optimizers.py:257-260)")
        if self.dampening and not self.momentum:
            raise fail("dampening", self.dampening, "needs momentum > 0: without momentum MLX's SGD steps "
                       "-lr*g and ignores dampening (mlx/optimizers/optimizers.py:280-281)")
        return self

    def get(self, key: str) -> Any:
        """The keyword's value, or the class's default."""
        value = getattr(self, key)
        return DEFAULTS[self.optimizer].get(key) if value is None else value

