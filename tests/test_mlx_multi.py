"""mlx.optimizers.MultiOptimizer as data: per-tensor decay described and realized, its refusals, and the MLX facts
(filters on nn.Linear's paths, each sub-optimizer's own step) measured on the installed release."""

import importlib.util
import re

import pytest
from conftest import detects_a_wrong_model
from pydantic import ValidationError

from wdparity.judge import fidelity
from wdparity.spec.errors import InputError
from wdparity.spec.models import Task
from wdparity_backends.mlx_backend import backend

NEEDS_MLX = pytest.mark.skipif(importlib.util.find_spec("mlx") is None, reason="mlx not installed")


def multi(*subs, **top):
    return {"optimizer": "MultiOptimizer", "optimizers": list(subs), **top}


def sem(run: dict, **task):
    t = Task.model_validate({**fidelity.BATTERY_TASK, **task})
    return backend.describe(backend.parse(run), t).neutral()


def test_adamw_on_the_weight_and_adam_on_the_bias_decays_the_weight_only():
    s = sem(multi({"optimizer": "AdamW", "learning_rate": 0.01, "weight_decay": 0.1, "params": ["weight"]},
                  {"optimizer": "Adam", "learning_rate": 0.01}))
    assert s["decay"] == [{"norm": "l2", "coupling": "decoupled", "coefficient": 0.1, "scale": "lr",
                           "params": ["weight"], "l1_at_zero": None}]
    assert s["optimizer"] == sem({"optimizer": "Adam", "learning_rate": 0.01})["optimizer"]
    # a fallback AdamW without weight_decay decays the bias by AdamW's default 0.01
    s = sem(multi({"optimizer": "AdamW", "learning_rate": 0.01, "weight_decay": 0.1, "params": ["weight"]},
                  {"optimizer": "AdamW", "learning_rate": 0.01}))
    assert [(r["coefficient"], r["params"]) for r in s["decay"]] == [(0.1, ["weight"]), (0.01, ["bias"])]


def test_sgd_per_tensor_weight_decay_is_coupled_per_tensor():
    s = sem(multi({"optimizer": "SGD", "learning_rate": 0.1, "weight_decay": 0.3, "params": ["bias"]},
                  {"optimizer": "SGD", "learning_rate": 0.1, "weight_decay": 0.05}))
    assert [(r["coupling"], r["coefficient"], r["params"]) for r in s["decay"]] == [
        ("gradient", 0.05, ["weight"]), ("gradient", 0.3, ["bias"])]


@pytest.mark.parametrize("run, key, match", [
    (multi({"optimizer": "SGD", "learning_rate": 0.1, "params": ["weights"]}, {"optimizer": "SGD", "learning_rate": 0.1}),
     "optimizers\\[0\\].params", "'weight', 'bias'"),
    (multi({"optimizer": "SGD", "learning_rate": 0.1, "params": ["weight"]},
           {"optimizer": "SGD", "learning_rate": 0.1, "params": ["weight"]}, {"optimizer": "SGD", "learning_rate": 0.1}),
     "optimizers\\[1\\].params", "weight goes to optimizers\\[0\\]"),
    (multi({"optimizer": "SGD", "learning_rate": 0.1, "params": ["weight", "bias"]},
           {"optimizer": "SGD", "learning_rate": 0.1}), "optimizers\\[1\\].params", "takes no parameter"),
    (multi({"optimizer": "SGD", "learning_rate": 0.1}, {"optimizer": "SGD", "learning_rate": 0.1}),
     "optimizers\\[0\\].params", "must name"),
    (multi({"optimizer": "SGD", "learning_rate": 0.1, "params": ["weight"]},
           {"optimizer": "SGD", "learning_rate": 0.1, "params": ["bias"]}), "optimizers\\[1\\].params", "fallback"),
    (multi({"optimizer": "SGD", "learning_rate": 0.1}, learning_rate=0.1), "learning_rate", "each of"),
    (multi(), "optimizers", "must list"),
    ({"optimizer": "SGD", "learning_rate": 0.1, "optimizers": []}, "optimizers", "MultiOptimizer's"),
    (multi({"optimizer": "SGD", "params": ["weight"]}, {"optimizer": "SGD", "learning_rate": 0.1}),
     "optimizers\\[0\\].learning_rate", "required"),
])
def test_bad_multi_optimizers_are_errors_naming_the_key(run, key, match):
    with pytest.raises(ValidationError) as exc:
        backend.parse(run)
    err = exc.value.errors()[0]
    assert re.fullmatch(key, err["ctx"]["key"]) and re.search(match, err["msg"]), err


@pytest.mark.parametrize("subs, differ", [
    (({"optimizer": "AdamW", "learning_rate": 0.01}, {"optimizer": "SGD", "learning_rate": 0.01}), "name"),
    (({"optimizer": "AdamW", "learning_rate": 0.01}, {"optimizer": "Adam", "learning_rate": 0.02}), "lr"),
    (({"optimizer": "AdamW", "learning_rate": 0.01}, {"optimizer": "Adam", "learning_rate": 0.01,
                                                      "bias_correction": True}), "bias_correction"),
])
def test_sub_optimizers_must_be_one_neutral_optimizer(subs, differ):
    run = multi({**subs[0], "params": ["weight"]}, subs[1])
    with pytest.raises(InputError, match="optimizers\\[1\\]") as exc:
        sem(run)
    assert differ in str(exc.value)


def test_realize_emits_multioptimizer_only_where_per_tensor_decay_needs_it():
    expressed, _ = fidelity.round_trip("mlx")
    run = expressed["adam_no_bias_correction-decoupled_weight-constant-normal-half_mse"]
    assert [(s["optimizer"], s.get("weight_decay"), s.get("params")) for s in run["optimizers"]] == [
        ("AdamW", 0.4, ["weight"]), ("Adam", None, None)]
    assert expressed["adam-decoupled-constant-normal-half_mse"]["optimizer"] == "AdamW"
    assert next(r for k, r in expressed.items() if k.startswith("sgd-coupled_weight"))["optimizer"] == "SGD"   # penalty


# ---------------------------------------------------------------- measured on MLX
@NEEDS_MLX
def test_filters_see_the_linear_paths_and_every_sub_optimizer_counts_each_update():
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    seen = []
    model = nn.Linear(3, 1)
    opt = optim.MultiOptimizer([optim.Adam(learning_rate=0.1), optim.SGD(learning_rate=0.1)],
                               [lambda path, array: seen.append(path) or path == "weight"])
    grads = {"weight": mx.ones((1, 3)), "bias": mx.ones((1,))}
    for _ in range(3):
        opt.update(model, grads)
    assert set(seen) == {"weight", "bias"}
    assert [s["step"].item() for s in opt.state["states"]] == [3, 3]
    assert set(opt.state["states"][0]) - {"step", "learning_rate"} == {"weight"}


@NEEDS_MLX
def test_the_battery_tells_weight_only_decay_from_decay_on_both():
    def both(sem):
        sem["decay"][0]["params"] = ["weight", "bias"]
        return sem
    detects_a_wrong_model(backend, "multi-adamw-weight-adam-bias-defaults", both)
