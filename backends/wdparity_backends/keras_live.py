"""wdparity.describe() of a live keras.optimizers optimizer: get_config(), its exclusions, the Dense layer's
regularizers, and a LearningRateSchedule as the table's run-level `schedule` key where its lr at every step t is
a neutral schedule (spec/models.py), as keras_backend.py builds them; every other schedule is listed with what it
does and the nearest neutral one. Line numbers: Keras 3.15, keras/src/optimizers/schedules/learning_rate_schedule.py.

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
    live_lr = opt._learning_rate
    scheduled = isinstance(live_lr, keras.optimizers.schedules.LearningRateSchedule) or callable(live_lr)
    if scheduled:   # get_config() would serialize it, and raises for a schedule without a get_config() of its own
        opt._learning_rate = 0.0
    try:
        config = opt.get_config()
    finally:
        opt._learning_rate = live_lr
    table: dict[str, Any] = {"backend": "keras", "keras_backend": keras.config.backend(), "optimizer": name}
    skipped, notes = [], []
    idle = {"name": None, "use_ema": False, "ema_momentum": None, "ema_overwrite_frequency": None,
            "loss_scale_factor": None, "gradient_accumulation_steps": None}
    for key, value in config.items():
        if key in idle:
            if key == "name" or value == idle[key] or (key.startswith("ema_") and not config.get("use_ema")):
                continue
            skipped.append((key, value, KERAS_EXTRAS[key]))
        elif key == "learning_rate" and scheduled:
            read, unread, said = _read_schedule(opt, keras)
            table.update(read)
            skipped += unread
            notes += said
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


SRC = "keras/src/optimizers/schedules/learning_rate_schedule.py"
# The schedules that are not a neutral schedule: what each does, and the nearest neutral schedule
REFUSED = {
    "PiecewiseConstantDecay": (f"holds values[i] between its boundaries ({SRC}:256-295)", "ExponentialDecay("
                               "staircase=True) where the boundaries are evenly spaced and the values geometric, equal "
                               "up to the last boundary"),
    "PolynomialDecay": (f"is (lr - end)*(1 - t/decay_steps)^power + end, a polynomial decay with no neutral kind "
                        f"({SRC}:411-448)", "CosineDecay(decay_steps, alpha=end_learning_rate/lr), which has the "
                        "same ends"),
    "CosineDecayRestarts": (f"restarts the cosine every first_decay_steps (times t_mul, scaled by m_mul) ({SRC}:845-"
                            "909)", "CosineDecay(first_decay_steps, alpha), equal for t < first_decay_steps"),
}


def _read_schedule(opt, keras) -> tuple[dict, list[tuple], list[str]]:
    """({learning_rate, schedule} for .run, skipped, notes) of the optimizer's learning rate that is not a number.
    Keras calls a LearningRateSchedule with self._iterations, t = 0 at the first update (base_optimizer.py:777-781)."""
    from pydantic import ValidationError

    from wdparity.run import registry
    from wdparity.spec.models import CosineSchedule, InverseTimeSchedule, StepSchedule

    S = keras.optimizers.schedules
    lr = opt._learning_rate
    name = type(lr).__name__
    if not isinstance(lr, S.LearningRateSchedule):
        return {}, [("learning_rate", name, "a callable learning rate, called with no argument at every step "
                     "(keras/src/optimizers/base_optimizer.py:784-785), is opaque to describe(): left out of .run "
                     "(the optimizer's default)")], []
    first = getattr(lr, "initial_learning_rate", None)
    table = {} if first is None else {"learning_rate": float(first)}
    kept = (f".run has its initial learning rate {table['learning_rate']!r} as a constant" if table else
            "learning_rate is left out of .run: the optimizer's default")
    schedule, why, notes = None, None, []
    steps = getattr(lr, "decay_steps", None)
    whole = isinstance(steps, (int, float)) and float(steps).is_integer() and steps >= 1
    if type(lr) is S.ExponentialDecay and lr.staircase:   # lr*rate^floor(t/steps) (162-176)
        schedule = (StepSchedule, {"kind": "step", "every": int(steps) if whole else steps,
                                   "factor": float(lr.decay_rate)})
        why = None if whole else (f"ExponentialDecay(staircase=True) with decay_steps = {steps!r} steps at fractions "
                                  "of a step: the neutral step schedule's every is a whole number of steps; nearest: "
                                  f"decay_steps = {max(1, round(steps))}")
    elif type(lr) is S.ExponentialDecay:   # lr*rate^(t/steps) = lr*(rate^(1/steps))^t at the integer steps t
        factor = float(lr.decay_rate) ** (1.0 / float(steps))
        schedule = (StepSchedule, {"kind": "step", "every": 1, "factor": factor})
        if steps != 1:
            notes.append(f"ExponentialDecay(staircase=False) is lr*decay_rate^(t/decay_steps) ({SRC}:162-176); at the "
                         f"integer steps t at which the optimizer calls it that is lr*factor^t with factor = "
                         f"decay_rate^(1/decay_steps) = {factor!r}, the step schedule every = 1: equal up to rounding")
    elif type(lr) is S.CosineDecay and lr.warmup_target is None:   # (1 - alpha)*(1 + cos(pi*min(t, T)/T))/2 + alpha
        schedule = (CosineSchedule, {"kind": "cosine", "total": int(steps) if whole else steps,
                                     "floor": float(lr.alpha)})
        why = None if whole else (f"CosineDecay with decay_steps = {steps!r}: the neutral cosine's total is a whole "
                                  f"number of steps; nearest: decay_steps = {max(1, round(steps))}")
    elif type(lr) is S.CosineDecay:
        why = (f"CosineDecay with warmup_target = {lr.warmup_target!r} warms up linearly from initial_learning_rate to "
               f"warmup_target over warmup_steps = {lr.warmup_steps!r} steps, then decays from warmup_target "
               f"({SRC}:733-754): the neutral cosine has no warm-up; nearest: CosineDecay(learning_rate = "
               f"warmup_target, decay_steps) without warm-up")
    elif type(lr) is S.InverseTimeDecay:   # lr/(1 + rate*t/steps) (545-561)
        rate = float(lr.decay_rate) / float(steps)
        trains = registry.get("keras").schedules
        if lr.staircase:
            why = (f"InverseTimeDecay(staircase=True) is lr/(1 + decay_rate*floor(t/decay_steps)) ({SRC}:545-561), "
                   "with no neutral kind; nearest: staircase=False, the neutral inverse_time with rate = "
                   f"decay_rate/decay_steps = {rate!r}, equal at the multiples of decay_steps")
        elif "inverse_time" not in trains:
            why = (f"InverseTimeDecay is lr/(1 + decay_rate*t/decay_steps) ({SRC}:545-561), the neutral inverse_time "
                   f"with rate = decay_rate/decay_steps = {rate!r}, but the keras adapter trains only the schedules "
                   f"{list(trains)}; nearest: ExponentialDecay(decay_steps=1, decay_rate=1/(1 + rate) = "
                   f"{1 / (1 + rate)!r}, staircase=True), equal at t = 0 and 1")
        else:
            schedule = (InverseTimeSchedule, {"kind": "inverse_time", "rate": rate})
    else:
        what, nearest = REFUSED.get(name, ("is a LearningRateSchedule subclass describe() does not model: its "
                                           "__call__ is opaque", "ExponentialDecay or CosineDecay"))
        why = f"{name} {what}: not a neutral schedule; nearest: {nearest}"
    if schedule is not None and why is None:
        try:
            table["schedule"] = schedule[0].model_validate(schedule[1]).model_dump()
        except ValidationError as exc:   # the spec refuses the schedule's values
            values = ", ".join(f"{k} = {v!r}" for k, v in schedule[1].items() if k != "kind")
            why = f"{name} read as the neutral {schedule[1]['kind']} schedule {values}: {exc.errors()[0]['msg']}"
    skipped = [] if why is None else [("learning_rate", name, f"{why} ({kept})")]
    done = int(keras.ops.convert_to_numpy(opt._iterations))
    if done > 0 and "schedule" in table:   # never read as fresh: the table's schedule starts at t = 0
        skipped.append(("iterations", done, f"the optimizer has applied {done} updates: its {name} continues at "
                        f"t = {done}, while .run's schedule starts at t = 0; its own state (moments) is not read "
                        "either"))
    return table, skipped, notes if why is None else []
