"""mlx.optimizers' class names and constructor keywords (MLX 0.32.4) as the `mlx` run's vocabulary.

One row per class: its keywords and numeric defaults (tests/test_mlx_facts.py reads both from the installed
signatures). MultiOptimizer(optimizers, filters) is data: `optimizers` a list of sub-runs, each but the last with
a filter (`params`, `endswith` or `ndim`, mlx_network.py) on the paths of tree_flatten(model.parameters()).
Muon is named so that it is refused by name, with the reason. The sources of every statement: docs/adapters/mlx.md.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import Field, model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import DecayRule, NonNeg, Positive, Strict, Unit, fail

from . import mlx_network as network

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
    """One of MultiOptimizer's optimizers and its filter (path, array) -> bool, as data: `params` (path in
    params), `endswith` (path.endswith(suffix)) or `ndim` (array.ndim == n) on the paths of
    tree_flatten(model.parameters()) (nn.Linear: "weight", "bias"; a Sequential: "layers.0.weight", ...); the
    last one has none (MLX's fallback, optimizers.py:182)."""

    params: Optional[list[str]] = None
    endswith: Optional[str] = None
    ndim: Optional[int] = None

    def filters(self) -> list[str]:
        return [k for k in network.FILTERS if getattr(self, k) is not None]


class MlxPenalty(Strict):
    """A loss penalty l2*sum(p^2) + l1*sum(|p|) over the parameters at these paths of
    tree_flatten(model.parameters()), added to the loss as an MLX user adds it; default: the nn.Linear weights."""

    l2: NonNeg = 0.0
    l1: NonNeg = 0.0
    params: Optional[list[str]] = None

    @model_validator(mode="after")
    def _consistent(self):
        table = network.paths()
        if self.params is not None:
            bad = [p for p in self.params if p not in table]
            if bad or not self.params:
                raise fail("params", self.params, f"names no parameter of the model ({bad}): the paths of "
                           f"tree_flatten(model.parameters()) are {list(table)}")
        return self

    def neutral(self) -> list[str]:
        table = network.paths()
        if self.params is None:
            return [n for p, n in table.items() if network.ndims(table)[p] == 2]
        return [n for p, n in table.items() if p in self.params]

    def rules(self, l1_at_zero: float) -> list[DecayRule]:
        """Its gradient as coupled rules: d/dw c2*w^2 = 2*c2*w; d/dw c1*|w| = c1*sign(w)."""
        out, names = [], self.neutral()
        if self.l2:
            out.append(DecayRule(norm="l2", coupling="gradient", coefficient=2.0 * self.l2, params=names,
                                 via_loss=True))
        if self.l1:
            out.append(DecayRule(norm="l1", coupling="gradient", coefficient=self.l1, params=names,
                                 l1_at_zero=l1_at_zero, via_loss=True))
        return out


class MlxRun(MlxOptimizer):
    """An mlx run: `optimizer` is the mlx.optimizers class, its keywords spelled as MLX spells them."""

    # MultiOptimizer's sub-optimizers, in order: the first whose params hold a tensor's path takes it
    optimizers: Optional[list[MlxSub]] = None
    # a loss penalty c2*sum(w^2) + c1*sum(|w|) added to the loss before nn.value_and_grad
    penalty: Optional[MlxPenalty] = None
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
        table = network.paths()
        dims = network.ndims(table)
        taken: dict[str, int] = {}
        for i, sub in enumerate(self.optimizers):
            where = f"optimizers[{i}]."
            if sub.optimizer == MULTI:
                raise fail(f"{where}optimizer", MULTI, "must be one optimizer class, not a MultiOptimizer")
            sub.check_class(where)
            last = i == len(self.optimizers) - 1
            given = sub.filters()
            if last and given:
                raise fail(f"{where}{given[0]}", getattr(sub, given[0]), "must be left out: the last optimizer is "
                           "MultiOptimizer's fallback, with no filter, taking every parameter no filter took "
                           "(optimizers.py:163-182)")
            if not last and len(given) != 1:
                raise fail(f"{where}params", sub.params, "must name the parameters its filter takes: exactly one of "
                           "`params` (path in params), `endswith` (path.endswith(suffix)) or `ndim` (array.ndim == n), on the paths "
                           f"{list(table)} (filters are (path, array) -> bool, optimizers.py:184-197)"
                           + (f"; it has {given}" if given else ""))
            if sub.params is not None:
                unknown = [t for t in sub.params if t not in table]
                if unknown or not sub.params:
                    raise fail(f"{where}params", sub.params, f"names no parameter of the model ({unknown}): the "
                               f"paths of tree_flatten(model.parameters()) are {list(table)}")
            matched = [p for p in table if last or network.takes(sub, p, dims[p])]
            if not matched:
                key = given[0]
                raise fail(f"{where}{key}", getattr(sub, key), f"matches no parameter: the paths of "
                           f"tree_flatten(model.parameters()) are {list(table)}, their ndim {dims}")
            mine = [p for p in matched if p not in taken]
            if not mine:
                key = given[0] if given else "params"
                raise fail(f"{where}{key}", getattr(sub, key) if given else "(the rest)", "takes no parameter: "
                           + ", ".join(f"{p} goes to optimizers[{taken[p]}]" for p in matched)
                           + f" (the first matching filter wins, optimizers.py:190-194); the paths are {list(table)}")
            taken.update({p: i for p in mine})
        where_ = network.merge_fails([[p for p in table if taken[p] == i] for i in range(len(self.optimizers))])
        if where_:
            raise fail("optimizers", "[...]", f"cannot train: {network.MERGE_BUG}; here {where_}; nearest: filters "
                       "whose parts each reach the last layer, or a model without parameterless layers in between")
        return self

    def groups(self) -> list[tuple[MlxOptimizer, list[str]]]:
        """(optimizer, the neutral tensors it updates), in order; a plain run is one optimizer for every tensor."""
        table = network.paths()
        if self.optimizer != MULTI:
            return [(self, list(table.values()))]
        dims = network.ndims(table)
        out, taken = [], set()
        for sub in self.optimizers:
            mine = [p for p in table if p not in taken and (not sub.filters() or network.takes(sub, p, dims[p]))]
            taken.update(mine)
            out.append((sub, [table[p] for p in mine]))
        return out
