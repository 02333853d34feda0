"""torch over a grid: G configs of one run trained together, one torch.optim optimizer, one param group each.

Why it exists: a lambda x lr grid (`wdparity sweep`) trains the same torch run 64 times with other
numbers; serially each step pays torch's per-op dispatch and autograd overhead five times over
(zero_grad, forward, loss, backward, step) for a 200-input linear model.

What torch allows natively, measured on 2.13.0 (benchmarks/sweep_vectorized.py probes it):
- A (G, d) parameter cannot carry per-row coefficients. A multi-element `SGD(weight_decay=tensor)` is refused by
  the constructor itself (its `weight_decay < 0.0` check raises on the tensor's ambiguous truth value,
  torch/optim/sgd.py:49-50); a Tensor lr must be 1-element (sgd.py:43). Per-row lr only works through the
  `lr.requires_grad` branch meant for differentiable optimizers (param.addcmul_, sgd.py:373): not used.
- So each config keeps its own parameters and its own param group with its own lr and weight_decay,
  exactly the numbers the serial optimizer is constructed with; the real optimizer does every update.
  Those parameters alias the rows of one (G, d) weight and one (G,) bias leaf, whose .grad rows they
  use as their grads, so the forward and backward are a single F.linear with G outputs.

Equal to the serial path up to the forward's rounding: the serial nn.Linear computes a (1, d) @ (d, 1)
product, this one (n, d) @ (d, G); the BLAS kernel sums the d products in another order (a few ulp per
step, measured in tests/test_grid.py and benchmarks/RESULTS.md). Every other operation is the same.

Batched only when runs differ just in `lr`, `weight_decay` and per-group `weight_decay` values, under
a constant or step schedule, without a loss penalty or gradient clipping; otherwise the adapter trains them one by one. Every
class of the adapter batches so exactly: each group's update reads only its own lr and weight_decay and its tensors'
state (Adagrad's sum, NAdam's mu_product, RAdam's step), tested per class in tests/test_torch_backend.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Optional

import numpy as np

from wdparity.engine.data import batches

VARYING = ("lr", "weight_decay")   # top-level keys whose values may differ within a batch (and groups' weight_decay)


def batch_key(job: dict) -> Optional[str]:
    """Equal keys train together; None: this job trains alone."""
    run, task = job["run"], job["task"]
    if run.get("penalty") is not None or (task.get("schedule") or {}).get("kind", "constant") == "cosine":
        return None   # a penalty is summed into one loss per config; cosine's eta_min = floor*lr is per-scheduler
    if run.get("clip_grad_norm") is not None or run.get("clip_grad_value") is not None:
        return None   # clip_grad_norm_ over the (G, d) leaf would take one norm across every config: trained alone
    skeleton = copy.deepcopy(run)
    for key in VARYING:
        if skeleton.get(key) is not None:
            skeleton[key] = "x"
    for group in skeleton.get("param_groups") or []:
        if group.get("weight_decay") is not None:
            group["weight_decay"] = "x"
    return json.dumps([task, job["dtype"], skeleton], sort_keys=True)


def train(jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Train G torch runs of one batch key together; one {"weight", "bias"} trajectory per run."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from .torch_run import DEFAULT_LR, KEYWORDS, TorchRun, set_up
    from .torch_run import scheduler as _scheduler

    task, runs = jobs[0]["task"], [TorchRun.model_validate(j["run"]) for j in jobs]
    G, np_dtype = len(jobs), np.dtype(jobs[0]["dtype"])
    dtype = set_up(torch, jobs[0]["dtype"])   # as the serial build(): the run's default dtype
    X = torch.as_tensor(data["X_train"], dtype=dtype)
    y = torch.as_tensor(data["y_train"], dtype=dtype).reshape(-1, 1)
    d = X.shape[1]

    weight = torch.as_tensor(data["w0"], dtype=dtype).reshape(1, d).repeat(G, 1).requires_grad_()
    bias = torch.as_tensor(data["b0"], dtype=dtype).reshape(1).repeat(G).requires_grad_()
    weight.grad, bias.grad = torch.zeros_like(weight), torch.zeros_like(bias)

    groups: list[dict[str, Any]] = []
    for g, run in enumerate(runs):
        tensors = {"weight": nn.Parameter(weight.detach()[g:g + 1]), "bias": nn.Parameter(bias.detach()[g:g + 1])}
        tensors["weight"].grad, tensors["bias"].grad = weight.grad[g:g + 1], bias.grad[g:g + 1]
        if run.groups() is not None:   # as train(): exactly the named groups (an unnamed tensor stays frozen)
            own = [{"params": [tensors[n] for n in names], **({} if wd is None else {"weight_decay": wd})}
                   for names, wd in run.groups()]
        else:
            own = [{"params": [tensors["weight"], tensors["bias"]]}]   # net.parameters() order
        for group in own:   # what this config's constructor would have given every group
            if run.lr is not None:
                group["lr"] = run.lr
            if run.weight_decay is not None:
                group.setdefault("weight_decay", run.weight_decay)
        groups += own
    first = runs[0]
    kwargs = {k: getattr(first, k) for k in KEYWORDS[first.optimizer]
              if k not in VARYING and getattr(first, k) is not None}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    if "foreach" not in kwargs and "fused" not in kwargs:
        # What the serial run's foreach=None resolves to for CPU tensors (foreach kernels need CUDA/XPU/MTIA:
        # torch/optim/optimizer.py:161, utils/_foreach_utils.py:8): the single-tensor loop. Stated once here
        # instead of resolved again for each of the G groups at every step (13% of this loop, profiled).
        kwargs["foreach"] = False if X.device.type == "cpu" else None
    optimizer = getattr(torch.optim, first.optimizer)(groups, **kwargs)

    rows = batches(data["order"], int(task["batch_size"]))
    scheduler = _scheduler(torch, optimizer, task.get("schedule") or {"kind": "constant"},
                           DEFAULT_LR[first.optimizer] if first.lr is None else first.lr, len(rows))   # step/constant: lr unused
    half = task["loss"] == "half_mse"

    W = np.full((len(rows) + 1, G, d), np.nan, dtype=np_dtype)
    B = np.full((len(rows) + 1, G), np.nan, dtype=np_dtype)
    W[0], B[0] = weight.detach().numpy(), bias.detach().numpy()
    alive = np.ones(G, dtype=bool)
    for t, idx in enumerate(rows):
        index = torch.as_tensor(idx)
        weight.grad.zero_()
        bias.grad.zero_()
        out = F.linear(X[index], weight, bias)                                          # (n, G)
        per = F.mse_loss(out, y[index].expand_as(out), reduction="none").mean(dim=0)   # (G,): MSELoss per config
        if half:
            per = per / 2
        per.sum().backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        w, b = weight.detach().numpy(), bias.detach().numpy()
        W[t + 1, alive], B[t + 1, alive] = w[alive], b[alive]
        alive &= np.isfinite(w).all(axis=1) & np.isfinite(b)   # the serial loop stops a run at its first non-finite row
        if not alive.any():
            break
    return [{"weight": np.ascontiguousarray(W[:, g]), "bias": np.ascontiguousarray(B[:, g])} for g in range(G)]
