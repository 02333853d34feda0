"""The task's network as a Paddle user writes it (PaddlePaddle 3.3.1, dygraph), and its parameters' names.

    with paddle.utils.unique_name.guard():
        net = nn.Sequential(nn.Linear(d, 5), nn.LayerNorm(5, epsilon=...), nn.Tanh(), ..., nn.Linear(4, 1))

Paddle names a layer from a process-wide counter of its class (nn/layer/layers.py:458) and each parameter
after its layer (base/layer_helper_base.py:389): linear_0.w_0, linear_0.b_0, layer_norm_0.w_0 (the scale),
layer_norm_0.b_0, linear_1.w_0, ... The counters keep counting across models (a second MLP in the same process
starts at linear_3), so the worker builds inside a fresh unique_name.guard(): the K-th Linear is linear_K and
the K-th LayerNorm layer_norm_K, the names apply_decay_param_fun receives and a case writes. NATIVE maps them
to the neutral names of spec/network.py; `named_parameters()` gives the Sequential's own names (0.weight, ...,
STRUCTURED). nn.Linear stores its weight (in, out), the neutral shape (nn/layer/common.py:219-224). The
activation and LayerNorm's epsilon are set explicitly (nn.GELU(approximate=False) is the erf form, Paddle's
default; approximate=True the tanh form). Pure apart from network() and read(), which get paddle handed in.
"""

from __future__ import annotations

import re

import numpy as np

LINEAR_NAMES = {"linear_0.w_0": "weight", "linear_0.b_0": "bias"}   # the linear model's one nn.Linear
NATIVE = re.compile(r"(linear|layer_norm)_(0|[1-9][0-9]*)\.(w|b)_0")
LAYER = re.compile(r"(linear|layer_norm)_(0|[1-9][0-9]*)")
ATTR = {"w": "weight_attr", "b": "bias_attr"}
LN_EPS_MAX = 0.001   # layer_norm's infermeta: 0 <= epsilon <= 0.001f (paddle/phi/infermeta/ternary.cc:1496)


def native_names(tensors: tuple[str, ...]) -> dict[str, str]:
    """Paddle's parameter `.name` -> the neutral name, in layout order, for the model whose tensors these are."""
    if tuple(tensors) == ("weight", "bias"):
        return dict(LINEAR_NAMES)
    hidden = sum(1 for t in tensors if t.startswith("dense_") and t.endswith(".weight"))
    out = {}
    for t in tensors:
        layer, part = t.split(".")
        kind, _, k = layer.partition("_")
        native = {"dense": f"linear_{k}", "norm": f"layer_norm_{k}", "out": f"linear_{hidden}"}[kind]
        out[f"{native}.{'w' if part in ('weight', 'scale') else 'b'}_0"] = t
    return out


def neutral_names(tensors: tuple[str, ...]) -> dict[str, str]:
    return {v: k for k, v in native_names(tensors).items()}


def layers(tensors: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Layer name -> {"weight_attr": neutral, "bias_attr": neutral}: which tensor each ParamAttr keyword makes."""
    out: dict[str, dict[str, str]] = {}
    for native, neutral in native_names(tensors).items():
        layer, part = native.split(".")
        out.setdefault(layer, {})[ATTR[part[0]]] = neutral
    return out


def structured_names(tensors: tuple[str, ...]) -> dict[str, str]:
    """`named_parameters()` of the Sequential network() builds -> the neutral name (Linear, [LayerNorm], activation
    per hidden layer, then the output Linear)."""
    out, index = {}, 0
    for t in tensors:
        layer, part = t.split(".")
        if part in ("bias", "offset"):
            out[f"{index}.bias"] = t
            index += 1
            if layer.startswith("dense_") and f"norm_{layer[6:]}.scale" not in tensors:
                index += 1   # the activation follows the Linear directly
            elif layer.startswith("norm_"):
                index += 1
        else:
            out[f"{index}.weight"] = t
    return out


def check_attr_keys(key: str, value: dict, tensors: tuple[str, ...]) -> None:
    """A weight_attr/bias_attr table keyed by layer: every key a layer of this network (a bias_attr on a layer)."""
    known = layers(tensors)
    for layer in value:
        if layer not in known:
            raise ValueError(f"names the layer {layer!r}: the layers of this network are {list(known)} (a fresh "
                             "paddle.utils.unique_name.guard(), the K-th nn.Linear is linear_K, the K-th "
                             "nn.LayerNorm layer_norm_K)")


def tensor_attrs(weight_attr, bias_attr, tensors: tuple[str, ...]) -> dict[str, object]:
    """Neutral name -> its ParamAttr, from the run's weight_attr/bias_attr (one each for the linear model, tables
    keyed by layer for a network)."""
    if tuple(tensors) == ("weight", "bias"):
        return {n: a for n, a in (("weight", weight_attr), ("bias", bias_attr)) if a is not None}
    known, out = layers(tensors), {}
    for key, table in (("weight_attr", weight_attr), ("bias_attr", bias_attr)):
        for layer, attr in (table or {}).items():
            out[known[layer][key]] = attr
    return {t: out[t] for t in tensors if t in out}


def attr_tables(per: dict[str, dict], tensors: tuple[str, ...]) -> dict[str, object]:
    """realize()'s ParamAttr tables by neutral name -> the run's weight_attr/bias_attr keys (by layer for a
    network)."""
    if tuple(tensors) == ("weight", "bias"):
        return {f"{n}_attr": a for n, a in per.items()}
    out: dict[str, dict] = {}
    for native, neutral in native_names(tensors).items():
        if neutral in per:
            layer, part = native.split(".")
            out.setdefault(ATTR[part[0]], {})[layer] = per[neutral]
    return {k: out[k] for k in ("weight_attr", "bias_attr") if k in out}


def activation(nn, kind: str):
    if kind == "tanh":
        return nn.Tanh()
    if kind == "relu":
        return nn.ReLU()
    return nn.GELU(approximate=kind == "gelu_tanh")   # False: erf, True: tanh (nn/layer/activation.py:250-256)


def network(paddle, data: dict, dtype: str, model: dict, tensors: tuple[str, ...], attrs: dict):
    """(Sequential, {neutral name: parameter}) built in a fresh name guard, each layer's weight_attr/bias_attr
    from `attrs` ({layer: {"weight_attr": paddle.ParamAttr, ...}}), initial tensors copied in bit-identically."""
    from wdparity.engine import network as net_mod

    nn, d = paddle.nn, int(np.asarray(data["X_train"]).shape[1])
    with paddle.utils.unique_name.guard():
        layers_, fan_in = [], d
        for k, width in enumerate(model["hidden"]):
            layers_.append(nn.Linear(fan_in, width, **attrs.get(f"linear_{k}", {})))
            if model["norm"] == "layer":
                layers_.append(nn.LayerNorm(width, epsilon=float(model["norm_eps"]), **attrs.get(f"layer_norm_{k}", {})))
            layers_.append(activation(nn, model["activation"]))
            fan_in = width
        layers_.append(nn.Linear(fan_in, 1, **attrs.get(f"linear_{len(model['hidden'])}", {})))
        net = nn.Sequential(*layers_)
    names = native_names(tensors)
    params = {p.name: p for p in net.parameters()}
    if list(params) != list(names):
        raise RuntimeError(f"paddle named the network's parameters {list(params)}, expected {list(names)}")
    start = net_mod.start(data)
    for native, neutral in names.items():
        params[native].set_value(np.ascontiguousarray(start[neutral], dtype=dtype))
    return net, {neutral: params[native] for native, neutral in names.items()}


def read(tensors: dict) -> dict[str, np.ndarray]:
    """{neutral name: array in the neutral shape} of the live parameters (nn.Linear's (in, out) is neutral)."""
    return {name: p.numpy().copy() for name, p in tensors.items()}
