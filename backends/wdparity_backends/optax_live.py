"""wdparity.describe() of a live optax optimizer built with inject_hyperparams (an opaque closure cannot be read).

The framework is imported inside read_live(), which the adapter's `Backend.read_live` calls in the user's
process: the core never imports it.
Each reader returns (run table, [(key, value, why not read)], notes); tools/live.py turns them into a Description.
"""

from __future__ import annotations

from typing import Any


def is_optax(obj) -> bool:
    return type(obj).__name__.startswith("GradientTransformation") and hasattr(obj, "init")


def read_live(tx, model=None, params=None) -> tuple[dict, list[tuple], list[str]]:
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
        skipped.append((key, repr(value), "a schedule injected as a hyperparameter: not read yet"))
    for key, value in cells["other_hps"].cell_contents.items():
        value = _dtype_name(value)   # adafactor's dtype_momentum=jnp.float32 is the string "float32" in the vocabulary
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
            skipped.append((key, table.pop(key), f"is not a keyword of the optax.{alias} vocabulary"))
        elif key != "learning_rate" and value == ALIASES[alias][key]:
            table.pop(key)
    return table, skipped, notes


def _dtype_name(value):
    """A dtype given as an object (jnp.float32, np.dtype) as its name; any other value unchanged."""
    if value is None or isinstance(value, (str, int, float, bool, list, tuple, dict)) or callable(value) and not \
            isinstance(value, type):
        return value
    import numpy as np

    try:
        return np.dtype(value).name
    except TypeError:
        return value
