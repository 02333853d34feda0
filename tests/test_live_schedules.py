"""wdparity.describe() reads live learning-rate schedules: a torch.optim.lr_scheduler object and a Keras
LearningRateSchedule become the run table's `schedule` key, with the same neutral semantics as that setting written as
a TOML [runs.…] table, and the live object's learning rates over the task's steps are the neutral schedule's. Every
scheduler that is not a neutral schedule is listed by class with what it does and the nearest neutral one."""

from __future__ import annotations

import tomllib
import warnings

import numpy as np
import pytest

import wdparity
from wdparity.engine.schedules import multipliers
from wdparity.judge import fidelity
from wdparity.run.cases import load_run
from wdparity.spec.models import Task

N = Task().steps   # 200: the task describe() reads a live object against


def toml_semantics(text: str):
    return load_run("x", tomllib.loads(text)["runs"]["x"], Task(), "test", {}).semantics


def table_semantics(run: dict):
    """A run table's semantics under the task describe() reads against (a battery task's loss is no optimizer's)."""
    return load_run("x", run, Task(), "test", {}).semantics


def errs(live: np.ndarray, lr: float, schedule: dict) -> tuple[float, float]:
    """(max |live - lr*eta_t|/(lr*eta_t), max |live - lr*eta_t|/lr) over t = 0..len-1: relative to each value and to
    the base lr (the first grows where a cosine nears 0); a zero of the neutral schedule must be met exactly."""
    want = lr * multipliers(schedule, len(live))
    assert np.all(live[want == 0] == 0)
    diff = np.abs(live - want)
    return float(np.max(diff[want != 0] / want[want != 0])), float(np.max(diff) / lr)


def rel_err(live: np.ndarray, lr: float, schedule: dict) -> float:
    return errs(live, lr, schedule)[0]


# ---------------------------------------------------------------- torch
def torch_lrs(sched, steps: int) -> np.ndarray:
    """The lr each of `steps` optimizer steps uses (get_last_lr before the step), stepping as a user does."""
    out = []
    for _ in range(steps):
        out.append(float(sched.get_last_lr()[0]))
        sched.optimizer.step()
        sched.step()
    return np.array(out)


def _sgd(torch, lr=0.1):
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


# builder(S, opt) -> scheduler, the schedule key it means, and the bound on rel_err over the 200 steps in float64:
# measured StepLR 1.9e-16, ExponentialLR 8.8e-16 (the recursive lr*gamma), and the recursive CosineAnnealingLR
# (lr_scheduler.py:1448-1454) 1.24e-15 at T_max = 199 (4.1e-16 at 50, 1.38e-15 at 1000; 1.28e-15 in the SequentialLR)
TORCH_MODELLED = {
    "StepLR": (lambda S, o: S.StepLR(o, step_size=7, gamma=0.3), "{kind = \"step\", every = 7, factor = 0.3}", 1e-15),
    "ExponentialLR": (lambda S, o: S.ExponentialLR(o, gamma=0.95), "{kind = \"step\", every = 1, factor = 0.95}",
                      1e-15),
    "CosineAnnealingLR": (lambda S, o: S.CosineAnnealingLR(o, T_max=N - 1, eta_min=0.0),
                          f"{{kind = \"cosine\", total = {N - 1}, floor = 0.0}}", 2e-15),
    "SequentialLR": (lambda S, o: S.SequentialLR(o, [S.CosineAnnealingLR(o, T_max=50, eta_min=0.1 * 0.25),
                                                     S.ConstantLR(o, factor=0.25, total_iters=N + 1)], milestones=[50]),
                     "{kind = \"cosine\", total = 50, floor = 0.25}", 2e-15),
}


@pytest.mark.parametrize("name", sorted(TORCH_MODELLED))
def test_torch_scheduler_is_its_toml_schedule_and_its_lrs_are_the_neutral_ones(name):
    torch = pytest.importorskip("torch")
    build, schedule, bound = TORCH_MODELLED[name]
    model, opt = _sgd(torch)
    sched = build(torch.optim.lr_scheduler, opt)
    d = wdparity.describe(sched, model=model)
    assert d.unsupported == []
    assert d.semantics == toml_semantics(f'[runs.x]\nbackend = "torch"\noptimizer = "SGD"\nlr = 0.1\nmomentum = 0.9\n'
                                         f'schedule = {schedule}\n')
    assert rel_err(torch_lrs(sched, N), 0.1, d.semantics.schedule.model_dump()) <= bound


def _torch_optimizer(torch, run: dict):
    """The live optimizer of a realized torch table (None when the table holds more than the optimizer: a penalty)."""
    from wdparity_backends.torch_run import KEYWORDS

    name = run["optimizer"]
    if set(run) - {"backend", "optimizer", "param_groups", *KEYWORDS[name]}:
        return None, None
    model = torch.nn.Linear(3, 1)
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in run.items() if k in KEYWORDS[name]}
    groups = [{**g, "params": [getattr(model, p) for p in g["params"]]} for g in run.get("param_groups", [])]
    return model, getattr(torch.optim, name)(groups or model.parameters(), **kw)


def test_torch_schedulers_built_as_the_adapter_trains_the_battery_read_back():
    """Every realized torch battery case with a schedule: the scheduler torch_run.scheduler() trains it with, read
    live, is that case's table with its `schedule` key, and steps through the neutral lrs."""
    torch = pytest.importorskip("torch")
    from wdparity_backends.torch_run import scheduler

    cases, _ = fidelity.realized_cases("torch", fidelity.neutral_battery())
    read = 0
    for case, (task, run) in cases.items():
        t = Task.model_validate(task)
        model, opt = _torch_optimizer(torch, run)
        if t.schedule.kind == "constant" or opt is None:
            continue
        sched = scheduler(torch, opt, t.schedule.model_dump(), run["lr"], t.steps)
        d = wdparity.describe(sched, model=model)
        assert d.unsupported == [], case
        assert d.semantics == table_semantics({**run, "schedule": t.schedule.model_dump()}), case
        assert rel_err(torch_lrs(sched, t.steps), run["lr"], d.semantics.schedule.model_dump()) <= 1e-15, case
        read += 1
    assert read >= 40, read   # 45 at this writing: 20 StepLR, 25 cosines (SequentialLR, the battery runs 12 steps)


def test_torch_cosine_departs_where_the_note_says():
    """A plain CosineAnnealingLR rises again after T_max; SequentialLR's ConstantLR restores the base lr after its
    total_iters: each note names the step, and the live lrs leave the neutral cosine exactly there."""
    torch = pytest.importorskip("torch")
    S = torch.optim.lr_scheduler
    for build, first in ((lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.01), 11),
                         (lambda o: S.SequentialLR(o, [S.CosineAnnealingLR(o, 10, 0.01), S.ConstantLR(o, 0.1, 5)],
                                                   milestones=[10]), 15)):
        model, opt = _sgd(torch)
        d = wdparity.describe(build(opt), model=model)
        assert len(d.notes) == 1 and f"at most {first} steps" in d.notes[0] and f"t = {first}" in d.notes[0]
        live = torch_lrs(build(_sgd(torch)[1]), 30)
        want = 0.1 * multipliers(d.semantics.schedule.model_dump(), 30)
        assert int(np.argmax(np.abs(live - want) > 1e-12 * 0.1)) == first


def test_torch_scheduler_that_has_stepped_is_reported_not_read_as_fresh():
    torch = pytest.importorskip("torch")
    model, opt = _sgd(torch)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    torch_lrs(sched, 3)
    d = wdparity.describe(sched, model=model)
    assert d.run["lr"] == 0.1 and d.run["schedule"] == {"kind": "step", "every": 1, "factor": 0.9}
    (u,) = d.unsupported
    assert (u.key, u.value) == ("last_epoch", 3) and "ExponentialLR has stepped 3 times" in u.reason
    assert "t = 3" in u.reason


def test_torch_optimizer_under_a_scheduler_names_initial_lr():
    torch = pytest.importorskip("torch")
    model, opt = _sgd(torch)
    torch.optim.lr_scheduler.StepLR(opt, step_size=3)
    d = wdparity.describe(opt, model=model)
    assert [(u.key, u.value) for u in d.unsupported] == [("param_groups[0].initial_lr", 0.1)]
    assert "pass the scheduler to describe()" in d.unsupported[0].reason and "schedule" not in d.run


TORCH_REFUSED = {   # builder(S, opt) for each scheduler that is not a neutral schedule
    "LambdaLR": lambda S, o: S.LambdaLR(o, lambda t: 0.9 ** t),
    "MultiplicativeLR": lambda S, o: S.MultiplicativeLR(o, lambda t: 0.9),
    "MultiStepLR": lambda S, o: S.MultiStepLR(o, milestones=[3, 6, 10], gamma=0.5),
    "ConstantLR": lambda S, o: S.ConstantLR(o, factor=0.5, total_iters=4),
    "LinearLR": lambda S, o: S.LinearLR(o, start_factor=0.1, total_iters=4),
    "PolynomialLR": lambda S, o: S.PolynomialLR(o, total_iters=10, power=2.0),
    "CosineAnnealingWarmRestarts": lambda S, o: S.CosineAnnealingWarmRestarts(o, T_0=10),
    "OneCycleLR": lambda S, o: S.OneCycleLR(o, max_lr=1.0, total_steps=100),
    "CyclicLR": lambda S, o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1),
    "ReduceLROnPlateau": lambda S, o: S.ReduceLROnPlateau(o),
    "ChainedScheduler": lambda S, o: S.ChainedScheduler([S.StepLR(o, 3), S.ExponentialLR(o, 0.9)]),
    "SequentialLR": lambda S, o: S.SequentialLR(o, [S.LinearLR(o, 0.1, total_iters=5), S.CosineAnnealingLR(o, 20)],
                                                milestones=[5]),
    "StepLR": lambda S, o: S.StepLR(o, step_size=3, gamma=0.0),   # a factor the neutral step schedule refuses
    # a scheduler class of torch's that describe() does not know (a subclass of StepLR: its get_lr may differ)
    "MyStep": lambda S, o: type("MyStep", (S.StepLR,), {"__module__": S.__name__})(o, step_size=3),
}


@pytest.mark.parametrize("name", sorted(TORCH_REFUSED))
def test_torch_refusals_name_the_scheduler_what_it_does_and_the_nearest(name):
    torch = pytest.importorskip("torch")
    model, opt = _sgd(torch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ChainedScheduler / SequentialLR warn about their inner steps
        d = wdparity.describe(TORCH_REFUSED[name](torch.optim.lr_scheduler, opt), model=model)
    refusals = [u for u in d.unsupported if u.key == "scheduler"]
    assert [u.value for u in refusals] == [name]
    assert name in refusals[0].reason and "not a neutral schedule; nearest: " in refusals[0].reason
    assert "schedule" not in d.run and d.semantics.schedule.kind == "constant"
    assert {u.key for u in d.unsupported} <= {"scheduler"} | {f"param_groups[0].{k}" for k in opt.param_groups[0]}


def test_torch_multistep_nearest_steplr_parts_where_the_reason_says():
    torch = pytest.importorskip("torch")
    S = torch.optim.lr_scheduler
    model, opt = _sgd(torch)
    d = wdparity.describe(S.MultiStepLR(opt, milestones=[3, 6, 10], gamma=0.5), model=model)
    assert "StepLR(step_size=3, gamma=0.5), equal for t < 9" in d.unsupported[-1].reason
    multi = torch_lrs(S.MultiStepLR(_sgd(torch)[1], milestones=[3, 6, 10], gamma=0.5), 20)
    step = torch_lrs(S.StepLR(_sgd(torch)[1], step_size=3, gamma=0.5), 20)
    assert int(np.argmax(multi != step)) == 9


def test_torch_cosine_over_groups_of_different_lrs_is_refused():
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.01}], lr=0.1)
    d = wdparity.describe(torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.001), model=model)
    assert [u.value for u in d.unsupported if u.key == "scheduler"] == ["CosineAnnealingLR"]
    assert "floor eta_min/lr differs" in next(u.reason for u in d.unsupported if u.key == "scheduler")


# ---------------------------------------------------------------- keras
def _keras_model(keras, run: dict):
    reg = {k: keras.regularizers.L1L2(**run[k]) for k in ("kernel_regularizer", "bias_regularizer") if k in run}
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, **reg)])


def keras_lrs(schedule, steps: int) -> np.ndarray:
    """The schedule at t = 0..steps-1, as the optimizer calls it with its iterations (base_optimizer.py:777-781)."""
    import keras

    return np.array([float(keras.ops.convert_to_numpy(schedule(t))) for t in range(steps)])


def keras_float64(K) -> bool:
    """Whether this Keras backend computes a schedule of a float64 initial lr in float64."""
    import keras

    return keras.backend.standardize_dtype(K.ExponentialDecay(np.float64(0.1), 3, 0.5)(2).dtype) == "float64"


# builder(schedules, lr), the schedule key it means, (rel, abs/lr) bounds with a Python-float lr (Keras computes the
# schedule in float32) and with a float64 lr, N = 200 steps. Measured float32: 7.7e-8, 5.8e-7, abs 8.6e-8 (cosine
# to 0: relative to a value near 0 it reaches 1.8e-4), 1.6e-7; float64: 0, 2.3e-15 (decay_rate^(t/10) against
# (decay_rate^(1/10))^t), abs 2.8e-16 (relative 2.2e-13 at the last value above 0), 3.6e-16
KERAS_MODELLED = {
    "ExponentialDecay-staircase": (lambda K, lr: K.ExponentialDecay(lr, 7, 0.75, staircase=True),
                                   "{kind = \"step\", every = 7, factor = 0.75}", (2e-7, 2e-7), (1e-15, 1e-15)),
    "ExponentialDecay": (lambda K, lr: K.ExponentialDecay(lr, 10, 0.5),
                         f"{{kind = \"step\", every = 1, factor = {0.5 ** 0.1!r}}}", (1e-6, 2e-7), (5e-15, 1e-15)),
    "CosineDecay": (lambda K, lr: K.CosineDecay(lr, N - 1), f"{{kind = \"cosine\", total = {N - 1}}}",
                    (1.0, 2e-7), (1.0, 1e-15)),
    "CosineDecay-alpha": (lambda K, lr: K.CosineDecay(lr, 50, alpha=0.25),
                          "{kind = \"cosine\", total = 50, floor = 0.25}", (3e-7, 2e-7), (1e-15, 1e-15)),
}


@pytest.mark.parametrize("name", sorted(KERAS_MODELLED))
def test_keras_schedule_is_its_toml_schedule_and_its_lrs_are_the_neutral_ones(name):
    keras = pytest.importorskip("keras")
    build, schedule, bound32, bound64 = KERAS_MODELLED[name]
    K = keras.optimizers.schedules
    d = wdparity.describe(keras.optimizers.AdamW(learning_rate=build(K, 0.1), weight_decay=0.01),
                          model=_keras_model(keras, {}))
    assert d.unsupported == [] and d.run["schedule"] == d.semantics.schedule.model_dump()
    assert d.semantics == toml_semantics(f'[runs.x]\nbackend = "keras"\nkeras_backend = "{keras.config.backend()}"\n'
                                         f'optimizer = "AdamW"\nlearning_rate = 0.1\nweight_decay = 0.01\n'
                                         f'schedule = {schedule}\n')
    assert bool(d.notes) == (name == "ExponentialDecay")   # staircase=False: the rewrite at integer steps, said
    sched = d.semantics.schedule.model_dump()
    rel, base = errs(keras_lrs(build(K, 0.1), N), 0.1, sched)
    assert rel <= bound32[0] and base <= bound32[1]
    if keras_float64(K):   # TensorFlow; JAX without x64 and torch compute a float64 lr's schedule in float32
        rel, base = errs(keras_lrs(build(K, np.float64(0.1)), N), 0.1, sched)
        assert rel <= bound64[0] and base <= bound64[1]


def test_keras_schedules_built_as_the_adapter_trains_the_battery_read_back():
    """Every realized Keras battery case with a schedule, its optimizer given the schedule keras_backend.py trains
    it with (ExponentialDecay(staircase=True) / CosineDecay, keras_backend.py:214-221), read live, is that case's
    table with its `schedule` key."""
    keras = pytest.importorskip("keras")
    from wdparity_backends.keras_vocab import CLIP, OWN

    K = keras.optimizers.schedules
    cases, _ = fidelity.realized_cases("keras", fidelity.neutral_battery())
    read = 0
    for case, (task, run) in cases.items():
        sch, name = task["schedule"], run["optimizer"]
        kw = {k: v for k, v in run.items() if k in (*OWN[name], "weight_decay", *CLIP)}
        rest = set(run) - set(kw) - {"backend", "keras_backend", "optimizer", "learning_rate", "kernel_regularizer",
                                     "bias_regularizer", "exclude_from_weight_decay"}
        if sch["kind"] == "constant" or rest:
            continue
        lr = (K.ExponentialDecay(run["learning_rate"], sch["every"], sch["factor"], staircase=True)
              if sch["kind"] == "step" else K.CosineDecay(run["learning_rate"], sch["total"], alpha=sch["floor"]))
        opt = getattr(keras.optimizers, name)(learning_rate=lr, **kw)
        if "exclude_from_weight_decay" in run:
            opt.exclude_from_weight_decay(var_names=run["exclude_from_weight_decay"])
        d = wdparity.describe(opt, model=_keras_model(keras, run))
        assert d.unsupported == [] and d.notes == [], case
        want = {**run, "keras_backend": keras.config.backend(), "schedule": sch}
        assert d.semantics == table_semantics(want), case
        read += 1
    assert read >= 60, read   # 67 at this writing: 36 ExponentialDecay(staircase=True), 31 CosineDecay


KERAS_REFUSED = {   # builder(schedules) -> learning_rate, the class named, a phrase of the reason
    "warm-up": (lambda K: K.CosineDecay(0.1, 50, warmup_target=0.2, warmup_steps=5), "CosineDecay", "warm"),
    "inverse-time-staircase": (lambda K: K.InverseTimeDecay(0.1, 10, 0.5, staircase=True), "InverseTimeDecay",
                               "floor(t/decay_steps)"),
    "piecewise": (lambda K: K.PiecewiseConstantDecay([10, 20], [0.1, 0.05, 0.025]), "PiecewiseConstantDecay",
                  "boundaries"),
    "polynomial": (lambda K: K.PolynomialDecay(0.1, 100, end_learning_rate=0.01), "PolynomialDecay", "polynomial"),
    "restarts": (lambda K: K.CosineDecayRestarts(0.1, 20), "CosineDecayRestarts", "restarts"),
    "fractional-steps": (lambda K: K.ExponentialDecay(0.1, 2.5, 0.5, staircase=True), "ExponentialDecay",
                         "whole number"),
    "alpha-above-1": (lambda K: K.CosineDecay(0.1, 50, alpha=2.0), "CosineDecay", "less than or equal to 1"),
    "subclass": (lambda K: type("MySchedule", (K.LearningRateSchedule,), {"__call__": lambda self, t: 0.1})(),
                 "MySchedule", "opaque"),
}


@pytest.mark.parametrize("case", sorted(KERAS_REFUSED))
def test_keras_refusals_name_the_schedule_what_it_does_and_the_nearest(case):
    keras = pytest.importorskip("keras")
    build, name, phrase = KERAS_REFUSED[case]
    d = wdparity.describe(keras.optimizers.SGD(learning_rate=build(keras.optimizers.schedules)),
                          model=_keras_model(keras, {}))
    (u,) = d.unsupported
    assert (u.key, u.value) == ("learning_rate", name) and name in u.reason and phrase in u.reason
    assert "nearest: " in u.reason or "less than" in u.reason   # a value the spec refuses: its own reason
    assert "schedule" not in d.run and d.semantics.schedule.kind == "constant" and d.notes == []


def test_keras_inverse_time_decay_is_the_neutral_inverse_time_the_adapter_does_not_train():
    """lr/(1 + decay_rate*t/decay_steps) is the neutral inverse_time with rate = decay_rate/decay_steps, to 1e-15 in
    float64 (measured 2.6e-16; float32 9.7e-8); the keras adapter trains no inverse_time, so describe() refuses it."""
    keras = pytest.importorskip("keras")
    from wdparity.run import registry

    K = keras.optimizers.schedules
    if keras_float64(K):
        assert errs(keras_lrs(K.InverseTimeDecay(np.float64(0.1), 10, 0.5), N), 0.1,
                    {"kind": "inverse_time", "rate": 0.05}) <= (1e-15, 1e-15)
    assert errs(keras_lrs(K.InverseTimeDecay(0.1, 10, 0.5), N), 0.1, {"kind": "inverse_time", "rate": 0.05}) <= (
        2e-7, 2e-7)
    d = wdparity.describe(keras.optimizers.SGD(learning_rate=K.InverseTimeDecay(0.1, 10, 0.5)),
                          model=_keras_model(keras, {}))
    if "inverse_time" in registry.get("keras").schedules:   # the day the adapter trains it, describe() reads it
        assert d.unsupported == [] and d.run["schedule"] == {"kind": "inverse_time", "rate": 0.05}
    else:
        (u,) = d.unsupported
        assert (u.key, u.value) == ("learning_rate", "InverseTimeDecay") and "rate = decay_rate/decay_steps = 0.05" \
            in u.reason and "nearest: " in u.reason


def test_keras_callable_learning_rate_is_listed():
    keras = pytest.importorskip("keras")

    def lr():
        return 0.1

    d = wdparity.describe(keras.optimizers.SGD(learning_rate=lr), model=_keras_model(keras, {}))
    assert [(u.key, u.value) for u in d.unsupported] == [("learning_rate", "function")]
    assert "callable" in d.unsupported[0].reason and "learning_rate" not in d.run


def test_keras_optimizer_that_has_stepped_is_reported_not_read_as_fresh():
    keras = pytest.importorskip("keras")
    model = _keras_model(keras, {})
    opt = keras.optimizers.SGD(learning_rate=keras.optimizers.schedules.ExponentialDecay(0.1, 3, 0.5, staircase=True))
    kernel = model.layers[-1].kernel
    for _ in range(2):
        opt.apply_gradients([(keras.ops.convert_to_tensor(np.zeros(kernel.shape, "float32")), kernel)])
    d = wdparity.describe(opt, model=model)
    assert d.run["schedule"] == {"kind": "step", "every": 3, "factor": 0.5}
    (u,) = d.unsupported
    assert (u.key, u.value) == ("iterations", 2) and "continues at t = 2" in u.reason


def test_keras_tensorflow_rounds_a_python_decay_rate_to_float32():
    """Finding: on TensorFlow, ExponentialDecay casts decay_rate with ops.cast, which converts a Python float to a
    float32 tensor first (learning_rate_schedule.py:169, backend/tensorflow/core.py:210-218), so even a float64
    schedule decays by float32(0.3): 1.1e-6 off 0.3^(t//7) at t = 199, exactly float32(0.3)^(t//7)."""
    keras = pytest.importorskip("keras")
    if keras.config.backend() != "tensorflow":
        pytest.skip("a TensorFlow-backend finding")
    live = keras_lrs(keras.optimizers.schedules.ExponentialDecay(np.float64(0.1), 7, 0.3, staircase=True), N)
    assert errs(live, 0.1, {"kind": "step", "every": 7, "factor": 0.3})[0] > 1e-6
    assert errs(live, 0.1, {"kind": "step", "every": 7, "factor": float(np.float32(0.3))})[0] <= 1e-15
