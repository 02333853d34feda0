"""Python for an `mlx` run table (tools/snippet.py frames it): the model, the optimizer and the training step, written
as mlx_train.build builds them, so that the code a user pastes is the code wdparity trains.

    model = nn.Linear(d, 1)                       # or the task's nn.Sequential (mlx_network.py)
    optimizer = optim.AdamW(learning_rate=..., ...)   # MultiOptimizer([...], [filters]) for per-tensor settings
    def loss_fn(model, X, y): ...                 # the task's loss, plus the run's `penalty` term by term
    def step(X, y): ...                           # value_and_grad, clip_grad_norm, optimizer.update (mx.compile'd)

A schedule (task.schedule) is mlx.optimizers' step_decay / cosine_decay as the learning_rate; with
hyperparameters_as_arrays the numbers are mx.arrays of the run's dtype (and, in float64, the betas and Adafactor's
decay_rate too), as mlx_train.make hands them over. Floats by repr. Pure: no MLX import.
"""

from __future__ import annotations

from wdparity.run.backend import Inexpressible
from wdparity.run.literals import py
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope

from . import mlx_network as network
from .mlx_vocab import KEYWORDS, MULTI, MlxRun

# every key of MlxRun / MlxSub / MlxPenalty this module writes; a key set outside these is Inexpressible
RENDERED = {"optimizer", "optimizers", "penalty", "clip_grad_norm", "hyperparameters_as_arrays", "compile",
            *{k for keys in KEYWORDS.values() for k in keys}}
RENDERED_SUB = {"optimizer", "params", "endswith", "ndim", *{k for keys in KEYWORDS.values() for k in keys}}
RENDERED_PENALTY = {"l2", "l1", "params"}
ACTIVATIONS = {"tanh": "nn.Tanh()", "relu": "nn.ReLU()"}


def unrendered(config: MlxRun) -> None:
    """Inexpressible naming the first key that is set and that this module does not write."""
    def check(values: dict, known: set, where: str) -> None:
        for key in values:
            if key not in known:
                raise Inexpressible(f"the mlx snippet cannot write `{where}{key}` ({values[key]!r}) as Python yet")

    dumped = config.model_dump(exclude_none=True)
    check(dumped, RENDERED, "")
    for i, sub in enumerate(dumped.get("optimizers", [])):
        check(sub, RENDERED_SUB, f"optimizers[{i}].")
    check(dumped.get("penalty", {}), RENDERED_PENALTY, "penalty.")


def snippet(config: MlxRun, task: Task) -> str:
    unrendered(config)
    with tensor_scope(task.tensors):
        return "\n".join(_lines(config, task)) + "\n"


def _lines(config: MlxRun, task: Task) -> list[str]:
    dtype = f"mx.{task.dtype}"
    arrays = bool(config.hyperparameters_as_arrays)

    def num(x) -> str:   # mlx_train's as_array: an mx.array of the run's dtype, or the Python float itself
        return f"mx.array({py(float(x))}, dtype={dtype})" if arrays else py(float(x))

    out = ["import mlx.core as mx", "import mlx.nn as nn", "import mlx.optimizers as optim"]
    if config.penalty:
        out.append("from mlx.utils import tree_flatten")
    out += ["", "mx.set_default_device(mx.cpu)   # as wdparity trains it (MLX computes float64 on the CPU only)", ""]
    out += _model(task, dtype)
    if config.optimizer == MULTI:
        subs = [_optimizer(sub, task, num, arrays) for sub in config.optimizers]
        filters = [_filter(sub) for sub in config.optimizers[:-1]]
        out += ["optimizer = optim.MultiOptimizer(", "    [" + ",\n     ".join(subs) + "],",
                "    [" + ", ".join(filters) + "],   # (path, array) -> bool on tree_flatten(model.parameters()); the "
                "last optimizer takes the rest", ")"]
    else:
        out.append(f"optimizer = {_optimizer(config, task, num, arrays)}")
    out += ["", "", "def loss_fn(model, X, y):", "    loss = nn.losses.mse_loss(model(X), y)"]
    if task.loss == "half_mse":
        out.append("    loss = loss / 2   # the task's loss: mean((y_hat - y)^2) / 2")
    if config.penalty:   # its paths (default: the nn.Linear weights, ndim 2), l2 terms then l1 terms, as mlx_train
        table = network.paths()
        on = config.penalty.params or [p for p in table if network.ndims(table)[p] == 2]
        out.append("    params = dict(tree_flatten(model.parameters()))")
        for kind, coef, call in (("l2", config.penalty.l2, "mx.square"), ("l1", config.penalty.l1, "mx.abs")):
            if coef:
                out += [f"    loss = loss + {py(coef)} * mx.sum({call}(params[{py(p)}]))   # penalty.{kind}"
                        for p in on]
    out += ["    return loss", "", "", "loss_and_grad = nn.value_and_grad(model, loss_fn)", "", "",
            "def step(X, y):", "    loss, grads = loss_and_grad(model, X, y)"]
    if config.clip_grad_norm is not None:
        out.append(f"    grads, _ = optim.clip_grad_norm(grads, {py(config.clip_grad_norm)})")
    out += ["    optimizer.update(model, grads)", "    return loss", ""]
    if config.compile:
        out += ["", "state = [model.state, optimizer.state]", "step = mx.compile(step, inputs=state, outputs=state)"]
    out.append("# each training step: step(X, y); mx.eval(model.parameters(), optimizer.state)")
    return out


def _model(task: Task, dtype: str) -> list[str]:
    d, m = task.num_inputs, task.model
    cast = [f"model.set_dtype({dtype})"] if task.dtype == "float64" else []
    if m.linear:
        return [f"model = nn.Linear({d}, 1)   # the task's model: replace it with yours", *cast]
    layers, fan_in = [], d
    for width in m.hidden:
        layers.append(f"nn.Linear({fan_in}, {width})")
        if m.norm == "layer":
            layers.append(f"nn.LayerNorm({width}, eps={py(float(m.norm_eps))})")
        layers.append(ACTIVATIONS.get(m.activation) or f"nn.GELU(approx={py(network.GELU_APPROX[m.activation])})")
        fan_in = width
    layers.append(f"nn.Linear({fan_in}, 1)")
    return ["model = nn.Sequential(   # the task's network: replace it with yours", *[f"    {la}," for la in layers],
            ")", *cast]


def _learning_rate(sub, task: Task, num, arrays: bool) -> str:
    """mlx_train.learning_rate: the number, or the schedule MLX evaluates at optimizer.step (0 at the first update)."""
    lr, s = sub.learning_rate, task.schedule
    if s.kind == "step":
        return f"optim.step_decay({num(lr)}, {num(s.factor)}, {int(s.every)})"
    if s.kind == "cosine":
        steps = num(float(s.total)) if arrays else str(int(s.total))
        end = f"mx.array({py(float(s.floor))} * {py(lr)}, dtype=mx.{task.dtype})" if arrays else \
            f"{py(float(s.floor))} * {py(lr)}"
        return f"optim.cosine_decay({num(lr)}, {steps}, {end})"
    if s.kind != "constant":
        raise Inexpressible(f"the mlx adapter trains the schedules constant, step and cosine, not {s.kind!r}")
    return num(lr)


def _optimizer(sub, task: Task, num, arrays: bool) -> str:
    """mlx_train.make: the class with the sub-run's keywords."""
    f64 = arrays and task.dtype == "float64"
    parts = []
    for key in KEYWORDS[sub.optimizer]:
        value = getattr(sub, key)
        if key == "betas" and f64:   # float64 betas keep b**step float64 (mlx_train.make)
            value = "[" + ", ".join(num(b) for b in sub.get("betas")) + "]"
        elif key == "decay_rate" and sub.optimizer == "Adafactor" and f64:
            value = num(sub.get("decay_rate"))
        elif value is None:
            continue
        elif key == "learning_rate":
            value = _learning_rate(sub, task, num, arrays)
        else:
            value = py(value)
        parts.append(f"{key}={value}")
    return f"optim.{sub.optimizer}({', '.join(parts)})"


def _filter(sub) -> str:
    """mlx_network.takes as the (path, array) -> bool MultiOptimizer calls."""
    if sub.params is not None:
        return f"lambda path, array: path in {py(list(sub.params))}"
    if sub.endswith is not None:
        return f"lambda path, array: path.endswith({py(sub.endswith)})"
    return f"lambda path, array: array.ndim == {int(sub.ndim)}"
