"""The `mlx` run table for given neutral semantics, or Inexpressible naming the nearest MLX setting.

Source lines are mlx/optimizers/optimizers.py at MLX 0.32.4 (docs/adapters/mlx.md).
"""

from __future__ import annotations

from typing import Any

from wdparity.run.adapter import refuse_frozen, refuse_l1
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity.spec.network import in_scope
from wdparity.spec.rules import coefficients

from . import mlx_adafactor as adafactor
from . import mlx_network as network
from .mlx_describe import CLIP_EPS, MLX_L1_AT_ZERO
from .mlx_vocab import MULTI, TOP_LEVEL

CLASSES = {"sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad", "adadelta": "AdaDelta", "adam": "Adam",
           "adamax": "Adamax", "lion": "Lion", "adafactor": "Adafactor"}
DECOUPLED = {"adam": "AdamW", "lion": "Lion"}   # the classes whose weight_decay is w *= 1 - lr_t*weight_decay
NO_WEIGHT_DECAY = ("RMSprop", "Adagrad", "AdaDelta", "Adam", "Adamax")


def native_optimizer(opt, task: Task) -> dict[str, Any]:
    """The class and keywords (besides weight_decay) that compute `opt`, or Inexpressible."""
    name = opt.name
    if name == "adafactor":
        return adafactor.native(opt, task)
    if name not in CLASSES:
        raise Inexpressible(f"mlx.optimizers has no {name} (its classes: SGD, RMSprop, Adagrad, AdaDelta, Adam, AdamW, "
                            "Adamax, Lion, Adafactor, Muon, MultiOptimizer); nearest: the same run through an adapter whose framework "
                            f"has {name} (torch, optax)")
    run: dict[str, Any] = {"optimizer": CLASSES[name], "learning_rate": opt.lr}
    if name == "sgd":
        if opt.momentum_form == "velocity":
            raise Inexpressible("mlx.optimizers.SGD keeps the buffer form, v = m*v + g, step = -lr_t*v "
                                "(optimizers.py:283-295); nearest: momentum_form = \"buffer\", identical under a "
                                "constant lr, different once the schedule changes lr")
        if opt.dampening:
            raise Inexpressible(f"mlx.optimizers.SGD dampens the first step too, v_1 = (1-d)*g (optimizers.py:283-287), "
                                f"where this buffer starts at g; nearest: SGD(momentum={opt.momentum}, dampening="
                                f"{opt.dampening}), which differs from the first step by the factor {1 - opt.dampening:g}")
        run.update({"momentum": opt.momentum} if opt.momentum else {})
        run.update({"nesterov": True} if opt.nesterov else {})
    elif name == "rmsprop":
        if opt.centered or opt.momentum or opt.eps_in_sqrt or opt.initial_scale or opt.bias_correction:
            raise Inexpressible("mlx.optimizers.RMSprop is v = alpha*v + (1-alpha)*g^2 from v_0 = 0, g/(sqrt(v) + eps), "
                                "without centering, momentum or bias correction (optimizers.py:350-354); nearest: "
                                f"RMSprop(alpha={opt.rho}, eps={opt.eps}), different from the first step")
        run.update({"alpha": opt.rho, "eps": opt.eps})
    elif name == "adagrad":
        if opt.initial_accumulator or opt.eps_in_sqrt or opt.lr_decay:
            raise Inexpressible("mlx.optimizers.Adagrad accumulates from 0 and steps g/(sqrt(v) + eps), without lr_decay "
                                f"(optimizers.py:393,401-404); nearest: Adagrad(eps={opt.eps}), different from the "
                                "first step")
        run.update({"eps": opt.eps})
    elif name == "adadelta":
        run.update({"rho": opt.rho, "eps": opt.eps})
    elif name == "adamax":
        if opt.eps_placement != "outside" or opt.bias_correction:
            raise Inexpressible("mlx.optimizers.Adamax neither bias-corrects m nor puts eps in the max: "
                                "m/(max(b2*u, |g|) + eps) (optimizers.py:654-659); nearest: Adamax(betas="
                                f"{list(opt.betas)}, eps={opt.eps}), whose first step is larger by 1/(1-b1)")
        run.update({"betas": list(opt.betas), "eps": opt.eps})
    elif name == "adam":
        if opt.amsgrad is not None:
            raise Inexpressible("mlx.optimizers.Adam has no AMSGrad (optimizers.py:498-549); nearest: Adam(bias_correction"
                                "=True), identical while the newest v is the largest so far")
        if opt.eps_placement != "corrected":
            raise Inexpressible("mlx.optimizers.Adam(bias_correction=True) adds eps to sqrt(v)/sqrt(1-b2^t) "
                                "(optimizers.py:543-547); nearest: eps_placement = \"corrected\", whose effective "
                                "epsilon is smaller by sqrt(1-b2^t)")
        run.update({"betas": list(opt.betas), "eps": opt.eps})
        if opt.bias_correction:
            # float64 corrections need float64 betas (b**step with a Python float is float32)
            run.update({"bias_correction": True, "hyperparameters_as_arrays": True})
    else:   # lion
        run.update({"betas": list(opt.betas)})
    return run


def multi(run: dict[str, Any], cls: str, plain: str, per: dict[str, float]) -> dict[str, Any]:
    """MultiOptimizer, one sub-optimizer per distinct coefficient (tensors in layout order, the last group the
    fallback): `cls` with weight_decay where it is nonzero, `plain` (the class without it) where it is 0; each
    filter is `params`, the MLX paths of its tensors."""
    top = {k: run.pop(k) for k in TOP_LEVEL if k in run}
    groups: dict[float, list[str]] = {}
    for name in in_scope():
        groups.setdefault(per.get(name, 0.0), []).append(name)
    subs = []
    for coef, names in groups.items():
        sub = {**run, "optimizer": cls if coef else plain, **({"weight_decay": coef} if coef else {})}
        subs.append({**sub, "params": network.native(names)})
    where = network.merge_fails([sub["params"] for sub in subs])
    if where:
        raise Inexpressible(f"{network.MERGE_BUG}; here {where}; nearest: one coefficient on every tensor")
    del subs[-1]["params"]
    return {"optimizer": MULTI, "optimizers": subs, **top}


def realize(semantics: Semantics, task: Task) -> dict:
    opt, rules = semantics.optimizer, list(semantics.decay)
    if not task.model.linear and opt.name == "adafactor":
        raise Inexpressible(adafactor.NETWORK_REASON)
    run = native_optimizer(opt, task)
    refuse_frozen(semantics, "mlx.optimizers update every parameter of the tree they are given; a frozen tensor "
                             "(model.freeze(keys=...)) has no gradient")
    refuse_l1(rules, MLX_L1_AT_ZERO, "mlx")
    if semantics.schedule.kind != "constant":   # float64 schedules need float64 arrays (schedulers.py:58,89)
        run["hyperparameters_as_arrays"] = True
    clip = semantics.clip
    if clip is not None:
        if clip.kind != "global_norm" or clip.position != "loss_gradient" or clip.eps != CLIP_EPS:
            raise Inexpressible(f"mlx has clip_grad_norm(grads, max_norm), max_norm/(||g|| + {CLIP_EPS:g}) over every "
                                "tensor of the loss's gradient (optimizers.py:1005-1008), no other clipping; nearest: "
                                f"clip_grad_norm = {clip.threshold}, different from the first clipped step")
        run["clip_grad_norm"] = clip.threshold
    for r in rules:
        if r.schedule is not None and r.schedule.kind != "constant":
            raise Inexpressible("mlx's weight_decay is a constant attribute of the optimizer (optimizers.py:265,593,706); "
                                f"nearest: the constant coefficient {r.coefficient}")
    decoupled = [r for r in rules if r.coupling == "decoupled"]
    coupled = [r for r in rules if r.coupling == "gradient"]
    if decoupled:
        r = decoupled[0]
        if opt.name == "adafactor":
            raise Inexpressible(f"{adafactor.WEIGHT_DECAY_REASON}; nearest: Adafactor without weight_decay")
        cls = DECOUPLED.get(opt.name)
        if cls is None:
            raise Inexpressible(f"mlx.optimizers.{run['optimizer']} has no decoupled weight_decay (only AdamW and Lion "
                                f"decay w *= 1 - lr_t*weight_decay, optimizers.py:602,723); nearest: a coupled L2 "
                                f"`penalty` with l2 = {r.coefficient / 2:g}, different from the first step")
        if any(r.effective_scale != "lr" for r in decoupled):
            raise Inexpressible(f"mlx.optimizers.{cls}'s weight_decay decays each parameter it updates by "
                                f"w *= 1 - lr_t*weight_decay (optimizers.py:602,723), scaled by lr_t; nearest: "
                                f"{cls}(weight_decay={r.coefficient}), lr-scaled (per tensor through MultiOptimizer)")
        per = coefficients(decoupled, coupling="decoupled")
        if len(set(per.values())) == 1:
            run.update({"optimizer": cls, "weight_decay": r.coefficient})
        else:   # weight-only decay, or a coefficient per tensor: AdamW/Lion on some tensors, Adam/Lion on the rest
            run = multi(run, cls, run["optimizer"], per)
    if opt.name == "sgd":
        # SGD's weight_decay is added after clip_grad_norm; a loss penalty is clipped with the loss
        usable = [r for r in coupled if r.norm == "l2" and not (clip is not None and r.via_loss)]
        per = coefficients(usable)
        if len(usable) == 1 and usable[0].params == list(in_scope()):
            run["weight_decay"] = usable[0].coefficient
            coupled = [r for r in coupled if r is not usable[0]]
        elif len(usable) > 1 or (clip is not None and usable):   # per-tensor weight_decay: one SGD per coefficient
            run = multi(run, "SGD", "SGD", per)
            coupled = [r for r in coupled if r not in usable]
    if clip is not None and any(not r.via_loss for r in coupled):
        raise Inexpressible("under clip_grad_norm a coupled term other than SGD's weight_decay can only be a loss "
                            "penalty, which is clipped with the loss (optimizers.py:1005-1008); nearest: the same "
                            "coefficient as a `penalty`, clipped with the gradient")
    l2 = [r for r in coupled if r.norm == "l2"]
    l1 = [r for r in coupled if r.norm == "l1"]
    if len(l2) > 1 or len(l1) > 1 or (l2 and l1 and l2[0].params != l1[0].params):
        raise Inexpressible("one `penalty` holds one L2 and one L1 term on one list of tensors, and only SGD has a "
                            "weight_decay (per tensor through MultiOptimizer); nearest: merge the rules (sum the "
                            "coefficients on each tensor)")
    penalty: dict[str, Any] = {}
    if l2:
        penalty.update({"l2": l2[0].coefficient / 2.0, "params": network.native(list(l2[0].params))})
    if l1:
        penalty.update({"l1": l1[0].coefficient, "params": network.native(list(l1[0].params))})
    return {**run, **({"penalty": penalty} if penalty else {})}
