"""The `torch` backend: torch.optim's SGD, Adam(W), RMSprop, Adagrad, Adadelta, Adamax, NAdam and RAdam, param
groups, loss penalties and gradient clipping (torch.nn.utils.clip_grad_norm_ / clip_grad_value_), as a user
writes them.

PyTorch is where most "weight decay" questions start (seed 000: a weight-only param group and an lr
ten times too large). This adapter states what each torch knob means in neutral terms (describe),
writes the torch setting for given semantics (realize; the class <-> family tables are torch_vocab.py),
and trains nn.Linear with the real optimizer and lr_scheduler objects (the template's build/step/read
hooks). Every statement it makes about torch, with its source in torch 2.13.0 and the test that
measures it: docs/adapters/torch.md.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from wdparity.engine.data import batches
from wdparity.run.adapter import Adapter, refuse_l1
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity.spec.network import tensor_scope
from wdparity.spec.rules import penalty_terms, rules_from_coefficients

from . import torch_groups
from .torch_clip import clip_spec, clipper, realize_clip, refuse_terms
from .torch_network import network
from .torch_network import read as read_network
from .torch_run import DEFAULT_LR, KEYWORDS, TorchRun, batch_loss, linear_model, penalty_table, set_up
from .torch_run import scheduler as lr_scheduler
from .torch_vocab import COUPLED_ONLY, DECOUPLED_CALL, DECOUPLED_SOURCE, native_optimizer, optimizer_spec

TORCH_L1_AT_ZERO = 0.0   # torch.autograd.grad(torch.abs(x), x) at x = 0 is 0 (abs' = sgn); measured in the tests


def param_groups(per: dict[str, float], tensors: list[str]) -> list[dict]:
    """One param group per weight_decay value (0.0 where `per` has none), torch's names, in layout order."""
    native = {neutral: name for name, neutral in torch_groups.names().items()}
    groups: dict[float, list[str]] = {}
    for name in tensors:
        groups.setdefault(per.get(name, 0.0), []).append(native[name])
    return [{"params": names, "weight_decay": wd} for wd, names in groups.items()]


class TorchBackend(Adapter):
    name = "torch"
    modules = ("torch",)
    install_hint = "pip install 'wdparity[torch]'"
    Config = TorchRun
    models_networks = True   # the task's MLP as nn.Sequential (torch_network.py), trained one run at a time
    live_roots, live_label = ("torch",), "torch.optim"

    def read_live(self, obj, model, params):
        from .torch_live import read_live
        return read_live(obj, model, params)

    def snippet(self, config, task):
        from .torch_snippet import snippet
        return snippet(config, task)

    def findings(self, config: TorchRun, task: Task) -> list[dict]:
        """Documented departures from what a reader of the call may expect, each modelled by describe()."""
        out = []
        if config.optimizer == "AdamW" and (config.weight_decay is None or any(
                g.weight_decay is None for g in config.param_groups or [])):
            out.append({"id": "adamw-default-weight-decay", "modelled": True,
                        "text": "a tensor without an explicit weight_decay gets AdamW's default 1e-2",
                        "source": "torch/optim/adamw.py:27; torch/optim/optimizer.py:1163 (add_param_group setdefault)"})
        if config.optimizer == "Adagrad" and config.lr_decay:
            out.append({"id": "adagrad-lr-decay-is-a-schedule", "modelled": True,
                        "text": "lr_decay divides the lr by 1 + (t-1)*lr_decay; it does not decay the weights",
                        "source": "torch/optim/adagrad.py:402"})
        if config.optimizer == "RAdam":
            out.append({"id": "radam-unrectified-first-steps", "modelled": True,
                        "text": "while rho_t <= 5 (steps 1-5 for beta2 = 0.999) RAdam steps lr*m_hat, SGD with "
                                "bias-corrected momentum, without the second moment",
                        "source": "torch/optim/radam.py:349-358"})
        if config.clip_grad_norm is not None:
            out.append({"id": "clip-grad-norm-eps", "modelled": True,
                        "text": "clip_grad_norm_ scales by min(1, max_norm / (total_norm + 1e-6)), over every tensor "
                                "of model.parameters()",
                        "source": "torch/nn/utils/clip_grad.py:164-168"})
        if (config.clip_grad_norm is not None or config.clip_grad_value is not None) and any(
                config.per_tensor_weight_decay().values()):
            out.append({"id": "clipping-before-weight-decay", "modelled": True,
                        "text": "the clipping sees the loss's gradient (a penalty included); weight_decay is added "
                                "inside step(), after it, and is never clipped",
                        "source": "torch/optim/sgd.py:353; torch/optim/adam.py:419,428"})
        if config.penalty and config.penalty.l1:
            out.append({"id": "l1-at-zero-0", "modelled": True, "text": "d|w|/dw at w = 0 is 0 (abs' = sgn)",
                        "source": "tools/autograd/derivatives.yaml (abs: grad * self.sgn())"})
        return out

    def describe(self, config: TorchRun, task: Task) -> Semantics:
        """Neutral semantics of a torch run. Rule order: gradient-coupled (weight_decay, then the penalty's
        L2 and L1), then decoupled (AdamW's weight_decay, or that of the decoupled_weight_decay flag)."""
        with tensor_scope(task.tensors):
            return self._describe(config, task)

    def _describe(self, config: TorchRun, task: Task) -> Semantics:
        lr = DEFAULT_LR[config.optimizer] if config.lr is None else config.lr
        optimizer = optimizer_spec(config, lr)
        coupling = "decoupled" if config.decoupled else "gradient"
        wd = rules_from_coefficients(config.per_tensor_weight_decay(), coupling=coupling,
                                     scale="lr" if config.decoupled else None)
        pen = config.penalty.rules(l1_at_zero=TORCH_L1_AT_ZERO) if config.penalty else []
        decay = wd + pen if not config.decoupled else pen + wd
        return Semantics(optimizer=optimizer, decay=decay, loss=task.loss, schedule=task.schedule,
                         frozen=config.frozen, clip=clip_spec(config.clip_grad_norm, config.clip_grad_value))

    def realize(self, semantics: Semantics, task: Task) -> dict:
        """The torch run table; a network's param groups name tensors as named_parameters() does (net.0.weight)."""
        with tensor_scope(task.tensors):
            return self._realize(semantics, task)

    def _realize(self, semantics: Semantics, task: Task) -> dict:
        opt, rules = semantics.optimizer, list(semantics.decay)
        decoupled = [r for r in rules if r.coupling == "decoupled"]
        run = native_optimizer(opt, bool(decoupled))   # refuses the optimizer fields no torch class computes
        refuse_l1(rules, TORCH_L1_AT_ZERO, "torch")
        clipping = realize_clip(semantics)   # {} or the clip key; refuses the clips torch has not
        refuse_terms(semantics, rules)       # under clipping: a penalty is clipped, weight_decay is not
        for r in rules:
            if getattr(r, "schedule", None) is not None and r.schedule.kind != "constant":
                raise Inexpressible("torch.optim keeps weight_decay a constant of its param group (no scheduler "
                                    "of torch.optim.lr_scheduler changes it); nearest: the constant coefficient "
                                    f"{r.coefficient}, which differs once the rule's schedule moves")
        for r in decoupled:
            coef = r.coefficient if r.effective_scale == "lr" else r.coefficient / opt.lr
            if opt.name == "sgd":
                raise Inexpressible(f"torch.optim.SGD has only gradient-coupled weight_decay (torch/optim/sgd.py:353); "
                                    f"nearest: SGD(weight_decay={coef:.6g}), identical for momentum = 0"
                                    + ("" if r.effective_scale == "lr" else " and a constant schedule")
                                    + ", different with momentum (the decay then enters the buffer)")
            if opt.name in COUPLED_ONLY:
                where, normaliser = COUPLED_ONLY[opt.name]
                raise Inexpressible(f"torch.optim.{run['optimizer']} has only gradient-coupled weight_decay ({where}), "
                                    f"which {normaliser} then normalises; nearest: {run['optimizer']}(weight_decay="
                                    f"{coef:.6g}), different from the first step")
            if r.effective_scale != "lr":
                what = ("the same decay lr_t*lambda/lr = eta_t*lambda, up to rounding" if r.effective_scale == "schedule"
                        else "the same decay under a constant schedule; under a schedule it follows eta_t")
                raise Inexpressible(f"torch.optim.{run['optimizer']} decays w *= 1 - lr_t*weight_decay "
                                    f"({DECOUPLED_SOURCE[opt.name]}), scaled by the scheduled lr; nearest: "
                                    f"{DECOUPLED_CALL[opt.name]}weight_decay={r.coefficient}/lr = "
                                    f"{r.coefficient / opt.lr:.6g}), {what}")
        wd_rules = decoupled or [r for r in rules if r.norm == "l2" and r.coupling == "gradient"
                                 and not (semantics.clip is not None and r.via_loss)]   # a penalty, when clipped
        per: dict[str, float] = {}
        rest = [r for r in rules if not any(r is w for w in wd_rules)]
        for r in wd_rules:
            if per.keys() & set(r.params):
                if decoupled:
                    raise Inexpressible(f"torch.optim.{run['optimizer']} takes one weight_decay per tensor "
                                        f"({DECOUPLED_SOURCE[opt.name]}); nearest: one decoupled rule per tensor with "
                                        "the summed coefficient (same to first order)")
                rest.append(r)
                continue
            per.update({name: r.coefficient for name in r.params})
        l2 = [r for r in rest if r.norm == "l2"]
        l1 = [r for r in rest if r.norm == "l1"]
        if len(l2) > 1 or len(l1) > 1 or (l2 and l1 and l2[0].params != l1[0].params):
            raise Inexpressible("one `penalty` table holds one L2 and one L1 term on one list of tensors; nearest: "
                                "merge the rules (sum the coefficients on each tensor)")
        tensors = list(torch_groups.names().values())
        if semantics.frozen:   # a group per coefficient of the trained tensors; a tensor no group names never moves
            run["param_groups"] = param_groups(per, [t for t in tensors if t not in semantics.frozen])
        elif per and len(per) == len(tensors) and len(set(per.values())) == 1:
            run["weight_decay"] = per[tensors[0]]
        elif per:
            run["weight_decay"] = 0.0
            run["param_groups"] = param_groups(per, tensors)
        elif run["optimizer"] == "AdamW":
            run["weight_decay"] = 0.0
        return {**run, **penalty_table(l2, l1), **clipping}

    # ---------------------------------------------------------------- inside the worker
    def build(self, job: dict, data: dict[str, np.ndarray]) -> SimpleNamespace:
        import torch
        from torch import nn

        task = job["task"]
        with tensor_scope(Task.model_validate(task).tensors):   # param groups name the task's parameters
            run = TorchRun.model_validate(job["run"])
        dtype = set_up(torch, job["dtype"])
        if "model_json" in data:   # a network (torch_network.py): tensors by neutral name, for the penalty and read()
            net, X, y, tensors = network(torch, data, dtype)
        else:
            net, X, y = linear_model(torch, data, dtype)
            tensors = {"weight": net.weight, "bias": net.bias}
        by_name = dict(net.named_parameters())

        if run.groups() is not None:   # exactly the user's groups: a tensor they do not name stays frozen
            params: Any = [{"params": [by_name[n] for n in names], **({} if wd is None else {"weight_decay": wd})}
                           for names, wd in run.groups()]
        else:
            params = net.parameters()
        kwargs = {k: getattr(run, k) for k in KEYWORDS[run.optimizer] if getattr(run, k) is not None}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        optimizer = getattr(torch.optim, run.optimizer)(params, **kwargs)
        steps = len(batches(data["order"], int(task["batch_size"])))
        scheduler = lr_scheduler(torch, optimizer, task.get("schedule") or {"kind": "constant"},
                                 DEFAULT_LR[run.optimizer] if run.lr is None else run.lr, steps)
        return SimpleNamespace(torch=torch, net=net, tensors=tensors, network="model_json" in data, optimizer=optimizer, scheduler=scheduler,
                               X=X, y=y, mse=nn.MSELoss(), half=task["loss"] == "half_mse",
                               penalty=penalty_terms(run.penalty),   # clipping: model.parameters(), as users call it
                               clip=clipper(torch, list(net.parameters()), run.clip_grad_norm, run.clip_grad_value))

    def step(self, s: SimpleNamespace, rows: np.ndarray, t: int) -> None:
        index = s.torch.as_tensor(rows)
        s.optimizer.zero_grad()
        batch_loss(s, index).backward()   # the loss penalty, term by term as a user adds it
        if s.clip is not None:   # between backward() and step(): the loss's gradient, not step()'s weight_decay
            s.clip()
        s.optimizer.step()
        if s.scheduler is not None:
            s.scheduler.step()

    def read(self, s: SimpleNamespace):
        if s.network:
            return read_network(s.tensors)
        return s.net.weight.detach().numpy(), s.net.bias.detach().numpy()

    # ---- grids: runs differing only in lr / weight_decay values train as one optimizer with a param group per
    # config (torch_batch.py: exactly the named groups, so a frozen tensor stays frozen there too)
    def batch_key(self, job: dict):
        from .torch_batch import batch_key

        return batch_key(job)

    def train_vectorized(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        from . import torch_batch

        return torch_batch.train(jobs, data)


backend = TorchBackend()
