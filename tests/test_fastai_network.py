"""The fastai adapter on networks (issue 19): torch's MLP by torch's names, the splitter's groups by parameter name or
module path, what Learner(wd_bn_bias=False) leaves undecayed (measured natively), the round trip and the battery."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import assert_network_battery_green

from wdparity.engine.data import make_data
from wdparity.judge import fidelity, network_battery
from wdparity.spec.models import Task
from wdparity.spec.network import kernels, tensor_scope
from wdparity_backends import torch_network
from wdparity_backends.fastai_backend import backend
from wdparity_backends.fastai_network import learner_excludes, modules, native_table

NEEDS_FASTAI = pytest.mark.skipif(importlib.util.find_spec("fastai") is None, reason="fastai not installed")
REALIZED, INEXPRESSIBLE = 28, 28
LAYER = {"hidden": [5, 4], "activation": "tanh", "norm": "layer", "norm_eps": 1e-5}
TASK = Task.model_validate({**network_battery.NETWORK_TASK, "model": LAYER})
LAYER_TOML = 'model = { hidden = [5, 4], activation = "tanh", norm = "layer" }'
WEIGHTS = ["dense_0.weight", "dense_1.weight", "out.weight"]
ALL = list(TASK.tensors)


def task_of(model: dict) -> Task:
    return Task.model_validate({**network_battery.NETWORK_TASK, "model": model})


def rules(run: dict, task: Task = TASK) -> list[tuple]:
    with tensor_scope(task.tensors):
        sem = backend.describe(backend.parse(run), task).neutral()
    return [(r["coupling"], r["coefficient"], r["params"]) for r in sem["decay"]] + [("frozen", sem.get("frozen", []))]


def holds(runs: dict[str, tuple[Task, dict]], dtype: str = "float64") -> dict:
    """Native runs on networks, trained by the fastai worker (one call), against the reference of their own
    describe()."""
    report = fidelity.run_battery({k: (t.model_dump(), {"backend": "fastai", **r}) for k, (t, r) in runs.items()}, dtype)
    assert all(v["status"] == "ok" and v["holds"] for v in report.values()), report
    return report


# ---------------------------------------------------------------- names
def test_the_native_name_table_is_torch_network_s():
    for model in network_battery.MODELS:
        task = task_of(model)
        assert native_table(task.tensors) == torch_network.native_names(model, task.num_inputs)
    assert list(native_table(TASK.tensors)) == ["net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias",
                                                "net.3.weight", "net.3.bias", "net.4.weight", "net.4.bias",
                                                "net.6.weight", "net.6.bias"]
    assert native_table(("weight", "bias")) == {"weight": "weight", "bias": "bias"}


@NEEDS_FASTAI
def test_native_names_and_module_paths_are_measured_on_the_installed_release():
    """named_parameters() names and named_modules() paths (with fastai's params(m)) of the MLP the worker builds."""
    import torch
    from fastai.torch_core import params

    for model in network_battery.MODELS:
        task = task_of(model)
        net, _, _, tensors = torch_network.network(torch, make_data(task.model_dump()), torch.float64)
        table = native_table(task.tensors)
        assert [n for n, _ in net.named_parameters()] == list(table)
        assert list(tensors) == list(task.tensors)
        found = {name: [n for n, p in net.named_parameters() if any(p is q for q in params(m))]
                 for name, m in net.named_modules() if name and params(m)}
        assert found == modules(table)


@NEEDS_FASTAI
def test_torch_defaults_the_network_overrides():
    """torch's LayerNorm eps default is 1e-5 and GELU's approximate "none"; the network sets both from the task."""
    import torch

    assert torch.nn.LayerNorm(3).eps == 1e-5 and torch.nn.GELU().approximate == "none"
    for model in network_battery.MODELS:
        net, *_ = torch_network.network(torch, make_data(task_of(model).model_dump()), torch.float64)
        norms = [m.eps for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]
        assert norms == ([model["norm_eps"]] * len(model["hidden"]) if model["norm"] == "layer" else [])
        gelus = [m.approximate for m in net.modules() if isinstance(m, torch.nn.GELU)]
        assert set(gelus) == ({"none"} if model["activation"] == "gelu" else {"tanh"}
                              if model["activation"] == "gelu_tanh" else set())


# ---------------------------------------------------------------- what the Learner excludes
@NEEDS_FASTAI
@pytest.mark.parametrize("model", [LAYER, network_battery.MODELS[1]])
def test_wd_bn_bias_false_excludes_every_bias_and_layernorm_parameter(model):
    """create_opt sets do_wd = False on norm_bias_params(model): every Linear bias and nn.LayerNorm's weight and
    bias (norm_types); a zero-gradient true-weight-decay step moves exactly the Linear weights; wd_bn_bias=True
    excludes nothing."""
    from functools import partial

    import torch
    from fastai import optimizer as fo
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.torch_core import norm_types

    assert torch.nn.LayerNorm in norm_types
    task = task_of(model)
    table = native_table(task.tensors)
    for wd_bn_bias in (None, False, True):
        net, *_ = torch_network.network(torch, make_data(task.model_dump()), torch.float64)
        extra = {} if wd_bn_bias is None else {"wd_bn_bias": wd_bn_bias}
        learn = Learner(DataLoaders(), net, loss_func=torch.nn.MSELoss(), opt_func=partial(fo.SGD, wd=0.3), lr=0.1,
                        **extra)
        learn.create_opt()
        off = [table[n] for n, p in net.named_parameters() if learn.opt.state[p].get("do_wd", True) is False]
        assert off == ([] if wd_bn_bias else learner_excludes(task.tensors))
        with torch.no_grad():   # nonzero everywhere (the task starts biases and offsets at 0, scales at 1)
            for p in net.parameters():
                p.copy_(torch.rand_like(p) + 0.5)
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        learn.opt.step()
        moved = [table[n] for n, p in net.named_parameters() if not torch.equal(p.detach(), before[n])]
        assert moved == (list(task.tensors) if wd_bn_bias else kernels(task.tensors))
        for n, p in net.named_parameters():
            if table[n] in moved:
                assert torch.equal(p.detach(), before[n] * (1 - 0.1 * 0.3))
    assert learner_excludes(task.tensors) == [t for t in task.tensors if t not in kernels(task.tensors)]


def test_the_learner_on_a_network_decays_the_weight_matrices_only():
    assert rules({"optimizer": "Adam", "learner": True}) == [("decoupled", 0.01, WEIGHTS), ("frozen", [])]
    assert rules({"optimizer": "Adam", "learner": True, "wd_bn_bias": True}) == [("decoupled", 0.01, ALL),
                                                                                 ("frozen", [])]
    assert rules({"optimizer": "SGD", "lr": 0.1, "wd": 0.2, "decouple_wd": False, "learner": True}) == [
        ("gradient", 0.2, WEIGHTS), ("frozen", [])]
    with tensor_scope(TASK.tensors):
        found = backend.findings(backend.parse({"optimizer": "SGD", "lr": 0.1, "learner": True}), TASK)
    assert any(f["id"] == "learner-excludes-bias" and "LayerNorm" in f["text"] for f in found)


# ---------------------------------------------------------------- the splitter's groups
def test_param_groups_by_parameter_name_or_module_path():
    by_name = {"optimizer": "SGD", "lr": 0.1, "wd": [0.3, 0.0],
               "param_groups": [["net.0.weight", "net.3.weight", "net.6.weight"],
                                ["net.0.bias", "net.1.weight", "net.1.bias", "net.3.bias", "net.4.weight",
                                 "net.4.bias", "net.6.bias"]]}
    assert rules(by_name) == [("decoupled", 0.3, WEIGHTS), ("frozen", [])]
    by_module = {**by_name, "param_groups": [["net.0.weight", "net.3.weight", "net.6.weight"],
                                             ["net.0.bias", "net.1", "net.3.bias", "net.4", "net.6.bias"]]}
    assert rules(by_module) == rules(by_name)
    layers = {"optimizer": "SGD", "lr": 0.1, "wd": [0.3, 0.1], "param_groups": [["net.0", "net.1"], ["net.6"]]}
    assert rules(layers) == [("decoupled", 0.3, ["dense_0.weight", "dense_0.bias", "norm_0.scale", "norm_0.offset"]),
                             ("decoupled", 0.1, ["out.weight", "out.bias"]),
                             ("frozen", ["dense_1.weight", "dense_1.bias", "norm_1.scale", "norm_1.offset"])]
    whole = {"optimizer": "SGD", "lr": 0.1, "wd": 0.2, "param_groups": [["net"]]}
    assert rules(whole) == [("decoupled", 0.2, ALL), ("frozen", [])]


@pytest.mark.parametrize("run, key, words", [
    ({"param_groups": [["dense_0.weight"]]}, "param_groups[0]", "the neutral name 'dense_0.weight' is torch's "
                                                                "'net.0.weight'"),
    ({"param_groups": [["net.2"]]}, "param_groups[0]", '"net.2" matches none'),   # the activation: no parameters
    ({"param_groups": [["net.0.weigth"]]}, "param_groups[0]", "must name torch's parameters ['net.0.weight', "),
    ({"param_groups": [["weight"]]}, "param_groups[0]", "or modules ['net', 'net.0', 'net.1', 'net.3'"),
    ({"param_groups": [["net.0", "net.0.bias"]]}, "param_groups[0]", "names the parameter 'net.0.bias' twice"),
    ({"param_groups": [["net.0"], ["net.0.weight"]]}, "param_groups[1]", "again"),
    ({"param_groups": [[]]}, "param_groups[0]", "must name at least one parameter"),
    ({"param_groups": [["net.0"]], "learner": True, "gradient_clip": 1.0}, "gradient_clip",
     "(['norm_0.scale', 'norm_0.offset', 'dense_1.weight'"),
    ({"penalty": {"l2": 0.1, "params": ["net.0.weight"]}}, "penalty.params", '"net.0.weight" names no tensor'),
    ({"param_groups": [["net.0"]], "penalty": {"l2": 0.1, "params": ["out.weight"]}}, "penalty.params", "frozen"),
])
def test_bad_network_runs_name_the_key_and_the_parameters(bad_run, run, key, words):
    err = bad_run("fastai", {"optimizer": "SGD", "lr": 0.1, **run}, task=LAYER_TOML)
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


# ---------------------------------------------------------------- realize, the round trip, native runs
def test_round_trip_over_the_network_battery():
    expressed, reasons = network_battery.round_trip("fastai")
    assert (len(expressed), len(reasons)) == (REALIZED, INEXPRESSIBLE)
    rows = [n.split("-")[1] for n in expressed]
    assert {row: rows.count(row) for row in set(rows)} == {"sgd": 7, "momentum": 7, "adam": 7, "rmsprop": 7}
    words = {"nesterov": "has no nesterov", "adagrad": "fastai.optimizer has no Adagrad",
             "lion": "fastai.optimizer has no Lion", "lamb": "decays p (weight_decay) before lamb_step"}
    for name, reason in reasons.items():
        assert words[name.split("-")[1]] in reason and "nearest" in reason, (name, reason)
    for name, run in expressed.items():   # weights-only decay: the Learner's own exclusion, no groups
        if "-decoupled_weight-" in name:
            assert run["learner"] is True and "param_groups" not in run and "wd_bn_bias" not in run, name
    groups = expressed["net-sgd-coupled_groups-gelu-4-3-layer-constant-normal"]
    assert groups["param_groups"] == [["net.0.weight", "net.3.weight", "net.6.weight"],
                                      ["net.0.bias", "net.1", "net.3.bias", "net.4", "net.6.bias"]]


@NEEDS_FASTAI
def test_native_network_runs_meet_their_description():
    holds({"learner-adam": (TASK, {"optimizer": "Adam", "lr": 0.01, "learner": True}),   # wd = 0.01, weights only
           "modules-l2": (TASK, {"optimizer": "SGD", "lr": 0.05, "mom": 0.9, "learner": True, "wd_bn_bias": True,
                                 "wd": [0.2, 0.05], "decouple_wd": False,
                                 "param_groups": [["net.0", "net.1"], ["net.3", "net.4", "net.6"]]}),
           "frozen-middle": (TASK, {"optimizer": "RMSProp", "lr": 0.01, "wd": 0.1, "param_groups": [["net.0", "net.6"]]}),
           "clipped": (task_of(network_battery.MODELS[2]), {"optimizer": "SGD", "lr": 0.05, "learner": True,
                                                            "gradient_clip": 0.5, "wd": 0.1})})


# ---------------------------------------------------------------- the battery
@NEEDS_FASTAI
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_network_battery(dtype):
    assert_network_battery_green("fastai", dtype, realized=REALIZED, inexpressible=INEXPRESSIBLE)
