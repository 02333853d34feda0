"""wdparity.describe() of a live mlx.optimizers optimizer: its attributes, state and schedule as an mlx run table.

MLX keeps each constructor keyword as an attribute of the same name (momentum, weight_decay, betas, eps,
bias_correction, ...) and the learning rate in `state["learning_rate"]`, an mx.array (float32 for a Python float:
.run has the shortest decimal that rounds to it, with a note); a schedule is the closure in `_schedulers`, read
where it is mlx.optimizers' step_decay or cosine_decay (their arguments are its cells). A MultiOptimizer's filters
are Python callables whose rule cannot be read: describe() calls them on the model's parameters, as MultiOptimizer
does, and .run names the paths each took. The model (`mlx.nn.Linear(d, 1)`) names the tensors and gives the dtype.
The framework is imported inside read_live(), which the adapter's `Backend.read_live` calls in the user's process.
Each reader returns (run table, [(key, value, why not read)], notes); tools/live.py turns them into a Description.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from wdparity.run.backend import ONE_LINEAR

SCHEDULERS = "mlx.optimizers.schedulers"
OUTSIDE = ("clip_grad_norm, a loss `penalty` and mx.compile are calls of the training step, not attributes of the "
           "optimizer: describe() cannot see them; add them to .run where the step has them")
# attributes a class sets without taking them as a keyword, which its update never reads
UNUSED = {("Adamax", "bias_correction"): "Adamax inherits Adam's bias_correction attribute (False), which its update "
                                         "never reads (mlx/optimizers/optimizers.py:644-659)"}


class Reading:
    """What one read collects: the refused keys with their reasons, the notes, and the model's dtype."""

    def __init__(self, float64: bool):
        self.skipped: list[tuple] = []
        self.notes: list[str] = []
        self.float64 = float64
        self.arrays: dict[str, bool] = {}   # hyperparameter -> handed over as a float64 mx.array (float64 runs)
        self.schedules: list[Optional[dict]] = []   # each (sub-)optimizer's learning-rate schedule, in order

    def number(self, value: Any, key: str, counts: bool = False) -> Any:
        """A hyperparameter as the table's number: Python numbers as they are, an mx.array by its value (float32:
        the shortest decimal that rounds to it, noted). `counts`: its array-ness is hyperparameters_as_arrays'."""
        import mlx.core as mx

        if isinstance(value, bool):
            return value
        if counts and self.float64:
            self.arrays[key] = isinstance(value, mx.array) and value.dtype == mx.float64
        if isinstance(value, (int, float)):
            return value
        if not isinstance(value, mx.array) or value.size != 1:
            raise ValueError(f"{key}: {value!r} is not a number or a one-element mx.array")
        if value.dtype == mx.float64:
            return float(value.item())
        if value.dtype != mx.float32:
            raise ValueError(f"{key}: an mx.array of {value.dtype}; the mlx vocabulary states float32 and float64 "
                             "hyperparameters only")
        out = float(str(np.float32(value.item())))
        self.notes.append(f"{key}: MLX holds it as a float32 array ({value.item()!r}); .run has the shortest decimal "
                          f"that rounds to it ({out!r})")
        return out


def read_live(opt, model=None, params=None) -> tuple[dict, list[tuple], list[str]]:
    """(run table, [(key, value, why not read)], notes) of a live mlx.optimizers optimizer; `model` (or `params`,
    its parameter tree) is the one-Linear task's nn.Linear."""
    from mlx.utils import tree_flatten

    from wdparity_backends.mlx_vocab import MULTI

    tree = model.trainable_parameters() if model is not None else params
    everything = model.parameters() if model is not None else params
    float64 = _check_linear(dict(tree_flatten(everything))) if everything is not None else False
    reading = Reading(float64)
    table: dict[str, Any] = {"backend": "mlx"}
    if everything is None:
        reading.notes.append("no model given: .run is described in float32 (the task's default); pass model= for a "
                             "float64 nn.Linear")
    else:
        frozen = [p for p in dict(tree_flatten(everything)) if p not in dict(tree_flatten(tree))]
        if frozen:
            reading.skipped.append(("model.freeze", frozen, "frozen parameters get no gradient from "
                                    "nn.value_and_grad and are never updated; the mlx vocabulary has no frozen "
                                    "tensors: .semantics train them"))
    if float64:
        table["dtype"] = "float64"
    if type(opt).__name__ == MULTI:
        table.update(_read_multi(opt, tree, reading))
    else:
        table.update(_read_one(opt, "", reading))
    schedules = [s for s in reading.schedules if s is not None]
    if schedules and schedules[0]["kind"] != "constant":
        table["schedule"] = schedules[0]
    if float64 and reading.arrays:
        kinds = set(reading.arrays.values())
        if len(kinds) > 1:
            raise ValueError("a float64 run's hyperparameters are float64 mx.arrays in part only ("
                             + ", ".join(f"{k}: {'array' if v else 'Python float / float32'}"
                                         for k, v in reading.arrays.items())
                             + "): the mlx vocabulary hands them over together (hyperparameters_as_arrays: the "
                             "learning rate, a schedule's values, Adam's betas under bias_correction and Adafactor's "
                             "decay_rate), which decides their precision (docs/adapters/mlx.md)")
        if kinds == {True}:
            table["hyperparameters_as_arrays"] = True
    reading.notes.append(OUTSIDE)
    return table, reading.skipped, reading.notes


def _check_linear(flat: dict) -> bool:
    """ONE_LINEAR on the parameter tree's paths; True for float64 parameters."""
    import mlx.core as mx

    w, b = flat.get("weight"), flat.get("bias")
    if set(flat) != {"weight", "bias"} or w.ndim != 2 or w.shape[0] != 1 or tuple(b.shape) != (1,):
        raise ValueError(f"model has the parameters {sorted(flat)}: {ONE_LINEAR}")
    if w.dtype != b.dtype or w.dtype not in (mx.float32, mx.float64):
        raise ValueError(f"model's parameters are {w.dtype} and {b.dtype}: the mlx adapter trains float32 or float64")
    return w.dtype == mx.float64


def _read_one(o, where: str, reading: Reading) -> dict:
    """One mlx.optimizers class (a MultiOptimizer's sub-optimizer with `where` = "optimizers[i].")."""
    from wdparity_backends.mlx_vocab import DEFAULTS, KEYWORDS, MULTI, REFUSED

    name = type(o).__name__
    if name in REFUSED:
        raise TypeError(f"mlx.optimizers.{name} is not modelled: {REFUSED[name]}")
    if name not in DEFAULTS or type(o).__module__ != "mlx.optimizers.optimizers":
        raise TypeError(f"{type(o).__module__}.{name} is not modelled: describe() reads mlx.optimizers' "
                        f"{sorted(DEFAULTS) + [MULTI]}")
    sub: dict[str, Any] = {"optimizer": name}
    scheduler = o._schedulers.get("learning_rate")
    schedule: Optional[dict] = {"kind": "constant"}
    if scheduler is not None:
        sub["learning_rate"], schedule = _read_schedule(scheduler, where, reading, o)
    elif "learning_rate" in o.state:
        sub["learning_rate"] = reading.number(o.state["learning_rate"], f"{where}learning_rate", counts=True)
    known = [s for s in reading.schedules if s is not None]
    if known and schedule is not None and schedule != known[0]:
        reading.skipped.append((f"{where}learning_rate", repr(scheduler), f"its schedule {schedule} is not the first "
                                f"optimizer's {known[0]}: a run has one schedule; .run keeps the first"))
    reading.schedules.append(schedule)
    corrected = name in ("Adam", "AdamW") and bool(getattr(o, "bias_correction", False))
    for key in KEYWORDS[name][1:]:
        value = getattr(o, key, None)
        if value is None:
            continue
        counts = (key == "betas" and corrected) or (key == "decay_rate" and name == "Adafactor")
        if isinstance(value, (list, tuple)):
            value = [reading.number(v, f"{where}{key}[{i}]", counts) for i, v in enumerate(value)]
        else:
            value = reading.number(value, f"{where}{key}", counts)
        sub[key] = value
    for key, value in vars(o).items():
        if key.startswith("_") or key in KEYWORDS[name]:
            continue
        if (name, key) in UNUSED and not value:
            continue
        reading.skipped.append((f"{where}{key}", _plain(value), UNUSED.get((name, key), f"is an attribute of the "
                                f"optimizer, not a keyword of mlx.optimizers.{name}: not read")))
    for key, fn in o._schedulers.items():
        if key != "learning_rate":
            reading.skipped.append((f"{where}{key}", repr(fn), "a scheduled hyperparameter other than learning_rate: "
                                    "the mlx vocabulary schedules the learning rate only"))
    step = int(o.state["step"].item()) if "step" in o.state else 0
    if step:
        reading.skipped.append((f"{where}state.step", step, f"the optimizer has taken {step} steps: its step count "
                                "and moments are state, not settings; .semantics describe it from step 0"))
    return sub


def _read_schedule(fn, where: str, reading: Reading, o) -> tuple[Any, Optional[dict]]:
    """(learning_rate, schedule) of mlx.optimizers' step_decay / cosine_decay, read from the closure's cells
    (init, decay_rate, step_size / init, decay_steps, end, mlx/optimizers/schedulers.py:34-92); any other callable
    is listed, and .run keeps the value it gives now (state["learning_rate"])."""
    kind = getattr(fn, "__qualname__", "").split(".")[0] if getattr(fn, "__module__", "") == SCHEDULERS else None
    cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ()))) if kind else {}
    key = f"{where}learning_rate"
    if kind == "step_decay":
        lr = reading.number(cells["init"], key, counts=True)
        factor = reading.number(cells["decay_rate"], f"{key}.decay_rate", counts=True)
        return lr, {"kind": "step", "every": int(cells["step_size"]), "factor": float(factor)}
    if kind == "cosine_decay":
        lr = reading.number(cells["init"], key, counts=True)
        total = reading.number(cells["decay_steps"], f"{key}.decay_steps")
        end = cells["end"]
        reading.number(end, f"{key}.end", counts=True)
        if total != int(total):
            raise ValueError(f"{key}: cosine_decay's decay_steps {total!r} is not a whole number of steps")
        floor = _floor(lr, end)
        reading.notes.append(f"{key}: cosine_decay(init, decay_steps, end) is the neutral cosine with floor = end / "
                             f"init; .run has the shortest decimal floor whose floor * init is the stored end "
                             f"({floor!r})")
        return lr, {"kind": "cosine", "total": int(total), "floor": floor}
    reading.skipped.append((key, repr(fn), "a learning-rate schedule that is not mlx.optimizers' step_decay or "
                            "cosine_decay (a Python callable: its rule cannot be read); .run has the value it gives "
                            "at the optimizer's current step"))
    return reading.number(o.state["learning_rate"], key), None


def _floor(lr: float, end: Any) -> float:
    """The shortest decimal f with f*lr == end in end's precision (the adapter writes end = floor*lr)."""
    import mlx.core as mx

    f32 = isinstance(end, mx.array) and end.dtype == mx.float32
    target = float(end.item()) if isinstance(end, mx.array) else float(end)
    ratio = target / lr if lr else 0.0
    for digits in range(1, 18):
        f = float(f"{ratio:.{digits}g}")
        made = float(np.float32(f * lr)) if f32 else f * lr
        if made == target:
            return f
    return ratio


def _read_multi(opt, tree, reading: Reading) -> dict:
    """MultiOptimizer: each sub-optimizer and the paths its filter took on the model's parameters."""
    from mlx.utils import tree_flatten

    if tree is None:
        raise ValueError("MultiOptimizer's filters are Python callables (path, array) -> bool whose rule cannot be "
                         "read: pass model= (the nn.Linear) so that describe() can call them on its parameters")
    # MultiOptimizer's own split: each parameter to the first filter that takes it (optimizers.py:184-197)
    parts = [[path for path, _ in tree_flatten(part)] for part in opt._split_dictionary(tree)]
    used = [i for i, part in enumerate(parts) if part]
    subs = []
    for i, (o, part) in enumerate(zip(opt.optimizers, parts)):
        if not part:
            reading.skipped.append((f"optimizers[{i}]", type(o).__name__, "its filter takes no parameter of the "
                                    "model (an earlier one took them): it updates nothing and is left out"))
            continue
        sub = _read_one(o, f"optimizers[{i}].", reading)
        if i != used[-1]:
            sub["params"] = part
        subs.append(sub)
    reading.notes.append("MultiOptimizer's filters are Python callables: describe() called each on the model's "
                         "parameters (path, array) as MultiOptimizer does; .run names the paths each took (`params`), "
                         "what the filters do on this model, not their rule on another; the last optimizer taking "
                         "the rest")
    return {"optimizer": "MultiOptimizer", "optimizers": subs}


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value if isinstance(value, (bool, int, float, str, list, tuple, type(None))) else repr(value)
