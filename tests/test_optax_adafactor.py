"""optax.adafactor in the optax adapter: what each keyword means (the neutral AdafactorSpec), the round trip over a
list of Adafactor semantics with optax's refusals, the knobs refused by name, measured optax facts (float32 decay
powers, the (d, 1) factored estimate, the chain order, the float32 momentum) and the float32-only battery case."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import run_probe
from test_optax_backend import HAVE_JAX, describe, needs_jax

from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity_backends.optax_backend import backend

F64 = Task.model_validate({**fidelity.BATTERY_TASK, "dtype": "float64"})
F32 = Task.model_validate({**fidelity.BATTERY_TASK, "dtype": "float32"})
BASE = {"name": "adafactor", "lr": 0.05, "decay_rate": 0.8, "eps": 1e-30, "clip_threshold": 1.0,
        "relative_step": False, "parameter_scale": 1e-3, "momentum": None, "decay_placement": "after",
        "decay_rate_dtype": "float32"}
DEC = {"norm": "l2", "coupling": "decoupled", "coefficient": 0.1, "scale": "none", "params": ["weight", "bias"],
       "l1_at_zero": None}


# ---------------------------------------------------------------- describe
@pytest.mark.parametrize("run, opt, decay", [
    ({"optimizer": "adafactor"}, {"lr": 1.0}, []),                       # learning_rate None: no lr scaling
    ({"optimizer": "adafactor", "learning_rate": 0.1, "multiply_by_parameter_scale": False, "clipping_threshold": False,
      "decay_rate": 0.7, "eps": 1e-8}, {"lr": 0.1, "parameter_scale": None, "clip_threshold": None, "decay_rate": 0.7,
                                        "eps": 1e-8}, []),
    ({"optimizer": "adafactor", "learning_rate": 0.1, "momentum": 0.9, "dtype_momentum": "float64",
      "clipping_threshold": 2.0}, {"lr": 0.1, "momentum": 0.9, "clip_threshold": 2.0}, []),
    ({"optimizer": "adafactor", "learning_rate": 0.1, "weight_decay_rate": 0.1}, {"lr": 0.1}, [DEC]),
    ({"optimizer": "adafactor", "learning_rate": 0.1, "weight_decay_rate": 0.1, "weight_decay_mask": ["bias"]},
     {"lr": 0.1}, [{**DEC, "params": ["bias"]}]),
    ({"optimizer": "adafactor", "learning_rate": 0.1, "weight_decay_rate": 0.0}, {"lr": 0.1}, []),   # skipped by optax
    ({"optimizer": "adafactor", "learning_rate": 0.1, "min_dim_size_to_factor": 1, "factored": False}, {"lr": 0.1}, []),
    ({"optimizer": "adafactor", "learning_rate": 0.1, "weight_decay_rate": {
        "schedule": "cosine_decay_schedule", "init_value": 0.2, "decay_steps": 8}},
     {"lr": 0.1}, [{**DEC, "coefficient": 0.2, "schedule": {"kind": "cosine", "total": 8, "floor": 0.0}}]),
])
def test_describe_adafactor(run, opt, decay):
    got = describe(run, dtype="float64")
    assert got["optimizer"] == {**BASE, **opt}
    assert got["decay"] == decay


def test_a_penalty_is_a_loss_term_beside_adafactor():
    got = describe({"optimizer": "adafactor", "learning_rate": 0.1, "penalty": {"l2": 0.05}})
    assert got["decay"] == [{"norm": "l2", "coupling": "gradient", "coefficient": 0.1, "scale": None,
                             "params": ["weight"], "l1_at_zero": None}]


# ---------------------------------------------------------------- the round trip, with optax's refusals
DECAYS = {"none": [], "decoupled_none": [{"coupling": "decoupled", "coefficient": 0.05, "scale": "none"}],
          "decoupled_none_weight": [{"coupling": "decoupled", "coefficient": 0.05, "scale": "none",
                                     "params": ["weight"]}],
          "decoupled_none_step": [{"coupling": "decoupled", "coefficient": 0.05, "scale": "none",
                                   "schedule": {"kind": "step", "every": 4, "factor": 0.5}}],
          "penalty": [{"coupling": "gradient", "coefficient": 0.1, "via_loss": True}],
          "l1_penalty": [{"norm": "l1", "coupling": "gradient", "coefficient": 0.01, "l1_at_zero": 1.0,
                          "via_loss": True}]}
EXPRESSED = {"defaults": {}, "no_scale": {"parameter_scale": None}, "no_clip": {"clip_threshold": None},
             "momentum": {"momentum": 0.9}, "decay_rate": {"decay_rate": 0.7, "eps": 1e-8},
             "exact_powers": {"decay_rate_dtype": None}}   # inherent(): optax's powers are float32
REFUSED = {  # semantics -> the words of optax's reason (nearest setting)
    "relative": ({"relative_step": True}, [], "nearest: relative_step = false"),
    "before": ({"decay_placement": "before"}, DECAYS["decoupled_none"], 'nearest: decay_placement = "after"'),
    "before_no_decay": ({"decay_placement": "before"}, [], "the same where no rule is decoupled"),
    "scale_2e-3": ({"parameter_scale": 2e-3}, [], "nearest: parameter_scale = 0.001"),
    "decoupled_lr": ({}, [{"coupling": "decoupled", "coefficient": 0.1, "scale": "lr"}], 'nearest: scale = "none"'),
    "decoupled_schedule": ({}, [{"coupling": "decoupled", "coefficient": 0.1, "scale": "schedule"}],
                           'nearest: scale = "none"'),
    "coupled": ({}, [{"coupling": "gradient", "coefficient": 0.1}], "as a loss `penalty`"),
    "two_rules": ({}, [{"coupling": "decoupled", "coefficient": 0.1, "scale": "none", "params": ["weight"]},
                       {"coupling": "decoupled", "coefficient": 0.2, "scale": "none", "params": ["bias"]}],
                  "nearest: a single decoupled rule"),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_over_adafactor_semantics(dtype):
    task = F64 if dtype == "float64" else F32
    n = 0
    for opt in EXPRESSED.values():
        for decay in DECAYS.values():
            sem = backend.inherent(Semantics.model_validate({"optimizer": {**BASE, **opt}, "decay": decay}), task)
            run = backend.realize(sem, task)
            assert run["optimizer"] == "adafactor"
            assert backend.describe(backend.parse(run), task).neutral() == sem.neutral(), run
            n += 1
    assert n == 36
    for name, (opt, decay, words) in REFUSED.items():
        sem = backend.inherent(Semantics.model_validate({"optimizer": {**BASE, **opt}, "decay": decay}), task)
        with pytest.raises(Inexpressible, match=words.replace("(", r"\(")):
            backend.realize(sem, task)


def test_realize_writes_the_alias_with_a_float64_momentum_accumulator():
    sem = Semantics.model_validate({"optimizer": {**BASE, "momentum": 0.9, "clip_threshold": None},
                                    "decay": DECAYS["decoupled_none_weight"]})
    assert backend.realize(sem, F64) == {
        "optimizer": "adafactor", "learning_rate": 0.05, "decay_rate": 0.8, "eps": 1e-30, "clipping_threshold": False,
        "multiply_by_parameter_scale": True, "momentum": 0.9, "dtype_momentum": "float64", "weight_decay_rate": 0.05,
        "weight_decay_mask": ["weight"]}
    with pytest.raises(Inexpressible, match='nearest: decay_rate_dtype = "float32"'):   # without inherent()
        backend.realize(Semantics.model_validate({"optimizer": {**BASE, "decay_rate_dtype": None}}), F64)
    with pytest.raises(Inexpressible, match="nearest: no gradient clip"):
        backend.realize(Semantics.model_validate({"optimizer": BASE, "clip": {"kind": "value", "threshold": 1.0}}), F64)


# ---------------------------------------------------------------- knobs outside the neutral model, by name
STEP = 'schedule = { kind = "step", every = 2, factor = 0.5 }'


@pytest.mark.parametrize("run, task, key, words", [
    ({"optimizer": "adafactor", "decay_offset": 3}, "", "decay_offset", "must be 0"),
    ({"optimizer": "adafactor", "dtype_momentum": "float64"}, "", "dtype_momentum", "without momentum"),
    ({"optimizer": "adafactor", "momentum": 0.9, "dtype_momentum": "bfloat16"}, "", "dtype_momentum", "narrower"),
    ({"optimizer": "adafactor", "weight_decay_mask": ["weight"]}, "", "weight_decay_mask", "without weight_decay_rate"),
    ({"optimizer": "adafactor", "weight_decay_rate": -0.1}, "", "weight_decay_rate", "must be >= 0.0"),
    ({"optimizer": "adafactor", "weight_decay_rate": {"schedule": "piecewise_constant_schedule"}}, "",
     "weight_decay_rate.schedule", "is not modelled"),
    ({"optimizer": "adafactor", "weight_decay": 0.1}, "", "weight_decay", "not a keyword"),
    ({"optimizer": "adafactor"}, STEP, "learning_rate", "silently ignored"),
    ({"optimizer": "adafactor", "momentum": 0.9}, 'dtype = "float64"', "dtype_momentum", 'must be "float64"'),
    ({"chain": [{"transform": "scale_by_factored_rms"}]}, "", "chain[0].transform", 'optimizer = "adafactor"'),
    ({"chain": [{"transform": "scale_by_param_block_rms"}]}, "", "chain[0].transform", "multiply_by_parameter_scale"),
    ({"chain": [{"transform": "ema", "decay": 0.9}]}, "", "chain[0].transform", "Adafactor's momentum"),
    ({"chain": [{"transform": "clip_by_block_rms", "threshold": 1.0}]}, "", "chain[0].transform", "clipping_threshold"),
])
def test_adafactor_knobs_outside_the_model_name_the_key(bad_run, run, task, key, words):
    err = bad_run("optax", run, task)
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


def test_findings_name_the_unscaled_decay_and_the_missing_learning_rate():
    ids = {f["id"] for f in backend.findings(backend.parse({"optimizer": "adafactor", "weight_decay_rate": 0.1}), F64)}
    assert ids == {"adafactor-decay-rate-float32", "adafactor-no-learning-rate", "adafactor-weight-decay-unscaled"}


# ---------------------------------------------------------------- measured on the installed optax
FACTS = textwrap.dedent("""
    import json, numpy as np, jax, jax.numpy as jnp, optax
    from optax._src.factorized import _decay_rate_pow
    from wdparity.engine.adafactor import second_moment_decay
    out = {"x64": bool(jax.config.jax_enable_x64)}
    f = jax.jit(jax.vmap(_decay_rate_pow, in_axes=(0, None)))
    out["pow_differ"] = {}
    for dr in (0.8, 0.7):
        xla = np.asarray(f(jnp.arange(200, dtype=jnp.int32), dr))
        ref = np.array([second_moment_decay(dr, "float32", np.float64)(t) for t in range(200)])
        out["pow_dtype"] = str(xla.dtype)
        out["pow_differ"][str(dr)] = int(np.sum(xla.astype(np.float64) != ref))
    x64 = out["x64"]
    dt = jnp.float64 if x64 else jnp.float32
    rng = np.random.default_rng(0)
    p = {"weight": jnp.asarray(rng.normal(size=(12, 1)), dt), "bias": jnp.asarray([0.3], dt)}
    gs = [{"weight": jnp.asarray(rng.normal(size=(12, 1)), dt), "bias": jnp.asarray(rng.normal(size=1), dt)}
          for _ in range(8)]

    def run(tx):
        state, us = tx.init(p), []
        for g in gs:
            u, state = tx.update(g, state, p)
            us.append({k: np.asarray(v, np.float64) for k, v in u.items()})
        return us, state

    def diff(a, b):
        return max(float(np.max(np.abs(x[k] - y[k]))) for x, y in zip(a, b) for k in x)

    base, _ = run(optax.adafactor(0.1))
    out["factored_min_dim_1"] = diff(run(optax.adafactor(0.1, min_dim_size_to_factor=1))[0], base)
    out["unfactored"] = diff(run(optax.adafactor(0.1, factored=False))[0], base)
    out["factored_state_v_col_shape"] = list(run(optax.adafactor(0.1, min_dim_size_to_factor=1))[1][0].v_col["weight"].shape)
    # the alias is this chain, in this order (alias.py:303-326): decay after the momentum, unscaled
    mask = {"weight": True, "bias": False}
    chain = optax.chain(optax.scale_by_factored_rms(), optax.clip_by_block_rms(1.0),
                        optax.scale_by_learning_rate(0.1, flip_sign=False), optax.scale_by_param_block_rms(),
                        optax.ema(0.9, debias=False, accumulator_dtype=dt),
                        optax.add_decayed_weights(0.2, mask), optax.scale(-1.0))
    alias, st = run(optax.adafactor(0.1, momentum=0.9, dtype_momentum=dt, weight_decay_rate=0.2, weight_decay_mask=mask))
    out["alias_is_chain"] = diff(alias, run(chain)[0])
    _, st = run(optax.adafactor(0.1, momentum=0.9))
    out["default_momentum_dtype"] = str(st[4].ema["weight"].dtype)
    out["no_lr_scale_is_lr_1"] = diff(run(optax.adafactor())[0], run(optax.adafactor(1.0))[0])
    # b2 at the first step with decay_offset 1: 1 - 0^-0.8 = -inf
    u, _ = optax.adafactor(0.1, decay_offset=1).update(gs[0], optax.adafactor(0.1, decay_offset=1).init(p), p)
    out["decay_offset_1_first_step_finite"] = bool(np.all(np.isfinite(np.asarray(u["weight"]))))
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def facts():
    if not HAVE_JAX:
        pytest.skip("jax/optax not installed (pip install 'wdparity[jax]')")
    cache = {}

    def get(x64: bool) -> dict:
        if x64 not in cache:
            cache[x64] = run_probe(FACTS, env={"JAX_ENABLE_X64": "1" if x64 else "0"})
        return cache[x64]
    return get


@pytest.mark.parametrize("x64", [True, False])
def test_optax_decay_rate_powers_are_float32_and_numpys(facts, x64):
    """_decay_rate_pow computes (t + 1)^(-decay_rate) in float32 even under x64 (factorized.py:31-32); XLA's float32
    pow equals NumPy's (engine/adafactor.py second_moment_decay) bit for bit at t = 0..199, decay rates 0.8 and 0.7."""
    assert facts(x64)["pow_dtype"] == "float32"
    assert facts(x64)["pow_differ"] == {"0.8": 0, "0.7": 0}


@pytest.mark.parametrize("x64", [True, False])
def test_optax_a_dense_kernel_factored_is_unfactored(facts, x64):
    """A (d, 1) kernel factored (min_dim_size_to_factor = 1: v_col per element) updates as unfactored, bit for bit."""
    f = facts(x64)
    assert f["factored_min_dim_1"] == 0.0 and f["unfactored"] == 0.0 and f["factored_state_v_col_shape"] == [12]


@pytest.mark.parametrize("x64", [True, False])
def test_optax_adafactor_is_its_chain(facts, x64):
    """lr, then the parameter scale, the ema without debias, then weight_decay_rate*w unscaled, then the sign."""
    assert facts(x64)["alias_is_chain"] == 0.0
    assert facts(x64)["no_lr_scale_is_lr_1"] == 0.0


def test_optax_adafactor_momentum_is_float32_by_default(facts):
    assert facts(True)["default_momentum_dtype"] == "float32"


def test_optax_decay_offset_breaks_the_first_steps(facts):
    assert not facts(True)["decay_offset_1_first_step_finite"]


# ---------------------------------------------------------------- the float32-only case, and what float64 refuses
MOMENTUM = {"optimizer": "adafactor", "learning_rate": 0.1, "momentum": 0.9}


@needs_jax
@pytest.mark.slow
def test_adafactor_default_momentum_meets_the_reference_in_float32():
    cases = {"native-adafactor-momentum-default": ({**fidelity.BATTERY_TASK, "init": "normal_all"},
                                                   {"backend": "optax", **MOMENTUM})}
    report = fidelity.run_battery(cases, "float32")
    assert all(v["status"] == "ok" and v["holds"] for v in report.values()), report


@needs_jax
@pytest.mark.slow
def test_a_float32_momentum_accumulator_in_a_float64_run_leaves_the_model():
    """Why describe() refuses dtype_momentum float32 in float64 runs: trained anyway (the semantics of its float64
    twin), the accumulator's rounding moves the trajectory far past 1e-9."""
    task = Task.model_validate({**fidelity.BATTERY_TASK, "init": "normal_all", "dtype": "float64"})
    sem = backend.describe(backend.parse({**MOMENTUM, "dtype_momentum": "float64"}), task).neutral()
    job = {"task": task.model_dump(), "run": backend.parse(MOMENTUM).model_dump(), "semantics": sem, "dtype": "float64"}
    code = textwrap.dedent("""
        import json
        from wdparity.engine.data import make_data
        from wdparity.judge import fidelity
        from wdparity_backends.optax_backend import backend
        job = json.loads(JOB)
        data = make_data(job["task"])
        native = backend.train(job, data)
        print(json.dumps(fidelity.fidelity(job["semantics"], native, data, job["task"]["batch_size"], "float64")))
    """).replace("JOB", repr(json.dumps(job)))
    out = run_probe(code, env={"JAX_ENABLE_X64": "1"})
    assert not out["holds"] and out["max_rel_err"] > 1e-9, out   # measured: 2.3e-8


@needs_jax
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adafactor_battery_cases(dtype):
    """The native adafactor cases of batteries/optax.toml (also in test_battery) meet their own describe()."""
    cases = {k: v for k, v in fidelity.native_battery("optax")[0].items() if k.startswith("native-adafactor-")}
    assert len(cases) == 8
    report = fidelity.run_battery(cases, dtype)
    assert all(v["status"] == "ok" and v["holds"] for v in report.values()), report
    if dtype == "float64":
        assert max(v["max_rel_err"] for v in report.values()) <= 1e-9


NEIGHBOURS = [
    ("adafactor-weight-decay", "scale", "lr"),                 # optax's decay is not lr-scaled
    ("adafactor-defaults", "decay_rate_dtype", None),          # the float32 powers are measurable in float64
    ("adafactor-momentum-float64", "momentum", None),
    ("adafactor-no-parameter-scale", "parameter_scale", 1e-3),
    ("adafactor-defaults", "clip_threshold", None),
]
NEIGHBOUR_PROBE = textwrap.dedent("""
    import json
    from wdparity.engine.data import make_data
    from wdparity.judge import fidelity
    from wdparity.spec.models import Task
    from wdparity_backends.optax_backend import backend
    out = {}
    for case, field, value in json.loads(NEIGHBOURS):
        task_over, run = backend.battery_extras()[case]
        task = Task.model_validate({**fidelity.BATTERY_TASK, **task_over, "dtype": "float64"})
        sem = backend.describe(backend.parse(run), task).neutral()
        data = make_data(task.model_dump())
        job = {"task": task.model_dump(), "run": backend.parse(run).model_dump(), "semantics": sem, "dtype": "float64"}
        native = backend.train(job, data)
        wrong = json.loads(json.dumps(sem))
        if field == "scale":
            wrong["decay"][0]["scale"] = value
        else:
            wrong["optimizer"][field] = value
        own, other = (fidelity.fidelity(s, native, data, task.batch_size, "float64") for s in (sem, wrong))
        out[f"{case}:{field}"] = [own["holds"], other["holds"], other["max_rel_err"]]
    print(json.dumps(out))
""").replace("NEIGHBOURS", repr(json.dumps(NEIGHBOURS)))


@needs_jax
def test_the_adafactor_battery_tells_the_neighbouring_models_apart():
    """Each case meets its own describe() in float64 and fails the neighbouring model (the decay lr-scaled, exact
    powers, no momentum, another parameter scale, no clip)."""
    out = run_probe(NEIGHBOUR_PROBE, env={"JAX_ENABLE_X64": "1"})
    assert len(out) == 5 and all(own and not other for own, other, _ in out.values()), out
