"""The task's network as a Gluon user writes it (MXNet 1.9.1), its parameter names, and `wd_mult` by regex.

    net = nn.HybridSequential(prefix="mlp_")
    with net.name_scope():
        net.add(nn.Dense(5, in_units=6), nn.LayerNorm(epsilon=1e-5, in_channels=5), nn.Activation("tanh"),
                ..., nn.Dense(1, in_units=4))
    net.collect_params(".*_bias|.*_gamma|.*_beta").setattr("wd_mult", 0.0)

Parameter names: `mlp_dense0_weight`, `mlp_dense0_bias`, `mlp_layernorm0_gamma`, `mlp_layernorm0_beta`, ...,
`mlp_dense{H}_weight`/`_bias` for the output layer (H hidden layers). The explicit prefix makes them
deterministic: without it the block is `hybridsequential{N}_`, N counting the blocks made before in the process
(children count inside their parent's name scope, from 0). Dense stores its weight (out, in): the neutral (in,
out) is its transpose. `collect_params(select)` keeps the names `re.compile(select).match(name)` accepts (anchored
at the start only, mxnet/gluon/block.py:404-405). Module level: numpy, stdlib and the wdparity core only; mxnet
is handed in by the worker.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np
from pydantic import field_validator

from wdparity.engine import network as net_mod
from wdparity.spec.base import NonNeg, Strict, fail

PREFIX = "mlp_"
NATIVE_KIND = {"weight": "weight", "bias": "bias", "scale": "gamma", "offset": "beta"}
NEUTRAL_KIND = {v: k for k, v in NATIVE_KIND.items()}
# Activations by neutral name: the Gluon block and what the installed kernel computes (measured, tests).
GELU_FLOAT32 = ("MXNet's gelu (LeakyReLU act_type 'gelu', nn.GELU) computes 0.5*x*(1 + erf(x/sqrt(2))) in C float "
                "(static_cast<float>, src/operator/mshadow_op.h:427-432 at 1.9.1) even for float64 weights: ~1e-7 "
                "relative; nearest: the same run in float32")
NO_GELU_TANH = ("MXNet 1.9.1 has no tanh-approximate GELU: nn.GELU() takes no argument (mxnet/gluon/nn/activations.py:"
                "209-214) and LeakyReLU's act_types (src/operator/leaky_relu-inl.h:60-66) have one 'gelu', the erf form "
                "(mshadow_op.h:427-428); nearest: activation = \"gelu\" (erf), ~4e-4 apart")
EPS_FLOAT32 = ("MXNet's LayerNorm takes eps as a C float (LayerNormParam `float eps`, src/operator/nn/layer_norm-inl.h:51 "
               "at 1.9.1), so in float64 it adds float32(norm_eps) = {f32!r}, not {eps!r} (~1e-12 relative on the "
               "battery's networks); nearest: norm_eps = {f32!r}, which MXNet passes exactly")


def network_refusal(task) -> Optional[tuple[str, str, object]]:
    """(key, why, value) where MXNet 1.9.1 cannot train the task's network as the neutral model computes it."""
    model = task.model
    if model.linear:
        return None
    if model.activation == "gelu_tanh":
        return "task.model.activation", NO_GELU_TANH, model.activation
    if model.activation == "gelu" and task.dtype == "float64":
        return "task.model.activation", GELU_FLOAT32, model.activation
    f32 = float(np.float32(model.norm_eps))
    if model.norm == "layer" and task.dtype == "float64" and f32 != model.norm_eps:
        return "task.model.norm_eps", EPS_FLOAT32.format(f32=f32, eps=model.norm_eps), model.norm_eps
    return None


class CollectParams(Strict):
    """One `net.collect_params(select).setattr(...)` call: [[collect_params]] select = ".*bias", wd_mult = 0.0."""

    select: str
    wd_mult: Optional[NonNeg] = None
    lr_mult: Optional[NonNeg] = None

    @field_validator("select")
    @classmethod
    def _regex(cls, select: str) -> str:
        try:
            re.compile(select)
        except re.error as exc:
            raise fail("", select, f"must be a Python regular expression (collect_params compiles it, "
                       f"mxnet/gluon/block.py:404): {exc}") from None
        return select


def check_entry(i: int, entry: CollectParams, natives: Optional[list[str]]) -> list[str]:
    """The native names entry i selects (block.py:404-405), or a validation error naming what exists (natives
    None: outside a tensor scope, the keys only)."""
    key = f"collect_params[{i}]"
    if entry.wd_mult is None and entry.lr_mult is None:
        raise fail(key, entry.model_dump(exclude_none=True), "must set wd_mult (or lr_mult): setattr of what?")
    if entry.lr_mult not in (None, 1.0):
        raise fail(f"{key}.lr_mult", entry.lr_mult, "is not modelled: the neutral semantics have one learning rate "
                   "for every tensor (lr * lr_mult per Parameter, mxnet/optimizer/optimizer.py:427-452); remove it "
                   "or set 1")
    if natives is None:
        return []
    hit = [name for name in natives if re.match(entry.select, name)]
    if not hit:
        raise fail(f"{key}.select", entry.select, "selects no parameter: collect_params keeps the names that "
                   f"re.match(select, name) accepts, anchored at the start (block.py:404-405); the parameters are "
                   f"{natives}")
    return hit


def natives_of(tensors: tuple[str, ...]) -> dict[str, str]:
    """neutral name -> the Gluon Parameter name, for the tensors of a network (layout order)."""
    hidden = sum(1 for t in tensors if t.startswith("dense_") and t.endswith(".weight"))
    out = {}
    for name in tensors:
        layer, kind = name.split(".")
        if layer == "out":
            block = f"dense{hidden}"
        else:
            family, k = layer.split("_")
            block = f"{'dense' if family == 'dense' else 'layernorm'}{k}"
        out[name] = f"{PREFIX}{block}_{NATIVE_KIND[kind]}"
    return out


def wd_mults(entries: list[CollectParams], tensors: tuple[str, ...]) -> dict[str, float]:
    """Each neutral tensor's wd_mult after the setattr calls in order (every Parameter starts at 1.0)."""
    natives = natives_of(tensors)
    back = {v: k for k, v in natives.items()}
    mult = {name: 1.0 for name in tensors}
    for i, entry in enumerate(entries):
        hit = check_entry(i, entry, list(natives.values()))
        if entry.wd_mult is not None:
            for native in hit:
                mult[back[native]] = entry.wd_mult
    return mult


def select_for(group: list[str], tensors: tuple[str, ...]) -> str:
    """A regex that selects exactly `group`: by kind as users write it (".*_bias|.*_gamma") when the group is
    every tensor of those kinds, else the Parameter names themselves."""
    natives = natives_of(tensors)
    kinds = {}
    for name in tensors:
        kinds.setdefault(NATIVE_KIND[name.split(".")[1]], []).append(name)
    chosen = [kind for kind, names in kinds.items() if set(names) <= set(group)]
    if chosen and {n for kind in chosen for n in kinds[kind]} == set(group):
        return "|".join(f".*_{kind}" for kind in chosen)
    return "|".join(natives[name] for name in group)


def collect_params_table(mult: dict[str, float], tensors: tuple[str, ...]) -> list[dict]:
    """The `collect_params` entries that give each tensor its wd_mult (those at 1.0 are left at the default)."""
    out = []
    for value in dict.fromkeys(m for m in mult.values() if m != 1.0):
        group = [name for name in tensors if mult.get(name, 1.0) == value]
        out.append({"select": select_for(group, tensors), "wd_mult": value})
    return out


# ---- inside the worker (mxnet handed in)
def activation(nn, kind: str):
    if kind in ("tanh", "relu"):
        return nn.Activation(kind)
    if kind == "gelu":
        return nn.GELU()         # LeakyReLU(act_type='gelu'): the erf form, in C float
    raise ValueError(NO_GELU_TANH)


def network(mx, data: dict, dtype: str, entries: list[dict]):
    """(HybridSequential, {neutral name: Parameter}) with the task's initial tensors copied in bit-identically."""
    nn, nd = mx.gluon.nn, mx.nd
    model = net_mod.model_of(data)
    d = int(np.asarray(data["X_train"]).shape[1])
    net = nn.HybridSequential(prefix=PREFIX)
    with net.name_scope():
        fan_in = d
        for width in model["hidden"]:
            net.add(nn.Dense(width, in_units=fan_in))
            if model["norm"] == "layer":
                net.add(nn.LayerNorm(epsilon=float(model["norm_eps"]), in_channels=width))
            net.add(activation(nn, model["activation"]))
            fan_in = width
        net.add(nn.Dense(1, in_units=fan_in))
    net.initialize(ctx=mx.cpu())
    net.cast(dtype)
    tensors = tuple(net_mod.names_of(data))
    params = net.collect_params()
    named = {neutral: params[native] for neutral, native in natives_of(tensors).items()}
    for name, value in net_mod.start(data).items():
        value = value.T if value.ndim == 2 else value       # (in, out) -> Dense's (out, in)
        named[name].set_data(nd.array(np.ascontiguousarray(value), dtype=dtype))
    for entry in entries:
        if entry.get("wd_mult") is not None:
            net.collect_params(entry["select"]).setattr("wd_mult", entry["wd_mult"])
    return net, named


def read(named: dict) -> dict[str, np.ndarray]:
    """{neutral name: array in the neutral shape} of the live parameters."""
    out = {}
    for name, p in named.items():
        value = p.data().asnumpy()
        out[name] = value.T.copy() if value.ndim == 2 else value.copy()
    return out
