"""The Keras adapter's vocabulary: describe/realize round trip over the neutral battery, each keras.optimizers class
described and realized, validation naming the key, and the refusals (what Keras has that the neutral model lacks).

Pure: nothing here imports Keras (the measured facts are tests/test_keras_facts.py, the battery
tests/test_keras_backend.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity_backends.keras_backend import KERAS_BACKENDS, L1_AT_ZERO, backend, precision_findings

TASK = Task.model_validate(fidelity.BATTERY_TASK)
BOTH = ["weight", "bias"]
f32 = lambda x: float(np.float32(x))   # noqa: E731


def describe(run: dict, **task) -> dict:
    return backend.describe(backend.parse(run), Task.model_validate({**fidelity.BATTERY_TASK, **task})).neutral()


def rules(run: dict, **task) -> list[tuple]:
    return [(r["norm"], r["coupling"], r["coefficient"], r["scale"], r["params"]) for r in describe(run, **task)["decay"]]


def realize(optimizer: dict, decay: list | None = None, **task) -> dict:
    t = Task.model_validate({**fidelity.BATTERY_TASK, **task})
    sem = Semantics.model_validate({"optimizer": optimizer, "decay": decay or []})
    return backend.realize(backend.inherent(sem, t), t)


# ---------------------------------------------------------------- realize / describe
def test_round_trip_over_the_neutral_battery():
    expressed, reasons = {}, {}
    for dtype in ("float32", "float64"):   # inherent(): float32 bias corrections for Adam in float32 runs
        expressed[dtype], why = fidelity.round_trip("keras", dtype)
        reasons.update(why)
    assert len(expressed["float32"]) == 104 and set(expressed["float32"]) == set(expressed["float64"])
    assert {r["keras_backend"] for r in expressed["float32"].values()} == {"tensorflow"}
    # in float64 TensorFlow rounds momentum/weight_decay/factors/Lion's betas/Adagrad's accumulator to float32:
    # realize moves to an exact backend
    assert expressed["float64"]["velocity-coupled_weight-constant-normal-half_mse"]["keras_backend"] == "jax"
    assert expressed["float64"]["lion-coupled-constant-zeros-half_mse"]["keras_backend"] == "jax"
    assert expressed["float64"]["sgd-none-constant-normal-half_mse"]["keras_backend"] == "tensorflow"
    realized = {n.split("-")[0] for n in expressed["float32"]}
    assert realized == {"sgd", "velocity", "adam_uncorrected", "rmsprop_in_sqrt", "amsgrad_uncorrected",
                        "rmsprop_velocity", "rmsprop_velocity_centered", "adagrad_in_sqrt", "adadelta",
                        "adadelta_small_eps", "adamax_outside", "nadam_keras", "lion", "lamb_before",
                        "adafactor_relative", "adafactor_before"}

    def because(prefixes, words):
        clip = any("clip" in p for p in prefixes)   # the clip cases have reasons of their own
        mine = [r for n, r in reasons.items() if n.startswith(prefixes) and ("-clip_" in n) == clip]
        assert mine and all(words in r for r in mine), (prefixes, words)
    because(("dampened-",), "dampening")
    because(("momentum-", "nesterov-"), "velocity form")
    because(("adam-", "adam_eps-", "amsgrad-", "amsgrad_v_hat-"), "before the bias correction")
    because(("sgd-", "velocity-", "adam_uncorrected-", "rmsprop_in_sqrt-"), "scaled by the scheduled learning rate")
    because(("rmsprop-", "rmsprop_centered-"), "epsilon inside the root")
    because(("adam_no_bias_correction-", "adamax_no_bias_correction-"), "always bias-corrects")
    because(("rmsprop_initial_scale-",), "velocity starts at 0")
    because(("rmsprop_bias_corrected-",), "no bias correction")
    because(("adagrad-", "adagrad_lr_decay-"), "epsilon inside the root")
    because(("adamax-",), "outside the max")
    because(("nadam-", "nadam_constant-"), "0.96^t")
    because(("radam-", "radam_corrected-"), "not 'radam'")
    because(("lamb-", "lamb_after-"), "decays w before the trust ratio")
    # clipping: Keras's clips have no eps, clip the loss's gradient (regularizers included) before any optimizer term
    clipped = {n.split("-")[2] for n in expressed["float32"] if "-clip_" in n}
    assert clipped == {"clip_global_exact", "clip_tensor", "clip_value"}
    assert {n.split("-")[1] for n in expressed["float32"] if "-clip_" in n} == {"penalty", "decoupled"}
    because(tuple(f"momentum-{d}-clip_" for d in fidelity.CLIP_DECAYS), "velocity form")   # the optimizer first
    because(tuple(f"adam-{d}-clip_" for d in fidelity.CLIP_DECAYS), "before the bias correction")
    because(("sgd-penalty-clip_global-", "sgd-decoupled-clip_global-"), "adds no eps")
    because(("sgd-penalty-clip_after_decay", "sgd-decoupled-clip_after_decay"), "identical here")
    because(("sgd-coupled-clip_after_decay",), "the same clip(g + lambda*w) stated the other way")
    because(("sgd-coupled-clip_global_exact", "sgd-coupled-clip_tensor", "sgd-coupled-clip_value"),
            "no coupled decay outside the loss")
    assert len(reasons) == 237


def test_realize_writes_keras_vocabulary():
    sem = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.01, "eps_placement": "uncorrected"},
                                    "decay": [{"coupling": "gradient", "coefficient": 0.3, "params": ["weight"]},
                                              {"coupling": "decoupled", "coefficient": 0.2, "params": ["weight"]}]})
    assert backend.realize(backend.inherent(sem, TASK), TASK) == {
        "keras_backend": "tensorflow", "optimizer": "AdamW", "learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999,
        "epsilon": 1e-8, "weight_decay": 0.2, "exclude_from_weight_decay": ["bias"], "kernel_regularizer": {"l2": 0.15}}
    # an L1 term at sign(0) = 1 is what JAX's autodiff gives: realize picks that backend
    l1 = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1}, "decay": [
        {"norm": "l1", "coefficient": 0.05, "params": ["bias"], "l1_at_zero": 1.0}]})
    assert backend.realize(l1, TASK) == {"keras_backend": "jax", "optimizer": "SGD", "learning_rate": 0.1,
                                         "bias_regularizer": {"l1": 0.05}}
    half = l1.model_copy(update={"decay": [l1.decay[0].model_copy(update={"l1_at_zero": 0.5})]})
    with pytest.raises(Inexpressible, match="L1 gradient at 0"):
        backend.realize(half, TASK)
    paper = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1}, "decay": [
        {"coupling": "decoupled", "coefficient": 0.01, "scale": "schedule"}]})
    with pytest.raises(Inexpressible, match="weight_decay = 0.1 "):
        backend.realize(paper, TASK)


def test_realize_each_keras_optimizer():
    wd = [{"coupling": "decoupled", "coefficient": 0.2, "scale": "lr", "params": ["weight"]}]
    tf = {"keras_backend": "tensorflow"}
    assert realize({"name": "rmsprop", "lr": 0.01, "rho": 0.8, "eps": 1e-6, "eps_in_sqrt": True, "centered": True,
                    "momentum": 0.5, "momentum_form": "velocity"}, wd) == {
        **tf, "optimizer": "RMSprop", "learning_rate": 0.01, "rho": 0.8, "epsilon": 1e-6, "momentum": 0.5,
        "centered": True, "weight_decay": 0.2, "exclude_from_weight_decay": ["bias"]}
    assert realize({"name": "adagrad", "lr": 0.1, "initial_accumulator": 0.1, "eps": 1e-7, "eps_in_sqrt": True}) == {
        **tf, "optimizer": "Adagrad", "learning_rate": 0.1, "initial_accumulator_value": 0.1, "epsilon": 1e-7}
    assert realize({"name": "adadelta", "lr": 1.0, "rho": 0.9, "eps": 1e-6}) == {
        **tf, "optimizer": "Adadelta", "learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6}
    assert realize({"name": "adamax", "lr": 0.01, "eps": 1e-7, "eps_placement": "outside"}) == {
        **tf, "optimizer": "Adamax", "learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    assert realize({"name": "nadam", "lr": 0.01, "eps": 1e-7, "momentum_decay": 1.0}) == {
        **tf, "optimizer": "Nadam", "learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    assert realize({"name": "lion", "lr": 0.001}, wd) == {**tf, "optimizer": "Lion", "learning_rate": 0.001,
                                                         "beta_1": 0.9, "beta_2": 0.99, "weight_decay": 0.2,
                                                         "exclude_from_weight_decay": ["bias"]}
    ams = realize({"name": "adam", "lr": 0.01, "eps_placement": "uncorrected", "amsgrad": "v"}, wd)
    assert ams["optimizer"] == "AdamW" and ams["amsgrad"] is True
    # float64: TensorFlow casts Lion's betas and Adagrad's accumulator through float32 (describe says so) and
    # computes Adamax's and Nadam's factors from float32 constants (precision findings): an exact backend instead
    f64 = {"dtype": "float64"}
    assert realize({"name": "lion", "lr": 0.001}, **f64)["keras_backend"] == "jax"
    assert realize({"name": "adamax", "lr": 0.01, "eps_placement": "outside"}, **f64)["keras_backend"] == "jax"
    assert realize({"name": "nadam", "lr": 0.01, "momentum_decay": 1.0}, **f64)["keras_backend"] == "jax"
    assert realize({"name": "rmsprop", "lr": 0.01, "eps_in_sqrt": True}, **f64)["keras_backend"] == "tensorflow"


def test_realize_and_describe_lamb():
    """Keras's Lamb is LAMB with decay_placement "before": weight_decay decays w, then the ratio takes the decayed w."""
    wd = [{"coupling": "decoupled", "coefficient": 0.3, "scale": "lr", "params": ["weight"]}]
    lamb = {"name": "lamb", "lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6, "decay_placement": "before"}
    run = realize(lamb, wd)
    assert run == {"keras_backend": "tensorflow", "optimizer": "Lamb", "learning_rate": 0.01, "beta_1": 0.8,
                   "beta_2": 0.99, "epsilon": 1e-6, "weight_decay": 0.3, "exclude_from_weight_decay": ["bias"]}
    assert describe(run)["optimizer"] == {**lamb, "max_trust_ratio": None}
    assert rules(run) == [("l2", "decoupled", 0.3, "lr", ["weight"])]
    # float64: TensorFlow's float32 beta powers are a precision finding, realize moves to an exact backend
    assert realize(lamb, **{"dtype": "float64"})["keras_backend"] == "jax"
    found = {f["id"] for f in backend.findings(backend.parse(run), TASK)}
    assert {"lamb-decay-before-trust-ratio", "weight-decay-decoupled"} <= found
    # the placement is moot without a decoupled decay, but Keras's is "before": the others are refused, named
    for placement in ("inside_trust_ratio", "after"):
        with pytest.raises(Inexpressible, match="identical without a decoupled decay"):
            realize({**lamb, "decay_placement": placement})


def test_realize_and_describe_clipping():
    """One Keras keyword per neutral clip kind, no eps, at the loss's gradient; the regularizers are loss terms."""
    pen = [{"coupling": "gradient", "coefficient": 0.3, "params": ["weight"], "via_loss": True}]
    for kind, key in (("global_norm", "global_clipnorm"), ("tensor_norm", "clipnorm"), ("value", "clipvalue")):
        sem = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1}, "decay": pen,
                                        "clip": {"kind": kind, "threshold": 0.5}})
        run = backend.realize(sem, TASK)
        assert run == {"keras_backend": "tensorflow", "optimizer": "SGD", "learning_rate": 0.1, key: 0.5,
                       "kernel_regularizer": {"l2": 0.15}}
        assert backend.describe(backend.parse(run), TASK).neutral() == sem.neutral()
    back = describe({"optimizer": "Adam", "clipvalue": 0.2, "weight_decay": 0.1, "bias_regularizer": {"l1": 0.1}})
    assert back["clip"] == {"kind": "value", "threshold": 0.2, "eps": 0.0, "position": "loss_gradient"}
    assert [(r["coupling"], r.get("via_loss")) for r in back["decay"]] == [("gradient", True), ("decoupled", None)]
    assert "clip" not in describe({"optimizer": "Adam"}) and "via_loss" not in describe(
        {"optimizer": "SGD", "kernel_regularizer": {"l2": 0.1}})["decay"][0]     # no clip: where a term is, is moot
    found = {f["id"] for f in backend.findings(backend.parse({"optimizer": "SGD", "clipnorm": 1.0}), TASK)}
    assert "clip-before-weight-decay" in found
    torch64 = Task.model_validate({**fidelity.BATTERY_TASK, "dtype": "float64"})
    assert [f.split(":")[0] for f in precision_findings(backend.parse(
        {"optimizer": "SGD", "keras_backend": "torch", "global_clipnorm": 1.0}), torch64)] == [
        "clip-scale-float32", "matmul-float32"]
    assert precision_findings(backend.parse({"optimizer": "SGD", "keras_backend": "jax", "clipnorm": 1.0}), torch64) == []


@pytest.mark.parametrize("clip, decay, words", [
    ({"kind": "global_norm", "threshold": 1.0, "eps": 1e-6}, [], "adds no eps"),
    ({"kind": "tensor_norm", "threshold": 1.0}, [{"coupling": "gradient", "coefficient": 0.1}], "outside the loss"),
    ({"kind": "value", "threshold": 1.0, "position": "after_coupled_decay"}, [], "never after a coupled decay"),
])
def test_realize_refuses_clipping_keras_does_not_have(clip, decay, words):
    sem = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1}, "decay": decay, "clip": clip})
    with pytest.raises(Inexpressible, match=words):
        backend.realize(sem, TASK)


@pytest.mark.parametrize("optimizer, words", [
    ({"name": "rmsprop", "lr": 0.01, "momentum": 0.9, "eps_in_sqrt": True}, "RMSprop momentum is the velocity form"),
    ({"name": "rmsprop", "lr": 0.01}, "epsilon inside the root"),
    ({"name": "adagrad", "lr": 0.1, "eps_in_sqrt": True, "lr_decay": 0.1}, "has no lr_decay"),
    ({"name": "adamax", "lr": 0.01}, "outside the max"),
    ({"name": "nadam", "lr": 0.01, "momentum_decay": None}, "momentum_decay = 1.0"),
    ({"name": "lion", "lr": 0.01, "betas": [0.0, 0.99]}, "rejects beta_1 = 0"),
    ({"name": "radam", "lr": 0.01}, "not 'radam'"),
    ({"name": "lamb", "lr": 0.01}, 'nearest: decay_placement = "before" instead of "inside_trust_ratio"'),
    ({"name": "lamb", "lr": 0.01, "decay_placement": "after"}, 'decay_placement = "before" instead of "after"'),
])
def test_realize_refuses_what_keras_does_not_compute(optimizer, words):
    with pytest.raises(Inexpressible, match=words):
        realize(optimizer)


def test_describe_the_two_weight_decays():
    # L2(c) on the kernel: the loss gains c*sum(w^2), the gradient 2c*w
    assert rules({"optimizer": "SGD", "learning_rate": 0.1, "kernel_regularizer": {"l2": 0.25}}) == [
        ("l2", "gradient", 0.5, None, ["weight"])]
    # every Keras optimizer's weight_decay is decoupled and scaled by lr_t, SGD's included
    for opt in ("SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion", "Lamb"):
        assert rules({"optimizer": opt, "learning_rate": 0.1, "weight_decay": 0.3}) == [
            ("l2", "decoupled", 0.3, "lr", BOTH)]
        assert rules({"optimizer": opt}) == []                                        # weight_decay=None
    assert rules({"optimizer": "Adam", "learning_rate": 0.1, "weight_decay": 0.3,
                  "exclude_from_weight_decay": ["bias"]}) == [("l2", "decoupled", 0.3, "lr", ["weight"])]
    assert rules({"optimizer": "AdamW"}) == [("l2", "decoupled", 0.004, "lr", BOTH)]     # adamw.py:56
    assert rules({"optimizer": "AdamW", "weight_decay": 0.0}) == []
    equal = rules({"optimizer": "SGD", "kernel_regularizer": {"l2": 0.1, "l1": 0.2}, "bias_regularizer": {"l2": 0.1}})
    assert equal == [("l2", "gradient", 0.2, None, BOTH), ("l1", "gradient", 0.2, None, ["weight"])]


def test_describe_optimizers_and_defaults():
    assert describe({"optimizer": "SGD"})["optimizer"] == {"name": "sgd", "lr": 0.01, "momentum": 0.0, "dampening": 0.0,
                                                           "nesterov": False, "momentum_form": "buffer"}
    assert describe({"optimizer": "SGD", "momentum": 0.9, "nesterov": True})["optimizer"]["momentum_form"] == "velocity"
    adam = {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-7, "eps_placement": "uncorrected",
            "bias_correction_dtype": "float32", "bias_correction": True}
    assert describe({"optimizer": "Adam"})["optimizer"] == adam
    assert describe({"optimizer": "AdamW", "amsgrad": True})["optimizer"] == {**adam, "amsgrad": "v"}
    opt = {name: describe({"optimizer": name})["optimizer"] for name in
           ("RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion", "Lamb")}
    assert opt["RMSprop"] == {"name": "rmsprop", "lr": 0.001, "rho": 0.9, "eps": 1e-7, "eps_in_sqrt": True,
                              "centered": False, "momentum": 0.0, "momentum_form": "buffer", "initial_scale": 0.0,
                              "bias_correction": False}
    assert describe({"optimizer": "RMSprop", "momentum": 0.9})["optimizer"]["momentum_form"] == "velocity"
    assert opt["Adagrad"] == {"name": "adagrad", "lr": 0.001, "initial_accumulator": 0.1, "eps": 1e-7,
                              "eps_in_sqrt": True, "lr_decay": 0.0}
    assert opt["Adadelta"] == {"name": "adadelta", "lr": 0.001, "rho": 0.95, "eps": 1e-7}
    assert opt["Adamax"] == {"name": "adamax", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-7,
                             "eps_placement": "outside", "bias_correction": True}
    assert opt["Nadam"] == {"name": "nadam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-7, "momentum_decay": 1.0}
    assert opt["Lion"] == {"name": "lion", "lr": 0.001, "betas": [0.9, 0.99]}
    assert opt["Lamb"] == {"name": "lamb", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-7, "decay_placement": "before",
                           "max_trust_ratio": None}
    # TensorFlow float64: Lamb's betas in the moments are Python floats (the beta powers are a precision finding)
    assert describe({"optimizer": "Lamb"}, dtype="float64")["optimizer"]["betas"] == [0.9, 0.999]
    for kb in KERAS_BACKENDS:
        sem = describe({"keras_backend": kb, "optimizer": "SGD", "kernel_regularizer": {"l1": 0.1}})
        assert sem["decay"][0]["l1_at_zero"] == L1_AT_ZERO[kb]


def test_tensorflow_float64_rounds_python_float_hyperparameters():
    run = {"optimizer": "SGD", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.3,
           "kernel_regularizer": {"l2": 0.15, "l1": 0.1}}
    tf64 = describe(run, dtype="float64")
    assert tf64["optimizer"]["momentum"] == f32(0.9) != 0.9 and tf64["optimizer"]["lr"] == 0.1   # lr is a variable
    assert [r["coefficient"] for r in tf64["decay"]] == [2 * f32(0.15), f32(0.1), f32(0.3)]
    assert describe({**run, "keras_backend": "jax"}, dtype="float64")["optimizer"]["momentum"] == 0.9
    assert describe(run, dtype="float32")["optimizer"]["momentum"] == 0.9
    # the other ops.cast(<Python float>) hyperparameters: Lion's betas, Adagrad's initial accumulator
    assert describe({"optimizer": "Lion"}, dtype="float64")["optimizer"]["betas"] == [f32(0.9), f32(0.99)]
    assert describe({"optimizer": "Adagrad"}, dtype="float64")["optimizer"]["initial_accumulator"] == f32(0.1)
    for kb in ("jax", "torch"):
        assert describe({"optimizer": "Lion", "keras_backend": kb}, dtype="float64")["optimizer"]["betas"] == [0.9, 0.99]
    # RMSprop's and Adadelta's rho, momentum and epsilon are Python floats in the update, never cast
    assert describe({"optimizer": "RMSprop", "momentum": 0.9}, dtype="float64")["optimizer"]["momentum"] == 0.9


def test_adam_bias_corrections_are_float32_in_float32_runs_and_on_tensorflow():
    def bc(**over):
        run = {"optimizer": "Adam", **{k: v for k, v in over.items() if k == "keras_backend"}}
        t = Task.model_validate({**fidelity.BATTERY_TASK, **{k: v for k, v in over.items() if k == "dtype"}})
        return backend.describe(backend.parse(run), t).optimizer.bias_correction_dtype
    assert bc() == "float32" and bc(keras_backend="jax") == "float32"
    assert bc(dtype="float64") == "float32"                      # tf.cast rounds the betas
    assert bc(dtype="float64", keras_backend="jax") is None and bc(dtype="float64", keras_backend="torch") is None


def test_precision_findings_name_the_mechanism():
    def findings(run, **task):
        return [f.split(":")[0] for f in precision_findings(backend.parse(run),
                                                            Task.model_validate({**fidelity.BATTERY_TASK, **task}))]
    cosine = {"kind": "cosine", "total": 10, "floor": 0.1}
    assert findings({"optimizer": "SGD"}, dtype="float64") == []
    assert findings({"optimizer": "Adam"}) == []   # float32 bias corrections: stated by describe()
    assert findings({"optimizer": "Adam"}, dtype="float64", schedule=cosine) == ["schedule-float32"]
    assert findings({"optimizer": "Adam", "keras_backend": "jax"}, dtype="float64", schedule=cosine) == ["cosine-float32"]
    assert findings({"optimizer": "SGD", "keras_backend": "torch"}, dtype="float64") == ["matmul-float32"]
    # the float32-cast constants the neutral Adamax and NAdam have no field for, on TensorFlow in float64 only
    assert findings({"optimizer": "Adamax"}, dtype="float64") == ["adamax-bias-correction-float32"]
    assert findings({"optimizer": "Nadam"}, dtype="float64") == ["nadam-float32-factors"]
    assert findings({"optimizer": "Nadam"}) == findings({"optimizer": "Nadam", "keras_backend": "jax"}, dtype="float64")
    assert findings({"optimizer": "Nadam"}) == []
    assert findings({"optimizer": "Lamb"}, dtype="float64") == ["lamb-bias-correction-float32"]
    assert findings({"optimizer": "Lamb", "keras_backend": "jax"}, dtype="float64") == findings({"optimizer": "Lamb"}) == []


def test_findings_say_decay_is_ignored():
    found = {f["id"]: f for f in backend.findings(backend.parse({"optimizer": "RMSprop", "decay": 0.5}), TASK)}
    assert found["decay-ignored"]["modelled"] and "Argument `decay` is no longer supported" in found["decay-ignored"]["text"]
    assert describe({"optimizer": "RMSprop", "decay": 0.5}) == describe({"optimizer": "RMSprop"})


@pytest.mark.parametrize("run, key, words", [
    ({"optimizer": "SGD", "nesterov": True}, "nesterov", "silently ignores"),
    ({"optimizer": "SGD", "beta_1": 0.9}, "beta_1", "not a keyword of keras.optimizers.SGD"),
    ({"optimizer": "Adam", "momentum": 0.9}, "momentum", "not a keyword of keras.optimizers.Adam"),
    ({"optimizer": "Adam", "rho": 0.9}, "rho", "belongs to keras.optimizers.RMSprop, keras.optimizers.Adadelta"),
    ({"optimizer": "RMSprop", "amsgrad": True}, "amsgrad", "not a keyword of keras.optimizers.RMSprop"),
    ({"optimizer": "Lion", "epsilon": 1e-7}, "epsilon", "not a keyword of keras.optimizers.Lion"),
    ({"optimizer": "Nadam", "initial_accumulator_value": 0.1}, "initial_accumulator_value",
     "belongs to keras.optimizers.Adagrad"),
    ({"optimizer": "Lion", "beta_1": 0.0}, "beta_1", "degenerates to SignSGD"),
    ({"optimizer": "Lamb", "amsgrad": True}, "amsgrad", "not a keyword of keras.optimizers.Lamb"),
    ({"optimizer": "Lamb", "rho": 0.9}, "rho", "not a keyword of keras.optimizers.Lamb"),
    ({"optimizer": "Adafactor", "beta_2_decay": 0.0}, "beta_2_decay", "must be < 0"),
    ({"optimizer": "Adafactor", "epsilon": 1e-7}, "epsilon", "not a keyword of keras.optimizers.Adafactor"),
    ({"optimizer": "Ftrl"}, "optimizer", "FTRL-proximal"),
    ({"optimizer": "Muon"}, "optimizer", "Newton-Schulz"),
    ({"optimizer": "SGD", "weight_decay": 0.1, "exclude_from_weight_decay": ["kernel"]}, "exclude_from_weight_decay",
     "names no tensor"),
    ({"optimizer": "SGD", "weight_decay": 0.1, "exclude_from_weight_decay": []}, "exclude_from_weight_decay",
     "at least one tensor"),
    ({"optimizer": "AdamW", "exclude_from_weight_decay": ["weight", "bias"]}, "exclude_from_weight_decay",
     "at least one tensor decayed"),
    ({"optimizer": "SGD", "exclude_from_weight_decay": ["bias"]}, "exclude_from_weight_decay", "needs weight_decay"),
    ({"optimizer": "Lion", "exclude_from_weight_decay": ["bias"]}, "exclude_from_weight_decay", "needs weight_decay"),
    ({"optimizer": "AdamW", "weight_decay": 0.0, "exclude_from_weight_decay": ["bias"]}, "exclude_from_weight_decay",
     "needs weight_decay"),
    ({"optimizer": "SGD", "kernel_regularizer": {"l3": 0.1}}, "kernel_regularizer.l3", "not a known key"),
    ({"optimizer": "SGD", "bias_regularizer": {"l2": -0.1}}, "bias_regularizer.l2", ""),
    ({"optimizer": "SGD", "keras_backend": "mxnet"}, "keras_backend", ""),
    ({"optimizer": "sgd"}, "optimizer", ""),
    ({"optimizer": "SGD", "momentum": 1.5}, "momentum", ""),
    ({"optimizer": "Adagrad", "initial_accumulator_value": -0.1}, "initial_accumulator_value", ""),
    ({"optimizer": "SGD", "clipnorm": 1.0, "clipvalue": 0.5}, "clipvalue", "Only one of `clipnorm`"),
    ({"optimizer": "SGD", "global_clipnorm": 1.0, "clipnorm": 0.5}, "clipnorm", "cannot be set with global_clipnorm"),
    ({"optimizer": "SGD", "clipnorm": 0.0}, "clipnorm", ""),
])
def test_bad_runs_name_the_key(bad_run, run, key, words):
    err = bad_run("keras", run)
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


# ---------------------------------------------------------------- no silent defaults (issue 15)
@pytest.mark.parametrize("key, value, words", [
    ("use_ema", True, "moving average of the weights"),
    ("ema_momentum", 0.9, "without use_ema Keras ignores this key"),
    ("ema_overwrite_frequency", 10, "moving average"),
    ("loss_scale_factor", 128.0, "divides the gradients back"),
    ("gradient_accumulation_steps", 2, "once every N steps"),
    ("name", "opt", "changes no number"),
    ("lr", 0.1, "Argument(s) not recognized"),
    ("schedule_decay", 0.004, "Argument(s) not recognized"),
])
def test_keras_optimizer_extras_are_refused_with_their_reason(bad_run, key, value, words):
    """Every BaseOptimizer keyword of keras 3.15 that the neutral model lacks is named and refused (not 'unknown'),
    and so are the Keras 2 keywords Keras 3 raises on."""
    err = bad_run("keras", {"optimizer": "Adam", key: value})
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err) and "not a known key" not in str(err)
    assert len(str(err).splitlines()) == 1


def test_realize_refuses_frozen_tensors_naming_the_nearest_setting():
    sem = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1}, "frozen": ["bias"],
                                    "decay": [{"coefficient": 0.2, "params": ["weight"]}]})
    with pytest.raises(Inexpressible) as err:
        backend.realize(sem, TASK)
    assert "trainable = False" in str(err.value) and "nearest: the same setting with ['bias'] trained" in str(err.value)
