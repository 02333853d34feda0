"""The optax adapter: describe/realize round trip, chain reading, validation, measured JAX facts, battery."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from wdparity import fidelity
from wdparity.spec import Semantics, Task
from wdparity_backends.optax_backend import JAX_L1_AT_ZERO, backend
from conftest import assert_battery_green, run_probe

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
    assert len(expressed) == 50
    # exactly the semantics optax cannot hold, each with its nearest setting
    assert all("dampening" in r for n, r in reasons.items() if n.startswith("dampened-"))
    assert all("eps_placement" in r for n, r in reasons.items() if n.startswith("adam_uncorrected-"))
    assert all("l1_at_zero = 1.0" in r for n, r in reasons.items()
               if "-l1-" in n and not n.startswith(("damp", "adam_unc")))
    assert {n for n in reasons if n.startswith("velocity-")} == {
        "velocity-decoupled-cosine-normal-half_mse", "velocity-decoupled_weight-constant-zeros-half_mse",
        "velocity-decoupled_schedule-step-normal-half_mse", "velocity-l1-constant-zeros-half_mse",
        "velocity-coupled_and_decoupled-step-zeros-half_mse"}


def test_realize_prefers_aliases():
    sem = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.01},
                                    "decay": [{"coupling": "decoupled", "coefficient": 0.2, "params": ["weight"]}]})
    assert backend.realize(sem, TASK) == {"optimizer": "adamw", "learning_rate": 0.01, "b1": 0.9, "b2": 0.999,
                                          "eps": 1e-8, "weight_decay": 0.2, "mask": ["weight"]}
    sem = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}})
    assert backend.realize(sem, TASK) == {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}


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


@pytest.mark.parametrize("run, schedule, key, words", [
    ({"optimizer": "sgd", "learning_rate": 0.1, "nesterov": True}, None, "nesterov", "silently ignores"),
    ({"optimizer": "adam", "learning_rate": 0.1, "eps_root": 1e-8}, None, "eps_root", "must be 0.0"),
    ({"optimizer": "adam", "learning_rate": 0.1, "nesterov": True}, None, "nesterov", "NAdam"),
    ({"optimizer": "adam", "learning_rate": 0.1, "momentum": 0.9}, None, "momentum", "not a keyword of optax.adam"),
    ({"optimizer": "adamw", "learning_rate": 0.1, "mask": ["kernel"]}, None, "mask", "names no tensor"),
    ({"optimizer": "adamw", "learning_rate": 0.1, "mask": []}, None, "mask", "at least one tensor"),
    ({"chain": [adw(0.1, ["weights"]), ADAM, LR]}, None, "chain[0].mask", "names no tensor"),
    ({"chain": [{"transform": "scale_by_rms"}, LR]}, None, "chain[0].transform", "must be one of"),
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
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, optax
    from wdparity.schedules import multiplier
    out = {"abs_grad_at_0": float(jax.grad(jnp.abs)(0.0)),
           "abs_grad_at_0_f32": float(jax.grad(jnp.abs)(jnp.float32(0)))}
    step, cos = {"kind": "step", "every": 3, "factor": 0.3}, {"kind": "cosine", "total": 7, "floor": 0.15}
    def err(s, sched):
        return max(abs(float(s(jnp.asarray(t, jnp.int32))) / (0.07 * multiplier(sched, t)) - 1) for t in range(25))
    out["exp_decay_python_float"] = err(optax.exponential_decay(0.07, 3, 0.3, staircase=True), step)
    out["exp_decay_typed"] = err(optax.exponential_decay(0.07, 3, jnp.asarray(0.3, jnp.float64), staircase=True), step)
    out["cosine"] = err(optax.cosine_decay_schedule(0.07, 7, alpha=0.15), cos)
    # the common mask idiom `ndim > 1` (optax masked docstring) matches no tensor of {weight (d,), bias ()}
    params = {"weight": jnp.ones(3), "bias": jnp.asarray(1.0)}
    g = {"weight": jnp.ones(3), "bias": jnp.asarray(1.0)}
    ndim = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    a, b = optax.adamw(0.1, weight_decay=0.5, mask=ndim), optax.adam(0.1)
    ua, _ = a.update(g, a.init(params), params)
    ub, _ = b.update(g, b.init(params), params)
    out["ndim_mask_is_noop"] = bool(all(np.array_equal(ua[k], ub[k]) for k in params))
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def probe():
    return run_probe(PROBE)


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
def test_ndim_mask_idiom_silently_matches_nothing(probe):
    assert probe["ndim_mask_is_noop"]


# ---------------------------------------------------------------- the battery
@needs_jax
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_battery(dtype):
    assert_battery_green("optax", dtype, realized=50, inexpressible=30)
