"""paddle.optimizer's class names, keywords and defaults (PaddlePaddle 3.3.1), the regularizer and clip tables a case
file writes, and the run's validation. Read from the installed signatures (tests/test_paddle_facts.py compares them);
the sources of every statement: docs/adapters/paddle.md.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import NonNeg, Positive, Strict, Unit, fail
from wdparity.spec.network import in_scope, scoped

from .paddle_network import LAYER, LINEAR_NAMES, NATIVE, check_attr_keys, native_names, structured_names, tensor_attrs

# One row per class: the constructor's numeric defaults (None: learning_rate has no default, it must be given)
DEFAULTS = {
    "SGD": {"learning_rate": 1e-3},
    "Momentum": {"learning_rate": 1e-3, "momentum": 0.9},
    "Adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "AdamW": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.01},
    "RMSProp": {"learning_rate": None, "rho": 0.95, "epsilon": 1e-6, "momentum": 0.0},
    "Adagrad": {"learning_rate": None, "epsilon": 1e-6, "initial_accumulator_value": 0.0},
    "Adadelta": {"learning_rate": 1e-3, "epsilon": 1e-6, "rho": 0.95},
    "Adamax": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "NAdam": {"learning_rate": 2e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "momentum_decay": 4e-3},
    "RAdam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "Lamb": {"learning_rate": 1e-3, "lamb_weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-6},
}
# Each class's keywords besides `parameters` and `name` (the installed signatures, in order)
KEYWORDS = {
    "SGD": ("learning_rate", "weight_decay", "grad_clip", "multi_precision"),
    "Momentum": ("learning_rate", "momentum", "use_nesterov", "weight_decay", "grad_clip", "multi_precision",
                 "rescale_grad", "use_multi_tensor"),
    "Adam": ("learning_rate", "beta1", "beta2", "epsilon", "weight_decay", "grad_clip", "lazy_mode", "multi_precision",
             "use_multi_tensor", "amsgrad"),
    "AdamW": ("learning_rate", "beta1", "beta2", "epsilon", "weight_decay", "use_lowprecision_moment", "lr_ratio",
              "apply_decay_param_fun", "grad_clip", "lazy_mode", "multi_precision", "amsgrad"),
    "RMSProp": ("learning_rate", "rho", "epsilon", "momentum", "centered", "weight_decay", "grad_clip"),
    "Adagrad": ("learning_rate", "epsilon", "weight_decay", "grad_clip", "initial_accumulator_value"),
    "Adadelta": ("learning_rate", "epsilon", "rho", "weight_decay", "grad_clip"),
    "Adamax": ("learning_rate", "beta1", "beta2", "epsilon", "weight_decay", "grad_clip"),
    "NAdam": ("learning_rate", "beta1", "beta2", "epsilon", "momentum_decay", "weight_decay", "grad_clip"),
    "RAdam": ("learning_rate", "beta1", "beta2", "epsilon", "weight_decay", "grad_clip"),
    "Lamb": ("learning_rate", "lamb_weight_decay", "beta1", "beta2", "epsilon", "grad_clip",
             "exclude_from_weight_decay_fn", "multi_precision", "always_adapt"),
}
MUST_BE_OFF = {
    "multi_precision": "master weights are kept for float16/bfloat16 parameters only (optimizer.py:1168), which this "
                       "adapter does not train",
    "lazy_mode": "lazy_mode updates only the rows of a sparse (SelectedRows) gradient (adam.py), not modelled here",
    "use_multi_tensor": "the fused multi-tensor path is not modelled by this adapter",
    "use_lowprecision_moment": "float16 moments are not modelled by this adapter",
}
# nn.Linear's parameters as Paddle names them in a fresh program (paddle.utils.unique_name.guard()): the names
# apply_decay_param_fun and exclude_from_weight_decay_fn receive (a network's: paddle_network.native_names)
PADDLE_NAMES = LINEAR_NAMES
NEUTRAL_NAMES = {v: k for k, v in PADDLE_NAMES.items()}


class Regularizer(Strict):
    """paddle.regularizer.L2Decay(coeff) (gradient term coeff*w) or L1Decay(coeff) (coeff*sign(w)): one of the two."""

    L2Decay: Optional[NonNeg] = None
    L1Decay: Optional[NonNeg] = None

    @model_validator(mode="after")
    def _one(self):
        if (self.L2Decay is None) == (self.L1Decay is None):
            raise fail("L2Decay", self.L2Decay, "write exactly one of L2Decay = c or L1Decay = c")
        return self

    @property
    def norm(self) -> str:
        return "l2" if self.L2Decay is not None else "l1"

    @property
    def coeff(self) -> float:
        return self.L2Decay if self.L2Decay is not None else self.L1Decay


class ParamAttr(Strict):
    """paddle.ParamAttr(regularizer=..., trainable=...) of one nn.Linear parameter (weight_attr / bias_attr);
    trainable = false makes it stop_gradient = True (framework.py:7903-7905), never updated."""

    regularizer: Optional[Regularizer] = None
    trainable: bool = True   # ParamAttr's default (param_attr.py:99)


class GradClip(Strict):
    """grad_clip = paddle.nn.ClipGradByGlobalNorm(clip_norm) | ClipGradByNorm(clip_norm) | ClipGradByValue(max)."""

    ClipGradByGlobalNorm: Optional[Positive] = None
    ClipGradByNorm: Optional[Positive] = None
    ClipGradByValue: Optional[Positive] = None

    @model_validator(mode="after")
    def _one(self):
        if sum(v is not None for v in (self.ClipGradByGlobalNorm, self.ClipGradByNorm, self.ClipGradByValue)) != 1:
            raise fail("grad_clip", self.model_dump(exclude_none=True), "write exactly one of ClipGradByGlobalNorm, "
                       "ClipGradByNorm, ClipGradByValue")
        return self

    @property
    def kind(self) -> tuple[str, float]:
        for key in ("ClipGradByGlobalNorm", "ClipGradByNorm", "ClipGradByValue"):
            if getattr(self, key) is not None:
                return key, getattr(self, key)
        raise AssertionError


def check_names(key: str, names: Optional[list[str]]) -> None:
    """Each name a parameter `.name` of the model in scope (outside a scope: of Paddle's naming convention)."""
    tensors = in_scope()
    known = native_names(tensors)
    structured = structured_names(tensors) if tensors != ("weight", "bias") else {"weight": 0, "bias": 0}
    for name in names or []:
        if name in known or (not scoped() and NATIVE.fullmatch(name)):
            continue
        why = ""
        if name in structured:
            why = (" (a named_parameters() name: Paddle calls the filter with the parameter's `.name`, adamw.py:"
                   "479-484, so it would match nothing)")
        model = "paddle.nn.Linear" if tensors == ("weight", "bias") else "the network"
        raise fail(key, names, f"names {name!r}{why}: the parameters of {model} here are named {list(known)} (a "
                   "fresh paddle.utils.unique_name.guard())")


def check_attr(key: str, value) -> None:
    """weight_attr/bias_attr: one ParamAttr for the linear model's nn.Linear, a table keyed by layer for a network."""
    if value is None:
        return
    tensors = in_scope()
    linear = tensors == ("weight", "bias") and scoped()
    if isinstance(value, dict) and linear:
        raise fail(key, {k: v.model_dump(exclude_none=True) for k, v in value.items()}, "is one ParamAttr for the "
                   "linear model's one nn.Linear (keyed by layer only for a network)")
    if not isinstance(value, dict) and scoped() and not linear:
        raise fail(key, value.model_dump(exclude_none=True), "must be keyed by layer for a network (each layer's "
                   f"constructor takes its own ParamAttr): e.g. {key} = {{ linear_0 = {{ regularizer = {{ L2Decay = "
                   f"0.1 }} }} }}; the layers are {sorted({n.split('.')[0] for n in native_names(tensors)})}")
    if isinstance(value, dict):
        if scoped():
            try:
                check_attr_keys(key, value, tensors)
            except ValueError as exc:
                raise fail(key, sorted(value), str(exc)) from None
        else:
            for layer in value:
                if not LAYER.fullmatch(layer):
                    raise fail(key, sorted(value), f"names {layer!r}, not a Paddle layer name (linear_K, layer_norm_K)")


class PaddleRun(Strict):
    optimizer: Literal["SGD", "Momentum", "Adam", "AdamW", "RMSProp", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam",
                       "Lamb"]
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    use_nesterov: Optional[bool] = None
    beta1: Optional[Unit] = None
    beta2: Optional[Unit] = None
    epsilon: Optional[Positive] = None
    rho: Optional[Unit] = None
    centered: Optional[bool] = None
    initial_accumulator_value: Optional[NonNeg] = None
    momentum_decay: Optional[Positive] = None
    amsgrad: Optional[bool] = None
    # a float is L2Decay(float) (optimizer.py:269-272); or a table {L2Decay = c} / {L1Decay = c}
    weight_decay: Optional[NonNeg | Regularizer] = None
    # AdamW's filter as data: the Paddle names it returns True for (None: every parameter is decayed)
    apply_decay_param_fun: Optional[list[str]] = None
    lr_ratio: Optional[float] = None
    lamb_weight_decay: Optional[NonNeg] = None
    exclude_from_weight_decay_fn: Optional[list[str]] = None
    always_adapt: Optional[bool] = None
    rescale_grad: Optional[Positive] = None
    multi_precision: Optional[bool] = None
    lazy_mode: Optional[bool] = None
    use_multi_tensor: Optional[bool] = None
    use_lowprecision_moment: Optional[bool] = None
    grad_clip: Optional[GradClip] = None
    # one ParamAttr for the linear model; for a network a table keyed by layer: { linear_0 = {...}, layer_norm_0 = {...} }
    weight_attr: Optional[ParamAttr | dict[str, ParamAttr]] = None
    bias_attr: Optional[ParamAttr | dict[str, ParamAttr]] = None

    @model_validator(mode="after")
    def _consistent(self):
        check_keywords(self, self.optimizer, KEYWORDS, "paddle.optimizer.{optimizer}")
        for key, why in MUST_BE_OFF.items():
            if getattr(self, key):
                raise fail(key, True, f"must be false: {why}")
        if self.lr_ratio is not None:
            raise fail("lr_ratio", self.lr_ratio, "is not modelled: AdamW's lr_ratio(param) scales one tensor's lr "
                       "(the Adam step and the decay, adamw.py), a per-tensor learning rate outside the neutral model")
        if self.rescale_grad is not None and self.rescale_grad != 1.0:
            raise fail("rescale_grad", self.rescale_grad, "must be 1.0 here: Momentum multiplies the gradient by it "
                       "before the momentum op (momentum.py:96), not modelled by this adapter")
        if self.learning_rate is None and DEFAULTS[self.optimizer]["learning_rate"] is None:
            raise fail("learning_rate", None, f"is required: paddle.optimizer.{self.optimizer}'s learning_rate has "
                       "no default")
        if self.use_nesterov and self.optimizer == "Momentum" and self.value("momentum") == 0:
            raise fail("use_nesterov", True, "needs momentum > 0 here (the neutral Nesterov needs a momentum)")
        if self.optimizer == "AdamW" and isinstance(self.weight_decay, Regularizer):
            raise fail("weight_decay", self.weight_decay.model_dump(exclude_none=True), "must be a float for AdamW "
                       "(paddle.optimizer.AdamW takes float | Tensor, its decoupled coefficient)")
        check_names("apply_decay_param_fun", self.apply_decay_param_fun)
        check_names("exclude_from_weight_decay_fn", self.exclude_from_weight_decay_fn)
        check_attr("weight_attr", self.weight_attr)
        check_attr("bias_attr", self.bias_attr)
        if scoped() and set(self.frozen) >= set(in_scope()):
            raise fail("bias_attr", {"trainable": False}, "leaves nothing to train: every parameter is trainable = "
                       "false")
        if not scoped() and len(self.frozen) == 2 and not isinstance(self.weight_attr, dict):
            raise fail("bias_attr", {"trainable": False}, "leaves nothing to train: weight_attr is trainable = false too")
        return self

    def attrs(self) -> dict[str, ParamAttr]:
        """Neutral name -> the ParamAttr its layer was built with (the tensors in scope; tables keyed by layer need
        one: outside it, as in a worker re-reading a run before it builds the network, they map to nothing)."""
        if isinstance(self.weight_attr, dict) or isinstance(self.bias_attr, dict):
            return tensor_attrs(self.weight_attr, self.bias_attr, in_scope()) if scoped() else {}
        return tensor_attrs(self.weight_attr, self.bias_attr, ("weight", "bias"))

    @property
    def frozen(self) -> list[str]:
        """The tensors a ParamAttr(trainable=False) freezes (neutral names, layout order)."""
        return [n for n, a in self.attrs().items() if not a.trainable]

    def value(self, key: str):
        v = getattr(self, key)
        return DEFAULTS[self.optimizer].get(key) if v is None else v

    @property
    def lr(self) -> float:
        return self.value("learning_rate")
