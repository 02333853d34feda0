"""An MXNet run table as Python a user pastes (`Backend.snippet`, framed by tools/snippet.py): the task's Gluon
model (with each Parameter's wd_mult set as the adapter sets it), Gluon's L2Loss, and the gluon.Trainer with the
optimizer name and optimizer_params exactly as the adapter's build() passes them (mxnet_backend.py), the task's
schedule as an mx.lr_scheduler object among them; `optimizer = trainer.optimizer`.

Every key is written as code or refused by name: the optimizer's own keywords, wd, rescale_grad and clip_gradient
in the params dict, wd_mult / collect_params as `collect_params(select).setattr(...)` calls, the loss `penalty`
as `penalty(model)`, added to every sample's loss as d2l does. A run MXNet cannot train in the task's dtype (a
float32 state, a float32 LAMB direction) or on the task's network is refused naming `dtype` or the model key.
Pure: no mxnet import here; the code written imports it, and runs under MXNet's own venv.
"""

from __future__ import annotations

import itertools

from wdparity.run.backend import Inexpressible
from wdparity.run.literals import py
from wdparity.spec.models import Task
from wdparity.spec.rules import penalty_terms

from .mxnet_network import natives_of, network_refusal
from .mxnet_vocab import DEFAULT_LR, FLOAT32_DIRECTION, FLOAT32_STATE, KEYWORDS, MxnetRun
from .torch_snippet import join_blocks, refuse_schedule_kind, refuse_unrendered

OWN = sorted({k for keys in KEYWORDS.values() for k in keys} - {"learning_rate"})
PARAMS = ("wd", "rescale_grad", "clip_gradient", *OWN)   # build()'s order of the optimizer_params
RENDERED = {"optimizer", "learning_rate", *PARAMS, "wd_mult", "collect_params", "penalty"}
ACTIVATION = {"tanh": 'gluon.nn.Activation("tanh")', "relu": 'gluon.nn.Activation("relu")', "gelu": "gluon.nn.GELU()"}


def refuse_unbuildable(config: MxnetRun, task: Task) -> None:
    """Inexpressible for what MXNet cannot train as the run says: a float32-only optimizer in float64, a network
    MXNet computes otherwise (mxnet_network.network_refusal)."""
    if task.dtype == "float64" and config.optimizer in FLOAT32_STATE:
        raise Inexpressible(f"dtype: MXNet's {config.optimizer} creates its state in float32 "
                            f"({FLOAT32_STATE[config.optimizer]}) and fails for float64 weights; nearest: dtype = float32")
    if task.dtype == "float64" and config.optimizer in FLOAT32_DIRECTION:
        raise Inexpressible(f"dtype: MXNet's {config.optimizer} keeps its direction and norms in float32 for float64 "
                            f"weights ({FLOAT32_DIRECTION[config.optimizer]}); nearest: dtype = float32")
    why = network_refusal(task)
    if why is not None:
        raise Inexpressible(f"{why[0]}: {why[1]}")


def model_lines(config: MxnetRun, task: Task) -> list[str]:
    """`model`: Dense(1, in_units=d), or the HybridSequential of mxnet_network.py (prefix "mlp_"), cast to the task's
    dtype, the wd_mult setattr calls, hybridized (build()'s order)."""
    model = task.model
    if model.linear:
        lines = [f"model = gluon.nn.Dense(1, in_units={task.num_inputs})   # the task's model: replace it with yours"]
    else:
        lines = ['model = gluon.nn.HybridSequential(prefix="mlp_")   # the task\'s model: replace it with yours',
                 "with model.name_scope():"]
        fan_in = task.num_inputs
        for width in model.hidden:
            lines.append(f"    model.add(gluon.nn.Dense({width}, in_units={fan_in}))")
            if model.norm == "layer":
                lines.append(f"    model.add(gluon.nn.LayerNorm(epsilon={py(model.norm_eps)}, in_channels={width}))")
            lines.append(f"    model.add({ACTIVATION[model.activation]})")
            fan_in = width
        lines.append(f"    model.add(gluon.nn.Dense(1, in_units={fan_in}))")
    lines += ["model.initialize(ctx=mx.cpu())", f"model.cast({py(task.dtype)})"]
    if config.wd_mult:
        lines.append(f"# wd_mult {config.wd_mult}: each Parameter's multiplier of wd (wd * wd_mult)")
        lines += [f"model.collect_params({py('.*' + name)}).setattr('wd_mult', {py(mult)})"
                  for name, mult in config.wd_mult.items()]
    for entry in config.collect_params or []:
        for attr in ("wd_mult", "lr_mult"):
            value = getattr(entry, attr)
            if value is not None:
                lines.append(f"model.collect_params({py(entry.select)}).setattr({py(attr)}, {py(value)})")
    return lines + ["model.hybridize()"]


def loss_lines(task: Task) -> list[str]:
    weight = 1.0 if task.loss == "half_mse" else 2.0
    return [f"# the task's loss \"{task.loss}\": L2Loss is weight/2 * (prediction - y)^2 per sample",
            f"loss_fn = gluon.loss.L2Loss(weight={py(weight)})"]


def penalty_lines(config: MxnetRun, task: Task) -> list[str]:
    """`penalty(model)`: the adapter's sum, tensor by tensor (L2 then L1 of each), then over the tensors."""
    terms = penalty_terms(config.penalty)
    if not terms:
        return ["# penalty: every coefficient is 0, so it adds nothing to the loss"]
    if task.model.linear:
        get = {"weight": "model.weight.data()", "bias": "model.bias.data()"}
    else:
        get = {n: f"params[{py(native)}].data()" for n, native in natives_of(task.tensors).items()}
    lines = ["def penalty(model):",
             f'    """The table\'s penalty (l2 = {py(config.penalty.l2)}, l1 = {py(config.penalty.l1)} on '
             f'{config.penalty.params}): add it to every sample\'s loss',
             "    inside autograd.record(), loss = loss_fn(model(x), y) + penalty(model), as d2l does (backward sums",
             '    over the batch and trainer.step(batch_size) divides by it)."""']
    lines += [] if task.model.linear else ["    params = model.collect_params()"]
    parts = []
    for k, (name, group) in enumerate(itertools.groupby(terms, key=lambda term: term[0])):
        lines.append(f"    w{k} = {get[name]}")
        parts.append("(" + " + ".join(f"{py(coef)} * " + (f"((w{k} ** 2).sum())" if kind == "l2"
                                                           else f"nd.abs(w{k}).sum()") for _, kind, coef in group) + ")")
    return lines + ["    return " + " + ".join(parts)]


def schedule_lines(task: Task, lr: float) -> list[str]:
    schedule = task.schedule
    if schedule.kind == "constant":
        return ["# the task's schedule is constant: no lr_scheduler"]
    head = f"# the task's schedule {schedule.model_dump()}, per update"
    if schedule.kind == "step":   # stop_factor_lr=0: the default 1e-8 floor would clamp a long decay
        return [head, f"lr_scheduler = mx.lr_scheduler.FactorScheduler(step={schedule.every}, factor="
                f"{py(schedule.factor)}, stop_factor_lr=0.0, base_lr={py(lr)})"]
    return [head,
            "class ZeroBasedCosine(mx.lr_scheduler.CosineScheduler):",
            '    """MXNet\'s cosine formula counted from the first update (num_update starts at 1)."""',
            "",
            "    def __call__(self, num_update):",
            "        return super().__call__(num_update - 1)",
            "",
            "",
            f"lr_scheduler = ZeroBasedCosine(max_update={schedule.total}, base_lr={py(lr)}, "
            f"final_lr={py(schedule.floor * lr)})"]


def trainer_lines(config: MxnetRun, task: Task, lr: float) -> list[str]:
    params = [f"{py('learning_rate')}: {py(lr)}"]
    params += [f"{py(k)}: {py(getattr(config, k))}" for k in PARAMS if getattr(config, k) is not None]
    params += [f"{py('lr_scheduler')}: lr_scheduler"] if task.schedule.kind != "constant" else []
    lines = []
    if config.clip_gradient is not None:
        lines.append(f"# clip_gradient: MXNet clips rescale_grad * gradient elementwise to +-{py(config.clip_gradient)}")
    lines.append(f"trainer = gluon.Trainer(model.collect_params(), {py(config.optimizer)}, {{" + ", ".join(params) + "})")
    return lines + ["optimizer = trainer.optimizer"]


def snippet(config: MxnetRun, task: Task) -> str:
    """The MXNet snippet of `config` for `task` (tools/snippet.py frames it)."""
    refuse_unrendered(config, RENDERED, "MXNet")
    refuse_schedule_kind(task, ("constant", "step", "cosine"), "MXNet")
    refuse_unbuildable(config, task)
    lr = config.learning_rate if config.learning_rate is not None else DEFAULT_LR[config.optimizer]
    pen = penalty_lines(config, task) if config.penalty is not None else []
    has = bool(pen) and pen[0].startswith("def ")
    loop = ["# one training step, as the adapter trains it (x, y: one batch as NDArrays):",
            "#   with autograd.record():",
            "#       loss = loss_fn(model(x), y)" + (" + penalty(model)" if has else ""),
            "#   loss.backward()",
            "#   trainer.step(x.shape[0])"]
    return join_blocks([["import mxnet as mx", "from mxnet import autograd, gluon, nd"], model_lines(config, task), loss_lines(task), pen,
                        schedule_lines(task, lr), trainer_lines(config, task, lr), loop])
