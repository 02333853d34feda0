"""Networks (issue 19): the model spec and its names, the reference's hand-written gradients against central finite
differences, per-tensor recording and judging, and input errors that name the tensors a model has."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from wdparity.engine import network, reference, rounding
from wdparity.engine.data import make_data, network_losses
from wdparity.engine.network_recording import NetworkRecorder
from wdparity.judge import compare, envelope
from wdparity.spec.errors import InputError
from wdparity.spec.models import DecayRule, Penalty, Semantics, Task
from wdparity.spec.network import kernels, tensor_scope

MODELS = [
    {"hidden": [5, 4], "activation": "tanh", "norm": "layer", "norm_eps": 1e-5},
    {"hidden": [6], "activation": "relu"},
    {"hidden": [4, 3], "activation": "gelu", "norm": "layer", "norm_eps": 1e-3},
    {"hidden": [5], "activation": "gelu_tanh"},
    {"hidden": [3, 3, 2], "activation": "tanh", "norm": "layer", "norm_eps": 0.5},
]


SECOND = '[runs.b]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.2\n'


def _data(model, **task):
    return make_data(Task(num_inputs=6, n_train=12, batch_size=4, epochs=2, model=model, **task).model_dump())


def _loss(params, X, y, model, factor=1.0):
    r = network.forward(params, X, model)[0] - y
    return factor * 0.5 * np.mean(r * r)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m['activation']}-{m.get('norm', 'none')}-{len(m['hidden'])}")
def test_gradients_meet_central_finite_differences(model):
    data = _data(model, init="normal_all")
    spec = network.model_of(data)
    rng = np.random.default_rng(7)
    params = {k: v + 0.2 * rng.standard_normal(v.shape) for k, v in network.start(data).items()}
    X, y = data["X_train"][:5], data["y_train"][:5]
    grads = network.gradients(params, X, y, 2.0, spec)   # the mse loss factor
    assert list(grads) == list(params)
    worst = 0.0
    for name, value in params.items():
        for idx in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][idx] += 1e-6
            minus[name][idx] -= 1e-6
            fd = (_loss(plus, X, y, spec, 2.0) - _loss(minus, X, y, spec, 2.0)) / 2e-6
            worst = max(worst, abs(fd - grads[name][idx]) / max(1.0, abs(fd)))
    assert worst < 1e-7


def test_a_wrong_gradient_is_caught_by_the_finite_differences():
    """The check above can fail: a LayerNorm backward without its mean-of-(dzhat*zhat) term misses by far more."""
    model = MODELS[0]
    data = _data(model)
    spec = network.model_of(data)
    params = network.start(data)
    X, y = data["X_train"], data["y_train"]
    g = network.gradients(params, X, y, 1.0, spec)["dense_0.weight"]
    wrong = {**spec, "norm": "none"}   # the same tensors, LayerNorm's backward skipped
    plus = {k: v.copy() for k, v in params.items()}
    plus["dense_0.weight"][0, 0] += 1e-6
    minus = {k: v.copy() for k, v in params.items()}
    minus["dense_0.weight"][0, 0] -= 1e-6
    fd = (_loss(plus, X, y, spec) - _loss(minus, X, y, spec)) / 2e-6
    skipped = network.gradients({k: v for k, v in params.items() if not k.startswith("norm")}, X, y, 1.0, wrong)
    assert abs(fd - g[0, 0]) < 1e-8
    assert abs(fd - skipped["dense_0.weight"][0, 0]) > 1e-4


def test_activations_are_the_frameworks_formulas():
    u = np.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    from math import erf, pi, sqrt, tanh
    exact = [x * 0.5 * (1 + erf(x / sqrt(2))) for x in u]
    approx = [0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3))) for x in u]
    assert np.allclose(network.activate(u, "gelu"), exact, rtol=0, atol=1e-15)
    assert np.allclose(network.activate(u, "gelu_tanh"), approx, rtol=0, atol=1e-15)
    assert abs(network.activate(np.array([1.0]), "gelu")[0] - network.activate(np.array([1.0]), "gelu_tanh")[0]) > 1e-4
    assert network.activation_grad(np.array([0.0]), np.array([0.0]), "relu")[0] == 0.0


def test_the_layout_names_every_tensor_in_order():
    t = Task(num_inputs=7, model={"hidden": [4, 3], "norm": "layer"})
    assert t.tensors == ("dense_0.weight", "dense_0.bias", "norm_0.scale", "norm_0.offset", "dense_1.weight",
                         "dense_1.bias", "norm_1.scale", "norm_1.offset", "out.weight", "out.bias")
    assert t.parameters == 7 * 4 + 4 + 8 + 4 * 3 + 3 + 6 + 3 + 1
    assert Task().tensors == ("weight", "bias")
    assert kernels(t.tensors) == ["dense_0.weight", "dense_1.weight", "out.weight"]


def test_a_case_without_model_has_the_linear_data_bit_for_bit():
    """The network's draws come after every linear draw: the same task with a network shares X, y and the order."""
    lin = make_data(Task(num_inputs=6, n_train=12, batch_size=4, epochs=2).model_dump())
    net = _data(MODELS[0])
    assert "model_json" not in lin and not any(k.startswith("init:") for k in lin)
    for key in ("X_train", "y_train", "X_test", "y_test", "order"):
        assert np.array_equal(lin[key], net[key])
    w = net["init:dense_0.weight"]
    assert w.shape == (6, 5) and abs(w.std() * np.sqrt(6) - 1) < 0.6   # N(0, 1/fan_in)
    assert not net["init:dense_0.bias"].any() and (net["init:norm_0.scale"] == 1).all()


@pytest.mark.parametrize("bad, words", [
    ({"hidden": [0]}, "hidden[0]"),
    ({"norm": "layer"}, "needs hidden layers"),
    ({"hidden": [4], "activation": "swish"}, "activation"),
    ({"hidden": [4], "norm_eps": 0.0}, "norm_eps"),
    ({"hidden": [4], "depth": 3}, "depth"),
])
def test_bad_models_are_input_errors_naming_the_key(write_case, bad, words):
    from wdparity.run.cases import load_case

    model = "{ " + ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in bad.items()) + " }"
    path = write_case(f'title = "t"\n[task]\nmodel = {model}\n[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.1\n'
                      + SECOND)
    with pytest.raises(InputError) as err:
        load_case(path)
    assert words in str(err.value) and "model" in str(err.value)


def test_a_mask_naming_a_tensor_the_network_lacks_lists_the_tensors_it_has(write_case):
    from wdparity.run.cases import load_case

    path = write_case('title = "t"\n[task]\nmodel = { hidden = [4] }\n[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\n'
                      'lr = 0.1\ndecay = [{ coefficient = 0.1, params = ["weight"] }]\n' + SECOND)
    with pytest.raises(InputError) as err:
        load_case(path)
    text = str(err.value)
    assert "runs.a.decay" in text and '"weight" names no tensor' in text
    assert "dense_0.weight" in text and "out.bias" in text


def test_every_tensor_and_the_weights_are_the_defaults_inside_a_scope():
    tensors = Task(model={"hidden": [3]}).tensors
    with tensor_scope(tensors):
        assert DecayRule(coefficient=0.1).params == list(tensors)
        assert Penalty(l2=0.1).params == ["dense_0.weight", "out.weight"]
        with pytest.raises(ValidationError, match="must leave at least one tensor"):
            Semantics(optimizer={"name": "sgd", "lr": 0.1}, frozen=list(tensors))
    assert DecayRule(coefficient=0.1).params == ["weight", "bias"]


def test_a_network_that_is_not_trained_by_a_backend_is_an_input_error(write_case, monkeypatch):
    from wdparity.run import cases, registry

    backend = registry.get("numpy")
    monkeypatch.setattr(type(backend), "models_networks", False)
    path = write_case('title = "t"\n[task]\nmodel = { hidden = [4] }\n[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\n'
                      'lr = 0.1\n' + SECOND)
    with pytest.raises(InputError, match="trains the linear model only"):
        cases.load_case(path)


def _sgd(decay=()):
    return {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False},
            "decay": [dict(r) for r in decay]}


def test_recorder_keeps_named_tensors_and_the_stop_rule():
    data = _data(MODELS[1])
    rec = NetworkRecorder(data, 3, np.float64)
    start = network.start(data)
    assert rec.record(0, start)
    assert rec.record(1, {k: v + 1 for k, v in start.items()})
    blown = {k: v * 1e9 for k, v in start.items()}
    assert not rec.record(2, blown)
    out = rec.result()
    assert list(out) == [name for name, _ in network.layout(network.model_of(data), 6)]
    assert np.array_equal(out["dense_0.weight"][0], start["dense_0.weight"].reshape(-1))
    assert np.isnan(out["out.bias"][3]).all() and not np.isnan(out["out.bias"][2]).any()
    with pytest.raises(ValueError, match="lack"):
        rec.pack({"dense_0.weight": start["dense_0.weight"]})


def test_the_judge_names_the_first_divergent_tensor():
    """Decaying only the weight matrices vs every tensor: the LayerNorm scale (1 at the start) moves first."""
    data = _data(MODELS[0])
    tensors = Task(num_inputs=6, model=MODELS[0]).tensors
    rule = {"norm": "l2", "coupling": "gradient", "coefficient": 0.2, "scale": None, "l1_at_zero": None}
    every = _sgd([{**rule, "params": list(tensors)}])
    weights = _sgd([{**rule, "params": kernels(tensors)}])
    a, b = reference.run(every, data, 4), reference.run(weights, data, 4)
    envs = [envelope.envelope(s, data, 4, "float64") for s in (every, weights)]
    out = compare.judge(a, b, envs, "float64")
    assert out["verdict"] == "diverges" and out["first_divergent_step"] == 1
    assert out["tensor"].startswith("norm_")
    assert set(out["curve"]) == set(tensors)
    same = compare.judge(a, reference.run(every, data, 4), envs[:1] * 2, "float64")
    assert same["verdict"] == "equivalent" and same["max_rel_err"] == 0.0


def test_float32_reference_stays_inside_its_envelope_of_float64():
    data = _data(MODELS[2])
    sem = _sgd()
    a = reference.run(sem, data, 4, "float32")
    b = reference.run(sem, data, 4, "float64")
    envs = [envelope.envelope(sem, data, 4, "float32"), envelope.envelope(sem, data, 4, "float64")]
    out = compare.judge(a, b, envs, "float32")
    assert out["verdict"] == "equivalent" and 0 < out["max_rel_err"] < 1e-5


def test_random_rounding_leaves_exact_operations_exact():
    """relu is max(u, 0): exact in IEEE arithmetic, so a sample's dead unit outputs exactly 0, as float32 does, and
    the weights out of it get exactly no gradient; tanh's rounding is relative to its result, not its argument."""
    model = {"hidden": [6], "activation": "relu", "norm": "none", "norm_eps": 1e-5}
    rng = np.random.default_rng(3)
    params = {"dense_0.weight": rng.standard_normal((4, 6)), "dense_0.bias": rng.standard_normal(6),
              "out.weight": rng.standard_normal((6, 1)), "out.bias": np.zeros(1)}
    params["dense_0.bias"][:2] = -10.0   # two units dead on every row
    X, y = rng.standard_normal((5, 4)), rng.standard_normal(5)
    rr = rounding.RandomRounding(1, 2.0 ** -24)
    _, cache = network.forward(params, X, model, rr)
    dead = cache[0]["u"] <= 0
    assert dead.any() and (cache[0]["a"][dead] == 0.0).all()
    grads = network.gradients(params, X, y, 1.0, model, rr=rr)
    _, exact = network.forward(params, X, model)
    never = (exact[0]["a"] == 0.0).all(axis=0)   # units dead on every row of the batch
    assert never.any() and (grads["out.weight"][never] == 0.0).all()
    u = np.array([[8.0, -9.0, 0.5]])
    tanh = {"hidden": [3], "activation": "tanh", "norm": "none", "norm_eps": 1e-5}
    sample = network.forward({"dense_0.weight": np.eye(3), "dense_0.bias": np.zeros(3), "out.weight": np.ones((3, 1)),
                              "out.bias": np.zeros(1)}, u, tanh, rounding.RandomRounding(2, 2.0 ** -24))[1][0]["a"]
    assert (np.abs(sample - np.tanh(u)) <= 2.0 ** -24 * np.abs(np.tanh(u))).all()


def test_a_relu_network_in_float32_is_decidable_under_adam():
    """Adam divides a gradient by its own size: a spurious 1e-8 gradient on a dead unit's weights would move them
    by lr and make every float32 step undecidable (found on a user's relu case, 2026-12-02)."""
    model = {"hidden": [8, 4], "activation": "relu", "norm": "none"}
    data = _data(model)
    sem = {"optimizer": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "eps_placement": "corrected",
                         "bias_correction": True},
           "decay": [{"norm": "l2", "coupling": "decoupled", "coefficient": 0.01, "scale": "lr",
                      "params": network.names_of(data), "l1_at_zero": None}]}
    env = envelope.envelope(sem, data, 4, "float32")
    ref = reference.run(sem, data, 4)
    worst = max(float(env[k][3] / np.abs(ref[k]).max()) for k in env)
    assert worst < 1e-4


def test_network_losses_are_the_forward_pass():
    data = _data(MODELS[3])
    out = reference.run(_sgd(), data, 4)
    tr, te = network_losses(data, out, "half_mse")
    start = network.start(data)
    r = network.predict(start, data["X_train"], network.model_of(data)) - data["y_train"]
    assert tr[0] == pytest.approx(0.5 * np.mean(r * r), rel=1e-15)
    assert tr[-1] < tr[0] and len(te) == len(tr)


def test_adafactor_and_grids_of_networks():
    data = _data(MODELS[1])
    sems = [_sgd(), {**_sgd(), "optimizer": {**_sgd()["optimizer"], "lr": 0.05}}]
    grid = reference.run(sems, data, 4)
    assert all(np.array_equal(g["out.weight"], reference.run(s, data, 4)["out.weight"]) for g, s in zip(grid, sems))
