"""The torch run's vocabulary (torch.optim's class names and keywords, param groups) and its schedule as
torch.optim.lr_scheduler objects.

Shared by the adapter (torch_backend.py: describe, realize, train) and the batched grid (torch_batch.py),
so neither imports the other's module. The sources of every statement: docs/adapters/torch.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, PrivateAttr, model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import NonNeg, Penalty, Positive, Strict, Unit, fail

from . import torch_groups

# One row per torch.optim class: its constructor's numeric defaults and its keywords (tests/test_torch_facts.py
# reads both from the installed signatures).
DEFAULTS = {
    "SGD": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0},
    "Adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "AdamW": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2},
    "RMSprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0},
    "Adagrad": {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
    "Adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
    "Adamax": {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "NAdam": {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "momentum_decay": 4e-3},
    "RAdam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
}
DEFAULT_LR = {name: d["lr"] for name, d in DEFAULTS.items()}
DEFAULT_WD = {name: d["weight_decay"] for name, d in DEFAULTS.items()}
KEYWORDS = {
    "SGD": ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "foreach", "differentiable",
            "fused"),
    "Adam": ("lr", "betas", "eps", "weight_decay", "amsgrad", "foreach", "maximize", "capturable", "differentiable",
             "fused", "decoupled_weight_decay"),
    "AdamW": ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "capturable",
              "differentiable", "fused"),
    "RMSprop": ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "capturable", "foreach", "maximize",
                "differentiable"),
    "Adagrad": ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "foreach", "maximize",
                "differentiable", "fused"),
    "Adadelta": ("lr", "rho", "eps", "weight_decay", "foreach", "capturable", "maximize", "differentiable"),
    "Adamax": ("lr", "betas", "eps", "weight_decay", "foreach", "maximize", "differentiable", "capturable"),
    "NAdam": ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay", "foreach", "maximize",
              "capturable", "differentiable"),
    "RAdam": ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "foreach", "maximize", "capturable",
              "differentiable"),
}
MUST_BE_FALSE = {
    "maximize": "maximize negates the gradient (torch/optim/sgd.py:344): gradient ascent is outside the neutral model",
    "capturable": "capturable (CUDA graphs) is not modelled by this adapter",
    "differentiable": "differentiable (autograd through the step) is not modelled by this adapter",
}
GROUP_ONLY = ("params", "weight_decay")


class ParamGroup(Strict):
    """One torch param group, tensors by torch's names (torch_groups.py: `weight`/`bias` for the linear model,
    `net.0.weight`, ... for a network); a missing weight_decay inherits the constructor's."""

    params: list[str]
    weight_decay: Optional[NonNeg] = None

    @model_validator(mode="before")
    @classmethod
    def _per_group_hyperparameters(cls, data: Any) -> Any:
        for key in sorted(data) if isinstance(data, dict) else []:
            if key not in GROUP_ONLY and key in {k for keys in KEYWORDS.values() for k in keys}:
                raise fail(key, data[key], "cannot be set per group here: only `params` and `weight_decay` are "
                           "(a per-tensor lr or optimizer setting is outside the neutral model)")
        return data

    @model_validator(mode="after")
    def _names(self):
        torch_groups.check("params", self.params)
        return self


class TorchRun(Strict):
    """One torch.optim run. Tensors are named as `model.named_parameters()` gives them (torch_groups.py). Besides
    explicit `param_groups`, three group builders torch users run, each two groups (decay: `weight_decay`, which
    must be set; no decay: 0.0), over every parameter:
      hf_trainer_groups = true    transformers' Trainer (get_decay_parameter_names): LayerNorm tensors and names
                                  containing "bias" (or a norm pattern) undecayed
      timm_groups = true          timm's param_groups_weight_decay: ndim <= 1, names ending ".bias", and the
                                  fnmatch patterns of `no_weight_decay_list` (model.no_weight_decay()) undecayed
      no_decay = ["bias", ...]    the HF examples' list: a name containing any entry is undecayed; an entry in
                                  no name is an error (["bias", "LayerNorm.weight"] on this model's names)"""

    optimizer: Literal["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam"]
    lr: Optional[Positive] = None
    momentum: Optional[Unit] = None
    dampening: Optional[Unit] = None
    nesterov: Optional[bool] = None
    betas: Optional[list[Unit]] = Field(None, min_length=2, max_length=2)
    eps: Optional[Positive] = None
    alpha: Optional[Unit] = None
    centered: Optional[bool] = None
    rho: Optional[Unit] = None
    lr_decay: Optional[NonNeg] = None
    initial_accumulator_value: Optional[NonNeg] = None
    momentum_decay: Optional[NonNeg] = None
    weight_decay: Optional[NonNeg] = None
    amsgrad: Optional[bool] = None
    maximize: Optional[bool] = None
    foreach: Optional[bool] = None
    fused: Optional[bool] = None
    capturable: Optional[bool] = None
    differentiable: Optional[bool] = None
    decoupled_weight_decay: Optional[bool] = None
    param_groups: Optional[list[ParamGroup]] = None
    hf_trainer_groups: Optional[bool] = None
    timm_groups: Optional[bool] = None
    no_weight_decay_list: Optional[list[str]] = None
    no_decay: Optional[list[str]] = None
    penalty: Optional[Penalty] = None
    # torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm, norm_type) or clip_grad_value_(...,
    # clip_grad_value) between backward() and step() (torch_clip.py); norm_type = inf is accepted to be refused
    clip_grad_norm: Optional[Positive] = None
    norm_type: Optional[Annotated[float, Field(allow_inf_nan=True)]] = None
    clip_grad_value: Optional[Positive] = None
    # resolved while validated (inside the task's tensor scope): torch name -> neutral name; the groups
    _names: dict = PrivateAttr(default_factory=dict)
    _groups: Optional[list] = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self):
        check_keywords(self, self.optimizer, KEYWORDS, "torch.optim.{optimizer}")
        for key, why in MUST_BE_FALSE.items():
            if getattr(self, key):
                raise fail(key, True, f"must be false: {why}")
        if self.momentum_decay == 0:
            raise fail("momentum_decay", 0.0, "must be > 0 here: 0 makes torch's mu_t = b1*(1 - 0.5*0.96^0) = b1/2 "
                       "at every step (torch/optim/nadam.py:347), a constant the neutral NAdam cannot state "
                       "(momentum_decay > 0, or None for mu_t = b1)")
        if self.foreach and self.fused:
            raise fail("fused", True, "cannot be true together with foreach (torch raises RuntimeError)")
        if self.nesterov and (not self.momentum or self.dampening):
            raise fail("nesterov", True, "requires momentum > 0 and dampening = 0 (torch/optim/sgd.py:63)")
        if self.dampening and not self.momentum:
            raise fail("dampening", self.dampening, "needs momentum > 0: torch applies dampening only to the momentum "
                       "buffer (torch/optim/sgd.py:357-364) and silently ignores it without one")
        if self.clip_grad_norm is not None and self.clip_grad_value is not None:
            raise fail("clip_grad_value", self.clip_grad_value, "cannot be set together with clip_grad_norm here: the "
                       "neutral model has one clipping per run (in which order the two calls run would matter)")
        if self.norm_type is not None and self.clip_grad_norm is None:
            raise fail("norm_type", self.norm_type, "belongs to clip_grad_norm (torch.nn.utils.clip_grad_norm_)")
        if self.norm_type is not None and self.norm_type != 2.0:
            raise fail("norm_type", self.norm_type, "must be 2.0 here: the neutral global_norm is the Euclidean "
                       "norm; torch's norm_type = p takes the p-norm, inf the largest |g| (torch/nn/utils/"
                       "clip_grad.py:95-107)")
        self._names = torch_groups.names()
        self._groups = self._resolve_groups()
        if self._groups is not None:
            seen = {self._names[n] for names, _ in self._groups for n in names}
            if self.clip_grad_norm is not None and seen != set(self._names.values()):
                missing = [n for n, t in self._names.items() if t not in seen]
                raise fail("clip_grad_norm", self.clip_grad_norm, f"cannot be used with a tensor that no param group "
                           f"names ({missing}) here: optimizer.zero_grad() zeroes only its groups' "
                           "params (torch/optim/optimizer.py:1058-1062), so that tensor's .grad accumulates over the "
                           "steps and clip_grad_norm_(model.parameters()) counts the sum in its norm, which the "
                           "neutral model does not state")
            frozen = [name for name in (self.penalty.params if self.penalty else []) if name not in seen]
            if frozen:
                raise fail("penalty.params", self.penalty.params, f"names {frozen}, which no param group names: torch "
                           "never updates it (frozen), so its penalty would change nothing")
        return self

    def _resolve_groups(self) -> Optional[list]:
        """[(torch names, weight_decay or None)] of the explicit or built groups; None: model.parameters()."""
        built = [k for k in ("param_groups", "hf_trainer_groups", "timm_groups", "no_decay") if getattr(self, k)]
        if self.param_groups is not None and not self.param_groups:
            raise fail("param_groups", [], "must hold at least one group")
        if len(built) > 1:
            raise fail(built[1], getattr(self, built[1]), f"cannot be set together with {built[0]}: each gives the "
                       "optimizer its param groups")
        if self.no_weight_decay_list is not None and not self.timm_groups:
            raise fail("no_weight_decay_list", self.no_weight_decay_list, "belongs to timm_groups = true (timm's "
                       "param_groups_weight_decay(model, no_weight_decay_list=...))")
        for key in ("hf_trainer_groups", "timm_groups"):
            if getattr(self, key) is False:
                raise fail(key, False, "must be true or absent (absent: no group builder)")
        if built and built[0] != "param_groups" and self.weight_decay is None:
            raise fail(built[0], getattr(self, built[0]), "needs weight_decay: the decay group's value (the Trainer's "
                       "args.weight_decay, timm's weight_decay); the other group's is 0.0")
        if self.param_groups is not None:
            seen: set[str] = set()
            for i, group in enumerate(self.param_groups):
                twice = seen.intersection(group.params)
                if twice:
                    raise fail(f"param_groups[{i}].params", group.params, f"names {sorted(twice)} again: "
                               "some parameters appear in more than one parameter group (torch/optim/optimizer.py:1187)")
                seen.update(group.params)
            return [(list(g.params), g.weight_decay) for g in self.param_groups]
        wd = self.weight_decay
        if self.hf_trainer_groups:
            decay, rest = torch_groups.hf_trainer()
            return [(decay, wd), (rest, 0.0)]
        if self.timm_groups:
            off, on = torch_groups.timm(self.no_weight_decay_list or [])
            return [(off, 0.0), (on, wd)]
        if self.no_decay is not None:
            decay, rest = torch_groups.no_decay(self.no_decay)
            return [(decay, wd), (rest, 0.0)]
        return None

    def groups(self) -> Optional[list]:
        """[(torch names, weight_decay or None)] the optimizer is given, in order; None: model.parameters()."""
        return self._groups

    def per_tensor_weight_decay(self) -> dict[str, float]:
        """weight_decay of each trained tensor (neutral names): its group's, else the constructor's, else the
        optimizer's default."""
        top = DEFAULT_WD[self.optimizer] if self.weight_decay is None else self.weight_decay
        if self._groups is None:
            return {name: top for name in self._names.values()}
        out = {}
        for names, wd in self._groups:
            for name in names:
                out[self._names[name]] = top if wd is None else wd
        return out

    @property
    def frozen(self) -> list[str]:
        """Tensors (neutral names) that no param group names: torch never updates them."""
        if self._groups is None:
            return []
        named = {self._names[n] for names, _ in self._groups for n in names}
        return [name for name in self._names.values() if name not in named]

    @property
    def decoupled(self) -> bool:
        return self.optimizer == "AdamW" or bool(self.decoupled_weight_decay)


def set_up(torch, dtype: str):
    """The worker's torch settings for a run in `dtype`; returns the torch dtype. The default dtype is the run's, as
    torch.set_default_dtype(torch.float64) is how a float64 torch run is written: optimizers keep scalar state
    (each step count, NAdam's mu_product) in it (torch/optim/optimizer.py:210-215), and a float32 mu_product moves
    a float64 NAdam run off its float64 semantics (tests/test_torch_facts.py measures by how much)."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    torch.set_default_dtype(torch_dtype)
    return torch_dtype


def linear_model(torch, data: dict, dtype):
    """nn.Linear(d, 1) in `dtype` with the task's initial weight and bias copied in bit-identically, and the
    training data as tensors (y as (n, 1): no (n, n) broadcast in MSELoss). Shared with the fastai adapter."""
    X = torch.as_tensor(data["X_train"], dtype=dtype)
    y = torch.as_tensor(data["y_train"], dtype=dtype).reshape(-1, 1)
    d = X.shape[1]
    net = torch.nn.Linear(d, 1, dtype=dtype)
    with torch.no_grad():
        net.weight.copy_(torch.as_tensor(data["w0"], dtype=dtype).reshape(1, d))
        net.bias.copy_(torch.as_tensor(data["b0"], dtype=dtype).reshape(1))
    return net, X, y


def batch_loss(s, index):
    """The loss of the rows `index` as a user writes it: MSELoss (halved for half_mse) plus the loss penalty, term by
    term; `s` holds torch, net, X, y, mse, half, penalty ((tensor, kind, coef) terms) and tensors (name -> param)."""
    loss = s.mse(s.net(s.X[index]), s.y[index])
    if s.half:
        loss = loss / 2
    for name, kind, coef in s.penalty:
        p = s.tensors[name]
        loss = loss + coef * (s.torch.sum(p.pow(2)) if kind == "l2" else s.torch.sum(s.torch.abs(p)))
    return loss


def scheduler(torch, optimizer, schedule: dict, lr: float, steps: int):
    """The run's schedule as torch.optim.lr_scheduler objects (stepped once per optimizer step)."""
    sched = torch.optim.lr_scheduler
    if schedule["kind"] == "step":
        return sched.StepLR(optimizer, step_size=int(schedule["every"]), gamma=float(schedule["factor"]))
    if schedule["kind"] == "cosine":
        total, floor = int(schedule["total"]), float(schedule.get("floor", 0.0))
        cosine = sched.CosineAnnealingLR(optimizer, T_max=total, eta_min=floor * lr)
        if steps - 1 <= total:
            return cosine
        # CosineAnnealingLR is periodic (lr_scheduler.py:1440): hold eta_min after `total` instead
        hold = sched.ConstantLR(optimizer, factor=floor, total_iters=steps + 1)
        return sched.SequentialLR(optimizer, [cosine, hold], milestones=[total])
    return None


def penalty_table(l2: list, l1: list) -> dict:
    """The `penalty` run key for at most one L2 and one L1 loss rule ({} without): l2 is the loss's factor, half
    the rule's gradient coefficient (d/dw l2*||w||^2 = 2*l2*w)."""
    penalty = {}
    if l2:
        penalty.update({"l2": l2[0].coefficient / 2.0, "params": list(l2[0].params)})
    if l1:
        penalty.update({"l1": l1[0].coefficient, "params": list(l1[0].params)})
    return {"penalty": penalty} if penalty else {}
