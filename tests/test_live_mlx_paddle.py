"""wdparity.describe() on live mlx.optimizers and paddle.optimizer objects: the same neutral semantics as the same
setting written as a TOML [runs.…] table (the adapter's describe() of each), with the model naming the tensors, and
what cannot be read (schedules that are callables, frozen or per-tensor settings outside the vocabulary, state)
listed with a reason."""

from __future__ import annotations

import tomllib

import pytest

import wdparity
from wdparity.run.cases import load_run
from wdparity.spec.models import Task


def toml_semantics(text: str):
    return load_run("x", tomllib.loads(text)["runs"]["x"], Task(), "test", {}).semantics


def run_table(backend: str, body: str) -> str:
    return f'[runs.x]\nbackend = "{backend}"\n' + body


def reasons(d) -> dict:
    return {u.key: u.reason for u in d.unsupported}


# ================================================================ mlx
@pytest.fixture
def mlx():
    pytest.importorskip("mlx.core")
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    mx.set_default_device(mx.cpu)
    return mx, nn, optim


MLX_CASES = {   # id -> (constructor call on `optim`, the same setting as a TOML run body)
    "sgd-momentum": (lambda o: o.SGD(0.1, momentum=0.9, weight_decay=0.01),
                     'optimizer = "SGD"\nlearning_rate = 0.1\nmomentum = 0.9\nweight_decay = 0.01\n'),
    "sgd-nesterov-dampening": (lambda o: o.SGD(0.03, momentum=0.8, dampening=0.3, weight_decay=0.2),
                               'optimizer = "SGD"\nlearning_rate = 0.03\nmomentum = 0.8\ndampening = 0.3\n'
                               'weight_decay = 0.2\n'),
    "adam": (lambda o: o.Adam(0.003, betas=[0.8, 0.99], bias_correction=True),
             'optimizer = "Adam"\nlearning_rate = 0.003\nbetas = [0.8, 0.99]\nbias_correction = true\n'),
    "adamw-defaults": (lambda o: o.AdamW(0.01), 'optimizer = "AdamW"\nlearning_rate = 0.01\n'),
    "adamw": (lambda o: o.AdamW(0.01, weight_decay=0.4, eps=1e-3),
              'optimizer = "AdamW"\nlearning_rate = 0.01\nweight_decay = 0.4\neps = 1e-3\n'),
    "rmsprop": (lambda o: o.RMSprop(0.01, alpha=0.9), 'optimizer = "RMSprop"\nlearning_rate = 0.01\nalpha = 0.9\n'),
    "adagrad": (lambda o: o.Adagrad(0.1, eps=1e-10), 'optimizer = "Adagrad"\nlearning_rate = 0.1\neps = 1e-10\n'),
    "adadelta": (lambda o: o.AdaDelta(1.0, rho=0.95), 'optimizer = "AdaDelta"\nlearning_rate = 1.0\nrho = 0.95\n'),
    "adamax": (lambda o: o.Adamax(0.01), 'optimizer = "Adamax"\nlearning_rate = 0.01\n'),
    "lion": (lambda o: o.Lion(0.001, weight_decay=0.3),
             'optimizer = "Lion"\nlearning_rate = 0.001\nweight_decay = 0.3\n'),
    "adafactor-defaults": (lambda o: o.Adafactor(), 'optimizer = "Adafactor"\n'),
    "adafactor": (lambda o: o.Adafactor(learning_rate=0.05, relative_step=False, beta_1=0.9, eps=(1e-20, 1e-3)),
                  'optimizer = "Adafactor"\nlearning_rate = 0.05\nrelative_step = false\nbeta_1 = 0.9\n'
                  'eps = [1e-20, 1e-3]\n'),
    "step-decay": (lambda o: o.AdamW(o.step_decay(0.01, 0.5, 4), weight_decay=0.1),
                   'optimizer = "AdamW"\nlearning_rate = 0.01\nweight_decay = 0.1\n'
                   'schedule = {kind = "step", every = 4, factor = 0.5}\n'),
    "cosine-decay": (lambda o: o.SGD(o.cosine_decay(0.01, 10, 0.1 * 0.01), momentum=0.9),
                     'optimizer = "SGD"\nlearning_rate = 0.01\nmomentum = 0.9\n'
                     'schedule = {kind = "cosine", total = 10, floor = 0.1}\n'),
}


@pytest.mark.parametrize("case", sorted(MLX_CASES))
def test_mlx_optimizers_describe_as_their_toml_table(mlx, case):
    mx, nn, optim = mlx
    make, body = MLX_CASES[case]
    d = wdparity.describe(make(optim), model=nn.Linear(3, 1))
    assert d.semantics == toml_semantics(run_table("mlx", body))
    assert d.unsupported == []
    if "learning_rate" in body and "schedule" not in body:   # a float32 array: its shortest decimal, said so
        assert any("float32 array" in n for n in d.notes)


def test_mlx_a_different_setting_describes_differently(mlx):
    """The comparison above can fail: the live AdamW(weight_decay=0.4) is not the table's 0.04."""
    mx, nn, optim = mlx
    d = wdparity.describe(optim.AdamW(0.01, weight_decay=0.4), model=nn.Linear(3, 1))
    assert d.semantics != toml_semantics(run_table("mlx", 'optimizer = "AdamW"\nlearning_rate = 0.01\n'
                                                          'weight_decay = 0.04\n'))


@pytest.mark.parametrize("filt, params", [
    (lambda path, array: array.ndim == 2, ["weight"]),
    (lambda path, array: path.endswith("bias"), ["bias"]),
])
def test_mlx_multi_optimizer_filters_are_called_on_the_model(mlx, filt, params):
    mx, nn, optim = mlx
    opt = optim.MultiOptimizer([optim.AdamW(0.01, weight_decay=0.1), optim.Adam(0.01)], [filt])
    d = wdparity.describe(opt, model=nn.Linear(3, 1))
    assert d.run["optimizers"][0]["params"] == params and "params" not in d.run["optimizers"][1]
    assert d.semantics == toml_semantics(run_table("mlx", f"""optimizer = "MultiOptimizer"
optimizers = [{{optimizer = "AdamW", learning_rate = 0.01, weight_decay = 0.1, params = {params!r}}},
              {{optimizer = "Adam", learning_rate = 0.01}}]
""".replace("'", '"')))
    assert [r.params for r in d.semantics.decay] == [params]
    assert any("filters are Python callables" in n for n in d.notes)
    with pytest.raises(ValueError, match="pass model="):
        wdparity.describe(opt)


def test_mlx_multi_optimizer_whose_filter_takes_nothing_is_listed(mlx):
    mx, nn, optim = mlx
    opt = optim.MultiOptimizer([optim.SGD(0.1, weight_decay=0.3), optim.SGD(0.1, weight_decay=0.5), optim.SGD(0.1)],
                               [lambda p, a: True, lambda p, a: p == "bias"])
    d = wdparity.describe(opt, model=nn.Linear(3, 1))
    assert d.semantics == toml_semantics(run_table("mlx", 'optimizer = "SGD"\nlearning_rate = 0.1\n'
                                                          'weight_decay = 0.3\n'))
    assert "takes no parameter" in reasons(d)["optimizers[1]"] and "takes no parameter" in reasons(d)["optimizers[2]"]


def test_mlx_float64_learning_rates_as_python_floats_and_as_arrays(mlx):
    mx, nn, optim = mlx
    model = nn.Linear(3, 1)
    model.set_dtype(mx.float64)
    d = wdparity.describe(optim.SGD(0.1, momentum=0.9), model=model)   # mx.array(0.1): float32, cast at each step
    assert d.run["dtype"] == "float64" and "hyperparameters_as_arrays" not in d.run
    assert d.semantics.optimizer.lr == float(mx.array(0.1).item()) != 0.1
    d = wdparity.describe(optim.SGD(mx.array(0.1, dtype=mx.float64), momentum=0.9), model=model)
    assert d.run["hyperparameters_as_arrays"] is True and d.semantics.optimizer.lr == 0.1
    assert d.semantics == load_run("x", {"backend": "mlx", "optimizer": "SGD", "learning_rate": 0.1, "momentum": 0.9,
                                         "hyperparameters_as_arrays": True}, Task(dtype="float64"), "t", {}).semantics
    # a float64 learning rate with Python-float betas under bias_correction: the vocabulary hands them over together
    with pytest.raises(ValueError, match="in part only"):
        wdparity.describe(optim.Adam(mx.array(0.01, dtype=mx.float64), bias_correction=True), model=model)


def test_mlx_unreadable_settings_are_listed_with_reasons(mlx):
    mx, nn, optim = mlx
    d = wdparity.describe(optim.SGD(optim.exponential_decay(0.1, 0.9), momentum=0.9), model=nn.Linear(3, 1))
    assert "rule cannot be read" in reasons(d)["learning_rate"] and d.semantics.schedule.kind == "constant"
    model = nn.Linear(3, 1)
    model.freeze(keys=["bias"])
    d = wdparity.describe(optim.SGD(0.1), model=model)
    assert "never updated" in reasons(d)["model.freeze"]
    model = nn.Linear(3, 1)
    opt = optim.Adam(0.01)
    opt.update(model, {"weight": mx.ones((1, 3)), "bias": mx.ones((1,))})
    d = wdparity.describe(opt, model=model)
    assert "taken 1 steps" in reasons(d)["state.step"]
    assert any("clip_grad_norm" in n for n in d.notes)   # the step's calls are said to be invisible


def test_mlx_refusals(mlx):
    mx, nn, optim = mlx
    with pytest.raises(TypeError, match="Newton-Schulz"):
        wdparity.describe(optim.Muon(0.01))
    with pytest.raises(ValueError, match="one-Linear task"):
        wdparity.describe(optim.SGD(0.1), model=nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)))


# ================================================================ paddle
@pytest.fixture
def paddle():
    paddle = pytest.importorskip("paddle")
    paddle.set_device("cpu")
    paddle.set_default_dtype("float32")
    return paddle


def _linear(paddle, **attrs):
    return paddle.nn.Linear(3, 1, **attrs)   # outside a name guard: linear_K with a process-wide K


PADDLE_CASES = {
    "sgd-l2": (lambda p, m: p.optimizer.SGD(0.05, parameters=m.parameters(), weight_decay=0.1),
               'optimizer = "SGD"\nlearning_rate = 0.05\nweight_decay = 0.1\n'),
    "sgd-l1": (lambda p, m: p.optimizer.SGD(0.05, parameters=m.parameters(), weight_decay=p.regularizer.L1Decay(0.05)),
               'optimizer = "SGD"\nlearning_rate = 0.05\nweight_decay = {L1Decay = 0.05}\n'),
    "momentum-nesterov": (lambda p, m: p.optimizer.Momentum(0.02, momentum=0.8, use_nesterov=True, weight_decay=0.1,
                                                              parameters=m.parameters()),
                          'optimizer = "Momentum"\nlearning_rate = 0.02\nmomentum = 0.8\nuse_nesterov = true\n'
                          'weight_decay = 0.1\n'),
    "adam-amsgrad": (lambda p, m: p.optimizer.Adam(0.01, beta2=0.99, amsgrad=True, weight_decay=0.2,
                                                   parameters=m.parameters()),
                     'optimizer = "Adam"\nlearning_rate = 0.01\nbeta2 = 0.99\namsgrad = true\nweight_decay = 0.2\n'),
    "adamw-defaults": (lambda p, m: p.optimizer.AdamW(parameters=m.parameters()), 'optimizer = "AdamW"\n'),
    "adamw-apply-decay": (lambda p, m: p.optimizer.AdamW(0.01, weight_decay=0.4, parameters=m.parameters(),
                                                         apply_decay_param_fun=lambda n: n.endswith("w_0")),
                          'optimizer = "AdamW"\nlearning_rate = 0.01\nweight_decay = 0.4\n'
                          'apply_decay_param_fun = ["linear_0.w_0"]\n'),
    "rmsprop": (lambda p, m: p.optimizer.RMSProp(0.005, rho=0.9, epsilon=1e-4, momentum=0.5, centered=True,
                                                 parameters=m.parameters()),
                'optimizer = "RMSProp"\nlearning_rate = 0.005\nrho = 0.9\nepsilon = 1e-4\nmomentum = 0.5\n'
                'centered = true\n'),
    "adagrad": (lambda p, m: p.optimizer.Adagrad(0.1, initial_accumulator_value=0.1, parameters=m.parameters()),
                'optimizer = "Adagrad"\nlearning_rate = 0.1\ninitial_accumulator_value = 0.1\n'),
    "adadelta": (lambda p, m: p.optimizer.Adadelta(1.0, parameters=m.parameters()),
                 'optimizer = "Adadelta"\nlearning_rate = 1.0\n'),
    "adamax": (lambda p, m: p.optimizer.Adamax(0.01, beta1=0.875, epsilon=1e-3, parameters=m.parameters()),
               'optimizer = "Adamax"\nlearning_rate = 0.01\nbeta1 = 0.875\nepsilon = 1e-3\n'),
    "nadam": (lambda p, m: p.optimizer.NAdam(parameters=m.parameters(), weight_decay=0.1),
              'optimizer = "NAdam"\nweight_decay = 0.1\n'),
    "radam": (lambda p, m: p.optimizer.RAdam(0.01, parameters=m.parameters()),
              'optimizer = "RAdam"\nlearning_rate = 0.01\n'),
    "lamb-exclude": (lambda p, m: p.optimizer.Lamb(0.01, lamb_weight_decay=0.4, always_adapt=True,
                                                   exclude_from_weight_decay_fn=lambda q: q.name.endswith("b_0"),
                                                   parameters=m.parameters()),
                     'optimizer = "Lamb"\nlearning_rate = 0.01\nlamb_weight_decay = 0.4\nalways_adapt = true\n'
                     'exclude_from_weight_decay_fn = ["linear_0.b_0"]\n'),
    "clip-global": (lambda p, m: p.optimizer.AdamW(0.01, parameters=m.parameters(),
                                                   grad_clip=p.nn.ClipGradByGlobalNorm(0.1)),
                    'optimizer = "AdamW"\nlearning_rate = 0.01\ngrad_clip = {ClipGradByGlobalNorm = 0.1}\n'),
    "clip-value": (lambda p, m: p.optimizer.Momentum(0.03, parameters=m.parameters(), weight_decay=0.3,
                                                     grad_clip=p.nn.ClipGradByValue(0.01)),
                   'optimizer = "Momentum"\nlearning_rate = 0.03\nweight_decay = 0.3\n'
                   'grad_clip = {ClipGradByValue = 0.01}\n'),
    "step-decay": (lambda p, m: p.optimizer.SGD(p.optimizer.lr.StepDecay(0.05, step_size=4, gamma=0.5),
                                                parameters=m.parameters()),
                   'optimizer = "SGD"\nlearning_rate = 0.05\nschedule = {kind = "step", every = 4, factor = 0.5}\n'),
}


@pytest.mark.parametrize("case", sorted(PADDLE_CASES))
def test_paddle_optimizers_describe_as_their_toml_table(paddle, case):
    make, body = PADDLE_CASES[case]
    model = _linear(paddle)
    d = wdparity.describe(make(paddle, model), model=model)
    assert d.semantics == toml_semantics(run_table("paddle", body))
    assert d.unsupported == []


def test_paddle_param_attr_regularizers_and_frozen_tensors(paddle):
    model = _linear(paddle, weight_attr=paddle.ParamAttr(regularizer=paddle.regularizer.L2Decay(0.2)),
                    bias_attr=paddle.ParamAttr(regularizer=paddle.regularizer.L1Decay(0.05)))
    d = wdparity.describe(paddle.optimizer.AdamW(0.01, weight_decay=0.3, parameters=model.parameters()), model=model)
    assert d.semantics == toml_semantics(run_table("paddle", """optimizer = "AdamW"
learning_rate = 0.01
weight_decay = 0.3
weight_attr = {regularizer = {L2Decay = 0.2}}
bias_attr = {regularizer = {L1Decay = 0.05}}
"""))
    model = _linear(paddle, bias_attr=paddle.ParamAttr(trainable=False))
    d = wdparity.describe(paddle.optimizer.SGD(0.05, weight_decay=0.3, parameters=model.parameters()), model=model)
    frozen = toml_semantics(run_table("paddle", 'optimizer = "SGD"\nlearning_rate = 0.05\nweight_decay = 0.3\n'
                                                'bias_attr = {trainable = false}\n'))
    assert d.semantics == frozen and frozen.frozen == ["bias"]
    model = _linear(paddle)   # a parameter left out of the optimizer's list is never updated either
    d = wdparity.describe(paddle.optimizer.SGD(0.05, weight_decay=0.3, parameters=[model.weight]), model=model)
    assert d.semantics == frozen and any("not in the optimizer's parameter list" in n for n in d.notes)


def test_paddle_float64_model(paddle):
    paddle.set_default_dtype("float64")
    model = _linear(paddle)
    paddle.set_default_dtype("float32")
    d = wdparity.describe(paddle.optimizer.Momentum(0.02, momentum=0.9, parameters=model.parameters()), model=model)
    assert d.run["dtype"] == "float64"
    assert d.semantics == load_run("x", {"backend": "paddle", "optimizer": "Momentum", "learning_rate": 0.02,
                                         "momentum": 0.9}, Task(dtype="float64"), "t", {}).semantics


def test_paddle_unreadable_settings_are_listed_with_reasons(paddle):
    model = _linear(paddle, weight_attr=paddle.ParamAttr(learning_rate=0.5))
    d = wdparity.describe(paddle.optimizer.Adam(0.01, lazy_mode=True, multi_precision=True,
                                                parameters=model.parameters()), model=model)
    why = reasons(d)
    assert "sparse" in why["lazy_mode"] and "float16" in why["multi_precision"]
    assert "per-tensor learning rate" in why["weight_attr.learning_rate"]
    assert d.semantics == toml_semantics(run_table("paddle", 'optimizer = "Adam"\nlearning_rate = 0.01\n'))
    lam = paddle.optimizer.lr.LambdaDecay(0.01, lambda t: 0.5 ** t)
    opt = paddle.optimizer.AdamW(lam, parameters=model.parameters(), grad_clip=paddle.nn.ClipGradByValue(0.1, min=-0.2))
    with pytest.raises(NotImplementedError, match="lr_ratio"):   # a CPU build refuses it: set it as a GPU build keeps it
        paddle.optimizer.AdamW(0.01, parameters=model.parameters(), lr_ratio=lambda p: 0.5)
    opt._lr_ratio = lambda p: 0.5
    d = wdparity.describe(opt, model=model)
    why = reasons(d)
    assert "cannot be read" in why["learning_rate"] and "per-tensor learning rate" in why["lr_ratio"]
    assert "symmetric" in why["grad_clip"] and d.semantics.schedule.kind == "constant" and d.semantics.clip is None
    opt = paddle.optimizer.Adam(0.01, parameters=model.parameters())
    model(paddle.ones([2, 3])).sum().backward()
    opt.step()
    assert "stepped" in reasons(wdparity.describe(opt, model=model))["_accumulators"]


def test_paddle_refusals(paddle):
    model = _linear(paddle)
    with pytest.raises(ValueError, match="parameter groups"):
        wdparity.describe(paddle.optimizer.SGD(0.1, parameters=[{"params": [model.weight]},
                                                                 {"params": [model.bias], "weight_decay": 0.1}]))
    mlp = paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.Linear(4, 1))
    with pytest.raises(ValueError, match="one-Linear task"):
        wdparity.describe(paddle.optimizer.SGD(0.1, parameters=mlp.parameters()), model=mlp)
