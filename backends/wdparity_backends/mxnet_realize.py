"""realize()'s pieces for MXNet 1.9.1: the optimizer and its own keywords for a neutral optimizer, the loss
`penalty` table for the loss terms, and `clip_gradient` for the clipping (where each optimizer clips).

Imported in the core and in MXNet's venv: numpy-free, pydantic and the wdparity core only. The statements and
their tests: docs/adapters/mxnet.md.
"""

from __future__ import annotations

from typing import Optional

from wdparity.run.adapter import refuse_clip, refuse_no_bias_correction
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import (
    AdadeltaSpec,
    AdagradSpec,
    AdamSpec,
    DecayRule,
    LambSpec,
    RmspropSpec,
    Semantics,
    SgdSpec,
)
from wdparity.spec.network import in_scope
from wdparity.spec.rules import coefficients

# clip_gradient clips r*g elementwise. adam_update, rmsprop_update and rmspropalex_update clip r*g + wd*w, the
# coupled wd included; every other kernel (and AdaGrad's, AdaDelta's Python) clips r*g before wd*w is added.
CLIPS_WITH_WD = {"adam": "adam_update, optimizer_op-inl.h:1302-1305",
                 "rmsprop": "rmsprop_update / rmspropalex_update, optimizer_op-inl.h:2063-2066, 1965-1968"}
CLIPS_BEFORE_WD = {"sgd": "multi_sgd(_mom)_update, optimizer_op-inl.h:234-240", "ccsgd": "as sgd",
                   "nag": "nag_mom_update / sgd_update, optimizer_op-inl.h:1068-1074, 387-391",
                   "signum": "signum_update, optimizer_op-inl.h:2421-2424", "adagrad": "optimizer.py:1682-1684",
                   "adadelta": "optimizer.py:1808-1810", "lamb": "multi_lamb_update, multi_lamb.cc:48-50"}


def clip_position(optimizer: str, decay: list[DecayRule]) -> str:
    """Where `optimizer`'s clip_gradient stands in the neutral chain: after the coupled wd for the kernels that clip
    it too, if there is one; else on the loss's gradient (penalties included). Without an optimizer's own coupled
    term the two positions are one and the same, and describe() says "loss_gradient"."""
    coupled = any(rule.coupling == "gradient" and not rule.via_loss and rule.coefficient for rule in decay)
    return "after_coupled_decay" if optimizer in CLIPS_WITH_WD and coupled else "loss_gradient"


def realize_clip(semantics: Semantics, optimizer: str, own: list[DecayRule]) -> Optional[float]:
    """clip_gradient for the semantics' clipping (rescale_grad 1), or Inexpressible naming what MXNet has."""
    clip = semantics.clip
    if clip is None:
        return None
    position = clip_position(optimizer, own)
    where = {**CLIPS_WITH_WD, **CLIPS_BEFORE_WD}[optimizer]
    if clip.kind == "value" and clip.position != position:
        what = "r*g + wd*w, the coupled wd included" if position == "after_coupled_decay" else "r*g before adding wd*w"
        raise Inexpressible(f"MXNet's {optimizer} clips {what} ({where}), not at position {clip.position!r}; "
                            f"nearest: clip_gradient = {clip.threshold} at its own position")
    refuse_clip(semantics, {("value", position): f"clip_gradient ({where})"}, "MXNet")
    return clip.threshold


def penalty_table(rules: list[DecayRule]) -> Optional[dict]:
    """The one `penalty` table (l2*sum(w^2) + l1*sum(|w|) on `params`) whose gradient is these loss terms."""
    if not rules:
        return None
    for rule in rules:
        if rule.coupling != "gradient" or (rule.schedule is not None and rule.schedule.kind != "constant"):
            raise Inexpressible("a loss `penalty` is a constant gradient-coupled term; nearest: penalty = "
                                f"{{{rule.norm} = {rule.coefficient}}} on {rule.params}, constant")
    per = {norm: coefficients(rules, norm, "gradient") for norm in ("l2", "l1")}
    if sum(1 for rule in rules if rule.norm == "l1") > 1:
        l1 = next(rule for rule in rules if rule.norm == "l1")
        raise Inexpressible("one `penalty` table holds one L1 term; nearest: penalty = {l1 = "
                            f"{l1.coefficient}, params = {l1.params}}} (the other L1 terms are lost)")
    tensors = {norm: [k for k in in_scope() if c[k]] for norm, c in per.items()}
    params = tensors["l2"] or tensors["l1"]
    if any(t and t != params for t in tensors.values()) or any(len({c[k] for k in params}) > 1 for c in per.values()):
        raise Inexpressible("one `penalty` table puts the same l2 and l1 on each of its params; nearest: penalty = "
                            f"{{l2 = {max(per['l2'].values()) / 2}, l1 = {max(per['l1'].values())}, params = {params}}}")
    table = {"params": params}
    if per["l2"][params[0]]:
        table["l2"] = per["l2"][params[0]] / 2    # d/dw l2*w^2 = 2*l2*w, exact in binary
    if per["l1"][params[0]]:
        table["l1"] = per["l1"][params[0]]
    return table


def native_optimizer(semantics: Semantics) -> dict:
    """The optimizer and its own keywords for a neutral optimizer (decay aside), or Inexpressible naming why."""
    opt = semantics.optimizer
    if isinstance(opt, SgdSpec):
        if opt.momentum > 0 and opt.momentum_form != "velocity":
            raise Inexpressible(
                "MXNet's SGD/NAG momentum is the velocity form (mom = momentum*mom - lr*g; w += mom); nearest: "
                f"optimizer = \"{'nag' if opt.nesterov else 'sgd'}\", momentum = {opt.momentum} "
                "(identical while the learning rate is constant, differs when the schedule changes lr)")
        if opt.dampening:
            raise Inexpressible(f"MXNet's SGD has no dampening; nearest: momentum = {opt.momentum} without "
                                f"dampening (the step grows by 1/(1-{opt.dampening}))")
        run = {"optimizer": "nag" if opt.nesterov else "sgd", "learning_rate": opt.lr}
        if opt.momentum > 0:
            run["momentum"] = opt.momentum
        return run
    refuse_no_bias_correction(opt, "MXNet")
    if isinstance(opt, AdamSpec):
        if opt.eps_placement != "uncorrected":
            raise Inexpressible(
                f"MXNet's Adam adds epsilon before bias correction; nearest: optimizer = \"adam\", epsilon = "
                f"{opt.eps} (the step differs while sqrt(1-beta2^t) is far from 1)")
        if opt.amsgrad:
            raise Inexpressible("MXNet's Adam has no AMSGrad (no such keyword, optimizer.py:1594); nearest: "
                                "optimizer = \"adam\" (v itself, not its running maximum)")
        if opt.bias_correction_dtype:
            raise Inexpressible("MXNet computes Adam's bias corrections in Python floats (optimizer.py:1617-1619); "
                                "nearest: the same run with exact corrections (~1e-7 relative apart)")
        return {"optimizer": "adam", "learning_rate": opt.lr, "beta1": opt.betas[0], "beta2": opt.betas[1],
                "epsilon": opt.eps}
    if isinstance(opt, RmspropSpec):
        if not opt.eps_in_sqrt:
            raise Inexpressible(f"MXNet's RMSProp adds epsilon inside the root, sqrt(n + epsilon) (optimizer_op-inl.h:"
                                f"2071, 1976-1977); nearest: epsilon = {opt.eps} inside it")
        if opt.initial_scale or opt.bias_correction:
            raise Inexpressible("MXNet's RMSProp starts its averages at 0 and does not correct them "
                                "(optimizer.py:1733-1740); nearest: the same run with n_0 = 0, uncorrected")
        if opt.momentum > 0 and not opt.centered:
            raise Inexpressible("MXNet's non-centered RMSProp has no momentum (rmsprop_update; gamma2 is read only "
                                f"with centered = true, optimizer.py:1751-1752); nearest: momentum {opt.momentum} dropped")
        if opt.momentum > 0 and opt.momentum_form != "velocity":
            raise Inexpressible("MXNet's centered RMSProp momentum is the velocity form (delta = gamma2*delta - "
                                f"lr*d; w += delta); nearest: gamma2 = {opt.momentum} (differs when lr changes)")
        run = {"optimizer": "rmsprop", "learning_rate": opt.lr, "gamma1": opt.rho, "epsilon": opt.eps}
        return {**run, "centered": True, "gamma2": opt.momentum} if opt.centered else run
    if isinstance(opt, AdagradSpec):
        if not opt.eps_in_sqrt or opt.initial_accumulator or opt.lr_decay:
            raise Inexpressible("MXNet's AdaGrad starts its history at 0, adds eps inside the root, "
                                "sqrt(history + eps), and has no lr_decay (optimizer.py:1662-1687); nearest: "
                                f"eps = {opt.eps + opt.initial_accumulator} inside the root, without lr_decay")
        return {"optimizer": "adagrad", "learning_rate": opt.lr, "eps": opt.eps}
    if isinstance(opt, AdadeltaSpec):
        if opt.lr != 1.0 or semantics.schedule.kind != "constant":
            raise Inexpressible("MXNet's AdaDelta has no learning rate: it never reads lr nor the lr_scheduler "
                                "(optimizer.py:1801-1823); nearest: optimizer = \"adadelta\" (lr 1, constant)")
        return {"optimizer": "adadelta", "rho": opt.rho, "epsilon": opt.eps}
    if isinstance(opt, LambSpec):
        if opt.decay_placement != "inside_trust_ratio":
            raise Inexpressible("MXNet's LAMB adds wd*w to the direction inside the trust ratio, u = d + wd*w with "
                                "r = ||w||/||u|| (multi_lamb.cc:66-67, 93-108); nearest: decay_placement = "
                                f"\"inside_trust_ratio\" (not {opt.decay_placement!r}; the two agree only without a decoupled decay)")
        return {"optimizer": "lamb", "learning_rate": opt.lr, "beta1": opt.betas[0], "beta2": opt.betas[1],
                "epsilon": opt.eps}
    b1, b2 = opt.betas      # lion
    if b1 != b2:
        raise Inexpressible("MXNet's Signum is Lion with beta1 = beta2 = momentum (one state: the sign of the new "
                            f"momentum, optimizer_op-inl.h:2421-2431); nearest: momentum = {b1}")
    return {"optimizer": "signum", "learning_rate": opt.lr, "momentum": b1}
