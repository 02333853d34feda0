"""The mlx adapter: describe/realize (fast, no MLX needed) and the fidelity battery per dtype (slow)."""

import importlib.util

import pytest
from conftest import assert_battery_green

from wdparity.judge import fidelity
from wdparity.spec.errors import InputError
from wdparity.spec.models import Task
from wdparity_backends.mlx_backend import backend

HAVE_MLX = importlib.util.find_spec("mlx") is not None
NEEDS_MLX = pytest.mark.skipif(not HAVE_MLX, reason="mlx not installed")
REALIZED, INEXPRESSIBLE = 60, 281   # of the neutral battery's 341 cases (7 through MultiOptimizer)


def sem(run: dict, **task):
    t = Task.model_validate({**fidelity.BATTERY_TASK, **task})
    return backend.describe(backend.parse(run), t).neutral()


def test_realize_round_trips_every_expressible_neutral_case():
    expressed, reasons = fidelity.round_trip("mlx")
    assert all("nearest" in why for why in reasons.values())
    assert (len(expressed), len(reasons)) == (REALIZED, INEXPRESSIBLE)
    assert {name.split("-")[0] for name in expressed} == {
        "sgd", "momentum", "nesterov", "adam", "adam_eps", "rmsprop", "adagrad", "adadelta", "adadelta_small_eps",
        "adam_no_bias_correction", "adamax_no_bias_correction", "lion", "adafactor", "adafactor_relative"}
    multi = {name for name, run in expressed.items() if run["optimizer"] == "MultiOptimizer"}
    assert multi == {"sgd-coupled_groups-constant-zeros-mse", "momentum-coupled_groups-step-zeros-half_mse",
                     "nesterov-coupled_groups-constant-zeros-half_mse", "adam-decoupled_weight-step-zeros-mse",
                     "adam_eps-decoupled_weight-cosine-zeros-half_mse", "lion-decoupled_weight-constant-normal-half_mse",
                     "adam_no_bias_correction-decoupled_weight-constant-normal-half_mse"}
    # what MultiOptimizer cannot help: a decoupled decay not scaled by lr_t, a coupled group without weight_decay
    assert "scaled by lr_t" in reasons["adam-decoupled_none-constant-zeros-half_mse"]
    assert "one `penalty`" in reasons["adam-coupled_groups-cosine-zeros-half_mse"]


def test_adam_and_adamw_do_not_bias_correct_by_default():
    for name in ("Adam", "AdamW"):
        opt = sem({"optimizer": name, "learning_rate": 0.01})["optimizer"]
        assert opt["bias_correction"] is False and opt["eps_placement"] == "corrected"
    assert sem({"optimizer": "Adam", "learning_rate": 0.01, "bias_correction": True})["optimizer"]["bias_correction"]


def test_adamw_default_weight_decay_is_decoupled_and_lr_scaled():
    s = sem({"optimizer": "AdamW", "learning_rate": 0.01})
    assert s["decay"] == [{"norm": "l2", "coupling": "decoupled", "coefficient": 0.01, "scale": "lr",
                           "params": ["weight", "bias"], "l1_at_zero": None}]


def test_sgd_weight_decay_is_coupled_and_lion_decoupled():
    assert sem({"optimizer": "SGD", "learning_rate": 0.1, "weight_decay": 0.3})["decay"][0]["coupling"] == "gradient"
    assert sem({"optimizer": "Lion", "learning_rate": 0.1, "weight_decay": 0.3})["decay"][0]["scale"] == "lr"
    assert sem({"optimizer": "Lion", "learning_rate": 0.1})["decay"] == []


def test_sgd_dampening_is_the_undampened_run_at_a_smaller_lr():
    opt = sem({"optimizer": "SGD", "learning_rate": 0.1, "momentum": 0.9, "dampening": 0.25})["optimizer"]
    assert opt["dampening"] == 0.0 and opt["lr"] == pytest.approx(0.075, rel=1e-15)


def test_a_float64_run_of_python_floats_steps_with_the_float32_lr():
    opt = sem({"optimizer": "SGD", "learning_rate": 0.1}, dtype="float64")["optimizer"]
    assert opt["lr"] == 0.10000000149011612
    assert sem({"optimizer": "SGD", "learning_rate": 0.1, "hyperparameters_as_arrays": True},
               dtype="float64")["optimizer"]["lr"] == 0.1


def test_float64_schedules_and_bias_corrections_of_python_floats_are_refused():
    step = {"kind": "step", "every": 4, "factor": 0.5}
    with pytest.raises(InputError, match="hyperparameters_as_arrays"):
        sem({"optimizer": "SGD", "learning_rate": 0.1}, dtype="float64", schedule=step)
    with pytest.raises(InputError, match="hyperparameters_as_arrays"):
        sem({"optimizer": "Adam", "learning_rate": 0.1, "bias_correction": True}, dtype="float64")
    with pytest.raises(InputError, match="mx.cos"):
        sem({"optimizer": "SGD", "learning_rate": 0.1, "hyperparameters_as_arrays": True}, dtype="float64",
            schedule={"kind": "cosine", "total": 10})


@pytest.mark.parametrize("run, key", [
    ({"optimizer": "Muon", "learning_rate": 0.1}, "Muon"),
    ({"optimizer": "Adam"}, "learning_rate"), ({"optimizer": "Adam", "learning_rate": 0.1, "momentum": 0.9}, "momentum"),
    ({"optimizer": "SGD", "learning_rate": 0.1, "dampening": 0.1}, "dampening"),
    ({"optimizer": "RMSprop", "learning_rate": 0.1, "weight_decay": 0.1}, "weight_decay"),
    ({"optimizer": "adam", "learning_rate": 0.1}, "optimizer")])
def test_bad_runs_are_errors_naming_the_key(run, key):
    with pytest.raises(Exception, match=key):
        backend.parse(run)


def test_clip_grad_norm_is_the_global_norm_with_eps():
    s = sem({"optimizer": "SGD", "learning_rate": 0.1, "clip_grad_norm": 0.5})
    assert s["clip"] == {"kind": "global_norm", "threshold": 0.5, "eps": 1e-6, "position": "loss_gradient"}


@NEEDS_MLX
@pytest.mark.slow
def test_battery():
    assert_battery_green("mlx", "float32", realized=REALIZED, inexpressible=INEXPRESSIBLE)


@NEEDS_MLX
@pytest.mark.slow
def test_battery_float64():
    """The float64 battery without its cosine cases, which describe() refuses in float64 (MLX's float64 mx.cos is
    float32-accurate): every other case at 1e-9 of its own describe()."""
    cases, _ = fidelity.native_battery("mlx")
    cosine = {k for k, (task, _) in cases.items() if task.get("schedule", {}).get("kind") == "cosine"}
    assert len(cosine) == 22 and all(k.startswith("realized-") for k in cosine)
    t = Task.model_validate({**cases[min(cosine)][0], "dtype": "float64"})
    with pytest.raises(InputError, match="mx.cos"):
        backend.describe(backend.parse({k: v for k, v in cases[min(cosine)][1].items() if k != "backend"}), t)
    report = fidelity.run_battery({k: v for k, v in cases.items() if k not in cosine}, "float64")
    assert not {k: v.get("reason") for k, v in report.items() if v["status"] != "ok" or not v["holds"]}
    assert max(v["max_rel_err"] for v in report.values()) <= 1e-9
