"""MXNet 1.9.1's clip_gradient, measured (docs/adapters/mxnet.toml, section clip_gradient): where each optimizer
clips, and what 0, negative values and signsgd do. First steps by hand against Gluon runs in MXNet's venv.
"""

import numpy as np
import pytest
from test_mxnet_facts import P0, _close, _grad, _run_mxnet

CLIP_PROBE = """
import inspect
import json
import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

X = np.array([[1.0, 0.5], [0.5, -1.0], [-1.0, 0.25], [2.0, 1.5]])
Y = np.array([1.0, -1.0, 0.5, 2.0])
W0, B0 = [0.3, -0.2], 0.1


def train(opt, params, steps=1, dtype="float64"):
    net = gluon.nn.Dense(1, in_units=2)
    net.initialize(ctx=mx.cpu())
    net.cast(dtype)
    net.weight.set_data(nd.array(np.array([W0]), dtype=dtype))
    net.bias.set_data(nd.array([B0], dtype=dtype))
    trainer = gluon.Trainer(net.collect_params(), opt, params)
    out = []
    for _ in range(steps):
        with autograd.record():
            loss = gluon.loss.L2Loss()(net(nd.array(X, dtype=dtype)), nd.array(Y.reshape(4, 1), dtype=dtype))
        loss.backward()
        trainer.step(4)
        out.append([float(v) for v in net.weight.data().asnumpy().ravel()] + [float(net.bias.data().asnumpy()[0])])
    return out


out = {"default": inspect.signature(mx.optimizer.Optimizer.__init__).parameters["clip_gradient"].default}
sgd = {"learning_rate": 0.1, "wd": 0.3, "clip_gradient": 0.5}
out["sgd"] = train("sgd", sgd)[0]
out["sgd_momentum"] = train("sgd", {**sgd, "momentum": 0.9}, steps=2)
out["nag"] = train("nag", {**sgd, "momentum": 0.9}, steps=2)
out["sgd_rescale"] = train("sgd", {**sgd, "rescale_grad": 0.5})[0]
out["sgd_off"] = [train("sgd", {**sgd, "clip_gradient": c})[0] for c in (0.0, -1.0)] + [train("sgd", {**sgd, "clip_gradient": None})[0]]
out["adam"] = train("adam", {"learning_rate": 0.01, "epsilon": 0.01, "wd": 0.3, "clip_gradient": 0.5})[0]
rms = {"learning_rate": 0.01, "epsilon": 0.1, "wd": 0.3, "clip_gradient": 0.5}
out["rmsprop"] = train("rmsprop", rms, dtype="float32")[0]
out["rmsprop_centered"] = train("rmsprop", {**rms, "centered": True}, dtype="float32")[0]
out["signum"] = train("signum", {"learning_rate": 0.05, "momentum": 0.5, "wd": 2.0, "clip_gradient": 0.5}, steps=3)
signsgd = {"learning_rate": 0.1, "momentum": 0.0, "wd": 0.3}
out["signsgd"] = [train("signum", {**signsgd, "clip_gradient": c}, steps=2) for c in (1e-4, None)]
ada = {"learning_rate": 0.1, "eps": 0.5, "wd": 0.3}
out["adagrad"] = [train("adagrad", {**ada, "clip_gradient": c}, dtype="float32")[0] for c in (0.5, 0.0, -0.5)]
out["adadelta"] = train("adadelta", {"rho": 0.8, "epsilon": 0.5, "wd": 0.3, "clip_gradient": 0.5}, dtype="float32")[0]
print(json.dumps(out))
"""
C, WD = 0.5, 0.3
G = _grad(P0)           # the mean gradient at P0: [-0.606, -1.097, -0.4]; clip 0.5 cuts the first two
f32 = lambda x: float(np.float32(x))   # noqa: E731  a hyperparameter as the kernel gets it


@pytest.fixture(scope="module")
def mxnet_clip():
    return _run_mxnet(CLIP_PROBE)


def test_mxnet_clip_gradient_is_a_base_optimizer_keyword_default_none(mxnet_clip):
    assert mxnet_clip["default"] is None


def test_mxnet_sgd_clips_the_rescaled_gradient_before_adding_wd(mxnet_clip):
    """w -= lr*(clip(r*g, c) + wd*w), r*g the mean gradient; not clip(r*g + wd*w), not the docstring's r*clip(g)."""
    want = P0 - 0.1 * (np.clip(G, -C, C) + WD * P0)
    assert _close(mxnet_clip["sgd"], want, 1e-7)
    assert not _close(mxnet_clip["sgd"], P0 - 0.1 * np.clip(G + WD * P0, -C, C), 1e-3)
    assert not _close(mxnet_clip["sgd"], P0 - 0.1 * (0.25 * np.clip(4 * G, -C, C) + WD * P0), 1e-3)   # the docstring


def test_mxnet_sgd_and_nag_momentum_clip_before_wd(mxnet_clip):
    """Two steps of multi_sgd_mom_update and nag_mom_update: the clipped r*g plus wd*w in a velocity momentum."""
    p, mom = P0, 0.0
    q, nmom = P0, 0.0
    for t in range(2):
        mom = f32(0.9) * mom - 0.1 * WD * p - 0.1 * np.clip(_grad(p), -C, C)
        p = p + mom
        assert _close(mxnet_clip["sgd_momentum"][t], p, 1e-6)
        d = np.clip(_grad(q), -C, C) + WD * q
        new = q - f32(0.9) * nmom + (f32(0.9) + 1) * (f32(0.9) * nmom - 0.1 * d)
        nmom = f32(0.9) * nmom - 0.1 * (np.clip(_grad(q), -C, C) + WD * new)   # the in-place aliasing (FINDINGS)
        q = new
        assert _close(mxnet_clip["nag"][t], q, 1e-6)


def test_mxnet_rescale_grad_moves_the_clip_to_c_over_r(mxnet_clip):
    """rescale_grad 0.5: clip(0.5*g, 0.5) = 0.5*clip(g, 1.0)."""
    assert _close(mxnet_clip["sgd_rescale"], P0 - 0.1 * (np.clip(0.5 * G, -C, C) + WD * P0), 1e-7)
    assert not _close(mxnet_clip["sgd_rescale"], P0 - 0.1 * (0.5 * np.clip(G, -C, C) + WD * P0), 1e-3)


def test_mxnet_kernels_take_zero_or_negative_clip_gradient_as_off(mxnet_clip):
    zero, negative, none = mxnet_clip["sgd_off"]
    assert zero == none and negative == none and _close(none, P0 - 0.1 * (G + WD * P0), 1e-7)


def _adam_first_step(g, lr=0.01):
    m, v = 0.1 * g, 0.001 * g * g
    return P0 - lr * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 0.01)


def test_mxnet_adam_clips_the_gradient_with_wd(mxnet_clip):
    """adam_update: g' = clip(r*g + wd*w, c); clip(r*g) + wd*w gives another first step (epsilon 0.01)."""
    assert _close(mxnet_clip["adam"], _adam_first_step(np.clip(G + WD * P0, -C, C)), 1e-6)
    assert not _close(mxnet_clip["adam"], _adam_first_step(np.clip(G, -C, C) + WD * P0), 1e-3)


def test_mxnet_rmsprop_clips_the_gradient_with_wd(mxnet_clip):
    """rmsprop_update and rmspropalex_update: g' = clip(r*g + wd*w, c), then n = 0.1*g'^2 (and a = 0.1*g');
    epsilon 0.1."""
    for key, centered in (("rmsprop", False), ("rmsprop_centered", True)):
        for d, holds in ((np.clip(G + WD * P0, -C, C), True), (np.clip(G, -C, C) + WD * P0, False)):
            n = 0.1 * d * d - (0.01 * d * d if centered else 0.0)
            assert _close(mxnet_clip[key], P0 - 0.01 * d / np.sqrt(n + 0.1), 1e-5) == holds, (key, holds)


def test_mxnet_signum_clips_the_gradient_before_wd(mxnet_clip):
    """signum_update: mom = m*mom - (1-m)*wd*w - (1-m)*clip(r*g, c); w += lr*sign(mom). Three steps, wd 2: the
    clipped gradient plus the unclipped decay has other signs than clip(r*g + wd*w) (step 1: -0.5 + 0.6 > 0 >
    clip(-0.606 + 0.6))."""
    for inside, holds in ((False, True), (True, False)):
        p, mom = P0, 0.0
        for t in range(3):
            g = np.clip(_grad(p) + 2.0 * p, -C, C) if inside else np.clip(_grad(p), -C, C) + 2.0 * p
            mom = 0.5 * mom - 0.5 * g
            p = p + f32(0.05) * np.sign(mom)
        assert _close(mxnet_clip["signum"][2], p, 1e-12) == holds


def test_mxnet_signsgd_ignores_clip_gradient(mxnet_clip):
    clipped, plain = mxnet_clip["signsgd"]
    assert clipped == plain


def test_mxnet_adagrad_clips_in_python_where_zero_is_not_off(mxnet_clip):
    """AdaGrad: g = clip(r*g, -c, c) whenever clip_gradient is not None: c = 0 zeroes the gradient (wd alone
    moves w); c < 0 clips with a_min = |c| > a_max = -|c|, sending each element to +-|c|."""
    clipped, zero, negative = mxnet_clip["adagrad"]
    d = np.clip(G, -C, C)
    assert _close(clipped, P0 - 0.1 * (d / np.sqrt(d * d + 0.5) + WD * P0), 1e-5)
    assert _close(zero, P0 - 0.1 * WD * P0, 1e-6)
    flipped = np.where(G > -C, -C, C)             # clip's upper bound -|c| first, then the lower |c|
    assert _close(negative, P0 - 0.1 * (flipped / np.sqrt(flipped * flipped + 0.5) + WD * P0), 1e-5)


def test_mxnet_adadelta_clips_the_rescaled_gradient(mxnet_clip):
    d = np.clip(G, -C, C)                          # rho 0.8, epsilon 0.5, wd 0.3 subtracted after the delta
    delta = np.sqrt(0.5) / np.sqrt(0.2 * d * d + 0.5) * d
    assert _close(mxnet_clip["adadelta"], P0 - delta - WD * P0, 1e-5)
