"""MLX facts the adapter states (docs/adapters/mlx.toml), each measured on the installed release (in-process,
small, fast); skipped when MLX is absent."""

import inspect
import math

import numpy as np
import pytest

from wdparity.engine.schedules import multiplier
from wdparity_backends.mlx_vocab import DEFAULTS, KEYWORDS

mx = pytest.importorskip("mlx.core")
nn = pytest.importorskip("mlx.nn")
optim = pytest.importorskip("mlx.optimizers")

F64 = mx.float64
G = [np.array([0.5, -0.25, 1.0]), np.array([1.0, 0.5, -2.0]), np.array([-0.5, 0.25, 0.5])]
W0 = np.array([1.0, -2.0, 3.0])


def steps(opt, grads=G, w0=W0):
    """The parameter after optimizer.update with each gradient in turn (float64 throughout)."""
    params = {"w": mx.array(w0, dtype=F64)}
    out = []
    for g in grads:
        params = opt.apply_gradients({"w": mx.array(g, dtype=F64)}, params)
        mx.eval(params, opt.state)
        out.append(np.array(params["w"]))
    return out


def test_the_keyword_table_is_the_installed_signatures():
    for name, defaults in DEFAULTS.items():
        sig = inspect.signature(getattr(optim, name).__init__).parameters
        assert tuple(k for k in sig if k != "self") == KEYWORDS[name]
        # no default learning rate, except Adafactor's None (its relative step ignores it)
        assert sig["learning_rate"].default is (None if name == "Adafactor" else inspect.Parameter.empty)
        for key, value in defaults.items():
            assert sig[key].default == value, (name, key)
    assert "ns_steps" in inspect.signature(optim.Muon.__init__).parameters
    assert tuple(inspect.signature(optim.MultiOptimizer.__init__).parameters) == ("self", "optimizers", "filters")


def test_a_python_float_learning_rate_is_a_float32_array():
    opt = optim.SGD(learning_rate=0.1)
    assert opt.learning_rate.dtype == mx.float32
    assert optim.SGD(learning_rate=mx.array(0.1, dtype=F64)).learning_rate.dtype == F64
    w = steps(opt, G[:1])[0]
    assert np.array_equal(w, W0 - float(np.float32(0.1)) * G[0])   # the float32-rounded lr, in float64


def test_powers_of_the_step_and_python_schedules_are_float32():
    step = mx.array(3, mx.uint64)
    assert (0.9 ** step).dtype == mx.float32
    assert (mx.array(0.9, dtype=F64) ** step).dtype == F64
    assert optim.step_decay(0.1, 0.5, 2)(step).dtype == mx.float32
    assert optim.cosine_decay(0.1, 10)(step).dtype == mx.float32


def test_float64_cos_is_float32_accurate_but_sqrt_is_exact():
    x = np.random.default_rng(0).uniform(0.01, 3, 10000)
    a = mx.array(x, dtype=F64)
    cos = np.array(mx.cos(a))
    assert cos.dtype == np.float64 and np.max(np.abs(cos - np.cos(x))) > 1e-9
    assert np.max(np.abs(np.array(mx.sqrt(a)) - np.sqrt(x)) / np.sqrt(x)) == 0.0


def test_schedules_are_the_neutral_multipliers_from_the_first_update():
    lr = 0.01
    step = optim.step_decay(mx.array(lr, dtype=F64), mx.array(0.5, dtype=F64), 4)
    cos = optim.cosine_decay(lr, 10, 0.1 * lr)
    opt = optim.SGD(learning_rate=step)
    seen = []
    for t in range(12):   # the scheduler is evaluated at optimizer.step before it is incremented
        opt.apply_gradients({"w": mx.array([0.0], dtype=F64)}, {"w": mx.array([0.0], dtype=F64)})
        seen.append(opt.learning_rate.item())
        assert seen[-1] == lr * multiplier({"kind": "step", "every": 4, "factor": 0.5}, t)
        c = cos(mx.array(t, mx.uint64)).item()
        assert c == pytest.approx(lr * multiplier({"kind": "cosine", "total": 10, "floor": 0.1}, t), rel=1e-6)


def test_adam_first_step_is_3_16_times_the_bias_corrected_one():
    plain = steps(optim.Adam(learning_rate=mx.array(0.01, dtype=F64)), G[:1])[0]
    corrected = steps(optim.Adam(learning_rate=mx.array(0.01, dtype=F64), bias_correction=True,
                                 betas=[mx.array(0.9, dtype=F64), mx.array(0.999, dtype=F64)]), G[:1])[0]
    ratio = (plain - W0) / (corrected - W0)
    np.testing.assert_allclose(ratio, 0.1 / math.sqrt(0.001), rtol=1e-5)   # eps aside


def test_adamw_decays_w_by_1_minus_lr_wd_before_the_adam_step():
    lr, wd = 0.01, 0.3
    a = steps(optim.AdamW(learning_rate=mx.array(lr, dtype=F64), weight_decay=wd))
    w, m, v = W0.copy(), 0, 0
    for g in G:
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        w = w - lr * wd * w - lr * m / (np.sqrt(v) + 1e-8)   # neutral: decoupled, scale lr
    np.testing.assert_allclose(a[-1], w, rtol=1e-14)


def test_sgd_weight_decay_enters_before_momentum_and_dampening_scales_the_first_step():
    lr, m, d, wd = 0.1, 0.9, 0.3, 0.2
    out = steps(optim.SGD(learning_rate=mx.array(lr, dtype=F64), momentum=m, dampening=d, weight_decay=wd))
    w, buf = W0.copy(), 0.0
    for g in G:
        buf = m * buf + (1 - d) * (g + wd * w)   # v_1 = (1-d)*g, not torch's g
        w = w - lr * buf
    np.testing.assert_allclose(out[-1], w, rtol=1e-14)


def test_rmsprop_adagrad_adadelta_adamax_lion_updates():
    lr = mx.array(0.01, dtype=F64)
    g = G[0]
    r = steps(optim.RMSprop(learning_rate=lr), G[:1])[0]
    np.testing.assert_allclose(r, W0 - 0.01 * g / (np.sqrt(0.01 * g * g) + 1e-8), rtol=1e-14)   # eps outside, v_0 = 0
    a = steps(optim.Adagrad(learning_rate=lr), G[:1])[0]
    np.testing.assert_allclose(a, W0 - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-14)   # accumulator from 0, eps 1e-8
    d = steps(optim.AdaDelta(learning_rate=lr), G[:1])[0]
    np.testing.assert_allclose(d, W0 - 0.01 * np.sqrt(1e-6) / np.sqrt(0.1 * g * g + 1e-6) * g, rtol=1e-14)
    x = steps(optim.Adamax(learning_rate=lr), G[:1])[0]
    np.testing.assert_allclose(x, W0 - 0.01 * 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-14)   # m uncorrected, eps outside
    lion = steps(optim.Lion(learning_rate=lr, weight_decay=0.5), G[:1])[0]
    np.testing.assert_allclose(lion, W0 * (1 - 0.01 * 0.5) - 0.01 * np.sign(g), rtol=1e-14)


def test_clip_grad_norm_divides_by_the_global_norm_plus_1e_6():
    grads = {"a": mx.array([3.0], dtype=F64), "b": mx.array([4.0], dtype=F64)}
    clipped, norm = optim.clip_grad_norm(grads, 1.0)
    assert norm.item() == 5.0
    assert clipped["a"].item() == 3.0 * (1.0 / (5.0 + 1e-6))


def test_abs_has_gradient_0_at_0():
    assert mx.grad(lambda x: mx.abs(x).sum())(mx.array([0.0], dtype=F64)).item() == 0.0


def test_a_compiled_step_is_bit_identical_to_eager():
    from wdparity.engine.data import make_data
    from wdparity.judge import fidelity
    from wdparity.spec.models import Task
    from wdparity_backends.mlx_backend import backend

    task = Task.model_validate({**fidelity.BATTERY_TASK, "init": "normal_all", "dtype": "float64"}).model_dump()
    data = make_data(task)
    out = []
    for compiled in (False, True):
        run = {"optimizer": "AdamW", "learning_rate": 0.01, "clip_grad_norm": 0.1, "compile": compiled}
        job = {"task": task, "run": run, "dtype": "float64"}
        out.append(backend.train(job, data)["weight"])
    assert np.array_equal(out[0], out[1])
