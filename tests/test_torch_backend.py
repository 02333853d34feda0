"""The torch adapter: describe/realize round trip, param groups, validation, grids, battery (facts: test_torch_facts.py)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from conftest import assert_battery_green, detects_a_wrong_model

from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity_backends.torch_backend import TORCH_L1_AT_ZERO, backend

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed (pip install 'wdparity[torch]')")
TASK = Task.model_validate(fidelity.BATTERY_TASK)
BOTH, BETAS = ["weight", "bias"], {"betas": [0.9, 0.999], "eps": 1e-8}


def describe(run: dict, **task) -> dict:
    return backend.describe(backend.parse(run), Task.model_validate({**fidelity.BATTERY_TASK, **task})).neutral()


def rules(run: dict) -> list[tuple]:
    return [(r["norm"], r["coupling"], r["coefficient"], r["scale"], r["params"]) for r in describe(run)["decay"]]


# ---------------------------------------------------------------- realize / describe
ISSUE_17 = {"amsgrad": 6, "adagrad": 3, "adagrad_lr_decay": 3, "adadelta": 3, "adadelta_small_eps": 3, "adamax": 3,
            "nadam": 6, "nadam_keras": 6, "radam": 6}   # realized per battery row, of 6 decay forms each
COUPLED_ONLY = {"rmsprop": "RMSprop", "rmsprop_centered": "RMSprop", "adagrad": "Adagrad", "adagrad_lr_decay": "Adagrad",
                "adadelta": "Adadelta", "adadelta_small_eps": "Adadelta", "adamax": "Adamax"}
BUFFER, CORRECTED, OUTSIDE = 'momentum_form = "buffer"', 'eps_placement = "corrected"', "eps_in_sqrt = false"
REASON = {"velocity": BUFFER, "adam_uncorrected": CORRECTED, "rmsprop_in_sqrt": OUTSIDE, "amsgrad_uncorrected": CORRECTED,
          "amsgrad_v_hat": 'nearest: amsgrad = "v"', "rmsprop_velocity": BUFFER, "rmsprop_velocity_centered": BUFFER,
          "rmsprop_initial_scale": "initial_scale = 0", "rmsprop_bias_corrected": "bias_correction = false",
          "adagrad_in_sqrt": OUTSIDE, "adamax_outside": 'eps_placement = "in_max"', "lion": "torch.optim has no Lion",
          "nadam_constant": "NAdam(momentum_decay=1000)", "radam_corrected": 'eps_placement = "uncorrected"',
          "lamb": "torch.optim has no LAMB", "lamb_before": "torch.optim has no LAMB", "lamb_after": "torch.optim has no LAMB",
          "adam_no_bias_correction": "bias_correction = true", "adamax_no_bias_correction": "bias_correction = true",
          "adamax_decayed_eps": 'eps_placement = "in_max"', "lamb_capped": "torch.optim has no LAMB",
          "adafactor": "torch.optim.Adafactor is not", "adafactor_relative": "torch.optim.Adafactor is not",
          "adafactor_before": "torch.optim.Adafactor is not", "adafactor_momentum": "torch.optim.Adafactor is not"}


def test_round_trip_over_the_neutral_battery():
    expressed, reasons = fidelity.round_trip("torch")
    assert len(expressed) == 99 and len(reasons) == 242   # 14 and 31 of them clipped: tests/test_torch_clip.py
    reasons = {n: r for n, r in reasons.items() if "-clip_" not in n}
    assert {row: [n.split("-")[0] for n in expressed].count(row) for row in ISSUE_17} == ISSUE_17
    # exactly what torch cannot hold, each reason naming the nearest expressible setting
    assert {n.split("-")[0] for n in reasons} == {"sgd", "momentum", "dampened", "nesterov", "adam", "adam_eps",
                                                  *COUPLED_ONLY, *REASON}
    assert all("nearest" in r for r in reasons.values())
    for n, r in reasons.items():
        row = n.split("-")[0]
        assert REASON[row] in r if row in REASON else "decoupled" in n, (n, r)
        if row in COUPLED_ONLY:
            assert "only gradient-coupled" in r and f"nearest: {COUPLED_ONLY[row]}(weight_decay=" in r, (n, r)
    assert all("nearest: SGD(weight_decay=" in r for n, r in reasons.items()
               if n.split("-")[0] in ("sgd", "momentum", "dampened", "nesterov"))
    assert {n for n, r in reasons.items() if n.startswith(("adam-", "adam_eps-"))} == {
        "adam-decoupled_schedule-cosine-normal-half_mse", "adam-decoupled_none-constant-zeros-half_mse",
        "adam_eps-decoupled_schedule-constant-normal-half_mse", "adam_eps-decoupled_none-step-zeros-mse"}
    assert all("nearest: AdamW(weight_decay=" in r for n, r in reasons.items() if n.startswith(("adam-", "adam_eps-")))


def test_realize_writes_torch_idioms():
    seed = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.003},
                                     "decay": [{"coefficient": 3.0, "params": ["weight"]}]})
    assert backend.realize(seed, TASK) == {"optimizer": "SGD", "lr": 0.003, "weight_decay": 0.0, "param_groups": [
        {"params": ["weight"], "weight_decay": 3.0}, {"params": ["bias"], "weight_decay": 0.0}]}
    adamw = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.01},
                                      "decay": [{"coefficient": 0.2, "params": ["weight"]},
                                                {"coupling": "decoupled", "coefficient": 0.3}]})
    assert backend.realize(adamw, TASK) == {"optimizer": "AdamW", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
                                            "weight_decay": 0.3, "penalty": {"l2": 0.1, "params": ["weight"]}}
    plain = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.01}})
    assert backend.realize(plain, TASK)["optimizer"] == "Adam" and "weight_decay" not in backend.realize(plain, TASK)
    # a second coupled rule on a tensor becomes the penalty (2 * c/2 == c exactly), so the round trip holds
    two = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1},
                                    "decay": [{"coefficient": 0.3}, {"coefficient": 0.7, "params": ["weight"]}]})
    assert backend.realize(two, TASK)["penalty"] == {"l2": 0.35, "params": ["weight"]}
    assert backend.describe(backend.parse(backend.realize(two, TASK)), TASK).neutral() == two.neutral()


@pytest.mark.parametrize("opt, decay, table", [
    ({"name": "adam", "lr": 0.01, "amsgrad": "v"}, [{"coupling": "decoupled", "coefficient": 0.4}],
     {"optimizer": "AdamW", **BETAS, "amsgrad": True, "weight_decay": 0.4}),
    ({"name": "adagrad", "lr": 0.01, "initial_accumulator": 0.05, "lr_decay": 0.05}, [{"coefficient": 0.3}],
     {"optimizer": "Adagrad", "eps": 1e-10, "initial_accumulator_value": 0.05, "lr_decay": 0.05, "weight_decay": 0.3}),
    ({"name": "adadelta", "lr": 0.01}, [], {"optimizer": "Adadelta", "rho": 0.9, "eps": 1e-6}),
    ({"name": "adamax", "lr": 0.01}, [{"coefficient": 0.3, "params": ["weight"]}],
     {"optimizer": "Adamax", **BETAS, "weight_decay": 0.0,
      "param_groups": [{"params": ["weight"], "weight_decay": 0.3}, {"params": ["bias"], "weight_decay": 0.0}]}),
    ({"name": "nadam", "lr": 0.01, "momentum_decay": 1.0}, [{"coupling": "decoupled", "coefficient": 0.4}],
     {"optimizer": "NAdam", **BETAS, "momentum_decay": 1.0, "decoupled_weight_decay": True, "weight_decay": 0.4}),
    ({"name": "radam", "lr": 0.01}, [{"coefficient": 0.2, "params": ["weight"]}, {"coupling": "decoupled", "coefficient": 0.3}],
     {"optimizer": "RAdam", **BETAS, "decoupled_weight_decay": True, "weight_decay": 0.3,
      "penalty": {"l2": 0.1, "params": ["weight"]}}),
])
def test_realize_picks_the_torch_class_of_each_family(opt, decay, table):
    sem = Semantics.model_validate({"optimizer": opt, "decay": decay})
    assert backend.realize(sem, TASK) == {"lr": 0.01, **table}
    assert backend.describe(backend.parse(backend.realize(sem, TASK)), TASK).neutral() == sem.neutral()


def test_realize_refuses_what_torch_cannot_do():
    cases = [
        ({"name": "sgd", "lr": 0.1}, [{"norm": "l1", "coefficient": 0.1, "l1_at_zero": 1.0}], "l1_at_zero = 0.0"),
        ({"name": "adam", "lr": 0.1}, [{"norm": "l1", "coupling": "decoupled", "coefficient": 0.1, "scale": "lr"}],
         "L1 `penalty`"),
        ({"name": "adam", "lr": 0.1}, [{"coupling": "decoupled", "coefficient": 0.1},
                                       {"coupling": "decoupled", "coefficient": 0.2, "params": ["weight"]}],
         "one weight_decay per tensor"),
        ({"name": "sgd", "lr": 0.1}, [{"norm": "l1", "coefficient": 0.1, "params": ["weight"]},
                                      {"norm": "l1", "coefficient": 0.1, "params": ["bias"]}], "one `penalty`"),
        ({"name": "adam", "lr": 0.02}, [{"coupling": "decoupled", "coefficient": 0.01, "scale": "schedule"}],
         "AdamW(weight_decay=0.01/lr = 0.5)"),
        ({"name": "nadam", "lr": 0.02}, [{"coupling": "decoupled", "coefficient": 0.01, "scale": "none"}],
         "NAdam(decoupled_weight_decay=True, weight_decay=0.01/lr = 0.5)"),
        ({"name": "radam", "lr": 0.1}, [{"coupling": "decoupled", "coefficient": 0.1},
                                        {"coupling": "decoupled", "coefficient": 0.2, "params": ["weight"]}],
         "torch.optim.RAdam takes one weight_decay per tensor"),
        ({"name": "radam", "lr": 0.1, "threshold_inclusive": True}, [], "rho_t is exactly 5"),
        ({"name": "radam", "lr": 0.1, "threshold": 6.0}, [], "between 5 and 6"),
        ({"name": "adadelta", "lr": 0.1}, [{"coupling": "decoupled", "coefficient": 0.01, "scale": "none"}],
         "nearest: Adadelta(weight_decay=0.1)"),
    ]
    for opt, decay, words in cases:
        with pytest.raises(Inexpressible, match=None) as err:
            backend.realize(Semantics.model_validate({"optimizer": opt, "decay": decay}), TASK)
        assert words in str(err.value), str(err.value)


def test_describe_defaults_and_couplings():
    assert describe({"optimizer": "SGD"})["optimizer"] == {"name": "sgd", "lr": 1e-3, "momentum": 0.0,
                                                           "dampening": 0.0, "nesterov": False,
                                                           "momentum_form": "buffer"}
    assert rules({"optimizer": "AdamW", "lr": 0.01}) == [("l2", "decoupled", 0.01, "lr", BOTH)]
    assert rules({"optimizer": "Adam", "lr": 0.01}) == []
    assert rules({"optimizer": "Adam", "lr": 0.01, "weight_decay": 0.2}) == [("l2", "gradient", 0.2, None, BOTH)]
    assert rules({"optimizer": "Adam", "lr": 0.01, "weight_decay": 0.2, "decoupled_weight_decay": True}) == [
        ("l2", "decoupled", 0.2, "lr", BOTH)]
    assert rules({"optimizer": "AdamW", "lr": 0.01, "weight_decay": 0.0}) == []
    assert describe({"optimizer": "Adam"})["optimizer"] == {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999],
                                                            "eps": 1e-8, "eps_placement": "corrected",
                                                            "bias_correction": True}
    for name in ("Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam"):   # the flag decouples NAdam's and RAdam's, as AdamW's
        assert rules({"optimizer": name, "weight_decay": 0.2}) == [("l2", "gradient", 0.2, None, BOTH)]
        assert name not in ("NAdam", "RAdam") or rules({"optimizer": name, "weight_decay": 0.2, "decoupled_weight_decay": True}
                                                       ) == [("l2", "decoupled", 0.2, "lr", BOTH)]


@pytest.mark.parametrize("run, optimizer", [
    ({"optimizer": "Adam", "amsgrad": True}, {"name": "adam", "lr": 1e-3, **BETAS, "eps_placement": "corrected", "amsgrad": "v",
                                     "bias_correction": True}),
    ({"optimizer": "Adagrad"}, {"name": "adagrad", "lr": 1e-2, "initial_accumulator": 0.0, "eps": 1e-10, "eps_in_sqrt": False,
                                "lr_decay": 0.0}),
    ({"optimizer": "Adadelta"}, {"name": "adadelta", "lr": 1.0, "rho": 0.9, "eps": 1e-6}),
    ({"optimizer": "Adamax"}, {"name": "adamax", "lr": 2e-3, **BETAS, "eps_placement": "in_max", "bias_correction": True}),
    ({"optimizer": "NAdam"}, {"name": "nadam", "lr": 2e-3, **BETAS, "momentum_decay": 0.004}),
    ({"optimizer": "RAdam"}, {"name": "radam", "lr": 1e-3, **BETAS, "eps_placement": "uncorrected", "threshold": 5.0,
                              "threshold_inclusive": False}),
])
def test_each_torch_class_describes_as_its_family_at_its_defaults(run, optimizer):
    assert describe(run)["optimizer"] == optimizer


def test_param_groups_and_frozen_tensors():
    seed = [{"params": ["weight"], "weight_decay": 3.0}, {"params": ["bias"]}]
    assert rules({"optimizer": "SGD", "lr": 0.03, "param_groups": seed}) == [("l2", "gradient", 3.0, None, ["weight"])]
    assert "frozen" not in describe({"optimizer": "SGD", "lr": 0.03, "param_groups": seed})
    # a group without weight_decay inherits the constructor's: under AdamW that is the default 1e-2
    assert rules({"optimizer": "AdamW", "lr": 0.01, "param_groups": seed}) == [
        ("l2", "decoupled", 3.0, "lr", ["weight"]), ("l2", "decoupled", 0.01, "lr", ["bias"])]
    # a tensor named in no group is frozen: torch steps only the groups' params (sgd.py:87,118), so the
    # top-level weight_decay does not reach it and it never moves
    only_weight = {"optimizer": "SGD", "weight_decay": 0.1, "param_groups": [{"params": ["weight"], "weight_decay": 0.4}]}
    assert rules(only_weight) == [("l2", "gradient", 0.4, None, ["weight"])]
    assert describe(only_weight)["frozen"] == ["bias"]
    only_bias = {"optimizer": "SGD", "param_groups": [{"params": ["bias"], "weight_decay": 0.5}]}
    assert rules(only_bias) == [("l2", "gradient", 0.5, None, ["bias"])] and describe(only_bias)["frozen"] == ["weight"]
    adamw = {"optimizer": "AdamW", "lr": 0.01, "param_groups": [{"params": ["weight"]}]}
    assert rules(adamw) == [("l2", "decoupled", 0.01, "lr", ["weight"])] and describe(adamw)["frozen"] == ["bias"]
    assert "frozen" not in describe({"optimizer": "AdamW", "lr": 0.01})
    same = [{"params": ["weight"], "weight_decay": 0.2}, {"params": ["bias"], "weight_decay": 0.2}]
    assert rules({"optimizer": "SGD", "param_groups": same}) == [("l2", "gradient", 0.2, None, BOTH)]


def test_realize_names_only_the_trained_tensors():
    def frozen(opt, decay, names):
        return Semantics.model_validate({"optimizer": opt, "decay": decay, "frozen": names})

    cases = [
        (frozen({"name": "sgd", "lr": 0.1}, [{"coefficient": 0.1, "params": ["weight"]}], ["bias"]),
         {"optimizer": "SGD", "lr": 0.1, "param_groups": [{"params": ["weight"], "weight_decay": 0.1}]}),
        (frozen({"name": "adam", "lr": 0.01}, [{"coupling": "decoupled", "coefficient": 0.1, "params": ["weight"]}],
                ["bias"]),
         {"optimizer": "AdamW", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
          "param_groups": [{"params": ["weight"], "weight_decay": 0.1}]}),
        (frozen({"name": "adam", "lr": 0.01}, [], ["weight"]),
         {"optimizer": "Adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
          "param_groups": [{"params": ["bias"], "weight_decay": 0.0}]}),
        (frozen({"name": "sgd", "lr": 0.1, "momentum": 0.9}, [{"coefficient": 0.3, "params": ["weight"]},
                                                            {"coefficient": 0.7, "params": ["weight"]}], ["bias"]),
         {"optimizer": "SGD", "lr": 0.1, "momentum": 0.9, "param_groups": [{"params": ["weight"], "weight_decay": 0.3}],
          "penalty": {"l2": 0.35, "params": ["weight"]}}),
    ]
    for sem, table in cases:
        assert backend.realize(sem, TASK) == table
        assert backend.describe(backend.parse(table), TASK).neutral() == sem.neutral()


def test_frozen_runs_batch_and_stay_frozen_in_the_batched_path():
    """torch_batch builds exactly the named groups, as train() does: a frozen tensor stays frozen there too."""
    pytest.importorskip("torch")
    from wdparity.engine.data import make_data

    def job(wd):
        run = {"optimizer": "SGD", "lr": 0.1, "param_groups": [{"params": ["weight"], "weight_decay": wd}]}
        return {"task": {**TASK.model_dump(), "init": "normal_all"}, "run": backend.parse(run).model_dump(),
                "dtype": "float64"}
    jobs = [job(0.1), job(0.2)]
    data = make_data(jobs[0]["task"])
    assert backend.batch_groups(jobs, data) == [[0, 1]]
    batched = backend.train_batch(jobs, data)
    for j, got in zip(jobs, batched):
        serial = backend.train(j, data)
        assert np.all(got["bias"] == data["b0"]) and np.all(serial["bias"] == data["b0"])   # frozen, bit for bit
        np.testing.assert_allclose(got["weight"], serial["weight"], rtol=0, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("run", [
    dict(optimizer="Adam", amsgrad=True, betas=[0.9, 0.5]), dict(optimizer="Adadelta", rho=0.95),
    dict(optimizer="Adagrad", lr_decay=0.05, initial_accumulator_value=0.1), dict(optimizer="Adamax", betas=[0.8, 0.99]),
    dict(optimizer="NAdam", decoupled_weight_decay=True), dict(optimizer="RAdam", decoupled_weight_decay=True)])
def test_the_new_optimizers_batch_as_their_serial_runs(run, dtype):
    """torch_batch: one param group per config, each updated from its own lr, weight_decay and per-tensor state."""
    from wdparity.engine.data import make_data

    jobs = [{"task": TASK.model_dump(), "run": backend.parse({**run, "lr": lr, "weight_decay": wd}).model_dump(),
             "dtype": dtype} for lr, wd in [(0.01, 0.1), (0.03, 0.4), (0.05, 0.0)]]
    data = make_data(jobs[0]["task"])
    assert backend.batch_groups(jobs, data) == [[0, 1, 2]]
    for j, got in zip(jobs, backend.train_batch(jobs, data)):
        serial, tol = backend.train(j, data), 1e-12 if dtype == "float64" else 1e-5   # the batched forward's rounding
        for name in BOTH:
            assert np.max(np.abs(got[name] - serial[name])) <= tol * max(1.0, float(np.max(np.abs(serial[name]))))


FROZEN_CASE = """
title = "a tensor that no param group names stays where it started"
[task]
init = "normal_all"
num_inputs = 12
n_train = 16
batch_size = 4
epochs = 5
[runs.torch]
backend = "torch"
optimizer = "{optimizer}"
lr = 0.05
param_groups = [{{ params = ["weight"], weight_decay = 0.1 }}]
[runs.torch64]
backend = "torch"
dtype = "float64"
optimizer = "{optimizer}"
lr = 0.05
param_groups = [{{ params = ["weight"], weight_decay = 0.1 }}]
[runs.numpy]
backend = "numpy"
dtype = "float64"
optimizer = "{numpy}"
lr = 0.05
frozen = ["bias"]
decay = [{{ coefficient = 0.1, params = ["weight"]{decoupled} }}]
"""


@needs_torch
@pytest.mark.parametrize("optimizer", ["SGD", "AdamW"])
def test_a_tensor_no_group_names_keeps_its_initial_value_natively_and_in_the_reference(write_case, optimizer):
    """issue 15: `param_groups = [{params = ["weight"], weight_decay = 0.1}]` never updates the bias in torch."""
    from wdparity.engine import reference
    from wdparity.judge.check import check_cases

    decoupled = ', coupling = "decoupled", scale = "lr"' if optimizer == "AdamW" else ""
    path = write_case(FROZEN_CASE.format(optimizer=optimizer, numpy="adam" if optimizer == "AdamW" else "sgd",
                                         decoupled=decoupled))
    res = check_cases([str(path)])[0]
    b0 = float(res.data["b0"])
    assert b0 != 0.0   # init = "normal_all": the start is not a value an update could land on by accident
    for name in ("torch", "torch64", "numpy"):
        run = res.json["runs"][name]
        assert run["status"] == "ok" and run["fidelity"]["holds"], (name, run)
        assert run["semantics"]["frozen"] == ["bias"]
        dtype = np.dtype(run["dtype"])
        bias = np.asarray(res.trajectories[name]["bias"])
        assert bias.dtype == dtype and bias.tobytes() == np.full(bias.shape, b0, dtype).tobytes()   # bit for bit
        weight = np.asarray(res.trajectories[name]["weight"])
        assert not np.array_equal(weight[-1], weight[0])   # the named tensor trains
        ref = reference.run(run["semantics"], res.data, 4, run["dtype"])
        assert ref["bias"].tobytes() == np.full(ref["bias"].shape, b0, dtype).tobytes()
    assert res.json["runs"]["torch64"]["semantics"] == res.json["runs"]["numpy"]["semantics"]
    assert res.json["runs"]["torch64"]["fidelity"]["max_rel_err"] <= 1e-9


def test_penalties_follow_torch_autograd():
    sem = describe({"optimizer": "SGD", "lr": 0.1, "weight_decay": 0.1, "penalty": {"l1": 0.2, "l2": 0.5}})
    assert [(r["norm"], r["coefficient"], r["params"], r["l1_at_zero"]) for r in sem["decay"]] == [
        ("l2", 0.1, BOTH, None), ("l2", 1.0, ["weight"], None), ("l1", 0.2, ["weight"], TORCH_L1_AT_ZERO)]
    # under AdamW the penalty (gradient coupling) comes first, the decoupled decay after
    sem = describe({"optimizer": "AdamW", "lr": 0.1, "penalty": {"l1": 0.2, "params": ["bias"]}})
    assert [(r["norm"], r["coupling"]) for r in sem["decay"]] == [("l1", "gradient"), ("l2", "decoupled")]


def test_every_battery_extra_describes():
    extras = backend.battery_extras()
    assert len(extras) >= 20
    for name, (task, run) in extras.items():
        describe(run, **task)
    knobs = json.dumps(extras)
    for knob in ("param_groups", "penalty", "dampening", "nesterov", "foreach", "fused", "decoupled_weight_decay",
                 '"l1"', '"zeros"', '"mse"', '"step"', '"cosine"', "AdamW", "clip_grad_norm", "clip_grad_value"):
        assert knob in knobs, knob


@pytest.mark.parametrize("run, key, words", [
    ({"optimizer": "SGD", "param_groups": [{"params": ["kernel"]}]}, "param_groups[0].params", "names no tensor"),
    ({"optimizer": "SGD", "param_groups": [{"params": []}]}, "param_groups[0].params", "at least one tensor"),
    ({"optimizer": "SGD", "param_groups": [{"params": ["weight"]}, {"params": ["weight", "bias"]}]},
     "param_groups[1].params", "more than one parameter group"),
    ({"optimizer": "SGD", "param_groups": []}, "param_groups", "at least one group"),
    ({"optimizer": "SGD", "param_groups": [{"params": ["bias"], "lr": 0.1}]}, "param_groups[0].lr", "per group"),
    ({"optimizer": "SGD", "param_groups": [{"params": ["bias"], "wd": 0.1}]}, "param_groups[0].wd", "not a known key"),
    ({"optimizer": "RAdam", "amsgrad": True}, "amsgrad", "not a keyword of torch.optim.RAdam"),
    ({"optimizer": "Adagrad", "rho": 0.9}, "rho", "belongs to torch.optim.Adadelta"),
    ({"optimizer": "NAdam", "capturable": True}, "capturable", "must be false"),
    ({"optimizer": "NAdam", "momentum_decay": 0.0}, "momentum_decay", "b1/2"),
    ({"optimizer": "Adagrad", "param_groups": [{"params": ["bias"], "lr_decay": 0.1}]}, "param_groups[0].lr_decay",
     "per group"),
    ({"optimizer": "SGD", "maximize": True}, "maximize", "gradient ascent"),
    ({"optimizer": "SGD", "nesterov": True}, "nesterov", "requires momentum > 0"),
    ({"optimizer": "SGD", "momentum": 0.9, "dampening": 0.1, "nesterov": True}, "nesterov", "dampening = 0"),
    ({"optimizer": "SGD", "betas": [0.9, 0.99]}, "betas", "not a keyword of torch.optim.SGD"),
    ({"optimizer": "Adam", "momentum": 0.9}, "momentum", "not a keyword of torch.optim.Adam"),
    ({"optimizer": "AdamW", "decoupled_weight_decay": False}, "decoupled_weight_decay", "torch.optim.AdamW"),
    ({"optimizer": "Adam", "foreach": True, "fused": True}, "fused", "foreach"),
    ({"optimizer": "SGD", "weight_decay": -0.1}, "weight_decay", ">= 0"),
    ({"optimizer": "sgd"}, "optimizer", "must be one of"),
    ({"optimizer": "SGD", "penalty": {"l1": 0.1, "params": ["kernel"]}}, "penalty.params", "names no tensor"),
    ({"optimizer": "SGD", "learning_rate": 0.1}, "learning_rate", "not a known key"),
    # torch reads dampening only inside the momentum buffer (sgd.py:357-364): without momentum it does nothing
    ({"optimizer": "SGD", "lr": 0.1, "dampening": 0.5}, "dampening", "needs momentum > 0"),
    # the penalty's gradient reaches a tensor no group names, which torch never steps
    ({"optimizer": "SGD", "param_groups": [{"params": ["weight"]}], "penalty": {"l2": 0.1, "params": ["bias"]}},
     "penalty.params", "frozen"),
])
def test_bad_runs_name_the_key(bad_run, run, key, words):
    err = bad_run("torch", run)
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


# ---------------------------------------------------------------- the battery
@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_battery(dtype):
    assert_battery_green("torch", dtype, realized=99, inexpressible=242)


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("case, mutate", [
    ("penalty-l1-zeros", lambda s: s["decay"][0].update(l1_at_zero=1.0)),           # JAX's sign(0)
    ("adamw-default-wd", lambda s: s["decay"][0].update(coefficient=1e-4)),         # optax's default
    ("adamw-bias-group-default", lambda s: s["decay"].pop()),                       # "bias group undecayed"
    ("sgd-unnamed-bias-frozen", lambda s: s.pop("frozen")),                          # the old implicit group
    ("adamw-unnamed-bias-frozen", lambda s: s.pop("frozen")),
    ("sgd-wd-mse", lambda s: s["decay"][0].update(coefficient=0.1 * 1.001)),        # a 0.1 % change of lambda
    ("sgd-dampening", lambda s: s["optimizer"].update(dampening=0.0)),
    ("adam-decoupled-flag", lambda s: s["decay"][0].update(coupling="gradient", scale=None)),
    ("sgd-nesterov", lambda s: s.update(loss="half_mse")),
    ("adam-wd-cosine", lambda s: s["schedule"].update(total=21)),
])
def test_battery_detects_a_wrong_model(case, mutate):
    """The native trajectory against a slightly wrong semantic model must fail in float64."""
    detects_a_wrong_model(backend, case, mutate)
