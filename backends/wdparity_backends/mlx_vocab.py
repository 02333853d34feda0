"""mlx.optimizers' class names and constructor keywords (MLX 0.32.4) as the `mlx` run's vocabulary.

One row per class: its keywords and numeric defaults (tests/test_mlx_facts.py reads both from the installed
signatures). MultiOptimizer(optimizers, filters) is data: `optimizers` a list of sub-runs, each but the last with
the `params` its filter takes (the last takes the rest). Muon is named so that it is refused by name, with the
reason. The sources of every statement: docs/adapters/mlx.md.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import Field, model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import TENSORS, NonNeg, Penalty, Positive, Strict, Unit, fail

DEFAULTS = {
    "SGD": {"momentum": 0.0, "weight_decay": 0.0, "dampening": 0.0, "nesterov": False},
    "RMSprop": {"alpha": 0.99, "eps": 1e-8},
    "Adagrad": {"eps": 1e-8},
    "AdaDelta": {"rho": 0.9, "eps": 1e-6},
    "Adam": {"betas": [0.9, 0.999], "eps": 1e-8, "bias_correction": False},
    "AdamW": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "bias_correction": False},
    "Adamax": {"betas": [0.9, 0.999], "eps": 1e-8},
    "Lion": {"betas": [0.9, 0.99], "weight_decay": 0.0},
    "Adafactor": {"eps": (1e-30, 1e-3), "clip_threshold": 1.0, "decay_rate": -0.8, "beta_1": None,
                  "weight_decay": 0.0, "scale_parameter": True, "relative_step": True, "warmup_init": False},
}
KEYWORDS = {name: ("learning_rate", *d) for name, d in DEFAULTS.items()}
# classes of mlx.optimizers the neutral model has no family for: refused by name
REFUSED = {
    "Muon": "mlx.optimizers.Muon orthogonalizes the momentum of each 2-D parameter by Newton-Schulz iterations "
            "(mlx/optimizers/optimizers.py:913-966): the neutral model has no Muon family; nearest: SGD(momentum, "
            "nesterov, weight_decay), which Muon is for 0-D/1-D parameters up to its (1 - momentum) dampening",
}
MULTI = "MultiOptimizer"
MLX_NAMES = tuple(DEFAULTS)
TOP_LEVEL = ("penalty", "clip_grad_norm", "hyperparameters_as_arrays", "compile")   # of the run, never of a sub-run


class MlxOptimizer(Strict):
    """One mlx.optimizers class and its keywords, spelled as MLX spells them."""

    optimizer: str
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    weight_decay: Optional[NonNeg] = None
    dampening: Optional[Unit] = None
    nesterov: Optional[bool] = None
    betas: Optional[list[Unit]] = Field(None, min_length=2, max_length=2)
    # Adafactor's eps is the pair (eps_1, eps_2): added to g^2, and the floor of the parameter scale
    eps: Optional[Union[Positive, list[Positive]]] = None
    bias_correction: Optional[bool] = None
    alpha: Optional[Unit] = None
    rho: Optional[Unit] = None
    clip_threshold: Optional[Positive] = None
    decay_rate: Optional[float] = None
    beta_1: Optional[Unit] = None
    scale_parameter: Optional[bool] = None
    relative_step: Optional[bool] = None
    warmup_init: Optional[bool] = None

    def check_class(self, where: str = ""):
        name = self.optimizer
        if name in REFUSED:
            raise fail(f"{where}optimizer", name, f"is not modelled: {REFUSED[name]}")
        if name not in DEFAULTS:
            raise fail(f"{where}optimizer", name, f"must be one of {list(MLX_NAMES) + [MULTI] + list(REFUSED)} "
                       "(mlx.optimizers' class names, spelled as MLX 0.32.4 spells them)")
        check_keywords(self, name, KEYWORDS, "mlx.optimizers.{optimizer}")
        if self.learning_rate is None and not (name == "Adafactor" and self.get("relative_step")):
            raise fail(f"{where}learning_rate", None, f"is required: mlx.optimizers.{name}(learning_rate, ...) has "
                       "no default (mlx/optimizers/optimizers.py), and Adafactor needs one without relative_step "
                       "(optimizers.py:802-806)")
        if name == "Adafactor" and not isinstance(self.get("eps"), (list, tuple)):
            raise fail(f"{where}eps", self.eps, "must be the pair [eps_1, eps_2] for Adafactor (optimizers.py:764)")
        if name != "Adafactor" and isinstance(self.eps, list):
            raise fail(f"{where}eps", self.eps, f"must be one number for mlx.optimizers.{name}")
        if isinstance(self.eps, list) and len(self.eps) != 2:
            raise fail(f"{where}eps", self.eps, "must be the pair [eps_1, eps_2] (optimizers.py:764)")
        if self.nesterov and (not self.momentum or self.dampening):
            raise fail(f"{where}nesterov", True, "requires a momentum and zero dampening (MLX raises ValueError, "
                       "mlx/optimizers/optimizers.py:257-260)")
        if self.dampening and not self.momentum:
            raise fail(f"{where}dampening", self.dampening, "needs momentum > 0: without momentum MLX's SGD steps "
                       "-lr*g and ignores dampening (mlx/optimizers/optimizers.py:280-281)")
        return self

    def get(self, key: str) -> Any:
        """The keyword's value, or the class's default."""
        value = getattr(self, key)
        return DEFAULTS[self.optimizer].get(key) if value is None else value


class MlxSub(MlxOptimizer):
    """One of MultiOptimizer's optimizers: `params`, the tensors its filter takes (path in params; nn.Linear's
    paths are "weight" and "bias"); the last one has none (MLX's fallback, optimizers.py:182)."""

    params: Optional[list[str]] = None


class MlxRun(MlxOptimizer):
    """An mlx run: `optimizer` is the mlx.optimizers class, its keywords spelled as MLX spells them."""

    # MultiOptimizer's sub-optimizers, in order: the first whose params hold a tensor's path takes it
    optimizers: Optional[list[MlxSub]] = None
    # a loss penalty c2*sum(w^2) + c1*sum(|w|) added to the loss before nn.value_and_grad
    penalty: Optional[Penalty] = None
    # mlx.optimizers.clip_grad_norm(grads, max_norm) between value_and_grad and optimizer.update
    clip_grad_norm: Optional[Positive] = None
    # true: learning_rate (and a schedule's init, decay_rate, end, decay_steps) are handed to MLX as mx.array(x,
    # dtype=the parameters' dtype), and in a float64 run the betas and Adafactor's decay_rate too, as a float64
    # MLX user must write them to keep them float64; false/None: Python floats, the learning rate then a float32
    # array (docs/adapters/mlx.md)
    hyperparameters_as_arrays: Optional[bool] = None
    # true: the step is mx.compile'd with the model's and the optimizer's state as inputs and outputs
    # (bit-identical to eager, measured in tests/test_mlx_facts.py)
    compile: Optional[bool] = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.optimizer != MULTI:
            if self.optimizers is not None:
                raise fail("optimizers", "[...]", f"is MultiOptimizer's, not mlx.optimizers.{self.optimizer}'s")
            return self.check_class()
        own = [k for k in MlxOptimizer.model_fields if k != "optimizer" and getattr(self, k) is not None]
        if own:
            raise fail(own[0], getattr(self, own[0]), "belongs to each of MultiOptimizer's `optimizers`, not to "
                       "MultiOptimizer(optimizers, filters) itself (mlx/optimizers/optimizers.py:172)")
        if not self.optimizers:
            raise fail("optimizers", self.optimizers, "must list MultiOptimizer's optimizers")
        taken: dict[str, int] = {}
        for i, sub in enumerate(self.optimizers):
            where = f"optimizers[{i}]."
            if sub.optimizer == MULTI:
                raise fail(f"{where}optimizer", MULTI, "must be one optimizer class, not a MultiOptimizer")
            sub.check_class(where)
            last = i == len(self.optimizers) - 1
            if last and sub.params is not None:
                raise fail(f"{where}params", sub.params, "must be left out: the last optimizer is MultiOptimizer's "
                           "fallback, with no filter, taking every parameter no filter took (optimizers.py:163-182)")
            names = [t for t in TENSORS if t not in taken] if last else list(sub.params or [])
            if not last and not sub.params:
                raise fail(f"{where}params", sub.params, f"must name the parameters its filter takes, paths of the "
                           f"nn.Linear: {list(TENSORS)} (filters are (path, array) -> bool, optimizers.py:184-197)")
            unknown = [t for t in names if t not in TENSORS]
            if unknown:
                raise fail(f"{where}params", sub.params, f"names no parameter of the model ({unknown}): its "
                           f"parameters are {list(TENSORS)}")
            mine = [t for t in names if t not in taken]
            if not mine:
                raise fail(f"{where}params", sub.params or "(the rest)", "takes no parameter: "
                           + ", ".join(f"{t} goes to optimizers[{taken[t]}]" for t in TENSORS if t in taken)
                           + f" (the first matching filter wins, optimizers.py:190-194); the parameters are "
                           f"{list(TENSORS)}")
            taken.update({t: i for t in mine})
        return self

    def groups(self) -> list[tuple[MlxOptimizer, list[str]]]:
        """(optimizer, the tensors it updates), in order; a plain run is one optimizer for every tensor."""
        if self.optimizer != MULTI:
            return [(self, list(TENSORS))]
        out, taken = [], set()
        for sub in self.optimizers:
            names = [t for t in TENSORS if t not in taken and (sub.params is None or t in sub.params)]
            taken.update(names)
            out.append((sub, names))
        return out
