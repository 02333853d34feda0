"""Neutral semantics as an optax run: an alias where one holds the setting exactly, else a chain of transforms,
or Inexpressible naming optax's reason and the nearest setting it has. Pure (no JAX import).
"""

from __future__ import annotations

from typing import Optional

from wdparity.run.adapter import refuse_clip, refuse_frozen, refuse_l1, refuse_no_bias_correction
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity.spec.network import in_scope

from . import optax_adafactor as adafactor
from .optax_network import spelled
from .optax_schedules import native as weight_decay

JAX_L1_AT_ZERO = 1.0   # jax.grad(jnp.abs)(0.0) == 1.0 (lax.py:4715); tests/test_optax_backend.py measures it


RADAM_FLOAT32 = ("in a float32 run (no x64) optax.scale_by_radam computes rho_t = ro_inf - 2t*b2^t/(1 - b2^t) and the "
                 "rectification r_t in float32 (optax/_src/transform.py:842-847,865-866), whose cancellation moves r_t "
                 "by ~1e-4 relative (b2 = 0.99, t = 6: measured), and may flip the threshold test; the neutral "
                 "RAdam's rectification is exact")


def bias_correction_dtype(task: Task) -> Optional[str]:
    """Adam's 1 - b^t: `decay**count` with a Python-float decay and an int32 count is computed in JAX's default
    float, float32 without x64 (a float32 run), float64 with it (optax/tree_utils/_tree_math.py:449)."""
    return "float32" if task.dtype == "float32" else None


def refuse(opt, task: Task) -> None:
    """Inexpressible: the neutral settings no optax transform computes, each with the nearest one it has."""
    name = opt.name
    if name == "sgd" and opt.dampening:
        raise Inexpressible(f"optax.trace has no dampening (optax/transforms/_accumulation.py:68: trace = g + "
                            f"decay*trace); nearest: trace(decay={opt.momentum}) with dampening 0, whose buffer "
                            f"grows {1 / (1 - opt.dampening):.3g}x larger")
    refuse_no_bias_correction(opt, "optax")
    if name == "adam" and opt.bias_correction_dtype != bias_correction_dtype(task):
        f32 = task.dtype == "float32"
        nearest = 'bias_correction_dtype = "float32"' if f32 else "exact bias corrections"
        raise Inexpressible(f"optax.scale_by_adam computes 1 - b^t (optax/tree_utils/_tree_math.py:449) in "
                            f"{'float32 from float32 betas' if f32 else 'float64'} in a {task.dtype} run; "
                            f"nearest: {nearest}")
    if name == "adam" and opt.eps_placement != "corrected":
        raise Inexpressible("optax.scale_by_adam adds eps to sqrt(v_hat) (optax/_src/transform.py:300); nearest: "
                            "eps_placement = \"corrected\", whose effective epsilon is larger by 1/sqrt(1-b2^t)")
    if name == "adam" and opt.amsgrad == "v":
        raise Inexpressible("optax.scale_by_amsgrad takes the running max of the bias-corrected nu_hat "
                            "(optax/_src/transform.py:373-378), not of v; nearest: amsgrad = \"v_hat\", which "
                            "differs once 1 - b2^t has grown while v fell")
    if name == "adagrad" and not opt.eps_in_sqrt:
        raise Inexpressible("optax.scale_by_rss adds eps inside the root, g * rsqrt(sum + eps) "
                            "(optax/_src/transform.py:72); nearest: eps_in_sqrt = true")
    if name == "adagrad" and opt.lr_decay:
        raise Inexpressible(f"optax.adagrad has no lr_decay (torch's 1/(1 + t*lr_decay) factor, optax/_src/alias.py:"
                            f"329-332); nearest: lr_decay = 0, whose step is larger by 1 + t*{opt.lr_decay:g} at t")
    if name == "adamax" and opt.eps_placement != "in_max":
        raise Inexpressible("optax.scale_by_adamax takes max(|g| + eps, b2*u) (optax/tree_utils/_tree_math.py:410) "
                            "and divides by it; nearest: eps_placement = \"in_max\"")
    if name == "nadam" and opt.momentum_decay is not None:
        raise Inexpressible(f"optax.nadam's momentum is the constant b1 (optax/_src/transform.py:286-292), without "
                            f"the schedule b1*(1 - 0.5*0.96^(t*{opt.momentum_decay:g})); nearest: momentum_decay = "
                            "None")
    if name == "radam" and opt.eps_placement != "corrected":
        raise Inexpressible("optax.scale_by_radam adds eps to sqrt(nu_hat) (optax/_src/transform.py:849,876); "
                            "nearest: eps_placement = \"corrected\", whose effective epsilon is larger by "
                            "1/sqrt(1-b2^t)")
    if name == "lamb" and opt.decay_placement == "before":
        raise Inexpressible("optax has no LAMB that decays w before its trust ratio (Keras's Lamb: the ratio of the "
                            "decayed w): optax.lamb adds weight_decay*w inside the ratio (optax/_src/alias.py:"
                            "1296-1298) and a chain can put add_decayed_weights after scale_by_trust_ratio; nearest: "
                            "decay_placement = \"after\", whose ratio ||w||/||d|| is larger by 1/(1 - lr_t*lambda) "
                            "on each decayed tensor (the same where no rule is decoupled)")
    if name == "radam" and task.dtype == "float32":
        raise Inexpressible(RADAM_FLOAT32 + "; nearest: the same run in float64")
    if name == "radam" and not opt.threshold_inclusive:
        raise Inexpressible(f"optax.scale_by_radam rectifies where ro >= threshold (optax/_src/transform.py:878); "
                            f"nearest: threshold_inclusive = true, which differs only at a step where rho_t == "
                            f"{opt.threshold:g} exactly")


def _normaliser(opt) -> list[dict]:
    """The optax transform computing the family's direction (before any learning rate), keywords as optax's."""
    b = {"b1": opt.betas[0], "b2": opt.betas[1]} if hasattr(opt, "betas") else {}
    if opt.name == "adam":
        return [{"transform": "scale_by_amsgrad" if opt.amsgrad == "v_hat" else "scale_by_adam", **b, "eps": opt.eps}]
    if opt.name == "nadam":
        return [{"transform": "scale_by_adam", **b, "eps": opt.eps, "nesterov": True}]
    if opt.name == "rmsprop":
        return [{"transform": "scale_by_stddev" if opt.centered else "scale_by_rms", **_rms(opt)}]
    if opt.name == "adagrad":
        return [{"transform": "scale_by_rss", "initial_accumulator_value": opt.initial_accumulator, "eps": opt.eps}]
    if opt.name == "adamax":
        return [{"transform": "scale_by_adamax", **b, "eps": opt.eps}]
    if opt.name == "radam":
        return [{"transform": "scale_by_radam", **b, "eps": opt.eps, "threshold": opt.threshold}]
    if opt.name == "lion":
        return [{"transform": "scale_by_lion", **b}]
    if opt.name == "adadelta":
        return [{"transform": "scale_by_adadelta", "rho": opt.rho, "eps": opt.eps}]
    return []


def _rms(opt) -> dict:
    return {"decay": opt.rho, "eps": opt.eps, "initial_scale": opt.initial_scale, "eps_in_sqrt": opt.eps_in_sqrt,
            "bias_correction": opt.bias_correction}


def _mask(key: str, params: list[str]) -> dict:
    """optax's mask for these tensors (none where they are every tensor): optax_network.spelled."""
    return {key: spelled(params)} if len(params) < len(in_scope()) else {}


def _alias(opt, coupled: list, dec: dict) -> Optional[dict]:
    """The optax alias that is exactly this optimizer with these L2 rules, or None (then a chain)."""
    run = {"learning_rate": opt.lr}
    b = {"b1": opt.betas[0], "b2": opt.betas[1]} if hasattr(opt, "betas") else {}
    plain = not coupled and not any(dec.values())
    one_decoupled = not coupled and not dec["schedule"] and not dec["none"] and len(dec["lr"]) <= 1
    wd = {"weight_decay": _wd(dec["lr"][0]), **_mask("mask", dec["lr"][0].params)} if dec["lr"] else {}
    if opt.name == "sgd" and plain and opt.momentum_form == "buffer":
        return {"optimizer": "sgd", **run, **({"momentum": opt.momentum} if opt.momentum else {}),
                **({"nesterov": True} if opt.nesterov else {})}
    if opt.name == "adam" and opt.amsgrad == "v_hat":
        return {"optimizer": "amsgrad", **run, **b, "eps": opt.eps} if plain else None
    if opt.name in ("adam", "nadam", "adamax") and one_decoupled:
        return {"optimizer": opt.name + ("w" if wd else ""), **run, **b, "eps": opt.eps, **wd}
    if opt.name == "rmsprop" and plain and (opt.momentum == 0 or opt.momentum_form == "velocity"):
        return {"optimizer": "rmsprop", **run, **_rms(opt), "centered": opt.centered,
                **({"momentum": opt.momentum} if opt.momentum else {})}
    if opt.name == "adagrad" and plain:
        return {"optimizer": "adagrad", **run, "initial_accumulator_value": opt.initial_accumulator, "eps": opt.eps}
    if opt.name == "radam" and plain:
        return {"optimizer": "radam", **run, **b, "eps": opt.eps, "threshold": opt.threshold}
    if opt.name == "adadelta" and not any(dec.values()) and len(coupled) <= 1:   # its weight_decay is coupled
        decay = ({"weight_decay": _wd(coupled[0]), **_mask("weight_decay_mask", coupled[0].params)}
                 if coupled else {})
        return {"optimizer": "adadelta", **run, "rho": opt.rho, "eps": opt.eps, **decay}
    if opt.name == "lion" and one_decoupled:   # its weight_decay defaults to 1e-3: always written
        return {"optimizer": "lion", **run, **b, **(wd or {"weight_decay": 0.0})}
    if opt.name == "lamb" and one_decoupled and opt.decay_placement == "inside_trust_ratio" and not any(
            r.schedule is not None for r in dec["lr"]):
        return {"optimizer": "lamb", **run, **b, "eps": opt.eps, **wd}
    return None


def _wd(rule, sign: float = 1.0):
    """A rule's weight_decay as optax takes it: its coefficient (times sign), or a schedule table from it."""
    return weight_decay(sign * rule.coefficient, rule.schedule)


def _lamb(opt, dec: dict) -> list[dict]:
    """LAMB's transforms after the coupled terms: scale_by_adam, its decoupled add_decayed_weights inside the trust
    ratio (optax.lamb, alias.py:1295-1300; a zero one marks the placement where no rule is decoupled) or after it."""
    rules = dec["lr"]
    if opt.decay_placement == "inside_trust_ratio" and any(r.schedule is not None for r in rules):
        raise Inexpressible("a scheduled decay inside LAMB's trust ratio is outside the neutral model (its inside term "
                            "is lambda*w with a constant lambda), though optax.lamb takes a schedule there; nearest: "
                            "decay_placement = \"after\"")
    terms = [_adw(_wd(r), r) for r in rules]
    adam = {"transform": "scale_by_adam", "b1": opt.betas[0], "b2": opt.betas[1], "eps": opt.eps}
    ratio, lr = {"transform": "scale_by_trust_ratio"}, {"transform": "scale_by_learning_rate", "learning_rate": opt.lr}
    if opt.decay_placement == "inside_trust_ratio":
        return [adam, *(terms or [_adw(0.0, None)]), ratio, lr]
    return [adam, ratio, *terms, lr]


def _adw(value, rule) -> dict:
    return {"transform": "add_decayed_weights", "weight_decay": value, **(_mask("mask", rule.params) if rule else {})}


# (kind, position) -> the optax chain that clips so (refuse_clip names them)
CLIPPING = {("global_norm", "loss_gradient"): "chain(clip_by_global_norm(max_norm), add_decayed_weights, scale_by_...)",
            ("global_norm", "after_coupled_decay"): "chain(add_decayed_weights, clip_by_global_norm(max_norm), "
                                                    "scale_by_...)",
            ("value", "loss_gradient"): "chain(clip(max_delta), add_decayed_weights, scale_by_...)",
            ("value", "after_coupled_decay"): "chain(add_decayed_weights, clip(max_delta), scale_by_...)"}


def _clip(semantics: Semantics) -> Optional[dict]:
    """The clipping transform of the run (None: none), or Inexpressible naming optax's nearest."""
    clip = semantics.clip
    if clip is None:
        return None
    try:
        refuse_clip(semantics, CLIPPING, "optax")
    except Inexpressible as exc:
        if clip.kind != "tensor_norm":
            raise
        raise Inexpressible(f"{exc} (optax.clip_by_block_rms bounds each tensor's RMS, a norm bound of "
                            f"threshold*sqrt(size): optax/transforms/_clipping.py:66-70)") from None
    if clip.eps:
        raise Inexpressible(f"optax.clip_by_global_norm scales by max_norm/||g|| with no eps (optax/transforms/"
                            f"_clipping.py:96-105); nearest: eps = 0, which differs by ||g||/(||g|| + {clip.eps:g}) "
                            f"on every clipped step")
    if clip.kind == "value":
        return {"transform": "clip", "max_delta": clip.threshold}
    return {"transform": "clip_by_global_norm", "max_norm": clip.threshold}


def _penalty(rules: list) -> dict:
    """The loss penalty of the rules that must be loss terms: L1 always (jax.grad), L2 where a clip must see it."""
    l1 = [r for r in rules if r.norm == "l1"]
    refuse_l1(l1, JAX_L1_AT_ZERO, "optax (jax.grad)")
    if len(l1) > 1:
        raise Inexpressible("one `penalty` holds one L1 term; nearest: a single L1 rule")
    l2 = [r for r in rules if r.norm == "l2"]
    if len(l2) > 1:
        raise Inexpressible("one `penalty` holds one L2 term; nearest: a single L2 loss penalty")
    if l1 and l2 and l1[0].params != l2[0].params:
        raise Inexpressible(f"one `penalty` names one set of tensors for its l1 and l2 terms (here {l1[0].params} and "
                            f"{l2[0].params}); nearest: both on {l1[0].params}")
    if not rules:
        return {}
    return {"penalty": {**({"l1": l1[0].coefficient} if l1 else {}), **({"l2": l2[0].coefficient / 2} if l2 else {}),
                        "params": list(rules[0].params)}}


def realize(semantics: Semantics, task: Task) -> dict:
    opt, rules = semantics.optimizer, list(semantics.decay)
    refuse_frozen(semantics, "optax.transforms.freeze / set_to_zero, optax/transforms/_freezing.py:29")
    if opt.name == "adafactor":
        return adafactor.realize(semantics, task, _penalty)
    clip = _clip(semantics)
    refuse(opt, task)
    # a clip sees a loss penalty and not the optimizer's own term, so the rules that came from the loss stay there
    in_loss = [r for r in rules if r.norm == "l1" or (clip is not None and r.via_loss)]
    penalty = _penalty(in_loss)
    coupled = [r for r in rules if r.norm == "l2" and r.coupling == "gradient" and r not in in_loss]
    dec = {s: [r for r in rules if r.norm == "l2" and r.coupling == "decoupled" and r.effective_scale == s]
           for s in ("lr", "schedule", "none")}
    velocity = opt.name in ("sgd", "rmsprop") and opt.momentum_form == "velocity"
    if velocity and (dec["lr"] or dec["schedule"]):
        raise Inexpressible("optax applies the schedule once: with it before trace (velocity form), a decoupled "
                            "decay after trace cannot be scaled by it; nearest: momentum_form = \"buffer\"")
    alias = _alias(opt, coupled, dec) if clip is None else None   # no alias clips
    if alias is not None:
        return {**alias, **penalty}

    chain = [_adw(_wd(r), r) for r in coupled]
    if clip is not None and semantics.clip.position == "loss_gradient":
        chain = [clip] + chain
    elif clip is not None:   # after the coupled terms; with none, a zero term (skipped by optax) marks the position
        chain = (chain or [{"transform": "add_decayed_weights", "weight_decay": 0.0}]) + [clip]
    if opt.name == "lamb":
        return {"chain": chain + _lamb(opt, dec), **penalty}
    pre = _normaliser(opt)
    momentum = opt.momentum if opt.name in ("sgd", "rmsprop") else 0.0
    if opt.name == "sgd" and (momentum or any(dec.values()) or velocity):   # trace(0) marks SGD's core
        post = [{"transform": "trace", "decay": momentum, **({"nesterov": True} if opt.nesterov else {})}]
    else:
        post = [{"transform": "trace", "decay": momentum}] if momentum else []
    lr = {"transform": "scale_by_learning_rate", "learning_rate": opt.lr}
    if velocity:
        chain += pre + [lr] + post
    elif dec["schedule"]:
        chain += pre + post + [_adw(_wd(r), r) for r in dec["lr"]] + [{"transform": "scale", "step_size": opt.lr}]
        chain += [_adw(_wd(r), r) for r in dec["schedule"]]
        chain += [{"transform": "scale_by_learning_rate", "learning_rate": 1.0}]
    else:
        chain += pre + post + [_adw(_wd(r), r) for r in dec["lr"]] + [lr]
    chain += [_adw(_wd(r, -1.0), r) for r in dec["none"]]
    return {"chain": chain, **penalty}
