"""Adafactor in the Keras 3 and tf_keras adapters (keras_adafactor.py): the round trip over a list of neutral
Adafactor semantics with the reasons of what is refused, the keyword tables, the measured facts behind describe()
(relative_step is a no-op, float32 casts per Keras backend, the decay before the parameter scale) and the battery
cases telling the neighbouring models apart. Statements: docs/adapters/keras.toml, tf_keras.toml."""

from __future__ import annotations

import textwrap

import pytest
from conftest import detects_a_wrong_model, run_probe

from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity_backends.keras_adafactor import KEYWORDS
from wdparity_backends.keras_backend import backend as keras
from wdparity_backends.keras_vocab import DEFAULTS as KERAS_DEFAULTS
from wdparity_backends.tf_keras_backend import backend as tf_keras
from wdparity_backends.tf_keras_vocab import DEFAULTS as TF_KERAS_DEFAULTS

WD = [{"coupling": "decoupled", "coefficient": 0.25, "scale": "lr", "params": ["weight", "bias"]}]
BASE = {"name": "adafactor", "lr": 0.05, "relative_step": True, "parameter_scale": 0.125}   # float32-exact
# (optimizer overrides, decay, dtype) -> None: expressed (both adapters), or a word of the refusal's reason
SEMANTICS = [
    ({}, [], "float64", None),
    ({}, [], "float32", None),   # inherent(): decay_rate_dtype "float32" in a float32 run
    ({"decay_rate": 0.5, "eps": 1e-3, "clip_threshold": 0.5, "parameter_scale": 0.125}, [], "float64", None),
    ({"decay_placement": "before"}, WD, "float64", None),
    ({"decay_placement": "after"}, WD, "float64", "decays w before update_step"),
    ({"decay_placement": "before"}, [], "float64", "one computation"),
    ({"relative_step": False}, [], "float64", "relative_step=False only"),
    ({"parameter_scale": None}, [], "float64", "max(epsilon_2, rms(w))"),
    ({"clip_threshold": None}, [], "float64", "max(1, rms(u)/clip_threshold)"),
    ({"momentum": 0.9}, [], "float64", "no momentum"),
    ({"decay_rate_dtype": "float32"}, [], "float64", "float64 here"),
]


@pytest.mark.parametrize("adapter", [keras, tf_keras], ids=["keras", "tf_keras"])
def test_round_trip_over_adafactor_semantics(adapter):
    for opt, decay, dtype, refused in SEMANTICS:
        t = Task.model_validate({**fidelity.BATTERY_TASK, "dtype": dtype})
        sem = adapter.inherent(Semantics.model_validate({"optimizer": {**BASE, **opt}, "decay": decay}), t)
        if refused:
            with pytest.raises(Inexpressible, match=refused.replace("(", r"\(").replace(")", r"\)")):
                adapter.realize(sem, t)
            continue
        run = adapter.realize(sem, t)
        assert run["optimizer"] == "Adafactor" and run["beta_2_decay"] == -sem.optimizer.decay_rate, run
        assert adapter.describe(adapter.parse(run), t).neutral() == sem.neutral(), (opt, run)
    # float64 TensorFlow rounds epsilon_2 = 1e-3 through float32: Keras realizes 1e-3 on JAX, 0.125 (exact) on TF;
    # tf_keras (TensorFlow only) refuses 1e-3, naming the float32 value it would compute with
    t = Task.model_validate({**fidelity.BATTERY_TASK, "dtype": "float64"})
    default = Semantics.model_validate({"optimizer": {**BASE, "parameter_scale": 1e-3}})
    if adapter is keras:
        assert keras.realize(default, t)["keras_backend"] == "jax"
        assert keras.realize(Semantics.model_validate({"optimizer": BASE}), t)["keras_backend"] == "tensorflow"
    else:
        with pytest.raises(Inexpressible, match="0.0010000000474974513"):
            tf_keras.realize(default, t)


def test_the_keyword_tables_are_the_installed_signatures():
    got = run_probe(textwrap.dedent("""
        import inspect, json, keras, tf_keras
        print(json.dumps({n: {k: p.default for k, p in inspect.signature(m.optimizers.Adafactor).parameters.items()
                              if p.default is not inspect.Parameter.empty} for n, m in (("keras", keras),
                                                                                      ("tf_keras", tf_keras))}))
    """))
    for name, table in (("keras", KERAS_DEFAULTS["Adafactor"]), ("tf_keras", TF_KERAS_DEFAULTS["Adafactor"])):
        assert {k: got[name][k] for k in table} == table, name
        assert {k: got[name][k] for k in KEYWORDS} == KEYWORDS


PROBE = textwrap.dedent("""
    import json, os
    import numpy as np
    import keras
    from keras import ops
    keras.config.set_floatx("float64")
    out = {}
    x = ops.convert_to_tensor(np.array([3.0, 7.0]), dtype="float64")
    out["power_f32"] = bool(np.array_equal(ops.convert_to_numpy(ops.power(x, -0.8)),
                                           np.array([3.0, 7.0]) ** float(np.float32(-0.8))))
    out["add_f32"] = bool(ops.convert_to_numpy(ops.add(ops.zeros((1,), "float64"), 1e-3))[0] == float(np.float32(1e-3)))
    out["cast_f32"] = bool(ops.convert_to_numpy(ops.cast(1e-3, "float64")) == float(np.float32(1e-3)))
    w = np.array([0.1, -0.7, 1.3])
    out["mean_f32"] = bool(ops.convert_to_numpy(ops.mean(ops.convert_to_tensor(w, "float64"))) == float(np.float32(w).mean()))
    out["mean_exact"] = bool(ops.convert_to_numpy(ops.mean(ops.convert_to_tensor(w, "float64"))) == w.mean())
    rows = {}
    for rel in (True, False):   # lr 0.5 > 1/sqrt(k) from k = 5: the min acts, with either relative_step
        v = keras.Variable(np.ones((3, 1)), dtype="float64")
        opt = keras.optimizers.Adafactor(0.5, relative_step=rel)
        for g in ([1.0, -2.0, 0.5], [0.3, 0.1, -0.2]) * 4:
            opt.apply_gradients([(ops.convert_to_tensor(np.array(g).reshape(3, 1)), v)])
        rows[str(rel)] = ops.convert_to_numpy(v).ravel().tolist()
    out["relative_step"] = rows
    print(json.dumps(out))
""")


@pytest.mark.parametrize("kb", ["tensorflow", "jax", "torch"])
def test_keras_adafactor_casts_and_relative_step_per_backend(kb):
    """What describe() and the precision finding state per Keras backend in float64 (floatx float64, as the adapter
    sets it): epsilon_2 through ops.cast is float32 on TensorFlow; ops.power(k, beta_2_decay) and ops.add(g^2,
    epsilon_1) take the Python floats exactly everywhere; ops.mean computes in float32 on JAX and torch
    (adafactor-mean-float32). relative_step=False gives the
    very same steps as True (rho_t = min(lr, 1/sqrt(k)) either way)."""
    got = run_probe(PROBE, {"KERAS_BACKEND": kb, "JAX_ENABLE_X64": "1"})
    assert got["cast_f32"] == (kb == "tensorflow")
    assert not got["power_f32"] and not got["add_f32"]
    assert got["mean_exact"] == (kb == "tensorflow") and got["mean_f32"] == (kb != "tensorflow")
    assert got["relative_step"]["True"] == got["relative_step"]["False"]


def _mutate(**update):
    return lambda sem: sem["optimizer"].update(update)


@pytest.mark.parametrize("adapter,prefix", [(keras, "tensorflow-"), (tf_keras, "")], ids=["keras", "tf_keras"])
def test_the_battery_tells_the_neighbouring_models_apart(adapter, prefix):
    """Float64: the weight-decay case meets decay_placement "before" and misses "after"; from zero weights the
    parameter scale is epsilon_2 float32-rounded (tf.cast), the exact 1e-3 misses; lr 0.5 needs the relative step."""
    detects_a_wrong_model(adapter, f"{prefix}adafactor-weight-decay", _mutate(decay_placement="after"))
    detects_a_wrong_model(adapter, f"{prefix}adafactor-relative-step-zeros", _mutate(parameter_scale=1e-3))
    detects_a_wrong_model(adapter, f"{prefix}adafactor-relative-step-zeros", _mutate(relative_step=False))
