"""mlx.optimizers.Adafactor: describe/realize (no MLX needed) over AdafactorSpec semantics and its refusals, and the
MLX facts they rest on (docs/adapters/mlx.toml), measured on the installed release."""

import importlib.util

import numpy as np
import pytest
from conftest import detects_a_wrong_model

from wdparity.engine.data import make_data
from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError
from wdparity.spec.models import Semantics, Task
from wdparity_backends.mlx_adafactor import F32_RELATIVE_LR
from wdparity_backends.mlx_backend import backend

NEEDS_MLX = pytest.mark.skipif(importlib.util.find_spec("mlx") is None, reason="mlx not installed")
STEP = {"kind": "step", "every": 4, "factor": 0.5}
BASE = {"name": "adafactor", "lr": 0.01, "decay_rate": 0.8, "eps": 1e-30, "clip_threshold": 1.0,
        "relative_step": True, "parameter_scale": 1e-3}
# (optimizer fields over BASE, decay rules, schedule, clip)
SEMANTICS = [
    ({}, [], None, None),
    ({"momentum": 0.9}, [], None, None),
    ({"relative_step": False, "lr": 0.05}, [], STEP, None),
    ({"relative_step": False, "lr": 0.02, "parameter_scale": None, "clip_threshold": 0.5, "decay_rate": 0.5,
      "eps": 1e-20}, [], None, None),
    ({"parameter_scale": 0.05, "momentum": 0.5}, [{"coupling": "gradient", "coefficient": 0.2, "params": ["weight"],
                                                   "via_loss": True}], None, None),
    ({}, [{"coupling": "gradient", "coefficient": 0.1, "via_loss": True}], None,
     {"kind": "global_norm", "threshold": 0.1, "eps": 1e-6}),
]


def task(dtype="float32", **over):
    return Task.model_validate({**fidelity.BATTERY_TASK, "dtype": dtype, **over})


def semantics(opt, decay=(), schedule=None, clip=None, dtype="float32"):
    o = {**BASE, **opt}
    if dtype == "float64" and o["relative_step"]:
        o["lr"] = F32_RELATIVE_LR   # min(1e-2, rsqrt(step)) is float32
    return Semantics.model_validate({"optimizer": o, "decay": list(decay), "schedule": schedule or {"kind": "constant"},
                                     **({"clip": clip} if clip else {})})


def describe(run, dtype="float32", **over):
    return backend.describe(backend.parse(run), task(dtype, **over)).neutral()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adafactor_semantics_round_trip(dtype):
    for opt, decay, schedule, clip in SEMANTICS:
        t = task(dtype, **({"schedule": schedule} if schedule else {}))
        native = backend.inherent(semantics(opt, decay, schedule, clip, dtype), t)
        run = backend.realize(native, t)
        assert run["optimizer"] == "Adafactor" and run["hyperparameters_as_arrays"]
        assert backend.describe(backend.parse(run), t).neutral() == native.neutral(), run
        assert native.optimizer.decay_rate_dtype == ("float32" if dtype == "float32" else None)


@pytest.mark.parametrize("opt, decay, schedule, match", [
    ({}, [{"coupling": "decoupled", "coefficient": 0.1, "scale": "lr"}], None, "rms"),
    ({"decay_placement": "before"}, [], None, "decay_placement"),
    ({"clip_threshold": None}, [], None, "clip_threshold"),
    ({"lr": 0.05}, [], None, "fixed at 1e-2"),
    ({}, [], STEP, "ignores learning_rate"),
])
def test_what_adafactor_cannot_realize(opt, decay, schedule, match):
    t = task(**({"schedule": schedule} if schedule else {}))
    with pytest.raises(Inexpressible, match=match) as exc:
        backend.realize(backend.inherent(semantics(opt, decay, schedule), t), t)
    assert "nearest" in str(exc.value)
    t64 = task("float64")
    with pytest.raises(Inexpressible, match="decay_rate_dtype"):   # MLX's float64 b2 is either exact or refused
        backend.realize(semantics({"decay_rate_dtype": "float32"}, dtype="float64"), t64)


def test_describe_reads_mlx_keywords_as_the_neutral_adafactor():
    opt = describe({"optimizer": "Adafactor", "learning_rate": 0.5})["optimizer"]   # relative_step ignores it
    assert opt == {**BASE, "momentum": None, "decay_placement": "after", "decay_rate_dtype": "float32"}
    assert describe({"optimizer": "Adafactor", "hyperparameters_as_arrays": True}, "float64")["optimizer"]["lr"] == \
        F32_RELATIVE_LR
    opt = describe({"optimizer": "Adafactor", "learning_rate": 0.1, "relative_step": False, "scale_parameter": False,
                    "decay_rate": -0.6, "eps": [1e-20, 0.5], "beta_1": 0.9})["optimizer"]
    assert (opt["lr"], opt["decay_rate"], opt["eps"], opt["parameter_scale"], opt["momentum"]) == (0.1, 0.6, 1e-20,
                                                                                                  None, 0.9)


@pytest.mark.parametrize("run, over, key", [
    ({"weight_decay": 0.1}, {}, "weight_decay"),
    ({"warmup_init": True}, {}, "warmup_init"),
    ({"decay_rate": 0.8}, {}, "decay_rate"),
    ({}, {"schedule": STEP}, "relative_step"),
    ({}, {"dtype": "float64"}, "hyperparameters_as_arrays"),
    ({"hyperparameters_as_arrays": True}, {"dtype": "float64", "epochs": 2600}, "relative_step"),
])
def test_adafactor_runs_outside_the_model_are_errors_naming_the_key(run, over, key):
    with pytest.raises(InputError, match=key):
        describe({"optimizer": "Adafactor", **run}, **over)


@pytest.mark.parametrize("run, key", [({"relative_step": False}, "learning_rate"), ({"eps": 1e-30}, "eps"),
                                      ({"eps": [1e-30]}, "eps"), ({"alpha": 0.9}, "alpha")])
def test_bad_adafactor_keywords_are_errors_naming_the_key(run, key):
    with pytest.raises(Exception, match=key):
        backend.parse({"optimizer": "Adafactor", **run})


# ---------------------------------------------------------------- measured on MLX
@NEEDS_MLX
def test_step_powers_are_float32_unless_decay_rate_is_a_float64_array_and_match_numpy_bit_for_bit():
    import mlx.core as mx

    s = mx.array(3, mx.uint64)
    assert (s ** -0.8).dtype == mx.float32 and (s ** mx.array(-0.8, dtype=mx.float64)).dtype == mx.float64
    assert mx.rsqrt(s).dtype == mx.float32 and mx.minimum(1e-2, mx.rsqrt(s)).dtype == mx.float32
    for k in range(1, 201):
        step = mx.array(k, mx.uint64)
        assert np.array(step ** -0.8).tobytes() == (np.float32(k) ** np.float32(-0.8)).tobytes()   # engine/adafactor.py
        assert np.array(step ** mx.array(-0.8, dtype=mx.float64)).item() == k ** -0.8
        assert np.float32(mx.minimum(1e-2, mx.rsqrt(step)).item()) == np.float32(0.01)   # k <= 10000


def train(run: dict, dtype="float64", **over):
    t = task(dtype, **over)
    data = make_data(t.model_dump())
    return t, data, backend.train({"task": t.model_dump(), "run": backend.parse(run).model_dump(), "dtype": dtype}, data)


@NEEDS_MLX
def test_a_float64_python_decay_rate_is_neither_neutral_b2():
    """1 - float32(k^-0.8) in float64: 2.7e-9 from the exact b2 and 8.1e-9 from the float32 one over 40 steps."""
    run = {"optimizer": "Adafactor", "beta_1": 0.5}
    t, data, native = train(run, epochs=10)
    sem = backend.describe(backend.parse({**run, "hyperparameters_as_arrays": True}), t).neutral()
    for dtype, low in ((None, 1e-9), ("float32", 5e-9)):
        s = {**sem, "optimizer": {**sem["optimizer"], "decay_rate_dtype": dtype}}
        got = fidelity.fidelity(s, native, data, t.batch_size, "float64")
        assert not got["holds"] and low < got["max_rel_err"] < 1e-7, (dtype, got["max_rel_err"])
    assert fidelity.fidelity(sem, train({**run, "hyperparameters_as_arrays": True}, epochs=10)[2], data,
                             t.batch_size, "float64")["max_rel_err"] < 1e-14


@NEEDS_MLX
def test_learning_rate_is_ignored_under_relative_step():
    a = train({"optimizer": "Adafactor", "hyperparameters_as_arrays": True})[2]
    b = train({"optimizer": "Adafactor", "learning_rate": 0.5, "hyperparameters_as_arrays": True})[2]
    for k in ("weight", "bias"):   # to rounding: repeated MLX CPU runs differ by an ulp at times (measured)
        np.testing.assert_allclose(a[k], b[k], rtol=1e-14, atol=1e-20)
    c = train({"optimizer": "Adafactor", "learning_rate": 0.5, "relative_step": False,
               "hyperparameters_as_arrays": True})[2]
    assert np.max(np.abs(c["weight"] - a["weight"])) > 1e-3   # the same lr does act without relative_step


@NEEDS_MLX
def test_the_one_row_weight_is_factored_and_its_estimate_is_the_unfactored_one():
    import mlx.core as mx
    import mlx.optimizers as optim

    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=5), rng.normal(size=(6, 5))
    out = []
    for shape in ((1, 5), (5,)):
        opt = optim.Adafactor(decay_rate=mx.array(-0.8, dtype=mx.float64))
        p = {"w": mx.array(w0.reshape(shape), dtype=mx.float64)}
        for g in grads:
            p = opt.apply_gradients({"w": mx.array(g.reshape(shape), dtype=mx.float64)}, p)
            mx.eval(p, opt.state)
        out.append(np.array(p["w"]).reshape(-1))
        assert ("exp_avg_sq_row" in opt.state["w"]) == (len(shape) == 2)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-15, atol=0)


@NEEDS_MLX
def test_weight_decay_is_scaled_by_the_parameter_scaled_step():
    """One step: w*(1 - wd*max(eps2, rms(w))*min(1e-2, 1/sqrt(1))) - that step * u, u = g/|g| clipped to rms 1."""
    import mlx.core as mx
    import mlx.optimizers as optim

    w0, g = np.array([[1.0, -2.0, 3.0]]), np.array([[0.5, -0.25, 1.0]])
    opt = optim.Adafactor(weight_decay=0.5, decay_rate=mx.array(-0.8, dtype=mx.float64))
    w = np.array(opt.apply_gradients({"w": mx.array(g, dtype=mx.float64)}, {"w": mx.array(w0, dtype=mx.float64)})["w"])
    rate = np.sqrt(np.mean(w0 ** 2)) * float(np.float32(0.01))   # parameter scale x relative step
    u = g / np.sqrt(g * g + 1e-30)                                 # b2_1 = 0: v = g^2 + eps
    np.testing.assert_allclose(w, w0 * (1 - 0.5 * rate) - rate * u, rtol=1e-14)


@NEEDS_MLX
def test_the_battery_tells_the_parameter_scale_and_the_momentum_apart():
    def unscaled(sem):
        sem["optimizer"]["parameter_scale"] = None
        return sem

    def no_momentum(sem):
        sem["optimizer"]["momentum"] = None
        return sem
    detects_a_wrong_model(backend, "adafactor-defaults", unscaled)
    detects_a_wrong_model(backend, "adafactor-lr-step-schedule-beta-1", no_momentum)
