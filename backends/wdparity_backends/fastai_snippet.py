"""A fastai run table as Python a user pastes (`Backend.snippet`, framed by tools/snippet.py): the task's torch
model and loss, and the fastai optimizer exactly as the adapter's build() makes it (fastai_backend.py).

Without `learner`: opt_func(params or the parameter groups, lr=lr, **keywords), the keywords those of the table
(wd, decouple_wd, mom, ...). With `learner = true`: Learner(dls, model, loss_func, opt_func=partial(opt_func,
**keywords), lr, splitter, wd_bn_bias, cbs=[GradientClip(...)]) and its create_opt(), `optimizer = learn.opt`.
The penalty is `penalty(model)` (inside the Learner's loss_func), the task's schedule `set_lr(optimizer, t)`,
set_hyper("lr", ...) before each batch as the adapter (and fastai's ParamScheduler) does. Every key is written as
code or refused by name. Pure: no fastai import here; the code written imports it.
"""

from __future__ import annotations

from wdparity.run.literals import kwargs, py
from wdparity.spec.models import Task
from wdparity.spec.network import in_scope, tensor_scope

from .fastai_network import native_table
from .fastai_vocab import KEYWORDS, FastaiRun
from .torch_snippet import (
    dtype_lines,
    join_blocks,
    loss_lines,
    model_lines,
    penalty_lines,
    refuse_schedule_kind,
    refuse_unrendered,
)

NOT_KEYWORDS = ("optimizer", "lr", "param_groups", "learner", "wd_bn_bias", "penalty", "gradient_clip", "norm_type")
RENDERED = {*NOT_KEYWORDS, *(k for keys in KEYWORDS.values() for k in keys)}


def keywords(config: FastaiRun) -> dict:
    """The keywords build() hands the optimizer function: every other key the table sets."""
    return {k: getattr(config, k) for k in type(config).model_fields
            if k in config.model_fields_set and getattr(config, k) is not None and k not in NOT_KEYWORDS}


def groups_lines(config: FastaiRun) -> list[str]:
    """`groups`, the parameter groups by torch's names (the table's module paths expanded), and the frozen ones."""
    if not config.param_groups:
        return []
    back = {neutral: native for native, neutral in native_table(in_scope()).items()}
    lines = [f"# param_groups {config.param_groups}: the splitter's output, by torch's parameter names",
             "named = dict(model.named_parameters())", "groups = ["]
    lines += ["    [" + ", ".join(f"named[{py(back[n])}]" for n in group) + "]," for group in config.groups]
    lines.append("]")
    if config.frozen:
        lines.append(f"# {[back[n] for n in config.frozen]}: in no group, so fastai never steps them (frozen)")
    return lines


def schedule_lines(task: Task, lr: float) -> list[str]:
    """`set_lr(optimizer, t)`: the task's schedule as the adapter sets it, set_hyper("lr", ...) before batch t."""
    schedule = task.schedule
    if schedule.kind == "constant":
        return ["# the task's schedule is constant: the lr stays the optimizer's"]
    head = ["def set_lr(optimizer, t):",
            f'    """The task\'s schedule {schedule.model_dump()}: call it before batch t (0, 1, ...), as fastai\'s '
            'ParamScheduler sets the lr."""']
    if schedule.kind == "step":
        return head + [f'    optimizer.set_hyper("lr", {py(lr)} * {py(schedule.factor)} ** (t // {schedule.every}))']
    return [f"lr_schedule = SchedCos({py(lr)}, {py(schedule.floor * lr)})", "", ""] + head + [
        f'    optimizer.set_hyper("lr", lr_schedule(min(t, {schedule.total}) / {schedule.total}))']


def optimizer_lines(config: FastaiRun) -> list[str]:
    words = kwargs(keywords(config))
    params = "groups" if config.param_groups else "list(model.parameters())"
    if not config.learner:
        return [f"optimizer = {config.optimizer}({params}, lr={py(config.lr)}{', ' + words if words else ''})"]
    extra = [f"opt_func=partial({config.optimizer}{', ' + words if words else ''})"]
    extra += [] if config.lr is None else [f"lr={py(config.lr)}"]
    extra += [] if config.wd_bn_bias is None else [f"wd_bn_bias={py(config.wd_bn_bias)}"]
    extra += ["splitter=lambda m: groups"] if config.param_groups else []
    if config.gradient_clip is not None:
        norm = "" if config.norm_type is None else f", norm_type={py(config.norm_type)}"
        extra.append(f"cbs=[GradientClip(max_norm={py(config.gradient_clip)}{norm})]")
    lines = []
    if not config.wd_bn_bias:
        lines.append("# wd_bn_bias=False (the Learner's default): create_opt sets do_wd = False on every bias and norm "
                     "parameter")
    lines += ["# DataLoaders(): replace it with your dls",
              "learn = Learner(DataLoaders(), model, loss_func=loss_func, " + ", ".join(extra) + ")",
              "learn.create_opt()",
              "optimizer = learn.opt"]
    return lines


def loss_func_lines(config: FastaiRun, has_penalty: bool) -> list[str]:
    if not config.learner:
        return []
    if not has_penalty:
        return ["loss_func = loss_fn"]
    return ["def loss_func(prediction, target):",
            '    """The Learner\'s loss: the task\'s loss plus the table\'s penalty."""',
            "    return loss_fn(prediction, target) + penalty(model)"]


def imports(config: FastaiRun, task: Task) -> list[str]:
    lines = ["from functools import partial", ""] if config.learner else []
    lines += ["import torch"]
    lines += ["from fastai.callback.schedule import SchedCos"] if task.schedule.kind == "cosine" else []
    lines += ["from fastai.callback.training import GradientClip"] if config.gradient_clip is not None else []
    lines += ["from fastai.data.core import DataLoaders", "from fastai.learner import Learner"] if config.learner else []
    return lines + [f"from fastai.optimizer import {config.optimizer}"]


def loop_lines(config: FastaiRun, task: Task, has_penalty: bool) -> list[str]:
    pen = " + penalty(model)" if has_penalty else ""
    sched = [] if task.schedule.kind == "constant" else ["#   set_lr(optimizer, t)"]
    if config.learner:
        return ["# learn.fit(...) trains it; one step, as the adapter trains it (Learner._do_grad_opt):"] + sched + [
            "#   loss = loss_func(model(x), y)", "#   loss.backward()",
            "#   the callbacks' before_step" + (" (GradientClip)" if config.gradient_clip is not None else ""),
            "#   optimizer.step()", "#   optimizer.zero_grad()"]
    return ["# one training step, as the adapter trains it:"] + sched + [
        f"#   loss = loss_fn(model(x), y){pen}", "#   loss.backward()", "#   optimizer.step()",
        "#   optimizer.zero_grad()"]


def snippet(config: FastaiRun, task: Task) -> str:
    """The fastai snippet of `config` for `task` (tools/snippet.py frames it)."""
    refuse_unrendered(config, RENDERED, "fastai")
    refuse_schedule_kind(task, ("constant", "step", "cosine"), "fastai")
    with tensor_scope(task.tensors):
        pen = penalty_lines(config.penalty, task) if config.penalty is not None else []
        has = bool(pen) and pen[0].startswith("def ")
        return join_blocks([imports(config, task), dtype_lines(task), model_lines(task), loss_lines(task), pen,
                            loss_func_lines(config, has), groups_lines(config), optimizer_lines(config),
                            schedule_lines(task, config.effective_lr), loop_lines(config, task, has)])
