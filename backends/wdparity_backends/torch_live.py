"""wdparity.describe() of a live torch.optim optimizer: its defaults and param groups as a torch run table.

The framework is imported inside read_live(), which the adapter's `Backend.read_live` calls in the user's
process: the core never imports it.
Each reader returns (run table, [(key, value, why not read)], notes); tools/live.py turns them into a Description.
"""

from __future__ import annotations

from typing import Any, Optional

from wdparity.run.backend import ONE_LINEAR


def read_live(opt, model, params=None) -> tuple[dict, list[tuple], list[str]]:
    from wdparity_backends.torch_run import KEYWORDS, MUST_BE_FALSE

    name = type(opt).__name__
    if name not in KEYWORDS:
        raise TypeError(f"torch.optim.{name} is not modelled: describe() reads {sorted(KEYWORDS)}")
    skipped: list[tuple] = []
    table: dict[str, Any] = {"backend": "torch", "optimizer": name}
    groups = opt.param_groups
    for key in KEYWORDS[name]:
        values = [g.get(key, opt.defaults.get(key)) for g in groups]
        value = values[0] if key == "weight_decay" else None
        if key != "weight_decay":
            if any(_plain(v) != _plain(values[0]) for v in values):
                skipped.append((f"param_groups[*].{key}", [_plain(v) for v in values],
                                           f"differs between param groups: a per-group {key} is outside the neutral "
                                           "model (only weight_decay is per tensor); .run keeps the first group's"))
            value = values[0]
        value = _plain(value)
        if value is None or (isinstance(value, bool) and not value and key not in ("nesterov", "amsgrad", "centered",
                                                                                   "decoupled_weight_decay")):
            continue
        if key in MUST_BE_FALSE and value is True:
            skipped.append((key, True, MUST_BE_FALSE[key]))
            continue
        table[key] = value
    top_wd = _plain(opt.defaults.get("weight_decay"))
    table["weight_decay"] = top_wd
    for i, g in enumerate(groups):
        implied = {"decoupled_weight_decay"} if name == "AdamW" and g.get("decoupled_weight_decay") else set()
        for key in sorted(set(g) - set(KEYWORDS[name]) - {"params"} - implied):   # AdamW is Adam(decoupled=True)
            skipped.append((f"param_groups[{i}].{key}", _plain(g[key]),
                                       "is not a torch.optim keyword (an lr scheduler's `initial_lr`, a group name): "
                                       "schedulers are not read yet"))
    tensors = _torch_tensors(model, groups)
    if tensors is not None:
        table["param_groups"] = tensors
    return table, skipped, []


def _torch_tensors(model, groups) -> Optional[list[dict]]:
    """param_groups by neutral name; None when one group holds both tensors (the table needs none)."""
    if model is None:
        if len(groups) == 1:
            return None
        raise ValueError("this optimizer has several param groups: pass model= (the nn.Module) so that describe() "
                         "can name each group's tensors")
    named = list(model.named_parameters())
    neutral = {}
    for pname, p in named:
        leaf = pname.rsplit(".", 1)[-1]
        shape_ok = (p.ndim == 2 and p.shape[0] == 1) if leaf == "weight" else tuple(p.shape) == (1,)
        if leaf not in ("weight", "bias") or leaf in neutral.values() or not shape_ok:
            raise ValueError(f"model parameter {pname!r}: {ONE_LINEAR}")
        neutral[id(p)] = leaf
    if len(neutral) != 2:
        raise ValueError(f"model has {len(neutral)} parameters: {ONE_LINEAR}")
    out = []
    for i, g in enumerate(groups):
        names = []
        for p in g["params"]:
            if id(p) not in neutral:
                raise ValueError(f"param_groups[{i}] holds a tensor that is not a parameter of `model`")
            names.append(neutral[id(p)])
        entry: dict[str, Any] = {"params": names}
        if _plain(g.get("weight_decay")) != _plain(groups[0].get("weight_decay")) or len(groups) > 1:
            entry["weight_decay"] = _plain(g["weight_decay"])
        out.append(entry)
    if len(out) == 1 and sorted(out[0]["params"]) == ["bias", "weight"]:
        return None
    return out   # a tensor in no group is frozen, as torch leaves it


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:   # a 0-d tensor lr
        return v.item()
    return v
