"""optax over a grid: G configs of one run as one jax.jit(jax.vmap(...)) with lax.scan over the steps.

Why it exists: serially, every run of a lambda x lr grid builds its own `tx`, so its jitted step is
traced and compiled again (the hyperparameters are Python constants inside it), and then dispatched
once per step from Python. Here the hyperparameters that differ (learning_rate, weight_decay,
step_size, init_value, a penalty's l1/l2) are traced scalars: the optax chain is built *inside* the
vmapped function from them, with the same optax constructors as OptaxBackend.train, so one
compilation trains the whole grid and the steps run inside XLA (lax.scan).

The traced scalars are arrays of the run's dtype, the value a Python float takes when optax combines
it with the run's arrays (JAX weak typing), so each config computes the same numbers as its serial
run up to XLA's rounding choices for the batched matmul (measured in tests/test_grid.py).
Every alias and transform batches this way: no constructor branches on a traced keyword's value
(scale_by_learning_rate asks only whether it is None or callable, transform.py:1000-1003; add_decayed_weights's
constant-zero test is below); tests/test_optax_families.py trains each new alias both ways.
A clip's max_norm / max_delta is not traced: it stays in the batch key, so runs with another threshold train apart
(clip_by_global_norm's lax.select takes a per-config trigger under vmap; tests/test_optax_clipping.py).
One difference is by design and exact: a zero `weight_decay` is skipped by optax when it is a
Python 0.0 (transforms/_adding.py:68) and added as 0 * params when traced; g + 0*w == g for finite w.

Batched only under a constant or step schedule. Cosine runs serially because cosine_decay_schedule was read
to multiply init_value with a float32 factor, where a weak Python float and a typed float64 scalar would
round differently; on optax 0.2.8 / JAX 0.10.2 under x64 the two give the same float64 values
(tests/test_optax_facts.py::test_optax_cosine_decay_is_the_same_for_a_python_float_and_a_typed_init_value),
so batching cosine too is possible and left for a measured change.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Optional

import numpy as np

from wdparity.engine.data import batches, loss_factor

VARYING = ("learning_rate", "weight_decay", "weight_decay_rate", "step_size", "init_value", "l1", "l2")


def _varying(node: Any, path: tuple = ()) -> list[tuple]:
    """Paths of the numeric leaves under a VARYING key (they become traced scalars)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in
                ([path + (k,)] if k in VARYING and isinstance(v, (int, float)) and not isinstance(v, bool)
                 else _varying(v, path + (k,)))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _varying(v, path + (i,))]
    return []


def _put(tree: Any, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        tree = tree[part]
    tree[path[-1]] = value


def batch_key(job: dict) -> Optional[str]:
    """Equal keys train together; None: this job trains alone (every network run: they train serially)."""
    if (job["task"].get("model") or {}).get("hidden"):
        return None
    if (job["task"].get("schedule") or {}).get("kind", "constant") == "cosine":
        return None
    skeleton = copy.deepcopy(job["run"])
    paths = _varying(skeleton)
    if not paths:
        return None
    for path in paths:
        _put(skeleton, path, "x")
    return json.dumps([job["task"], job["dtype"], skeleton], sort_keys=True)


def _transformation(optax, run, sched: dict, rate, dtype):
    """The run's optax GradientTransformation, as OptaxBackend.train builds it (fields may be tracers).
    `rate`: the step schedule's decay_rate typed in the run's dtype, as train() passes it, but as a NumPy
    scalar: exponential_decay tests `decay_rate == 0` in Python, which a traced jnp value cannot answer."""
    from .optax_jax import transformation

    def schedule(init_value):
        if sched["kind"] == "step":
            return optax.exponential_decay(init_value=init_value, transition_steps=int(sched["every"]),
                                           decay_rate=rate, staircase=True)
        return None   # constant (cosine never batches)

    return transformation(optax, run, schedule, dtype)


def _with(model, path: tuple, value):
    """A copy of the validated run with `value` (a tracer) at `path`, without validation."""
    if len(path) == 1:
        return model.model_copy(update={path[0]: value})
    head, rest = path[0], path[1:]
    child = getattr(model, head)
    if isinstance(child, list):
        items = list(child)
        items[rest[0]] = _with(items[rest[0]], rest[1:], value) if len(rest) > 1 else value
        return model.model_copy(update={head: items})
    return model.model_copy(update={head: _with(child, rest, value)})


def train(jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Train G optax runs of one batch key in one compiled vmap; one {"weight", "bias"} per run."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax

    from .optax_jax import dense_loss, dense_params, require_x64
    from .optax_vocab import OptaxRun

    task, dtype = jobs[0]["task"], np.dtype(jobs[0]["dtype"])
    require_x64(jax, dtype)   # as OptaxBackend.train: fixed at the worker's start-up, never flipped here
    sched = task.get("schedule") or {"kind": "constant"}
    base = OptaxRun.model_validate(jobs[0]["run"])
    paths = _varying(jobs[0]["run"])
    values = []
    for path in paths:
        column = []
        for job in jobs:
            node = job["run"]
            for part in path:
                node = node[part]
            column.append(node)
        values.append(jnp.asarray(column, dtype))
    factor = loss_factor(task["loss"])
    rate = np.asarray(sched["factor"], dtype) if sched["kind"] == "step" else None

    X, y = jnp.asarray(data["X_train"], dtype), jnp.asarray(np.asarray(data["y_train"]).reshape(-1, 1), dtype)
    params0 = dense_params(jnp, data, dtype)   # kernel (d, 1), bias (1,): a Flax nn.Dense(1)
    order = np.asarray(data["order"])
    d = int(params0["weight"].shape[0])
    bs = int(task["batch_size"])
    full, rem = divmod(order.shape[1], bs)

    def one(*hyper):
        run = base
        for path, value in zip(paths, hyper):
            run = _with(run, path, value)
        tx = _transformation(optax, run, sched, rate, dtype)
        loss_fn = dense_loss(jnp, factor, run.penalty)

        def step(carry, idx):
            params, state = carry
            grads = jax.grad(loss_fn)(params, X[idx], y[idx])
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
            return (params, state), (params["weight"], params["bias"])

        def epoch(carry, perm):
            carry, (w, b) = lax.scan(step, carry, perm[:full * bs].reshape(full, bs))
            if rem:   # the epoch's short last batch, as data.batches makes it
                carry, (w1, b1) = step(carry, perm[full * bs:])
                w, b = jnp.concatenate([w, w1[None]]), jnp.concatenate([b, b1[None]])
            return carry, (w, b)

        _, (w, b) = lax.scan(epoch, (params0, tx.init(params0)), jnp.asarray(order))
        return w.reshape(-1, d), b.reshape(-1)   # (epochs, steps, d, 1) and (epochs, steps, 1): flat per step

    W, B = jax.jit(jax.vmap(one))(*values)
    W, B = np.asarray(W), np.asarray(B)
    steps = len(batches(order, bs))
    assert W.shape[1] == steps, (W.shape, steps)
    w0, b0 = np.asarray(params0["weight"]).reshape(1, d), np.asarray(params0["bias"]).reshape(1)
    return [{"weight": np.concatenate([w0, W[g]]), "bias": np.concatenate([b0, B[g]])}
            for g in range(len(jobs))]
