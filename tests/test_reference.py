"""The float64 reference against closed forms and the identities the design relies on."""

from __future__ import annotations

import numpy as np
import pytest

from wdparity.engine import reference, transforms
from wdparity.engine.data import make_data
from wdparity.spec.models import Semantics, Task


def sem(optimizer: dict, decay=(), loss="half_mse", schedule=None) -> dict:
    s = Semantics.model_validate({"optimizer": optimizer, "decay": list(decay), "loss": loss,
                                  "schedule": schedule or {"kind": "constant"}})
    return s.neutral()


SMALL = {"num_inputs": 8, "n_train": 30, "n_test": 10, "batch_size": 30, "epochs": 1, "seed": 1}


def data_for(**task):
    t = Task.model_validate({**SMALL, **task})
    return t, make_data(t.model_dump())


def test_full_batch_gd_with_coupled_l2_converges_to_ridge():
    lam = 0.3
    task, data = data_for(epochs=4000)
    s = sem({"name": "sgd", "lr": 0.2}, [{"coefficient": lam, "params": ["weight"]}])
    out = reference.run(s, data, task.batch_size, "float64")
    X, y = data["X_train"], data["y_train"]
    Xt = np.hstack([X, np.ones((len(X), 1))])
    A = Xt.T @ Xt / len(X) + np.diag([lam] * X.shape[1] + [0.0])
    ridge = np.linalg.solve(A, Xt.T @ y / len(X))
    got = np.append(out["weight"][-1], out["bias"][-1])
    assert np.max(np.abs(got - ridge)) < 1e-10


def test_penalty_gradient_matches_finite_differences_of_the_penalized_loss():
    """penalty l2=c is coupled 2c: checked against d/dw [loss + c*|w|^2] by central differences."""
    c = 0.7
    task, data = data_for()
    from wdparity.spec.models import Penalty

    rules = [r.neutral() for r in Penalty(l2=c).rules(l1_at_zero=0.0)]
    assert rules[0]["coefficient"] == pytest.approx(2 * c)
    w, b = data["w0"], 0.1
    X, y = data["X_train"], data["y_train"]
    grads = reference.gradients({"weight": w, "bias": np.float64(b)}, X, y, 1.0)
    chain = transforms.add_gradient_decay(rules[0], np.float64)
    g, _ = chain.update(grads, None, {"weight": w, "bias": np.float64(b)}, 0)

    def total(wv):
        return 0.5 * np.mean((X @ wv + b - y) ** 2) + c * np.sum(wv ** 2)

    h = 1e-6
    numeric = np.array([(total(w + h * e) - total(w - h * e)) / (2 * h) for e in np.eye(len(w))])
    assert np.max(np.abs(g["weight"] - numeric)) < 1e-7


def test_plain_sgd_coupled_equals_decoupled_with_lr_scale():
    task, data = data_for(batch_size=5, epochs=20, schedule={"kind": "step", "every": 7, "factor": 0.5})
    opt = {"name": "sgd", "lr": 0.05}
    sch = task.schedule.model_dump()
    a = reference.run(sem(opt, [{"coefficient": 0.4}], schedule=sch), data, 5)
    b = reference.run(sem(opt, [{"coupling": "decoupled", "coefficient": 0.4, "scale": "lr"}], schedule=sch), data, 5)
    assert np.max(np.abs(a["weight"] - b["weight"])) < 1e-12
    assert np.max(np.abs(a["bias"] - b["bias"])) < 1e-12


@pytest.mark.parametrize("opt", [{"name": "sgd", "lr": 0.05, "momentum": 0.9}, {"name": "adam", "lr": 0.01}])
def test_zero_coefficient_equals_no_decay(opt):
    task, data = data_for(batch_size=5, epochs=5)
    a = reference.run(sem(opt, [{"coefficient": 0.0}, {"coupling": "decoupled", "coefficient": 0.0}]), data, 5)
    b = reference.run(sem(opt), data, 5)
    assert np.array_equal(a["weight"], b["weight"]) and np.array_equal(a["bias"], b["bias"])


def test_adam_coupled_and_decoupled_differ():
    task, data = data_for(batch_size=5, epochs=5)
    opt = {"name": "adam", "lr": 0.01}
    a = reference.run(sem(opt, [{"coefficient": 0.1}]), data, 5)
    b = reference.run(sem(opt, [{"coupling": "decoupled", "coefficient": 0.1}]), data, 5)
    assert np.max(np.abs(a["weight"] - b["weight"])) > 1e-3


def test_sgd_momentum_coupled_and_decoupled_differ():
    task, data = data_for(batch_size=5, epochs=5)
    opt = {"name": "sgd", "lr": 0.05, "momentum": 0.9}
    a = reference.run(sem(opt, [{"coefficient": 0.3}]), data, 5)
    b = reference.run(sem(opt, [{"coupling": "decoupled", "coefficient": 0.3}]), data, 5)
    assert np.max(np.abs(a["weight"] - b["weight"])) > 1e-3


def test_adam_first_step_is_lr_times_sign_of_gradient():
    """Closed form: with zero moments, step 1 of Adam is -lr*g/(|g|+eps') per coordinate."""
    task, data = data_for(batch_size=30, epochs=1)
    out = reference.run(sem({"name": "adam", "lr": 0.01, "eps": 1e-8}), data, 30)
    g = reference.gradients({"weight": data["w0"], "bias": np.float64(0.0)}, data["X_train"], data["y_train"], 1.0)
    expected = data["w0"] - 0.01 * g["weight"] / (np.abs(g["weight"]) + 1e-8)
    assert np.max(np.abs(out["weight"][1] - expected)) < 1e-14


def test_epsilon_placements_differ_by_the_bias_correction_of_eps():
    """uncorrected eps equals corrected eps' = eps/sqrt(1-b2^t); with a large eps they differ measurably."""
    task, data = data_for(batch_size=5, epochs=4)
    base = {"name": "adam", "lr": 0.01, "eps": 1e-2}
    a = reference.run(sem({**base, "eps_placement": "corrected"}), data, 5)
    b = reference.run(sem({**base, "eps_placement": "uncorrected"}), data, 5)
    assert np.max(np.abs(a["weight"] - b["weight"])) > 1e-4


def test_l1_at_zero_value_is_used_for_weights_exactly_at_zero():
    task, data = data_for(init="zeros", batch_size=30, epochs=1)
    opt = {"name": "sgd", "lr": 0.1}
    l1 = {"norm": "l1", "coefficient": 0.5, "params": ["weight"]}
    a = reference.run(sem(opt, [{**l1, "l1_at_zero": 0.0}]), data, 30)
    b = reference.run(sem(opt, [{**l1, "l1_at_zero": 1.0}]), data, 30)
    assert np.allclose(a["weight"][1] - b["weight"][1], 0.1 * 0.5)


def test_float32_run_stays_in_float32():
    task, data = data_for(batch_size=5, epochs=2)
    out = reference.run(sem({"name": "adam", "lr": 0.01}, [{"coefficient": 0.1}]), data, 5, "float32")
    assert out["weight"].dtype == np.float32 and out["bias"].dtype == np.float32


def test_explosion_stops_the_run_before_overflow():
    task, data = data_for(batch_size=1, epochs=50)
    out = reference.run(sem({"name": "sgd", "lr": 5.0}), data, 1)
    finite = np.isfinite(out["weight"]).all(axis=1)
    assert not finite.all()
    last = int(np.argmin(finite)) - 1
    assert np.abs(out["weight"][last]).max() < 1e300  # stopped while still representable


# ---------------------------------------------------------------- frozen tensors (torch: named in no param group)
FROZEN_CASES = [
    ({"name": "sgd", "lr": 0.05, "momentum": 0.9}, [{"coefficient": 0.3, "params": ["weight"]}], ["bias"]),
    ({"name": "adam", "lr": 0.01}, [{"coupling": "decoupled", "coefficient": 0.1, "params": ["weight"]}], ["bias"]),
    ({"name": "sgd", "lr": 0.05}, [{"coefficient": 0.5, "params": ["bias"]}], ["weight"]),
]


def frozen_sem(optimizer, decay, frozen, schedule=None) -> dict:
    return Semantics.model_validate({"optimizer": optimizer, "decay": decay, "frozen": frozen,
                                     "schedule": schedule or {"kind": "constant"}}).neutral()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer, decay, frozen", FROZEN_CASES)
def test_a_frozen_tensor_keeps_its_initial_value_bit_for_bit(optimizer, decay, frozen, dtype):
    """No gradient step and no decay: every row of a frozen tensor is its start, exactly; the other trains."""
    task, data = data_for(init="normal_all", batch_size=5, epochs=5)
    s = frozen_sem(optimizer, decay, frozen, {"kind": "step", "every": 4, "factor": 0.5})
    assert s["frozen"] == frozen
    out = reference.run(s, data, 5, dtype)
    (still,), moving = frozen, ("weight" if frozen == ["bias"] else "bias")
    start = out[still][0]
    assert start.dtype == np.dtype(dtype) and np.all(start != 0)
    assert np.array_equal(out[still], np.broadcast_to(start, out[still].shape))
    assert start.tobytes() == np.asarray(data["w0" if still == "weight" else "b0"], dtype).tobytes()
    assert not np.array_equal(out[moving][-1], out[moving][0])
    # the frozen tensor's gradient still depends on the other one, but nothing of it reaches an update:
    # the trained tensor's trajectory is what it is with the frozen one held at its start
    assert np.isfinite(out[moving]).all()


def test_frozen_is_the_last_transform_and_zeroes_exactly_its_updates():
    params = {"weight": np.array([1.0, -2.0]), "bias": np.float64(3.0)}
    t = transforms.freeze(["bias"])
    got, _ = t.update({"weight": np.array([0.5, np.nan]), "bias": np.float64(np.nan)}, t.init(params), params, 0)
    assert got["bias"] == 0.0 and got["weight"][0] == 0.5 and np.isnan(got["weight"][1])
    # no frozen tensor: the chain is the one it always was (no extra transform)
    plain = sem({"name": "sgd", "lr": 0.1}, [{"coefficient": 0.1}])
    assert "frozen" not in plain and len(reference.build(plain).init(params)) == 3


def test_frozen_bias_trains_the_weight_as_the_closed_form_says():
    """Full-batch GD with the bias held at b0 and coupled L2 on w converges to ridge on y - b0 (no intercept)."""
    lam = 0.3
    task, data = data_for(init="normal_all", epochs=4000)
    s = frozen_sem({"name": "sgd", "lr": 0.2}, [{"coefficient": lam, "params": ["weight"]}], ["bias"])
    out = reference.run(s, data, task.batch_size, "float64")
    X, y, b0 = data["X_train"], data["y_train"], float(data["b0"])
    ridge = np.linalg.solve(X.T @ X / len(X) + lam * np.eye(X.shape[1]), X.T @ (y - b0) / len(X))
    assert np.max(np.abs(out["weight"][-1] - ridge)) < 1e-10 and out["bias"][-1] == b0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batched_reference_freezes_bit_for_bit_as_the_serial_one(dtype):
    from wdparity.engine import batching as batched

    task, data = data_for(init="normal_all", batch_size=5, epochs=4)
    sems = [frozen_sem({"name": "sgd", "lr": lr, "momentum": 0.5}, [{"coefficient": c, "params": ["weight"]}], ["bias"])
            for lr, c in ((0.05, 0.1), (0.02, 0.4), (0.08, 0.0))]
    assert batched.groups(sems, [""] * 3) == [[0, 1, 2]]
    unfrozen = {k: v for k, v in sems[0].items() if k != "frozen"}
    assert batched.groups([sems[0], unfrozen], ["", ""]) == [[0], [1]]   # frozen is structure
    for s, got in zip(sems, reference.run(sems, data, 5, dtype)):
        want = reference.run(s, data, 5, dtype)
        assert np.array_equal(got["weight"], want["weight"]) and np.array_equal(got["bias"], want["bias"])
        assert np.all(got["bias"] == got["bias"][0])


def test_curvature_leaves_out_a_frozen_tensor():
    from wdparity.judge import stability

    task, data = data_for(batch_size=30)
    X = data["X_train"]
    lam = 0.7
    frozen_b = frozen_sem({"name": "sgd", "lr": 0.1}, [{"coefficient": lam, "params": ["weight"]}], ["bias"])
    want = np.linalg.eigvalsh(X.T @ X / len(X))[-1] + lam          # the weight block alone (no ones column)
    assert stability.curvature(frozen_b, data, 30) == pytest.approx(want, rel=1e-12)
    frozen_w = frozen_sem({"name": "sgd", "lr": 0.1}, [{"coefficient": lam, "params": ["bias"]}], ["weight"])
    assert stability.curvature(frozen_w, data, 30) == pytest.approx(1.0 + lam, rel=1e-12)   # d2/db2 = f = 1
    both = sem({"name": "sgd", "lr": 0.1}, [{"coefficient": lam, "params": ["weight"]}])
    assert stability.curvature(both, data, 30) > want                # the bias row/column adds curvature


def test_frozen_validation_and_neutral_shape():
    from pydantic import ValidationError

    from wdparity.spec.models import CAUSES, semantics_from_dict

    base = {"optimizer": {"name": "sgd", "lr": 0.1}}
    assert "frozen" not in Semantics.model_validate(base).neutral()
    assert Semantics.model_validate(base).frozen == []
    s = Semantics.model_validate({**base, "frozen": ["bias"], "decay": [{"coefficient": 0.1, "params": ["weight"]}]})
    assert s.neutral()["frozen"] == ["bias"]
    assert semantics_from_dict(s.neutral()) == s
    assert "frozen" in CAUSES
    for frozen, words in ((["kernel"], "names no tensor"), (["bias", "bias"], "twice"),
                          (["weight", "bias"], "at least one tensor to train")):
        with pytest.raises(ValidationError, match=words):
            Semantics.model_validate({**base, "frozen": frozen})
    with pytest.raises(ValidationError, match="frozen"):   # decay on a tensor that never moves does nothing
        Semantics.model_validate({**base, "frozen": ["bias"], "decay": [{"coefficient": 0.1}]})


def test_a_difference_in_frozen_is_an_edit_labelled_frozen():
    from wdparity.judge import diagnose

    a = frozen_sem({"name": "sgd", "lr": 0.1}, [{"coefficient": 0.1, "params": ["weight"]}], ["bias"])
    b = sem({"name": "sgd", "lr": 0.1}, [{"coefficient": 0.1, "params": ["weight"]}])
    edits = diagnose.semantic_edits(a, b)
    assert [label for label, _ in edits] == ["frozen"]
    assert diagnose.apply(a, edits) == b and diagnose.apply(b, diagnose.semantic_edits(b, a)) == a
    assert diagnose.semantic_edits(a, a) == []


# ---------------------------------------------------------------- RMSprop (added through the contributor path)
def _grad(data, w, b):
    r = data["X_train"] @ w + b - data["y_train"]
    return data["X_train"].T @ r / len(r), r.mean()


def test_rmsprop_first_step_is_the_hand_derived_one():
    """From v_0 = 0: v_1 = (1 - rho) g^2, so the first step is -lr * g / (sqrt(1 - rho)|g| + eps), about
    -lr*sign(g)/sqrt(1 - rho) per coordinate whatever |g| (RMSprop's signature first step)."""
    task, data = data_for(epochs=1)
    lr, rho, eps = 0.01, 0.9, 1e-8
    out = reference.run(sem({"name": "rmsprop", "lr": lr, "rho": rho, "eps": eps}), data, task.batch_size, "float64")
    g, gb = _grad(data, data["w0"], 0.0)
    want = data["w0"] - lr * g / (np.sqrt((1 - rho) * g * g) + eps)
    assert np.allclose(out["weight"][1], want, rtol=1e-14, atol=0)
    assert out["bias"][1] == pytest.approx(-lr * gb / (np.sqrt((1 - rho) * gb * gb) + eps), rel=1e-14)
    assert np.allclose(np.abs(out["weight"][1] - data["w0"]), lr / np.sqrt(1 - rho), rtol=1e-5)


def test_rmsprop_centered_momentum_and_eps_in_sqrt_two_steps_by_hand():
    task, data = data_for(epochs=2)
    lr, rho, eps, m = 0.02, 0.8, 1e-3, 0.5
    for centered, in_sqrt in ((True, False), (False, True)):
        opt = {"name": "rmsprop", "lr": lr, "rho": rho, "eps": eps, "centered": centered, "momentum": m,
               "eps_in_sqrt": in_sqrt}
        out = reference.run(sem(opt), data, task.batch_size, "float64")
        w, b = data["w0"].copy(), 0.0
        v, a, buf = np.zeros(w.size + 1), np.zeros(w.size + 1), np.zeros(w.size + 1)
        for step in (1, 2):
            g = np.append(*_grad(data, w, b))
            v = rho * v + (1 - rho) * g * g
            a = rho * a + (1 - rho) * g
            second = v - a * a if centered else v
            d = g / np.sqrt(second + eps) if in_sqrt else g / (np.sqrt(second) + eps)
            buf = m * buf + d
            w, b = w - lr * buf[:-1], b - lr * buf[-1]
            assert np.allclose(out["weight"][step], w, rtol=1e-12, atol=0), (centered, in_sqrt, step)
            assert out["bias"][step] == pytest.approx(b, rel=1e-12)


def test_rmsprop_grid_is_the_single_runs():
    """lr and coupled decay vary over a grid of RMSprop configs: the one chain gives each its single run's numbers."""
    task, data = data_for(epochs=3, batch_size=5)
    opt = {"name": "rmsprop", "lr": 0.01, "rho": 0.9, "eps": 1e-6, "momentum": 0.3}
    group = [sem({**opt, "lr": lr}, [{"coefficient": c}]) for lr in (0.01, 0.003) for c in (0.1, 0.5)]
    for dtype in ("float64", "float32"):
        for s, got in zip(group, reference.run(group, data, task.batch_size, dtype)):
            alone = reference.run(s, data, task.batch_size, dtype)
            assert all(np.array_equal(got[k], alone[k]) for k in alone)
