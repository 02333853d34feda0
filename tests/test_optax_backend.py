"""The optax adapter: describe/realize round trip, chain reading, validation, measured JAX facts, battery."""

from __future__ import annotations

import importlib.util
import json
import textwrap

import pytest
from conftest import assert_battery_green, run_probe

from wdparity.judge import fidelity
from wdparity.spec.models import Semantics, Task
from wdparity_backends.optax_backend import JAX_L1_AT_ZERO, backend

HAVE_JAX = importlib.util.find_spec("jax") is not None and importlib.util.find_spec("optax") is not None
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax/optax not installed (pip install 'wdparity[jax]')")
TASK = Task.model_validate(fidelity.BATTERY_TASK)


def describe(run: dict, **task) -> dict:
    return backend.describe(backend.parse(run), Task.model_validate({**fidelity.BATTERY_TASK, **task})).neutral()


def rules(run: dict, **task) -> list[tuple]:
    return [(r["norm"], r["coupling"], r["coefficient"], r["scale"], r["params"])
            for r in describe(run, **task)["decay"]]


def adw(wd, mask=None):
    return {"transform": "add_decayed_weights", "weight_decay": wd, **({"mask": mask} if mask else {})}


ADAM, LR = {"transform": "scale_by_adam"}, {"transform": "scale_by_learning_rate", "learning_rate": 0.01}
BOTH = ["weight", "bias"]


# ---------------------------------------------------------------- realize / describe
def test_round_trip_over_the_neutral_battery():
    expressed, reasons = fidelity.round_trip("optax")
    assert (len(expressed), len(reasons)) == (178, 163)
    # exactly the semantics optax cannot hold, each with its nearest setting
    nearest = {"dampened": "dampening", "adam_uncorrected": "eps_placement", "amsgrad_uncorrected": "eps_placement",
               "amsgrad": 'nearest: amsgrad = "v_hat"', "adagrad": "nearest: eps_in_sqrt = true",
               "adagrad_lr_decay": "nearest: eps_in_sqrt = true", "adamax_outside": 'nearest: eps_placement = "in_max"',
               "nadam": "nearest: momentum_decay = None", "nadam_keras": "nearest: momentum_decay = None",
               "radam": 'nearest: eps_placement = "corrected"', "radam_corrected": "nearest: the same run in float64",
               "lamb_before": 'nearest: decay_placement = "after"',
               "adam_no_bias_correction": "bias_correction = true", "adamax_no_bias_correction": "bias_correction = true",
               "adamax_decayed_eps": 'nearest: eps_placement = "in_max"', "lamb_capped": "nearest",
               "adafactor": "nearest", "adafactor_momentum": "nearest", "adafactor_relative": "relative_step",
               "adafactor_before": "relative_step"}
    for name, reason in reasons.items():
        family, decay = name.split("-")[:2]
        if "-clip_global-" in name:   # torch's eps 1e-6: optax divides by the norm itself
            assert "nearest: eps = 0" in reason, (name, reason)
        elif "-clip_tensor-" in name:
            assert "optax has no tensor_norm clipping" in reason and "clip_by_block_rms" in reason, (name, reason)
        elif family in nearest:
            assert nearest[family] in reason, (name, reason)
        elif decay == "l1":
            assert "l1_at_zero = 1.0" in reason, (name, reason)
        else:
            assert 'nearest: momentum_form = "buffer"' in reason, (name, reason)
    assert {n for n in reasons if n.startswith("velocity-")} == {
        "velocity-decoupled-cosine-normal-half_mse", "velocity-decoupled_weight-constant-zeros-half_mse",
        "velocity-decoupled_schedule-step-normal-half_mse", "velocity-l1-constant-zeros-half_mse",
        "velocity-coupled_and_decoupled-step-zeros-half_mse"}
    assert {n.split("-")[1] for n in reasons if n.startswith("rmsprop_velocity")} == {
        "decoupled", "decoupled_weight", "coupled_and_decoupled"}
    assert {n.split("-")[0] for n in expressed} >= {"rmsprop_centered", "adagrad_in_sqrt", "adadelta", "lion",
                                                    "adamax", "nadam_constant", "amsgrad_v_hat"}
    # float64 runs: RAdam's rectification is exact there (float32: test_optax_facts.py, float32 rectification)
    expressed64, reasons64 = fidelity.round_trip("optax", "float64")
    assert (len(expressed64), len(reasons64)) == (184, 157)
    # clipping: global norm without eps and by value, before or after the coupled terms (test_optax_clipping.py)
    assert sum("-clip_" in n for n in expressed) == 27 and sum("-clip_" in n for n in reasons) == 18
    assert sum(n.startswith("radam_corrected-") for n in expressed64) == 6


def test_decay_position_decides_coupling():
    assert rules({"chain": [adw(0.3), ADAM, LR]}) == [("l2", "gradient", 0.3, None, BOTH)]
    assert rules({"chain": [ADAM, adw(0.3), LR]}) == [("l2", "decoupled", 0.3, "lr", BOTH)]
    # after the learning rate the term is not scaled by it: a negative weight_decay decays by |wd| per step
    assert rules({"chain": [ADAM, LR, adw(-0.004, ["bias"])]}) == [("l2", "decoupled", 0.004, "none", ["bias"])]
    # the AdamW paper's form: lr before the decay, the schedule after it
    paper = [ADAM, {"transform": "scale", "step_size": 0.01}, adw(0.5),
             {"transform": "scale_by_schedule", "init_value": -1.0}]
    assert rules({"chain": paper}) == [("l2", "decoupled", 0.5, "schedule", BOTH)]
    # a constant scale between the core and the decay changes the coefficient, not the truth
    half = [ADAM, {"transform": "scale", "step_size": 2.0}, adw(0.3), {"transform": "scale", "step_size": -0.005}]
    assert rules({"chain": half}) == [("l2", "decoupled", pytest.approx(0.0015), "none", BOTH)]


def test_describe_aliases_and_penalties():
    assert describe({"optimizer": "adamw", "learning_rate": 0.01})["decay"][0]["coefficient"] == 1e-4  # alias.py:605
    assert rules({"optimizer": "adamw", "learning_rate": 0.01, "weight_decay": 0.0}) == []
    assert rules({"optimizer": "adamw", "learning_rate": 0.01, "weight_decay": 0.1, "mask": ["weight"]}) == [
        ("l2", "decoupled", 0.1, "lr", ["weight"])]
    sem = describe({"optimizer": "sgd", "learning_rate": 0.1, "penalty": {"l1": 0.2, "l2": 0.5}})
    assert [(r["norm"], r["coefficient"], r["l1_at_zero"]) for r in sem["decay"]] == [("l2", 1.0, None),
                                                                                      ("l1", 0.2, JAX_L1_AT_ZERO)]
    velocity = describe({"chain": [adw(0.1), LR, {"transform": "trace", "decay": 0.9}]},
                        schedule={"kind": "step", "every": 2, "factor": 0.5})
    assert velocity["optimizer"]["momentum_form"] == "velocity" and velocity["optimizer"]["lr"] == 0.01
    buffer = describe({"chain": [{"transform": "trace", "decay": 0.9, "nesterov": True}, LR]})
    assert buffer["optimizer"] == {"name": "sgd", "lr": 0.01, "momentum": 0.9, "dampening": 0.0, "nesterov": True,
                                   "momentum_form": "buffer"}


def test_adam_bias_corrections_are_float32_in_float32_runs():
    """Without x64 (every float32 run) optax computes 1 - b^t in float32 from float32 betas, as Keras does;
    float64 runs (x64) compute them in float64. The float32 battery fails without this (max rel err 8e-6 against
    exact corrections, 2.6x the tolerance; measured)."""
    from wdparity.run.backend import Inexpressible

    for run in ({"optimizer": "adam", "learning_rate": 0.01}, {"chain": [adw(0.1), ADAM, LR]}):
        assert describe(run)["optimizer"]["bias_correction_dtype"] == "float32"
        assert "bias_correction_dtype" not in describe(run, dtype="float64")["optimizer"]
    assert "bias_correction_dtype" not in describe({"optimizer": "sgd", "learning_rate": 0.1})["optimizer"]
    adam = backend.parse({"optimizer": "adam", "learning_rate": 0.01})
    found = {dt: [f["id"] for f in backend.findings(adam, TASK.model_copy(update={"dtype": dt}))]
             for dt in ("float32", "float64")}
    assert "bias-correction-float32" in found["float32"] and "bias-correction-float32" not in found["float64"]
    exact = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.01}})
    with pytest.raises(Inexpressible, match='nearest: bias_correction_dtype = "float32"'):
        backend.realize(exact, TASK)
    assert backend.realize(exact, TASK.model_copy(update={"dtype": "float64"}))["optimizer"] == "adam"
    with pytest.raises(Inexpressible, match="nearest: exact bias corrections"):
        backend.realize(backend.inherent(exact, TASK), TASK.model_copy(update={"dtype": "float64"}))


@pytest.mark.parametrize("run, schedule, key, words", [
    ({"optimizer": "sgd", "learning_rate": 0.1, "nesterov": True}, None, "nesterov", "silently ignores"),
    ({"optimizer": "adam", "learning_rate": 0.1, "eps_root": 1e-8}, None, "eps_root", "must be 0.0"),
    ({"optimizer": "adam", "learning_rate": 0.1, "momentum": 0.9}, None, "momentum", "not a keyword of optax.adam"),
    ({"optimizer": "adamw", "learning_rate": 0.1, "mask": ["kernel"]}, None, "mask", "names no tensor"),
    ({"optimizer": "adamw", "learning_rate": 0.1, "mask": []}, None, "mask", "at least one tensor"),
    ({"chain": [adw(0.1, ["weights"]), ADAM, LR]}, None, "chain[0].mask", "names no tensor"),
    ({"chain": [{"transform": "scale_by_belief"}, LR]}, None, "chain[0].transform", "must be one of"),
    ({"chain": [ADAM, {"transform": "scale_by_learning_rate"}]}, None, "chain[1].learning_rate", "is required"),
    ({"chain": [ADAM, LR], "optimizer": "adam"}, None, "chain", "excludes `optimizer`"),
    ({"chain": [ADAM, LR], "learning_rate": 0.1}, None, "learning_rate", "set it on a transform"),
    ({"chain": [{"transform": "scale", "step_size": -0.1}, ADAM]}, None, "chain[0].transform", "after scale_by_adam"),
    ({"chain": [ADAM, ADAM, LR]}, None, "chain[1].transform", "another optimizer core"),
    ({"chain": [ADAM, LR, adw(0.01)]}, None, "chain[2].weight_decay", "weights grow"),
    ({"chain": [adw(-0.1), ADAM, LR]}, None, "chain[0].weight_decay", ">= 0"),
    ({"chain": [ADAM, {"transform": "scale", "step_size": 0.1}]}, None, "chain", "ascends"),
    ({"chain": [ADAM, {"transform": "scale", "step_size": -0.1}]}, "step", "chain", "silently ignored"),
    ({"chain": [ADAM, LR, {"transform": "scale_by_schedule", "init_value": 1.0}]}, "step", "chain[2].transform",
     "second time"),
    ({"chain": [{"transform": "scale", "step_size": -0.1}, adw(0.1), {"transform": "trace", "decay": 0.9}]}, None,
     "chain[1].transform", "before every scaling"),
])
def test_bad_runs_name_the_key(bad_run, run, schedule, key, words):
    err = bad_run("optax", run, 'schedule = { kind = "step", every = 2, factor = 0.5 }' if schedule else "")
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


# ---------------------------------------------------------------- measured facts about the installed JAX/optax
PROBE = textwrap.dedent("""
    import json, jax, numpy as np
    import jax.numpy as jnp, optax
    from wdparity.engine.schedules import multiplier
    assert jax.config.jax_enable_x64   # JAX_ENABLE_X64=1 at start-up (run_probe env)
    out = {"abs_grad_at_0": float(jax.grad(jnp.abs)(0.0)),
           "abs_grad_at_0_f32": float(jax.grad(jnp.abs)(jnp.float32(0)))}
    step, cos = {"kind": "step", "every": 3, "factor": 0.3}, {"kind": "cosine", "total": 7, "floor": 0.15}
    def err(s, sched):
        return max(abs(float(s(jnp.asarray(t, jnp.int32))) / (0.07 * multiplier(sched, t)) - 1) for t in range(25))
    out["exp_decay_python_float"] = err(optax.exponential_decay(0.07, 3, 0.3, staircase=True), step)
    out["exp_decay_typed"] = err(optax.exponential_decay(0.07, 3, jnp.asarray(0.3, jnp.float64), staircase=True), step)
    out["cosine"] = err(optax.cosine_decay_schedule(0.07, 7, alpha=0.15), cos)
    print(json.dumps(out))
""")


SHAPE_PROBE = textwrap.dedent("""
    import json, jax, numpy as np
    import jax.numpy as jnp, optax
    from wdparity.judge import fidelity
    from wdparity.engine.data import make_data
    from wdparity_backends import optax_backend
    out = {}
    # The params exactly as the adapter trains them (a Flax nn.Dense(1): kernel (d, 1), bias (1,)), and as
    # train() hands them to its Recorder.
    from wdparity.spec.models import Task
    task = Task.model_validate(fidelity.BATTERY_TASK).model_dump()
    data = make_data(task)
    params = optax_backend.dense_params(jnp, data, np.float64)
    out["param_shapes"] = {k: list(v.shape) for k, v in params.items()}
    seen = []
    from wdparity.run import adapter as template   # the adapter template's training loop records
    class Spy(template.Recorder):
        def record(self, t, w, b, check=True):
            seen.append((list(np.shape(w)), list(np.shape(b))))
            return super().record(t, w, b, check)
    template.Recorder = Spy
    job = {"task": task, "dtype": "float64",
           "run": {"optimizer": "adamw", "learning_rate": 0.01, "weight_decay": 0.5}}
    res = optax_backend.backend.train(job, data)
    out["recorded_shapes"] = sorted({json.dumps(s) for s in seen})
    out["result_shapes"] = {k: list(v.shape) for k, v in res.items() if k in ("weight", "bias")}
    # The common mask idiom `ndim > 1` (optax `masked` docstring, optax#25) on these params: compared with
    # adamw masked by name to the kernel only, and with no decay at all (adam).
    g = jax.tree.map(jnp.ones_like, params)
    def upd(tx):
        u, _ = tx.update(g, tx.init(params), params)
        return u
    ndim = upd(optax.adamw(0.1, weight_decay=0.5, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)))
    kernel = upd(optax.adamw(0.1, weight_decay=0.5, mask={"weight": True, "bias": False}))
    plain = upd(optax.adam(0.1))
    out["ndim_mask_selects"] = sorted(k for k in params if not np.array_equal(ndim[k], plain[k]))
    out["ndim_mask_equals_kernel_only"] = bool(all(np.array_equal(ndim[k], kernel[k]) for k in params))
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def probe():
    return run_probe(PROBE, env={"JAX_ENABLE_X64": "1"})


@pytest.fixture(scope="module")
def shapes():
    return run_probe(SHAPE_PROBE, env={"JAX_ENABLE_X64": "1"})


@needs_jax
def test_jax_abs_subgradient_at_zero_is_the_modelled_one(probe):
    assert probe["abs_grad_at_0"] == JAX_L1_AT_ZERO and probe["abs_grad_at_0_f32"] == JAX_L1_AT_ZERO


@needs_jax
def test_optax_schedules_match_the_neutral_multiplier(probe):
    assert probe["cosine"] < 1e-12
    assert probe["exp_decay_typed"] < 1e-12
    # finding: with a Python-float decay_rate the staircase schedule is computed in float32 under x64
    # (int32 count / int -> float32, jax/_src/dtypes.py:318); the adapter passes a typed decay_rate.
    assert probe["exp_decay_python_float"] > 1e-9


@needs_jax
def test_params_are_shaped_as_a_flax_dense_layer(shapes):
    """kernel (d, 1) and bias (1,), as nn.Dense(1) (and keras Dense(1)) users have them; recorded flat."""
    d = fidelity.BATTERY_TASK["num_inputs"]
    assert shapes["param_shapes"] == {"weight": [d, 1], "bias": [1]}
    assert shapes["recorded_shapes"] == [json.dumps([[d, 1], [1]])]
    steps = TASK.steps
    assert shapes["result_shapes"] == {"weight": [steps + 1, d], "bias": [steps + 1]}


@needs_jax
def test_ndim_mask_idiom_selects_the_kernel_only(shapes):
    """finding: the shape idiom `mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)` decays the (d, 1)
    kernel and not the (1,) bias: the same as mask = ["weight"] here (on a (d,) weight it would select nothing)."""
    assert shapes["ndim_mask_selects"] == ["weight"]
    assert shapes["ndim_mask_equals_kernel_only"]


# ---------------------------------------------------------------- the battery
@needs_jax
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_battery(dtype):
    assert_battery_green("optax", dtype, realized=178, inexpressible=163)


# ---------------------------------------------------------------- JAX's x64 flag: once per worker, at start-up
def test_float32_and_float64_runs_get_separate_workers(write_case):
    """JAX reads jax_enable_x64 once: float32 and float64 runs of one case go to two workers, each started
    with JAX_ENABLE_X64 fixed (harness: one worker per (backend, interpreter, env))."""
    from wdparity.run.cases import load_case

    path = write_case('title = "t"\n[runs.a]\nbackend = "optax"\noptimizer = "sgd"\nlearning_rate = 0.1\n'
                      '[runs.b]\nbackend = "optax"\noptimizer = "sgd"\nlearning_rate = 0.1\ndtype = "float64"\n'
                      '[runs.c]\nbackend = "optax"\noptimizer = "adam"\nlearning_rate = 0.1\ndtype = "float32"\n')
    runs = load_case(path).runs
    assert {n: r.env for n, r in runs.items()} == {"a": {"JAX_ENABLE_X64": "0"}, "b": {"JAX_ENABLE_X64": "1"},
                                                   "c": {"JAX_ENABLE_X64": "0"}}
    items = {n: r.work_item(n, "d") for n, r in runs.items()}
    assert items["a"].env == items["c"].env != items["b"].env
    for dtype, flag in (("float32", "0"), ("float64", "1")):
        task = TASK.model_copy(update={"dtype": dtype})
        assert backend.worker_env(backend.parse({"optimizer": "sgd", "learning_rate": 0.1}), task) == {
            "JAX_ENABLE_X64": flag}


X64_PROBE = textwrap.dedent("""
    import json, sys, jax
    from wdparity.judge import fidelity
    from wdparity.engine.data import make_data
    from wdparity.spec.models import Task
    from wdparity_backends import optax_backend, optax_batch
    task = Task.model_validate(fidelity.BATTERY_TASK).model_dump()
    data = make_data(task)
    out = {"flag": bool(jax.config.jax_enable_x64)}
    for dtype in ("float32", "float64"):
        job = {"task": task, "dtype": dtype, "run": {"optimizer": "sgd", "learning_rate": 0.05}}
        jobs = [job, {**job, "run": {"optimizer": "sgd", "learning_rate": 0.01}}]
        for name, call in (("train", lambda: optax_backend.backend.train(job, data)),
                           ("grid", lambda: optax_batch.train(jobs, data))):
            try:
                res = call()
                res = res if isinstance(res, dict) else res[0]
                out[f"{name}-{dtype}"] = str(res["weight"].dtype)
            except RuntimeError as exc:
                out[f"{name}-{dtype}"] = f"RuntimeError: {exc}"
    out["flag_after"] = bool(jax.config.jax_enable_x64)
    print(json.dumps(out))
""")


@needs_jax
@pytest.mark.parametrize("flag", ["0", "1"])
def test_train_refuses_a_job_whose_dtype_disagrees_with_the_worker_flag(flag):
    """train() (and the vmapped grid) never flips jax_enable_x64: a worker started with the wrong flag refuses
    the job instead of computing it in another precision."""
    out = run_probe(X64_PROBE, env={"JAX_ENABLE_X64": flag})
    right, wrong = ("float64", "float32") if flag == "1" else ("float32", "float64")
    assert out["flag"] is out["flag_after"] is (flag == "1")
    for path in ("train", "grid"):
        assert out[f"{path}-{right}"] == right
        refused = out[f"{path}-{wrong}"]
        assert refused.startswith("RuntimeError: ") and f"JAX_ENABLE_X64={flag} at start-up" in refused, refused


# ---------------------------------------------------------------- no silent defaults (issue 15)
class _RecordingOptax:
    """Stands in for the optax module: records every constructor call transformation() makes."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return (name, args, kwargs)
        return call


@pytest.mark.parametrize("run", [
    {"optimizer": "sgd", "learning_rate": 0.011, "momentum": 0.83, "nesterov": True},
    {"optimizer": "adam", "learning_rate": 0.012, "b1": 0.81, "b2": 0.991, "eps": 3e-7, "eps_root": 0.0,
     "nesterov": False},
    {"optimizer": "adamw", "learning_rate": 0.013, "b1": 0.82, "b2": 0.992, "eps": 4e-7, "weight_decay": 0.37,
     "mask": ["weight"]},
    {"chain": [adw(0.21, ["bias"]), {"transform": "scale_by_adam", "b1": 0.84, "b2": 0.993, "eps": 5e-7},
               {"transform": "scale", "step_size": -0.5}, adw(0.23),
               {"transform": "scale_by_learning_rate", "learning_rate": 0.014, "flip_sign": True},
               {"transform": "scale_by_schedule", "init_value": 0.7}]},
    {"chain": [{"transform": "trace", "decay": 0.85, "nesterov": True}, {"transform": "scale_by_learning_rate",
                                                                        "learning_rate": 0.015}]},
])
def test_every_accepted_keyword_reaches_optax(run):
    """No keyword the run model accepts is dropped on the way to optax (an accepted-but-ignored knob)."""
    from wdparity_backends.optax_backend import transformation

    fake = _RecordingOptax()
    transformation(fake, backend.parse(run), lambda init_value: None)
    passed = [v for _, args, kwargs in fake.calls for v in (*args, *kwargs.values())]
    items = run["chain"] if "chain" in run else [run]
    for item in items:
        for key, value in item.items():
            if key in ("transform", "optimizer"):
                continue
            if key == "mask":
                value = {k: k in value for k in BOTH}
            assert any(v == value and type(v) is type(value) for v in passed), (key, value, fake.calls)
    if "optimizer" in run:
        (name, _, kwargs), = fake.calls
        assert name == run["optimizer"] and set(kwargs) == set(run) - {"optimizer"}


def test_realize_refuses_frozen_tensors_naming_the_nearest_setting():
    from wdparity.run.backend import Inexpressible

    sem = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.01}, "frozen": ["bias"],
                                    "decay": [{"coupling": "decoupled", "coefficient": 0.1, "params": ["weight"]}]})
    with pytest.raises(Inexpressible) as err:
        backend.realize(sem, TASK)
    assert "freeze" in str(err.value) and "nearest: the same setting with ['bias'] trained" in str(err.value)
