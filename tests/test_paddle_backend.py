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
F_1E6 = 9.999999974752427e-07


def describe(run: dict, **task) -> dict:
    return backend.describe(backend.parse(run), Task.model_validate({**fidelity.BATTERY_TASK, **task})).neutral()


def test_round_trip_over_the_neutral_battery():
    expressed, reasons = fidelity.round_trip("paddle")
    assert (len(expressed), len(reasons)) == (80, 261)
    rows = {n.split("-")[0] for n in expressed}
    assert rows == {"sgd", "momentum", "nesterov", "adam", "adam_eps", "amsgrad", "rmsprop_in_sqrt", "rmsprop_velocity",
                    "rmsprop_velocity_centered", "adagrad", "adadelta", "adadelta_small_eps", "nadam", "nadam_keras",
                    "lamb", "adamax_decayed_eps"}
    assert all(r and "nearest" in r for r in reasons.values())
    # Adamax's epsilon on the decayed norm: the adamax_decayed_eps row; the other two placements are refused
    assert all("b2*u + eps" in r for n, r in reasons.items() if n.startswith(("adamax-", "adamax_outside-")))
    assert all("inside the trust ratio" in r for n, r in reasons.items() if n.startswith(("lamb_before", "lamb_after")))
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
              "one weight decay coefficient"),
             ({"name": "adamax", "lr": 0.1}, [], "b2*u + eps"),
             ({"name": "lamb", "lr": 0.1, "max_trust_ratio": 10.0}, [], "does not cap"),
             ({"name": "lion", "lr": 0.1}, [], "no lion"),
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


def test_realize_writes_lamb_and_trainable_false():
    def sem(opt, decay=(), frozen=(), clip=None):
        out = Semantics.model_validate({"optimizer": opt, "decay": list(decay), "frozen": list(frozen), "clip": clip})
        return backend.inherent(out, TASK)

    lamb = {"name": "lamb", "lr": 0.01, "betas": [0.875, 0.9375], "eps": 1e-6}
    decoupled = {"coupling": "decoupled", "coefficient": 0.4, "params": ["weight"]}
    run = backend.realize(sem(lamb, [decoupled]), TASK)
    assert (run["lamb_weight_decay"], run["always_adapt"], run["exclude_from_weight_decay_fn"]) == (
        0.4000000059604645, True, ["linear_0.b_0"])
    assert backend.realize(sem(lamb, [decoupled], ["bias"]), TASK) == {
        "optimizer": "Lamb", "learning_rate": 0.01, "beta1": 0.875, "beta2": 0.9375, "epsilon": F_1E6,
        "lamb_weight_decay": 0.4000000059604645, "bias_attr": {"trainable": False}}
    assert backend.realize(sem(lamb), TASK)["always_adapt"] is True   # the trust ratio without a decay
    frozen = backend.realize(sem({"name": "sgd", "lr": 0.05}, [{"coefficient": 0.3, "params": ["weight"]}], ["bias"],
                                 {"kind": "tensor_norm", "threshold": 0.1}), TASK)
    assert frozen == {"optimizer": "SGD", "learning_rate": 0.05, "weight_decay": 0.3, "bias_attr": {"trainable": False},
                      "grad_clip": {"ClipGradByGlobalNorm": 0.1}}
    both = backend.realize(sem({"name": "sgd", "lr": 0.05}, [{"coefficient": 0.3, "params": ["bias"]}], ["weight"]),
                           TASK)
    assert both["weight_attr"] == {"trainable": False} and both["weight_decay"] == 0.3
    with pytest.raises(Inexpressible, match="no gradient"):
        backend.realize(sem({"name": "sgd", "lr": 0.05}, [], ["bias"], {"kind": "global_norm", "threshold": 0.1}), TASK)


def test_trainable_false_describes_frozen_and_drops_its_decay():
    run = {"optimizer": "AdamW", "weight_decay": 0.4, "weight_attr": {"trainable": False},
           "grad_clip": {"ClipGradByGlobalNorm": 0.1}}
    out = describe(run)
    assert out["frozen"] == ["weight"] and [r["params"] for r in out["decay"]] == [["bias"]]
    assert out["clip"]["kind"] == "tensor_norm"   # the one trained tensor's norm
    with pytest.raises(Exception, match="nothing to train"):
        backend.parse({"optimizer": "SGD", "weight_attr": {"trainable": False}, "bias_attr": {"trainable": False}})


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


def test_float64_needs_float32_exact_betas_for_adamax_and_lamb_and_clip_by_norm_is_an_input_error():
    for run, key in (({"optimizer": "Adamax"}, "beta1"), ({"optimizer": "Lamb", "beta1": 0.875}, "beta2")):
        with pytest.raises(InputError, match=f"{key}.*float32 value"):
            describe(run, dtype="float64")
        assert describe(run)["optimizer"]["betas"][1] == 0.9990000128746033   # float32 runs: no such constraint
    assert describe({"optimizer": "Adamax", "beta1": 0.875}, dtype="float64")["optimizer"]["eps_placement"] == \
        "in_max_decayed"
    with pytest.raises(InputError, match="no float64 CPU kernel"):
        describe({"optimizer": "SGD", "grad_clip": {"ClipGradByNorm": 0.1}}, dtype="float64")
    assert describe({"optimizer": "SGD", "grad_clip": {"ClipGradByNorm": 0.1}})["clip"]["kind"] == "tensor_norm"


@pytest.mark.slow
@needs_paddle
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_battery(dtype):
    assert_battery_green("paddle", dtype, realized=80, inexpressible=261)
