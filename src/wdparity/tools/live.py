"""describe(obj): a live optimizer the user already has, as our `[runs.…]` table, its neutral semantics and words.

The table is read from the object (torch `defaults`/`param_groups`, Keras `get_config()`, optax
`inject_hyperparams` closures); the semantics are the adapter's own describe() of that table (`load_run`), never a
second model. What cannot be read or what the adapter refuses is listed in `.unsupported` with the reason. The
framework is imported only here, inside the function for the object's own type (the core stays framework-free).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from wdparity.run.cases import load_run
from wdparity.spec.errors import InputError
from wdparity.spec.models import Semantics, Task
from wdparity.tools.translate import words

ONE_LINEAR = ("only the one-Linear task is modelled today: the model's parameters must be exactly one `weight` "
              "(shape (1, d)) and one `bias` (shape (1,)), as nn.Linear(d, 1) / keras.layers.Dense(1) hold them")


@dataclass
class Unsupported:
    key: str
    value: Any
    reason: str


@dataclass
class Description:
    run: dict                           # the [runs.…] table, backend included
    semantics: Semantics                # the adapter's describe() of `run`
    text: str                           # explain()'s words
    unsupported: list[Unsupported] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def describe(obj: Any, model: Any = None, params: Any = None) -> Description:
    """The neutral semantics of a live torch.optim / keras.optimizers / optax (inject_hyperparams) optimizer."""
    root = type(obj).__module__.split(".")[0]
    if root == "torch":
        table, skipped, notes = _torch(obj, model)
    elif root == "keras":
        table, skipped, notes = _keras(obj, model)
    elif root == "optax" or _is_optax(obj):
        table, skipped, notes = _optax(obj, params)
    else:
        raise TypeError(f"describe() reads torch.optim, keras.optimizers and optax optimizers; got "
                        f"{type(obj).__module__}.{type(obj).__name__}")
    while True:   # a keyword the adapter refuses leaves the table, with the adapter's own reason
        try:
            run = load_run("live", table, Task(), "describe", {})
            break
        except InputError as exc:
            key = exc.key.removeprefix("runs.live.")
            if key in ("optimizer", "backend") or key not in table:
                raise
            skipped.append(Unsupported(key, table.pop(key), f"{exc.expected} (left out of .run: .semantics describe "
                                                            "the optimizer without it)"))
    backend = table["backend"]
    return Description(table, run.semantics, words(run.semantics.neutral(), backend), skipped, notes)


# ---------------------------------------------------------------- torch
def _torch(opt, model) -> tuple[dict, list[Unsupported], list[str]]:
    from wdparity_backends.torch_run import KEYWORDS, MUST_BE_FALSE

    name = type(opt).__name__
    if name not in KEYWORDS:
        raise TypeError(f"torch.optim.{name} is not modelled: describe() reads {sorted(KEYWORDS)}")
    skipped: list[Unsupported] = []
    table: dict[str, Any] = {"backend": "torch", "optimizer": name}
    groups = opt.param_groups
    for key in KEYWORDS[name]:
        values = [g.get(key, opt.defaults.get(key)) for g in groups]
        value = values[0] if key == "weight_decay" else None
        if key != "weight_decay":
            if any(_plain(v) != _plain(values[0]) for v in values):
                skipped.append(Unsupported(f"param_groups[*].{key}", [_plain(v) for v in values],
                                           f"differs between param groups: a per-group {key} is outside the neutral "
                                           "model (only weight_decay is per tensor); .run keeps the first group's"))
            value = values[0]
        value = _plain(value)
        if value is None or (isinstance(value, bool) and not value and key not in ("nesterov", "amsgrad", "centered",
                                                                                   "decoupled_weight_decay")):
            continue
        if key in MUST_BE_FALSE and value is True:
            skipped.append(Unsupported(key, True, MUST_BE_FALSE[key]))
            continue
        table[key] = value
    top_wd = _plain(opt.defaults.get("weight_decay"))
    table["weight_decay"] = top_wd
    for i, g in enumerate(groups):
        implied = {"decoupled_weight_decay"} if name == "AdamW" and g.get("decoupled_weight_decay") else set()
        for key in sorted(set(g) - set(KEYWORDS[name]) - {"params"} - implied):   # AdamW is Adam(decoupled=True)
            skipped.append(Unsupported(f"param_groups[{i}].{key}", _plain(g[key]),
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


# ---------------------------------------------------------------- keras
def _keras(opt, model) -> tuple[dict, list[Unsupported], list[str]]:
    import re

    import keras
    import numpy as np

    from wdparity_backends.keras_vocab import CLIP, DEFAULTS, KERAS_EXTRAS, KERAS_NAME, NOT_MODELLED, OWN

    name = type(opt).__name__
    if name in NOT_MODELLED or name not in DEFAULTS:
        raise TypeError(f"keras.optimizers.{name} is not modelled: "
                        f"{NOT_MODELLED.get(name, f'describe() reads {sorted(DEFAULTS)}')}")
    config = opt.get_config()
    table: dict[str, Any] = {"backend": "keras", "keras_backend": keras.config.backend(), "optimizer": name}
    skipped, notes = [], []
    idle = {"name": None, "use_ema": False, "ema_momentum": None, "ema_overwrite_frequency": None,
            "loss_scale_factor": None, "gradient_accumulation_steps": None}
    for key, value in config.items():
        if key in idle:
            if key == "name" or value == idle[key] or (key.startswith("ema_") and not config.get("use_ema")):
                continue
            skipped.append(Unsupported(key, value, KERAS_EXTRAS[key]))
        elif key == "learning_rate" and not isinstance(value, (int, float)):
            skipped.append(Unsupported(key, value, "a LearningRateSchedule: live schedules are not read yet (write "
                                                   "it as the case's [task.schedule])"))
        elif key == "learning_rate":
            table[key] = float(str(np.float32(value)))   # Keras keeps it as a float32 variable
            notes.append(f"learning_rate: Keras holds it as a float32 variable ({value!r}); .run has the shortest "
                         f"decimal that rounds to it ({table[key]!r})")
        elif key in OWN[name] or key == "weight_decay" or key in CLIP:
            if value is not None:
                table[key] = value
        else:
            skipped.append(Unsupported(key, value, "is not a key of the keras run vocabulary"))
    pattern = getattr(opt, "_exclude_from_weight_decay_pattern", None)
    ids = getattr(opt, "_exclude_from_weight_decay", set()) or set()
    layer = _keras_dense(model) if model is not None else None
    excluded = set()
    for neutral, kname in KERAS_NAME.items():
        var = getattr(layer, kname, None) if layer is not None else None
        if pattern is not None and re.search(pattern, var.name if var is not None else kname):
            excluded.add(neutral)
        if var is not None and opt._var_key(var) in ids:
            excluded.add(neutral)
    if ids and layer is None:
        raise ValueError("exclude_from_weight_decay(var_list=...) names variables: pass model= to name them")
    if excluded:
        table["exclude_from_weight_decay"] = sorted(excluded, key=list(KERAS_NAME).index)
    if layer is not None:
        for kname in ("kernel_regularizer", "bias_regularizer"):
            reg = getattr(layer, kname)
            if reg is None:
                continue
            cfg = reg.get_config()
            if not set(cfg) <= {"l1", "l2"}:
                skipped.append(Unsupported(kname, type(reg).__name__, "is not an L1/L2/L1L2 regularizer"))
                continue
            table[kname] = {k: float(v) for k, v in cfg.items() if v}
        if layer.activity_regularizer is not None:
            skipped.append(Unsupported("activity_regularizer", type(layer.activity_regularizer).__name__,
                                       "penalizes the layer's outputs, not its weights: outside the neutral model"))
    return table, skipped, notes


def _keras_dense(model):
    dense = [la for la in getattr(model, "layers", [model]) if la.weights]
    if len(dense) != 1 or type(dense[0]).__name__ != "Dense" or dense[0].units != 1 or not dense[0].use_bias:
        raise ValueError(f"model: {ONE_LINEAR}")
    return dense[0]


# ---------------------------------------------------------------- optax
def _is_optax(obj) -> bool:
    return type(obj).__name__.startswith("GradientTransformation") and hasattr(obj, "init")


def _optax(tx, params) -> tuple[dict, list[Unsupported], list[str]]:
    from wdparity_backends.optax_vocab import ALIASES

    cells = dict(zip(getattr(getattr(tx.init, "__code__", None), "co_freevars", ()),
                     getattr(tx.init, "__closure__", None) or ()))
    if "inner_factory" not in cells:
        raise TypeError("this optax GradientTransformation is an opaque closure: its hyperparameters cannot be read. "
                        "Build it with optax.inject_hyperparams(optax.adamw)(learning_rate=..., weight_decay=...) or "
                        "write the chain as data ([runs.…] chain = [...]) in a case file")
    factory = cells["inner_factory"].cell_contents
    alias = getattr(factory, "__name__", "")
    if alias not in ALIASES:
        raise TypeError(f"optax.inject_hyperparams({alias}) is not a modelled alias: {sorted(ALIASES)}")
    table: dict[str, Any] = {"backend": "optax", "optimizer": alias}
    skipped, notes = [], []
    numeric = dict(cells["numeric_hps"].cell_contents)
    if params is not None:   # the hyperparameters as the state holds them, after init(params)
        state = tx.init(params).hyperparams
        dtypes = sorted({str(v.dtype) for v in state.values()})
        notes.append(f"inject_hyperparams casts the hyperparameters to the params' dtype: {', '.join(dtypes)} in "
                     "the state; .run has the values as written")
    for key, value in numeric.items():
        table[key] = float(value)
    for key, value in cells["sched_hps"].cell_contents.items():
        skipped.append(Unsupported(key, repr(value), "a schedule injected as a hyperparameter: not read yet"))
    for key, value in cells["other_hps"].cell_contents.items():
        default = ALIASES[alias].get(key)
        if value == default:
            continue
        if key in ("mask", "weight_decay_mask") and isinstance(value, dict) and set(value) <= {"weight", "bias"}:
            table[key] = [k for k in ("weight", "bias") if value.get(k)]
        else:
            table[key] = value
    for key, value in list(table.items()):
        if key in ("backend", "optimizer"):
            continue
        if key != "learning_rate" and key not in ALIASES[alias]:
            skipped.append(Unsupported(key, table.pop(key), f"is not a keyword of the optax.{alias} vocabulary"))
        elif key != "learning_rate" and value == ALIASES[alias][key]:
            table.pop(key)
    return table, skipped, notes
