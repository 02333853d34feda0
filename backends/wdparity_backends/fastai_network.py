"""The fastai run on a network (issue 19): torch's MLP (torch_network.py), its parameters by torch's own names,
the splitter's groups written as those names or as module paths, and the parameters a Learner excludes from wd.

A fastai splitter returns lists of parameters, e.g. `lambda m: [params(m.net[0]), params(m.net[1:])]`
(fastai/torch_core.py:675-677); a group here lists `named_parameters()` names (`net.0.weight`) or module paths
(`net.0`: every parameter of that module, in order), each matched exactly. The linear model is bare nn.Linear:
its names `weight` and `bias` are the neutral ones. Pure: torch is imported by the worker only.
"""

from __future__ import annotations

from wdparity.spec.models import fail
from wdparity.spec.network import LINEAR, kernels

from .torch_network import native_names


def native_table(tensors: tuple[str, ...]) -> dict[str, str]:
    """torch's parameter name -> the neutral name, in layout order, for the model whose neutral tensors are these."""
    if tuple(tensors) == LINEAR:
        return {name: name for name in LINEAR}
    hidden = sorted({int(t.split(".")[0][len("dense_"):]) for t in tensors if t.startswith("dense_")})
    model = {"hidden": [0] * len(hidden), "norm": "layer" if any(t.startswith("norm_") for t in tensors) else "none"}
    return native_names(model, 0)


def modules(table: dict[str, str]) -> dict[str, list[str]]:
    """Module path -> its parameters' torch names (every dotted prefix of a parameter name that holds one)."""
    out: dict[str, list[str]] = {}
    for name in table:
        parts = name.split(".")
        for k in range(1, len(parts)):
            out.setdefault(".".join(parts[:k]), []).append(name)
    return out


def learner_excludes(tensors: tuple[str, ...]) -> list[str]:
    """What Learner(wd_bn_bias=False) sets do_wd = False on: norm_bias_params(model, with_bias=True), every
    parameter of a norm_types module (nn.LayerNorm among them) and every module's `bias` (fastai/torch_core.py:
    685-693, learner.py:198-199): in neutral terms every tensor but the Linear layers' weight matrices."""
    weights = kernels(tensors)
    return [t for t in tensors if t not in weights]


def resolve_group(key: str, entries: list, tensors: tuple[str, ...]) -> list[str]:
    """A parameter group's entries (parameter names or module paths, exact) -> its neutral tensors, in order; an
    entry matching nothing, or a parameter named twice, is an error listing what exists."""
    table = native_table(tensors)
    mods = modules(table)
    if not entries:
        raise fail(key, entries, f"must name at least one parameter of {list(table)}")
    out: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or (entry not in table and entry not in mods):
            have = f"parameters {list(table)}" + (f" or modules {list(mods)}" if mods else "")
            hint = ""
            if isinstance(entry, str) and entry in table.values() and entry not in table:
                native = next(n for n, v in table.items() if v == entry)
                hint = f" (the neutral name {entry!r} is torch's {native!r})"
            raise fail(key, entries, f"must name torch's {have} (\"{entry}\" matches none{hint})")
        for native in mods.get(entry, [entry]):
            if table[native] in out:
                raise fail(key, entries, f"names the parameter {native!r} twice")
            out.append(table[native])
    return out


def compress(group: list[str], tensors: tuple[str, ...]) -> list[str]:
    """A group's neutral tensors as torch names, a module path wherever the group holds all of its parameters."""
    table = native_table(tensors)
    back = {v: k for k, v in table.items()}
    natives = [back[t] for t in tensors if t in group]
    out: list[str] = []
    whole = {m: ps for m, ps in modules(table).items() if m.count(".") == 1 and set(ps) <= set(natives)}
    for native in natives:
        module = native.rsplit(".", 1)[0]
        if module in whole:
            if module not in out:
                out.append(module)
        else:
            out.append(native)
    return out
