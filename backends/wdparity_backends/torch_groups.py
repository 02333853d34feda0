"""torch's own parameter names for the task's model, and the param-group builders torch users run on them.

A torch user names a tensor by `model.named_parameters()`: `weight` and `bias` for the linear model's
nn.Linear, `net.0.weight`, `net.1.bias`, ... for the network torch_network.py builds. Param groups and
the builders below match those names exactly as their libraries do:

    hf_trainer_groups   transformers' Trainer.get_decay_parameter_names (5.24.0, trainer.py:1408-1418):
                        no decay for LayerNorm modules' tensors and names where re.search finds one of
                        HF_FORBIDDEN in the lowercased name (trainer_pt_utils.py:1348-1369)
    timm_groups         timm's param_groups_weight_decay (1.0.31, optim/_param_groups.py:19-75): no decay
                        where ndim <= 1, the name ends with ".bias", or fnmatch matches no_weight_decay_list
    no_decay            the HF examples' `any(nd in n for nd in no_decay)` substring list

Pure (no torch): the names and ndims follow from the neutral tensors in scope (spec/scope.py).
"""

from __future__ import annotations

import fnmatch
import re

from wdparity.spec.models import check_tensors, fail
from wdparity.spec.network import LINEAR, in_scope

from .torch_network import native_names

HF_FORBIDDEN = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


def is_network() -> bool:
    return tuple(in_scope()) != LINEAR


def names() -> dict[str, str]:
    """named_parameters() name -> neutral name, in torch's order (= the layout), for the model in scope."""
    tensors = tuple(in_scope())
    if tensors == LINEAR:
        return {"weight": "weight", "bias": "bias"}
    layers = sorted({int(t.split(".")[0].split("_")[1]) for t in tensors if t.startswith("dense_")})
    model = {"hidden": layers, "norm": "layer" if any(t.startswith("norm_") for t in tensors) else "none"}
    return native_names(model, 0)


def ndim(neutral: str) -> int:
    """The torch tensor's ndim: nn.Linear's weight is (out, in), 2-D (the linear model's too: (1, d)); the rest 1-D."""
    return 2 if neutral == "weight" or (neutral.endswith(".weight") and not neutral.startswith("norm_")) else 1


def check(key: str, params: list[str]) -> None:
    """A param group's `params`: torch's names of the model in scope (the linear model: `weight`, `bias`)."""
    if not is_network():
        check_tensors(key, params)
        return
    have = list(names())
    if not params:
        raise fail(key, params, f"must name at least one parameter of model.named_parameters(): {have}")
    for name in params:
        if name not in have:
            raise fail(key, params, f"must name parameters as model.named_parameters() gives them: {have} "
                       f"(\"{name}\" names no parameter; the neutral names are not torch's)")
    if len(set(params)) != len(params):
        raise fail(key, params, "must not name a parameter twice")


def hf_trainer() -> tuple[list[str], list[str]]:
    """(decay, no decay) as Trainer.create_optimizer groups them (trainer.py:1272-1286)."""
    forbidden = [re.compile(p) for p in HF_FORBIDDEN]
    decay, rest = [], []
    for native, neutral in names().items():
        in_layernorm = neutral.startswith("norm_")   # isinstance(child, nn.LayerNorm): trainer_pt_utils.py:1361
        hit = any(p.search(native.lower()) for p in forbidden)
        (rest if in_layernorm or hit else decay).append(native)
    return decay, rest


def timm(patterns: list[str]) -> tuple[list[str], list[str]]:
    """(no decay, decay) as param_groups_weight_decay groups them (no-decay group first, _param_groups.py:64-67)."""
    have = names()
    for pattern in patterns:
        if not any(fnmatch.fnmatch(n, pattern) for n in have):
            raise fail("no_weight_decay_list", patterns, f"has {pattern!r}, which matches no parameter (timm matches "
                       f"fnmatch patterns on model.named_parameters(): {list(have)})")
    off, on = [], []
    for native, neutral in have.items():
        excluded = ndim(neutral) <= 1 or native.endswith(".bias")
        (off if excluded or any(fnmatch.fnmatch(native, p) for p in patterns) else on).append(native)
    return off, on


def no_decay(substrings: list[str]) -> tuple[list[str], list[str]]:
    """(decay, no decay) of the HF examples' list: a parameter is undecayed when any entry is a substring of its name."""
    have = list(names())
    if not substrings:
        raise fail("no_decay", substrings, "must hold at least one substring")
    for nd in substrings:
        if not any(nd in n for n in have):
            raise fail("no_decay", substrings, f"has {nd!r}, which is in no parameter's name, so it excludes nothing "
                       f"(`any(nd in n for nd in no_decay)` over model.named_parameters(): {have})")
    decay = [n for n in have if not any(nd in n for nd in substrings)]
    return decay, [n for n in have if n not in decay]
