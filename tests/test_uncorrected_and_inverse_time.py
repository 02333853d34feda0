"""Additions of the frameworks issue (18) to the neutral model, against steps derived by hand.

- Adam and Adamax without bias correction (MLX's `Adam`/`AdamW`, `bias_correction=False` by default, and its
  `Adamax`, which never corrects m): d = m/(sqrt(v) + eps), d = m/(u + eps).
- The inverse-time learning-rate schedule eta_t = 1/(1 + rate*t): Keras 2's legacy `decay=` argument, which is a
  learning-rate schedule, not weight decay.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from test_adaptive import close, data_for, grad, replay, sem, trained

from wdparity.engine import reference, schedules
from wdparity.judge import diagnose
from wdparity.spec.errors import InputError
from wdparity.spec.models import Semantics


def test_adam_without_bias_correction_by_hand_and_its_first_step_is_3p16_times_corrected():
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.003
    data, got = trained({"name": "adam", "lr": lr, "betas": [b1, b2], "eps": eps, "bias_correction": False}, 5)
    m, v = np.zeros(9), np.zeros(9)

    def direction(g, t, m=m, v=v):
        m[:] = b1 * m + (1 - b1) * g
        v[:] = b2 * v + (1 - b2) * g * g
        return m / (np.sqrt(v) + eps)

    close(got, replay(data, 5, direction, lr))
    _, corrected = trained({"name": "adam", "lr": lr, "betas": [b1, b2], "eps": eps}, 1)
    ratio = (got[1] - got[0]) / (corrected[1] - corrected[0])
    assert np.allclose(ratio, (1 - b1) / np.sqrt(1 - b2), rtol=1e-5)   # 3.1623 (eps aside): the "~3.16x torch's"


def test_adamax_without_bias_correction_by_hand():
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    data, got = trained({"name": "adamax", "lr": lr, "betas": [b1, b2], "eps": eps, "eps_placement": "outside",
                         "bias_correction": False}, 5)
    m, u = np.zeros(9), np.zeros(9)

    def direction(g, t, m=m, u=u):
        m[:] = b1 * m + (1 - b1) * g
        u[:] = np.maximum(b2 * u, np.abs(g))
        return m / (u + eps)

    close(got, replay(data, 5, direction, lr))


def test_without_bias_correction_the_placements_coincide_so_one_spelling_is_required():
    with pytest.raises(ValidationError, match="bias_correction"):
        sem({"name": "adam", "lr": 0.01, "eps_placement": "uncorrected", "bias_correction": False})
    with pytest.raises(ValidationError, match="bias_correction"):
        sem({"name": "adam", "lr": 0.01, "amsgrad": "v_hat", "bias_correction": False})


@pytest.mark.parametrize("opt", [
    {"name": "adam", "lr": 0.003, "bias_correction": False},
    {"name": "adamax", "lr": 0.01, "eps_placement": "outside", "bias_correction": False},
], ids=lambda o: o["name"])
def test_a_grid_without_bias_correction_is_its_single_runs(opt):
    task, data = data_for(epochs=3, batch_size=5)
    group = [sem({**opt, "lr": opt["lr"] * f}, [{"coefficient": c}]) for f in (1.0, 0.3) for c in (0.1, 0.5)]
    for dtype in ("float64", "float32"):
        for s, got in zip(group, reference.run(group, data, task.batch_size, dtype)):
            alone = reference.run(s, data, task.batch_size, dtype)
            assert all(np.array_equal(got[k], alone[k]) for k in alone)


def test_bias_correction_is_an_edit_labelled_bias_correction():
    sa, sb = sem({"name": "adam", "lr": 0.01}), sem({"name": "adam", "lr": 0.01, "bias_correction": False})
    edits = diagnose.semantic_edits(sa, sb)
    assert {lab for lab, _ in edits} == {"bias-correction"}
    assert diagnose.apply(sa, edits) == sb


# ---------------------------------------------------------------- inverse-time schedule
def test_inverse_time_multipliers_count_t_from_zero_at_the_first_update():
    got = schedules.multipliers({"kind": "inverse_time", "rate": 0.5}, 4)
    assert got.tolist() == [1.0, 1 / 1.5, 1 / 2.0, 1 / 2.5]


def test_sgd_under_inverse_time_by_hand():
    lr, rate = 0.05, 0.3
    data, got = trained({"name": "sgd", "lr": lr}, 6, schedule={"kind": "inverse_time", "rate": rate})
    theta = np.append(data["w0"], 0.0)
    for t in range(6):
        theta = theta - lr / (1 + rate * t) * grad(data, theta)
        close(got[t + 1], theta)


def test_a_schedule_a_backend_does_not_train_is_an_input_error_naming_the_choices(tmp_path):
    from wdparity.run.cases import load_case

    case = tmp_path / "c.toml"
    case.write_text('title = "t"\nclaim = "equivalent"\n[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.1\n'
                    'schedule = { kind = "inverse_time", rate = 0.1 }\n'
                    '[runs.b]\nbackend = "torch"\noptimizer = "SGD"\nlr = 0.1\n'
                    'schedule = { kind = "inverse_time", rate = 0.1 }\n')
    with pytest.raises(InputError) as err:
        load_case(str(case))
    assert err.value.key == "runs.b.schedule.kind" and "constant" in err.value.expected


def test_realize_refuses_a_schedule_the_target_does_not_train():
    from wdparity.run import registry
    from wdparity.run.backend import Inexpressible, refuse_schedule

    s = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1},
                                  "schedule": {"kind": "inverse_time", "rate": 0.1}})
    refuse_schedule(registry.get("numpy"), s)
    with pytest.raises(Inexpressible, match="inverse_time"):
        refuse_schedule(registry.get("torch"), s)


def test_translate_carries_a_run_level_schedule_into_the_table_or_refuses(tmp_path):
    from wdparity.run.backend import Inexpressible
    from wdparity.tools.translate import translate

    case = tmp_path / "c.toml"
    case.write_text('title = "t"\nclaim = "equivalent"\n[task]\nepochs = 1\n'
                    '[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.1\n'
                    'schedule = { kind = "inverse_time", rate = 0.1 }\n'
                    '[runs.b]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.1\n')
    out = translate(str(case), "a", "numpy")
    assert out.exact and out.table["schedule"] == {"kind": "inverse_time", "rate": 0.1}
    assert "schedule" not in translate(str(case), "b", "numpy").table
    with pytest.raises(Inexpressible):
        translate(str(case), "a", "torch")


# ---------------------------------------------------------------- Paddle's Adamax epsilon, fastai's LAMB cap
def test_adamax_epsilon_on_the_decayed_infinity_norm_by_hand():
    """Paddle: u = max(b2*u + eps, |g|) (paddle/phi/kernels/impl/adamax_kernel_impl.h)."""
    b1, b2, eps, lr = 0.9, 0.999, 1e-3, 0.01
    data, got = trained({"name": "adamax", "lr": lr, "betas": [b1, b2], "eps": eps, "eps_placement": "in_max_decayed"}, 5)
    m, u = np.zeros(9), np.zeros(9)

    def direction(g, t, m=m, u=u):
        m[:] = b1 * m + (1 - b1) * g
        u[:] = np.maximum(b2 * u + eps, np.abs(g))
        return m / (1 - b1 ** t) / u

    close(got, replay(data, 5, direction, lr))
    _, in_max = trained({"name": "adamax", "lr": lr, "betas": [b1, b2], "eps": eps, "eps_placement": "in_max"}, 5)
    assert np.max(np.abs(in_max - got)) > 1e-9


def test_a_capped_lamb_trust_ratio_by_hand():
    """fastai's lamb_step: q = min(||w||/||step||, 10), its rms ratio being the norm ratio."""
    b1, b2, eps, lr, cap = 0.9, 0.999, 1e-6, 0.01, 0.5   # ||w||/||d|| ~ 0.9 on the weight
    opt = {"name": "lamb", "lr": lr, "betas": [b1, b2], "eps": eps, "decay_placement": "after"}
    data, got = trained({**opt, "max_trust_ratio": cap}, 4)
    theta = np.append(data["w0"], 0.0)
    m, v = np.zeros(9), np.zeros(9)
    for t in range(1, 5):
        g = grad(data, theta)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        d = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        new = theta.copy()
        for part in (slice(0, 8), slice(8, 9)):
            wn, dn = np.linalg.norm(theta[part]), np.linalg.norm(d[part])
            r = 1.0 if wn == 0 or dn == 0 else min(wn / dn, cap)
            new[part] = theta[part] - lr * r * d[part]
        theta = new
        close(got[t], theta)
    _, uncapped = trained(opt, 4)
    assert np.max(np.abs(uncapped - got)) > 1e-6   # the cap binds on this task
