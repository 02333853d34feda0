"""The paddle adapter: describe/realize round trip, Paddle idioms, validation, the battery (facts: test_paddle_facts.py)."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import assert_battery_green

from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError
from wdparity.spec.models import Semantics, Task
from wdparity_backends.paddle_backend import backend

needs_paddle = pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddlepaddle not installed")
TASK = Task.model_validate(fidelity.BATTERY_TASK)
F32_09 = 0.8999999761581421


def describe(run: dict, **task) -> dict:
    return backend.describe(backend.parse(run), Task.model_validate({**fidelity.BATTERY_TASK, **task})).neutral()


def test_round_trip_over_the_neutral_battery():
    expressed, reasons = fidelity.round_trip("paddle")
    assert (len(expressed), len(reasons)) == (71, 234)
    rows = {n.split("-")[0] for n in expressed}
    assert rows == {"sgd", "momentum", "nesterov", "adam", "adam_eps", "amsgrad", "rmsprop_in_sqrt", "rmsprop_velocity",
                    "rmsprop_velocity_centered", "adagrad", "adadelta", "adadelta_small_eps", "nadam", "nadam_keras"}
    assert all(r for r in reasons.values())
    assert all("nearest" in r for n, r in reasons.items() if not n.startswith(("adamax", "lamb", "lion")))
    assert all("decoupled weight decay only in AdamW" in r for n, r in reasons.items()
               if n.startswith(("sgd-decoupled", "momentum-decoupled", "adagrad-decoupled")) and "clip" not in n)
    assert all("RAdam computes rho_t by a recursion" in r for n, r in reasons.items() if n.startswith("radam-"))


def test_realize_writes_paddle_idioms():
    sem = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.05}, "decay": [{"coefficient": 0.3}]})
    assert backend.realize(sem, TASK) == {"optimizer": "SGD", "learning_rate": 0.05, "weight_decay": 0.3}
    groups = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.05},
                                       "decay": [{"coefficient": 0.3, "params": ["weight"]},
                                                 {"coefficient": 0.05, "params": ["bias"]}]})
    assert backend.realize(groups, TASK) == {"optimizer": "SGD", "learning_rate": 0.05,
                                             "weight_attr": {"regularizer": {"L2Decay": 0.3}},
                                             "bias_attr": {"regularizer": {"L2Decay": 0.05}}}
    adamw = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.01},
                                      "decay": [{"coupling": "decoupled", "coefficient": 0.4, "params": ["weight"]}]})
    native = backend.inherent(adamw, TASK)
    run = backend.realize(native, TASK)
    assert run["optimizer"] == "AdamW" and run["apply_decay_param_fun"] == ["linear_0.w_0"]
    assert run["weight_decay"] == 0.4000000059604645   # AdamW's coeff is a C float
    mom = backend.inherent(Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.03, "momentum": 0.9}}), TASK)
    assert backend.realize(mom, TASK) == {"optimizer": "Momentum", "learning_rate": 0.03, "momentum": F32_09}


def test_realize_refuses_what_paddle_cannot_do():
    cases = [({"name": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.3}, [], "no dampening"),
             ({"name": "sgd", "lr": 0.1}, [{"coupling": "decoupled", "coefficient": 0.1}], "only in AdamW"),
             ({"name": "adam", "lr": 0.1}, [{"coupling": "decoupled", "coefficient": 0.1, "scale": "none"}],
              "scaled by the scheduled lr"),
             ({"name": "adam", "lr": 0.1}, [{"coupling": "decoupled", "coefficient": 0.1},
                                            {"coupling": "decoupled", "coefficient": 0.2, "params": ["weight"]}],
              "one weight_decay"),
             ({"name": "adamax", "lr": 0.1}, [], "b2*u inside the max"),
             ({"name": "rmsprop", "lr": 0.1}, [], "epsilon inside the root")]
    for opt, decay, words in cases:
        with pytest.raises(Inexpressible) as err:
            backend.realize(Semantics.model_validate({"optimizer": opt, "decay": decay}), TASK)
        assert words in str(err.value), str(err.value)


def test_describe_defaults_couplings_and_float32_hyperparameters():
    assert describe({"optimizer": "Momentum"})["optimizer"] == {"name": "sgd", "lr": 1e-3, "momentum": F32_09,
                                                                "dampening": 0.0, "nesterov": False,
                                                                "momentum_form": "buffer"}
    assert describe({"optimizer": "SGD", "weight_decay": 0.3})["decay"][0]["coefficient"] == 0.3
    assert describe({"optimizer": "Momentum", "weight_decay": 0.3})["decay"][0]["coefficient"] == 0.30000001192092896
    aw = describe({"optimizer": "AdamW"})["decay"]
    assert [(r["coupling"], r["coefficient"], r["scale"]) for r in aw] == [("decoupled", 0.009999999776482582, "lr")]
    rms = describe({"optimizer": "RMSProp", "learning_rate": 0.01})["optimizer"]
    assert (rms["rho"], rms["eps"], rms["eps_in_sqrt"]) == (0.949999988079071, 9.999999974752427e-07, True)
    over = describe({"optimizer": "SGD", "weight_decay": 0.3, "bias_attr": {"regularizer": {"L1Decay": 0.05}}})
    assert [(r["norm"], r["coefficient"], r["params"]) for r in over["decay"]] == [
        ("l2", 0.3, ["weight"]), ("l1", 0.05, ["bias"])]
    clip = describe({"optimizer": "SGD", "weight_decay": 0.3, "grad_clip": {"ClipGradByGlobalNorm": 0.1}})["clip"]
    assert clip == {"kind": "global_norm", "threshold": 0.1, "eps": 0.0, "position": "loss_gradient"}


@pytest.mark.parametrize("run, words", [
    ({"optimizer": "RMSProp"}, "learning_rate"),
    ({"optimizer": "SGD", "momentum": 0.9}, "momentum"),
    ({"optimizer": "AdamW", "lr_ratio": 0.5}, "lr_ratio"),
    ({"optimizer": "AdamW", "apply_decay_param_fun": ["fc.w_0"]}, "linear_0.w_0"),
    ({"optimizer": "Adam", "multi_precision": True}, "multi_precision"),
    ({"optimizer": "Rprop"}, "optimizer"),
    ({"optimizer": "SGD", "weight_decay": {"L2Decay": 0.1, "L1Decay": 0.1}}, "L2Decay"),
])
def test_bad_runs_name_the_key(run, words):
    with pytest.raises(Exception) as err:
        backend.parse(run)
    assert words in str(err.value)


def test_unmodelled_classes_and_float64_clip_by_norm_are_input_errors():
    for opt in ("Adamax", "Lamb"):
        with pytest.raises(InputError, match="not modelled"):
            describe({"optimizer": opt})
    with pytest.raises(InputError, match="no float64 CPU kernel"):
        describe({"optimizer": "SGD", "grad_clip": {"ClipGradByNorm": 0.1}}, dtype="float64")
    assert describe({"optimizer": "SGD", "grad_clip": {"ClipGradByNorm": 0.1}})["clip"]["kind"] == "tensor_norm"


@pytest.mark.slow
@needs_paddle
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_battery(dtype):
    assert_battery_green("paddle", dtype, realized=71, inexpressible=234)
