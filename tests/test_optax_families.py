"""The optax adapter's optimizer families (issue 17): the aliases realize() picks, what each alias and chain
means, the knobs refused by name, RAdam's float64 battery, and grids of the new aliases."""

from __future__ import annotations

import pytest
from conftest import run_probe
from optax_grid_probe import grid_probe
from test_optax_backend import ADAM, BOTH, LR, TASK, _RecordingOptax, adw, describe, needs_jax, rules

from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity_backends.optax_backend import backend, transformation


# ---------------------------------------------------------------- realize: the natural optax idiom
@pytest.mark.parametrize("optimizer, decay, expected", [
    ({"name": "adam", "lr": 0.01}, [{"coupling": "decoupled", "coefficient": 0.2, "params": ["weight"]}],
     {"optimizer": "adamw", "learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.2,
      "mask": ["weight"]}),
    ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, [],
     {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ({"name": "adam", "lr": 0.01, "amsgrad": "v_hat"}, [],
     {"optimizer": "amsgrad", "learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    ({"name": "nadam", "lr": 0.01, "momentum_decay": None}, [{"coupling": "decoupled", "coefficient": 0.1}],
     {"optimizer": "nadamw", "learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.1}),
    ({"name": "adamax", "lr": 0.01}, [{"coupling": "decoupled", "coefficient": 0.1, "params": ["bias"]}],
     {"optimizer": "adamaxw", "learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.1,
      "mask": ["bias"]}),
    ({"name": "rmsprop", "lr": 0.01, "rho": 0.9, "eps_in_sqrt": True, "momentum": 0.5, "momentum_form": "velocity"}, [],
     {"optimizer": "rmsprop", "learning_rate": 0.01, "decay": 0.9, "eps": 1e-8, "initial_scale": 0.0,
      "eps_in_sqrt": True, "bias_correction": False, "centered": False, "momentum": 0.5}),
    ({"name": "adagrad", "lr": 0.1, "eps": 1e-7, "eps_in_sqrt": True}, [],
     {"optimizer": "adagrad", "learning_rate": 0.1, "initial_accumulator_value": 0.0, "eps": 1e-7}),
    ({"name": "adadelta", "lr": 1.0}, [{"coupling": "gradient", "coefficient": 0.1, "params": ["weight"]}],
     {"optimizer": "adadelta", "learning_rate": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.1,
      "weight_decay_mask": ["weight"]}),
    ({"name": "lion", "lr": 1e-3}, [], {"optimizer": "lion", "learning_rate": 1e-3, "b1": 0.9, "b2": 0.99,
                                        "weight_decay": 0.0}),   # its default would decay by 1e-3
    # torch's RMSprop momentum (buffer form) is a chain: trace between scale_by_rms and the learning rate
    ({"name": "rmsprop", "lr": 0.01, "momentum": 0.9}, [],
     {"chain": [{"transform": "scale_by_rms", "decay": 0.99, "eps": 1e-8, "initial_scale": 0.0, "eps_in_sqrt": False,
                 "bias_correction": False}, {"transform": "trace", "decay": 0.9},
                {"transform": "scale_by_learning_rate", "learning_rate": 0.01}]}),
])
def test_realize_prefers_aliases(optimizer, decay, expected):
    sem = Semantics.model_validate({"optimizer": optimizer, "decay": decay})
    assert backend.realize(backend.inherent(sem, TASK), TASK) == expected   # float32: float32 bias corrections


def test_realize_refuses_adagrad_lr_decay_and_radam_strict_threshold():
    f64 = TASK.model_copy(update={"dtype": "float64"})
    for opt, words in (({"name": "adagrad", "lr": 0.1, "eps_in_sqrt": True, "lr_decay": 0.1}, "nearest: lr_decay = 0"),
                       ({"name": "radam", "lr": 0.1, "eps_placement": "corrected"}, "threshold_inclusive = true")):
        with pytest.raises(Inexpressible, match=words):
            backend.realize(Semantics.model_validate({"optimizer": opt}), f64)


# ---------------------------------------------------------------- describe: an alias is its chain
RMS = {"transform": "scale_by_rms"}


@pytest.mark.parametrize("run, optimizer, decay", [
    ({"optimizer": "lion", "learning_rate": 0.01}, {"name": "lion", "betas": [0.9, 0.99]},
     [("l2", "decoupled", 1e-3, "lr", BOTH)]),                                   # lion decays by default
    ({"optimizer": "adadelta", "learning_rate": 1.0, "weight_decay": 0.2, "weight_decay_mask": ["weight"]},
     {"name": "adadelta", "rho": 0.9, "eps": 1e-6}, [("l2", "gradient", 0.2, None, ["weight"])]),   # coupled
    ({"optimizer": "adagrad", "learning_rate": 0.1},
     {"name": "adagrad", "initial_accumulator": 0.1, "eps": 1e-7, "eps_in_sqrt": True}, []),
    ({"optimizer": "rmsprop", "learning_rate": 0.1, "momentum": 0.9},
     {"name": "rmsprop", "rho": 0.9, "eps": 1e-8, "eps_in_sqrt": True, "momentum": 0.9, "momentum_form": "velocity"}, []),
    ({"optimizer": "rmsprop", "learning_rate": 0.1, "momentum": 0.0}, {"name": "rmsprop", "momentum": 0.0,
                                                                        "momentum_form": "buffer"}, []),
    ({"chain": [RMS, {"transform": "trace", "decay": 0.9}, LR]}, {"momentum_form": "buffer", "momentum": 0.9}, []),
    ({"chain": [{"transform": "scale_by_stddev", "bias_correction": True}, LR, {"transform": "trace", "decay": 0.5},
                adw(-0.001)]}, {"centered": True, "bias_correction": True, "momentum_form": "velocity"},
     [("l2", "decoupled", 0.001, "none", BOTH)]),
    ({"optimizer": "adam", "learning_rate": 0.1, "nesterov": True}, {"name": "nadam", "momentum_decay": None}, []),
    ({"optimizer": "nadamw", "learning_rate": 0.1}, {"name": "nadam", "momentum_decay": None},
     [("l2", "decoupled", 1e-4, "lr", BOTH)]),
    ({"optimizer": "adamaxw", "learning_rate": 0.1}, {"name": "adamax", "eps_placement": "in_max"},
     [("l2", "decoupled", 1e-4, "lr", BOTH)]),
    ({"optimizer": "amsgrad", "learning_rate": 0.1}, {"name": "adam", "amsgrad": "v_hat"}, []),
    ({"optimizer": "radam", "learning_rate": 0.1, "threshold": 6.0},
     {"name": "radam", "eps_placement": "corrected", "threshold": 6.0, "threshold_inclusive": True}, []),
    ({"chain": [adw(0.1), {"transform": "scale_by_lion"}, adw(0.2), LR]}, {"name": "lion", "lr": 0.01},
     [("l2", "gradient", 0.1, None, BOTH), ("l2", "decoupled", 0.2, "lr", BOTH)]),
])
def test_describe_the_families(run, optimizer, decay):
    sem = describe(run, dtype="float64")
    assert {k: sem["optimizer"][k] for k in optimizer} == optimizer
    assert rules(run, dtype="float64") == decay



# ---------------------------------------------------------------- knobs outside the neutral model, by name
@pytest.mark.parametrize("run, key, words", [
    ({"optimizer": "yogi", "learning_rate": 0.1}, "optimizer", "modelled optax aliases"),
    ({"optimizer": "adadelta"}, "learning_rate", "climbs the loss"),
    ({"optimizer": "rmsprop", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, "nesterov", "neutral RMSprop"),
    ({"optimizer": "rmsprop", "learning_rate": 0.1, "nesterov": True}, "nesterov", "silently ignores"),
    ({"optimizer": "radam", "learning_rate": 0.1, "nesterov": True}, "nesterov", "Nesterov"),
    ({"optimizer": "amsgrad", "learning_rate": 0.1, "bias_correction_nu": False}, "bias_correction_nu", "true"),
    ({"optimizer": "nadam", "learning_rate": 0.1, "mu_dtype": "bfloat16"}, "mu_dtype", "must be unset"),
    ({"optimizer": "sgd", "learning_rate": 0.1, "accumulator_dtype": "bfloat16"}, "accumulator_dtype", "unset"),
    ({"optimizer": "rmsprop", "learning_rate": 0.1, "weight_decay": 0.1}, "weight_decay", "not a keyword"),
    ({"optimizer": "adadelta", "learning_rate": 0.1, "mask": ["weight"]}, "mask", "not a keyword"),
    ({"optimizer": "radam", "learning_rate": 0.1, "eps_root": 1e-8}, "eps_root", "must be 0.0"),
    ({"chain": [{"transform": "scale_by_lion", "mode": "smooth"}, LR]}, "chain[0].mode", 'must be "hard"'),
    ({"chain": [{"transform": "scale_by_lion", "smooth_beta": 2.0}, LR]}, "chain[0].smooth_beta", "ignored"),
    ({"chain": [{"transform": "scale_by_amsgrad", "eps_root": 0.1}, LR]}, "chain[0].eps_root", "must be 0.0"),
    ({"chain": [ADAM, {"transform": "trace", "decay": 0.9}, LR]}, "chain[1].transform", "optimizer core"),
    ({"chain": [{"transform": "trace", "decay": 0.9}, RMS, LR]}, "chain[1].transform", "optimizer core"),
    ({"chain": [RMS, adw(0.1), {"transform": "trace", "decay": 0.9}, LR]}, "chain[1].transform", "between"),
    ({"chain": [{"transform": "scale", "step_size": -0.1}, RMS]}, "chain[0].transform", "after scale_by_rms"),
    ({"chain": [RMS, LR, {"transform": "trace", "decay": 0.9, "nesterov": True}]}, "chain[2].nesterov",
     "Nesterov trace"),
])
def test_family_knobs_outside_the_model_name_the_key(bad_run, run, key, words):
    err = bad_run("optax", run, "")
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


# ---------------------------------------------------------------- float64 RAdam, grids
@needs_jax
@pytest.mark.slow
def test_radam_battery_in_float64():
    """RAdam is refused in float32 runs (its rectification is float32 there); in float64 it meets the reference,
    realized and at optax's own defaults (b2 = 0.999, threshold 5: the native extra the float32 battery cannot run)."""
    cases = {}
    for name, (task, sem) in fidelity.neutral_battery().items():
        t = Task.model_validate({**task, "dtype": "float64"})
        if name.startswith("radam_corrected-"):
            cases[name] = (task, {"backend": "optax", **backend.realize(backend.inherent(sem, t), t)})
    cases["native-radam-defaults"] = ({**fidelity.BATTERY_TASK, "schedule": {"kind": "step", "every": 4, "factor": 0.5}},
                                      {"backend": "optax", "optimizer": "radam", "learning_rate": 0.01})
    report = fidelity.run_battery(cases, "float64")
    assert len(report) == 7 and all(v["status"] == "ok" and v["holds"] for v in report.values()), report
    assert max(v["max_rel_err"] for v in report.values()) <= 1e-9


GRID_PROBE = grid_probe("""
    RUNS = [{"optimizer": "lion", "learning_rate": 0.01, "weight_decay": 0.3},
            {"optimizer": "adadelta", "learning_rate": 0.01, "weight_decay": 0.2},
            {"optimizer": "adamaxw", "learning_rate": 0.01, "weight_decay": 0.1},
            {"optimizer": "nadamw", "learning_rate": 0.01, "weight_decay": 0.1},
            {"optimizer": "rmsprop", "learning_rate": 0.01, "momentum": 0.5, "centered": True},
            {"optimizer": "amsgrad", "learning_rate": 0.01}, {"optimizer": "adagrad", "learning_rate": 0.01},
            {"optimizer": "radam", "learning_rate": 0.01, "b2": 0.99},
            {"optimizer": "adafactor", "learning_rate": 0.05, "momentum": 0.5, "dtype_momentum": "float64",
             "weight_decay_rate": 0.1, "weight_decay_mask": ["weight"]},
            {"chain": [{"transform": "add_decayed_weights", "weight_decay": 0.1}, {"transform": "scale_by_rms"},
                       {"transform": "trace", "decay": 0.9}, {"transform": "scale_by_learning_rate",
                                                              "learning_rate": 0.01}]}]
""")


@needs_jax
@pytest.mark.slow
@pytest.mark.parametrize("x64, tol", [("1", 1e-12), ("0", 1e-5)])
def test_the_families_batch_as_their_serial_runs(x64, tol):
    """Grids of the new aliases (lr and weight_decay traced) train as the serial runs do, to rounding."""
    for run, (keys, batched, err) in run_probe(GRID_PROBE, env={"JAX_ENABLE_X64": x64}).items():
        assert keys == 1 and batched and err <= tol, (run, err)



# ---------------------------------------------------------------- no silent defaults (issue 15)
@pytest.mark.parametrize("run", [
    {"optimizer": "rmsprop", "learning_rate": 0.011, "decay": 0.81, "eps": 3e-7, "initial_scale": 0.21,
     "eps_in_sqrt": False, "centered": True, "momentum": 0.51, "nesterov": False, "bias_correction": True},
    {"optimizer": "adagrad", "learning_rate": 0.012, "initial_accumulator_value": 0.22, "eps": 4e-7},
    {"optimizer": "adadelta", "learning_rate": 0.013, "rho": 0.83, "eps": 5e-7, "weight_decay": 0.23,
     "weight_decay_mask": ["bias"]},
    {"optimizer": "amsgrad", "learning_rate": 0.014, "b1": 0.84, "b2": 0.994, "eps": 6e-7, "eps_root": 0.0,
     "bias_correction_mu": True, "bias_correction_nu": True},
    {"optimizer": "nadamw", "learning_rate": 0.015, "b1": 0.85, "weight_decay": 0.25, "mask": ["weight"],
     "nesterov": True},
    {"optimizer": "adamaxw", "learning_rate": 0.016, "b2": 0.996, "eps": 7e-7, "weight_decay": 0.26},
    {"optimizer": "radam", "learning_rate": 0.017, "b1": 0.87, "threshold": 5.5, "nesterov": False},
    {"optimizer": "lion", "learning_rate": 0.018, "b1": 0.88, "b2": 0.98, "weight_decay": 0.28, "mask": ["bias"]},
    {"optimizer": "adafactor", "learning_rate": 0.019, "min_dim_size_to_factor": 64, "decay_rate": 0.79,
     "decay_offset": 0, "multiply_by_parameter_scale": False, "clipping_threshold": 1.9, "momentum": 0.59,
     "dtype_momentum": "float64", "weight_decay_rate": 0.29, "eps": 1e-29, "factored": False,
     "weight_decay_mask": ["bias"]},
    {"chain": [{"transform": "scale_by_stddev", "decay": 0.89, "eps": 8e-7, "initial_scale": 0.29,
                "eps_in_sqrt": False, "bias_correction": True}, {"transform": "trace", "decay": 0.59}, LR]},
    {"chain": [{"transform": "scale_by_rss", "initial_accumulator_value": 0.31, "eps": 9e-7}, LR]},
    {"chain": [{"transform": "scale_by_adamax", "b1": 0.71, "b2": 0.97, "eps": 2e-6}, LR]},
    {"chain": [{"transform": "scale_by_radam", "b1": 0.72, "b2": 0.96, "eps": 3e-6, "threshold": 4.2}, LR]},
    {"chain": [{"transform": "scale_by_amsgrad", "b1": 0.73, "b2": 0.95, "eps": 4e-6}, LR]},
    {"chain": [{"transform": "scale_by_lion", "b1": 0.74, "b2": 0.94, "mode": "hard", "smooth_beta": 1.0}, LR]},
    {"chain": [{"transform": "scale_by_adadelta", "rho": 0.75, "eps": 5e-6}, LR]},
    {"chain": [{"transform": "scale_by_adam", "b1": 0.76, "nesterov": True}, LR]},
    {"chain": [{"transform": "clip_by_global_norm", "max_norm": 0.77}, adw(0.11), ADAM, LR]},
    {"chain": [adw(0.12), {"transform": "clip", "max_delta": 0.078}, LR]},
])
def test_every_accepted_family_keyword_reaches_optax(run):
    """No keyword the run model accepts is dropped on the way to optax (an accepted-but-ignored knob)."""
    fake = _RecordingOptax()
    transformation(fake, backend.parse(run), lambda init_value: None)
    passed = [v for _, args, kwargs in fake.calls for v in (*args, *kwargs.values())]
    for item in run["chain"] if "chain" in run else [run]:
        for key, value in item.items():
            if key in ("transform", "optimizer"):
                continue
            if key in ("mask", "weight_decay_mask"):
                value = {k: k in value for k in BOTH}
            assert any(v == value and type(v) is type(value) for v in passed), (key, value, fake.calls)
    if "optimizer" in run:
        (name, _, kwargs), = fake.calls
        assert name == run["optimizer"] and set(kwargs) == set(run) - {"optimizer"}
