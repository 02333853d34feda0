"""The optax adapter's LAMB (optax.lamb and scale_by_trust_ratio chains) and schedules on weight_decay itself
(add_decayed_weights and the aliases' weight_decay): describe, realize, refusals by key, measured optax facts, grids."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from conftest import probe_by_x64, run_probe
from optax_grid_probe import grid_probe
from test_optax_backend import ADAM, BOTH, LR, TASK, _RecordingOptax, adw, describe, needs_jax

from wdparity.engine import reference
from wdparity.engine.data import make_data
from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity_backends.optax_backend import backend, transformation

RATIO = {"transform": "scale_by_trust_ratio"}
ADAM6 = {"transform": "scale_by_adam", "eps": 1e-6}
COS = {"schedule": "cosine_decay_schedule", "init_value": 0.4, "decay_steps": 10, "alpha": 0.1}
EXP = {"schedule": "exponential_decay", "init_value": 0.3, "transition_steps": 4, "decay_rate": 0.5, "staircase": True}
F64 = TASK.model_copy(update={"dtype": "float64"})


def lamb(run: dict) -> tuple[dict, list]:
    sem = describe(run, dtype="float64")
    return sem["optimizer"], [(r["coupling"], r["coefficient"], r["params"], r.get("schedule")) for r in sem["decay"]]


# ---------------------------------------------------------------- describe
def test_lamb_alias_decays_inside_the_trust_ratio():
    opt, rules = lamb({"optimizer": "lamb", "learning_rate": 0.01, "weight_decay": 0.1, "mask": ["weight"]})
    assert opt == {"name": "lamb", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-6,
                   "decay_placement": "inside_trust_ratio", "max_trust_ratio": None}    # eps 1e-6: alias.py:1238
    assert rules == [("decoupled", 0.1, ["weight"], None)]
    assert lamb({"optimizer": "lamb", "learning_rate": 0.01})[1] == []   # weight_decay 0.0 by default (alias.py:1240)


@pytest.mark.parametrize("chain, placement, decay", [
    ([ADAM6, adw(0.2), RATIO, LR], "inside_trust_ratio", [("decoupled", 0.2, BOTH, None)]),
    ([ADAM6, adw(0.0), RATIO, LR], "inside_trust_ratio", []),          # a zero term marks the placement
    ([ADAM6, RATIO, adw(0.2, ["bias"]), LR], "after", [("decoupled", 0.2, ["bias"], None)]),
    ([ADAM6, RATIO, LR], "after", []),
    ([ADAM6, adw(0.0), RATIO, adw(0.2), LR], "after", [("decoupled", 0.2, BOTH, None)]),
    ([adw(0.3), ADAM6, adw(0.2), RATIO, LR], "inside_trust_ratio",
     [("gradient", 0.3, BOTH, None), ("decoupled", 0.2, BOTH, None)]),
    ([ADAM6, RATIO, adw(EXP), LR], "after", [("decoupled", 0.3, BOTH, {"kind": "step", "every": 4, "factor": 0.5})]),
])
def test_a_trust_ratio_chain_is_lamb_with_its_decay_placement(chain, placement, decay):
    opt, rules = lamb({"chain": chain})
    assert (opt["name"], opt["decay_placement"], rules) == ("lamb", placement, decay)


def test_a_schedule_on_weight_decay_is_the_rules_own_schedule():
    cos = {"kind": "cosine", "total": 10, "floor": 0.1}
    assert lamb({"optimizer": "adamw", "learning_rate": 0.01, "weight_decay": COS})[1] == [("decoupled", 0.4, BOTH, cos)]
    assert lamb({"chain": [adw(EXP), ADAM, LR]})[1] == [("gradient", 0.3, BOTH, {"kind": "step", "every": 4,
                                                                                    "factor": 0.5})]
    after_lr = describe({"chain": [ADAM, LR, adw({**COS, "init_value": -0.004})]}, dtype="float64")["decay"]
    assert [(r["scale"], r["coefficient"], r["schedule"]) for r in after_lr] == [("none", 0.004, cos)]
    # a constant_schedule is the constant; a schedule from 0 adds 0*w: no rule
    assert lamb({"chain": [adw({"schedule": "constant_schedule", "value": 0.2}), ADAM, LR]})[1] == [
        ("gradient", 0.2, BOTH, None)]
    assert lamb({"chain": [adw({**COS, "init_value": 0.0}), ADAM, LR]})[1] == []
    opt, rules = lamb({"optimizer": "adadelta", "learning_rate": 1.0, "weight_decay": EXP})
    assert rules == [("gradient", 0.3, BOTH, {"kind": "step", "every": 4, "factor": 0.5})]   # coupled, scheduled


@pytest.mark.parametrize("run, key, words", [
    ({"chain": [ADAM, {**RATIO, "min_norm": 0.1}, LR]}, "chain[1].min_norm", "bound a small tensor"),
    ({"chain": [ADAM, {**RATIO, "trust_coefficient": 0.5}, LR]}, "chain[1].trust_coefficient", "no learning rate"),
    ({"chain": [ADAM, {**RATIO, "eps": 1e-8}, LR]}, "chain[1].eps", "outside the neutral ratio"),
    ({"chain": [{"transform": "trace", "decay": 0.9}, RATIO, LR]}, "chain[1].transform", "must follow scale_by_adam"),
    ({"chain": [{"transform": "scale_by_rms"}, RATIO, LR]}, "chain[1].transform", "optax.lars"),
    ({"chain": [{"transform": "scale_by_adam", "nesterov": True}, RATIO, LR]}, "chain[1].transform", "nesterov"),
    ({"chain": [RATIO, ADAM, LR]}, "chain[0].transform", "must follow scale_by_adam"),
    ({"chain": [ADAM, RATIO, RATIO, LR]}, "chain[2].transform", "second trust ratio"),
    ({"chain": [ADAM, {"transform": "scale", "step_size": 2.0}, RATIO, LR]}, "chain[1].transform", "undoes"),
    ({"chain": [ADAM, RATIO, LR, adw(-0.01)]}, "chain[3].transform", "lr-scaled"),
    ({"chain": [ADAM, adw(0.1), RATIO, adw(0.2), LR]}, "chain[3].transform", "one decay placement"),
    ({"chain": [ADAM, adw(-0.1), RATIO, LR]}, "chain[1].weight_decay", "must be >= 0"),
    ({"chain": [ADAM, adw(EXP), RATIO, LR]}, "chain[1].weight_decay", "constant lambda"),
    ({"optimizer": "lamb", "learning_rate": 0.1, "eps_root": 1e-8}, "eps_root", "must be 0.0"),
    ({"optimizer": "lamb", "learning_rate": 0.1, "nesterov": True}, "nesterov", "not a keyword of optax.lamb"),
    ({"optimizer": "lamb", "learning_rate": 0.1, "weight_decay": COS}, "weight_decay", "constant lambda"),
    # schedules outside the neutral ones, by name and keyword
    ({"optimizer": "adamw", "learning_rate": 0.1, "weight_decay": {"schedule": "piecewise_constant_schedule",
                                                                   "init_value": 0.1}},
     "weight_decay.schedule", "nearest: exponential_decay"),
    ({"chain": [adw({"schedule": "linear_schedule", "init_value": 0.1}), ADAM, LR]}, "chain[0].weight_decay.schedule",
     "modelled optax schedules"),
    ({"chain": [adw({**COS, "exponent": 2.0}), ADAM, LR]}, "chain[0].weight_decay.exponent", "must be 1.0"),
    ({"chain": [adw({**COS, "alpha": 1.5}), ADAM, LR]}, "chain[0].weight_decay.alpha", "within [0, 1]"),
    ({"chain": [adw({**COS, "decay_steps": 0}), ADAM, LR]}, "chain[0].weight_decay.decay_steps", "optax raises"),
    ({"chain": [adw({**EXP, "staircase": False}), ADAM, LR]}, "chain[0].weight_decay.staircase", "continuous"),
    ({"chain": [adw({**EXP, "transition_begin": 2}), ADAM, LR]}, "chain[0].weight_decay.transition_begin", "held"),
    ({"chain": [adw({**EXP, "end_value": 0.1}), ADAM, LR]}, "chain[0].weight_decay.end_value", "clipped"),
    ({"chain": [adw({**EXP, "transition_steps": 0}), ADAM, LR]}, "chain[0].weight_decay.transition_steps", "constant"),
    ({"chain": [adw({**EXP, "decay_rate": 0.0}), ADAM, LR]}, "chain[0].weight_decay.decay_rate", "constant"),
    ({"chain": [adw({**EXP, "init_value": -0.1}), ADAM, LR]}, "chain[0].weight_decay", "must be >= 0"),
    ({"optimizer": "adamw", "learning_rate": 0.1, "weight_decay": {**COS, "init_value": -0.1}},
     "weight_decay.init_value", "must be >= 0"),
])
def test_lamb_and_schedule_knobs_outside_the_model_name_the_key(bad_run, run, key, words):
    err = bad_run("optax", run, "")
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


def test_lamb_findings_name_its_eps_and_where_it_decays():
    ids = [f["id"] for f in backend.findings(backend.parse({"optimizer": "lamb", "learning_rate": 0.01,
                                                             "weight_decay": 0.1}), TASK)]
    assert "lamb-default-eps" in ids and "lamb-decay-inside-trust-ratio" in ids
    ids = [f["id"] for f in backend.findings(backend.parse({"optimizer": "lamb", "learning_rate": 0.01, "eps": 1e-6}),
                                             TASK)]
    assert "lamb-default-eps" not in ids and "lamb-decay-inside-trust-ratio" not in ids


# ---------------------------------------------------------------- realize
def _realize(optimizer: dict, decay: list) -> dict:
    return backend.realize(Semantics.model_validate({"optimizer": optimizer, "decay": decay}), F64)


def test_realize_writes_lamb_as_the_alias_or_a_chain():
    opt = {"name": "lamb", "lr": 0.01}
    assert _realize(opt, [{"coupling": "decoupled", "coefficient": 0.1, "params": ["weight"]}]) == {
        "optimizer": "lamb", "learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-6, "weight_decay": 0.1,
        "mask": ["weight"]}
    after = _realize({**opt, "decay_placement": "after"}, [{"coupling": "decoupled", "coefficient": 0.1}])
    assert after == {"chain": [{"transform": "scale_by_adam", "b1": 0.9, "b2": 0.999, "eps": 1e-6}, RATIO,
                               adw(0.1), {"transform": "scale_by_learning_rate", "learning_rate": 0.01}]}
    for decay in ([], [{"coupling": "decoupled", "coefficient": 0.1}], [{"coupling": "gradient", "coefficient": 0.1}]):
        with pytest.raises(Inexpressible, match='nearest: decay_placement = "after"'):
            _realize({**opt, "decay_placement": "before"}, decay)
    with pytest.raises(Inexpressible, match="constant lambda"):
        _realize(opt, [{"coupling": "decoupled", "coefficient": 0.1, "schedule": {"kind": "cosine", "total": 5}}])


COS_N, STEP_N = {"kind": "cosine", "total": 10, "floor": 0.1}, {"kind": "step", "every": 4, "factor": 0.5}


@pytest.mark.parametrize("optimizer, decay, where, expected", [
    ({"name": "adam", "lr": 0.01}, {"coupling": "decoupled", "coefficient": 0.4, "schedule": COS_N}, None, COS),
    ({"name": "adadelta", "lr": 1.0}, {"coupling": "gradient", "coefficient": 0.3, "schedule": STEP_N}, None, EXP),
    ({"name": "lamb", "lr": 0.01, "decay_placement": "after"},
     {"coupling": "decoupled", "coefficient": 0.4, "schedule": COS_N}, 2, COS),
    ({"name": "sgd", "lr": 0.05}, {"coupling": "decoupled", "coefficient": 0.004, "scale": "none", "schedule": COS_N},
     -1, {**COS, "init_value": -0.004}),
    ({"name": "sgd", "lr": 0.05}, {"coupling": "decoupled", "coefficient": 0.01, "scale": "schedule",
                                   "schedule": STEP_N}, -2, {**EXP, "init_value": 0.01}),
])
def test_realize_writes_a_rules_schedule_in_optaxs_vocabulary(optimizer, decay, where, expected):
    task = Task.model_validate({**fidelity.BATTERY_TASK, "dtype": "float64",
                                "schedule": {"kind": "step", "every": 2, "factor": 0.5}})
    sem = Semantics.model_validate({"optimizer": optimizer, "decay": [decay], "schedule": task.schedule.model_dump()})
    run = backend.realize(sem, task)
    assert (run["weight_decay"] if where is None else run["chain"][where]["weight_decay"]) == expected, run
    assert backend.describe(backend.parse(run), task).neutral() == sem.neutral()


def test_every_battery_schedule_extra_moves_the_reference():
    """A decay schedule that never changed lambda_t within the run would prove nothing about its count."""
    extras = backend.battery_extras()
    names = [n for n, (_, run) in extras.items() if "'schedule': " in str(run)]
    assert len(names) == 6, names   # the five scheduled weight_decay extras and adafactor-exponential-wd-penalty
    for name in names:
        task, run = extras[name]
        t = Task.model_validate({**fidelity.BATTERY_TASK, **task, "dtype": "float64"})
        sem = backend.describe(backend.parse(run), t).neutral()
        flat = {**sem, "decay": [{k: v for k, v in r.items() if k != "schedule"} for r in sem["decay"]]}
        data = make_data(t.model_dump())
        a, b = (reference.run(s, data, t.batch_size) for s in (sem, flat))
        assert np.max(np.abs(a["weight"] - b["weight"])) > 1e-6, name


def test_every_schedule_keyword_reaches_optax():
    fake = _RecordingOptax()
    transformation(fake, backend.parse({"chain": [adw({**EXP, "transition_begin": 0, "end_value": None}), ADAM,
                                                  adw({**COS, "exponent": 1.0}), LR]}), lambda init_value: None,
                   np.float32)
    calls = {name: kwargs for name, _, kwargs in fake.calls}
    assert calls["exponential_decay"] == {**{k: v for k, v in EXP.items() if k != "schedule"}, "transition_begin": 0,
                                          "end_value": None}
    rate = calls["exponential_decay"]["decay_rate"]
    assert isinstance(rate, np.ndarray) and rate.dtype == np.float32     # typed, as the run's step schedule
    assert calls["cosine_decay_schedule"] == {**{k: v for k, v in COS.items() if k != "schedule"}, "exponent": 1.0}


# ---------------------------------------------------------------- measured on the installed optax (a fresh interpreter per x64 flag)
PROBE = textwrap.dedent("""
    import inspect, json
    import numpy as np
    import jax, jax.numpy as jnp, optax
    from wdparity.engine.schedules import multiplier
    from wdparity_backends.optax_schedules import MODELS
    x64 = bool(jax.config.jax_enable_x64)
    dt = jnp.float64 if x64 else jnp.float32
    out = {"x64": x64}
    out["schedules"] = {n: {k: (None if q.default is None else "<required>" if q.default is inspect.Parameter.empty
                                else q.default) for k, q in inspect.signature(getattr(optax, n)).parameters.items()}
                        for n in MODELS}
    p = {"weight": jnp.asarray([[1.0], [-2.0], [3.0]], dt), "bias": jnp.asarray([0.5], dt)}
    P = {k: np.asarray(v, np.float64) for k, v in p.items()}
    z = jax.tree.map(jnp.zeros_like, p)
    g = {"weight": jnp.asarray([[0.5], [0.25], [-1.0]], dt), "bias": jnp.asarray([0.0], dt)}

    def run(tx, grads, params, steps=1):
        state, us = tx.init(params), []
        for _ in range(steps):
            u, state = tx.update(grads, state, params)
            us.append({k: np.asarray(v, np.float64) for k, v in u.items()})
        return us

    # the trust ratio, per tensor: u*||w||/||u|| (the (3, 1) kernel's norm over all entries), 1 where a norm is 0
    u = run(optax.scale_by_trust_ratio(), g, p)[0]
    G = {k: np.asarray(v, np.float64) for k, v in g.items()}
    out["ratio_rel_err"] = float(np.max(np.abs(u["weight"] / (G["weight"] * np.linalg.norm(P["weight"])
                                                              / np.linalg.norm(G["weight"])) - 1)))
    out["zero_update"] = u["bias"].tolist()
    out["zero_params_identity"] = all(bool(np.array_equal(run(optax.scale_by_trust_ratio(), g, z)[0][k], G[k]))
                                      for k in g)
    out["ratio_dtype"] = str(optax.scale_by_trust_ratio().update(g, None, p)[0]["weight"].dtype)

    # optax.lamb: u = d + wd*w inside the ratio, then -lr*r*u; not the decay after the ratio
    lr, wd = 0.1, 0.3
    step = run(optax.lamb(lr, weight_decay=wd), g, p)[0]
    d = run(optax.scale_by_adam(eps=1e-6), g, p)[0]

    def scaled(x, w):
        nw, nx = np.linalg.norm(w), np.linalg.norm(x)
        return -lr * (1.0 if nw == 0 or nx == 0 else nw / nx) * x
    inside = {k: scaled(d[k] + wd * P[k], P[k]) for k in d}
    after = {k: scaled(d[k], P[k]) - lr * wd * P[k] for k in d}
    out["lamb_inside_err"] = max(float(np.max(np.abs(step[k] - inside[k]))) for k in d)
    out["lamb_after_gap"] = max(float(np.max(np.abs(step[k] - after[k]))) for k in d)
    gb = {"weight": g["weight"], "bias": jnp.asarray([2.0], dt)}     # m_hat, sqrt(v_hat) exact for g = 2 ...
    first = run(optax.lamb(lr), gb, z)[0]["bias"][0]                   # ... and the ratio 1 on a zero tensor
    out["lamb_zero_step1_rel_err"] = abs(first / (-lr * 2.0 / (2.0 + 1e-6)) - 1)

    # add_decayed_weights(schedule) counts its own steps from 0, masked or not, and in an alias
    zg = jax.tree.map(jnp.zeros_like, p)
    SCHED = {"cosine": (optax.cosine_decay_schedule(0.4, 5, alpha=0.1), {"kind": "cosine", "total": 5, "floor": 0.1}),
             "step": (optax.exponential_decay(0.4, 3, np.asarray(0.5, dt), staircase=True),
                      {"kind": "step", "every": 3, "factor": 0.5})}
    out["count_at_init"] = int(optax.add_decayed_weights(SCHED["cosine"][0]).init(p).count)
    for name, (sched, neutral) in SCHED.items():
        for masked, mask in (("", None), ("_masked", {"weight": False, "bias": True})):
            lam = [u["bias"][0] / 0.5 for u in run(optax.add_decayed_weights(sched, mask=mask), zg, p, 9)]
            out[f"{name}{masked}_lam_err"] = max(abs(x / (0.4 * multiplier(neutral, t)) - 1) for t, x in enumerate(lam))
        a, b = run(optax.adamw(lr, weight_decay=sched), g, p, 9), run(optax.adam(lr), g, p, 9)
        out[f"{name}_adamw_lam_err"] = max(abs((x["bias"][0] - y["bias"][0]) / (-lr * 0.4 * multiplier(neutral, t) * 0.5)
                                               - 1) for t, (x, y) in enumerate(zip(a, b)))
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def facts():
    return probe_by_x64(PROBE)


@needs_jax
def test_the_schedule_tables_are_the_installed_signatures(facts):
    from wdparity_backends.optax_schedules import MODELS

    ours = {name: {k: "<required>" if f.is_required() else f.default for k, f in m.model_fields.items()
                   if k != "schedule"} for name, m in MODELS.items()}
    assert facts(True)["schedules"] == ours


@needs_jax
def test_optax_scale_by_trust_ratio_is_the_neutral_ratio(facts):
    for x64 in (True, False):
        f = facts(x64)
        assert f["ratio_rel_err"] < (1e-15 if x64 else 1e-6)
        assert f["zero_update"] == [0.0] and f["zero_params_identity"]   # the guard: 1, never 0/0
    assert (facts(True)["ratio_dtype"], facts(False)["ratio_dtype"]) == ("float64", "float32")


@needs_jax
def test_optax_lamb_decays_inside_the_trust_ratio(facts):
    f = facts(True)
    assert f["lamb_inside_err"] < 1e-15 and f["lamb_after_gap"] > 1e-3


@needs_jax
def test_optax_add_decayed_weights_counts_its_schedule_from_zero(facts):
    for x64 in (True, False):
        f = facts(x64)
        assert f["count_at_init"] == 0
        for key in ("cosine_lam_err", "cosine_masked_lam_err", "cosine_adamw_lam_err", "step_lam_err",
                    "step_masked_lam_err", "step_adamw_lam_err"):
            assert f[key] < (1e-12 if x64 else 1e-6), (x64, key, f[key])


@needs_jax
def test_optax_lamb_bias_corrections_are_float32_without_x64(facts):
    """Not modelled (the neutral LAMB has no bias_correction_dtype): 1 - b2 from float32 b2 = 0.999 moves a zero
    tensor's first step (trust ratio 1) by 6.4e-6 relative; elsewhere the ratio divides most of it out. Inside the
    float32 battery's envelope (LAMB rows: max 6.8e-6 against tolerances >= 3.5e-5)."""
    assert facts(True)["lamb_zero_step1_rel_err"] < 1e-15
    assert 5e-6 < facts(False)["lamb_zero_step1_rel_err"] < 8e-6


# ---------------------------------------------------------------- grids: lr and init_value traced
GRID_PROBE = grid_probe("""
    COS = {"schedule": "cosine_decay_schedule", "init_value": 0.4, "decay_steps": 10, "alpha": 0.1}
    EXP = {"schedule": "exponential_decay", "init_value": 0.3, "transition_steps": 3, "decay_rate": 0.5,
           "staircase": True}
    RUNS = [{"optimizer": "lamb", "learning_rate": 0.01, "weight_decay": 0.1},
            {"optimizer": "adamw", "learning_rate": 0.01, "weight_decay": COS},
            {"chain": [{"transform": "add_decayed_weights", "weight_decay": EXP}, {"transform": "scale_by_adam"},
                       {"transform": "scale_by_learning_rate", "learning_rate": 0.01}]},
            {"chain": [{"transform": "scale_by_adam"}, {"transform": "scale_by_trust_ratio"},
                       {"transform": "add_decayed_weights", "weight_decay": 0.2},
                       {"transform": "scale_by_learning_rate", "learning_rate": 0.01}]}]
""")


@needs_jax
@pytest.mark.slow
@pytest.mark.parametrize("x64, tol", [("1", 1e-12), ("0", 1e-5)])
def test_lamb_and_scheduled_decays_batch_as_their_serial_runs(x64, tol):
    """Grids of LAMB and of a scheduled weight_decay (lr and its init_value traced) train as the serial runs do."""
    for run, (keys, batched, err) in run_probe(GRID_PROBE, env={"JAX_ENABLE_X64": x64}).items():
        assert keys == 1 and batched and err <= tol, (run, err)
