"""wdparity.describe() of a live paddle.optimizer optimizer: its attributes, its parameters' ParamAttrs and its
callables (called on the model's parameters) as a paddle run table.

Paddle keeps each keyword as a private attribute (`_learning_rate`, `_beta1`, `_momentum`, ...), a weight_decay as
`regularization` (an L2Decay for a float, optimizer.py:269-274; Momentum's L2 fused as `_regularization_coeff`,
AdamW's decoupled coefficient as `_weight_decay`), and the per-parameter settings on the parameters themselves
(`regularizer`, `stop_gradient`, `optimize_attr`, `need_clip`). AdamW's apply_decay_param_fun and Lamb's
exclude_from_weight_decay_fn are Python callables: describe() calls them on the model's parameters as the optimizer
does, and .run lists the names they return True for, written as a fresh paddle.utils.unique_name.guard() names them
(the paddle vocabulary's names). The model (`paddle.nn.Linear(d, 1)`; without it, the optimizer's own parameter
list) names the tensors and gives the dtype. The framework is imported inside read_live(), in the user's process.
Each reader returns (run table, [(key, value, why not read)], notes); tools/live.py turns them into a Description.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wdparity.run.backend import ONE_LINEAR

# vocabulary keyword -> the attribute paddle.optimizer keeps it in (3.3.1); weight_decay, learning_rate, the clip
# and the callables are read apart
ATTRIBUTES = {"momentum": "_momentum", "use_nesterov": "_use_nesterov", "beta1": "_beta1", "beta2": "_beta2",
              "epsilon": "_epsilon", "rho": "_rho", "centered": "_centered",
              "initial_accumulator_value": "initial_accumulator_value", "momentum_decay": "_momentum_decay",
              "amsgrad": "_amsgrad", "lamb_weight_decay": "_lamb_weight_decay", "always_adapt": "always_adapt",
              "rescale_grad": "_rescale_grad", "multi_precision": "_multi_precision", "lazy_mode": "_lazy_mode",
              "use_multi_tensor": "_use_multi_tensor", "use_lowprecision_moment": "_use_lowprecision_moment"}
CLIPS = {"ClipGradByGlobalNorm": "clip_norm", "ClipGradByNorm": "clip_norm", "ClipGradByValue": "max"}
CANONICAL = {"weight": "linear_0.w_0", "bias": "linear_0.b_0"}   # paddle_vocab.PADDLE_NAMES, by neutral name


def read_live(opt, model=None, params=None) -> tuple[dict, list[tuple], list[str]]:
    import paddle

    from wdparity_backends.paddle_vocab import KEYWORDS

    name = type(opt).__name__
    if name not in KEYWORDS or not type(opt).__module__.startswith("paddle.optimizer"):
        raise TypeError(f"{type(opt).__module__}.{name} is not modelled: describe() reads paddle.optimizer's "
                        f"{sorted(KEYWORDS)}")
    plist = list(opt._parameter_list or [])
    if plist and isinstance(plist[0], dict):
        raise ValueError("parameter groups (parameters = a list of dicts, each with its own options) are outside the "
                         "paddle vocabulary, whose options are the optimizer's and whose per-tensor settings are "
                         "ParamAttrs: build it with parameters=model.parameters()")
    skipped: list[tuple] = []
    notes: list[str] = []
    tensors = _tensors(model, plist, notes)
    table: dict[str, Any] = {"backend": "paddle", "optimizer": name}
    if tensors["weight"].dtype == paddle.float64:
        table["dtype"] = "float64"
    elif tensors["weight"].dtype != paddle.float32:
        raise ValueError(f"model's parameters are {tensors['weight'].dtype}: the paddle adapter trains float32 or "
                         "float64")
    table.update(_learning_rate(opt._learning_rate, skipped, notes))
    for key in KEYWORDS[name]:
        attr = ATTRIBUTES.get(key)
        if attr is None:
            continue
        value = getattr(opt, attr, None)
        if value is None or (isinstance(value, bool) and not value) or (key == "rescale_grad" and value == 1.0):
            continue
        table[key] = value if isinstance(value, bool) else _number(value, key, notes)
    weight_decay = _weight_decay(opt, name, skipped)
    if weight_decay is not None:
        table["weight_decay"] = weight_decay
    if getattr(opt, "_lr_ratio", None) is not None:
        skipped.append(("lr_ratio", repr(opt._lr_ratio), "AdamW's lr_ratio(param) scales one tensor's learning rate "
                        "(the Adam step and the decay, adamw.py:519-520): a per-tensor learning rate outside the "
                        "neutral model"))
    clip = _grad_clip(opt._grad_clip, skipped)
    if clip is not None:
        table["grad_clip"] = clip
    table.update(_callables(opt, tensors, notes))
    table.update(_param_attrs(tensors, plist, opt._grad_clip is not None, skipped, notes))
    if any(opt._accumulators.values()) or getattr(opt, "_master_weights", None):
        skipped.append(("_accumulators", sorted(k for k, v in opt._accumulators.items() if v), "the optimizer has "
                        "stepped: its moments and beta powers are state, not settings; .semantics describe it from "
                        "step 0"))
    return table, skipped, notes


def _tensors(model, plist: list, notes: list[str]) -> dict[str, Any]:
    """{"weight": parameter, "bias": parameter} of the one-Linear task: the model's, else the optimizer's list."""
    if model is not None:
        named = dict(model.named_parameters())
    else:
        named = dict(zip(("weight", "bias"), plist)) if len(plist) == 2 else {}
        notes.append("no model given: the optimizer's parameter list stands for it (nn.Linear's weight, then bias)")
    w, b = named.get("weight"), named.get("bias")
    if (set(named) != {"weight", "bias"} or len(w.shape) != 2 or w.shape[1] != 1 or list(b.shape) != [1]):
        raise ValueError(f"model has the parameters {sorted(named)}: {ONE_LINEAR} (Paddle's nn.Linear(d, 1) holds its "
                         "weight as (d, 1))")
    return named


def _number(value: Any, key: str, notes: list[str]) -> float:
    """A Python number as it is; a one-element paddle Tensor by its value (float32: its shortest decimal, noted)."""
    if isinstance(value, (int, float)):
        return value
    if not hasattr(value, "item") or int(np.prod(value.shape)) != 1:
        raise ValueError(f"{key}: {value!r} is not a number or a one-element Tensor")
    x = float(value.item())
    if str(value.dtype).endswith("float32"):
        out = float(str(np.float32(x)))
        notes.append(f"{key}: a float32 Tensor ({x!r}); .run has the shortest decimal that rounds to it ({out!r})")
        return out
    notes.append(f"{key}: a {value.dtype} Tensor, read by its value ({x!r})")
    return x


def _learning_rate(lr, skipped: list, notes: list[str]) -> dict:
    """learning_rate (and a StepDecay's schedule): a float as is; an LRScheduler by its base_lr, its rule where it
    is StepDecay (lr = base_lr * gamma ** (epoch // step_size), lr.py), else listed."""
    import paddle

    if isinstance(lr, (int, float)):
        return {"learning_rate": float(lr)}
    out: dict[str, Any] = {"learning_rate": float(lr.base_lr)}
    notes.append("paddle.optimizer.lr schedulers advance when the training loop calls scheduler.step(): .run's "
                 "schedule counts optimizer steps (wdparity steps it once per optimizer step)")
    if type(lr) is paddle.optimizer.lr.StepDecay:
        out["schedule"] = {"kind": "step", "every": int(lr.step_size), "factor": float(lr.gamma)}
    else:
        skipped.append(("learning_rate", type(lr).__name__, "an LRScheduler other than StepDecay (LambdaDecay's "
                        "lr_lambda is a Python callable whose rule cannot be read; CosineAnnealingDecay's recursive "
                        "form is not the neutral cosine): .run has its base_lr, constant"))
    if lr.last_epoch:
        skipped.append(("learning_rate.last_epoch", lr.last_epoch, "the scheduler has been stepped: .semantics start "
                        "the schedule at its first step"))
    return out


def _regularizer(reg, key: str, skipped: list):
    """paddle.regularizer.L2Decay/L1Decay as the vocabulary's {L2Decay = c} / {L1Decay = c}; None if another kind."""
    import paddle

    kind = {paddle.regularizer.L2Decay: "L2Decay", paddle.regularizer.L1Decay: "L1Decay"}.get(type(reg))
    if kind is None:
        skipped.append((key, type(reg).__name__, "is not an L2Decay or L1Decay regularizer"))
        return None
    return {kind: float(reg._coeff)}


def _weight_decay(opt, name: str, skipped: list):
    """AdamW: `_weight_decay` (decoupled); Momentum: its fused L2 (`_regularization_coeff`) or the L1Decay it keeps as
    `regularization`; the others: `regularization` (a float weight_decay is an L2Decay, optimizer.py:269-274)."""
    if name == "AdamW":
        return _number(opt._weight_decay, "weight_decay", [])
    if name == "Momentum" and opt._regularization_method == "l2_decay":
        return float(opt._regularization_coeff)
    reg = opt.regularization
    if reg is None:
        return None
    out = _regularizer(reg, "weight_decay", skipped)
    return out["L2Decay"] if out and "L2Decay" in out else out


def _grad_clip(clip, skipped: list):
    if clip is None:
        return None
    kind = type(clip).__name__
    if kind not in CLIPS or not type(clip).__module__.startswith("paddle.nn"):
        skipped.append(("grad_clip", kind, f"is not one of paddle.nn's {sorted(CLIPS)}"))
        return None
    value = float(getattr(clip, CLIPS[kind]))
    if kind == "ClipGradByValue" and float(clip.min) != -value:
        skipped.append(("grad_clip", {"max": value, "min": float(clip.min)}, "ClipGradByValue with min != -max: the "
                        "neutral value clip is symmetric"))
        return None
    if kind == "ClipGradByGlobalNorm" and getattr(clip, "auto_skip_clip", False):
        skipped.append(("grad_clip.auto_skip_clip", True, "skips the clip of parameters with need_clip unset "
                        "(paddle/nn/clip.py): not modelled"))
    return {kind: value}


def _callables(opt, tensors: dict, notes: list[str]) -> dict:
    """AdamW's apply_decay_param_fun(name) and Lamb's exclude_from_weight_decay_fn(param), called on the model's
    parameters as the optimizer calls them (adamw.py:479-484, lamb.py), by their paddle names in a fresh guard."""
    out = {}
    fun = getattr(opt, "_apply_decay_param_fun", None)
    if fun is not None:
        decayed = [CANONICAL[n] for n, p in tensors.items() if fun(p.name)]
        if len(decayed) < len(tensors):
            out["apply_decay_param_fun"] = decayed
        notes.append(_called("apply_decay_param_fun", "the parameter names", decayed, tensors))
    fun = getattr(opt, "_exclude_from_weight_decay_fn", None)
    if fun is not None:
        excluded = [CANONICAL[n] for n, p in tensors.items() if fun(p)]
        if excluded:
            out["exclude_from_weight_decay_fn"] = excluded
        notes.append(_called("exclude_from_weight_decay_fn", "the parameters", excluded, tensors))
    return out


def _called(key: str, what: str, true: list[str], tensors: dict) -> str:
    live = {CANONICAL[n]: p.name for n, p in tensors.items()}
    renamed = {k: v for k, v in live.items() if k != v}
    return (f"{key} is a Python callable whose rule cannot be read: describe() called it on {what} (as the optimizer "
            f"does) and it returned True for {true}" + (f"; .run writes the names of a fresh paddle.utils.unique_name."
                                                        f"guard() ({renamed} here)" if renamed else ""))


def _param_attrs(tensors: dict, plist: list, clipped: bool, skipped: list, notes: list[str]) -> dict:
    """weight_attr / bias_attr from each parameter: its regularizer, trainable (stop_gradient, or left out of the
    optimizer's parameter list), and the ParamAttr settings outside the vocabulary (learning_rate, need_clip)."""
    ids = {id(p) for p in plist}
    if any(id(p) not in {id(t) for t in tensors.values()} for p in plist):
        raise ValueError("the optimizer updates a parameter that is not one of model's: pass the model it trains")
    out = {}
    for neutral, p in tensors.items():
        attr: dict[str, Any] = {}
        key = f"{neutral}_attr"
        if p.regularizer is not None:
            reg = _regularizer(p.regularizer, f"{key}.regularizer", skipped)
            if reg is not None:
                attr["regularizer"] = reg
        if p.stop_gradient:
            attr["trainable"] = False
        elif id(p) not in ids:
            attr["trainable"] = False
            notes.append(f"{key}: the {neutral} is not in the optimizer's parameter list, so it is never updated; "
                         ".run states it as ParamAttr(trainable=False), which Paddle trains alike (no step, no "
                         "regularizer, no share of a global-norm clip)")
        lr = (p.optimize_attr or {}).get("learning_rate", 1.0)
        if lr != 1.0:
            skipped.append((f"{key}.learning_rate", float(lr), "a ParamAttr learning_rate scales this tensor's lr "
                            "(optimizer.py:876-894): a per-tensor learning rate outside the neutral model"))
        if not getattr(p, "need_clip", True):
            if clipped:
                skipped.append((f"{key}.need_clip", False, "leaves this tensor out of grad_clip: not modelled"))
            else:
                notes.append(f"{key}.need_clip = False has no effect without a grad_clip")
        if attr:
            out[key] = attr
    return out
