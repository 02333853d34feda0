"""Inside the worker: an mlx.nn.Linear (or the task's nn.Sequential, mlx_network.py) trained as an MLX user
trains it.

nn.value_and_grad(model, loss_fn), optionally mlx.optimizers.clip_grad_norm on the gradients, then
optimizer.update(model, grads) and mx.eval(model.parameters(), optimizer.state); the task's schedule is an
mlx.optimizers schedule (step_decay, cosine_decay) passed as the learning_rate callable; a MultiOptimizer gets
one filter (path, array) -> bool per sub-optimizer but the last. Imports MLX.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import numpy as np

from wdparity.spec.network import Model, names, tensor_scope

from . import mlx_network as network
from .mlx_vocab import KEYWORDS, MULTI, MlxRun


def learning_rate(mx, optim, run, schedule: dict, as_array):
    """The learning_rate argument: the float (or array) itself, or the schedule callable MLX evaluates at
    optimizer.step (0 on the first update: the scheduler is called before the step is incremented)."""
    lr = run.learning_rate
    if schedule["kind"] == "step":
        return optim.step_decay(as_array(lr), as_array(float(schedule["factor"])), int(schedule["every"]))
    if schedule["kind"] == "cosine":
        total, floor = int(schedule["total"]), float(schedule.get("floor", 0.0))
        # decay_steps as an array too: (math.pi / decay_steps) * step is float32 for a Python int (schedulers.py:89)
        steps = total if as_array is float else as_array(float(total))
        return optim.cosine_decay(as_array(lr), steps, as_array(floor * lr))
    return as_array(lr)


def make(optim, sub, schedule: dict, as_array, dtype, run: MlxRun):
    """One mlx.optimizers class with the sub-run's keywords (a MultiOptimizer's sub-run, or the run itself)."""
    import mlx.core as mx

    kwargs = {k: getattr(sub, k) for k in KEYWORDS[sub.optimizer] if getattr(sub, k) is not None}
    if sub.learning_rate is not None:
        kwargs["learning_rate"] = learning_rate(mx, optim, sub, schedule, as_array)
    if "betas" in KEYWORDS[sub.optimizer] and run.hyperparameters_as_arrays and dtype == mx.float64:
        # float64 betas keep b**step float64; in float32 they stay Python floats (1 - float32(b) would cancel)
        kwargs["betas"] = [as_array(b) for b in sub.get("betas")]
    if sub.optimizer == "Adafactor" and run.hyperparameters_as_arrays and dtype == mx.float64:
        kwargs["decay_rate"] = as_array(sub.get("decay_rate"))   # step**decay_rate float64 (optimizers.py:830)
    return getattr(optim, sub.optimizer)(**kwargs)


def build(job: dict, data: dict[str, np.ndarray]) -> SimpleNamespace:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten

    from wdparity.engine import network as net_mod

    mx.set_default_device(mx.cpu)
    task = job["task"]
    dtype = {"float32": mx.float32, "float64": mx.float64}[job["dtype"]]
    arch = net_mod.model_of(data) if "model_json" in data else None
    d = np.asarray(data["X_train"]).shape[1]
    tensors = names(Model.model_validate(arch), d) if arch else ("weight", "bias")
    with tensor_scope(tensors):   # the run's paths are the model's
        run = MlxRun.model_validate(job["run"])
    as_array = (lambda x: mx.array(x, dtype=dtype)) if run.hyperparameters_as_arrays else float
    X = np.asarray(data["X_train"], dtype=job["dtype"])
    y = np.asarray(data["y_train"], dtype=job["dtype"]).reshape(-1, 1)
    table = None
    if arch:
        model, table = network.network(mx, nn, data, dtype, arch)
    else:
        model = nn.Linear(d, 1)
        model.set_dtype(dtype)   # mx.array(numpy float64) would be float32 without dtype=: every array names it
        model.update({"weight": mx.array(np.asarray(data["w0"]).reshape(1, d), dtype=dtype),
                      "bias": mx.array(np.asarray(data["b0"]).reshape(1), dtype=dtype)})

    schedule = task.get("schedule") or {"kind": "constant"}
    if run.optimizer == MULTI:   # each tensor's path ("weight", "layers.0.weight") to the first filter that takes it
        subs = [make(optim, sub, schedule, as_array, dtype, run) for sub in run.optimizers]
        filters = [partial(lambda sub, path, array: network.takes(sub, path, array.ndim), sub)
                   for sub in run.optimizers[:-1]]
        optimizer = optim.MultiOptimizer(subs, filters)
    else:
        optimizer = make(optim, run, schedule, as_array, dtype, run)

    half = task["loss"] == "half_mse"
    terms = []
    if run.penalty:   # its paths (default: the nn.Linear weights, ndim 2)
        on = run.penalty.params or [k for k, v in tree_flatten(model.parameters()) if v.ndim == 2]
        terms += [(name, "l2", run.penalty.l2) for name in on if run.penalty.l2]
        terms += [(name, "l1", run.penalty.l1) for name in on if run.penalty.l1]

    def loss_fn(model, X, y):
        loss = nn.losses.mse_loss(model(X), y)
        if half:
            loss = loss / 2
        params = dict(tree_flatten(model.parameters())) if terms else {}
        for name, kind, coef in terms:   # the loss penalty, term by term as a user adds it
            p = params[name]
            loss = loss + coef * (mx.sum(mx.square(p)) if kind == "l2" else mx.sum(mx.abs(p)))
        return loss

    value_and_grad = nn.value_and_grad(model, loss_fn)

    def step(X, y):
        loss, grads = value_and_grad(model, X, y)
        if run.clip_grad_norm is not None:
            grads, _ = optim.clip_grad_norm(grads, run.clip_grad_norm)
        optimizer.update(model, grads)
        return loss

    if run.compile:
        state = [model.state, optimizer.state]
        step = partial(mx.compile, inputs=state, outputs=state)(step)
    return SimpleNamespace(mx=mx, model=model, optimizer=optimizer, step=step, X=X, y=y, dtype=dtype, table=table)


def train_step(s: SimpleNamespace, rows: np.ndarray) -> None:
    mx = s.mx
    s.step(mx.array(s.X[rows], dtype=s.dtype), mx.array(s.y[rows], dtype=s.dtype))
    mx.eval(s.model.parameters(), s.optimizer.state)


def read(s: SimpleNamespace):
    if s.table is not None:   # a network: {neutral name: array}
        return network.read(s.model, s.table, s.dtype)
    if s.model.weight.dtype != s.dtype:
        raise RuntimeError(f"MLX trained in {s.model.weight.dtype}, not {s.dtype}")
    return np.array(s.model.weight).reshape(-1), np.array(s.model.bias).reshape(())
