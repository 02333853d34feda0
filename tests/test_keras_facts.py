"""Keras facts the adapter states (docs/adapters/keras.toml) that no battery or backend test measured
directly: each test measures one statement on the installed release and skips when the framework is absent.
"""


import importlib.util
import textwrap

import numpy as np
import pytest
from conftest import run_probe

HAVE_KERAS_JAX = all(importlib.util.find_spec(m) is not None for m in ("keras", "jax"))
HAVE_JAX = all(importlib.util.find_spec(m) is not None for m in ("jax", "optax"))



# ---------------------------------------------------------------- Keras on JAX (a fresh interpreter)
KERAS_PROBE = textwrap.dedent("""
    import inspect, json, os, warnings
    import numpy as np
    import keras
    from keras import ops
    keras.config.set_floatx("float64")
    S, out = keras.optimizers, {}
    out["backend"] = keras.backend.backend()
    os.environ["KERAS_BACKEND"] = "torch"
    out["backend_after_env_change"] = keras.backend.backend()
    g0, w0 = np.array([0.5, -0.25, 1.0]), np.array([1.0, -2.0, 3.0])

    def run(opt, grads, w=w0, dtype="float64"):
        v = keras.Variable(np.asarray(w, dtype), dtype=dtype)
        opt.build([v])
        for g in grads:
            opt.apply_gradients([(ops.convert_to_tensor(np.asarray(g, dtype)), v)])
        return np.asarray(ops.convert_to_numpy(v), np.float64)

    three = [g0, 2 * g0, -g0]
    out["nesterov_ignored"] = bool(np.array_equal(run(S.SGD(0.1, nesterov=True), three), run(S.SGD(0.1), three)))
    for key, make in (("momentum_int", lambda: S.SGD(0.1, momentum=1)), ("adamw_none", lambda: S.AdamW(weight_decay=None)),
                      ("dampening", lambda: S.SGD(0.1, dampening=0.1))):
        try:
            make()
            out[key] = "accepted"
        except ValueError as exc:
            out[key] = "ValueError: " + str(exc)
    gs, (b1, b2, eps, lr) = [10 * g0, 0.1 * g0], (0.9, 0.5, 1e-7, 0.01)
    m = v = vh = np.zeros(3)
    w = w0.copy()
    for t, g in enumerate(gs, 1):
        m, v = m + (g - m) * (1 - b1), v + (g * g - v) * (1 - b2)
        vh = np.maximum(vh, v)
        w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(vh) + eps)
    ams = run(S.Adam(lr, beta_2=b2, amsgrad=True), gs)
    out["amsgrad_err"] = float(np.max(np.abs(ams - w)))
    out["amsgrad_vs_adam"] = float(np.max(np.abs(ams - run(S.Adam(lr, beta_2=b2), gs))))
    g = np.array([3.0, 4.0, 0.0])
    out["clipnorm"] = (w0 - run(S.SGD(1.0, clipnorm=0.5), [g])).tolist()
    out["global_clipnorm"] = (w0 - run(S.SGD(1.0, global_clipnorm=0.5), [g])).tolist()
    out["clipvalue"] = (w0 - run(S.SGD(1.0, clipvalue=0.5), [g])).tolist()
    out["loss_scale"] = (w0 - run(S.SGD(1.0, loss_scale_factor=4.0), [g0])).tolist()
    out["scale_loss"] = float(ops.convert_to_numpy(S.SGD(1.0, loss_scale_factor=4.0).scale_loss(2.0)))
    out["accum_1"] = (w0 - run(S.SGD(1.0, gradient_accumulation_steps=2), [g0])).tolist()
    out["accum_2"] = (w0 - run(S.SGD(1.0, gradient_accumulation_steps=2), [g0, 3 * g0])).tolist()
    out["ema_2"] = run(S.SGD(1.0, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=1), [g0, g0]).tolist()
    out["ema_keys_alone_same"] = bool(np.array_equal(run(S.SGD(0.1, ema_momentum=0.5, ema_overwrite_frequency=1), three),
                                                     run(S.SGD(0.1), three)))
    out["name_same"] = bool(np.array_equal(run(S.Adam(0.1, name="x"), three), run(S.Adam(0.1), three)))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        decayed = run(S.SGD(0.1, decay=0.5), three)
    out["decay_warned"] = any("decay" in str(w.message) and "ignored" in str(w.message) for w in seen)
    out["decay_same"] = bool(np.array_equal(decayed, run(S.SGD(0.1), three)))
    out["keywords"] = {n: sorted(inspect.signature(getattr(S, n)).parameters) for n in ("SGD", "Adam", "AdamW")}
    # float32: one Adam step from w = 0 with |g| = 1, epsilon negligible: lr*sqrt(1-b2^1)/(1-b1^1)*m/sqrt(v)
    step = -run(S.Adam(0.01, epsilon=1e-30), [np.ones(3)], w=np.zeros(3), dtype="float32")
    out["adam_f32_step_rel"] = float(step[0] / 0.01 - 1)
    dense = keras.layers.Dense(1)
    model = keras.Sequential([keras.Input((3,)), dense])
    out["variables"] = [[v.name, list(v.shape)] for v in model.trainable_variables]
    opt = S.SGD(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    out["decayed"] = [v.name for v in model.trainable_variables if opt._use_weight_decay(v)]
    dense.bias.trainable = False
    out["trainable_after"] = [v.name for v in model.trainable_variables]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def keras_facts():
    if not HAVE_KERAS_JAX:
        pytest.skip("keras or jax not installed (pip install 'wdparity[keras,jax]')")
    return run_probe(KERAS_PROBE, env={"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"})


def test_keras_sgd_ignores_nesterov_without_momentum(keras_facts):
    assert keras_facts["nesterov_ignored"]


def test_keras_sgd_momentum_must_be_a_float(keras_facts):
    assert keras_facts["momentum_int"].startswith("ValueError: `momentum` must be a float")


def test_keras_sgd_has_no_dampening(keras_facts):
    assert keras_facts["dampening"].startswith("ValueError: Argument(s) not recognized")
    assert "dampening" not in keras_facts["keywords"]["SGD"]


def test_keras_adamw_weight_decay_must_not_be_none(keras_facts):
    assert keras_facts["adamw_none"].startswith("ValueError: Argument `weight_decay` must be a float")


def test_keras_amsgrad_normalises_by_the_running_max_of_v(keras_facts):
    assert keras_facts["amsgrad_err"] < 1e-15 and keras_facts["amsgrad_vs_adam"] > 1e-4


def test_keras_optimizers_take_the_base_optimizer_keywords(keras_facts):
    base = {"weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum",
            "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps", "name"}
    for name, keywords in keras_facts["keywords"].items():
        assert base <= set(keywords), name


def test_keras_clipping_acts_on_the_gradient_before_the_update(keras_facts):
    np.testing.assert_allclose(keras_facts["clipnorm"], [0.3, 0.4, 0.0], rtol=1e-15)          # |g| = 5 -> 0.5
    np.testing.assert_allclose(keras_facts["global_clipnorm"], [0.3, 0.4, 0.0], rtol=1e-15)
    assert keras_facts["clipvalue"] == [0.5, 0.5, 0.0]


def test_keras_ema_writes_the_average_into_the_weights(keras_facts):
    # step 1: w1 = w0 - g0 and the average starts at w1; step 2: w2 = w1 - g0, average 0.5*w1 + 0.5*w2 -> w
    w1 = np.array([1.0, -2.0, 3.0]) - np.array([0.5, -0.25, 1.0])
    np.testing.assert_allclose(keras_facts["ema_2"], w1 - 0.5 * np.array([0.5, -0.25, 1.0]), rtol=1e-15)
    assert keras_facts["ema_keys_alone_same"]


def test_keras_loss_scale_factor_divides_the_gradients_back(keras_facts):
    assert keras_facts["scale_loss"] == 8.0
    np.testing.assert_allclose(keras_facts["loss_scale"], np.array([0.5, -0.25, 1.0]) / 4, rtol=1e-15)


def test_keras_gradient_accumulation_updates_once_every_n_steps(keras_facts):
    assert keras_facts["accum_1"] == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(keras_facts["accum_2"], 2 * np.array([0.5, -0.25, 1.0]), rtol=1e-15)   # mean(g, 3g)


def test_keras_name_and_decay_change_no_number(keras_facts):
    assert keras_facts["name_same"] and keras_facts["decay_same"] and keras_facts["decay_warned"]


def test_keras_backend_is_read_once_at_import(keras_facts):
    assert keras_facts["backend"] == keras_facts["backend_after_env_change"] == "jax"


def test_keras_float32_adam_first_step_is_smaller_than_the_exact_one(keras_facts):
    f32 = np.float32
    assert float(f32(1) - f32(0.999)) == pytest.approx(9.9998713e-4, rel=1e-7)
    assert keras_facts["adam_f32_step_rel"] == pytest.approx(-6.7e-6, abs=0.3e-6)


def test_keras_dense_variables_are_kernel_and_bias_and_excluded_by_name(keras_facts):
    assert keras_facts["variables"] == [["kernel", [3, 1]], ["bias", [1]]]
    assert keras_facts["decayed"] == ["kernel"]
    assert keras_facts["trainable_after"] == ["kernel"]


KERAS_TRAIN_PROBE = textwrap.dedent("""
    import json
    import numpy as np
    import keras
    from wdparity.engine.data import batches, make_data
    from wdparity.judge import fidelity
    from wdparity.spec.models import Task
    from wdparity_backends.keras_backend import backend
    task = Task.model_validate({**fidelity.BATTERY_TASK, "epochs": 1, "loss": "half_mse"}).model_dump()
    data = make_data(task)
    run = {"keras_backend": "jax", "optimizer": "Adam", "learning_rate": 0.01, "weight_decay": 0.1,
           "kernel_regularizer": {"l2": 0.05}}
    native = backend.train({"task": task, "dtype": "float64", "run": run}, data)["weight"]
    keras.utils.clear_session(free_memory=False)
    d = int(task["num_inputs"])
    dense = keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L1L2(l2=0.05))
    model = keras.Sequential([keras.Input(shape=(d,), dtype="float64"), dense])
    dense.set_weights([data["w0"].reshape(d, 1), np.asarray(data["b0"]).reshape(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01, weight_decay=0.1),
                  loss=keras.losses.MeanSquaredError(), loss_weights=0.5)
    X, y = np.asarray(data["X_train"]), np.asarray(data["y_train"]).reshape(-1, 1)
    rows = [np.asarray(keras.ops.convert_to_numpy(dense.kernel)).reshape(-1)]
    for idx in batches(data["order"], int(task["batch_size"])):
        model.train_on_batch(X[idx], y[idx])
        rows.append(np.asarray(keras.ops.convert_to_numpy(dense.kernel)).reshape(-1))
    ref = np.stack(rows)
    # the legacy `decay`: the adapter hands it to Keras, which warns and ignores it
    plain = {"keras_backend": "jax", "optimizer": "RMSprop", "learning_rate": 0.01, "momentum": 0.5}
    trained = [backend.train({"task": task, "dtype": "float64", "run": r}, data)["weight"] for r in (plain, {**plain, "decay": 0.5})]
    print(json.dumps({"shape": [list(native.shape), list(ref.shape)],
                      "max_rel": float(np.max(np.abs(native - ref)) / np.max(np.abs(ref))),
                      "decay_same": bool(np.array_equal(*trained))}))
""")


def test_keras_compiled_train_step_equals_train_on_batch_on_jax():
    """The adapter's loop over the jitted Model.train_step trains what train_on_batch trains."""
    if not HAVE_KERAS_JAX:
        pytest.skip("keras or jax not installed (pip install 'wdparity[keras,jax]')")
    out = run_probe(KERAS_TRAIN_PROBE, env={"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"})
    assert out["shape"][0] == out["shape"][1]
    assert out["max_rel"] < 1e-14
    assert out["decay_same"]     # decay passed through to Keras changes no number, as describe() says


# ---------------------------------------------------------------- float32 weight decay: a rounding of its own
WEIGHT_DECAY_PROBE = """
import json
import numpy as np
import keras
from keras import ops
S = keras.optimizers
rng = np.random.default_rng(0)
f = np.float32
w0 = rng.standard_normal(64).astype(f)
gs = [(rng.standard_normal(64) * 0.05).astype(f) for _ in range(300)]
v = keras.Variable(w0, dtype="float32")
opt = S.SGD(5e-6, weight_decay=0.5)
opt.build([v])
for g in gs:
    opt.apply_gradients([(ops.convert_to_tensor(g), v)])
native = np.asarray(ops.convert_to_numpy(v))
lr, wd = f(5e-6), f(0.5)
two, one, exact = w0.copy(), w0.copy(), w0.astype(np.float64)
for g in gs:
    two = two - two * wd * lr
    two = two - g * lr
    one = one + (-(g * lr) - (lr * wd) * one)
    exact = exact - exact * 0.5 * 5e-6 - g * 5e-6
scale = np.abs(exact).max()
print(json.dumps({"backend": keras.backend.backend(), "two_bitwise": bool(np.array_equal(native, two)),
                  "one_bitwise": bool(np.array_equal(native, one)),
                  "native_drift": float(np.abs(native - exact).max() / scale), "one_drift": float(np.abs(one - exact).max() / scale)}))
"""


def test_keras_float32_weight_decay_is_an_assignment_of_its_own():
    """_apply_weight_decay assigns w - w*wd*lr before the update step: a float32 run rounds w twice a step, and where
    lr*wd is small the decay's rounding has the same direction step after step (measured: 24x the drift of one
    combined update over 300 steps at lr*wd = 2.5e-6)."""
    if not HAVE_KERAS_JAX:
        pytest.skip("keras or jax not installed (pip install 'wdparity[keras,jax]')")
    out = run_probe(WEIGHT_DECAY_PROBE, env={"KERAS_BACKEND": "jax"})
    assert out["backend"] == "jax" and out["two_bitwise"] and not out["one_bitwise"]
    assert out["native_drift"] > 10 * out["one_drift"]
