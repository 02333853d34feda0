"""torch.optim's classes as neutral optimizer families, both ways: the family a class's keywords describe
(optimizer_spec, for describe) and the class and keywords that realize a family (native_optimizer, for realize),
refusing by name, with the nearest torch setting, what no torch.optim class computes. The sources of every
statement (torch 2.13.0, under site-packages): docs/adapters/torch.md.
"""

from __future__ import annotations

from typing import Any

from wdparity.run.adapter import refuse_no_bias_correction
from wdparity.run.backend import Inexpressible
from wdparity.spec.optimizers import AdadeltaSpec, AdagradSpec, AdamaxSpec, AdamSpec, NadamSpec, RadamSpec, RmspropSpec, SgdSpec

from .torch_run import DEFAULTS, TorchRun

# neutral family -> the torch.optim class(es) realizing it
CLASSES = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad", "adadelta": "Adadelta",
           "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam"}
# families whose torch class can decouple its weight_decay (w *= 1 - lr_t*weight_decay before the step), and how
# the call spells it
DECOUPLED_CALL = {"adam": "AdamW(", "nadam": "NAdam(decoupled_weight_decay=True, ",
                  "radam": "RAdam(decoupled_weight_decay=True, "}
DECOUPLED_SOURCE = {"adam": "torch/optim/adam.py:417-419", "nadam": "torch/optim/nadam.py:340-342",
                    "radam": "torch/optim/radam.py:305-306"}
# the others add weight_decay*param to the gradient only: where, and what then normalises it
COUPLED_ONLY = {"sgd": ("torch/optim/sgd.py:353", "the momentum buffer"),
                "rmsprop": ("torch/optim/rmsprop.py:307-308", "the root"),
                "adagrad": ("torch/optim/adagrad.py:395-400", "the accumulated root"),
                "adadelta": ("torch/optim/adadelta.py:284-285", "the ratio of the two running roots"),
                "adamax": ("torch/optim/adamax.py:267-268", "the running max |g|")}


def optimizer_spec(run: TorchRun, lr: float):
    """The neutral optimizer of a torch run: its class's family, unset keywords at the constructor's defaults."""
    name, d = run.optimizer, DEFAULTS[run.optimizer]

    def get(key):
        value = getattr(run, key)
        return d[key] if value is None else value

    if name == "SGD":
        return SgdSpec(name="sgd", lr=lr, momentum=get("momentum"), dampening=get("dampening"),
                       nesterov=bool(run.nesterov))
    if name == "RMSprop":
        return RmspropSpec(name="rmsprop", lr=lr, rho=get("alpha"), eps=get("eps"), centered=bool(run.centered),
                           momentum=get("momentum"))
    if name == "Adagrad":
        return AdagradSpec(name="adagrad", lr=lr, initial_accumulator=get("initial_accumulator_value"),
                           eps=get("eps"), lr_decay=get("lr_decay"))
    if name == "Adadelta":
        return AdadeltaSpec(name="adadelta", lr=lr, rho=get("rho"), eps=get("eps"))
    betas = list(get("betas"))
    if name == "Adamax":
        return AdamaxSpec(name="adamax", lr=lr, betas=betas, eps=get("eps"), eps_placement="in_max")
    if name == "NAdam":
        return NadamSpec(name="nadam", lr=lr, betas=betas, eps=get("eps"), momentum_decay=get("momentum_decay"))
    if name == "RAdam":   # rho_t > 5.0 hard-coded (radam.py:349)
        return RadamSpec(name="radam", lr=lr, betas=betas, eps=get("eps"), eps_placement="uncorrected",
                         threshold=5.0, threshold_inclusive=False)
    return AdamSpec(name="adam", lr=lr, betas=betas, eps=get("eps"), amsgrad="v" if run.amsgrad else None)


def refuse_fields(opt) -> None:
    """Inexpressible for a neutral optimizer field no torch.optim class computes, naming the nearest setting."""
    name = opt.name
    if name == "lion":
        raise Inexpressible("torch.optim has no Lion (torch/optim/__init__.py:9-28 imports its classes); nearest: the same run "
                            "through an adapter whose framework has it (optax.lion, keras.optimizers.Lion); no torch "
                            "class takes the sign of an interpolated momentum")
    if name == "lamb":
        raise Inexpressible("torch.optim has no LAMB (torch/optim/__init__.py:9-28 imports its classes); nearest: the same "
                            "run through an adapter whose framework has it (optax.lamb, keras.optimizers.Lamb); no torch "
                            "class scales a tensor's step by the trust ratio ||w|| / ||u||")
    if name == "adafactor":
        raise Inexpressible("torch.optim.Adafactor is not the neutral Adafactor: it clamps the second-moment estimate "
                            "below at eps1^2 instead of adding eps to g^2, and divides the update by max(1, rms(u)/d) "
                            "(torch/optim/_adafactor.py:403-416), which this adapter does not model; nearest: the same run "
                            "through an adapter that models the neutral Adafactor (keras, optax, mlx, numpy)")
    if name == "sgd" and opt.momentum_form == "velocity":
        raise Inexpressible("torch.optim.SGD keeps the buffer form, buf = m*buf + g, step = -lr_t*buf "
                            "(torch/optim/sgd.py:364-379); nearest: momentum_form = \"buffer\", identical under a "
                            "constant lr, different once the schedule changes lr (velocity keeps old steps' lr)")
    refuse_no_bias_correction(opt, "torch.optim")
    if name == "adam" and opt.eps_placement != "corrected":
        raise Inexpressible("torch.optim.Adam adds eps to sqrt(v)/sqrt(1-b2^t) (torch/optim/adam.py:542-544); nearest: "
                            "eps_placement = \"corrected\", whose effective epsilon is smaller by sqrt(1-b2^t)")
    if name == "adam" and opt.amsgrad == "v_hat":
        raise Inexpressible("torch's amsgrad keeps the running max of the uncorrected v and corrects it after, "
                            "sqrt(max v)/sqrt(1-b2^t) (torch/optim/adam.py:537-542); nearest: amsgrad = \"v\" "
                            "(Adam(amsgrad=True)), identical while the newest corrected v is the largest so far, larger "
                            "steps (a smaller denominator) after an earlier one was larger")
    if name == "rmsprop":
        if opt.momentum_form == "velocity":
            raise Inexpressible("torch.optim.RMSprop keeps the buffer form, buf = m*buf + g/denominator, step = "
                                "-lr_t*buf (torch/optim/rmsprop.py:332-337); nearest: momentum_form = \"buffer\", "
                                "identical under a constant lr, different once the schedule changes lr")
        if opt.initial_scale != 0:
            raise Inexpressible(f"torch.optim.RMSprop starts its square average at zeros (torch/optim/rmsprop.py:"
                                f"123-124); nearest: initial_scale = 0, which differs from the first step (v_1 = "
                                f"(1-rho)*g^2 instead of rho*{opt.initial_scale:g} + (1-rho)*g^2)")
        if opt.bias_correction:
            raise Inexpressible("torch.optim.RMSprop does not bias-correct its square average (torch/optim/"
                                "rmsprop.py:316-325); nearest: bias_correction = false, whose first steps are "
                                "larger by up to 1/sqrt(1-rho)")
        if opt.eps_in_sqrt:
            raise Inexpressible("torch.optim.RMSprop adds eps outside the root, sqrt(v) + eps (torch/optim/rmsprop.py:"
                                "325-330); nearest: eps_in_sqrt = false, which differs while v is near eps")
    if name == "adagrad" and opt.eps_in_sqrt:
        raise Inexpressible("torch.optim.Adagrad adds eps outside the root, sqrt(sum) + eps (torch/optim/adagrad.py:"
                            "421-426); nearest: eps_in_sqrt = false, which differs while the sum is near eps")
    if name == "adamax" and opt.eps_placement != "in_max":
        raise Inexpressible("torch.optim.Adamax adds eps inside the max, u = max(b2*u, |g| + eps) (torch/optim/"
                            "adamax.py:280-284); nearest: eps_placement = \"in_max\", which differs while |g| is "
                            "near eps (and by the eps kept in u after)")
    if name == "nadam" and opt.momentum_decay is None:
        raise Inexpressible("torch.optim.NAdam schedules its momentum, mu_t = b1*(1 - 0.5*0.96^(t*momentum_decay)) "
                            "(torch/optim/nadam.py:347-348); nearest: NAdam(momentum_decay=1000), where "
                            "0.96^(1000t) < 2e-18 rounds mu_t to b1 in float64")
    if name == "radam" and opt.eps_placement != "uncorrected":
        raise Inexpressible("torch.optim.RAdam adds eps to sqrt(v) before the correction sqrt(1-b2^t) "
                            "(torch/optim/radam.py:333-340); nearest: eps_placement = \"uncorrected\", whose "
                            "effective epsilon is larger by 1/sqrt(1-b2^t)")
    if name == "radam" and (opt.threshold != 5.0 or opt.threshold_inclusive):
        where = (f"whose rho_t lies between 5 and {opt.threshold:g}" if opt.threshold != 5.0
                 else "whose rho_t is exactly 5 (>= instead of >)")
        raise Inexpressible(f"torch.optim.RAdam rectifies while rho_t > 5.0, hard-coded (torch/optim/radam.py:349); "
                            f"nearest: threshold = 5, threshold_inclusive = false, which differs on the steps {where}")

def native_optimizer(opt, decoupled: bool) -> dict[str, Any]:
    """The torch.optim class and keywords (besides weight_decay) that compute the neutral optimizer `opt`;
    `decoupled`: its weight_decay is decoupled (AdamW, or the class's decoupled_weight_decay flag)."""
    refuse_fields(opt)
    name = opt.name
    cls = "AdamW" if name == "adam" and decoupled else CLASSES[name]
    run: dict[str, Any] = {"optimizer": cls, "lr": opt.lr}
    if name == "sgd":
        run.update({"momentum": opt.momentum} if opt.momentum else {})
        run.update({"dampening": opt.dampening} if opt.dampening else {})
        run.update({"nesterov": True} if opt.nesterov else {})
    elif name == "rmsprop":
        run.update({"alpha": opt.rho, "eps": opt.eps})
        run.update({"centered": True} if opt.centered else {})
        run.update({"momentum": opt.momentum} if opt.momentum else {})
    elif name == "adagrad":
        run.update({"eps": opt.eps})
        run.update({"initial_accumulator_value": opt.initial_accumulator} if opt.initial_accumulator else {})
        run.update({"lr_decay": opt.lr_decay} if opt.lr_decay else {})
    elif name == "adadelta":
        run.update({"rho": opt.rho, "eps": opt.eps})
    else:
        run.update({"betas": list(opt.betas), "eps": opt.eps})
        run.update({"amsgrad": True} if name == "adam" and opt.amsgrad == "v" else {})
        run.update({"momentum_decay": opt.momentum_decay} if name == "nadam" else {})
        run.update({"decoupled_weight_decay": True} if name in ("nadam", "radam") and decoupled else {})
    return run
