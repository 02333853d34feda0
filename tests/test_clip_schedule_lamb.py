"""The reference's gradient clipping, decay-coefficient schedules and LAMB against steps derived by hand, and the
numpy backend's round trip of everything neutral (issue 17; helpers from test_adaptive.py)."""

from __future__ import annotations

import numpy as np
import pytest
from test_adaptive import SMALL, close, data_for, grad, replay, sem, trained

from wdparity.engine import reference
from wdparity.engine.data import make_data
from wdparity.judge import diagnose
from wdparity.spec.models import Semantics, Task


# ---------------------------------------------------------------- gradient clipping
def clipped(opt, clip, decay=(), steps=3, **task):
    t, data = data_for(epochs=steps, **task)
    s = Semantics.model_validate({"optimizer": opt, "decay": list(decay), "clip": clip}).neutral()
    out = reference.run(s, data, t.batch_size, "float64")
    return data, np.column_stack([out["weight"], out["bias"]])


def test_global_norm_clipping_by_hand_with_torchs_eps():
    """torch clip_grad_norm_: g * min(1, c/(||g|| + 1e-6)) over weight and bias together, before step()."""
    c, lr = 0.05, 0.1
    data, got = clipped({"name": "sgd", "lr": lr}, {"kind": "global_norm", "threshold": c, "eps": 1e-6})

    def direction(g, t):
        return g * min(1.0, c / (np.linalg.norm(g) + 1e-6))

    close(got, replay(data, 3, direction, lr))
    assert np.linalg.norm(grad(data, got[0])) > 10 * c   # the clip binds


def test_tensor_norm_and_value_clipping_by_hand():
    c, lr = 0.05, 0.1
    data, got = clipped({"name": "sgd", "lr": lr}, {"kind": "tensor_norm", "threshold": c})

    def per_tensor(g, t):
        w, b = g[:-1], g[-1:]
        return np.concatenate([w * min(1.0, c / np.linalg.norm(w)), b * min(1.0, c / np.abs(b[0]))])

    close(got, replay(data, 3, per_tensor, lr))
    data, got = clipped({"name": "sgd", "lr": lr}, {"kind": "value", "threshold": 0.01})
    close(got, replay(data, 3, lambda g, t: np.clip(g, -0.01, 0.01), lr))


def test_clipping_sees_a_loss_penalty_but_not_the_optimizers_weight_decay():
    """position loss_gradient: a loss penalty is clipped with the loss (it is part of the loss's gradient), the
    optimizer's coupled weight_decay is added after; after_coupled_decay clips g + lambda*w."""
    c, lr, lam = 0.05, 0.1, 2.0
    clip = {"kind": "global_norm", "threshold": c}
    rule = {"coefficient": lam}
    data, outside = clipped({"name": "sgd", "lr": lr}, clip, [rule])
    _, inside = clipped({"name": "sgd", "lr": lr}, {**clip, "position": "after_coupled_decay"}, [rule])
    _, penalty = clipped({"name": "sgd", "lr": lr}, clip, [{**rule, "via_loss": True}])

    def scale(g):
        return g * min(1.0, c / np.linalg.norm(g))

    theta = np.append(data["w0"], 0.0)
    close(outside[1], theta - lr * (scale(grad(data, theta)) + lam * theta))
    close(inside[1], theta - lr * scale(grad(data, theta) + lam * theta))
    close(penalty[1], inside[1])
    assert np.max(np.abs(outside[1] - inside[1])) > 1e-4


def test_clip_is_a_grid_per_config():
    task, data = data_for(epochs=3, batch_size=5)
    group = [Semantics.model_validate({"optimizer": {"name": "adam", "lr": lr}, "decay": [{"coefficient": cf}],
                                       "clip": {"kind": "global_norm", "threshold": 0.02}}).neutral()
             for lr in (0.01, 0.003) for cf in (0.1, 0.5)]
    for s, got in zip(group, reference.run(group, data, task.batch_size, "float64")):
        alone = reference.run(s, data, task.batch_size, "float64")
        assert all(np.array_equal(got[k], alone[k]) for k in alone)


def test_clipping_differences_are_edits_labelled_clipping():
    base = {"optimizer": {"name": "sgd", "lr": 0.1}, "decay": [{"coefficient": 0.5}]}
    a = Semantics.model_validate(base).neutral()
    b = Semantics.model_validate({**base, "clip": {"kind": "global_norm", "threshold": 0.1, "eps": 1e-6}}).neutral()
    c = Semantics.model_validate({**base, "decay": [{"coefficient": 0.5, "via_loss": True}],
                                  "clip": {"kind": "global_norm", "threshold": 0.1, "eps": 1e-6}}).neutral()
    for x, y in ((a, b), (b, c), (a, c)):
        edits = diagnose.semantic_edits(x, y)
        assert {lab for lab, _ in edits} == {"clipping"}
        moved = diagnose.apply(x, edits)
        assert moved.get("clip") == y.get("clip") and diagnose.canonical_decay(moved) == diagnose.canonical_decay(y)


def test_the_numpy_backend_round_trips_clipping_and_every_family():
    from wdparity_backends.numpy_backend import backend

    task = Task.model_validate(SMALL)
    for opt in ({"name": "nadam", "lr": 0.01, "momentum_decay": None}, {"name": "lion", "lr": 1e-3},
                {"name": "adam", "lr": 0.01, "amsgrad": "v_hat"}):
        s = Semantics.model_validate({"optimizer": opt, "decay": [{"coefficient": 0.1, "via_loss": True}],
                                      "clip": {"kind": "value", "threshold": 0.3}})
        run = backend.realize(s, task)
        assert backend.describe(backend.parse(run), task).neutral() == s.neutral()
    assert backend.realize(Semantics.model_validate({"optimizer": {"name": "nadam", "lr": 0.1, "momentum_decay": None}}),
                           task)["momentum_decay"] == "constant"


# ---------------------------------------------------------------- a schedule on the decay coefficient
@pytest.mark.parametrize("coupling", ["gradient", "decoupled"])
def test_a_decay_schedule_multiplies_the_coefficient_step_by_step(coupling):
    """optax add_decayed_weights(weight_decay=schedule): lambda_t = lambda * delta_t, whatever the lr does."""
    lr, lam = 0.05, 0.4
    own = {"kind": "step", "every": 2, "factor": 0.25}
    rule = {"coupling": coupling, "coefficient": lam, "schedule": own}
    data, got = trained({"name": "sgd", "lr": lr}, 5, [rule])
    theta = np.append(data["w0"], 0.0)
    for t in range(5):
        lam_t = lam * 0.25 ** (t // 2)
        theta = theta - lr * (grad(data, theta) + lam_t * theta)   # plain SGD: coupled == decoupled (scale lr)
        close(got[t + 1], theta)
    constant = trained({"name": "sgd", "lr": lr}, 5, [{"coupling": coupling, "coefficient": lam}])[1]
    assert np.max(np.abs(constant - got)) > 1e-6


def test_a_decay_schedule_difference_is_labelled_schedule():
    a = sem({"name": "adam", "lr": 0.01}, [{"coupling": "decoupled", "coefficient": 0.1}])
    b = sem({"name": "adam", "lr": 0.01}, [{"coupling": "decoupled", "coefficient": 0.1,
                                            "schedule": {"kind": "cosine", "total": 10}}])
    edits = diagnose.semantic_edits(a, b)
    assert [lab for lab, _ in edits] == ["schedule", "schedule"]   # one per tensor, in canonical form
    assert diagnose.canonical_decay(diagnose.apply(a, edits)) == diagnose.canonical_decay(b)
    back = diagnose.apply(b, diagnose.semantic_edits(b, a))
    assert diagnose.canonical_decay(back) == diagnose.canonical_decay(a)


# ---------------------------------------------------------------- LAMB
@pytest.mark.parametrize("placement", ["inside_trust_ratio", "before", "after"])
def test_lamb_trust_ratio_and_decay_placement_by_hand(placement):
    """Per tensor r = ||w||/||u||; optax puts lambda*w inside u, Keras decays w first and takes r from it."""
    b1, b2, eps, lr, lam = 0.9, 0.999, 1e-6, 0.01, 0.3
    opt = {"name": "lamb", "lr": lr, "betas": [b1, b2], "eps": eps, "decay_placement": placement}
    task, data = data_for(epochs=4, init="normal_all")
    out = reference.run(sem(opt, [{"coupling": "decoupled", "coefficient": lam}]), data, task.batch_size, "float64")
    got = np.column_stack([out["weight"], out["bias"]])
    theta = np.append(data["w0"], data["b0"])
    m, v = np.zeros(9), np.zeros(9)
    parts = (slice(0, 8), slice(8, 9))
    for t in range(1, 5):
        g = grad(data, theta)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        d = m / (1 - b1 ** t) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        new = theta.copy()
        for s in parts:
            w, u = theta[s], d[s]
            if placement == "inside_trust_ratio":
                u = u + lam * w
                new[s] = w - lr * np.linalg.norm(w) / np.linalg.norm(u) * u
            elif placement == "before":
                w2 = w - lr * lam * w
                new[s] = w2 - lr * np.linalg.norm(w2) / np.linalg.norm(u) * u
            else:
                new[s] = w - lr * np.linalg.norm(w) / np.linalg.norm(u) * u - lr * lam * w
        theta = new
        close(got[t], theta, rtol=1e-11)


def test_lamb_trust_ratio_is_one_where_a_norm_is_zero_and_a_scalar_moves_by_lr_times_its_size():
    """From zero weights the ratio is 1 (an Adam step); a one-element tensor's step is then lr*|b| exactly."""
    task, data = data_for(epochs=3, init="zeros")
    out = reference.run(sem({"name": "lamb", "lr": 0.01}), data, task.batch_size, "float64")
    adam = reference.run(sem({"name": "adam", "lr": 0.01, "eps": 1e-6}), data, task.batch_size, "float64")
    close(out["weight"][1], adam["weight"][1])
    b = out["bias"]
    assert abs(b[2] - b[1]) == pytest.approx(0.01 * abs(b[1]), rel=1e-12)


def test_lamb_refuses_a_decoupled_term_not_scaled_by_lr():
    with pytest.raises(Exception, match="LAMB"):
        Semantics.model_validate({"optimizer": {"name": "lamb", "lr": 0.01},
                                  "decay": [{"coupling": "decoupled", "coefficient": 0.1, "scale": "none"}]})


def test_a_grid_of_lamb_is_its_single_runs():
    task, data = data_for(epochs=3, batch_size=5, init="normal_all")
    group = [sem({"name": "lamb", "lr": lr, "decay_placement": "before"}, [{"coupling": "decoupled", "coefficient": c}])
             for lr in (0.01, 0.003) for c in (0.1, 0.5)]
    for dtype in ("float64", "float32"):
        for s, got in zip(group, reference.run(group, data, task.batch_size, dtype)):
            alone = reference.run(s, data, task.batch_size, dtype)
            assert all(np.array_equal(got[k], alone[k]) for k in alone)


def test_every_battery_clip_case_clips():
    """A clip case whose clip never binds would prove nothing about an adapter's clipping."""
    import copy

    from wdparity.judge import fidelity

    for name, (task, s) in fidelity.neutral_battery().items():
        if "-clip_" not in name:
            continue
        t = Task.model_validate(task)
        d = make_data(t.model_dump())
        with_clip = s.neutral()
        without = copy.deepcopy(with_clip)
        without.pop("clip")
        a, b = (reference.run(x, d, t.batch_size) for x in (with_clip, without))
        assert np.max(np.abs(a["weight"] - b["weight"])) > 1e-6, name


def test_the_numpy_backend_expresses_the_whole_neutral_battery():
    from wdparity.judge import fidelity

    expressed, reasons = fidelity.round_trip("numpy")
    assert not reasons and len(expressed) == len(fidelity.neutral_battery())


@pytest.mark.parametrize("placement", ["inside_trust_ratio", "before", "after"])
def test_lamb_follows_a_decay_schedule_wherever_its_decay_stands(placement):
    """lambda_t = lambda * delta_t inside the trust ratio too (optax.lamb(weight_decay=schedule))."""
    task, data = data_for(epochs=4, init="normal_all")
    own = {"kind": "step", "every": 1, "factor": 0.5}
    opt = {"name": "lamb", "lr": 0.01, "decay_placement": placement}
    scheduled = reference.run(sem(opt, [{"coupling": "decoupled", "coefficient": 0.3, "schedule": own}]), data,
                              task.batch_size, "float64")
    constant = reference.run(sem(opt, [{"coupling": "decoupled", "coefficient": 0.3}]), data, task.batch_size, "float64")
    assert np.array_equal(scheduled["weight"][1], constant["weight"][1])        # delta_0 = 1
    assert np.max(np.abs(scheduled["weight"][2:] - constant["weight"][2:])) > 1e-6
