"""Property tests (hypothesis) on the reference: identities that must hold for any lambda, lr, mask, norm."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wdparity.engine import reference
from wdparity.engine.data import make_data
from wdparity.judge.stability import sgd_bound
from wdparity.spec.models import Penalty, Semantics, Task

TASK = Task.model_validate({"num_inputs": 6, "n_train": 12, "n_test": 4, "batch_size": 3, "epochs": 3, "seed": 5})
DATA = make_data(TASK.model_dump())
masks = st.sampled_from([["weight"], ["bias"], ["weight", "bias"]])
lambdas = st.floats(0.0, 2.0, allow_nan=False)
norms = st.sampled_from(["l2", "l1"])
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def neutral(optimizer, decay=(), schedule=None):
    return Semantics.model_validate({"optimizer": optimizer, "decay": list(decay),
                                     "schedule": schedule or {"kind": "constant"}}).neutral()


def safe_lr(frac: float, decay=()) -> float:
    bound = sgd_bound(neutral({"name": "sgd", "lr": 1.0}, decay), DATA, TASK.batch_size)["bound"]
    return frac * bound


def run(sem):
    return reference.run(sem, DATA, TASK.batch_size, "float64")


def close(a, b, tol=1e-12):
    return all(np.max(np.abs(a[k] - b[k]), initial=0.0) <= tol * max(1.0, np.max(np.abs(b[k]), initial=0.0)) for k in a)


@FAST
@given(c=lambdas, mask=masks, frac=st.floats(0.05, 0.9))
def test_penalty_c_equals_coupled_2c(c, mask, frac):
    lr = safe_lr(frac, [{"coefficient": 2 * c, "params": mask}])
    pen = [r.neutral() for r in Penalty(l2=c, params=mask).rules(0.0)]
    sem_pen = neutral({"name": "sgd", "lr": lr})
    sem_pen["decay"] = pen
    assert close(run(sem_pen), run(neutral({"name": "sgd", "lr": lr}, [{"coefficient": 2 * c, "params": mask}])))


@FAST
@given(lam=lambdas, mask=masks, norm=norms, frac=st.floats(0.05, 0.9))
def test_plain_sgd_coupled_equals_decoupled_lr_scaled(lam, mask, norm, frac):
    rule = {"norm": norm, "coefficient": lam, "params": mask}
    lr = safe_lr(frac, [rule] if norm == "l2" else [])
    a = run(neutral({"name": "sgd", "lr": lr}, [rule]))
    b = run(neutral({"name": "sgd", "lr": lr}, [{**rule, "coupling": "decoupled", "scale": "lr"}]))
    assert close(a, b, 1e-10)


@FAST
@given(mask=masks, norm=norms, coupling=st.sampled_from(["gradient", "decoupled"]),
       opt=st.sampled_from([{"name": "sgd", "lr": 0.01, "momentum": 0.5}, {"name": "adam", "lr": 0.01}]))
def test_zero_lambda_equals_no_decay(mask, norm, coupling, opt):
    rule = {"norm": norm, "coupling": coupling, "coefficient": 0.0, "params": mask}
    assert close(run(neutral(opt, [rule])), run(neutral(opt)), 0.0)


@FAST
@given(lam=st.floats(1e-3, 5.0), norm=norms, coupling=st.sampled_from(["gradient", "decoupled"]),
       scale=st.sampled_from(["lr", "schedule", "none"]), lr=st.floats(1e-3, 0.1))
def test_decay_alone_never_increases_the_norm(lam, norm, coupling, scale, lr):
    """With a zero data gradient, one plain-SGD decay step never grows |w| (for s*lambda <= 1)."""
    rule = {"norm": norm, "coupling": coupling, "coefficient": lam}
    if coupling == "decoupled":
        rule["scale"] = scale
    sem = neutral({"name": "sgd", "lr": lr}, [rule])
    chain = reference.build(sem)
    w = {"weight": DATA["w0"].copy(), "bias": np.float64(0.3)}
    s = lr if coupling == "gradient" or scale == "lr" else 1.0
    if s * lam > 1.0:
        return
    zero = {"weight": np.zeros_like(w["weight"]), "bias": np.float64(0.0)}
    upd, _ = chain.update(zero, chain.init(w), w, 0)
    for k in w:
        new = w[k] + upd[k]
        if norm == "l2":
            assert np.linalg.norm(np.atleast_1d(new)) <= np.linalg.norm(np.atleast_1d(w[k])) + 1e-15
        else:  # l1 can overshoot zero by at most its own step
            assert np.all(np.abs(new) <= np.maximum(np.abs(w[k]), s * lam) + 1e-15)


@FAST
@given(rules=st.lists(st.fixed_dictionaries({"coefficient": lambdas, "params": masks, "norm": norms,
                                              "coupling": st.sampled_from(["gradient", "decoupled"])}),
                      min_size=2, max_size=4),
       opt=st.sampled_from([{"name": "sgd", "lr": 0.01, "momentum": 0.9}, {"name": "adam", "lr": 0.01}]))
def test_order_of_rules_and_of_tensor_names_changes_nothing(rules, opt):
    reordered = [{**r, "params": list(reversed(r["params"]))} for r in reversed(rules)]
    a, b = run(neutral(opt, rules)), run(neutral(opt, reordered))
    assert close(a, b, 1e-12)
