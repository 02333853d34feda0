"""Measured tf_keras 2.21 facts behind the adapter (each in docs/adapters/tf_keras.toml): the keyword tables are the
installed signatures, L2(c)'s gradient is 2c*w, the new optimizers raise on decay=, legacy hyperparameters are
float32 variables, a Python-float schedule is float32, the new Nadam under tf.function is off NAdam, legacy RMSprop
(without momentum) and Adagrad add epsilon outside the root, and the import order of Keras 3 and tf_keras changes
nothing."""

from __future__ import annotations

import functools
import textwrap

from conftest import run_probe

from wdparity_backends.tf_keras_vocab import DEFAULTS

PROBE = textwrap.dedent("""
    import json, inspect
    import numpy as np, tensorflow as tf, tf_keras
    out = {}
    sig = {}
    for name in %r:
        mod = tf_keras.optimizers.legacy if name.startswith("legacy.") else tf_keras.optimizers
        cls = getattr(mod, name.removeprefix("legacy."))
        sig[name] = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                     if p.default is not inspect.Parameter.empty}
    out["sig"] = sig
    try:
        tf_keras.optimizers.SGD(decay=0.1)
    except ValueError as exc:
        out["decay_error"] = str(exc)
    tf_keras.backend.set_floatx("float64")
    w = tf.Variable(np.array([1.5, -2.0]))
    with tf.GradientTape() as tape:
        loss = tf_keras.regularizers.L2(0.3)(w)
    out["l2_grad"] = tape.gradient(loss, w).numpy().tolist()
    opt = tf_keras.optimizers.legacy.SGD(learning_rate=0.1, momentum=0.9)
    opt.apply_gradients([(tf.constant([0.0, 0.0], tf.float64), w)])
    out["legacy_hyper_dtype"] = opt._get_hyper("momentum").dtype.name
    out["schedule_dtype"] = tf_keras.optimizers.schedules.ExponentialDecay(0.1, 4, 0.5)(0).dtype.name
    out["schedule64_dtype"] = tf_keras.optimizers.schedules.ExponentialDecay(np.float64(0.1), 4, 0.5)(0).dtype.name
    out["nadam_counter"] = tf_keras.optimizers.Nadam().__class__.__module__
    print(json.dumps(out))
""")


def _probe():
    return run_probe(PROBE % (list(DEFAULTS),))


def test_the_keyword_table_is_the_installed_signatures_and_the_measured_facts():
    got = _probe()
    for name, table in DEFAULTS.items():
        sig = got["sig"][name]
        for key, default in table.items():
            if key in ("decay", "schedule_decay"):   # **kwargs: legacy/optimizer_v2.py:406, legacy/nadam.py:78
                continue
            assert key in sig and sig[key] == default, (name, key, default, sig.get(key))
    assert "decay is deprecated in the new TF-Keras optimizer" in got["decay_error"]
    assert got["l2_grad"] == [2 * 0.3 * 1.5, 2 * 0.3 * -2.0]   # L2(c) is a 2c*w gradient
    assert got["legacy_hyper_dtype"] == "float32"              # legacy hypers are float32 variables
    assert (got["schedule_dtype"], got["schedule64_dtype"]) == ("float32", "float64")


def test_new_nadam_under_tf_function_is_off_nadam():
    """Trained through the adapter's compiled train_step, the new Nadam's bias is 0.27 relative off the NAdam of
    its own constants from step 1 (the trace-time u_product counter), legacy.Nadam meets NAdam."""
    from wdparity.engine import reference
    from wdparity.engine.data import make_data
    from wdparity.judge import compare, fidelity
    from wdparity.spec.models import Task
    from wdparity_backends.tf_keras_backend import backend

    task = Task.model_validate({**fidelity.BATTERY_TASK, "dtype": "float32"})
    data = make_data(task.model_dump())
    legacy = backend.parse({"optimizer": "legacy.Nadam", "learning_rate": 0.01, "schedule_decay": 1.0})
    sem = backend.describe(legacy, task).neutral()
    ref = reference.run(sem, data, task.batch_size, "float64")
    errs = {}
    for name in ("legacy.Nadam", "Nadam"):
        run = {"optimizer": name, "learning_rate": 0.01, **({"schedule_decay": 1.0} if name.startswith("legacy") else {})}
        job = {"task": task.model_dump(), "run": run, "dtype": "float32"}
        errs[name] = compare.max_rel(backend.train(job, data), ref)
    assert errs["legacy.Nadam"] < 1e-4 and errs["Nadam"] > 0.1, errs


EPS_PROBE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    first = os.environ.get("FIRST", "")
    if first == "keras":
        import keras
    import tensorflow as tf, tf_keras
    if first == "tf_keras":
        import keras
    tf_keras.backend.set_floatx("float64")
    g = np.array([0.3, -0.02, 0.001])
    out = {}
    for name, kw in (("RMSprop", {"rho": 0.5}), ("legacy.RMSprop", {"rho": 0.5}),
                     ("legacy.RMSprop-momentum", {"rho": 0.5, "momentum": 0.5}), ("Adagrad", {}), ("legacy.Adagrad", {})):
        cls = name.split("-")[0]
        mod = tf_keras.optimizers.legacy if cls.startswith("legacy.") else tf_keras.optimizers
        opt = getattr(mod, cls.removeprefix("legacy."))(learning_rate=0.5, epsilon=0.25, **kw)
        w = tf.Variable(np.zeros(3))
        opt.apply_gradients([(tf.constant(g), w)])
        out[name] = w.numpy().tolist()
    if first:   # a Keras 3 step in the same process: its own result, whatever was imported first
        v = keras.Variable(np.zeros(3), dtype="float64")
        keras.optimizers.Adam(0.5).apply_gradients([(keras.ops.convert_to_tensor(g), v)])
        out["keras3-Adam"] = keras.ops.convert_to_numpy(v).tolist()
    print(json.dumps(out))
""")


@functools.lru_cache(maxsize=None)
def _eps_probe(first: str) -> dict:
    return run_probe(EPS_PROBE, {"FIRST": first})


def test_legacy_rmsprop_and_adagrad_add_epsilon_outside_the_root():
    """One step from w = 0 in float64 (lr 0.5, rho 0.5, epsilon 0.25, all float32-exact): the new RMSprop and Adagrad
    divide by sqrt(v + eps); legacy.RMSprop without momentum by sqrt(v) + eps (legacy/rmsprop.py:228-247), with
    momentum by sqrt(v + eps) (ResourceApplyRMSProp, :215-225); legacy.Adagrad by sqrt(s) + eps
    (ResourceApplyAdagradV2, legacy/adagrad.py:140-154)."""
    import numpy as np

    got = {k: np.asarray(v) for k, v in _eps_probe("").items()}
    g, lr, eps = np.array([0.3, -0.02, 0.001]), 0.5, 0.25
    v, s = 0.5 * g * g, 0.1 + g * g
    np.testing.assert_allclose(got["RMSprop"], -lr * g / np.sqrt(v + eps), rtol=1e-14)
    np.testing.assert_allclose(got["legacy.RMSprop"], -lr * g / (np.sqrt(v) + eps), rtol=1e-14)
    np.testing.assert_allclose(got["legacy.RMSprop-momentum"], -lr * g / np.sqrt(v + eps), rtol=1e-14)
    np.testing.assert_allclose(got["Adagrad"], -lr * g / np.sqrt(s + eps), rtol=1e-14)
    np.testing.assert_allclose(got["legacy.Adagrad"], -lr * g / (np.sqrt(s) + eps), rtol=1e-14)
    assert np.max(np.abs(got["RMSprop"] / got["legacy.RMSprop"] - 1)) > 0.1


def test_importing_keras3_before_or_after_tf_keras_changes_nothing():
    """Separate workers importing Keras 3 first, tf_keras first, or tf_keras alone: the same tf_keras steps to the
    bit, and the same Keras 3 step (each adapter runs in its own worker; neither import rebinds the other)."""
    alone, k3_first, tfk_first = (_eps_probe(f) for f in ("", "keras", "tf_keras"))
    assert k3_first == tfk_first
    assert {k: v for k, v in k3_first.items() if k != "keras3-Adam"} == alone
