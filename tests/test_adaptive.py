"""The reference's adaptive families of issue 17 against closed forms and steps derived by hand.

Each `hand_*` below is the optimizer's published update written out per step on one flat vector (weight and
bias together), independently of engine/adaptive.py; the reference must reproduce it to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from wdparity.engine import reference
from wdparity.engine.data import make_data
from wdparity.judge import diagnose
from wdparity.spec.models import Semantics, Task

SMALL = {"num_inputs": 8, "n_train": 30, "n_test": 10, "batch_size": 30, "epochs": 1, "seed": 1}


def sem(optimizer: dict, decay=(), schedule=None) -> dict:
    return Semantics.model_validate({"optimizer": optimizer, "decay": list(decay),
                                     "schedule": schedule or {"kind": "constant"}}).neutral()


def data_for(**task):
    t = Task.model_validate({**SMALL, **task})
    return t, make_data(t.model_dump())


def grad(data, theta):
    """Full-batch gradient of mean(r^2)/2 at theta = (w..., b)."""
    w, b = theta[:-1], theta[-1]
    r = data["X_train"] @ w + b - data["y_train"]
    return np.append(data["X_train"].T @ r / len(r), r.mean())


def trained(opt: dict, steps: int, decay=(), schedule=None):
    task, data = data_for(epochs=steps)
    out = reference.run(sem(opt, decay, schedule), data, task.batch_size, "float64")
    return data, np.column_stack([out["weight"], out["bias"]])


def replay(data, steps: int, direction, lr: float):
    """theta_t by hand: theta <- theta - lr * direction(g, t) for t = 1..steps."""
    theta = np.append(data["w0"], 0.0)
    path = [theta]
    for t in range(1, steps + 1):
        theta = theta - lr * direction(grad(data, theta), t)
        path.append(theta)
    return np.array(path)


def close(got, want, rtol=1e-12):
    assert np.allclose(got, want, rtol=rtol, atol=0), np.max(np.abs(got - want) / np.abs(want).clip(1e-300))


# ---------------------------------------------------------------- Adagrad
def test_adagrad_first_step_is_lr_times_sign_and_then_sums_squares():
    """From s_0 = 0 the first step is -lr*g/(|g| + eps) = -lr*sign(g); later s is the running sum of g^2."""
    for in_sqrt, init in ((False, 0.0), (True, 0.1)):
        opt = {"name": "adagrad", "lr": 0.1, "initial_accumulator": init, "eps": 1e-10, "eps_in_sqrt": in_sqrt}
        data, got = trained(opt, 4)
        s = np.full(9, init)

        def direction(g, t, s=s):
            s += g * g
            return g / np.sqrt(s + 1e-10) if in_sqrt else g / (np.sqrt(s) + 1e-10)

        close(got, replay(data, 4, direction, 0.1))
        if init == 0.0:
            close(np.abs(got[1] - got[0]), np.full(9, 0.1), rtol=1e-8)


def test_adagrad_on_a_constant_gradient_has_the_closed_form_step_lr_over_sqrt_t():
    """Where g stays c, s_t = t*c^2, so the t-th step is lr/sqrt(t) * sign(c): Adagrad's 1/sqrt(t) decay. A loss
    that is linear in w is the decay-free case of a coupled L1 term: its gradient lambda*sign(w) is constant while
    w keeps its sign."""
    task, data = data_for(epochs=6, init="normal_all", true_w=0.0, true_b=0.0, noise=0.0)
    data = {**data, "X_train": np.zeros_like(data["X_train"]), "y_train": np.zeros_like(data["y_train"])}
    s = sem({"name": "adagrad", "lr": 1e-3, "eps": 1e-12},
            [{"norm": "l1", "coefficient": 0.5, "params": ["weight"], "l1_at_zero": 0.0}])
    out = reference.run(s, data, task.batch_size, "float64")
    steps = np.abs(np.diff(out["weight"], axis=0))
    want = 1e-3 / np.sqrt(np.arange(1, 7))[:, None] * np.ones_like(steps)
    close(steps, want, rtol=1e-8)


def test_adagrad_lr_decay_divides_the_step_by_one_plus_t_times_it():
    opt = {"name": "adagrad", "lr": 0.1, "initial_accumulator": 0.05, "eps": 1e-10, "lr_decay": 0.3}
    data, got = trained(opt, 4)
    s = np.full(9, 0.05)

    def direction(g, t, s=s):
        s += g * g
        return g / (np.sqrt(s) + 1e-10) / (1 + (t - 1) * 0.3)

    close(got, replay(data, 4, direction, 0.1))


# ---------------------------------------------------------------- Adadelta, Adamax
def test_adadelta_two_accumulators_by_hand():
    rho, eps = 0.9, 1e-6
    data, got = trained({"name": "adadelta", "lr": 1.0, "rho": rho, "eps": eps}, 5)
    v, x = np.zeros(9), np.zeros(9)

    def direction(g, t, v=v, x=x):
        v[:] = rho * v + (1 - rho) * g * g
        d = np.sqrt(x + eps) / np.sqrt(v + eps) * g
        x[:] = rho * x + (1 - rho) * d * d
        return d

    close(got, replay(data, 5, direction, 1.0))


@pytest.mark.parametrize("placement", ["in_max", "outside"])
def test_adamax_infinity_norm_by_hand(placement):
    b1, b2, eps, lr = 0.9, 0.999, 1e-3, 0.01
    data, got = trained({"name": "adamax", "lr": lr, "betas": [b1, b2], "eps": eps, "eps_placement": placement}, 5)
    m, u = np.zeros(9), np.zeros(9)

    def direction(g, t, m=m, u=u):
        m[:] = b1 * m + (1 - b1) * g
        if placement == "in_max":
            u[:] = np.maximum(b2 * u, np.abs(g) + eps)
            return m / (1 - b1 ** t) / u
        u[:] = np.maximum(b2 * u, np.abs(g))
        return m / (1 - b1 ** t) / (u + eps)

    close(got, replay(data, 5, direction, lr))


# ---------------------------------------------------------------- NAdam
@pytest.mark.parametrize("psi", [0.004, 1.0, None])
def test_nadam_momentum_schedules_by_hand(psi):
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    data, got = trained({"name": "nadam", "lr": lr, "betas": [b1, b2], "eps": eps, "momentum_decay": psi}, 5)
    m, v, prod = np.zeros(9), np.zeros(9), [1.0]

    def mu(t):
        return b1 if psi is None else b1 * (1 - 0.5 * 0.96 ** (t * psi))

    def direction(g, t, m=m, v=v):
        m[:] = b1 * m + (1 - b1) * g
        v[:] = b2 * v + (1 - b2) * g * g
        prod[0] *= mu(t)
        num = (1 - mu(t)) / (1 - prod[0]) * g + mu(t + 1) / (1 - prod[0] * mu(t + 1)) * m
        return num / (np.sqrt(v / (1 - b2 ** t)) + eps)

    close(got, replay(data, 5, direction, lr))


def test_nadam_constant_momentum_is_optax_nesterov_adam():
    """mu_t = b1: the schedule form reduces to b1*m/(1-b1^(t+1)) + (1-b1)*g/(1-b1^t) (optax.nadam's mu_hat)."""
    b1, b2, eps, lr = 0.9, 0.99, 1e-8, 0.01
    data, got = trained({"name": "nadam", "lr": lr, "betas": [b1, b2], "eps": eps, "momentum_decay": None}, 6)
    m, v = np.zeros(9), np.zeros(9)

    def direction(g, t, m=m, v=v):
        m[:] = b1 * m + (1 - b1) * g
        v[:] = b2 * v + (1 - b2) * g * g
        mu_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1 ** t)
        return mu_hat / (np.sqrt(v / (1 - b2 ** t)) + eps)

    close(got, replay(data, 6, direction, lr))


def test_the_two_nadam_schedules_differ_measurably():
    a = trained({"name": "nadam", "lr": 0.01, "momentum_decay": 0.004}, 8)[1]
    b = trained({"name": "nadam", "lr": 0.01, "momentum_decay": 1.0}, 8)[1]
    assert np.max(np.abs(a - b)) > 1e-4


# ---------------------------------------------------------------- RAdam
def test_radam_first_steps_are_bias_corrected_momentum_sgd():
    """rho_t <= 5 for t <= 5 with b2 = 0.999 (rho_5 = 4.996, rho_6 = 5.994): the update is lr * m_hat."""
    b1, b2, lr = 0.9, 0.999, 0.01
    rho = [1999 - 2 * t * b2 ** t / (1 - b2 ** t) for t in (5, 6)]
    assert rho[0] < 5 < rho[1]
    assert [reference.ad.radam_rectification(b2, t)[0] for t in (5, 6)] == pytest.approx(rho, rel=1e-12)
    data, got = trained({"name": "radam", "lr": lr, "betas": [b1, b2]}, 5)
    m = np.zeros(9)

    def direction(g, t, m=m):
        m[:] = b1 * m + (1 - b1) * g
        return m / (1 - b1 ** t)

    close(got, replay(data, 5, direction, lr))


@pytest.mark.parametrize("placement", ["uncorrected", "corrected"])
def test_radam_rectified_steps_by_hand(placement):
    b1, b2, eps, lr = 0.9, 0.99, 1e-3, 0.01
    opt = {"name": "radam", "lr": lr, "betas": [b1, b2], "eps": eps, "eps_placement": placement}
    data, got = trained(opt, 8)
    m, v = np.zeros(9), np.zeros(9)
    rho_inf = 2 / (1 - b2) - 1

    def direction(g, t, m=m, v=v):
        m[:] = b1 * m + (1 - b1) * g
        v[:] = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho_t <= 5:
            return m_hat
        r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        if placement == "corrected":
            return r * m_hat / (np.sqrt(v / (1 - b2 ** t)) + eps)
        return r * m_hat * math.sqrt(1 - b2 ** t) / (np.sqrt(v) + eps)

    close(got, replay(data, 8, direction, lr))


# ---------------------------------------------------------------- Lion, AMSGrad
def test_lion_moves_every_coordinate_by_exactly_lr():
    """d = sign(...): each coordinate moves by lr per step (decay-free), whatever the gradient's size."""
    lr = 1e-3
    data, got = trained({"name": "lion", "lr": lr, "betas": [0.9, 0.99]}, 6)
    close(np.abs(np.diff(got, axis=0)), np.full((6, 9), lr), rtol=1e-9)
    m = np.zeros(9)

    def direction(g, t, m=m):
        d = np.sign(0.9 * m + 0.1 * g)
        m[:] = 0.99 * m + 0.01 * g
        return d

    close(got, replay(data, 6, direction, lr))


def test_lion_decoupled_decay_shrinks_by_lr_times_lambda_beside_the_sign():
    lr, lam = 1e-3, 0.5
    data, got = trained({"name": "lion", "lr": lr}, 3, [{"coupling": "decoupled", "coefficient": lam}])
    m = np.zeros(9)
    theta = np.append(data["w0"], 0.0)
    for t in range(1, 4):
        g = grad(data, theta)
        theta = theta - lr * np.sign(0.9 * m + 0.1 * g) - lr * lam * theta
        m = 0.99 * m + 0.01 * g
        close(got[t], theta)


@pytest.mark.parametrize("variant,placement", [("v", "corrected"), ("v", "uncorrected"), ("v_hat", "corrected")])
def test_amsgrad_variants_by_hand(variant, placement):
    b1, b2, eps, lr = 0.9, 0.99, 1e-3, 0.05
    opt = {"name": "adam", "lr": lr, "betas": [b1, b2], "eps": eps, "eps_placement": placement, "amsgrad": variant}
    data, got = trained(opt, 8)
    m, v, vmax = np.zeros(9), np.zeros(9), np.zeros(9)

    def direction(g, t, m=m, v=v, vmax=vmax):
        m[:] = b1 * m + (1 - b1) * g
        v[:] = b2 * v + (1 - b2) * g * g
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        if variant == "v_hat":
            vmax[:] = np.maximum(vmax, v / bc2)
            return m / bc1 / (np.sqrt(vmax) + eps)
        vmax[:] = np.maximum(vmax, v)
        if placement == "corrected":
            return m / bc1 / (np.sqrt(vmax / bc2) + eps)
        return math.sqrt(bc2) / bc1 * m / (np.sqrt(vmax) + eps)

    close(got, replay(data, 8, direction, lr))
    plain = trained({**opt, "amsgrad": None}, 8)[1]
    assert np.max(np.abs(plain - got)) > 1e-6   # the max binds on this task


def test_amsgrad_v_hat_needs_the_corrected_placement():
    with pytest.raises(Exception, match="v_hat"):
        Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.1, "amsgrad": "v_hat",
                                                "eps_placement": "uncorrected"}})


# ---------------------------------------------------------------- RMSprop's new fields
def test_rmsprop_velocity_form_equals_buffer_form_under_a_constant_lr_only():
    base = {"name": "rmsprop", "lr": 0.01, "rho": 0.9, "eps": 1e-6, "momentum": 0.9}
    buffer = trained(base, 6)[1]
    velocity = trained({**base, "momentum_form": "velocity"}, 6)[1]
    close(velocity, buffer, rtol=1e-13)
    step = {"kind": "step", "every": 2, "factor": 0.5}
    assert np.max(np.abs(trained(base, 6, schedule=step)[1] - trained({**base, "momentum_form": "velocity"}, 6,
                                                                       schedule=step)[1])) > 1e-5


def test_rmsprop_bias_correction_and_initial_scale_first_step():
    """bias_correction: v_hat_1 = g^2, so step 1 is -lr*g/sqrt(g^2 + eps); initial_scale s: v_1 = rho*s + (1-rho)g^2."""
    lr, rho, eps = 0.01, 0.9, 1e-8
    data, got = trained({"name": "rmsprop", "lr": lr, "rho": rho, "eps": eps, "eps_in_sqrt": True,
                         "bias_correction": True}, 1)
    g = grad(data, got[0])
    close(got[1], got[0] - lr * g / np.sqrt(g * g + eps))
    data, got = trained({"name": "rmsprop", "lr": lr, "rho": rho, "eps": eps, "eps_in_sqrt": True,
                         "initial_scale": 0.1}, 1)
    close(got[1], got[0] - lr * g / np.sqrt(rho * 0.1 + (1 - rho) * g * g + eps))


# ---------------------------------------------------------------- grids and diagnosis
@pytest.mark.parametrize("opt", [
    {"name": "adagrad", "lr": 0.1, "initial_accumulator": 0.1, "eps": 1e-7, "eps_in_sqrt": True},
    {"name": "adadelta", "lr": 1.0}, {"name": "adamax", "lr": 0.01}, {"name": "nadam", "lr": 0.01},
    {"name": "radam", "lr": 0.01, "betas": [0.9, 0.99]}, {"name": "lion", "lr": 0.001},
    {"name": "adam", "lr": 0.01, "amsgrad": "v_hat"},
    {"name": "rmsprop", "lr": 0.01, "rho": 0.9, "momentum": 0.5, "momentum_form": "velocity"},
], ids=lambda o: o["name"] + ("_" + str(o.get("amsgrad") or o.get("momentum_form") or "")))
def test_a_grid_of_each_new_family_is_its_single_runs(opt):
    task, data = data_for(epochs=3, batch_size=5)
    group = [sem({**opt, "lr": opt["lr"] * f}, [{"coefficient": c}]) for f in (1.0, 0.3) for c in (0.1, 0.5)]
    for dtype in ("float64", "float32"):
        for s, got in zip(group, reference.run(group, data, task.batch_size, dtype)):
            alone = reference.run(s, data, task.batch_size, dtype)
            assert all(np.array_equal(got[k], alone[k]) for k in alone)


@pytest.mark.parametrize("a,b,label", [
    ({"name": "rmsprop", "lr": 0.01, "rho": 0.99}, {"name": "rmsprop", "lr": 0.01, "rho": 0.9}, "second-moment"),
    ({"name": "adam", "lr": 0.01}, {"name": "adam", "lr": 0.01, "amsgrad": "v"}, "second-moment"),
    ({"name": "adam", "lr": 0.01}, {"name": "adam", "lr": 0.01, "betas": [0.9, 0.99]}, "second-moment"),
    ({"name": "rmsprop", "lr": 0.01}, {"name": "rmsprop", "lr": 0.01, "bias_correction": True}, "bias-correction"),
    ({"name": "radam", "lr": 0.01}, {"name": "radam", "lr": 0.01, "threshold": 8.0}, "bias-correction"),
    ({"name": "nadam", "lr": 0.01}, {"name": "nadam", "lr": 0.01, "momentum_decay": 1.0}, "momentum"),
    ({"name": "adagrad", "lr": 0.1}, {"name": "adagrad", "lr": 0.1, "eps_in_sqrt": True}, "epsilon"),
    ({"name": "adagrad", "lr": 0.1}, {"name": "adagrad", "lr": 0.1, "lr_decay": 0.1}, "schedule"),
    ({"name": "lion", "lr": 0.01}, {"name": "lion", "lr": 0.01, "betas": [0.95, 0.98]}, "momentum"),
])
def test_each_optimizer_field_is_an_edit_with_its_cause_label(a, b, label):
    sa, sb = sem(a), sem(b)
    edits = diagnose.semantic_edits(sa, sb)
    assert {lab for lab, _ in edits} == {label}
    assert diagnose.apply(sa, edits) == sb


def test_a_field_diagnose_has_no_label_for_is_still_an_edit():
    """Nothing silent: a field outside FIELD_CAUSES still differs, labelled "optimizer"."""
    sa = sem({"name": "adamax", "lr": 0.01})
    sb = sem({"name": "adamax", "lr": 0.02})
    assert [lab for lab, _ in diagnose.semantic_edits(sa, sb)] == ["optimizer"]
