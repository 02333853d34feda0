"""wdparity.describe() of a live torch.optim optimizer or torch.optim.lr_scheduler: its defaults and param groups as a
torch run table, and a scheduler's schedule as the table's run-level `schedule` key.

The framework is imported inside read_live(), which the adapter's `Backend.read_live` calls in the user's
process: the core never imports it. A scheduler is read only where its lr at every step t is one of the neutral
schedules (spec/models.py), as torch_run.scheduler() builds them; every other scheduler is listed with what it does
and the nearest neutral schedule. Line numbers are torch 2.13.0's torch/optim/lr_scheduler.py.
Each reader returns (run table, [(key, value, why not read)], notes); tools/live.py turns them into a Description.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import ValidationError

from wdparity.run.backend import ONE_LINEAR
from wdparity.spec.models import CosineSchedule, StepSchedule

SRC = "torch/optim/lr_scheduler.py"
# The schedulers that are not a neutral schedule: what each does, and the nearest neutral schedule
REFUSED = {
    "LambdaLR": (f"sets lr = base_lr*lr_lambda(t) with an opaque Python callable ({SRC}:441-468) that describe() "
                 "does not call", "the StepLR, ExponentialLR or CosineAnnealingLR that lr_lambda computes"),
    "MultiplicativeLR": (f"multiplies the lr by lr_lambda(t) at every step, an opaque Python callable ({SRC}:558-591)",
                         "ExponentialLR(gamma) where lr_lambda returns a constant gamma"),
    "ConstantLR": (f"is a warm-up: lr*factor for total_iters steps, then lr ({SRC}:847-855)",
                   "a constant lr (no scheduler)"),
    "LinearLR": (f"ramps the lr linearly from lr*start_factor to lr*end_factor over total_iters steps ({SRC}:937-"
                 "981)",
                 "a constant lr (no scheduler)"),
    "PolynomialLR": (f"is lr*(1 - t/total_iters)^power, a polynomial decay with no neutral kind ({SRC}:1276-1314)",
                     "CosineAnnealingLR(T_max=total_iters), which has the same ends"),
    "CosineAnnealingWarmRestarts": (f"restarts the cosine at the base lr every T_0 (times T_mult) steps ({SRC}:2170-"
                                    "2210)", "CosineAnnealingLR(T_max=T_0) held at eta_min, equal for t < T_0"),
    "OneCycleLR": (f"warms the lr up to max_lr and anneals it to max_lr/(div_factor*final_div_factor), cycling the "
                   f"momentum (or betas) too ({SRC}:2546-2606)", "CosineAnnealingLR, without the warm-up"),
    "CyclicLR": (f"cycles the lr between base_lr and max_lr and the momentum the other way ({SRC}:2001-2071)",
                 "a constant lr (no scheduler)"),
    "ReduceLROnPlateau": (f"lowers the lr when the metric passed to step() stops improving ({SRC}:1696-1722): its "
                          "schedule depends on the run's losses", "a constant lr, equal until the first reduction"),
    "ChainedScheduler": (f"steps several schedulers at once, multiplying their factors ({SRC}:1539-1545)",
                         "the one modelled scheduler of the chain, if it holds one"),
}


def read_live(obj, model, params=None) -> tuple[dict, list[tuple], list[str]]:
    import torch

    if not isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
        return _read_optimizer(obj, model, None)
    schedule, skipped, notes = _read_schedule(obj, torch.optim.lr_scheduler)
    table, unread, _ = _read_optimizer(obj.optimizer, model, type(obj).__name__ if schedule is None else "")
    if schedule is not None and schedule["kind"] != "constant":
        table["schedule"] = schedule
    return table, unread + skipped, notes


def _read_optimizer(opt, model, scheduler: Optional[str]) -> tuple[dict, list[tuple], list[str]]:
    """`scheduler`: None for an optimizer read alone, "" under a modelled scheduler (lr is its base lr,
    `initial_lr`), else the name of the scheduler that describe() does not model."""
    from wdparity_backends.torch_run import KEYWORDS, MUST_BE_FALSE

    name = type(opt).__name__
    if name not in KEYWORDS:
        raise TypeError(f"torch.optim.{name} is not modelled: describe() reads {sorted(KEYWORDS)}")
    skipped: list[tuple] = []
    table: dict[str, Any] = {"backend": "torch", "optimizer": name}
    groups = opt.param_groups
    for key in KEYWORDS[name]:
        if key == "lr" and scheduler == "":   # the schedule starts from the base lr that the scheduler recorded
            values = [g.get("initial_lr", g["lr"]) for g in groups]
        else:
            values = [g.get(key, opt.defaults.get(key)) for g in groups]
        value = values[0] if key == "weight_decay" else None
        if key != "weight_decay":
            if any(_plain(v) != _plain(values[0]) for v in values):
                skipped.append((f"param_groups[*].{key}", [_plain(v) for v in values],
                                           f"differs between param groups: a per-group {key} is outside the neutral "
                                           "model (only weight_decay is per tensor); .run keeps the first group's"))
            value = values[0]
        value = _plain(value)
        if value is None or (isinstance(value, bool) and not value and key not in ("nesterov", "amsgrad", "centered",
                                                                                   "decoupled_weight_decay")):
            continue
        if key in MUST_BE_FALSE and value is True:
            skipped.append((key, True, MUST_BE_FALSE[key]))
            continue
        table[key] = value
    # one group: its own weight_decay is the run's (SGD([{"params": ..., "weight_decay": 0.2}]) decays by 0.2, not by
    # the constructor's default)
    top_wd = _plain((groups[0] if len(groups) == 1 else opt.defaults).get("weight_decay", opt.defaults.get("weight_decay")))
    table["weight_decay"] = top_wd
    for i, g in enumerate(groups):
        implied = {"decoupled_weight_decay"} if name == "AdamW" and g.get("decoupled_weight_decay") else set()
        if scheduler == "":
            implied.add("initial_lr")   # read above as the table's lr
        for key in sorted(set(g) - set(KEYWORDS[name]) - {"params"} - implied):   # AdamW is Adam(decoupled=True)
            skipped.append((f"param_groups[{i}].{key}", _plain(g[key]), _group_key_reason(key, scheduler)))
    tensors = _torch_tensors(model, groups)
    if tensors is not None:
        table["param_groups"] = tensors
    return table, skipped, []


def _group_key_reason(key: str, scheduler: Optional[str]) -> str:
    if scheduler:
        return f"is set by the {scheduler}, which describe() does not model (see `scheduler`)"
    if key == "initial_lr":
        return ("is the base lr that a torch.optim.lr_scheduler recorded when it was built on this optimizer (the "
                "group's `lr`, read into .run, is the scheduled one): pass the scheduler to describe() to read its "
                "schedule")
    return "is not a torch.optim keyword (a group name, or a key set by other code): outside the neutral model"


def _read_schedule(sched, S) -> tuple[Optional[dict], list[tuple], list[str]]:
    """(neutral schedule dict or None when not modelled, skipped, notes) of a torch.optim.lr_scheduler object."""
    name = type(sched).__name__
    groups = sched.optimizer.param_groups
    base = [_plain(g.get("initial_lr", g["lr"])) for g in groups]
    if type(sched) in (S.StepLR, S.ExponentialLR, S.CosineAnnealingLR, S.SequentialLR):
        schedule, skipped, notes = _modelled(sched, S, name, base[0])
    else:
        what, nearest = REFUSED.get(name, ("is not a torch.optim.lr_scheduler class describe() models (a subclass "
                                           "may override get_lr)", "StepLR, ExponentialLR or CosineAnnealingLR"))
        if name == "MultiStepLR":
            what, nearest = _multistep(sched)
        schedule, skipped, notes = None, [("scheduler", name, f"{name} {what}: not a neutral schedule; nearest: "
                                           f"{nearest}")], []
    if schedule is None:
        now = _plain(groups[0]["lr"])
        return None, [(k, v, f"{why} (.run has the optimizer's current lr {now!r} as a constant)")
                      for k, v, why in skipped], notes
    done = sched.last_epoch
    if done > 0:   # never read as fresh: the table's schedule starts at t = 0
        now = _plain(groups[0]["lr"])
        skipped.append(("last_epoch", done, f"the {name} has stepped {done} times: the optimizer's next step uses "
                        f"lr_t at t = {done} ({now!r}), while .run's schedule starts at t = 0 from the base lr "
                        f"{base[0]!r}; the optimizer's own state (moments, step counts) is not read either"))
    elif any(_plain(g["lr"]) != b for g, b in zip(groups, base)):
        skipped.append(("param_groups[*].lr", [_plain(g["lr"]) for g in groups], f"differs from the {name}'s base lr "
                        f"{base} before its first step: something other than this scheduler set it; .run has the "
                        "base lr"))
    return schedule, skipped, notes


def _modelled(sched, S, name: str, lr: float) -> tuple[Optional[dict], list[tuple], list[str]]:
    if type(sched) is S.StepLR:   # lr*gamma at every multiple of step_size (656-658): lr*gamma^(t // step_size)
        return _valid(StepSchedule, name, kind="step", every=sched.step_size, factor=_plain(sched.gamma))
    if type(sched) is S.ExponentialLR:   # lr*gamma at every step (1062-1064)
        return _valid(StepSchedule, name, kind="step", every=1, factor=_plain(sched.gamma))
    if type(sched) is S.CosineAnnealingLR:
        schedule, skipped, _ = _cosine(sched, name, lr)
        t = sched.T_max
        return schedule, skipped, [] if schedule is None else [
            f"CosineAnnealingLR is periodic ({SRC}:1440-1447): it equals the neutral cosine, which holds the floor "
            f"after total = {t}, for t <= {t} and rises again from step t = {t + 1}, so it is this schedule for runs "
            f"of at most {t + 1} steps (longer runs: SequentialLR([CosineAnnealingLR, ConstantLR(factor=eta_min/lr)]"
            f", milestones=[{t}]), as torch_run.scheduler() builds it)"]
    return _sequential(sched, S, lr)


def _cosine(cos, name: str, lr: float) -> tuple[Optional[dict], list[tuple], list[str]]:
    """eta_min + (lr - eta_min)*(1 + cos(pi*t/T_max))/2 (recursive form, 1448-1454) = lr*eta_t, floor eta_min/lr."""
    bases = {_plain(lr_) for lr_ in cos.base_lrs}
    if len(bases) > 1 and cos.eta_min:
        return _refused(name, f"eta_min = {cos.eta_min!r} is one absolute lr for param groups of base lrs "
                        f"{sorted(bases)}, so each group's floor eta_min/lr differs", "the first group's cosine")
    return _valid(CosineSchedule, name, kind="cosine", total=cos.T_max, floor=_plain(cos.eta_min) / lr)


def _sequential(seq, S, lr: float) -> tuple[Optional[dict], list[tuple], list[str]]:
    """SequentialLR([CosineAnnealingLR(T, eta_min), ConstantLR(factor=eta_min/lr, total_iters=K)], milestones=[T]):
    the cosine to t = T - 1, then (1191-1192) ConstantLR's closed form lr*factor from t = T (857-871) until it
    restores lr*factor/factor at t = T + K (853-855)."""
    inner, milestones = seq._schedulers, list(seq._milestones)
    names = [type(s).__name__ for s in inner]
    form = f"SequentialLR({names}, milestones={milestones})"
    cos = inner[0] if len(inner) == 2 and type(inner[0]) is S.CosineAnnealingLR else None
    hold = inner[1] if cos is not None and type(inner[1]) is S.ConstantLR else None
    if hold is None or milestones != [cos.T_max] or hold.total_iters < 1:
        nearest = ("the cosine alone, CosineAnnealingLR held at its floor" if "CosineAnnealingLR" in names else
                   "the modelled scheduler in it, if any, else a constant lr")
        return _refused("SequentialLR", f"{form}: only [CosineAnnealingLR(T_max, eta_min), ConstantLR(factor="
                        "eta_min/lr, total_iters >= 1)] at milestones=[T_max], a cosine that holds its floor (as "
                        "torch_run.scheduler() builds it), is one", nearest)
    schedule, skipped, _ = _cosine(cos, "SequentialLR", lr)
    if schedule is None:
        return schedule, skipped, []
    factor, t, k = _plain(hold.factor), cos.T_max, hold.total_iters
    if abs(factor * lr - _plain(cos.eta_min)) > 1e-12 * lr:
        return _refused("SequentialLR", f"{form}: the cosine ends at eta_min = {cos.eta_min!r} and the ConstantLR "
                        f"holds lr*factor = {factor * lr!r}, a jump at t = {t}",
                        f"ConstantLR(factor={_plain(cos.eta_min) / lr!r})")
    zero = "; with factor 0 it raises ZeroDivisionError there" if not factor else ""
    return {**schedule, "floor": factor}, [], [
        f"{form} holds the floor lr*{factor!r} from t = {t} until ConstantLR's total_iters = {k} run out at t = "
        f"{t + k}, where it restores the base lr ({SRC}:853-855{zero}) while the neutral cosine holds on: it is this "
        f"schedule for runs of at most {t + k} steps"]


def _multistep(sched) -> tuple[str, str]:
    """What MultiStepLR does, and the StepLR nearest to it with the first step where the two part."""
    ms = sorted(sched.milestones.elements())   # a milestone listed twice multiplies by gamma twice
    k = ms[0] if ms else 1
    parts = [min(m, k * (i + 1)) for i, m in enumerate(ms) if m != k * (i + 1)]
    until = parts[0] if parts else k * (len(ms) + 1)
    return (f"multiplies the lr by gamma at each of its milestones {ms} and then holds it ({SRC}:719-752), while the "
            "neutral step schedule decays every `every` steps for ever",
            f"StepLR(step_size={k}, gamma={sched.gamma!r}), equal for t < {until}")


def _valid(model, name: str, **fields) -> tuple[Optional[dict], list[tuple], list[str]]:
    """The neutral schedule dict, or the scheduler refused with the spec's reason for its values."""
    try:
        return model.model_validate(fields).model_dump(), [], []
    except ValidationError as exc:
        err = exc.errors()[0]
        values = ", ".join(f"{k} = {v!r}" for k, v in fields.items() if k != "kind")
        return _refused(name, f"read as the neutral {fields['kind']} schedule {values}, whose {err['loc'][0]} "
                        f"{err['msg'].lower()}", "a constant lr (no scheduler)")


def _refused(name: str, why: str, nearest: str) -> tuple[None, list[tuple], list[str]]:
    return None, [("scheduler", name, f"{name}: {why}: not a neutral schedule; nearest: {nearest}")], []


def _torch_tensors(model, groups) -> Optional[list[dict]]:
    """param_groups by neutral name; None when one group holds both tensors (the table needs none)."""
    if model is None:
        if len(groups) == 1:
            return None
        raise ValueError("this optimizer has several param groups: pass model= (the nn.Module) so that describe() "
                         "can name each group's tensors")
    named = list(model.named_parameters())
    neutral = {}
    for pname, p in named:
        leaf = pname.rsplit(".", 1)[-1]
        shape_ok = (p.ndim == 2 and p.shape[0] == 1) if leaf == "weight" else tuple(p.shape) == (1,)
        if leaf not in ("weight", "bias") or leaf in neutral.values() or not shape_ok:
            raise ValueError(f"model parameter {pname!r}: {ONE_LINEAR}")
        neutral[id(p)] = leaf
    if len(neutral) != 2:
        raise ValueError(f"model has {len(neutral)} parameters: {ONE_LINEAR}")
    out = []
    for i, g in enumerate(groups):
        names = []
        for p in g["params"]:
            if id(p) not in neutral:
                raise ValueError(f"param_groups[{i}] holds a tensor that is not a parameter of `model`")
            names.append(neutral[id(p)])
        entry: dict[str, Any] = {"params": names}
        if _plain(g.get("weight_decay")) != _plain(groups[0].get("weight_decay")) or len(groups) > 1:
            entry["weight_decay"] = _plain(g["weight_decay"])
        out.append(entry)
    if len(out) == 1 and sorted(out[0]["params"]) == ["bias", "weight"]:
        return None
    return out   # a tensor in no group is frozen, as torch leaves it


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:   # a 0-d tensor lr
        return v.item()
    return v
