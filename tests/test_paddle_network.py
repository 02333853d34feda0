"""The paddle adapter on networks (issue 19): the MLP as nn.Sequential, Paddle's parameter names measured on the
installed release, apply_decay_param_fun / exclude_from_weight_decay_fn on those names, ParamAttr regularizers
keyed by layer, LayerNorm's and GELU's constants, and the network battery in float32 and float64."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math

import numpy as np
import pytest
from conftest import assert_network_battery_green

from wdparity.engine.data import make_data
from wdparity.judge import fidelity, network_battery
from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError

BAD = (InputError, ValueError)   # describe()'s InputError, or parse()'s pydantic ValidationError (a ValueError)
from wdparity.spec.models import Semantics, Task
from wdparity.spec.network import tensor_scope
from wdparity_backends import paddle_network
from wdparity_backends.paddle_backend import backend

needs_paddle = pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddlepaddle not installed")
EPS32 = 2.0 ** -10   # a LayerNorm epsilon float32 holds exactly (<= 1e-3, Paddle's cap)
RELU = {"hidden": [6], "activation": "relu", "norm": "none"}
LAYER = {"hidden": [5, 4], "activation": "tanh", "norm": "layer", "norm_eps": EPS32}
NATIVE = ["linear_0.w_0", "linear_0.b_0", "layer_norm_0.w_0", "layer_norm_0.b_0", "linear_1.w_0", "linear_1.b_0",
          "layer_norm_1.w_0", "layer_norm_1.b_0", "linear_2.w_0", "linear_2.b_0"]


def task_of(model: dict, dtype: str = "float64", **over) -> Task:
    return Task.model_validate({**network_battery.NETWORK_TASK, "model": model, "dtype": dtype, **over})


def describe(run: dict, model: dict = LAYER, dtype: str = "float64") -> dict:
    task = task_of(model, dtype)
    with tensor_scope(task.tensors):
        return backend.describe(backend.parse(run), task).neutral()


def rejected(run: dict, model: dict = LAYER) -> str:
    """The error a bad run gets, its key first (pydantic's carries it in ctx, as the case loader shows it)."""
    with pytest.raises(BAD) as err:
        describe(run, model)
    exc = err.value
    if isinstance(exc, InputError):
        return str(exc)
    return " ".join(f"`{e['ctx']['key']}` {e['msg']}" for e in exc.errors())


def train(run: dict, model: dict, dtype: str = "float64", **over):
    task = task_of(model, dtype, **over)
    data = make_data(task.model_dump())
    with tensor_scope(task.tensors):
        config = backend.parse(run)
        sem = backend.describe(config, task).neutral()
    job = {"task": task.model_dump(), "run": config.model_dump(), "dtype": dtype}
    return task, data, backend.train(job, data), sem


def meets_not(run: dict, model: dict, mutate, **over):
    """The network run meets its own describe() in float64, and not the semantics `mutate` changes."""
    task, data, native, sem = train(run, model, **over)
    assert fidelity.fidelity(sem, native, data, task.batch_size, "float64")["holds"]
    wrong = json.loads(json.dumps(sem))
    mutate(wrong)
    assert not fidelity.fidelity(wrong, native, data, task.batch_size, "float64")["holds"]


# ---------------------------------------------------------------- names, measured
@needs_paddle
def test_paddle_names_the_parameters_by_layer_counters_and_the_guard_restarts_them():
    import paddle

    task = task_of(LAYER)
    assert list(paddle_network.native_names(task.tensors)) == NATIVE
    assert list(paddle_network.native_names(task.tensors).values()) == list(task.tensors)
    data = make_data(task.model_dump())
    paddle.set_default_dtype("float64")
    net, tensors = paddle_network.network(paddle, data, "float64", task.model.model_dump(), task.tensors, {})
    assert [p.name for p in net.parameters()] == NATIVE
    assert [p.name for p in tensors.values()] == NATIVE
    # named_parameters(): the Sequential's indices (the activations hold none)
    structured = paddle_network.structured_names(task.tensors)
    assert [n for n, _ in net.named_parameters()] == list(structured) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias", "4.weight", "4.bias", "6.weight", "6.bias"]
    assert list(structured.values()) == list(task.tensors)
    # nn.Linear stores (in, out): the neutral shape, copied in bit for bit
    start = {k[5:]: v for k, v in data.items() if k.startswith("init:")}
    assert all(np.array_equal(tensors[n].numpy(), start[n]) for n in task.tensors)
    assert tuple(tensors["dense_0.weight"].shape) == (6, 5)
    # outside a guard the counters go on: a second network starts where the first ended
    a = paddle.nn.Sequential(paddle.nn.Linear(3, 2), paddle.nn.LayerNorm(2), paddle.nn.Linear(2, 1))
    b = paddle.nn.Linear(3, 1)
    ka = int(a[0].weight.name.split(".")[0].split("_")[1])
    assert a[2].weight.name == f"linear_{ka + 1}.w_0" and b.weight.name == f"linear_{ka + 2}.w_0"
    relu = task_of(RELU)
    assert list(paddle_network.native_names(relu.tensors)) == ["linear_0.w_0", "linear_0.b_0", "linear_1.w_0",
                                                             "linear_1.b_0"]
    assert list(paddle_network.structured_names(relu.tensors)) == ["0.weight", "0.bias", "2.weight", "2.bias"]


# ---------------------------------------------------------------- masks on native names
def test_apply_decay_param_fun_takes_parameter_names_and_rejects_others_listing_them():
    out = describe({"optimizer": "AdamW", "learning_rate": 0.01, "weight_decay": 0.4,
                    "apply_decay_param_fun": ["linear_0.w_0", "linear_1.w_0", "linear_2.w_0"]})
    assert out["decay"][0]["params"] == ["dense_0.weight", "dense_1.weight", "out.weight"]
    lamb = describe({"optimizer": "Lamb", "lamb_weight_decay": 0.4, "beta1": 0.875, "beta2": 0.9375,
                     "always_adapt": True, "exclude_from_weight_decay_fn": ["layer_norm_0.w_0", "layer_norm_0.b_0"]})
    assert "norm_0.scale" not in lamb["decay"][0]["params"] and "norm_1.scale" in lamb["decay"][0]["params"]
    assert "named_parameters() name: Paddle calls the filter with the parameter's `.name`" in rejected(
        {"optimizer": "AdamW", "apply_decay_param_fun": ["0.weight"]})
    why = rejected({"optimizer": "AdamW", "apply_decay_param_fun": ["linear_3.w_0"]})
    assert why.startswith("`apply_decay_param_fun` names 'linear_3.w_0'") and "layer_norm_1.b_0" in why
    why = rejected({"optimizer": "Lamb", "always_adapt": True, "exclude_from_weight_decay_fn": ["fc_0.b_0"]})
    assert why.startswith("`exclude_from_weight_decay_fn` names 'fc_0.b_0'") and str(NATIVE) in why
    with pytest.raises(BAD, match="layer_norm_0"):   # the linear model has no LayerNorm
        describe({"optimizer": "AdamW", "apply_decay_param_fun": ["layer_norm_0.w_0"]}, Task().model.model_dump())


def test_param_attrs_are_keyed_by_layer_and_a_key_naming_no_layer_lists_the_layers():
    out = describe({"optimizer": "SGD", "learning_rate": 0.05, "weight_decay": 0.3,
                    "weight_attr": {"layer_norm_0": {"regularizer": {"L2Decay": 0.0}},
                                    "linear_2": {"regularizer": {"L1Decay": 0.05}}},
                    "bias_attr": {"layer_norm_1": {"trainable": False}}})
    l2 = {r["coefficient"]: r["params"] for r in out["decay"] if r["norm"] == "l2"}
    assert "norm_0.scale" not in l2[0.3] and "out.weight" not in l2[0.3] and "norm_1.offset" not in l2[0.3]
    assert [r["params"] for r in out["decay"] if r["norm"] == "l1"] == [["out.weight"]]
    assert out["frozen"] == ["norm_1.offset"]
    why = rejected({"optimizer": "SGD", "weight_attr": {"linear_5": {"regularizer": {"L2Decay": 0.1}}}})
    assert why.startswith("`weight_attr` names the layer 'linear_5'") and "'layer_norm_1', 'linear_2'" in why
    with pytest.raises(BAD, match="keyed by layer"):
        describe({"optimizer": "SGD", "weight_attr": {"regularizer": {"L2Decay": 0.1}}})
    with pytest.raises(BAD, match="one ParamAttr"):
        describe({"optimizer": "SGD", "weight_attr": {"linear_0": {"regularizer": {"L2Decay": 0.1}}}},
                 Task().model.model_dump())
    assert "takes the norm over the trained ones only" in rejected(   # not the neutral global norm
        {"optimizer": "SGD", "grad_clip": {"ClipGradByGlobalNorm": 0.1}, "bias_attr": {"linear_1": {"trainable": False}}})
    with pytest.raises(BAD, match="nothing to train"):
        describe({"optimizer": "SGD", "weight_attr": {k: {"trainable": False} for k in ("linear_0", "linear_1")},
                  "bias_attr": {k: {"trainable": False} for k in ("linear_0", "linear_1")}}, RELU)


@pytest.mark.slow
@needs_paddle
def test_native_masks_decay_exactly_the_named_parameters():
    weights = ["dense_0.weight", "out.weight"]
    meets_not({"optimizer": "AdamW", "learning_rate": 0.01, "weight_decay": 0.4,
               "apply_decay_param_fun": ["linear_0.w_0", "linear_1.w_0"]}, RELU,
              lambda s: s["decay"][0].update(params=weights + ["dense_0.bias", "out.bias"]), init="normal_all")
    meets_not({"optimizer": "SGD", "learning_rate": 0.05, "weight_decay": 0.3,
               "bias_attr": {"layer_norm_0": {"regularizer": {"L2Decay": 0.0}}}}, LAYER,
              lambda s: s["decay"][0]["params"].insert(3, "norm_0.offset"), init="normal_all")
    task, data, native, sem = train({"optimizer": "Adam", "learning_rate": 0.01,
                                     "weight_attr": {"layer_norm_1": {"trainable": False}}}, LAYER)
    assert sem["frozen"] == ["norm_1.scale"] and np.all(np.asarray(native["norm_1.scale"]) == 1.0)
    assert fidelity.fidelity(sem, native, data, task.batch_size, "float64")["holds"]


# ---------------------------------------------------------------- LayerNorm, GELU and Adagrad constants, measured
@needs_paddle
def test_layer_norm_default_epsilon_is_1e_5_and_gelu_defaults_to_the_erf_form():
    import paddle

    assert inspect.signature(paddle.nn.LayerNorm.__init__).parameters["epsilon"].default == 1e-5
    assert inspect.signature(paddle.nn.GELU.__init__).parameters["approximate"].default is False
    paddle.set_default_dtype("float64")
    u = np.linspace(-3.0, 3.0, 13)
    erf = u * 0.5 * (1.0 + np.array([math.erf(x / math.sqrt(2.0)) for x in u]))
    tanh = 0.5 * u * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u ** 3)))
    t = paddle.to_tensor(u)
    assert np.abs(paddle.nn.GELU()(t).numpy() - erf).max() < 1e-15
    assert np.abs(paddle.nn.GELU(approximate=True)(t).numpy() - tanh).max() < 1e-15
    assert np.abs(erf - tanh).max() > 1e-4
    assert paddle_network.activation(paddle.nn, "gelu")._approximate is False
    assert paddle_network.activation(paddle.nn, "gelu_tanh")._approximate is True


@needs_paddle
def test_layer_norm_takes_epsilon_as_a_c_float_capped_at_1e_3():
    import paddle

    x = np.array([[0.0, 1e-3, -1e-3, 2e-3]])
    c = x - x.mean(axis=1, keepdims=True)
    var = (c * c).mean(axis=1, keepdims=True)
    for eps in (1e-3, 1e-5, 1e-6):
        out = paddle.nn.functional.layer_norm(paddle.to_tensor(x), 4, epsilon=eps).numpy()
        assert np.array_equal(out, c / np.sqrt(var + float(np.float32(eps))))   # float32(eps), in float64
        assert np.abs(out - c / np.sqrt(var + eps)).max() > 1e-10   # 2.4e-8 at 1e-3, 5.6e-10 at 1e-6
    with pytest.raises(ValueError, match="epsilon"):
        paddle.nn.functional.layer_norm(paddle.to_tensor(x), 4, epsilon=2e-3)
    # the adapter: a float64 run needs a float32-exact norm_eps; float32 runs take any; > 1e-3 is refused
    layer = {**LAYER, "norm_eps": 1e-5}
    with pytest.raises(InputError, match="norm_eps.*float32 value.*9.99999974"):
        describe({"optimizer": "SGD"}, layer)
    assert describe({"optimizer": "SGD"}, layer, "float32")["optimizer"]["name"] == "sgd"
    wide = {**LAYER, "norm_eps": 1e-2}
    with pytest.raises(InputError, match="0.001f"):
        describe({"optimizer": "SGD"}, wide, "float32")
    task = task_of(wide)
    with tensor_scope(task.tensors), pytest.raises(Inexpressible, match="nearest: norm_eps = 1e-3"):
        backend.realize(Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.05}}), task)


@needs_paddle
def test_adagrad_takes_epsilon_as_a_c_float():
    import paddle

    paddle.set_default_dtype("float64")
    w = paddle.create_parameter([1], "float64")
    w.set_value(np.array([0.0]))
    opt = paddle.optimizer.Adagrad(learning_rate=1.0, epsilon=1e-10, parameters=[w])
    (w * 1e-10).sum().backward()
    opt.step()
    assert -w.numpy()[0] == 1e-10 / (1e-10 + float(np.float32(1e-10))) != 0.5
    assert describe({"optimizer": "Adagrad", "learning_rate": 0.1, "epsilon": 1e-10})["optimizer"]["eps"] == \
        float(np.float32(1e-10))


# ---------------------------------------------------------------- the network battery
def test_round_trip_over_the_network_battery():
    expressed, reasons = network_battery.round_trip("paddle")
    assert (len(expressed), len(reasons)) == (30, 26)
    why = {"has no lion": 7, "epsilon inside the root": 7, "decoupled weight decay only in AdamW and Lamb": 12}
    assert {w: sum(w in r for r in reasons.values()) for w in why} == why
    assert all("nearest" in r for r in reasons.values())
    runs = {k.split("-")[1] + "-" + k.split("-")[2]: r for k, r in expressed.items()}
    assert runs["adam-decoupled_weight"]["apply_decay_param_fun"] == ["linear_0.w_0", "linear_1.w_0"]
    assert runs["sgd-coupled_groups"]["bias_attr"]["layer_norm_1"] == {"regularizer": {"L2Decay": 0.05}}
    assert "linear_2.b_0" in runs["lamb-decoupled_weight"]["exclude_from_weight_decay_fn"]


@pytest.mark.slow
@needs_paddle
def test_network_battery_float32():
    report = assert_network_battery_green("paddle", "float32", realized=30, inexpressible=26)
    assert max(v["max_rel_err"] for v in report.values()) < 1e-5


@pytest.mark.slow
@needs_paddle
def test_network_battery_float64_with_float32_exact_layer_norm_epsilons():
    """The battery's LayerNorm epsilons (1e-5, 1e-3, 1e-6) are not float32 values, which a float64 run of Paddle's
    LayerNorm needs (describe() refuses them): the same cases with norm_eps rounded to float32 meet the reference."""
    cases, refused = network_battery.network_battery("paddle")
    assert (len(cases), len(refused)) == (30, 26)
    exact, layer = {}, 0
    for name, (task, run) in cases.items():
        if task["model"]["norm"] == "layer":
            layer += 1
            t = Task.model_validate({**task, "dtype": "float64"})
            with tensor_scope(t.tensors), pytest.raises(InputError, match="norm_eps"):
                backend.describe(backend.parse({k: v for k, v in run.items() if k != "backend"}), t)
            task = {**task, "model": {**task["model"], "norm_eps": float(np.float32(task["model"]["norm_eps"]))}}
        exact[name] = (task, run)
    assert layer == 22
    report = fidelity.run_battery(exact, "float64")
    failed = {k: (v["status"], v.get("reason")) for k, v in report.items() if v["status"] != "ok" or not v["holds"]}
    assert not failed
    assert max(v["max_rel_err"] for v in report.values()) <= 1e-12
