"""The optax adapter's gradient clipping: clip_by_global_norm and clip at a position in the chain, as the neutral
Clip; what is refused and why; the measured formulas (no eps, global over every tensor); grids of clipped runs."""

from __future__ import annotations

import textwrap

import pytest
from conftest import probe_by_x64, run_probe
from test_optax_backend import ADAM, LR, TASK, adw, describe, needs_jax, rules

from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics
from wdparity_backends.optax_backend import backend

GN, VAL = {"transform": "clip_by_global_norm", "max_norm": 1.0}, {"transform": "clip", "max_delta": 0.1}
TRACE = {"transform": "trace", "decay": 0.9}


# ---------------------------------------------------------------- describe: the position is the chain's order
@pytest.mark.parametrize("chain, clip", [
    ([GN, ADAM, LR], {"kind": "global_norm", "threshold": 1.0, "eps": 0.0, "position": "loss_gradient"}),
    ([GN, adw(0.3), ADAM, LR], {"kind": "global_norm", "threshold": 1.0, "eps": 0.0, "position": "loss_gradient"}),
    ([adw(0.3), GN, ADAM, LR], {"kind": "global_norm", "threshold": 1.0, "eps": 0.0,
                                "position": "after_coupled_decay"}),
    ([adw(0.3), VAL, TRACE, LR], {"kind": "value", "threshold": 0.1, "eps": 0.0, "position": "after_coupled_decay"}),
    ([VAL, LR], {"kind": "value", "threshold": 0.1, "eps": 0.0, "position": "loss_gradient"}),
    # a zero weight_decay before the clip adds nothing (skipped, _adding.py:68): the clip follows the coupled terms
    ([adw(0.0), GN, ADAM, adw(0.4), LR], {"kind": "global_norm", "threshold": 1.0, "eps": 0.0,
                                          "position": "after_coupled_decay"}),
    ([adw(0.0), GN, adw(0.3), ADAM, LR], {"kind": "global_norm", "threshold": 1.0, "eps": 0.0,
                                          "position": "loss_gradient"}),
])
def test_describe_reads_the_clip_and_its_position(chain, clip):
    assert describe({"chain": chain})["clip"] == clip


def test_a_penalty_is_clipped_and_stays_a_loss_term():
    run = {"chain": [GN, ADAM, adw(0.1), LR], "penalty": {"l2": 0.2, "params": ["weight"]}}
    sem = describe(run)
    assert [r.get("via_loss", False) for r in sem["decay"]] == [False, True]   # the decoupled term, the penalty
    assert rules(run)[1] == ("l2", "gradient", 0.4, None, ["weight"])


@pytest.mark.parametrize("chain, key, words", [
    ([ADAM, GN, LR], "chain[1].transform", "clip the optimizer's direction"),
    ([TRACE, VAL, LR], "chain[1].transform", "clip the optimizer's direction"),
    ([LR, VAL], "chain[1].transform", "lr-scaled step"),
    ([GN, VAL, ADAM, LR], "chain[1].transform", "second clipping transform"),
    ([adw(0.1), GN, adw(0.2), ADAM, LR], "chain[1].transform", "between two add_decayed_weights"),
    ([{"transform": "clip_by_global_norm", "max_norm": 0.0}, ADAM, LR], "chain[0].max_norm", "must be > 0.0"),
    ([{"transform": "clip", "max_delta": -0.1}, LR], "chain[0].max_delta", "must be > 0.0"),
    ([{"transform": "clip_by_block_rms", "threshold": 1.0}, ADAM, LR], "chain[0].transform", "threshold*sqrt(size)"),
    ([{"transform": "adaptive_grad_clip", "clipping": 0.1}, ADAM, LR], "chain[0].transform", "relative to the"),
    ([{"transform": "per_example_global_norm_clip"}, LR], "chain[0].transform", "per-example gradients"),
])
def test_clipping_outside_the_model_names_the_key(bad_run, chain, key, words):
    err = bad_run("optax", {"chain": chain}, "")
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


# ---------------------------------------------------------------- realize
def sem(clip: dict, decay=(), optimizer=None) -> Semantics:
    return backend.inherent(Semantics.model_validate({"optimizer": optimizer or {"name": "sgd", "lr": 0.01},
                                                      "decay": list(decay), "clip": clip}), TASK)


def test_realize_writes_the_clip_where_the_neutral_model_puts_it():
    coupled = [{"coupling": "gradient", "coefficient": 0.3}]
    penalty = [{"coupling": "gradient", "coefficient": 0.3, "params": ["weight"], "via_loss": True}]
    clip = {"kind": "global_norm", "threshold": 1.0}
    assert backend.realize(sem(clip, coupled), TASK) == {"chain": [GN, adw(0.3), LR]}
    assert backend.realize(sem({**clip, "position": "after_coupled_decay"}, coupled), TASK) == {
        "chain": [adw(0.3), GN, LR]}
    # a loss penalty stays in the loss (the clip sees it either way); without a coupled term a zero one marks
    # the position after them
    assert backend.realize(sem({**clip, "position": "after_coupled_decay"}, penalty), TASK) == {
        "chain": [adw(0.0), GN, LR], "penalty": {"l2": 0.15, "params": ["weight"]}}
    assert backend.realize(sem({"kind": "value", "threshold": 0.1}, penalty), TASK) == {
        "chain": [VAL, LR], "penalty": {"l2": 0.15, "params": ["weight"]}}
    # no alias clips: adamw is written as its chain with the clip in front (what chain(clip, adamw) is)
    adam = {"name": "adam", "lr": 0.01, "bias_correction_dtype": "float32"}
    assert backend.realize(sem(clip, [{"coupling": "decoupled", "coefficient": 0.1}], adam), TASK) == {
        "chain": [GN, {"transform": "scale_by_adam", "b1": 0.9, "b2": 0.999, "eps": 1e-8}, adw(0.1),
                  {"transform": "scale_by_learning_rate", "learning_rate": 0.01}]}


@pytest.mark.parametrize("clip, decay, words", [
    ({"kind": "global_norm", "threshold": 1.0, "eps": 1e-6}, [], "nearest: eps = 0"),
    ({"kind": "tensor_norm", "threshold": 0.5}, [], "clip_by_block_rms bounds each tensor's RMS"),
    ({"kind": "value", "threshold": 0.1}, [{"coupling": "gradient", "coefficient": 0.3, "via_loss": True},
                                           {"coupling": "gradient", "coefficient": 0.1, "via_loss": True}],
     "one `penalty` holds one L2 term"),
])
def test_realize_refuses_the_clipping_optax_lacks(clip, decay, words):
    with pytest.raises(Inexpressible, match=words):
        backend.realize(sem(clip, decay), TASK)


def test_findings_name_the_missing_eps_and_the_clipped_decay():
    ids = [f["id"] for f in backend.findings(backend.parse({"chain": [adw(0.3), GN, ADAM, LR]}), TASK)]
    assert "clip-global-norm-no-eps" in ids and "clip-after-add-decayed-weights" in ids
    ids = [f["id"] for f in backend.findings(backend.parse({"chain": [adw(0.0), VAL, LR]}), TASK)]
    assert "clip-global-norm-no-eps" not in ids and "clip-after-add-decayed-weights" not in ids


# ---------------------------------------------------------------- measured on the installed optax
CLIP_PROBE = textwrap.dedent("""
    import json
    import numpy as np
    import jax, jax.numpy as jnp, optax
    out = {"x64": bool(jax.config.jax_enable_x64)}
    p = {"weight": jnp.asarray([[1.0], [-2.0], [3.0]]), "bias": jnp.asarray([0.5])}

    def upd(tx, g):
        u, _ = tx.update(g, tx.init(p), p)
        return {k: np.asarray(v, np.float64) for k, v in u.items()}

    def asnp(t):
        return {k: np.asarray(v, np.float64) for k, v in t.items()}

    # global: one norm over every tensor (5 here), the weight and the bias scaled alike
    g34 = {"weight": jnp.asarray([[3.0], [0.0], [0.0]]), "bias": jnp.asarray([4.0])}
    out["global_34"] = {k: v.ravel().tolist() for k, v in upd(optax.clip_by_global_norm(1.0), g34).items()}
    # the formula: (t / ||g||) * max_norm, no eps (torch's clip_grad_norm_: max_norm / (||g|| + 1e-6))
    g = {"weight": jnp.asarray([[0.7], [-1.3], [2.9]]), "bias": jnp.asarray([-0.6])}
    n = np.sqrt(sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in g.values()))
    u = upd(optax.clip_by_global_norm(0.5), g)
    out["no_eps_err"] = max(float(np.max(np.abs(u[k] - np.asarray(g[k], np.float64) * 0.5 / n))) for k in u)
    out["torch_eps_gap"] = max(float(np.max(np.abs(u[k] - np.asarray(g[k], np.float64) * 0.5 / (n + 1e-6)))) for k in u)
    below = upd(optax.clip_by_global_norm(2 * n), g)
    out["below_unchanged"] = all(np.array_equal(below[k], np.asarray(g[k], np.float64)) for k in g)
    # clip: elementwise
    u = upd(optax.clip(0.8), g)
    out["value_err"] = max(float(np.max(np.abs(u[k] - np.clip(np.asarray(g[k], np.float64), -0.8, 0.8)))) for k in u)
    # the position: what the updates are where the clip stands
    gp = {k: g[k] + 0.5 * p[k] for k in g}
    out["after_decay"] = max(float(np.max(np.abs(a - b))) for a, b in zip(
        upd(optax.chain(optax.add_decayed_weights(0.5), optax.clip_by_global_norm(1.0)), g).values(),
        upd(optax.clip_by_global_norm(1.0), gp).values()))
    clipped = upd(optax.clip_by_global_norm(1.0), g)
    out["before_decay"] = max(float(np.max(np.abs(u[k] - clipped[k] - 0.5 * np.asarray(p[k], np.float64))))
                              for u in [upd(optax.chain(optax.clip_by_global_norm(1.0), optax.add_decayed_weights(0.5)), g)]
                              for k in u)
    out["zero_decay_marker"] = all(np.array_equal(a, b) for a, b in zip(
        upd(optax.chain(optax.add_decayed_weights(0.0), optax.clip_by_global_norm(1.0)), g).values(), clipped.values()))
    # clip_by_block_rms: per tensor by its RMS, a norm bound of threshold*sqrt(size)
    u = upd(optax.clip_by_block_rms(1.0), g34)
    out["block_rms"] = {k: float(np.sqrt(np.sum(v ** 2))) for k, v in u.items()}
    out["dtype"] = str(optax.clip_by_global_norm(1.0).update(
        {"w": jnp.ones(3, jnp.float32) * 5}, optax.EmptyState())[0]["w"].dtype)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def facts():
    return probe_by_x64(CLIP_PROBE)


@needs_jax
def test_optax_clip_by_global_norm_is_one_norm_over_every_tensor(facts):
    out = facts(True)["global_34"]
    assert out["weight"] == pytest.approx([0.6, 0.0, 0.0], abs=1e-15) and out["bias"] == pytest.approx([0.8], abs=1e-15)


@needs_jax
def test_optax_clip_by_global_norm_has_no_eps(facts):
    f = facts(True)
    assert f["no_eps_err"] < 1e-15 and f["torch_eps_gap"] > 1e-8 and f["below_unchanged"]


@needs_jax
def test_optax_clip_is_elementwise(facts):
    assert facts(True)["value_err"] == 0.0


@needs_jax
def test_optax_clip_sees_the_decay_before_it_and_not_after(facts):
    f = facts(True)
    assert f["after_decay"] < 1e-15 and f["before_decay"] < 1e-15 and f["zero_decay_marker"]


@needs_jax
def test_optax_clip_by_block_rms_bounds_the_rms_not_the_norm(facts):
    assert facts(True)["block_rms"] == pytest.approx({"weight": 3 ** 0.5, "bias": 1.0}, rel=1e-15)


@needs_jax
def test_optax_clip_by_global_norm_keeps_the_update_dtype(facts):
    assert facts(False)["dtype"] == "float32"


# ---------------------------------------------------------------- grids: clipped runs batch as their serial runs
GRID_PROBE = textwrap.dedent("""
    import json, jax, numpy as np
    from wdparity.judge import fidelity
    from wdparity.engine.data import make_data
    from wdparity.spec.models import Task
    from wdparity_backends import optax_backend, optax_batch
    dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    task = Task.model_validate({**fidelity.BATTERY_TASK, "init": "normal_all", "dtype": dtype,
                                "schedule": {"kind": "step", "every": 4, "factor": 0.5}}).model_dump()
    data = make_data(task)
    LR = {"transform": "scale_by_learning_rate", "learning_rate": 0.01}
    RUNS = [[{"transform": "clip_by_global_norm", "max_norm": 0.5}, {"transform": "scale_by_adam"},
             {"transform": "add_decayed_weights", "weight_decay": 0.1}, LR],
            [{"transform": "add_decayed_weights", "weight_decay": 0.1}, {"transform": "clip", "max_delta": 0.05},
             {"transform": "trace", "decay": 0.9}, LR]]
    out = {}
    for chain in RUNS:
        jobs = []
        for k in range(3):   # k = 0: weight_decay 0.0, traced in the grid, skipped serially
            c = json.loads(json.dumps(chain))
            c[-1]["learning_rate"] *= 1 + k
            for t in c:
                if t["transform"] == "add_decayed_weights":
                    t["weight_decay"] *= k
            jobs.append({"task": task, "dtype": dtype, "run": {"chain": c, "penalty": {"l2": 0.1 * (k + 1)}}})
        keys = {optax_batch.batch_key(j) for j in jobs}
        grid = optax_batch.train(jobs, data)
        serial = [optax_backend.backend.train(j, data) for j in jobs]
        other = dict(jobs[0], run={**jobs[0]["run"], "chain": [dict(t) for t in jobs[0]["run"]["chain"]]})
        for t in other["run"]["chain"]:
            t.update({k: 2 * v for k, v in t.items() if k in ("max_norm", "max_delta")})
        out[json.dumps(chain)] = [len(keys), None not in keys, optax_batch.batch_key(other) not in keys, max(
            float(np.max(np.abs(np.asarray(g[t], np.float64) - np.asarray(s[t], np.float64))))
            for g, s in zip(grid, serial) for t in ("weight", "bias"))]
    print(json.dumps(out))
""")


@needs_jax
@pytest.mark.slow
@pytest.mark.parametrize("x64, tol", [("1", 1e-12), ("0", 1e-5)])
def test_clipped_runs_batch_as_their_serial_runs(x64, tol):
    """A grid over lr, weight_decay and the penalty traces them; the clip threshold is in the batch key (another
    max_norm trains apart), and the clipped grid trains as the serial runs do, to rounding."""
    for run, (keys, batched, apart, err) in run_probe(GRID_PROBE, env={"JAX_ENABLE_X64": x64}).items():
        assert keys == 1 and batched and apart and err <= tol, (run, err)
