"""The `torch` backend: torch.optim.SGD / Adam / AdamW, param groups and loss penalties, as a user writes them.

PyTorch is where most "weight decay" questions start (seed 000: a weight-only param group and an lr
ten times too large). This adapter states what each torch knob means in neutral terms (describe),
writes the torch setting for given semantics (realize), and trains nn.Linear with the real optimizer
and lr_scheduler objects (train). Every claim below was read in the installed torch 2.13.0 (paths under
site-packages/torch/optim/) and is measured by the battery and tests/test_torch_backend.py:

- SGD, `_single_tensor_sgd` (sgd.py:322-379): grad += weight_decay*param (:353-355, gradient coupling,
  before the buffer); first step buf = grad, no dampening (:361); then buf = m*buf + (1-dampening)*grad
  (:364); nesterov uses grad + m*buf (:367); param -= lr*step (:377-379). nesterov needs momentum > 0 and
  dampening 0 (:63-64). `maximize` negates the gradient (:344): ascent, rejected here.
- Adam, `_single_tensor_adam` (adam.py): decoupled_weight_decay (a constructor keyword, :49) does
  param *= 1 - lr*weight_decay before the moments (:419), else grad += weight_decay*param (:426-428);
  m.lerp_(g, 1-b1) (:456), v = b2*v + (1-b2)*g^2 (:475), param -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
  (:544-546): corrected epsilon. amsgrad normalises by max(v) (:539): outside the neutral model, rejected.
- AdamW = Adam(decoupled_weight_decay=True) (adamw.py:48) with default weight_decay = 1e-2 (adamw.py:27);
  Adam's default is 0 (adam.py:41). The decay uses group["lr"], i.e. lr_t under a scheduler: scale "lr".
- A param group without `weight_decay` inherits the constructor's (optimizer.py:1163, add_param_group:
  `param_group.setdefault(name, default)`), under AdamW the default 1e-2 (a trap: the seed's
  `{"params": net[0].bias}` group decays the bias); a tensor in two groups is a ValueError (optimizer.py:1187).
  A tensor named in no group is never updated: step() walks only `self.param_groups` (sgd.py:118, adam.py:229)
  and each group's own params (sgd.py:87, adam.py:150), so it keeps its initial value bit for bit, the
  top-level weight_decay never reaches it, and its .grad is computed and ignored. describe() says so:
  `Semantics.frozen`; train() builds exactly the named groups; a penalty on a frozen tensor changes nothing
  and is rejected. A group naming no tensor, or a tensor twice, is an error.
- Penalties are added to the loss: d|w|/dw at w = 0 is 0 in torch (abs backward is grad * self.sgn(),
  tools/autograd/derivatives.yaml): l1_at_zero = 0.0, measured in the tests.
- foreach / fused (same math, other kernels; both run on CPU in 2.13) are passed through and verified by
  the battery; capturable / differentiable must be false (not modelled). dampening is read only inside the
  momentum buffer (sgd.py:357-364): dampening > 0 without momentum is silently ignored by torch, rejected here
  (as nesterov without momentum, which torch itself rejects, sgd.py:63-64).
- Schedules: StepLR(step_size=every, gamma=factor) is recursive, lr*gamma per multiple (lr_scheduler.py:658);
  CosineAnnealingLR(T_max=total, eta_min=floor*lr) is recursive too (:1449) and equals the closed form to
  ~1e-15 for t <= total, but rises again after total (:1440); past `total` train() uses
  SequentialLR([CosineAnnealingLR, ConstantLR(factor=floor)], milestones=[total]), exact as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wdparity.engine.data import batches
from wdparity.engine.recording import Recorder
from wdparity.run.backend import Backend, Inexpressible
from wdparity.spec.models import TENSORS, AdamSpec, DecayRule, Semantics, SgdSpec, Task

from .torch_run import DEFAULT_LR, KEYWORDS, TorchRun
from .torch_run import scheduler as lr_scheduler

TORCH_L1_AT_ZERO = 0.0   # torch.autograd.grad(torch.abs(x), x) at x = 0 is 0 (abs' = sgn); measured in the tests


def _rules_from_map(per: dict[str, float], coupling: str) -> list[DecayRule]:
    """One rule per distinct nonzero coefficient, tensors in TENSORS order (the canonical form)."""
    rules: list[DecayRule] = []
    trained = [name for name in TENSORS if name in per]
    for coef in dict.fromkeys(per[name] for name in trained):
        names = [name for name in trained if per[name] == coef]
        if coef:
            rules.append(DecayRule(norm="l2", coupling=coupling, coefficient=coef,
                                   scale="lr" if coupling == "decoupled" else None, params=names))
    return rules


class TorchBackend(Backend):
    name = "torch"
    modules = ("torch",)
    install_hint = "pip install 'wdparity[torch]'"
    Config = TorchRun

    def findings(self, config: TorchRun, task: Task) -> list[dict]:
        """Documented departures from what a reader of the call may expect, each modelled by describe()."""
        out = []
        if config.optimizer == "AdamW" and (config.weight_decay is None or any(
                g.weight_decay is None for g in config.param_groups or [])):
            out.append({"id": "adamw-default-weight-decay", "modelled": True,
                        "text": "a tensor without an explicit weight_decay gets AdamW's default 1e-2",
                        "source": "torch/optim/adamw.py:27; torch/optim/optimizer.py:1163 (add_param_group setdefault)"})
        if config.penalty and config.penalty.l1:
            out.append({"id": "l1-at-zero-0", "modelled": True, "text": "d|w|/dw at w = 0 is 0 (abs' = sgn)",
                        "source": "tools/autograd/derivatives.yaml (abs: grad * self.sgn())"})
        return out

    def describe(self, config: TorchRun, task: Task) -> Semantics:
        """Neutral semantics of a torch run. Rule order: gradient-coupled (weight_decay, then the penalty's
        L2 and L1), then decoupled (AdamW's weight_decay)."""
        lr = DEFAULT_LR if config.lr is None else config.lr
        if config.optimizer == "SGD":
            optimizer = SgdSpec(name="sgd", lr=lr, momentum=config.momentum or 0.0,
                                dampening=config.dampening or 0.0, nesterov=bool(config.nesterov))
        else:
            optimizer = AdamSpec(name="adam", lr=lr, betas=list(config.betas or [0.9, 0.999]),
                                 eps=1e-8 if config.eps is None else config.eps)
        wd = _rules_from_map(config.per_tensor_weight_decay(), "decoupled" if config.decoupled else "gradient")
        pen = config.penalty.rules(l1_at_zero=TORCH_L1_AT_ZERO) if config.penalty else []
        decay = wd + pen if not config.decoupled else pen + wd
        return Semantics(optimizer=optimizer, decay=decay, loss=task.loss, schedule=task.schedule,
                         frozen=config.frozen)

    def realize(self, semantics: Semantics, task: Task) -> dict:
        opt, rules = semantics.optimizer, list(semantics.decay)
        if opt.name == "sgd" and opt.momentum_form == "velocity":
            raise Inexpressible("torch.optim.SGD keeps the buffer form, buf = m*buf + g, step = -lr_t*buf "
                                "(torch/optim/sgd.py:364-379); nearest: momentum_form = \"buffer\", identical under a "
                                "constant lr, different once the schedule changes lr (velocity keeps old steps' lr)")
        if opt.name == "adam" and opt.eps_placement != "corrected":
            raise Inexpressible("torch.optim.Adam adds eps to sqrt(v)/sqrt(1-b2^t) (torch/optim/adam.py:544); nearest: "
                                "eps_placement = \"corrected\", whose effective epsilon is smaller by sqrt(1-b2^t)")
        for r in rules:
            if r.norm == "l1" and r.coupling != "gradient":
                raise Inexpressible("torch.optim has no decoupled L1 decay; nearest: an L1 `penalty` (gradient "
                                    "coupling), which passes through the optimizer's moments")
            if r.norm == "l1" and r.effective_l1_at_zero != TORCH_L1_AT_ZERO:
                raise Inexpressible(f"an L1 penalty through torch autograd takes d|w|/dw = 0 at w = 0 (abs' = sgn); "
                                    f"nearest: l1_at_zero = 0.0, which differs wherever a weight is exactly 0 "
                                    f"(l1_at_zero = {r.effective_l1_at_zero} moves it by lr*lambda)")
            if r.coupling == "decoupled" and opt.name == "sgd":
                coef = r.coefficient if r.effective_scale == "lr" else r.coefficient / opt.lr
                raise Inexpressible(f"torch.optim.SGD has only gradient-coupled weight_decay (torch/optim/sgd.py:353); "
                                    f"nearest: SGD(weight_decay={coef:.6g}), identical for momentum = 0"
                                    + ("" if r.effective_scale == "lr" else " and a constant schedule")
                                    + ", different with momentum (the decay then enters the buffer)")
            if r.coupling == "decoupled" and r.effective_scale != "lr":
                what = ("the same decay lr_t*lambda/lr = eta_t*lambda, up to rounding" if r.effective_scale == "schedule"
                        else "the same decay under a constant schedule; under a schedule it follows eta_t")
                raise Inexpressible(f"torch AdamW decays w *= 1 - lr_t*weight_decay (torch/optim/adam.py:419), scaled "
                                    f"by the scheduled lr; nearest: AdamW(weight_decay={r.coefficient}/lr = "
                                    f"{r.coefficient / opt.lr:.6g}), {what}")
        decoupled = [r for r in rules if r.coupling == "decoupled"]
        wd_rules = decoupled or [r for r in rules if r.norm == "l2" and r.coupling == "gradient"]
        per: dict[str, float] = {}
        rest = [r for r in rules if not any(r is w for w in wd_rules)]
        for r in wd_rules:
            if per.keys() & set(r.params):
                if decoupled:
                    raise Inexpressible("AdamW takes one weight_decay per tensor (torch/optim/adam.py:419); nearest: "
                                        "one decoupled rule per tensor with the summed coefficient (same to first order)")
                rest.append(r)
                continue
            per.update({name: r.coefficient for name in r.params})
        l2 = [r for r in rest if r.norm == "l2"]
        l1 = [r for r in rest if r.norm == "l1"]
        if len(l2) > 1 or len(l1) > 1 or (l2 and l1 and l2[0].params != l1[0].params):
            raise Inexpressible("one `penalty` table holds one L2 and one L1 term on one list of tensors; nearest: "
                                "merge the rules (sum the coefficients on each tensor)")
        run: dict[str, Any] = {"optimizer": "SGD" if opt.name == "sgd" else ("AdamW" if decoupled else "Adam"),
                               "lr": opt.lr}
        if opt.name == "sgd":
            run.update({"momentum": opt.momentum} if opt.momentum else {})
            run.update({"dampening": opt.dampening} if opt.dampening else {})
            run.update({"nesterov": True} if opt.nesterov else {})
        else:
            run.update({"betas": list(opt.betas), "eps": opt.eps})
        if semantics.frozen:   # one group per trained tensor; a tensor no group names is never updated
            run["param_groups"] = [{"params": [name], "weight_decay": per.get(name, 0.0)}
                                   for name in TENSORS if name not in semantics.frozen]
        elif per and len(per) == len(TENSORS) and len(set(per.values())) == 1:
            run["weight_decay"] = per[TENSORS[0]]
        elif per:
            run["weight_decay"] = 0.0
            run["param_groups"] = [{"params": [name], "weight_decay": per.get(name, 0.0)} for name in TENSORS]
        elif decoupled or run["optimizer"] == "AdamW":
            run["weight_decay"] = 0.0
        penalty = {}
        if l2:
            penalty.update({"l2": l2[0].coefficient / 2.0, "params": list(l2[0].params)})
        if l1:
            penalty.update({"l1": l1[0].coefficient, "params": list(l1[0].params)})
        return {**run, **({"penalty": penalty} if penalty else {})}

    # ---------------------------------------------------------------- inside the worker
    def train(self, job: dict, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        from torch import nn

        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        task, run = job["task"], TorchRun.model_validate(job["run"])
        np_dtype = np.dtype(job["dtype"])
        dtype = {"float32": torch.float32, "float64": torch.float64}[job["dtype"]]
        X = torch.as_tensor(data["X_train"], dtype=dtype)
        y = torch.as_tensor(data["y_train"], dtype=dtype).reshape(-1, 1)   # (n, 1): no (n, n) broadcast in MSELoss
        d = X.shape[1]

        net = nn.Linear(d, 1, dtype=dtype)
        with torch.no_grad():
            net.weight.copy_(torch.as_tensor(data["w0"], dtype=dtype).reshape(1, d))
            net.bias.copy_(torch.as_tensor(data["b0"], dtype=dtype).reshape(1))
        tensors = {"weight": net.weight, "bias": net.bias}

        if run.param_groups is not None:   # exactly the user's groups: a tensor they do not name stays frozen
            params: Any = [{"params": [tensors[n] for n in g.params],
                            **({} if g.weight_decay is None else {"weight_decay": g.weight_decay})}
                           for g in run.param_groups]
        else:
            params = net.parameters()
        kwargs = {k: getattr(run, k) for k in KEYWORDS[run.optimizer] if getattr(run, k) is not None}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        optimizer = getattr(torch.optim, run.optimizer)(params, **kwargs)

        rows = batches(data["order"], int(task["batch_size"]))
        scheduler = lr_scheduler(torch, optimizer, task.get("schedule") or {"kind": "constant"},
                               DEFAULT_LR if run.lr is None else run.lr, len(rows))
        mse = nn.MSELoss()
        half = task["loss"] == "half_mse"
        pen = run.penalty

        rec = Recorder(data, len(rows), d, np_dtype)
        rec.record(0, net.weight.detach().numpy(), net.bias.detach().numpy())
        for t, idx in enumerate(rows):
            index = torch.as_tensor(idx)
            optimizer.zero_grad()
            loss = mse(net(X[index]), y[index])
            if half:
                loss = loss / 2
            if pen is not None:
                for name in pen.params:
                    p = tensors[name]
                    if pen.l2:
                        loss = loss + pen.l2 * torch.sum(p.pow(2))
                    if pen.l1:
                        loss = loss + pen.l1 * torch.sum(torch.abs(p))
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if not rec.record(t + 1, net.weight.detach().numpy(), net.bias.detach().numpy()):
                break
        return rec.result()

    def batch_groups(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[list[int]]:
        """Runs differing only in lr / weight_decay values train as one optimizer with a param group per
        config (torch_batch.py: exactly the named groups, so a frozen tensor stays frozen there too);
        checkpoint recording (record_steps) stays serial."""
        from wdparity.engine.batching import partition

        from .torch_batch import batch_key

        return partition([None if "record_steps" in data else batch_key(job) for job in jobs])

    def train_batch(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        from wdparity.engine.batching import train_grouped

        from . import torch_batch

        return train_grouped(self.batch_groups(jobs, data), jobs, data, self.train, torch_batch.train)


backend = TorchBackend()
