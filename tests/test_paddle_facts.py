"""What the paddle adapter states about PaddlePaddle 3.3.1, measured natively: signatures and defaults, the float32
hyperparameters, clipping before regularization, ParamAttr overrides, Paddle's parameter names, the schedulers, and
RAdam in float64, left to native cases (Adamax, Lamb and trainable = false: test_paddle_adamax_lamb_frozen.py)."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from wdparity.engine.data import make_data
from wdparity.judge import fidelity
from wdparity.spec.models import Task
from wdparity_backends.paddle_backend import backend
from wdparity_backends.paddle_vocab import DEFAULTS, KEYWORDS

paddle = pytest.importorskip("paddle")


def train(run: dict, dtype: str = "float64", **task_over):
    task = Task.model_validate({**fidelity.BATTERY_TASK, **task_over, "dtype": dtype})
    data = make_data(task.model_dump())
    job = {"task": task.model_dump(), "run": backend.parse(run).model_dump(), "dtype": dtype}
    return task, data, backend.train(job, data)


def holds(sem: dict, task, data, native, dtype: str = "float64") -> bool:
    return fidelity.fidelity(sem, native, data, task.batch_size, dtype)["holds"]


def meets_not(run: dict, mutate, **task_over):
    """The run meets its own describe() in float64, and not the semantics `mutate` changes."""
    task, data, native = train(run, **task_over)
    sem = backend.describe(backend.parse(run), task).neutral()
    assert holds(sem, task, data, native)
    wrong = json.loads(json.dumps(sem))
    mutate(wrong)
    assert not holds(wrong, task, data, native)


def test_the_keyword_table_is_the_installed_signatures():
    for name, keys in KEYWORDS.items():
        params = inspect.signature(getattr(paddle.optimizer, name).__init__).parameters
        assert tuple(k for k in params if k not in ("self", "parameters", "name")) == keys, name
        for key, value in DEFAULTS[name].items():
            default = params[key].default
            assert (default is inspect.Parameter.empty and value is None) or default == value, (name, key)


def test_momentum_mu_and_its_fused_l2_coefficient_are_float32():
    meets_not({"optimizer": "Momentum", "learning_rate": 0.03, "momentum": 0.9},
              lambda s: s["optimizer"].update(momentum=0.9))
    meets_not({"optimizer": "Momentum", "learning_rate": 0.03, "momentum": 0.5, "weight_decay": 0.3},
              lambda s: s["decay"][0].update(coefficient=0.3))


def test_sgd_and_adam_are_exact_in_float64():
    meets_not({"optimizer": "SGD", "learning_rate": 0.05, "weight_decay": 0.3},
              lambda s: s.update(hyper_dtype="float32"))
    meets_not({"optimizer": "Adam", "learning_rate": 0.01, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-3},
              lambda s: s["optimizer"].update(betas=[float(np.float32(0.8)), float(np.float32(0.99))]))


def test_adamw_decays_with_the_scheduled_lr_and_a_float32_coefficient():
    meets_not({"optimizer": "AdamW", "learning_rate": 0.01, "epsilon": 1e-3, "weight_decay": 0.4},
              lambda s: s["decay"][0].update(coefficient=0.4), schedule={"kind": "step", "every": 4, "factor": 0.5})
    assert backend.describe(backend.parse({"optimizer": "AdamW"}), Task()).decay[0].coefficient == float(np.float32(0.01))


def test_rmsprop_and_adadelta_take_rho_and_epsilon_as_float32_and_rmsprop_eps_inside_the_root():
    meets_not({"optimizer": "RMSProp", "learning_rate": 0.01, "rho": 0.9, "epsilon": 1e-6},
              lambda s: s["optimizer"].update(eps_in_sqrt=False))
    meets_not({"optimizer": "RMSProp", "learning_rate": 0.01, "rho": 0.9, "epsilon": 1e-6},
              lambda s: s["optimizer"].update(rho=0.9))
    meets_not({"optimizer": "Adadelta", "learning_rate": 0.5, "rho": 0.95, "epsilon": 1e-7},
              lambda s: s["optimizer"].update(rho=0.95, eps=1e-7))


def test_rmsprop_momentum_keeps_lr_inside_the_buffer():
    meets_not({"optimizer": "RMSProp", "learning_rate": 0.005, "rho": 0.9, "epsilon": 1e-4, "momentum": 0.5},
              lambda s: s["optimizer"].update(momentum_form="buffer"), schedule={"kind": "step", "every": 4, "factor": 0.5})


def test_clipping_comes_before_the_regularization():
    for run in ({"optimizer": "SGD", "learning_rate": 0.05, "weight_decay": 0.3},
                {"optimizer": "Momentum", "learning_rate": 0.03, "weight_decay": 0.3}):
        meets_not({**run, "grad_clip": {"ClipGradByGlobalNorm": 0.1}},
                  lambda s: s["clip"].update(position="after_coupled_decay"))


def test_clip_grad_by_norm_has_no_float64_kernel_and_is_per_tensor_in_float32():
    run = {"optimizer": "SGD", "learning_rate": 0.05, "grad_clip": {"ClipGradByNorm": 0.03}}
    task, data, native = train(run, "float32")
    sem = backend.describe(backend.parse(run), task).neutral()
    assert sem["clip"]["kind"] == "tensor_norm" and holds(sem, task, data, native, "float32")
    with pytest.raises(RuntimeError, match="float64"):
        train(run, "float64")


def test_a_param_attr_regularizer_replaces_the_optimizers_and_l1_is_sign_zero_at_zero():
    meets_not({"optimizer": "SGD", "learning_rate": 0.05, "weight_decay": 0.3,
               "bias_attr": {"regularizer": {"L2Decay": 0.0}}},
              lambda s: s["decay"][0].update(params=["weight", "bias"]), init="normal_all")
    meets_not({"optimizer": "SGD", "learning_rate": 0.05, "weight_decay": {"L1Decay": 0.05}},
              lambda s: s["decay"][0].update(l1_at_zero=1.0), init="zeros")


def test_linear_parameters_are_named_linear_0_in_a_fresh_program_and_apply_decay_param_fun_filters_them():
    with paddle.utils.unique_name.guard():
        net = paddle.nn.Linear(3, 1)
    assert [p.name for p in net.parameters()] == ["linear_0.w_0", "linear_0.b_0"]
    meets_not({"optimizer": "AdamW", "learning_rate": 0.01, "weight_decay": 0.4, "apply_decay_param_fun": ["linear_0.w_0"]},
              lambda s: s["decay"][0].update(params=["weight", "bias"]), init="normal_all")


def test_cosine_annealing_decay_is_recursive_and_lambda_decay_gives_the_neutral_cosine():
    from wdparity_backends.paddle_backend import cosine

    ann = paddle.optimizer.lr.CosineAnnealingDecay(1.0, T_max=10, eta_min=0.1)
    lam = paddle.optimizer.lr.LambdaDecay(1.0, cosine(10, 0.1))
    a, b = [], []
    for _ in range(30):
        a.append(ann()), b.append(lam())
        ann.step(), lam.step()
    assert b[10:] == [0.1] * 20 and max(a[11:]) > 0.2   # the annealing one rises again after T_max


def test_radam_float64_off_its_closed_form_by_rounding_only():
    run = {"optimizer": "RAdam", "learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
           "weight_decay": 0.3}
    task, data, native = train(run, init="zeros")
    sem = backend.describe(backend.parse(run), task).neutral()
    out = fidelity.fidelity(sem, native, data, task.batch_size, "float64")
    assert not out["holds"] and out["max_rel_err"] < 1e-11
    task32, data32, native32 = train(run, "float32", init="zeros")
    assert holds(sem, task32, data32, native32, "float32")
