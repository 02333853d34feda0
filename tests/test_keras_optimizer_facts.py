"""Facts about the keras.optimizers classes the adapter describes (docs/adapters/keras.toml), each measured on the
installed release by one step or two of the optimizer itself, in float64 on JAX (a fresh interpreter); skipped
when Keras or JAX is absent. The float32-cast constants on TensorFlow are measured in tests/test_keras_backend.py.
"""

import importlib.util
import textwrap

import numpy as np
import pytest
from conftest import run_probe

from wdparity_backends.keras_vocab import CLIP, DEFAULTS, KERAS_EXTRAS, NOT_MODELLED

HAVE_KERAS_JAX = all(importlib.util.find_spec(m) is not None for m in ("keras", "jax"))
G = np.array([1e-3, -2e-3, 5e-4])          # small enough that epsilon matters
G2 = np.array([0.3, 0.1, -0.2])
W0 = np.array([1.0, -2.0, 3.0])

PROBE = textwrap.dedent("""
    import inspect, json, warnings
    import numpy as np
    import keras
    from keras import ops
    keras.config.set_floatx("float64")
    S, out = keras.optimizers, {}
    G, W0 = np.array([1e-3, -2e-3, 5e-4]), np.array([1.0, -2.0, 3.0])
    G2 = np.array([0.3, 0.1, -0.2])
    MODELLED = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion", "Lamb",
                "Adafactor")

    def run(opt, grads, w=None, lrs=None):   # from w = 0 the steps are read without cancellation
        v = keras.Variable(np.zeros(3) if w is None else np.asarray(w, "float64"), dtype="float64")
        opt.build([v])
        rows = []
        for i, g in enumerate(grads):
            if lrs:
                opt.learning_rate = lrs[i]
            opt.apply_gradients([(ops.convert_to_tensor(np.asarray(g, "float64")), v)])
            rows.append(np.asarray(ops.convert_to_numpy(v), np.float64).tolist())
        return rows

    def default(p):
        return None if p.default is inspect.Parameter.empty else p.default

    out["signatures"] = {n: {k: default(p) for k, p in inspect.signature(getattr(S, n)).parameters.items()}
                         for n in MODELLED}
    out["rmsprop"] = run(S.RMSprop(0.1), [G])
    out["rmsprop_centered"] = run(S.RMSprop(0.1, centered=True), [G])
    out["rmsprop_momentum"] = run(S.RMSprop(0.1, momentum=0.5), [G, G], lrs=[0.1, 0.02])
    out["adagrad"] = run(S.Adagrad(0.1), [G])
    out["adadelta"] = run(S.Adadelta(), [G])
    out["adamax"] = run(S.Adamax(0.1, epsilon=0.1), [100 * G, G])
    nadam = S.Nadam(0.1)
    out["nadam"] = run(nadam, [G, G, G])
    out["nadam_u_product"] = [str(nadam._u_product.dtype), float(ops.convert_to_numpy(nadam._u_product))]
    out["lion"] = run(S.Lion(0.1), [np.array([1.0, -1.0, 0.0]), np.array([-0.1, 0.1, 0.0])])
    out["weight_decay"] = {n: run(getattr(S, n)(0.1, weight_decay=0.5), [np.zeros(3)], w=W0)[0] for n in MODELLED}
    out["decay"], out["lr"] = {}, {}
    for n in MODELLED:
        with warnings.catch_warnings(record=True) as seen:   # what the constructor warns
            warnings.simplefilter("always")
            opt = getattr(S, n)(0.01, decay=0.5)
        out["decay"][n] = [[str(w.message) for w in seen], run(opt, [G, -G]) == run(getattr(S, n)(0.01), [G, -G])]
        try:
            getattr(S, n)(lr=0.1)
            out["lr"][n] = "accepted"
        except ValueError as exc:
            out["lr"][n] = "ValueError: " + str(exc)
    for key, make in (("schedule_decay", lambda: S.Nadam(schedule_decay=0.004)), ("lion_b1", lambda: S.Lion(beta_1=0.0))):
        try:
            make()
            out[key] = "accepted"
        except ValueError as exc:
            out[key] = "ValueError: " + str(exc)
    # Lamb: two steps from W0 (a small and a large gradient), with weight_decay, and from w = 0
    out["lamb"] = run(S.Lamb(0.1), [G, G2], w=W0)
    out["lamb_wd"] = run(S.Lamb(0.1, weight_decay=0.5), [G, G2], w=W0)
    out["lamb_zero"] = run(S.Lamb(0.1), [G, G2])
    # the classes refused by name: what one step does
    out["adafactor"] = [run(S.Adafactor(0.1), [G], w=s * W0)[0] for s in (1.0, 2.0)]
    out["ftrl"] = run(S.Ftrl(0.1), [G], w=W0)[0]
    out["muon"] = [run(S.Muon(0.1), [s * G.reshape(3, 1)], w=W0.reshape(3, 1))[0] for s in (1.0, 10.0)]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def facts():
    if not HAVE_KERAS_JAX:
        pytest.skip("keras or jax not installed (pip install 'wdparity[keras,jax]')")
    return run_probe(PROBE, env={"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"})


def step(rows, i=0):
    """The i-th step w_i - w_(i-1) of a trajectory from w_0 = 0 (rows after each step)."""
    before = np.zeros(3) if i == 0 else np.asarray(rows[i - 1])
    return np.asarray(rows[i]) - before


BASE = {"clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum", "ema_overwrite_frequency",
        "loss_scale_factor", "gradient_accumulation_steps", "name", "kwargs"}


def test_the_keyword_table_is_the_installed_signatures(facts):
    """DEFAULTS (learning_rate, weight_decay and each class's own keywords, with defaults) is each constructor's
    signature; the rest of it is BaseOptimizer's keywords: the clipping keywords (CLIP), the others refused by
    KERAS_EXTRAS."""
    for name, signature in facts["signatures"].items():
        assert set(signature) == set(DEFAULTS[name]) | BASE, name
        assert {k: signature[k] for k in DEFAULTS[name]} == DEFAULTS[name], name
    assert BASE - {"kwargs"} == (set(KERAS_EXTRAS) | set(CLIP)) - {"lr", "schedule_decay"}


def test_keras_rmsprop_adds_epsilon_inside_the_root(facts):
    rho, eps, lr = 0.9, 1e-7, 0.1
    inside = -lr * G / np.sqrt((1 - rho) * G**2 + eps)
    np.testing.assert_allclose(step(facts["rmsprop"]), inside, rtol=1e-14)
    assert np.max(np.abs(step(facts["rmsprop"]) / (-lr * G / (np.sqrt((1 - rho) * G**2) + eps)) - 1)) > 1e-3


def test_keras_rmsprop_centered_subtracts_the_squared_mean_inside_the_root(facts):
    rho, eps, lr = 0.9, 1e-7, 0.1
    v, a = (1 - rho) * G**2, (1 - rho) * G
    np.testing.assert_allclose(step(facts["rmsprop_centered"]), -lr * G / np.sqrt(v - a**2 + eps), rtol=1e-14)


def test_keras_rmsprop_momentum_is_the_velocity_form(facts):
    """buf = m*buf + lr_t*d, w -= buf: the learning rate of each step stays inside the buffer."""
    rho, eps, m = 0.9, 1e-7, 0.5
    d1 = G / np.sqrt((1 - rho) * G**2 + eps)
    d2 = G / np.sqrt((rho * (1 - rho) + (1 - rho)) * G**2 + eps)
    velocity, buffer = -(m * 0.1 * d1 + 0.02 * d2), -0.02 * (m * d1 + d2)
    np.testing.assert_allclose(step(facts["rmsprop_momentum"], 1), velocity, rtol=1e-13)
    assert np.max(np.abs(velocity / buffer - 1)) > 0.1


def test_keras_adagrad_starts_at_0_1_with_epsilon_inside_the_root(facts):
    np.testing.assert_allclose(step(facts["adagrad"]), -0.1 * G / np.sqrt(0.1 + G**2 + 1e-7), rtol=1e-14)


def test_keras_adadelta_first_step(facts):
    lr, rho, eps = 0.001, 0.95, 1e-7      # the defaults
    np.testing.assert_allclose(step(facts["adadelta"]), -lr * np.sqrt(eps) / np.sqrt((1 - rho) * G**2 + eps) * G,
                               rtol=1e-14)


def test_keras_adamax_adds_epsilon_outside_the_max(facts):
    b1, b2, eps, lr, g1, g2 = 0.9, 0.999, 0.1, 0.1, 100 * G, G
    m = (1 - b1) * g1 * b1 + (1 - b1) * g2
    outside = -lr * m / (1 - b1**2) / (np.maximum(b2 * np.abs(g1), np.abs(g2)) + eps)
    in_max = -lr * m / (1 - b1**2) / np.maximum(b2 * (np.abs(g1) + eps), np.abs(g2) + eps)
    np.testing.assert_allclose(step(facts["adamax"], 1), outside, rtol=1e-14)
    assert np.max(np.abs(outside / in_max - 1)) > 1e-4


def test_keras_nadam_momentum_schedule_is_0_96_to_the_t(facts):
    """mu_t = b1*(1 - 0.5*0.96^t), the product kept in a variable of the weights' dtype: NAdam with
    momentum_decay 1 (torch's 0.004 would be 0.96^(0.004 t))."""
    b1, b2, eps, lr = 0.9, 0.999, 1e-7, 0.1
    mu = [b1 * (1 - 0.5 * 0.96**t) for t in range(1, 5)]
    assert facts["nadam_u_product"] == ["float64", pytest.approx(mu[0] * mu[1] * mu[2], rel=1e-15)]
    m_hat = mu[1] * (1 - b1) * G / (1 - mu[0] * mu[1]) + (1 - mu[0]) * G / (1 - mu[0])
    np.testing.assert_allclose(step(facts["nadam"]), -lr * m_hat / (np.sqrt((1 - b2) * G**2 / (1 - b2)) + eps),
                               rtol=1e-14)


def test_keras_lion_steps_by_the_sign_and_updates_m_with_beta_2(facts):
    rows = facts["lion"]
    assert step(rows).tolist() == [-0.1, 0.1, 0.0]                # -lr*sign(g), sign(0) = 0
    # step 2: sign(b1*m + (1-b1)*g) with m = (1-b2)*g_1 = 0.01*g_1 (beta_2 = 0.99): 0.009 - 0.01 < 0 for
    # the first entry, where m = (1-b1)*g_1 would give 0.09 - 0.01 > 0
    assert step(rows, 1).tolist() == pytest.approx([0.1, -0.1, 0.0], rel=1e-15)


def test_keras_weight_decay_is_decoupled_and_lr_scaled_on_every_optimizer(facts):
    """With a zero gradient every optimizer's update is 0, and the step is weight_decay's alone: w*(1 - lr*wd)."""
    for name, w in facts["weight_decay"].items():
        np.testing.assert_allclose(w, W0 * (1 - 0.1 * 0.5), rtol=1e-15, err_msg=name)


def test_keras_3_ignores_decay_with_a_warning_on_every_optimizer(facts):
    for name, (messages, same) in facts["decay"].items():
        assert messages == ["Argument `decay` is no longer supported and will be ignored."] and same, name


def test_keras_3_rejects_the_keras_2_keywords(facts):
    for name, outcome in facts["lr"].items():
        assert outcome == "ValueError: Argument(s) not recognized: {'lr': 0.1}", name
    assert facts["schedule_decay"] == "ValueError: Argument(s) not recognized: {'schedule_decay': 0.004}"
    assert "lr" in KERAS_EXTRAS and "schedule_decay" in KERAS_EXTRAS


def test_keras_lion_rejects_beta_1_zero(facts):
    assert facts["lion_b1"].startswith("ValueError: Argument `beta_1` must be in the [0, 1] range")


def lamb(grads, w, lr=0.1, b1=0.9, b2=0.999, eps=1e-7, wd=0.0, placement="before", powers=None):
    """Lamb's steps by hand: m, v with 1 - beta; u = m_hat/(sqrt(v_hat) + eps) with 1 - B^t of `powers` (the betas by
    default); r = ||w||/||u|| (1 where either is 0); the decay w*wd*lr where `placement` puts it."""
    B1, B2 = powers or (b1, b2)
    w, m, v, rows = np.asarray(w, float), np.zeros(3), np.zeros(3), []
    for t, g in enumerate(grads, 1):
        m, v = m + (g - m) * (1 - b1), v + (g * g - v) * (1 - b2)
        u = (m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + eps)
        decayed = w - w * wd * lr
        if placement == "inside_trust_ratio":
            u = u + wd * w
        ref = decayed if placement == "before" else w
        wn, un = np.linalg.norm(ref), np.linalg.norm(u)
        r = wn / un if wn > 0 and un > 0 else 1.0
        w = (decayed if placement != "inside_trust_ratio" else w) - r * lr * u
        rows.append(w)
    return np.array(rows)


def test_keras_lamb_first_steps_by_hand(facts):
    """Adam's corrected direction (epsilon outside the root of v_hat) scaled per variable by ||w||/||u||: each
    step has length lr*||w||; from w = 0 the ratio is 1 and the first step is Adam's, -lr*m_hat/(sqrt(v_hat) + eps)."""
    np.testing.assert_allclose(facts["lamb"], lamb([G, G2], W0), rtol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(facts["lamb"][0]) - W0), 0.1 * np.linalg.norm(W0), rtol=1e-14)
    np.testing.assert_allclose(facts["lamb_zero"], lamb([G, G2], np.zeros(3)), rtol=1e-14)
    np.testing.assert_allclose(facts["lamb_zero"][0], -0.1 * G / (np.abs(G) + 1e-7), rtol=1e-14)
    # epsilon outside the root: sqrt(v_hat + eps) (inside) would make the first step 0.1*G/sqrt(G^2 + 1e-7), 18% shorter
    assert np.max(np.abs(np.asarray(facts["lamb_zero"][0]) / (-0.1 * G / np.sqrt(G**2 + 1e-7)))) > 1.15


def test_keras_lamb_decays_w_before_the_trust_ratio(facts):
    """weight_decay is BaseOptimizer's, applied before update_step, whose ratio takes ||w|| of the decayed w:
    decay_placement "before"; "after" (ratio from the undecayed w) and optax's "inside_trust_ratio" miss it."""
    got = np.asarray(facts["lamb_wd"])
    np.testing.assert_allclose(got, lamb([G, G2], W0, wd=0.5), rtol=1e-14)
    for other in ("after", "inside_trust_ratio"):
        assert np.max(np.abs(got / lamb([G, G2], W0, wd=0.5, placement=other) - 1)) > 1e-3, other


def test_the_refused_optimizers_do_what_their_reasons_say(facts):
    assert set(NOT_MODELLED) == {"Ftrl", "Muon"}
    # Adafactor (modelled, keras_adafactor.py): the step is relative to the weights (rms(w)-scaled step size)
    small, large = (np.asarray(w) - s * W0 for w, s in zip(facts["adafactor"], (1.0, 2.0)))
    np.testing.assert_allclose(large, 2 * small, rtol=1e-9)
    # Ftrl: w_1 = -(lr*g - (sqrt(n) - sqrt(a))*w_0)/sqrt(n), n = a + g^2, a = 0.1: a proximal solve
    n = 0.1 + G**2
    np.testing.assert_allclose(facts["ftrl"], -(0.1 * G - (np.sqrt(n) - np.sqrt(0.1)) * W0) / np.sqrt(n), rtol=1e-12)
    # Muon: a 2-D kernel's step is orthogonalized, the same for g and 10*g
    np.testing.assert_allclose(facts["muon"][0], facts["muon"][1], rtol=1e-6)
    assert np.max(np.abs(np.asarray(facts["muon"][0]).ravel() - W0)) > 1e-3
