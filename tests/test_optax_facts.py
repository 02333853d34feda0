"""JAX/optax facts the adapter states (docs/adapters/optax.toml) that no battery or backend test measured
directly: each test measures one statement on the installed release and skips when the framework is absent.
"""


import importlib.util
import textwrap

import pytest
from conftest import run_probe

HAVE_KERAS_JAX = all(importlib.util.find_spec(m) is not None for m in ("keras", "jax"))
HAVE_JAX = all(importlib.util.find_spec(m) is not None for m in ("jax", "optax"))



# ---------------------------------------------------------------- JAX / optax (a fresh interpreter per x64 flag)
JAX_PROBE = textwrap.dedent("""
    import inspect, json
    import numpy as np
    import jax, jax.numpy as jnp, optax
    x64 = bool(jax.config.jax_enable_x64)
    out = {"x64": x64}
    p, g = {"w": jnp.asarray([1.0, -2.0, 3.0])}, {"w": jnp.asarray([0.5, 0.25, -1.0])}
    gw = np.asarray(g["w"], np.float64)

    def upd(tx, grads=g, params=p, steps=1):
        state = tx.init(params)
        for _ in range(steps):
            u, state = tx.update(grads, state, params)
        return np.asarray(u["w"], np.float64)

    out["sgd_nesterov_ignored"] = bool(np.array_equal(upd(optax.sgd(0.1, momentum=None, nesterov=True), steps=3),
                                                      upd(optax.sgd(0.1), steps=3)))
    out["trace_keywords"] = sorted(inspect.signature(optax.trace).parameters)
    b1, eps, er = 0.9, 1e-8, 1e-4
    out["eps_root_err"] = float(np.max(np.abs(upd(optax.scale_by_adam(eps_root=er)) - gw / (np.sqrt(gw ** 2 + er) + eps))))
    nadam = (b1 * (1 - b1) * gw / (1 - b1 ** 2) + gw) / (np.abs(gw) + eps)   # step 1: m_hat(2) and g_hat(1)
    out["nadam_err"] = float(np.max(np.abs(upd(optax.scale_by_adam(nesterov=True)) - nadam)))
    out["nadam_vs_adam"] = float(np.max(np.abs(upd(optax.scale_by_adam(nesterov=True)) - upd(optax.scale_by_adam()))))
    out["bias_correction_dtype"] = str((1 - 0.999 ** jnp.asarray(1, jnp.int32)).dtype)
    inf = {"w": jnp.asarray([1.0, jnp.inf, 3.0])}
    const, traced = upd(optax.add_decayed_weights(0.0), params=inf), upd(optax.add_decayed_weights(jnp.asarray(0.0)), params=inf)
    out["zero_constant_skipped"] = bool(np.array_equal(const, gw))
    out["zero_traced_nan"] = [bool(np.isnan(x)) for x in traced]
    out["zero_finite_same"] = bool(np.array_equal(upd(optax.add_decayed_weights(0.0)),
                                                  upd(optax.add_decayed_weights(jnp.asarray(0.0)))))
    f32 = {"w": jnp.asarray([1.0, 2.0], jnp.float32)}
    tx = optax.scale_by_schedule(lambda count: jnp.asarray(0.1, jnp.float64 if x64 else jnp.float32))
    out["schedule_step_dtype"] = str(tx.update(f32, tx.init(f32))[0]["w"].dtype)
    frozen = optax.transforms.freeze({"w": True, "b": False})
    pp = {"w": jnp.ones(2), "b": jnp.ones(2)}
    u, _ = frozen.update(pp, frozen.init(pp), pp)
    out["freeze"] = {k: np.asarray(v).tolist() for k, v in u.items()}
    out["float64_array_dtype"] = str(jnp.asarray(np.ones(2, np.float64)).dtype)
    try:
        jax.jit(lambda r: optax.exponential_decay(0.07, 3, r, staircase=True)(4))(jnp.asarray(0.3))
        out["traced_rate"] = "accepted"
    except Exception as exc:
        out["traced_rate"] = type(exc).__name__
    if x64:
        out["weak_dtype"] = [str((jnp.ones(2, jnp.float64) * 0.1).dtype), str((jnp.ones(2, jnp.float32) * 0.1).dtype)]
        py = optax.cosine_decay_schedule(0.07, 7, alpha=0.15)
        typed = optax.cosine_decay_schedule(jnp.asarray(0.07, jnp.float64), 7, alpha=0.15)
        vals = [(py(jnp.asarray(t, jnp.int32)), typed(jnp.asarray(t, jnp.int32))) for t in range(10)]
        out["cosine_dtypes"] = sorted({str(a.dtype) for pair in vals for a in pair})
        out["cosine_same"] = all(float(a) == float(b) for a, b in vals)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def jax_facts():
    if not HAVE_JAX:
        pytest.skip("jax/optax not installed (pip install 'wdparity[jax]')")
    cache = {}

    def get(x64: bool) -> dict:
        if x64 not in cache:
            cache[x64] = run_probe(JAX_PROBE, env={"JAX_ENABLE_X64": "1" if x64 else "0"})
            assert cache[x64]["x64"] is x64
        return cache[x64]
    return get


def test_optax_sgd_ignores_nesterov_without_momentum(jax_facts):
    assert jax_facts(True)["sgd_nesterov_ignored"]


def test_optax_trace_has_no_dampening(jax_facts):
    assert jax_facts(True)["trace_keywords"] == ["accumulator_dtype", "decay", "nesterov"]


def test_optax_eps_root_sits_inside_the_square_root(jax_facts):
    assert jax_facts(True)["eps_root_err"] < 1e-15


def test_optax_adam_nesterov_is_nadam(jax_facts):
    facts = jax_facts(True)
    assert facts["nadam_err"] < 1e-15 and facts["nadam_vs_adam"] > 1e-2


def test_optax_adam_bias_correction_is_in_the_default_float(jax_facts):
    assert (jax_facts(False)["bias_correction_dtype"], jax_facts(True)["bias_correction_dtype"]) == ("float32", "float64")


def test_optax_a_constant_zero_weight_decay_is_skipped(jax_facts):
    facts = jax_facts(True)
    assert facts["zero_constant_skipped"] and facts["zero_traced_nan"] == [False, True, False]   # 0 * inf
    assert facts["zero_finite_same"]


def test_optax_scale_by_schedule_casts_to_the_update_dtype(jax_facts):
    assert jax_facts(True)["schedule_step_dtype"] == "float32"    # a float64 step size on float32 updates


def test_optax_freeze_zeroes_the_masked_updates(jax_facts):
    assert jax_facts(True)["freeze"] == {"b": [1.0, 1.0], "w": [0.0, 0.0]}


def test_jax_without_x64_a_float64_array_is_float32(jax_facts):
    assert (jax_facts(False)["float64_array_dtype"], jax_facts(True)["float64_array_dtype"]) == ("float32", "float64")


def test_jax_a_python_float_takes_the_array_dtype(jax_facts):
    assert jax_facts(True)["weak_dtype"] == ["float64", "float32"]


def test_optax_exponential_decay_needs_a_concrete_decay_rate(jax_facts):
    assert jax_facts(True)["traced_rate"] == "TracerBoolConversionError"


def test_optax_cosine_decay_is_the_same_for_a_python_float_and_a_typed_init_value(jax_facts):
    facts = jax_facts(True)
    assert facts["cosine_dtypes"] == ["float64"] and facts["cosine_same"]
