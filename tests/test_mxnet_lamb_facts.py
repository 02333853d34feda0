"""MXNet 1.9.1's LAMB, measured on the installed release (docs/adapters/mxnet.toml): Gluon's Trainer updates all
tensors at once through multi_lamb_update; wd*w joins the direction inside the trust ratio; the knobs the neutral
LAMB has no field for (bias_correction = False, positive lower_bound / upper_bound) change the steps; float64
weights get a float32 direction and float32 norms. Skips when MXNet's venv is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_mxnet_facts import P0, _close, _grad, _run_mxnet
from test_mxnet_replay import dmlc_stof

LAMB_PROBE = """
import json
import numpy as np
import mxnet as mx
import mxnet.optimizer.optimizer as O
from mxnet import autograd, gluon, nd

X = np.array([[1.0, 0.5], [0.5, -1.0], [-1.0, 0.25], [2.0, 1.5]])
Y = np.array([1.0, -1.0, 0.5, 2.0])
calls = []
for name in ("multi_lamb_update", "lamb_update_phase1"):
    def spy(*a, _name=name, _fn=getattr(O, name), **k):
        calls.append(_name)
        return _fn(*a, **k)
    setattr(O, name, spy)


def train(params, steps=2, dtype="float32", p0=(0.3, -0.2, 0.1)):
    net = gluon.nn.Dense(1, in_units=2)
    net.initialize(ctx=mx.cpu())
    net.cast(dtype)
    net.weight.set_data(nd.array(np.array([p0[:2]]), dtype=dtype))
    net.bias.set_data(nd.array([p0[2]], dtype=dtype))
    trainer = gluon.Trainer(net.collect_params(), "lamb", params)
    out = []
    for _ in range(steps):
        with autograd.record():
            loss = gluon.loss.L2Loss()(net(nd.array(X, dtype=dtype)), nd.array(Y.reshape(4, 1), dtype=dtype))
        loss.backward()
        trainer.step(4)
        out.append([float(v) for v in net.weight.data().asnumpy().ravel()] + [float(net.bias.data().asnumpy()[0])])
    return out


base = {"learning_rate": 0.1, "epsilon": 1e-6, "wd": 0.3}
out = {"wd": train(base)}
out["calls"] = list(calls)
out["zeros"] = train(base, p0=(0.0, 0.0, 0.0))
out["no_bias_correction"] = train({**base, "bias_correction": False})
out["upper_bound"] = train({**base, "upper_bound": 0.05})
out["lower_bound"] = train({**base, "lower_bound": 1.0})
out["bounds_off"] = train({**base, "lower_bound": -1.0, "upper_bound": 0.0})
out["rescale_grad"] = train({"learning_rate": 0.1, "epsilon": 0.05, "wd": 0.3, "rescale_grad": 4.0})
out["clip"] = train({**base, "clip_gradient": 0.3}, steps=3)
out["float64"] = train({"learning_rate": 0.1, "beta1": 0.8, "epsilon": 1e-3, "wd": 0.3}, steps=3, dtype="float64")
print(json.dumps(out))
"""
BASE = {"learning_rate": 0.1, "epsilon": 1e-6, "wd": 0.3}


@pytest.fixture(scope="module")
def mxnet_lamb():
    return _run_mxnet(LAMB_PROBE)


def _split(p):
    return {"weight": p[:2], "bias": p[2:]}


def lamb(run: dict, steps: int = 2, p0=P0, placement: str = "inside", float32_kernel: bool = False):
    """LAMB as multi_lamb_update computes it (multi_lamb.cc:46-113), per tensor, in float64; `placement` "after"
    instead takes the ratio of d alone and subtracts lr*wd*w outside it. float32_kernel: MXNet's float64 path,
    the direction u and the sums of squares stored as C floats, scalar fields through dmlc::stof."""
    f = dmlc_stof if float32_kernel else float
    tup = (lambda x: float(np.float32(x))) if float32_kernel else float     # the lrs / wds tuples
    lr, wd, b1, b2 = tup(run["learning_rate"]), tup(run.get("wd", 0.0)), f(run.get("beta1", 0.9)), f(run.get("beta2", 0.999))
    eps, r, clip = f(run["epsilon"]), f(0.25 * run.get("rescale_grad", 1.0)), run.get("clip_gradient")
    lo, hi = run.get("lower_bound") or -1.0, run.get("upper_bound") or -1.0
    p, m, v, out = np.array(p0, dtype=np.float64), 0.0, 0.0, []
    for t in range(1, steps + 1):
        g = 4 * r * _grad(p)                         # step(4): the batch sum times rescale_grad/4
        if clip:
            g = np.clip(g, -f(clip), f(clip))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        if run.get("bias_correction", True):
            d = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        else:
            d = m / (np.sqrt(v) + eps)
        u = d + wd * p if placement == "inside" else d
        new = {}
        for k, (w, x) in {k: (_split(p)[k], _split(u)[k]) for k in ("weight", "bias")}.items():
            if float32_kernel:
                x = x.astype(np.float32)
                s1 = s2 = np.float32(0)
                for a, b in zip(w, x):
                    s1, s2 = np.float32(float(s1) + a * a), s2 + b * b
                n1, n2 = np.sqrt(s1), np.sqrt(s2)
            else:
                n1, n2 = np.sqrt(np.sum(w * w)), np.sqrt(np.sum(x * x))
            n1 = max(n1, lo) if lo >= 0 else n1         # the kernel's bounds (multi_lamb.cc:95-98)
            n1 = min(n1, hi) if hi >= 0 else n1
            ratio = 1.0 if n1 == 0 or n2 == 0 else float(n1 / n2)
            new[k] = w - lr * ratio * x.astype(np.float64) - (0.0 if placement == "inside" else lr * wd * w)
        p = np.concatenate([new["weight"], new["bias"]])
        out.append(p)
    return np.array(out)


def test_mxnet_gluon_updates_lamb_through_multi_lamb_update(mxnet_lamb):
    """aggregate_num 45 and the Updater's lists: one multi_lamb_update per step for weight and bias together."""
    assert mxnet_lamb["calls"] == ["multi_lamb_update"] * 2


def test_mxnet_lamb_adds_wd_inside_the_trust_ratio(mxnet_lamb):
    got = mxnet_lamb["wd"]
    assert _close(got, lamb(BASE), 1e-5)
    assert not _close(got, lamb(BASE, placement="after"), 1e-3)


def test_mxnet_lamb_ratio_is_one_at_a_zero_weight(mxnet_lamb):
    zero = np.zeros(3)
    assert _close(mxnet_lamb["zeros"], lamb(BASE, p0=zero), 1e-5)
    first = mxnet_lamb["zeros"][0]                  # r = 1 at w = 0: the first step is -lr*d, |d| ~ 1
    assert 0.09 < min(abs(x) for x in first) and max(abs(x) for x in first) < 0.11


def test_mxnet_lamb_without_bias_correction_is_not_the_neutral_lamb(mxnet_lamb):
    got = mxnet_lamb["no_bias_correction"]
    assert _close(got, lamb({**BASE, "bias_correction": False}), 1e-5)
    assert not _close(got, lamb(BASE), 1e-3)


def test_mxnet_lamb_bounds_clamp_the_weight_norm_and_nonpositive_is_off(mxnet_lamb):
    for key, bound in (("upper_bound", 0.05), ("lower_bound", 1.0)):
        got = mxnet_lamb[key]
        assert _close(got, lamb({**BASE, key: bound}), 1e-5), key
        assert not _close(got, lamb(BASE), 1e-3), key
    assert mxnet_lamb["bounds_off"] == mxnet_lamb["wd"]


def test_mxnet_lamb_rescale_grad_is_eps_over_r(mxnet_lamb):
    got = mxnet_lamb["rescale_grad"]
    assert _close(got, lamb({"learning_rate": 0.1, "epsilon": 0.05, "wd": 0.3, "rescale_grad": 4.0}), 1e-5)
    assert _close(got, lamb({"learning_rate": 0.1, "epsilon": 0.05 / 4, "wd": 0.3}), 1e-5)
    assert not _close(got, lamb({"learning_rate": 0.1, "epsilon": 0.05, "wd": 0.3}), 1e-3)


def test_mxnet_lamb_clips_the_rescaled_gradient_before_wd(mxnet_lamb):
    """Every element of r*g is clipped at 0.3 here; the ratio normalizes most of it away (~1e-3 by step 3)."""
    got = mxnet_lamb["clip"]
    assert _close(got, lamb({**BASE, "clip_gradient": 0.3}, 3), 1e-5)
    assert not _close(got, lamb(BASE, 3), 1e-4)


def test_mxnet_lamb_float64_has_a_float32_direction(mxnet_lamb):
    """float64 weights: the kernel's float32 u and norms reproduce MXNet to 1e-12; exact float64 arithmetic of the
    same float32 hyperparameters is ~1e-8 away, beyond the battery's 1e-9."""
    run = {"learning_rate": 0.1, "beta1": 0.8, "epsilon": 1e-3, "wd": 0.3}
    got = np.array(mxnet_lamb["float64"])
    kernel = lamb(run, 3, float32_kernel=True)
    exact = lamb({k: float(np.float32(x)) for k, x in run.items()}, 3)
    assert np.max(np.abs(got - kernel) / np.abs(kernel)) < 1e-12
    assert np.max(np.abs(got - exact) / np.abs(exact)) > 1e-9
    assert np.max(np.abs(kernel - exact) / np.abs(exact)) < 1e-6
