"""wdparity.describe() of a live keras.optimizers optimizer: get_config(), its exclusions and the Dense layer's regularizers.

The framework is imported inside read_live(), which the adapter's `Backend.read_live` calls in the user's
process: the core never imports it.
Each reader returns (run table, [(key, value, why not read)], notes); tools/live.py turns them into a Description.
"""

from __future__ import annotations

from typing import Any

from wdparity.run.backend import ONE_LINEAR


def read_live(opt, model, params=None) -> tuple[dict, list[tuple], list[str]]:
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
            skipped.append((key, value, KERAS_EXTRAS[key]))
        elif key == "learning_rate" and not isinstance(value, (int, float)):
            skipped.append((key, value, "a LearningRateSchedule: live schedules are not read yet (write "
                                                   "it as the case's [task.schedule])"))
        elif key == "learning_rate":
            table[key] = float(str(np.float32(value)))   # Keras keeps it as a float32 variable
            notes.append(f"learning_rate: Keras holds it as a float32 variable ({value!r}); .run has the shortest "
                         f"decimal that rounds to it ({table[key]!r})")
        elif key in OWN[name] or key == "weight_decay" or key in CLIP:
            if value is not None:
                table[key] = value
        else:
            skipped.append((key, value, "is not a key of the keras run vocabulary"))
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
                skipped.append((kname, type(reg).__name__, "is not an L1/L2/L1L2 regularizer"))
                continue
            table[kname] = {k: float(v) for k, v in cfg.items() if v}
        if layer.activity_regularizer is not None:
            skipped.append(("activity_regularizer", type(layer.activity_regularizer).__name__,
                                       "penalizes the layer's outputs, not its weights: outside the neutral model"))
    return table, skipped, notes


def _keras_dense(model):
    dense = [la for la in getattr(model, "layers", [model]) if la.weights]
    if len(dense) != 1 or type(dense[0]).__name__ != "Dense" or dense[0].units != 1 or not dense[0].use_bias:
        raise ValueError(f"model: {ONE_LINEAR}")
    return dense[0]
