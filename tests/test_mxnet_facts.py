"""MXNet facts the adapter states (docs/adapters/mxnet.toml) that no battery or backend test measured
directly: each test measures one statement on the installed release and skips when the framework is absent.
"""


import importlib.util
import json
import os
import subprocess
import textwrap

import numpy as np
import pytest

HAVE_KERAS_JAX = all(importlib.util.find_spec(m) is not None for m in ("keras", "jax"))
HAVE_JAX = all(importlib.util.find_spec(m) is not None for m in ("jax", "optax"))



# ---------------------------------------------------------------- MXNet 1.9.1 (its own venv)
MXNET_PROBE = textwrap.dedent("""
    import json
    import numpy as np
    import mxnet as mx
    from mxnet import autograd, gluon, nd
    out = {}
    try:
        mx.lr_scheduler.FactorScheduler(step=2, factor=2.0)
        out["factor_above_one"] = "accepted"
    except ValueError as exc:
        out["factor_above_one"] = "ValueError: " + str(exc)
    floor = mx.lr_scheduler.FactorScheduler(step=1, factor=0.1, base_lr=1.0)
    out["floor"] = [floor(n) for n in range(1, 13)][-1]
    step = mx.lr_scheduler.FactorScheduler(step=3, factor=0.5, base_lr=1.0)
    out["step_lrs"] = [step(t + 1) for t in range(10)]             # num_update = t + 1 at step t
    cosine = mx.lr_scheduler.CosineScheduler(max_update=10, base_lr=1.0, final_lr=0.0)
    out["cosine_first"] = cosine(1)
    out["registry_has_adamw"] = "adamw" in mx.optimizer.Optimizer.opt_registry
    out["contrib_has_adamw_update"] = hasattr(mx.nd.contrib, "adamw_update")
    try:
        mx.optimizer.SGD(dampening=0.1)
        out["dampening"] = "accepted"
    except TypeError:
        out["dampening"] = "TypeError"
    module = mx.optimizer.Optimizer(param_idx2name={0: "fc_weight", 1: "fc_bias"}, wd=0.1)
    out["module_wds"] = module._get_wds([0, 1])
    net = gluon.nn.Dense(1, in_units=3)
    net.initialize(ctx=mx.cpu())
    net.bias.set_data(nd.array([0.5]))
    net.bias.grad_req = "null"
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "wd": 0.1})
    w0 = net.weight.data().asnumpy().copy()
    for _ in range(3):
        with autograd.record():
            loss = gluon.loss.L2Loss()(net(nd.ones((4, 3))), nd.zeros((4, 1)))
        loss.backward()
        trainer.step(4)
    out["bias_after"] = float(net.bias.data().asnumpy()[0])
    out["weight_moved"] = bool(not np.array_equal(w0, net.weight.data().asnumpy()))
    out["l2loss"] = [float(gluon.loss.L2Loss(weight=w)(nd.array([[3.0]]), nd.array([[1.0]])).asnumpy()[0]) for w in (1.0, 2.0)]
    print(json.dumps(out))
""")


def _run_mxnet(code: str) -> dict:
    """A measuring script run in MXNet's venv; it prints one JSON object on its last line."""
    from wdparity_backends import mxnet_setup

    python = mxnet_setup.venv_python(mxnet_setup.default_venv())
    if not python.exists():
        pytest.skip(f"no MXNet venv at {python.parent.parent}: run `wdparity setup mxnet`")
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "MXNET_ENGINE_TYPE": "NaiveEngine", "MXNET_CPU_WORKER_NTHREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def mxnet_facts():
    return _run_mxnet(MXNET_PROBE)


def test_mxnet_factor_scheduler_refuses_a_factor_above_one(mxnet_facts):
    assert mxnet_facts["factor_above_one"].startswith("ValueError: Factor must be no more than 1")


def test_mxnet_factor_scheduler_clamps_at_stop_factor_lr(mxnet_facts):
    assert mxnet_facts["floor"] == 1e-8


def test_mxnet_factor_scheduler_is_the_neutral_step_schedule(mxnet_facts):
    assert mxnet_facts["step_lrs"] == [0.5 ** (t // 3) for t in range(10)]


def test_mxnet_cosine_scheduler_is_one_step_ahead(mxnet_facts):
    assert mxnet_facts["cosine_first"] == pytest.approx((1 + np.cos(np.pi / 10)) / 2, rel=1e-15)   # num_update 1 of 10


def test_mxnet_has_no_adamw_optimizer_only_a_contrib_operator(mxnet_facts):
    assert not mxnet_facts["registry_has_adamw"] and mxnet_facts["contrib_has_adamw_update"]


def test_mxnet_sgd_has_no_dampening(mxnet_facts):
    assert mxnet_facts["dampening"] == "TypeError"


def test_mxnet_module_api_zeroes_the_decay_of_a_bias_by_name(mxnet_facts):
    assert mxnet_facts["module_wds"] == [0.1, 0.0]


def test_mxnet_grad_req_null_freezes_a_parameter(mxnet_facts):
    assert mxnet_facts["bias_after"] == 0.5 and mxnet_facts["weight_moved"]


def test_mxnet_l2loss_is_weight_over_two_times_the_squared_error(mxnet_facts):
    assert mxnet_facts["l2loss"] == [2.0, 4.0]       # (3 - 1)^2 = 4: weight/2 * 4


# ---------------------------------------------------------------- the optimizers of issue 17, first steps by hand
OPTIMIZER_PROBE = """
import inspect
import json
import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

X = np.array([[1.0, 0.5], [0.5, -1.0], [-1.0, 0.25], [2.0, 1.5]])
Y = np.array([1.0, -1.0, 0.5, 2.0])
W0, B0 = [0.3, -0.2], 0.1


def train(opt, params, steps=1, dtype="float32", bias=True, lrs=None, x=X):
    net = gluon.nn.Dense(1, in_units=2, use_bias=bias)
    net.initialize(ctx=mx.cpu())
    net.cast(dtype)
    net.weight.set_data(nd.array(np.array([W0]), dtype=dtype))
    if bias:
        net.bias.set_data(nd.array([B0], dtype=dtype))
    trainer = gluon.Trainer(net.collect_params(), opt, params)
    out = []
    for s in range(steps):
        if lrs:
            trainer.set_learning_rate(lrs[s])
        with autograd.record():
            loss = gluon.loss.L2Loss()(net(nd.array(x, dtype=dtype)), nd.array(Y.reshape(4, 1), dtype=dtype))
        loss.backward()
        trainer.step(4)
        w = [float(v) for v in net.weight.data().asnumpy().ravel()]
        out.append(w + ([float(net.bias.data().asnumpy()[0])] if bias else []))
    return out, trainer


def error(fn):
    try:
        fn()
        return "ok"
    except Exception as exc:   # MXNetError: its first and last lines
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        return type(exc).__name__ + ": " + lines[0] + " | " + lines[-1]


out = {}
reg = mx.optimizer.Optimizer.opt_registry
out["registry"] = sorted(reg)
out["signatures"] = {name: {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                            if k != "self" and p.kind == p.POSITIONAL_OR_KEYWORD} for name, cls in reg.items()}
out["ccsgd_base"] = reg["ccsgd"].__mro__[1].__name__
out["rmsprop"] = train("rmsprop", {"learning_rate": 0.1, "gamma1": 0.8, "epsilon": 0.5, "wd": 0.3})[0]
out["rmsprop_centered"] = train("rmsprop", {"learning_rate": 0.1, "gamma1": 0.8, "gamma2": 0.6, "epsilon": 0.5,
                                            "wd": 0.3, "centered": True}, steps=2, lrs=[0.1, 0.05])[0]
out["rmsprop_gamma2"] = [train("rmsprop", {"learning_rate": 0.1, "gamma2": g}, steps=3)[0] for g in (0.0, 0.9)]
out["adagrad"] = train("adagrad", {"learning_rate": 0.1, "eps": 0.5, "wd": 0.3}, steps=2)[0]
ada = {"rho": 0.8, "epsilon": 0.5, "wd": 0.3}
out["adadelta"] = train("adadelta", ada, steps=2)[0]
out["adadelta_lr"] = train("adadelta", {**ada, "learning_rate": 7.0, "lr_scheduler": mx.lr_scheduler.FactorScheduler(
    step=1, factor=0.5, base_lr=7.0)}, steps=2)[0]
out["adadelta_rescale"] = train("adadelta", {**ada, "rescale_grad": 4.0})[0]
out["signum"] = train("signum", {"learning_rate": 0.1, "momentum": 0.8, "wd": 0.3, "wd_lh": 0.2}, steps=2,
                      dtype="float64")[0]
out["signsgd"] = train("signum", {"learning_rate": 0.1, "momentum": 0.0, "wd": 0.3}, dtype="float64")[0]
out["signsgd_wd_lh"] = error(lambda: train("signum", {"momentum": 0.0, "wd_lh": 0.1}))
nadam = {"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "schedule_decay": 0.004}
out["nadam_two"], trainer = train("nadam", nadam, steps=2, dtype="float64")
out["nadam_schedule_after_two_steps"] = trainer._optimizer.m_schedule
out["nadam_one"] = train("nadam", nadam, steps=2, dtype="float64", bias=False)[0]
out["adamax_zero_column"] = train("adamax", {"learning_rate": 0.01}, dtype="float64", x=X * [1.0, 0.0])[0]
out["float64"] = {name: error(lambda: train(name, {}, dtype="float64")) for name in ("rmsprop", "adagrad", "adadelta")}
out["float64"]["rmsprop centered"] = error(lambda: train("rmsprop", {"centered": True}, dtype="float64"))
print(json.dumps(out))
"""
X = np.array([[1.0, 0.5], [0.5, -1.0], [-1.0, 0.25], [2.0, 1.5]])
Y = np.array([1.0, -1.0, 0.5, 2.0])
P0 = np.array([0.3, -0.2, 0.1])            # weight (2) and bias, as the probe's W0, B0


@pytest.fixture(scope="module")
def mxnet_optimizers():
    return _run_mxnet(OPTIMIZER_PROBE)


def _grad(p, x=X):
    """Gluon's L2Loss summed over the batch of 4 and step(4): the mean half-MSE gradient (bias last, if any)."""
    r = x @ p[:2] + (p[2] if len(p) > 2 else 0.0) - Y
    return np.append(x.T @ r / 4, r.sum() / 4) if len(p) > 2 else x.T @ r / 4


def _close(got, want, rel):
    return np.allclose(np.asarray(got, dtype=np.float64), want, rtol=rel, atol=0)


def test_mxnet_keyword_tables_are_the_installed_signatures(mxnet_optimizers):
    from wdparity_backends.mxnet_vocab import KEYWORDS, REFUSED

    sig = mxnet_optimizers["signatures"]
    assert {n: k for n, k in KEYWORDS.items() if n != "ccsgd"} == {n: sig[n] for n in KEYWORDS if n != "ccsgd"}
    assert sig["ccsgd"] == {} and mxnet_optimizers["ccsgd_base"] == "SGD" and KEYWORDS["ccsgd"] == sig["sgd"]
    assert sorted(set(KEYWORDS) | set(REFUSED)) == mxnet_optimizers["registry"]
    assert not set(KEYWORDS) & set(REFUSED)


def test_mxnet_rmsprop_takes_epsilon_inside_the_root_and_wd_in_the_gradient(mxnet_optimizers):
    g = _grad(P0) + 0.3 * P0                                   # lr 0.1, gamma1 0.8, epsilon 0.5, wd 0.3
    n = 0.2 * g * g
    assert _close(mxnet_optimizers["rmsprop"][0], P0 - 0.1 * g / np.sqrt(n + 0.5), 1e-6)
    assert not _close(mxnet_optimizers["rmsprop"][0], P0 - 0.1 * g / (np.sqrt(n) + 0.5), 1e-2)


def test_mxnet_centered_rmsprop_momentum_is_the_velocity_form(mxnet_optimizers):
    """Two steps, lr 0.1 then 0.05: delta = gamma2*delta - lr_t*g/sqrt(n - a^2 + eps); w += delta."""
    p, n, a, delta, buffer = P0, 0.0, 0.0, 0.0, None
    for t, lr in enumerate((0.1, 0.05)):
        g = _grad(p) + 0.3 * p
        n, a = 0.8 * n + 0.2 * g * g, 0.8 * a + 0.2 * g
        d = g / np.sqrt(n - a * a + 0.5)
        if t == 1:
            buffer = p - lr * (0.6 * delta / -0.1 + d)       # the buffer form: -lr_t*(m*buf + d)
        delta = 0.6 * delta - lr * d
        p = p + delta
        assert _close(mxnet_optimizers["rmsprop_centered"][t], p, 1e-5)
    assert not _close(mxnet_optimizers["rmsprop_centered"][1], buffer, 1e-3)


def test_mxnet_rmsprop_ignores_gamma2_unless_centered(mxnet_optimizers):
    low, high = mxnet_optimizers["rmsprop_gamma2"]
    assert low == high


def test_mxnet_adagrad_adds_wd_after_the_division(mxnet_optimizers):
    """history from 0 and without wd; w -= lr*(g/sqrt(history + eps) + wd*w): decoupled, scaled by lr."""
    p, h = P0, 0.0
    for t in range(2):
        g = _grad(p)
        h = h + g * g
        p = p - 0.1 * (g / np.sqrt(h + 0.5) + 0.3 * p)
        assert _close(mxnet_optimizers["adagrad"][t], p, 1e-5)
    g = _grad(P0) + 0.3 * P0                                   # wd in the gradient instead
    assert not _close(mxnet_optimizers["adagrad"][0], P0 - 0.1 * g / np.sqrt(g * g + 0.5), 1e-2)


def test_mxnet_adadelta_has_no_learning_rate_and_unscaled_decoupled_wd(mxnet_optimizers):
    p, v, x = P0, 0.0, 0.0                                     # rho 0.8, epsilon 0.5, wd 0.3
    for t in range(2):
        g = _grad(p)
        v = 0.8 * v + 0.2 * g * g
        d = np.sqrt(x + 0.5) / np.sqrt(v + 0.5) * g
        x = 0.8 * x + 0.2 * d * d
        p = p - d - 0.3 * p
        assert _close(mxnet_optimizers["adadelta"][t], p, 1e-5)
    assert mxnet_optimizers["adadelta_lr"] == mxnet_optimizers["adadelta"]   # learning_rate 7, halved each step


def test_mxnet_adadelta_rescale_grad_leaves_the_numerator_epsilon(mxnet_optimizers):
    g = 4.0 * _grad(P0)                                        # rescale_grad 4: the numerator keeps eps = 0.5
    want = P0 - np.sqrt(0.5) / np.sqrt(0.2 * g * g + 0.5) * g - 0.3 * P0
    g1 = _grad(P0)                                             # one eps/r^2 in both roots: another step
    neutral = P0 - np.sqrt(0.5 / 16) / np.sqrt(0.2 * g1 * g1 + 0.5 / 16) * g1 - 0.3 * P0
    assert _close(mxnet_optimizers["adadelta_rescale"][0], want, 1e-5)
    assert not _close(mxnet_optimizers["adadelta_rescale"][0], neutral, 1e-2)


def test_mxnet_signum_is_lion_with_equal_betas(mxnet_optimizers):
    """momentum 0.8, wd 0.3 coupled, wd_lh 0.2 decoupled: m = 0.8*m + 0.2*(g + wd*w); w -= lr*wd_lh*w + lr*sign(m)."""
    f = lambda x: float(np.float32(x))                         # noqa: E731  float64 weights, C float hyperparameters
    p, m = P0, 0.0
    for t in range(2):
        m = f(0.8) * m + (1 - f(0.8)) * (f(0.25) * 4 * _grad(p) + f(0.3) * p)
        p = (1 - f(0.1) * f(0.2)) * p - f(0.1) * np.sign(m)
        assert _close(mxnet_optimizers["signum"][t], p, 1e-9)


def test_mxnet_signsgd_wd_is_decoupled(mxnet_optimizers):
    f = lambda x: float(np.float32(x))                         # noqa: E731
    assert _close(mxnet_optimizers["signsgd"][0], (1 - f(0.1) * f(0.3)) * P0 - f(0.1) * np.sign(_grad(P0)), 1e-12)


def test_mxnet_signsgd_refuses_wd_lh(mxnet_optimizers):
    assert "Cannot find argument 'wd_lh'" in mxnet_optimizers["signsgd_wd_lh"]


def _nadam(p, steps, schedule):
    """torch's NAdam (momentum_decay 0.004 = schedule_decay), with the schedule product P_t each element's update
    sees given by schedule(t, mu) (a number, or one per element)."""
    mu = [0.9 * (1 - 0.5 * 0.96 ** (t * 0.004)) for t in range(steps + 2)]
    m, v, out = 0.0, 0.0, []
    for t in range(1, steps + 1):
        g = _grad(p)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        P = schedule(t, mu)
        step = ((1 - mu[t]) * g / (1 - P) + mu[t + 1] * m / (1 - P * mu[t + 1])) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        p = p - 0.01 * step
        out.append(p)
    return np.array(out)


def test_mxnet_nadam_schedule_is_torchs_for_one_parameter(mxnet_optimizers):
    assert _close(mxnet_optimizers["nadam_one"], _nadam(P0[:2], 2, lambda t, mu: np.prod(mu[1:t + 1])), 1e-10)


def test_mxnet_nadam_compounds_its_schedule_once_per_parameter(mxnet_optimizers):
    """One m_schedule for all parameters: the Trainer updates them sorted by name (trainer.py:77), so the bias sees
    mu_1, then mu_1^2*mu_2; the weight mu_1^2, then (mu_1*mu_2)^2, where torch (and the neutral NAdam) has mu_1,
    mu_1*mu_2 for both."""
    mu1, mu2 = (0.9 * (1 - 0.5 * 0.96 ** (t * 0.004)) for t in (1, 2))
    assert mxnet_optimizers["nadam_schedule_after_two_steps"] == pytest.approx((mu1 * mu2) ** 2, rel=1e-14)

    def shared(t, mu):
        both = np.prod(mu[1:t + 1]) ** 2
        return np.array([both, both, both / mu[t]])

    assert _close(mxnet_optimizers["nadam_two"], _nadam(P0, 2, shared), 1e-10)
    assert not _close(mxnet_optimizers["nadam_two"], _nadam(P0, 2, lambda t, mu: np.prod(mu[1:t + 1])), 1e-4)


def test_mxnet_adamax_has_no_epsilon(mxnet_optimizers):
    w0, w1, b = mxnet_optimizers["adamax_zero_column"][0]      # the second input column is all zeros: g = 0 there
    g = _grad(P0, X * [1.0, 0.0])
    assert np.isnan(w1) and w0 == pytest.approx(0.3 - 0.01 * np.sign(g[0])) and b == pytest.approx(0.1 - 0.01 * np.sign(g[2]))


def test_mxnet_rmsprop_adagrad_adadelta_fail_for_float64_weights(mxnet_optimizers):
    for name, err in mxnet_optimizers["float64"].items():
        assert err.startswith("MXNetError") and "Incompatible attr" in err and "float32" in err, (name, err)
