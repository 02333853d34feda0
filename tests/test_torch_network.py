"""The torch adapter on networks (issue 19): torch's own parameter names, param groups and the group builders torch
users run on them (the HF Trainer's, timm's, the HF examples' `no_decay` list), the network battery, and the torch
facts the MLP rests on, measured on the installed release."""

from __future__ import annotations

import fnmatch
import importlib.util
import re

import numpy as np
import pytest
from conftest import assert_network_battery_green

from wdparity.engine import network
from wdparity.engine.data import make_data
from wdparity.judge import fidelity, network_battery
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope
from wdparity_backends import torch_groups, torch_network
from wdparity_backends.torch_backend import backend

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
LN = {"hidden": [5, 4], "activation": "tanh", "norm": "layer", "norm_eps": 1e-5}
NET = {"num_inputs": 6, "n_train": 16, "n_test": 8, "batch_size": 4, "epochs": 2, "seed": 3, "model": LN}
NATIVE = ["net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias", "net.4.weight",
          "net.4.bias", "net.6.weight", "net.6.bias"]
KERNELS = ["net.0.weight", "net.3.weight", "net.6.weight"]
TASK_TOML = 'num_inputs = 6\nn_train = 16\nbatch_size = 4\nmodel = { hidden = [5, 4], norm = "layer" }'


def describe(run: dict, **task) -> dict:
    t = Task.model_validate({**NET, **task})
    with tensor_scope(t.tensors):   # as the case loader parses a run
        config = backend.parse(run)
    return backend.describe(config, t).neutral()


def per_tensor(run: dict, **task) -> dict:
    """weight_decay of every tensor (neutral name) the run trains, as described."""
    t = Task.model_validate({**NET, **task})
    with tensor_scope(t.tensors):
        return backend.parse(run).per_tensor_weight_decay()


def module(model=LN):
    import torch
    data = make_data(Task.model_validate({**NET, "model": model, "dtype": "float64"}).model_dump())
    return torch_network.network(torch, data, torch.float64), data


# ---------------------------------------------------------------- names
@needs_torch
@pytest.mark.parametrize("model", network_battery.MODELS, ids=lambda m: f"{m['activation']}-{m['norm']}")
def test_native_names_are_named_parameters_of_the_module(model):
    (net, _, _, tensors), data = module(model)
    named = dict(net.named_parameters())
    t = Task.model_validate({**NET, "model": model})
    with tensor_scope(t.tensors):
        table = torch_groups.names()
    assert list(named) == list(table) and list(table.values()) == list(t.tensors)
    start = network.start(data)
    for native, neutral in table.items():
        assert named[native] is tensors[neutral]
        assert named[native].ndim == torch_groups.ndim(neutral)
        value = named[native].detach().numpy()
        assert np.array_equal(value.T if value.ndim == 2 else value, start[neutral])   # bit-identical start


def test_the_linear_model_keeps_weight_and_bias():
    assert torch_groups.names() == {"weight": "weight", "bias": "bias"}
    assert backend.parse({"optimizer": "SGD", "param_groups": [{"params": ["weight"]}]}).frozen == ["bias"]


# ---------------------------------------------------------------- param groups by torch's names
def test_param_groups_name_parameters_as_torch_does():
    run = {"optimizer": "SGD", "lr": 0.1, "param_groups": [{"params": KERNELS, "weight_decay": 0.1},
                                                           {"params": ["net.0.bias", "net.6.bias"]}]}
    sem = describe(run)
    assert [(r["coefficient"], r["params"]) for r in sem["decay"]] == [(0.1, ["dense_0.weight", "dense_1.weight",
                                                                             "out.weight"])]
    assert sem["frozen"] == ["norm_0.scale", "norm_0.offset", "dense_1.bias", "norm_1.scale", "norm_1.offset"]


@pytest.mark.parametrize("params, words", [
    (["dense_0.weight"], '"dense_0.weight" names no parameter'),
    (["net.2.weight"], '"net.2.weight" names no parameter'),   # nn.Tanh at index 2 has none
    (["0.weight"], "'net.0.weight', 'net.0.bias', 'net.1.weight'"),
    ([], "at least one parameter"),
])
def test_a_group_naming_no_parameter_lists_named_parameters(bad_run, params, words):
    err = bad_run("torch", {"optimizer": "SGD", "param_groups": [{"params": params}]}, TASK_TOML)
    assert err.key == "runs.a.param_groups[0].params" and words in str(err), str(err)


def test_realize_emits_torch_names_that_describe_back():
    expressed, _ = network_battery.round_trip("torch")
    groups = expressed["net-momentum-coupled_groups-relu-6-none-cosine-normal"]["param_groups"]
    assert groups == [{"params": ["net.0.weight", "net.2.weight"], "weight_decay": 0.3},
                      {"params": ["net.0.bias", "net.2.bias"], "weight_decay": 0.05}]


def test_round_trip_counts_and_refusals():
    expressed, reasons = network_battery.round_trip("torch")
    assert (len(expressed), len(reasons)) == (27, 29)
    rows = {}
    for case in reasons:
        rows[case.split("-")[1]] = rows.get(case.split("-")[1], 0) + 1
    assert rows == {"sgd": 3, "momentum": 3, "nesterov": 3, "rmsprop": 3, "adagrad": 3, "lamb": 7, "lion": 7}
    assert all("nearest" in r for r in reasons.values())
    assert all("decoupled" in c for c in reasons if c.split("-")[1] in ("sgd", "momentum", "nesterov", "rmsprop",
                                                                         "adagrad"))


# ---------------------------------------------------------------- the builders
def hf_decay_names(model) -> list[str]:
    """transformers 5.24.0 Trainer.get_decay_parameter_names, transcribed (trainer.py:1416-1417 and
    trainer_pt_utils.py:1348-1369), run on the real module; transformers itself when installed."""
    from torch import nn
    if importlib.util.find_spec("transformers") is not None:
        from transformers.trainer_pt_utils import get_parameter_names
    else:
        def get_parameter_names(model, forbidden_layer_types, forbidden_layer_names=None):
            patterns = [re.compile(p) for p in forbidden_layer_names or []]
            result = []
            for name, child in model.named_children():
                result += [f"{name}.{n}" for n in get_parameter_names(child, forbidden_layer_types, forbidden_layer_names)
                           if not isinstance(child, tuple(forbidden_layer_types))
                           and not any(p.search(f"{name}.{n}".lower()) for p in patterns)]
            return result + [k for k in model._parameters if not any(p.search(k.lower()) for p in patterns)]
    return get_parameter_names(model, [nn.LayerNorm], list(torch_groups.HF_FORBIDDEN))


def timm_no_decay_names(model, no_weight_decay_list=()) -> list[str]:
    """timm 1.0.31 param_groups_weight_decay's test (optim/_param_groups.py:14-16, 52-54), on the real module."""
    return [n for n, p in model.named_parameters()
            if p.ndim <= 1 or n.endswith(".bias") or any(fnmatch.fnmatch(n, q) for q in no_weight_decay_list)]


@needs_torch
def test_hf_trainer_groups_follow_get_decay_parameter_names():
    (net, *_), _ = module()
    assert hf_decay_names(net) == KERNELS
    assert per_tensor({"optimizer": "AdamW", "lr": 0.01, "weight_decay": 0.1, "hf_trainer_groups": True}) == {
        "dense_0.weight": 0.1, "dense_1.weight": 0.1, "out.weight": 0.1, "dense_0.bias": 0.0, "norm_0.scale": 0.0,
        "norm_0.offset": 0.0, "dense_1.bias": 0.0, "norm_1.scale": 0.0, "norm_1.offset": 0.0, "out.bias": 0.0}
    import torch
    linear = torch.nn.Linear(3, 1)
    assert hf_decay_names(linear) == ["weight"]
    assert backend.parse({"optimizer": "SGD", "weight_decay": 0.2, "hf_trainer_groups": True}).per_tensor_weight_decay() \
        == {"weight": 0.2, "bias": 0.0}


@needs_torch
def test_timm_groups_follow_param_groups_weight_decay():
    (net, *_), _ = module()
    run = {"optimizer": "AdamW", "lr": 0.01, "weight_decay": 0.1, "timm_groups": True}
    wd = per_tensor(run)
    neutral = Task.model_validate(NET).tensors   # layout order = named_parameters() order
    assert [n for n, t in zip(NATIVE, neutral) if wd[t] == 0.0] == timm_no_decay_names(net)
    out = per_tensor({**run, "no_weight_decay_list": ["net.6.*"]})
    assert sorted(k for k, v in out.items() if v) == ["dense_0.weight", "dense_1.weight"]
    assert timm_no_decay_names(net, ["net.6.*"]) == [n for n in NATIVE if n not in KERNELS[:2]]


def test_no_decay_substrings():
    run = {"optimizer": "AdamW", "lr": 0.01, "weight_decay": 0.1, "no_decay": ["bias"]}
    # "bias" alone leaves LayerNorm's weight (its scale) decayed: it is `net.1.weight`, not `...LayerNorm.weight`
    assert [k for k, v in per_tensor(run).items() if v] == ["dense_0.weight", "norm_0.scale", "dense_1.weight",
                                                            "norm_1.scale", "out.weight"]


@pytest.mark.parametrize("run, key, words", [
    # the HF examples' list: "LayerNorm.weight" is in no torch name of an nn.Sequential MLP, a silent no-op in torch
    ({"no_decay": ["bias", "LayerNorm.weight"], "weight_decay": 0.1}, "no_decay",
     "'LayerNorm.weight', which is in no parameter's name"),
    ({"timm_groups": True, "weight_decay": 0.1, "no_weight_decay_list": ["head.*"]}, "no_weight_decay_list",
     "'head.*', which matches no parameter"),
    ({"hf_trainer_groups": True}, "hf_trainer_groups", "needs weight_decay"),
    ({"hf_trainer_groups": True, "timm_groups": True, "weight_decay": 0.1}, "timm_groups", "together with"),
    ({"param_groups": [{"params": KERNELS}], "no_decay": ["bias"], "weight_decay": 0.1}, "no_decay", "together with"),
    ({"no_weight_decay_list": ["net.0.*"], "weight_decay": 0.1}, "no_weight_decay_list", "timm_groups"),
    ({"no_decay": [], "weight_decay": 0.1}, "no_decay", "at least one"),
])
def test_builder_errors_name_the_key(bad_run, run, key, words):
    err = bad_run("torch", {"optimizer": "AdamW", "lr": 0.01, **run}, TASK_TOML)
    assert err.key == f"runs.a.{key}" and words in str(err), str(err)
    if "matches no" in words or "no parameter's" in words:
        assert "net.0.weight" in str(err) and "net.6.bias" in str(err)   # the parameters that exist


@needs_torch
@pytest.mark.slow
def test_builders_and_named_groups_train_natively():
    task = {**NET, "model": {"hidden": [5], "activation": "gelu", "norm": "layer", "norm_eps": 1e-3},
            "init": "normal_all"}
    adamw = {"backend": "torch", "optimizer": "AdamW", "lr": 0.02, "weight_decay": 0.3}
    cases = {"hf": (task, {**adamw, "hf_trainer_groups": True}),
             "timm": (task, {**adamw, "timm_groups": True, "no_weight_decay_list": ["net.0.*"]}),
             "no_decay": (task, {**adamw, "optimizer": "SGD", "momentum": 0.9, "no_decay": ["bias"],
                                 "penalty": {"l2": 0.01}}),
             "frozen": (task, {**adamw, "param_groups": [{"params": ["net.0.weight", "net.3.weight"]}],
                               "clip_grad_value": 0.05})}
    report = fidelity.run_battery(cases, "float64")
    assert all(v["status"] == "ok" and v["holds"] and v["max_rel_err"] < 1e-12 for v in report.values()), report
    decayed = {k: [p for r in v["semantics"]["decay"] for p in r["params"]] for k, v in report.items()}
    assert decayed["hf"] == ["dense_0.weight", "out.weight"] and decayed["timm"] == ["out.weight"]
    frozen = report["frozen"]["semantics"]["frozen"]
    assert frozen == ["dense_0.bias", "norm_0.scale", "norm_0.offset", "out.bias"]


# ---------------------------------------------------------------- the battery
@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_network_battery(dtype):
    report = assert_network_battery_green("torch", dtype, realized=27, inexpressible=29)
    worst = max(v["max_rel_err"] for v in report.values())
    assert worst < (1e-13 if dtype == "float64" else 1e-5), worst


# ---------------------------------------------------------------- torch facts the MLP rests on
@needs_torch
@pytest.mark.parametrize("model", network_battery.MODELS, ids=lambda m: f"{m['activation']}-{m['norm']}")
def test_autograd_meets_the_reference_gradients(model):
    (net, X, y, tensors), data = module(model)
    loss = ((net(X) - y) ** 2).mean() / 2
    loss.backward()
    ref = network.gradients(network.start(data), data["X_train"], data["y_train"], 1.0, network.model_of(data))
    for name, p in tensors.items():
        g = p.grad.numpy()
        g = g.T if g.ndim == 2 else g
        assert np.max(np.abs(g - ref[name])) <= 1e-14 * max(1.0, np.max(np.abs(ref[name]))), name


@needs_torch
def test_layernorm_and_gelu_defaults():
    import inspect

    import torch
    assert inspect.signature(torch.nn.LayerNorm).parameters["eps"].default == 1e-5
    assert inspect.signature(torch.nn.GELU).parameters["approximate"].default == "none"
    one = torch.ones(1, dtype=torch.float64)
    assert torch.nn.GELU()(one).item() == pytest.approx(0.8413447460685429, abs=1e-15)   # erf form
    assert torch.nn.GELU(approximate="tanh")(one).item() == pytest.approx(0.8411919906082768, abs=1e-15)
    x = torch.randn(7, 5, dtype=torch.float64)
    z = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    assert torch.allclose(torch.nn.LayerNorm(5, dtype=torch.float64)(x), z, rtol=0, atol=1e-14)   # biased var in sqrt


@needs_torch
def test_relu_gradient_at_zero_is_zero():
    import torch
    u = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    torch.nn.ReLU()(u).sum().backward()
    assert u.grad.tolist() == [0.0, 0.0, 0.0]


@needs_torch
def test_sequential_names_and_linear_layout():
    import torch
    seq = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    assert [(n, tuple(p.shape)) for n, p in seq.named_parameters()] == [
        ("0.weight", (3, 4)), ("0.bias", (3,)), ("1.weight", (3,)), ("1.bias", (3,)), ("3.weight", (1, 3)),
        ("3.bias", (1,))]   # str(index) per module, parameterless Tanh skipped; Linear's weight is (out, in)
    # an empty group is accepted: a builder's group that matches nothing would not fail in torch
    p = torch.nn.Parameter(torch.ones(2))
    assert len(torch.optim.SGD([{"params": []}, {"params": [p]}], lr=0.1).param_groups) == 2
