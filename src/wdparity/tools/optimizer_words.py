"""Each neutral optimizer family in words: the sentence `explain`/`translate` print, the short column of the
conventions table, and the nearest variants `translate` tries when a target cannot express a field.

One table per purpose, keyed by family, so a new family is a row here rather than a branch in three tools.
"""

from __future__ import annotations

from typing import Any, Callable


def _adam_place(opt: dict) -> str:
    if not opt.get("bias_correction", True):
        return "m/(sqrt(v) + eps): no bias correction (the first steps are larger by up to (1-b1)/sqrt(1-b2))"
    if opt["eps_placement"] == "corrected":
        return "m_hat/(sqrt(v_hat) + eps): epsilon after bias correction"
    return ("lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v) + eps): epsilon before bias correction "
            "(effective eps_hat = eps/sqrt(1-b2^t))")


def _sgd(opt: dict) -> str:
    mom = ""
    if opt["momentum"]:
        form = ("buffer form: buf = m*buf + (1-d)*g, step = -lr_t*buf" if opt["momentum_form"] == "buffer"
                else "velocity form: v = m*v - lr_t*g, step = v (lr inside the momentum)")
        mom = f", momentum {opt['momentum']:g}{' (Nesterov)' if opt['nesterov'] else ''}, {form}"
        if opt["dampening"]:
            mom += f", dampening {opt['dampening']:g}"
    return f"SGD, lr {opt['lr']:g}{mom}"


def _adam(opt: dict) -> str:
    text = (f"Adam, lr {opt['lr']:g}, betas ({opt['betas'][0]:g}, {opt['betas'][1]:g}), eps {opt['eps']:g} placed as "
            f"{_adam_place(opt)}")
    if opt.get("amsgrad") == "v":
        text += "; AMSGrad: v replaced by its running maximum (of the uncorrected v)"
    elif opt.get("amsgrad") == "v_hat":
        text += "; AMSGrad: v_hat replaced by its running maximum (of the bias-corrected v_hat)"
    return text


def _root(opt: dict, v: str = "v") -> str:
    return (f"g/sqrt({v} + eps): epsilon inside the root" if opt["eps_in_sqrt"]
            else f"g/(sqrt({v}) + eps): epsilon outside the root")


def _rmsprop(opt: dict) -> str:
    extra = ", centered (v - a^2, a the running mean of g)" if opt["centered"] else ""
    if opt.get("initial_scale"):
        extra += f", v_0 = {opt['initial_scale']:g}"
    if opt.get("bias_correction"):
        extra += ", v (and a) divided by 1 - rho^t"
    if opt["momentum"]:
        if opt.get("momentum_form", "buffer") == "velocity":
            extra += f", momentum {opt['momentum']:g}: buf = m*buf + lr_t*direction, step = -buf (lr inside the momentum)"
        else:
            extra += f", momentum {opt['momentum']:g}: buf = m*buf + that direction, step = -lr_t*buf"
    return (f"RMSprop, lr {opt['lr']:g}, v = {opt['rho']:g}*v + {1 - opt['rho']:g}*g^2, eps {opt['eps']:g}, "
            f"direction {_root(opt)}{extra}")


def _adagrad(opt: dict) -> str:
    text = (f"Adagrad, lr {opt['lr']:g}, s = s + g^2 from s_0 = {opt['initial_accumulator']:g}, eps {opt['eps']:g}, "
            f"direction {_root(opt, 's')}")
    if opt["lr_decay"]:
        text += f", step size lr_t/(1 + {opt['lr_decay']:g}*t) (lr_decay is a learning-rate schedule, not weight decay)"
    return text


def _adamax(opt: dict) -> str:
    place = {"in_max": "u = max(b2*u, |g| + eps), direction m_hat/u: epsilon inside the max, on |g|",
             "in_max_decayed": "u = max(b2*u + eps, |g|), direction m_hat/u: epsilon inside the max, on b2*u",
             "outside": "u = max(b2*u, |g|), direction m_hat/(u + eps): epsilon outside the max"}[opt["eps_placement"]]
    if not opt.get("bias_correction", True):
        place = place.replace("m_hat", "m") + " (m not bias-corrected)"
    return f"Adamax, lr {opt['lr']:g}, betas ({opt['betas'][0]:g}, {opt['betas'][1]:g}), eps {opt['eps']:g}, {place}"


def _nadam(opt: dict) -> str:
    psi = opt["momentum_decay"]
    schedule = ("mu_t = b1 throughout (no momentum schedule)" if psi is None
                else f"mu_t = b1*(1 - 0.5*0.96^({psi:g}*t))")
    return (f"NAdam, lr {opt['lr']:g}, betas ({opt['betas'][0]:g}, {opt['betas'][1]:g}), eps {opt['eps']:g} after bias "
            f"correction, Nesterov momentum with {schedule}")


def _radam(opt: dict) -> str:
    comparison = ">=" if opt["threshold_inclusive"] else ">"
    place = ("r_t*m_hat/(sqrt(v_hat) + eps)" if opt["eps_placement"] == "corrected"
             else "r_t*m_hat*sqrt(1-b2^t)/(sqrt(v) + eps)")
    return (f"RAdam, lr {opt['lr']:g}, betas ({opt['betas'][0]:g}, {opt['betas'][1]:g}), eps {opt['eps']:g}: direction "
            f"{place} while rho_t {comparison} {opt['threshold']:g}, else m_hat (bias-corrected momentum SGD)")


def _adafactor(opt: dict) -> str:
    rho = "min(lr_t, 1/sqrt(k)) (relative step)" if opt["relative_step"] else "lr_t"
    text = (f"Adafactor, lr {opt['lr']:g}, v = b2_k*v + (1-b2_k)*(g^2 + {opt['eps']:g}) with b2_k = 1 - k^-{opt['decay_rate']:g}, "
            f"direction g/sqrt(v)")
    if opt["clip_threshold"] is not None:
        text += f" clipped to block rms {opt['clip_threshold']:g}"
    text += f", step size {rho}"
    if opt["parameter_scale"] is not None:
        w = "the decayed w (decay first)" if opt["decay_placement"] == "before" else "w"
        text += f" times max({opt['parameter_scale']:g}, rms({w}))"
    if opt["momentum"] is not None:
        text += f", momentum {opt['momentum']:g} on that step (no bias correction)"
    if opt.get("decay_rate_dtype"):
        text += "; k^-decay_rate in float32"
    return text


SENTENCES: dict[str, Callable[[dict], str]] = {
    "sgd": _sgd, "adam": _adam, "rmsprop": _rmsprop, "adagrad": _adagrad, "adamax": _adamax, "nadam": _nadam,
    "radam": _radam,
    "adadelta": lambda o: (f"Adadelta, lr {o['lr']:g}, rho {o['rho']:g}, eps {o['eps']:g}: direction "
                           "sqrt(x + eps)/sqrt(v + eps)*g, v and x running means of g^2 and of the direction^2"),
    "lion": lambda o: (f"Lion, lr {o['lr']:g}, betas ({o['betas'][0]:g}, {o['betas'][1]:g}): direction "
                       "sign(b1*m + (1-b1)*g), then m = b2*m + (1-b2)*g; every coordinate moves by lr_t"),
    "lamb": lambda o: (f"LAMB, lr {o['lr']:g}, betas ({o['betas'][0]:g}, {o['betas'][1]:g}), eps {o['eps']:g}: Adam's "
                       "direction u scaled per tensor by the trust ratio ||w||/||u||; the decoupled decay "
                       + {"inside_trust_ratio": "inside u (u = d + lambda*w, scaled by the ratio too)",
                          "before": "applied to w first, the ratio taken from the decayed w",
                          "after": "outside the ratio"}[o["decay_placement"]]
                       + (f"; the ratio capped at {o['max_trust_ratio']:g}" if o.get("max_trust_ratio") else "")),
    "adafactor": _adafactor,
}


def sentence(opt: dict) -> str:
    return SENTENCES[opt["name"]](opt)


def column(opt: dict) -> str:
    """The conventions table's short "optimizer" column."""
    name = opt["name"]
    if name == "adam":
        text = f"Adam, ε {'after' if opt['eps_placement'] == 'corrected' else 'before'} bias correction"
        if not opt.get("bias_correction", True):
            text = "Adam, no bias correction"
        return text + {None: "", "v": ", AMSGrad max of v", "v_hat": ", AMSGrad max of v̂"}[opt.get("amsgrad")]
    if name in ("rmsprop", "adagrad"):
        label = {"rmsprop": "RMSprop", "adagrad": "Adagrad"}[name]
        return f"{label}, ε {'inside' if opt['eps_in_sqrt'] else 'outside'} the root"
    if name == "adamax":
        text = "Adamax, ε " + {"in_max": "inside the max (on |g|)", "in_max_decayed": "inside the max (on β2·u)",
                               "outside": "outside the max"}[opt["eps_placement"]]
        return text + ("" if opt.get("bias_correction", True) else ", m not bias-corrected")
    if name == "nadam":
        psi = opt["momentum_decay"]
        return "NAdam, constant μ" if psi is None else f"NAdam, μ_t with 0.96^({psi:g}t)"
    if name == "radam":
        return f"RAdam, rectified when ρ_t {'≥' if opt['threshold_inclusive'] else '>'} {opt['threshold']:g}"
    if name == "sgd":
        form = "" if not opt["momentum"] else (", momentum " + opt["momentum_form"])
        return "SGD" + form
    if name == "lamb":
        return {"inside_trust_ratio": "LAMB, decay inside the trust ratio", "before": "LAMB, decay before the trust ratio",
                "after": "LAMB, decay after the trust ratio"}[opt["decay_placement"]]
    if name == "adafactor":
        scale = "" if opt["parameter_scale"] is None else (
            ", scaled by rms(w) after the decay" if opt["decay_placement"] == "before" else ", scaled by rms(w)")
        return "Adafactor" + (", relative step" if opt["relative_step"] else "") + scale
    return {"adadelta": "Adadelta", "lion": "Lion"}[name]


# family -> (field, alternative values, what the note says): translate's nearest settings when a target
# cannot express a field (each alternative is trained, and its residual measured, before it is offered)
FIELD_VARIANTS: dict[str, list[tuple[str, list[Any], str]]] = {
    "adam": [("eps_placement", ["corrected", "uncorrected"], "epsilon placement"),
             ("amsgrad", [None, "v", "v_hat"], "AMSGrad max"),
             ("bias_correction_dtype", [None], "bias corrections exact (not from float32 betas)"),
             ("bias_correction", [True, False], "bias correction of the moments")],
    "sgd": [("momentum_form", ["buffer", "velocity"], "momentum form (lr inside/outside the momentum)"),
            ("dampening", [0.0], "dampening dropped")],
    "rmsprop": [("eps_in_sqrt", [True, False], "epsilon inside/outside the root"),
                ("momentum_form", ["buffer", "velocity"], "momentum form (lr inside/outside the momentum)"),
                ("initial_scale", [0.0], "v_0 = 0"), ("bias_correction", [False], "no bias correction")],
    "adagrad": [("eps_in_sqrt", [True, False], "epsilon inside/outside the root"),
                ("initial_accumulator", [0.0, 0.1], "initial accumulator"), ("lr_decay", [0.0], "no lr_decay")],
    "adamax": [("eps_placement", ["in_max", "outside", "in_max_decayed"], "epsilon inside/outside the max"),
               ("bias_correction", [True, False], "bias correction of m")],
    "nadam": [("momentum_decay", [0.004, 1.0, None], "NAdam momentum schedule")],
    "lamb": [("decay_placement", ["inside_trust_ratio", "before", "after"], "where the decay meets the trust ratio"),
             ("max_trust_ratio", [None], "trust ratio uncapped")],
    "adafactor": [("decay_placement", ["before", "after"], "parameter scale from the decayed or the current w"),
                  ("relative_step", [True, False], "relative step size min(lr, 1/sqrt(k))"),
                  ("decay_rate_dtype", [None, "float32"], "k^-decay_rate exact or in float32")],
    "radam": [("eps_placement", ["corrected", "uncorrected"], "epsilon placement"),
              ("threshold_inclusive", [True, False], "rectification threshold comparison")],
}
