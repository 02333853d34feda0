"""The neutral spec: what a task, an optimizer and a decay rule *mean*, framework-free.

Everything here is pure, validated data (pydantic v2, strict: no silent coercion, no NaN/inf,
unknown keys are errors). Adapters translate their framework's knobs into `Semantics`
(`describe`) and back (`realize`); the reference executes `Semantics` in NumPy.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from wdparity.spec import network
from wdparity.spec.base import (  # noqa: F401  (the spec's vocabulary, importable from here)
    CAUSES,
    TENSORS,
    Cause,
    DType,
    Finite,
    Loss,
    NonNeg,
    Positive,
    Strict,
    Tensor,
    Unit,
    check_tensors,
    fail,
)
from wdparity.spec.network import Model
from wdparity.spec.optimizers import (  # noqa: F401
    OPTIMIZER_SPECS,
    AdadeltaSpec,
    AdafactorSpec,
    AdagradSpec,
    AdamaxSpec,
    AdamSpec,
    LambSpec,
    LionSpec,
    NadamSpec,
    OptimizerSpec,
    RadamSpec,
    RmspropSpec,
    SgdSpec,
)


# ---------------------------------------------------------------- schedules
class ConstantSchedule(Strict):
    kind: Literal["constant"] = "constant"


class StepSchedule(Strict):
    """eta_t = factor ** (t // every)."""

    kind: Literal["step"]
    every: int = Field(ge=1)
    factor: Positive


class CosineSchedule(Strict):
    """eta_t = floor + (1 - floor) * (1 + cos(pi * min(t, total) / total)) / 2."""

    kind: Literal["cosine"]
    total: int = Field(ge=1)
    floor: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0


class InverseTimeSchedule(Strict):
    """eta_t = 1 / (1 + rate * t): Keras 2's legacy `decay=` (tf_keras/optimizers/legacy/optimizer_v2.py
    `_decayed_lr`), not weight decay."""

    kind: Literal["inverse_time"]
    rate: Positive


Schedule = Annotated[Union[ConstantSchedule, StepSchedule, CosineSchedule, InverseTimeSchedule],
                     Field(discriminator="kind")]
SCHEDULE_KINDS = ("constant", "step", "cosine", "inverse_time")


# ---------------------------------------------------------------- task
class Task(Strict):
    """The regression task; defaults are the high-dimensional experiment of seed 002 (d2l 3.7)."""

    num_inputs: int = Field(200, ge=1, le=10_000_000)
    n_train: int = Field(20, ge=1)
    n_test: int = Field(100, ge=1)
    true_w: Finite = 0.01
    true_b: Finite = 0.05
    noise: NonNeg = 0.01
    init: Literal["normal", "zeros", "normal_all"] = "normal"
    batch_size: int = Field(1, ge=1)
    epochs: int = Field(10, ge=1)
    shuffle: bool = True
    loss: Loss = "half_mse"
    seed: int = Field(0, ge=0)
    dtype: DType = "float32"
    schedule: Schedule = ConstantSchedule()
    # How trajectories are kept (recording.py): "auto" records every step in full up to 2e7 weight values
    # per run, else per-step norm/bias/digest plus w every `checkpoint_every` steps.
    record: Literal["auto", "full", "checkpoints"] = "auto"
    checkpoint_every: Optional[int] = Field(None, ge=1)
    # The model: the linear regressor (default) or a multi-layer perceptron (spec/network.py)
    model: Model = Model()

    @model_validator(mode="after")
    def _batch_fits(self):
        if self.batch_size > self.n_train:
            raise fail("batch_size", self.batch_size, f"must be <= n_train ({self.n_train})")
        return self

    @property
    def tensors(self) -> tuple[str, ...]:
        """The model's tensor names in layout order (spec/network.py)."""
        return network.names(self.model, self.num_inputs)

    @property
    def parameters(self) -> int:
        return network.parameter_count(self.model, self.num_inputs)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_train // self.batch_size)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


# ---------------------------------------------------------------- neutral semantics
class DecayRule(Strict):
    """One decay term. gradient coupling adds lambda*w (l2) or lambda*sign(w) (l1) to the gradient;
    decoupled applies w <- w - s*lambda*w outside the optimizer's moments, s per `scale`."""

    norm: Literal["l2", "l1"] = "l2"
    coupling: Literal["gradient", "decoupled"] = "gradient"
    coefficient: NonNeg
    scale: Optional[Literal["lr", "schedule", "none"]] = None
    params: list[str] = Field(default_factory=lambda: list(network.in_scope()))   # every tensor of the model
    l1_at_zero: Optional[Finite] = None
    # A loss penalty's term is computed by autograd in the weights' dtype, never rounded as an
    # optimizer hyperparameter (matters only with hyper_dtype = "float32").
    via_loss: bool = False
    # A schedule of the coefficient itself, lambda_t = coefficient * delta_t, independent of the learning rate's
    # (optax: add_decayed_weights(weight_decay=schedule), counted from its own first update, t = 0)
    schedule: Optional[Schedule] = None

    @model_validator(mode="after")
    def _consistent(self):
        check_tensors("params", self.params)
        if self.coupling == "gradient" and self.scale is not None:
            raise fail("scale", self.scale, "belongs to coupling = \"decoupled\" only")
        if self.norm == "l2" and self.l1_at_zero is not None:
            raise fail("l1_at_zero", self.l1_at_zero, "belongs to norm = \"l1\" only")
        return self

    @property
    def effective_scale(self) -> Optional[str]:
        return (self.scale or "lr") if self.coupling == "decoupled" else None

    @property
    def effective_l1_at_zero(self) -> Optional[float]:
        return (self.l1_at_zero if self.l1_at_zero is not None else 0.0) if self.norm == "l1" else None

    def neutral(self) -> dict:
        """The rule with every default made explicit (what reports and the reference use)."""
        out = {
            "norm": self.norm, "coupling": self.coupling, "coefficient": self.coefficient,
            "scale": self.effective_scale, "params": list(self.params), "l1_at_zero": self.effective_l1_at_zero,
        }
        if self.via_loss:
            out["via_loss"] = True
        if self.schedule is not None and self.schedule.kind != "constant":   # only when it matters
            out["schedule"] = self.schedule.model_dump()
        return out


class Penalty(Strict):
    """A loss penalty c2*sum(w^2) + c1*sum(|w|), as in d2l's from-scratch code (l2 = lambda/2)."""

    l2: NonNeg = 0.0
    l1: NonNeg = 0.0
    params: list[str] = Field(default_factory=lambda: network.kernels(network.in_scope()))   # the weight matrices

    @model_validator(mode="after")
    def _consistent(self):
        check_tensors("params", self.params)
        return self

    def rules(self, l1_at_zero: float) -> list[DecayRule]:
        """Its gradient as coupled rules: d/dw c2*w^2 = 2*c2*w; d/dw c1*|w| = c1*sign(w)."""
        out = []
        if self.l2:
            out.append(DecayRule(norm="l2", coupling="gradient", coefficient=2.0 * self.l2, params=list(self.params),
                                 via_loss=True))
        if self.l1:
            out.append(DecayRule(norm="l1", coupling="gradient", coefficient=self.l1, params=list(self.params),
                                 l1_at_zero=l1_at_zero, via_loss=True))
        return out


class Clip(Strict):
    """Gradient clipping. kind "global_norm": g <- g * min(1, threshold / (||g|| + eps)), ||g|| over every tensor
    (torch clip_grad_norm_ with eps 1e-6, optax clip_by_global_norm, Keras global_clipnorm); "tensor_norm": the
    same per tensor (Keras clipnorm); "value": each element clipped to [-threshold, threshold] (torch
    clip_grad_value_, optax clip, Keras clipvalue, MXNet clip_gradient). position "loss_gradient": applied to the
    loss's gradient (a loss penalty included) before the optimizer adds its coupled weight decay (torch: clipping
    before step(), weight_decay added inside it); "after_coupled_decay": applied to g + lambda*w (an optax chain
    with clip after add_decayed_weights)."""

    kind: Literal["global_norm", "tensor_norm", "value"]
    threshold: Positive
    eps: NonNeg = 0.0
    position: Literal["loss_gradient", "after_coupled_decay"] = "loss_gradient"

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "value" and self.eps:
            raise fail("eps", self.eps, "belongs to norm clipping only")
        return self


class Semantics(Strict):
    """What a run does, in neutral terms: the output of describe(), the input of the reference."""

    optimizer: OptimizerSpec
    decay: list[DecayRule] = Field(default_factory=list)
    loss: Loss = "half_mse"
    schedule: Schedule = ConstantSchedule()
    # The precision in which the framework hands scalar hyperparameters to its update (MXNet's C++
    # kernels take C floats even for float64 weights): each step's lr, lambda, momentum, betas, eps.
    hyper_dtype: Literal["float64", "float32"] = "float64"
    # Tensors that are never updated: no gradient step, no decay; each stays bit-identical to its start
    # (torch: a tensor that no param group names; torch/optim/sgd.py:87,118 and adam.py:150,229 step only the
    # groups' params).
    frozen: list[str] = Field(default_factory=list)
    clip: Optional[Clip] = None

    @model_validator(mode="after")
    def _frozen(self):
        if self.frozen:
            check_tensors("frozen", self.frozen)
            if set(self.frozen) >= set(network.in_scope()):
                raise fail("frozen", self.frozen, "must leave at least one tensor to train")
            for i, rule in enumerate(self.decay):
                hit = [name for name in rule.params if name in self.frozen]
                if hit:
                    raise fail("frozen", self.frozen, f"names {hit}, which decay[{i}].params decays too: a frozen "
                               "tensor is never updated, so that decay would do nothing (drop it from the rule)")
        return self

    @model_validator(mode="after")
    def _lamb_decay(self):
        if self.optimizer.name == "lamb":
            for i, rule in enumerate(self.decay):
                if rule.coupling == "decoupled" and rule.effective_scale != "lr":
                    raise fail(f"decay[{i}].scale", rule.scale, "must be \"lr\" with LAMB (the trust ratio scales "
                               "the step -lr_t*r*u; a decoupled term of another scale has no place in it)")
        return self

    def neutral(self) -> dict:
        rules = [rule.neutral() for rule in self.decay]
        if self.hyper_dtype == "float64" and self.clip is None:  # where a term comes from makes no difference then
            for rule in rules:
                rule.pop("via_loss", None)
        optimizer = self.optimizer.model_dump()
        for key in ("bias_correction_dtype", "amsgrad"):   # only when they matter
            if optimizer.get(key, "") is None:
                del optimizer[key]
        out = {
            "optimizer": optimizer,
            "decay": rules,
            "loss": self.loss,
            "schedule": self.schedule.model_dump(),
        }
        if self.hyper_dtype != "float64":  # only when it matters, so existing outputs keep their shape
            out["hyper_dtype"] = self.hyper_dtype
        if self.frozen:                    # likewise
            out["frozen"] = list(self.frozen)
        if self.clip is not None:          # likewise
            out["clip"] = self.clip.model_dump()
        return out


def semantics_from_dict(data: dict) -> Semantics:
    """Rebuild Semantics from its `neutral()` dict (e.g. after a JSON round trip)."""
    return Semantics.model_validate(
        {**data, "decay": [{k: v for k, v in r.items() if v is not None} for r in data.get("decay", [])]})
