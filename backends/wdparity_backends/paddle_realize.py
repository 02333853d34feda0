"""realize() for the paddle backend: the paddle.optimizer class, keywords, regularizers (weight_decay, ParamAttr),
ParamAttr(trainable=False), AdamW's apply_decay_param_fun, Lamb's exclude_from_weight_decay_fn and always_adapt
and grad_clip for given neutral semantics, refusing by name, with the nearest Paddle
setting, what Paddle does not compute; and inherent(), the float32 rounding of the hyperparameters Paddle's
kernels take as C floats. Sources: docs/adapters/paddle.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wdparity.run.adapter import refuse_l1, refuse_no_bias_correction
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics
from wdparity.spec.network import in_scope
from wdparity.spec.rules import coefficients

from .paddle_network import attr_tables, neutral_names

RADAM_FLOAT64 = ("paddle.optimizer.RAdam computes rho_t by a recursion of its own accumulator (rho = (rho*(b2 - b2^t) + "
                 "b2^t)/(1 - b2^t), radam_kernel_impl.h), not the closed form: in float64 its first rectified step "
                 "lands 4.6e-13 relative off the closed form's, beyond the float64 rounding envelope (tests/"
                 "test_paddle_facts.py); the battery trains every realized table in float64 too, so realize() "
                 "leaves RAdam to the native cases; nearest: RAdam(beta1, beta2, epsilon) as written, in float32")
FAMILIES = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam", "lamb")


def f32(x: float) -> float:
    return float(np.float32(x))


def momentum_class(opt) -> bool:
    return opt.name == "sgd" and (opt.momentum > 0 or opt.nesterov)


def inherent(semantics: Semantics) -> Semantics:
    """The semantics with the hyperparameters the chosen Paddle class rounds to float32 rounded (its lr stays a
    tensor of the parameters' dtype)."""
    opt, rules = semantics.optimizer, list(semantics.decay)
    upd: dict[str, Any] = {}
    if momentum_class(opt):
        upd = {"momentum": f32(opt.momentum)}
        rules = [r.model_copy(update={"coefficient": f32(r.coefficient)}) if r.norm == "l2" and r.coupling == "gradient"
                 else r for r in rules]
    elif opt.name in ("adam", "lamb"):   # AdamW's coeff and Lamb's weight_decay are C floats
        rules = [r.model_copy(update={"coefficient": f32(r.coefficient)}) if r.coupling == "decoupled" else r
                 for r in rules]
        if opt.name == "lamb":
            upd = {"betas": [f32(b) for b in opt.betas], "eps": f32(opt.eps)}
    elif opt.name == "adamax":
        upd = {"betas": [f32(b) for b in opt.betas], "eps": f32(opt.eps)}
    elif opt.name == "rmsprop":
        upd = {"rho": f32(opt.rho), "eps": f32(opt.eps), "momentum": f32(opt.momentum)}
    elif opt.name == "adadelta":
        upd = {"rho": f32(opt.rho), "eps": f32(opt.eps)}
    elif opt.name == "adagrad":   # Adagrad's epsilon is a C float too (adagrad.py:228, measured)
        upd = {"eps": f32(opt.eps)}
    elif opt.name in ("nadam", "radam"):
        upd = {"betas": [f32(b) for b in opt.betas], "eps": f32(opt.eps)}
        if opt.name == "nadam" and opt.momentum_decay is not None:
            upd["momentum_decay"] = f32(opt.momentum_decay)
    return semantics.model_copy(update={"optimizer": opt.model_copy(update=upd), "decay": rules,
                                        "hyper_dtype": "float64"})


def native_optimizer(opt, decoupled: bool) -> dict[str, Any]:
    name = opt.name
    if name not in FAMILIES:
        raise Inexpressible(f"paddle.optimizer has no {name} (paddle/optimizer/__init__.py); nearest: the same run "
                            f"through optax.{name}")
    refuse_no_bias_correction(opt, "paddle.optimizer")
    if name == "sgd":
        if opt.dampening:
            raise Inexpressible("paddle.optimizer.Momentum has no dampening (velocity = mu*velocity + g); nearest: "
                                f"Momentum(momentum={opt.momentum}) without dampening, larger steps by 1/(1-d)")
        if opt.momentum_form == "velocity":
            raise Inexpressible("paddle.optimizer.Momentum keeps lr outside its buffer (param -= lr*velocity), the "
                                "buffer form; nearest: momentum_form = \"buffer\", identical under a constant lr")
        if not momentum_class(opt):
            return {"optimizer": "SGD", "learning_rate": opt.lr}
        run = {"optimizer": "Momentum", "learning_rate": opt.lr, "momentum": opt.momentum}
        return {**run, **({"use_nesterov": True} if opt.nesterov else {})}
    if name == "adam":
        if opt.eps_placement != "corrected":
            raise Inexpressible("paddle.optimizer.Adam adds epsilon*sqrt(1-b2^t) to sqrt(v), i.e. epsilon to the "
                                "corrected root; nearest: eps_placement = \"corrected\"")
        if opt.amsgrad == "v_hat":
            raise Inexpressible("paddle's amsgrad keeps the max of the uncorrected v; nearest: amsgrad = \"v\"")
        run = {"optimizer": "AdamW" if decoupled else "Adam", "learning_rate": opt.lr, "beta1": opt.betas[0],
               "beta2": opt.betas[1], "epsilon": opt.eps}
        return {**run, **({"amsgrad": True} if opt.amsgrad == "v" else {})}
    if name == "rmsprop":
        if not opt.eps_in_sqrt:
            raise Inexpressible("paddle.optimizer.RMSProp divides by sqrt(v + epsilon), epsilon inside the root; "
                                "nearest: eps_in_sqrt = true, which differs while v is near epsilon")
        if opt.momentum > 0 and opt.momentum_form != "velocity":
            raise Inexpressible("paddle.optimizer.RMSProp keeps lr inside its momentum buffer (mom = m*mom + "
                                "lr*g/sqrt(v + eps)), the velocity form; nearest: momentum_form = \"velocity\", "
                                "identical under a constant lr")
        if opt.initial_scale or opt.bias_correction:
            raise Inexpressible("paddle.optimizer.RMSProp starts its mean square at 0 and does not bias-correct it; "
                                "nearest: initial_scale = 0, bias_correction = false")
        run = {"optimizer": "RMSProp", "learning_rate": opt.lr, "rho": opt.rho, "epsilon": opt.eps,
               "momentum": opt.momentum}
        return {**run, **({"centered": True} if opt.centered else {})}
    if name == "adagrad":
        if opt.eps_in_sqrt or opt.lr_decay:
            raise Inexpressible("paddle.optimizer.Adagrad divides by sqrt(s) + epsilon and has no lr_decay; nearest: "
                                "eps_in_sqrt = false, lr_decay = 0")
        return {"optimizer": "Adagrad", "learning_rate": opt.lr, "epsilon": opt.eps,
                "initial_accumulator_value": opt.initial_accumulator}
    if name == "adadelta":
        return {"optimizer": "Adadelta", "learning_rate": opt.lr, "rho": opt.rho, "epsilon": opt.eps}
    if name == "adamax":
        if opt.eps_placement != "in_max_decayed":
            raise Inexpressible("paddle.optimizer.Adamax keeps u = max(|g|, b2*u + eps) (adamax_kernel_impl.h:63-64), "
                                "epsilon on the decayed norm; nearest: eps_placement = \"in_max_decayed\"")
        return {"optimizer": "Adamax", "learning_rate": opt.lr, "beta1": opt.betas[0], "beta2": opt.betas[1],
                "epsilon": opt.eps}
    if name == "lamb":
        if opt.decay_placement != "inside_trust_ratio" or opt.max_trust_ratio is not None:
            raise Inexpressible("paddle.optimizer.Lamb adds lamb_weight_decay*w to the Adam direction inside the "
                                "trust ratio (lamb_functors.h:183-185) and does not cap the ratio; nearest: "
                                "decay_placement = \"inside_trust_ratio\", max_trust_ratio none")
        return {"optimizer": "Lamb", "learning_rate": opt.lr, "beta1": opt.betas[0], "beta2": opt.betas[1],
                "epsilon": opt.eps}
    if name == "nadam":
        if opt.momentum_decay is None:
            raise Inexpressible("paddle.optimizer.NAdam schedules its momentum, mu_t = b1*(1 - 0.5*0.96^(t*"
                                "momentum_decay)); nearest: NAdam(momentum_decay=1000), mu_t = b1 in float64")
        return {"optimizer": "NAdam", "learning_rate": opt.lr, "beta1": opt.betas[0], "beta2": opt.betas[1],
                "epsilon": opt.eps, "momentum_decay": opt.momentum_decay}
    if opt.eps_placement != "uncorrected" or opt.threshold != 5.0 or opt.threshold_inclusive:
        raise Inexpressible("paddle.optimizer.RAdam adds epsilon to sqrt(v) before the correction and rectifies "
                            "while rho_t > 5; nearest: eps_placement = \"uncorrected\", threshold 5, exclusive")
    raise Inexpressible(RADAM_FLOAT64)


def realize(semantics: Semantics) -> dict:
    opt, rules, frozen = semantics.optimizer, list(semantics.decay), list(semantics.frozen)
    trained = [n for n in in_scope() if n not in frozen]
    decoupled = [r for r in rules if r.coupling == "decoupled"]
    run = native_optimizer(opt, bool(decoupled))
    refuse_l1(rules, 0.0, "Paddle")
    for r in rules:
        if r.schedule is not None and r.schedule.kind != "constant":
            raise Inexpressible(f"Paddle's regularizers and AdamW's weight_decay are constants; nearest: the constant "
                                f"coefficient {r.coefficient}")
    if semantics.clip is not None:
        run["grad_clip"] = grad_clip(semantics, rules)
    if decoupled:
        decoupled_decay(run, opt, decoupled, trained)
    elif run["optimizer"] == "AdamW":
        run["weight_decay"] = 0.0
    elif run["optimizer"] == "Lamb":   # the trust ratio without a decay needs always_adapt (lamb_kernel_impl.h:262)
        run.update(lamb_weight_decay=0.0, always_adapt=True)
    attrs = coupled_decay(run, [r for r in rules if r.coupling == "gradient"], trained, bool(decoupled))
    for n in frozen:   # ParamAttr(trainable=False): stop_gradient, skipped by the optimizer (optimizer.py:2053)
        attrs.setdefault(n, {})["trainable"] = False
    run.update(attr_tables(attrs, in_scope()))
    return run


def grad_clip(semantics: Semantics, rules: list) -> dict:
    clip = semantics.clip
    if clip.position != "loss_gradient":
        raise Inexpressible("Paddle clips the loss's gradient and appends the regularization after it "
                            "(optimizer.py:1713-1717); nearest: position \"loss_gradient\"")
    if clip.eps:
        raise Inexpressible(f"Paddle's norm clips scale by clip_norm/max(norm, clip_norm), no epsilon; nearest: "
                            f"eps 0 instead of {clip.eps:g}")
    if any(r.via_loss for r in rules):
        raise Inexpressible("this adapter has no loss penalty: Paddle's regularizers are appended after the "
                            "clipping, never clipped; nearest: the rule with via_loss = false")
    if clip.kind == "global_norm" and semantics.frozen:
        raise Inexpressible(f"a frozen parameter ({semantics.frozen}, trainable = false) has no gradient, so "
                            "ClipGradByGlobalNorm's norm is the trained tensor's alone; nearest: clip kind "
                            "\"tensor_norm\", which is what it computes then")
    if clip.kind == "tensor_norm":
        if len([n for n in in_scope() if n not in semantics.frozen]) == 1:
            return {"ClipGradByGlobalNorm": clip.threshold}   # one trained tensor: its own norm is the global one
        raise Inexpressible("paddle.nn.ClipGradByNorm has no float64 CPU kernel (clip_by_norm), and the battery "
                            "trains each realized table in float64 too; nearest: ClipGradByNorm in a float32 case")
    return {{"global_norm": "ClipGradByGlobalNorm", "value": "ClipGradByValue"}[clip.kind]: clip.threshold}


def decoupled_decay(run: dict, opt, decoupled: list, trained: list[str]) -> None:
    """AdamW's weight_decay and apply_decay_param_fun, or Lamb's lamb_weight_decay (always_adapt and
    exclude_from_weight_decay_fn when a trained tensor is not decayed)."""
    if opt.name not in ("adam", "lamb"):
        raise Inexpressible(f"paddle.optimizer has a decoupled weight decay only in AdamW and Lamb; its "
                            f"{run['optimizer']}'s weight_decay is an L2Decay regularizer (gradient coupling); nearest: "
                            f"weight_decay = {decoupled[0].coefficient:g} (coupled)")
    if any(r.effective_scale != "lr" for r in decoupled):
        raise Inexpressible("AdamW decays w -= lr_t*coeff*w, scaled by the scheduled lr; nearest: scale \"lr\" "
                            "with coeff = lambda/lr")
    per = coefficients(decoupled, "l2", "decoupled")
    values = {c for c in per.values() if c}
    if len(values) != 1 or any(r.norm != "l2" for r in decoupled):
        raise Inexpressible(f"{run['optimizer']} has one weight decay coefficient, applied to the parameters its "
                            "filter selects; nearest: one coefficient on those tensors")
    names = neutral_names(in_scope())
    decayed = [n for n in in_scope() if per[n]]
    skipped = [names[n] for n in trained if n not in decayed]
    if run["optimizer"] == "Lamb":
        run["lamb_weight_decay"] = values.pop()
        if skipped:   # an excluded tensor keeps its trust ratio only with always_adapt
            run.update(always_adapt=True, exclude_from_weight_decay_fn=skipped)
    else:
        run["weight_decay"] = values.pop()
        if skipped:
            run["apply_decay_param_fun"] = [names[n] for n in decayed]


def coupled_decay(run: dict, coupled: list, trained: list[str], decoupled: bool) -> dict[str, dict]:
    """The coupled rules as the optimizer's weight_decay (one L2/L1 on every trained tensor; Lamb has none) or
    ParamAttr regularizers; returns the attrs by neutral name."""
    per: dict[str, dict] = {}
    for r in coupled:
        for n in r.params:
            if n in per:
                raise Inexpressible("a Paddle parameter takes one regularizer (its ParamAttr's, else the optimizer's "
                                    "weight_decay); nearest: one rule per tensor with the summed coefficient")
            per[n] = {"L2Decay" if r.norm == "l2" else "L1Decay": r.coefficient}
    if not per:
        return {}
    same = sorted(per) == sorted(trained) and len({str(v) for v in per.values()}) == 1
    if same and not decoupled and run["optimizer"] != "Lamb":
        reg = per[trained[0]]
        run["weight_decay"] = reg["L2Decay"] if "L2Decay" in reg else reg
        return {}
    return {n: {"regularizer": reg} for n, reg in per.items()}
