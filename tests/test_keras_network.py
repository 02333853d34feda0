"""The Keras 3 adapter on networks (issue 19): native names measured on the installed Keras, the masks and per-layer
regularizers it accepts and refuses, the round trip, the network battery on each Keras backend.

On TensorFlow in float64 two documented findings move a run off its own describe(): the schedule's lr_t in float32
(schedule-float32) and tf.nn.gelu's float32-cast constants (gelu-constants-float32); the battery proves each by a
replay (the reference with the effect put back must hold, the plain one must miss), as tests/test_keras_backend.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_keras_backend import probe, replay  # noqa: F401  (the Keras lr_t tables, the schedule replay)

from wdparity.engine import network as engine_net
from wdparity.judge import fidelity, network_battery
from wdparity.run import harness
from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError
from wdparity.spec.models import Semantics, Task
from wdparity.spec.network import tensor_scope
from wdparity_backends import keras_network
from wdparity_backends.keras_backend import KERAS_BACKENDS, backend, precision_findings

HAVE = {kb: all(importlib.util.find_spec(m) is not None for m in ("keras", kb)) for kb in KERAS_BACKENDS}
NET = {"num_inputs": 3, "n_train": 8, "n_test": 4, "batch_size": 4, "epochs": 1, "seed": 1,
       "model": {"hidden": [4, 3], "activation": "gelu", "norm": "layer", "norm_eps": 1e-3}}
TASK = Task.model_validate(NET)
NATIVE = {"dense_0.weight": ("sequential/dense/kernel", "kernel"), "dense_0.bias": ("sequential/dense/bias", "bias"),
          "norm_0.scale": ("sequential/layer_normalization/gamma", "gamma"),
          "norm_0.offset": ("sequential/layer_normalization/beta", "beta"),
          "dense_1.weight": ("sequential/dense_1/kernel", "kernel"), "dense_1.bias": ("sequential/dense_1/bias", "bias"),
          "norm_1.scale": ("sequential/layer_normalization_1/gamma", "gamma"),
          "norm_1.offset": ("sequential/layer_normalization_1/beta", "beta"),
          "out.weight": ("sequential/dense_2/kernel", "kernel"), "out.bias": ("sequential/dense_2/bias", "bias")}
REALIZED, INEXPRESSIBLE = 14, 42


def describe(run: dict, task: Task = TASK) -> Semantics:
    with tensor_scope(task.tensors):
        return backend.describe(backend.parse({"optimizer": "SGD", **run}), task)


def decoupled_params(run: dict) -> list[str]:
    return next(r.params for r in describe(run).decay if r.coupling == "decoupled")


# ---------------------------------------------------------------- measured on the installed Keras
PROBE = textwrap.dedent("""
    import inspect, json, os
    import numpy as np
    if os.environ["KERAS_BACKEND"] == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
    import keras
    from wdparity.engine.data import make_data
    from wdparity.spec.models import Task
    from wdparity_backends import keras_network
    keras.config.set_floatx("float64")
    task = Task.model_validate(json.loads(os.environ["NET"]))
    data = make_data(task.model_dump())
    keras.utils.clear_session(free_memory=False)
    regs = {"norm_0.scale": keras_network.L1L2(l2=0.25)}
    model, variables = keras_network.build_network(keras, data, "float64", regs, "keras")
    out = {"vars": [[v.path, v.name] for v in variables], "layers": [l.name for l in model.layers]}
    out["start_equal"] = all(np.array_equal(keras.ops.convert_to_numpy(v), data["init:" + t].reshape(v.shape))
                             for t, v in zip(task.tensors, variables))
    out["ln_eps_default"] = keras.layers.LayerNormalization().epsilon
    out["ln_eps_set"] = [l.epsilon for l in model.layers if "normalization" in l.name]
    out["activations_gelu_default"] = inspect.signature(keras.activations.gelu).parameters["approximate"].default
    out["ops_gelu_default"] = inspect.signature(keras.ops.gelu).parameters["approximate"].default
    x = np.linspace(-4, 4, 81)
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    got = keras.ops.convert_to_numpy(keras.activations.gelu(keras.ops.convert_to_tensor(x), approximate=True))
    out["gelu_tanh_err"] = float(np.max(np.abs(got - tanh_form)))
    c32 = float(np.float32(0.044715))
    tanh_f32 = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + c32 * x ** 3)))
    out["gelu_tanh_err_f32_constant"] = float(np.max(np.abs(got - tanh_f32)))
    from math import erf, erfc
    exact = np.array([0.5 * u * (1 + erf(u / np.sqrt(2))) for u in x])
    exact_f32 = np.array([0.5 * u * erfc(-u * float(np.float32(0.7071067811865476))) for u in x])
    got = keras.ops.convert_to_numpy(keras.activations.gelu(keras.ops.convert_to_tensor(x), approximate=False))
    out["gelu_err"], out["gelu_err_f32_constant"] = float(np.max(np.abs(got - exact))), float(np.max(np.abs(got - exact_f32)))
    # the L2 regularizer on gamma: c*sum(w^2) in model.losses (gamma starts at 1: 0.25 * width)
    out["gamma_loss"] = float(sum(keras.ops.convert_to_numpy(l) for l in model.losses))
    # exclude_from_weight_decay: which variables each var_names list excludes (Keras's own _use_weight_decay)
    out["excluded"] = {}
    for names in (["layer_normalization"], ["dense"], ["gamma"], ["bias", "beta"], ["sequential"], ["ker"]):
        opt = keras.optimizers.SGD(0.1, weight_decay=0.1)
        opt.exclude_from_weight_decay(var_names=names)
        out["excluded"][json.dumps(names)] = [v.path for v in variables if not opt._use_weight_decay(v)]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def measured():
    cache = {}

    def get(kb):
        if not HAVE[kb]:
            pytest.skip(f"keras or {kb} not installed")
        if kb not in cache:
            env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_")}
            env.update({**harness.WORKER_ENV, "KERAS_BACKEND": kb, "NET": json.dumps(NET)})
            proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=600, env=env)
            assert proc.returncode == 0, proc.stderr[-3000:]
            cache[kb] = json.loads(proc.stdout.strip().splitlines()[-1])
        return cache[kb]
    return get


@pytest.mark.parametrize("kb", KERAS_BACKENDS)
def test_native_names_and_facts_measured(measured, kb):
    got = measured(kb)
    assert keras_network.native_names(TASK.tensors, "keras") == NATIVE
    assert [tuple(v) for v in got["vars"]] == list(NATIVE.values())
    assert got["layers"] == ["dense", "layer_normalization", "activation", "dense_1", "layer_normalization_1",
                             "activation_1", "dense_2"]
    assert got["start_equal"]
    assert got["ln_eps_default"] == 1e-3 and got["ln_eps_set"] == [1e-3, 1e-3]
    # keras.activations.gelu defaults to the exact erf form, keras.ops.gelu to the tanh approximation
    assert (got["activations_gelu_default"], got["ops_gelu_default"]) == (False, True)
    # the tanh form is 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))); on TensorFlow (tf.nn.gelu) in float64 its
    # constants are float32-cast: 0.044715 and the erfc form's 1/sqrt(2) (finding gelu-constants-float32)
    if kb == "tensorflow":
        assert got["gelu_tanh_err"] > 1e-10 and got["gelu_tanh_err_f32_constant"] < 1e-15
        assert got["gelu_err"] > 1e-10 and got["gelu_err_f32_constant"] < 1e-15
    else:
        assert got["gelu_tanh_err"] < 1e-15 and got["gelu_err"] < 1e-15
    assert got["gamma_loss"] == 0.25 * 4   # L2(c) adds c*sum(w^2): a 2c gradient
    # Keras 3 matches var_names against variable.name ("kernel"), never the path: layer names match nothing
    ex = got["excluded"]
    assert ex['["layer_normalization"]'] == [] and ex['["dense"]'] == [] and ex['["sequential"]'] == []
    assert ex['["gamma"]'] == [NATIVE["norm_0.scale"][0], NATIVE["norm_1.scale"][0]]
    assert ex['["ker"]'] == [p for p, n in NATIVE.values() if n == "kernel"]   # re.search: a substring
    assert ex['["bias", "beta"]'] == [p for p, n in NATIVE.values() if n in ("bias", "beta")]


# ---------------------------------------------------------------- masks and regularizers in Keras's terms
def test_exclude_from_weight_decay_matches_variable_name_as_keras():
    assert decoupled_params({"weight_decay": 0.1, "exclude_from_weight_decay": ["bias", "gamma", "beta"]}) == [
        "dense_0.weight", "dense_1.weight", "out.weight"]
    assert decoupled_params({"weight_decay": 0.1, "exclude_from_weight_decay": ["^b"]}) == [
        "dense_0.weight", "norm_0.scale", "dense_1.weight", "norm_1.scale", "out.weight"]   # bias and beta
    for names in (["layer_normalization"], ["dense_1"], ["sequential/dense/kernel"], ["bias", "nothing"]):
        with pytest.raises(InputError, match="matches none") as exc:
            describe({"weight_decay": 0.1, "exclude_from_weight_decay": names})
        assert "['kernel', 'bias', 'gamma', 'beta']" in str(exc.value) and "sequential/dense/kernel" in str(exc.value)
    with pytest.raises(InputError, match="regular expressions"):
        describe({"weight_decay": 0.1, "exclude_from_weight_decay": ["("]})
    with pytest.raises(InputError, match="at least one variable decayed"):
        describe({"weight_decay": 0.1, "exclude_from_weight_decay": ["."]})
    with pytest.raises(ValueError, match="needs weight_decay"):
        describe({"exclude_from_weight_decay": ["bias"]})


def test_per_layer_regularizers_keyed_by_keras_layer_name():
    sem = describe({"kernel_regularizer": {"l2": 0.1}, "layers": {"dense_2": {"bias_regularizer": {"l1": 0.5}},
                                                                  "layer_normalization_1": {"gamma_regularizer": {"l2": 0.2}}}})
    rules = [(r.norm, r.coefficient, r.params) for r in sem.decay]
    assert rules == [("l2", 0.2, ["dense_0.weight", "dense_1.weight"]), ("l2", 0.4, ["norm_1.scale"]),
                     ("l2", 0.2, ["out.weight"]), ("l1", 0.5, ["out.bias"])] or rules == [
        ("l2", 0.2, ["dense_0.weight", "dense_1.weight", "out.weight"]), ("l2", 0.4, ["norm_1.scale"]),
        ("l1", 0.5, ["out.bias"])]
    with pytest.raises(InputError, match="must name a layer of the model") as exc:
        describe({"layers": {"dense_3": {"kernel_regularizer": {"l2": 0.1}}}})
    assert "'layer_normalization_1': 'LayerNormalization'" in str(exc.value)
    with pytest.raises(InputError, match="not a regularizer of LayerNormalization"):
        describe({"layers": {"layer_normalization": {"kernel_regularizer": {"l2": 0.1}}}})
    with pytest.raises(InputError, match="set it one way"):
        describe({"kernel_regularizer": {"l2": 0.1}, "layers": {"dense": {"kernel_regularizer": {"l2": 0.2}}}})
    with pytest.raises(InputError, match="per-layer table"):
        describe({"layers": {"dense": {"kernel_regularizer": {"l2": 0.1}}}}, Task.model_validate(fidelity.BATTERY_TASK))


def test_realize_emits_keras_names_and_refuses_what_variable_name_cannot_tell():
    with tensor_scope(TASK.tensors):
        sem = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.05}, "decay": [
            {"coupling": "gradient", "coefficient": 0.2, "params": ["norm_0.scale"]},
            {"coupling": "decoupled", "coefficient": 0.1, "scale": "lr", "params": ["dense_0.weight", "dense_1.weight",
                                                                                   "out.weight"]}]})
        run = backend.realize(sem, TASK)
        assert run["exclude_from_weight_decay"] == ["bias", "gamma", "beta"]
        assert run["layers"] == {"layer_normalization": {"gamma_regularizer": {"l2": 0.1}}}
        assert backend.describe(backend.parse(run), TASK).neutral() == sem.neutral()
        one = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.05}, "decay": [
            {"coupling": "decoupled", "coefficient": 0.1, "scale": "lr", "params": ["dense_0.weight"]}]})
        with pytest.raises(Inexpressible, match="only kernel/bias/gamma/beta"):
            backend.realize(one, TASK)


def test_round_trip_over_the_network_battery():
    expressed, reasons = network_battery.round_trip("keras")
    assert (len(expressed), len(reasons)) == (REALIZED, INEXPRESSIBLE)
    why = {name.split("-")[1]: reason.split(";")[0] for name, reason in reasons.items()}
    assert set(why) == {"momentum", "nesterov", "adam", "rmsprop", "adagrad", "lamb"}
    assert "velocity form" in why["momentum"] and "epsilon to sqrt(v) before the bias correction" in why["adam"]


# ---------------------------------------------------------------- the network battery per Keras backend
def _erfc_gelu(c: float):
    erfc = np.frompyfunc(math.erfc, 1, 1)
    plain_act, plain_grad = engine_net.activate, engine_net.activation_grad

    def act(u, kind):
        return 0.5 * u * erfc(-u * c).astype(u.dtype) if kind == "gelu" else plain_act(u, kind)

    def grad(u, a, kind):
        if kind != "gelu":
            return plain_grad(u, a, kind)
        return 0.5 * erfc(-u * c).astype(u.dtype) + u * c * np.exp(-(u * c) ** 2) / math.sqrt(math.pi)
    return act, grad


@contextlib.contextmanager
def tf_gelu(monkeypatch):
    """The reference with tf.nn.gelu's float32-cast constants (nn_ops.py:3747-3757) put back."""
    with monkeypatch.context() as m:
        m.setattr(engine_net, "GELU_CUBIC", float(np.float32(0.044715)))
        act, grad = _erfc_gelu(float(np.float32(0.7071067811865476)))
        m.setattr(engine_net, "activate", act)
        m.setattr(engine_net, "activation_grad", grad)
        yield


def network_on(kb: str, dtype: str, monkeypatch, tables=None) -> tuple[float, int]:
    """The realized network cases run on `kb`: each meets its own describe(), or carries a finding whose replay
    meets it while the plain reference misses. (max rel err of the plain cases, proven findings)"""
    from wdparity.judge import compare

    cases, refused = network_battery.network_battery("keras")
    assert (len(cases), len(refused)) == (REALIZED, INEXPRESSIBLE)
    results = fidelity.run_native({k: (t, {**r, "keras_backend": kb}) for k, (t, r) in cases.items()}, dtype)
    worst, proven, bad = 0.0, 0, {}
    for name, (run, data, res) in results.items():
        assert res.status == "ok", (name, res.reason)
        sem = run.semantics.neutral()
        fid = fidelity.fidelity(sem, res.arrays, data, run.task.batch_size, dtype)
        findings = [f.split(":")[0] for f in precision_findings(run.config, run.task)]
        if not findings:
            worst = max(worst, fid["max_rel_err"] or 0.0)
            if not fid["holds"]:
                bad[name] = fid
            continue
        if findings == ["layer-norm-float32"]:   # float32-quality against the float64 reference, never float64-quality
            as32 = fidelity.fidelity(sem, res.arrays, data, run.task.batch_size, "float32")
            if not (as32["holds"] and (not fid["holds"] or sem["optimizer"]["name"] == "lion")):
                bad[name] = (findings, fid, as32)
            proven += 1
            continue
        assert set(findings) <= {"schedule-float32", "gelu-constants-float32"}, findings
        with tf_gelu(monkeypatch) if "gelu-constants-float32" in findings else contextlib.nullcontext():
            again = replay(run, data, tables, monkeypatch)
        err = compare.max_rel(res.arrays, again)
        # the replay holds; the plain reference misses (but for Lion, whose sign(.) step may drop the difference)
        if not (err <= fid["tol"] and (not fid["holds"] or sem["optimizer"]["name"] == "lion")):
            bad[name] = (findings, fid["max_rel_err"], err, fid["tol"])
        proven += 1
    assert not bad, bad
    if dtype == "float64":
        assert worst <= 1e-9
    return worst, proven


@pytest.mark.slow
@pytest.mark.skipif(not HAVE["tensorflow"], reason="keras or tensorflow not installed")
def test_network_battery_tensorflow_float64(probe, monkeypatch):  # noqa: F811
    worst, proven = network_on("tensorflow", "float64", monkeypatch, probe("tensorflow")["tables"])
    assert proven == 11   # the 7 step-schedule cases and the 7 gelu ones (3 both)


@pytest.mark.slow
@pytest.mark.parametrize("kb", KERAS_BACKENDS)
def test_network_battery_float32(kb, monkeypatch):
    if not HAVE[kb]:
        pytest.skip(f"keras or {kb} not installed")
    worst, proven = network_on(kb, "float32", monkeypatch)
    assert proven == 0 and worst < 1e-5


@pytest.mark.slow
@pytest.mark.skipif(not HAVE["jax"], reason="keras or jax not installed")
def test_network_battery_jax_float64(monkeypatch):
    worst, proven = network_on("jax", "float64", monkeypatch)
    assert proven == 10   # the LayerNorm cases (layer-norm-float32); the 4 relu-6-none ones meet float64
