"""The task's network as an MLX user writes it, and its parameter paths (MLX 0.32.4).

    model = nn.Sequential(nn.Linear(d, 32), nn.LayerNorm(32, eps=...), nn.Tanh(), ..., nn.Linear(16, 1))

`tree_flatten(model.parameters())` names its tensors `layers.0.weight`, `layers.0.bias`, `layers.1.weight` (a
LayerNorm's scale), `layers.1.bias` (its offset), ... (`paths()` maps them to spec/network.py's neutral names);
the linear model is one nn.Linear, paths `weight` and `bias`. nn.Linear stores (out, in): the neutral (in, out)
is its transpose. LayerNorm's eps and GELU's approx are always set explicitly. A MultiOptimizer filter takes a
path by `params` (path in the list), `endswith` (path.endswith(suffix)) or `ndim` (array.ndim == n). Pure apart
from `network()`/`read()`, which import MLX (inside the worker).
"""

from __future__ import annotations

import numpy as np

from wdparity.spec.network import in_scope

GELU_APPROX = {"gelu": "none", "gelu_tanh": "precise"}   # nn.GELU(approx=...): erf form, tanh approximation
FILTERS = ("params", "endswith", "ndim")


def paths(tensors: tuple[str, ...] | None = None) -> dict[str, str]:
    """MLX's path -> the neutral name, in layout order, for the tensors in scope (the model's structure follows
    from its neutral names: a Linear per dense_K, a LayerNorm after it where norm_K is there, an activation)."""
    tensors = tuple(in_scope() if tensors is None else tensors)
    if "out.weight" not in tensors:   # the linear model: one nn.Linear
        return {t: t for t in tensors}
    out, index, k = {}, 0, 0
    while f"dense_{k}.weight" in tensors:
        out[f"layers.{index}.weight"], out[f"layers.{index}.bias"] = f"dense_{k}.weight", f"dense_{k}.bias"
        index += 1
        if f"norm_{k}.scale" in tensors:
            out[f"layers.{index}.weight"], out[f"layers.{index}.bias"] = f"norm_{k}.scale", f"norm_{k}.offset"
            index += 1
        index += 1   # the activation has no parameters
        k += 1
    out[f"layers.{index}.weight"], out[f"layers.{index}.bias"] = "out.weight", "out.bias"
    return out


def native(neutral: list[str]) -> list[str]:
    """The MLX paths of neutral names (in layout order)."""
    back = {v: k for k, v in paths().items()}
    return [back[t] for t in neutral]


def ndims(table: dict[str, str]) -> dict[str, int]:
    """Each path's array.ndim: nn.Linear's weight is 2-D (the linear model's (1, d) too), the rest 1-D."""
    return {p: 2 if n == "weight" or n.endswith(".weight") else 1 for p, n in table.items()}


def takes(sub, path: str, ndim: int) -> bool:
    """The filter of a MultiOptimizer sub-run: (path, array) -> bool, as data."""
    if sub.params is not None:
        return path in sub.params
    if sub.endswith is not None:
        return path.endswith(sub.endswith)
    return ndim == sub.ndim


MERGE_BUG = ("MLX 0.32.4's MultiOptimizer raises ValueError (\"Trees contain elements at the same locations but no "
             "merge function was provided\") at the first update: apply_gradients tree_merges the sub-optimizers' "
             "updates (mlx/optimizers/optimizers.py:203-207), and tree_merge pairs zip_longest's None with the "
             "empty {} of a layer without parameters in the longer `layers` list and raises (mlx/utils.py:309-345)")


def merge_fails(parts: list[list[str]]) -> str | None:
    """Where MultiOptimizer's tree_merge of its parts' updates raises (each part the paths of one sub-optimizer,
    in order; a Sequential's update is {"layers": [...]}, a layer with none of the part's paths an empty {}),
    or None: merging a list with a shorter one fails where the longer has an empty slot beyond the shorter's end."""
    acc = None   # per index: True (has parameters), False (empty {}); None: no `layers` list yet
    for i, part in enumerate(parts):
        index = {int(p.split(".")[1]) for p in part if p.startswith("layers.")}
        if not index:
            continue   # an empty part's update is {}, which merges as nothing
        mine = [j in index for j in range(max(index) + 1)]
        if acc is not None:
            for j in range(max(len(acc), len(mine))):
                a, b = (acc[j] if j < len(acc) else None), (mine[j] if j < len(mine) else None)
                if (a is None and b is False) or (a is False and b is None):
                    return (f"optimizers[{i}] updates layers up to {len(mine) - 1}, the ones before it up to "
                            f"{len(acc) - 1}, and layers.{j} has no parameter in the longer")
            acc = [bool((acc[j] if j < len(acc) else False) or (mine[j] if j < len(mine) else False))
                   for j in range(max(len(acc), len(mine)))]
        else:
            acc = mine
    return None


def activation(nn, kind: str):
    if kind == "tanh":
        return nn.Tanh()
    if kind == "relu":
        return nn.ReLU()
    return nn.GELU(approx=GELU_APPROX[kind])


def network(mx, nn, data: dict, dtype, model: dict):
    """The Sequential with the task's initial tensors copied in bit-identically, and its path table."""
    from mlx.utils import tree_flatten, tree_unflatten

    from wdparity.engine import network as net_mod

    d = np.asarray(data["X_train"]).shape[1]
    layers, fan_in = [], d
    for width in model["hidden"]:
        layers.append(nn.Linear(fan_in, width))
        if model["norm"] == "layer":
            layers.append(nn.LayerNorm(width, eps=float(model["norm_eps"])))
        layers.append(activation(nn, model["activation"]))
        fan_in = width
    layers.append(nn.Linear(fan_in, 1))
    seq = nn.Sequential(*layers)
    seq.set_dtype(dtype)
    start = net_mod.start(data)
    table = paths(tuple(start))
    have = [k for k, _ in tree_flatten(seq.parameters())]
    if have != list(table):
        raise RuntimeError(f"MLX names the Sequential's parameters {have}, not {list(table)}")
    values = []
    for path, neutral in table.items():
        value = np.asarray(start[neutral])
        value = value.T if value.ndim == 2 else value   # (in, out) -> nn.Linear's (out, in)
        values.append((path, mx.array(np.ascontiguousarray(value), dtype=dtype)))
    seq.update(tree_unflatten(values))
    return seq, table


def read(model, table: dict[str, str], dtype) -> dict[str, np.ndarray]:
    """{neutral name: array in the neutral shape} of the live parameters."""
    from mlx.utils import tree_flatten

    out = {}
    for path, p in tree_flatten(model.parameters()):
        if p.dtype != dtype:
            raise RuntimeError(f"MLX trained {path} in {p.dtype}, not {dtype}")
        value = np.array(p)
        out[table[path]] = value.T.copy() if value.ndim == 2 else value
    return out
