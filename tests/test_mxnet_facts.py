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


@pytest.fixture(scope="module")
def mxnet_facts():
    from wdparity_backends import mxnet_setup

    python = mxnet_setup.venv_python(mxnet_setup.default_venv())
    if not python.exists():
        pytest.skip(f"no MXNet venv at {python.parent.parent}: run `wdparity setup mxnet`")
    proc = subprocess.run([str(python), "-c", MXNET_PROBE], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "MXNET_ENGINE_TYPE": "NaiveEngine", "MXNET_CPU_WORKER_NTHREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
