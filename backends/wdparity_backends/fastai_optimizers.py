"""fastai.optimizer's functions as neutral optimizer families, both ways: the family a function's keywords describe
(optimizer_spec, for describe) and the function and keywords that realize a family (native_optimizer, for realize),
refusing by name, with the nearest fastai setting, what no fastai function computes. Sources (fastai 2.8.12,
fastai/optimizer.py): docs/adapters/fastai.md.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from wdparity.run.backend import Inexpressible
from wdparity.spec.optimizers import AdamSpec, LambSpec, RadamSpec, RmspropSpec, SgdSpec

from .fastai_vocab import DEFAULTS, FastaiRun

RMSPROP_EPS = 1e-8   # rms_prop_step.defaults (optimizer.py:195): RMSProp() never passes its eps (optimizer.py:211)
MISSING = {"adagrad": "Adagrad", "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "NAdam", "lion": "Lion"}


def optimizer_spec(run: FastaiRun, lr: float):
    """The neutral optimizer of a fastai run: its function's family, unset keywords at the function's defaults."""
    name, get = run.optimizer, run.get
    if name == "SGD":   # average_grad without dampening, momentum_step: the buffer form (optimizer.py:152-173)
        return SgdSpec(name="sgd", lr=lr, momentum=get("mom"))
    if name == "RMSProp" and get("mom"):   # grad_avg / (sqrt(sqr_avg) + eps): Adam's uncorrected m over 1 - mom
        return AdamSpec(name="adam", lr=lr / (1 - get("mom")), betas=[get("mom"), get("sqr_mom")], eps=RMSPROP_EPS,
                        bias_correction=False)
    if name == "RMSProp":   # no bias correction, eps outside the root; the eps keyword is dropped
        return RmspropSpec(name="rmsprop", lr=lr, rho=get("sqr_mom"), eps=RMSPROP_EPS)
    betas = [get("mom"), get("sqr_mom")]
    if name == "QHAdam" and run.nus == (0.0, 1.0):   # (1-0)*g / (sqrt(v_hat) + eps): m is computed and unused
        return RmspropSpec(name="rmsprop", lr=lr, rho=get("sqr_mom"), eps=get("eps"), bias_correction=True)
    if name == "RAdam":   # r > 5 (optimizer.py:254); eps added to sqrt(v/debias2) (256-257)
        return RadamSpec(name="radam", lr=lr, betas=betas, eps=get("eps"), eps_placement="corrected",
                         threshold=5.0, threshold_inclusive=False)
    if name == "Lamb":   # weight_decay runs first, so the trust ratio sees the decayed p (optimizer.py:365-366)
        return LambSpec(name="lamb", lr=lr, betas=betas, eps=get("eps"), decay_placement="before",
                        max_trust_ratio=10.0)   # q = min(r1/r2, 10) (optimizer.py:349)
    # Adam, and QHAdam with nu_1 = nu_2 = 1: m_hat / (sqrt(v_hat) + eps) (optimizer.py:225-227, 285-287)
    return AdamSpec(name="adam", lr=lr, betas=betas, eps=get("eps"), eps_placement="corrected")


def lr_factor(run: FastaiRun) -> float:
    """The neutral lr over fastai's: 1/(1 - mom) for RMSProp with mom > 0 (optimizer.py:152-156,190-193), whose
    undampened grad_avg = mom*grad_avg + g is Adam's m = mom*m + (1-mom)*g over 1 - mom, else 1. fastai's true
    weight decay lr*wd is then lr'*(wd*(1 - mom)) in the neutral lr' = lr/(1 - mom)."""
    return 1 / (1 - run.get("mom")) if run.optimizer == "RMSProp" and run.get("mom") else 1.0


def exact(x0: float, holds: Callable[[float], bool]) -> Optional[float]:
    """x0 or a float within 3 ulps of it for which holds(x), so a realized number describes back bit for bit."""
    for x in [x0] + [_ulps(x0, sign * k) for k in (1, 2, 3) for sign in (1, -1)]:
        if holds(x):
            return x
    return None


def _ulps(x: float, k: int) -> float:
    for _ in range(abs(k)):
        x = math.nextafter(x, math.inf if k > 0 else -math.inf)
    return x


def uncorrected_adam(opt) -> dict[str, Any]:
    """Adam without bias correction as fastai's RMSProp(mom=b1, sqr_mom=b2, lr=lr*(1-b1)) (see lr_factor)."""
    b1, b2 = opt.betas
    why = ("fastai's only uncorrected momentum step is RMSProp(mom > 0): lr*grad_avg/(sqrt(sqr_avg) + 1e-8), grad_avg "
           "= mom*grad_avg + g undampened (fastai/optimizer.py:152-156,190-211), Adam's m/(sqrt(v) + eps) at lr' = "
           "lr/(1 - mom); fastai's Adam always bias-corrects (220-227)")
    if b1 == 0 or opt.eps != RMSPROP_EPS or opt.amsgrad:
        what = ("betas[0] > 0 (b1 = 0 is the neutral rmsprop)" if b1 == 0 else "eps = 1e-8 (RMSProp drops its eps, "
                "optimizer.py:211)" if opt.eps != RMSPROP_EPS else "amsgrad = None")
        raise Inexpressible(f"{why}; nearest: {what}, different from the first step")
    lr = exact(opt.lr * (1 - b1), lambda x: x / (1 - b1) == opt.lr)
    if lr is None:
        raise Inexpressible(f"{why}; no float lr makes lr/(1 - {b1:g}) = {opt.lr!r} exactly; nearest: RMSProp(lr="
                            f"{opt.lr * (1 - b1)!r}, mom={b1:g}), the same up to rounding")
    return {"optimizer": "RMSProp", "lr": lr, "mom": b1, "sqr_mom": b2}


def refuse_fields(opt) -> None:
    """Inexpressible for a neutral optimizer field no fastai.optimizer function computes, naming the nearest."""
    name = opt.name
    if name not in ("sgd", "adam", "rmsprop", "radam", "lamb"):
        raise Inexpressible(f"fastai.optimizer has no {MISSING.get(name, name)} (fastai/optimizer.py:8-11, __all__); "
                            "nearest: the "
                            f"same run through an adapter whose framework has it (torch.optim, optax)")
    if name == "sgd":
        if opt.dampening or opt.nesterov:
            what = "dampening" if opt.dampening else "nesterov"
            raise Inexpressible(f"fastai's SGD has no {what}: grad_avg = mom*grad_avg + g, step -lr*grad_avg (fastai/"
                                f"optimizer.py:152-187); nearest: SGD(mom={opt.momentum:g}) without {what}, "
                                "different from the second step")
        if opt.momentum_form == "velocity":
            raise Inexpressible("fastai's SGD keeps the buffer form, grad_avg = mom*grad_avg + g, step = -lr_t*grad_avg "
                                "(fastai/optimizer.py:152-173); nearest: momentum_form = \"buffer\", identical under a "
                                "constant lr, different once the schedule changes lr")
    if name == "adam" and opt.bias_correction:
        if opt.eps_placement != "corrected":
            raise Inexpressible("fastai's Adam adds eps to sqrt(sqr_avg/debias2) (fastai/optimizer.py:227); nearest: "
                                "eps_placement = \"corrected\", whose effective epsilon is smaller by sqrt(1-b2^t)")
        if opt.amsgrad:
            raise Inexpressible("fastai's Adam has no AMSGrad (fastai/optimizer.py:233-245); nearest: amsgrad = None, "
                                "identical while the newest v is the largest so far")
        if opt.bias_correction_dtype:
            raise Inexpressible("fastai computes debias(mom, 1-mom, step) in Python floats (fastai/optimizer.py:220); "
                                "nearest: bias_correction_dtype = None")
    if name == "rmsprop":
        if opt.centered or opt.momentum or opt.initial_scale or opt.eps_in_sqrt:
            what = ("centered = false" if opt.centered else "momentum = 0" if opt.momentum
                    else "initial_scale = 0" if opt.initial_scale else "eps_in_sqrt = false")
            raise Inexpressible("fastai's RMSProp is sqr_avg = sqr_mom*sqr_avg + (1-sqr_mom)*g^2 from zeros, step "
                                "-lr*g/(sqrt(sqr_avg) + eps), not centered; its mom > 0 divides a momentum of raw gradients by the "
                                "current root, the neutral Adam without bias correction (fastai/optimizer.py:152-166,"
                                f"190-211); nearest: {what}, different from the first step")
        if not opt.bias_correction and opt.eps != RMSPROP_EPS:
            raise Inexpressible(f"fastai's RMSProp(eps=...) never reaches the step: RMSProp passes no eps to the "
                                "Optimizer (fastai/optimizer.py:211), rms_prop_step uses its default 1e-8 (195); "
                                f"nearest: eps = 1e-8, different while sqrt(v) is near {opt.eps:g}")
    if name == "radam" and opt.eps_placement != "corrected":
        raise Inexpressible("fastai's RAdam adds eps to sqrt(sqr_avg/debias2) (fastai/optimizer.py:256-257); nearest: "
                            "eps_placement = \"corrected\", whose effective epsilon is smaller by sqrt(1-b2^t)")
    if name == "radam" and (opt.threshold != 5.0 or opt.threshold_inclusive):
        raise Inexpressible("fastai's RAdam rectifies while r > 5, hard-coded (fastai/optimizer.py:254); nearest: "
                            "threshold = 5, threshold_inclusive = false, which differs on the steps whose rho_t lies "
                            f"between 5 and {opt.threshold:g} (or equals 5)")
    if name == "lamb" and opt.decay_placement != "before":
        raise Inexpressible("fastai's Lamb decays p (weight_decay) before lamb_step computes the trust ratio from the "
                            "decayed p (fastai/optimizer.py:365-366); nearest: decay_placement = \"before\" (identical "
                            "without decoupled decay, written once)")
    if name == "lamb" and opt.max_trust_ratio != 10.0:
        raise Inexpressible("fastai's lamb_step caps the trust ratio at 10, q = min(r1/r2, 10) (fastai/optimizer.py:349); "
                            "nearest: max_trust_ratio = 10, identical while every ratio stays below 10")


def native_optimizer(opt) -> dict[str, Any]:
    """The fastai.optimizer function and keywords (besides wd, decouple_wd) that compute the neutral `opt`."""
    refuse_fields(opt)
    name = opt.name
    if name == "sgd":
        return {"optimizer": "SGD", "lr": opt.lr, **({"mom": opt.momentum} if opt.momentum else {})}
    if name == "adam" and not opt.bias_correction:
        return uncorrected_adam(opt)
    if name == "rmsprop" and opt.bias_correction:
        return {"optimizer": "QHAdam", "lr": opt.lr, "sqr_mom": opt.rho, "eps": opt.eps, "nu_1": 0.0, "nu_2": 1.0}
    if name == "rmsprop":
        return {"optimizer": "RMSProp", "lr": opt.lr, "sqr_mom": opt.rho}
    cls = {"adam": "Adam", "radam": "RAdam", "lamb": "Lamb"}[name]
    return {"optimizer": cls, "lr": opt.lr, "mom": opt.betas[0], "sqr_mom": opt.betas[1], "eps": opt.eps}


def default_wd(optimizer: str) -> float:
    return DEFAULTS[optimizer]["wd"]
