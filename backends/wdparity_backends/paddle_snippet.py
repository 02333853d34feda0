"""Python for a `paddle` run table (tools/snippet.py frames it): the model, the optimizer, its scheduler and the
training step, written as PaddleBackend.build builds them, so that the code a user pastes is the code wdparity trains.

    with paddle.utils.unique_name.guard():        # the parameter names the table writes: linear_0.w_0, ...
        model = paddle.nn.Linear(d, 1, weight_attr=paddle.ParamAttr(regularizer=...), bias_attr=...)
    scheduler = paddle.optimizer.lr.StepDecay(...)   # or LambdaDecay(lr, cosine): the task's schedule
    optimizer = paddle.optimizer.AdamW(learning_rate=scheduler, parameters=model.parameters(), ...,
                                       apply_decay_param_fun=lambda name: name in [...], grad_clip=...)
    def step(X, y): ...                           # the task's loss, backward, step, clear_grad, scheduler.step

weight_decay as a float or paddle.regularizer.L2Decay/L1Decay, ParamAttr regularizers and trainable=False per
parameter (keyed by layer for a network, paddle_network.py), float64 through paddle.set_default_dtype. Floats by
repr. Pure: no Paddle import.
"""

from __future__ import annotations

from wdparity.run.backend import Inexpressible
from wdparity.run.literals import py
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope

from .paddle_vocab import KEYWORDS, PaddleRun, Regularizer

RENDERED = {"optimizer", "weight_attr", "bias_attr", *{k for keys in KEYWORDS.values() for k in keys}}
ACTIVATIONS = {"tanh": "paddle.nn.Tanh()", "relu": "paddle.nn.ReLU()", "gelu": "paddle.nn.GELU(approximate=False)",
               "gelu_tanh": "paddle.nn.GELU(approximate=True)"}
GUARD = ["", "# Paddle names parameters from a process-wide counter: in a fresh guard they are the names the table",
         "# writes (linear_0.w_0, linear_0.b_0, ...)", "with paddle.utils.unique_name.guard():"]


def unrendered(config: PaddleRun) -> None:
    """Inexpressible naming the first key that is set and that this module does not write."""
    for key, value in config.model_dump(exclude_none=True).items():
        if key not in RENDERED:
            raise Inexpressible(f"the paddle snippet cannot write `{key}` ({value!r}) as Python yet")


def snippet(config: PaddleRun, task: Task) -> str:
    unrendered(config)
    with tensor_scope(task.tensors):
        return "\n".join(_lines(config, task)) + "\n"


def regularizer(reg: Regularizer) -> str:
    return f"paddle.regularizer.{'L2Decay' if reg.norm == 'l2' else 'L1Decay'}({py(reg.coeff)})"


def param_attr(attr) -> str:
    """PaddleBackend.build's attr(): paddle.ParamAttr with the regularizer and trainable the table sets."""
    parts = ([f"regularizer={regularizer(attr.regularizer)}"] if attr.regularizer is not None else []) + \
        ([] if attr.trainable else ["trainable=False"])
    return f"paddle.ParamAttr({', '.join(parts)})"


def _attrs(config: PaddleRun, layer: str | None) -> str:
    """`, weight_attr=..., bias_attr=...` of one layer (layer None: the linear model's one nn.Linear)."""
    out = ""
    for key in ("weight_attr", "bias_attr"):
        table = getattr(config, key)
        attr = table if layer is None else (table or {}).get(layer)
        if attr is not None:
            out += f", {key}={param_attr(attr)}"
    return out


def _model(config: PaddleRun, task: Task) -> list[str]:
    d, m = task.num_inputs, task.model
    if m.linear:
        return [*GUARD, f"    model = paddle.nn.Linear({d}, 1{_attrs(config, None)})   # the task's model: replace it "
                        "with yours"]
    layers, fan_in, norms = [], d, 0
    for k, width in enumerate(m.hidden):
        layers.append(f"paddle.nn.Linear({fan_in}, {width}{_attrs(config, f'linear_{k}')})")
        if m.norm == "layer":
            layers.append(f"paddle.nn.LayerNorm({width}, epsilon={py(float(m.norm_eps))}"
                          f"{_attrs(config, f'layer_norm_{norms}')})")
            norms += 1
        layers.append(ACTIVATIONS[m.activation])
        fan_in = width
    layers.append(f"paddle.nn.Linear({fan_in}, 1{_attrs(config, f'linear_{len(m.hidden)}')})")
    return [*GUARD, "    model = paddle.nn.Sequential(   # the task's network: replace it with yours",
            *[f"        {la}," for la in layers], "    )"]


def _scheduler(config: PaddleRun, task: Task) -> list[str]:
    """paddle_backend.scheduler: StepDecay, or LambdaDecay of the neutral cosine (CosineAnnealingDecay differs)."""
    s, lr = task.schedule, py(config.lr)
    if s.kind == "step":
        return [f"scheduler = paddle.optimizer.lr.StepDecay({lr}, step_size={int(s.every)}, "
                f"gamma={py(float(s.factor))})"]
    if s.kind == "cosine":
        return ["", "", f"def cosine(t, total={int(s.total)}, floor={py(float(s.floor))}):   # the multiplier at t",
                "    return floor + (1.0 - floor) * (1.0 + math.cos(math.pi * min(t, total) / total)) / 2.0", "", "",
                f"scheduler = paddle.optimizer.lr.LambdaDecay({lr}, cosine)"]
    if s.kind != "constant":
        raise Inexpressible(f"the paddle adapter trains the schedules constant, step and cosine, not {s.kind!r}")
    return []


def _keyword(key: str, value) -> str:
    if key == "weight_decay" and isinstance(value, Regularizer):
        return regularizer(value)
    if key == "grad_clip":
        kind, threshold = value.kind
        return f"paddle.nn.{kind}({py(threshold)})"
    if key == "apply_decay_param_fun":   # called with the parameter's name (adamw.py:479-484)
        return f"lambda name: name in {py(list(value))}"
    if key == "exclude_from_weight_decay_fn":   # called with the parameter itself (lamb.py)
        return f"lambda param: param.name in {py(list(value))}"
    return py(value)


def _lines(config: PaddleRun, task: Task) -> list[str]:
    scheduled = task.schedule.kind != "constant"
    out = (["import math", ""] if task.schedule.kind == "cosine" else []) + ["import paddle", "",
           "paddle.set_device(\"cpu\")   # as wdparity trains it (workers set OMP_NUM_THREADS=1, FLAGS_use_mkldnn=0)"]
    out.append(f"paddle.set_default_dtype({py(task.dtype)})   # the parameters' dtype (a process-wide setting)")
    out += _model(config, task)
    out += _scheduler(config, task)
    parts = [f"learning_rate={'scheduler' if scheduled else py(config.lr)}", "parameters=model.parameters()"]
    for key in KEYWORDS[config.optimizer]:
        value = getattr(config, key)
        if key != "learning_rate" and value is not None:
            parts.append(f"{key}={_keyword(key, value)}")
    out.append(f"optimizer = paddle.optimizer.{config.optimizer}(")
    out += [f"    {p}," for p in parts] + [")", "", "", "def step(X, y):",
                                             "    loss = paddle.nn.functional.mse_loss(model(X), y)"]
    if task.loss == "half_mse":
        out.append("    loss = loss / 2   # the task's loss: mean((y_hat - y)^2) / 2")
    out += ["    loss.backward()", "    optimizer.step()", "    optimizer.clear_grad()"]
    if scheduled:
        out.append("    scheduler.step()   # once per optimizer step")
    out.append("    return loss")
    return out
