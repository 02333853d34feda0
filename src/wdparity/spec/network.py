"""The task's model: the linear regressor of seed 002, or a multi-layer perceptron, and its tensors' names.

One naming convention for every backend (issue 19): the linear model keeps its two tensors `weight` (d,)
and `bias` (a scalar); a network with hidden layers names its tensors

    dense_K.weight (fan_in, fan_out), dense_K.bias (fan_out,)      hidden layer K = 0, 1, ...
    norm_K.scale (fan_out,), norm_K.offset (fan_out,)              LayerNorm after hidden layer K
    out.weight (fan_in, 1), out.bias (1,)                          the output layer

in that order (the layout). Weights are stored (fan_in, fan_out), so a layer is h @ W + b; an adapter
transposes where its framework stores (fan_out, fan_in) (torch, MXNet, MLX). Masks, groups and `params`
lists name these tensors; the tensors in scope while a run is described are the task's (`tensor_scope`),
so a list that names a tensor the model lacks is an error naming those it has. Pure data: no arrays here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from wdparity.spec.base import Positive, Strict, fail
from wdparity.spec.scope import LINEAR, NAME, in_scope, scoped, tensor_scope, unknown  # noqa: F401

ACTIVATIONS = ("tanh", "relu", "gelu", "gelu_tanh")
MAX_WIDTH = 1_000_000


class Model(Strict):
    """`[task] model = { hidden = [32, 16], activation = "tanh", norm = "layer" }`; the default (no hidden
    layer) is the linear model y = Xw + b, so every case without `model` is unchanged.

    activation: "tanh"; "relu" (d/du = 0 at u = 0, as every framework's autodiff); "gelu" the exact
    u * Phi(u) (erf); "gelu_tanh" the tanh approximation 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))).
    norm "layer": LayerNorm over each hidden layer's features, (z - mean) / sqrt(var + norm_eps) * scale
    + offset, var biased (divided by the width), before the activation. norm_eps is the task's: every
    adapter sets it explicitly (the frameworks' defaults differ: torch 1e-5, Keras 1e-3, Flax 1e-6)."""

    hidden: list[int] = Field(default_factory=list)
    activation: Literal["tanh", "relu", "gelu", "gelu_tanh"] = "tanh"
    norm: Literal["none", "layer"] = "none"
    norm_eps: Positive = 1e-5

    @model_validator(mode="after")
    def _consistent(self):
        for i, width in enumerate(self.hidden):
            if not 1 <= width <= MAX_WIDTH:
                raise fail(f"hidden[{i}]", width, f"must be a layer width in [1, {MAX_WIDTH}]")
        if not self.hidden and self.norm != "none":
            raise fail("norm", self.norm, "needs hidden layers (the linear model has nothing to normalize); "
                       "set `hidden`, e.g. hidden = [32]")
        return self

    @property
    def linear(self) -> bool:
        return not self.hidden


def layout(model: Model, num_inputs: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, neutral shape) of every tensor, in the one order reports, recordings and masks use."""
    if model.linear:
        return [("weight", (num_inputs,)), ("bias", ())]
    out, fan_in = [], num_inputs
    for k, width in enumerate(model.hidden):
        out += [(f"dense_{k}.weight", (fan_in, width)), (f"dense_{k}.bias", (width,))]
        if model.norm == "layer":
            out += [(f"norm_{k}.scale", (width,)), (f"norm_{k}.offset", (width,))]
        fan_in = width
    return out + [("out.weight", (fan_in, 1)), ("out.bias", (1,))]


def names(model: Model, num_inputs: int) -> tuple[str, ...]:
    return tuple(name for name, _ in layout(model, num_inputs))


def parameter_count(model: Model, num_inputs: int) -> int:
    total = 0
    for _, shape in layout(model, num_inputs):
        size = 1
        for n in shape:
            size *= n
        total += size
    return total


def kernels(tensors: tuple[str, ...]) -> list[str]:
    """The tensors a `weight` means in a network: every layer's weight matrix (d2l's penalty, `params` defaults)."""
    return [t for t in tensors if t == "weight" or t.endswith(".weight")]


def ndim(model: Model, num_inputs: int) -> dict[str, int]:
    """Each tensor's number of dimensions as the frameworks store it (timm's rule and optax masks by ndim read it):
    a bias, a LayerNorm scale and offset are 1-D; the linear model's weight is (1, d) in every framework, 2-D."""
    if model.linear:
        return {"weight": 2, "bias": 1}
    return {name: max(1, len(shape)) for name, shape in layout(model, num_inputs)}
