"""A torch run table as Python a user pastes (`Backend.snippet`, framed by tools/snippet.py): the task's model,
its loss, and the optimizer exactly as the adapter's build() makes it (torch_backend.py), in torch's own calls.

Each key of the run is written as code or refused by name (Inexpressible): the constructor's keywords as build()
passes them, param groups (explicit, or the groups a builder such as transformers' Trainer makes, written out by
name), a tensor no group names left out (torch never updates it), the loss `penalty` as `penalty(model)`, gradient
clipping as `clip_gradients(model)`, and the task's schedule as torch.optim.lr_scheduler objects (torch_run.py's
scheduler()). The model and loss builders are shared with the fastai snippet (fastai trains torch modules).
Pure: no torch import here; the code written imports it.
"""

from __future__ import annotations

from wdparity.run.backend import Inexpressible
from wdparity.run.literals import kwargs, py
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope
from wdparity.spec.rules import penalty_terms

from . import torch_groups
from .torch_network import native_names
from .torch_run import DEFAULT_LR, KEYWORDS, TorchRun

GROUP_KEYS = ("param_groups", "hf_trainer_groups", "timm_groups", "no_weight_decay_list", "no_decay")
CLIP_KEYS = ("clip_grad_norm", "norm_type", "clip_grad_value")
RENDERED = {"optimizer", *(k for keys in KEYWORDS.values() for k in keys), *GROUP_KEYS, "penalty", *CLIP_KEYS}
BUILDERS = {
    "hf_trainer_groups": "the two groups transformers' Trainer builds (get_decay_parameter_names): decay, no decay",
    "timm_groups": "the two groups timm's param_groups_weight_decay builds: no decay (ndim <= 1, .bias, "
                   "no_weight_decay_list), decay",
    "no_decay": "the HF examples' groups: a name containing an entry of no_decay is undecayed",
}
ACTIVATIONS = {"tanh": "torch.nn.Tanh()", "relu": "torch.nn.ReLU()", "gelu": 'torch.nn.GELU(approximate="none")',
               "gelu_tanh": 'torch.nn.GELU(approximate="tanh")'}


def refuse_unrendered(config, rendered: set[str], framework: str) -> None:
    """Inexpressible naming the first key set on `config` that this snippet writer has no code for."""
    for key in type(config).model_fields:
        if key not in rendered and getattr(config, key) is not None:
            raise Inexpressible(f"{key}: the {framework} snippet has no code for this key (set to "
                                f"{getattr(config, key)!r}); nearest: the run without it")


def refuse_schedule_kind(task: Task, kinds: tuple[str, ...], framework: str) -> None:
    if task.schedule.kind not in kinds:
        raise Inexpressible(f"schedule: the {framework} snippet writes the schedules {list(kinds)}, not "
                            f"{task.schedule.kind!r}; nearest: the run under a constant schedule")


def model_lines(task: Task) -> list[str]:
    """`model` as the adapters build it: nn.Linear(d, 1), or the MLP of torch_network.py (nn.Sequential `net`, so
    named_parameters() gives net.0.weight, ...); float64 as torch users write it (the default dtype, set first)."""
    lines: list[str] = []
    dt = ", dtype=dtype" if task.dtype == "float64" else ""
    model = task.model
    if model.linear:
        lines.append(f"model = torch.nn.Linear({task.num_inputs}, 1{dt})   # the task's model: replace it with yours")
        return lines
    layers, fan_in = [], task.num_inputs
    for width in model.hidden:
        layers.append(f"torch.nn.Linear({fan_in}, {width}{dt})")
        if model.norm == "layer":
            layers.append(f"torch.nn.LayerNorm({width}, eps={py(model.norm_eps)}{dt})")
        layers.append(ACTIVATIONS[model.activation])
        fan_in = width
    layers.append(f"torch.nn.Linear({fan_in}, 1{dt})")
    body = "".join(f"\n            {layer}," for layer in layers)
    lines += ["class MLP(torch.nn.Module):",
              "    def __init__(self):",
              "        super().__init__()",
              f"        self.net = torch.nn.Sequential({body}\n        )",
              "",
              "    def forward(self, x):",
              "        return self.net(x)",
              "",
              "",
              "model = MLP()   # the task's model: replace it with yours"]
    return lines


def dtype_lines(task: Task) -> list[str]:
    if task.dtype != "float64":
        return []
    return ["torch.set_default_dtype(torch.float64)   # a float64 run: optimizer state (step counts) in float64 too",
            "dtype = torch.float64"]


def loss_lines(task: Task) -> list[str]:
    """`loss_fn(prediction, target)`: the task's loss as the adapters compute it (MSELoss, halved for half_mse)."""
    half = task.loss == "half_mse"
    return ["mse = torch.nn.MSELoss()",
            "",
            "",
            "def loss_fn(prediction, target):",
            f'    """The task\'s loss "{task.loss}": mean((prediction - target)^2){" / 2" if half else ""}."""',
            f"    return mse(prediction, target){' / 2' if half else ''}"]


def native_of(task: Task) -> dict[str, str]:
    """neutral tensor name -> torch's named_parameters() name, for the task's model."""
    if task.model.linear:
        return {"weight": "weight", "bias": "bias"}
    return {v: k for k, v in native_names(task.model.model_dump(), task.num_inputs).items()}


def penalty_lines(penalty, task: Task) -> list[str]:
    """`penalty(model)`: the loss penalty c2*sum(w^2) + c1*sum(|w|), term by term in the adapters' order."""
    terms = penalty_terms(penalty)
    if not terms:
        return ["# penalty: every coefficient is 0, so it adds nothing to the loss"]
    native = native_of(task)
    parts = [f"{py(coef)} * " + (f"torch.sum(named[{py(native[name])}].pow(2))" if kind == "l2"
                                 else f"torch.sum(torch.abs(named[{py(native[name])}]))") for name, kind, coef in terms]
    return ["def penalty(model):",
            f'    """The table\'s penalty (l2 = {py(penalty.l2)}, l1 = {py(penalty.l1)} on {penalty.params}): add it to '
            'the loss before backward(),',
            '    loss = loss_fn(model(x), y) + penalty(model)."""',
            "    named = dict(model.named_parameters())",
            "    return (" + "\n            + ".join(parts) + ")"]


def clip_lines(clip_grad_norm, norm_type, clip_grad_value) -> list[str]:
    """`clip_gradients(model)`, called between loss.backward() and optimizer.step() on every parameter."""
    if clip_grad_norm is not None:
        extra = "" if norm_type is None else f", norm_type={py(norm_type)}"
        call = f"torch.nn.utils.clip_grad_norm_(model.parameters(), {py(clip_grad_norm)}{extra})"
    elif clip_grad_value is not None:
        call = f"torch.nn.utils.clip_grad_value_(model.parameters(), {py(clip_grad_value)})"
    else:
        return []
    return ["def clip_gradients(model):",
            '    """Call it between loss.backward() and optimizer.step(): it clips the loss\'s gradient (a penalty',
            '    included); the optimizer adds its weight_decay inside step(), after it."""',
            f"    {call}"]


def scheduler_lines(task: Task, lr: float) -> list[str]:
    """`scheduler` for the task's schedule, as torch_run.scheduler() builds it (stepped after every optimizer step)."""
    schedule, sched = task.schedule, "torch.optim.lr_scheduler"
    if schedule.kind == "constant":
        return ["# the task's schedule is constant: no lr scheduler"]
    head = f"# the task's schedule {schedule.model_dump()}: call scheduler.step() after every optimizer.step()"
    if schedule.kind == "step":
        return [head, f"scheduler = {sched}.StepLR(optimizer, step_size={schedule.every}, gamma={py(schedule.factor)})"]
    cosine = f"{sched}.CosineAnnealingLR(optimizer, T_max={schedule.total}, eta_min={py(schedule.floor * lr)})"
    if task.steps - 1 <= schedule.total:
        return [head, f"scheduler = {cosine}"]
    return [head, f"# the task trains {task.steps} steps, past T_max = {schedule.total}: CosineAnnealingLR is "
            "periodic, so ConstantLR holds eta_min after it",
            f"cosine = {cosine}",
            f"hold = {sched}.ConstantLR(optimizer, factor={py(schedule.floor)}, total_iters={task.steps + 1})",
            f"scheduler = {sched}.SequentialLR(optimizer, [cosine, hold], milestones=[{schedule.total}])"]


def loop_lines(has_penalty: bool, has_clip: bool, has_scheduler: bool, step: str = "optimizer.step()") -> list[str]:
    lines = ["# one training step, as the adapter trains it:", "#   optimizer.zero_grad()",
             "#   loss = loss_fn(model(x), y)" + (" + penalty(model)" if has_penalty else ""), "#   loss.backward()"]
    lines += ["#   clip_gradients(model)"] if has_clip else []
    lines += [f"#   {step}"] + (["#   scheduler.step()"] if has_scheduler else [])
    return lines


def optimizer_lines(config: TorchRun, task: Task) -> list[str]:
    keywords = {k: getattr(config, k) for k in KEYWORDS[config.optimizer] if getattr(config, k) is not None}
    if "betas" in keywords:
        keywords["betas"] = tuple(keywords["betas"])
    call = f"torch.optim.{config.optimizer}"
    groups = config.groups()
    if groups is None:
        args = ", ".join(a for a in ("model.parameters()", kwargs(keywords)) if a)
        return [f"optimizer = {call}({args})"]
    builder = next((k for k in GROUP_KEYS[1:] if getattr(config, k)), None)
    lines = [f"# {builder}: {BUILDERS.get(builder, BUILDERS['timm_groups'])}, written out by name"] if builder else []
    lines.append("named = dict(model.named_parameters())")
    entries = []
    for names, wd in groups:
        params = ", ".join(f"named[{py(n)}]" for n in names)
        entries.append(f"    {{\"params\": [{params}]" + ("" if wd is None else f", \"weight_decay\": {py(wd)}") + "},"
                       + ("   # weight_decay: the constructor's" if wd is None else ""))
    named = {n for names, _ in groups for n in names}
    frozen = [n for n in torch_groups.names() if n not in named]
    if frozen:
        lines.append(f"# {frozen}: in no param group, so torch never updates them (frozen)")
    rest = kwargs(keywords)
    lines += [f"optimizer = {call}(["] + entries + [f"]{', ' + rest if rest else ''})"]
    return lines


def join_blocks(blocks: list[list[str]]) -> str:
    """Code blocks as one file: two blank lines around a def or class, one elsewhere (PEP 8)."""
    out: list[str] = []
    previous = None
    for block in (b for b in blocks if b):
        if previous is not None:
            is_def = any(line.startswith(("def ", "class ")) for line in block + previous)
            out += ["", ""] if is_def else [""]
        out += block
        previous = block
    return "\n".join(out) + "\n"


def snippet(config: TorchRun, task: Task) -> str:
    """The torch snippet of `config` for `task` (tools/snippet.py frames it)."""
    refuse_unrendered(config, RENDERED, "torch")
    refuse_schedule_kind(task, ("constant", "step", "cosine"), "torch")
    with tensor_scope(task.tensors):
        lr = DEFAULT_LR[config.optimizer] if config.lr is None else config.lr
        pen = penalty_lines(config.penalty, task) if config.penalty is not None else []
        clip = clip_lines(config.clip_grad_norm, config.norm_type, config.clip_grad_value)
        sched = scheduler_lines(task, lr)
        loop = loop_lines(any(line.startswith("def penalty") for line in pen), bool(clip),
                          any(line.startswith("scheduler =") for line in sched))
        return join_blocks([["import torch"], dtype_lines(task), model_lines(task), loss_lines(task), optimizer_lines(config, task), pen,
                            clip, sched, loop])
