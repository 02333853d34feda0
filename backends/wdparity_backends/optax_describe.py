"""What an optax run means: an alias is expanded into the chain optax builds for it, and a chain is read.

optax is where "coupled vs decoupled" is an ordering: `add_decayed_weights` adds weight_decay * params to
whatever the updates are at its position in the chain. `describe_chain` reads that order and the product of
the downstream scalings into neutral terms. Pure: no JAX import (optax_backend.py's docstring has the sources).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from wdparity.spec.errors import InputError
from wdparity.spec.models import Clip, DecayRule

from .optax_network import resolve
from .optax_schedules import neutral as decay_value
from .optax_vocab import CARRIERS, CLIP_TRANSFORMS, LAMB_SCHEDULED, SCALINGS, OptaxRun, item

# the transforms that normalise the gradient: one per chain, and no scaling before it
NORMALIZERS = ("scale_by_adam", "scale_by_amsgrad", "scale_by_rms", "scale_by_stddev", "scale_by_rss",
               "scale_by_adamax", "scale_by_radam", "scale_by_lion", "scale_by_adadelta")
WITH_TRACE = ("scale_by_rms", "scale_by_stddev")   # RMSprop's momentum: a trace after the normaliser


# ---------------------------------------------------------------- an alias is its chain (optax/_src/alias.py)
def _keys(*names: str) -> dict[str, str]:
    return {n: n for n in names}


LR = ("scale_by_learning_rate", {})
ADAM_KEYS = _keys("b1", "b2", "eps", "eps_root", "mu_dtype", "nesterov")
DECAY = ("add_decayed_weights", _keys("weight_decay", "mask"))
# alias -> the chain optax builds for it: (transform, {its keyword: the alias keyword passed to it}), in order
EXPANSIONS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "sgd": [("trace", {"decay": "momentum", **_keys("nesterov", "accumulator_dtype")}), LR],   # alias.py:2125-2136
    "adam": [("scale_by_adam", ADAM_KEYS), LR],                                             # alias.py:519-529
    "nadam": [("scale_by_adam", ADAM_KEYS), LR],                                            # alias.py:532
    "adamw": [("scale_by_adam", ADAM_KEYS), DECAY, LR],                                     # alias.py:716-727
    "nadamw": [("scale_by_adam", ADAM_KEYS), DECAY, LR],                                    # alias.py:730
    "amsgrad": [("scale_by_amsgrad", _keys("b1", "b2", "eps", "eps_root", "mu_dtype", "bias_correction_mu",
                                           "bias_correction_nu")), LR],                      # alias.py:1084-1095
    "rmsprop": [("scale_by_rms", _keys("decay", "eps", "initial_scale", "eps_in_sqrt", "bias_correction")), LR,
                ("trace", {"decay": "momentum", "nesterov": "nesterov"})],                   # alias.py:2016-2046
    "adagrad": [("scale_by_rss", _keys("initial_accumulator_value", "eps")), LR],           # alias.py:406-411
    "adadelta": [("add_decayed_weights", {"weight_decay": "weight_decay", "mask": "weight_decay_mask"}),
                 ("scale_by_adadelta", _keys("rho", "eps")), LR],                           # alias.py:217-221
    "adamax": [("scale_by_adamax", _keys("b1", "b2", "eps")), LR],                          # alias.py:2383-2390
    "adamaxw": [("scale_by_adamax", _keys("b1", "b2", "eps")), DECAY, LR],                  # alias.py:2461-2465
    "radam": [("scale_by_radam", _keys("b1", "b2", "eps", "eps_root", "threshold", "nesterov")), LR],  # :1922-1932
    "lion": [("scale_by_lion", _keys("b1", "b2", "mu_dtype")), DECAY, LR],                  # alias.py:1016-1020
    "lamb": [("scale_by_adam", _keys("b1", "b2", "eps", "eps_root")), DECAY, ("scale_by_trust_ratio", {}), LR],  # :1295-1300
}


def alias_chain(run: OptaxRun) -> list:
    """The chain optax's alias builds, keyword for keyword (a fact test trains each alias against it)."""
    out = []
    for transform, keys in EXPANSIONS[run.optimizer]:
        if transform == "scale_by_learning_rate":
            out.append(item(transform, learning_rate=run.learning_rate))
            continue
        if transform == "trace" and run.value("momentum") is None:   # identity (alias.py:2132,2041-2045)
            continue
        if transform == "scale_by_rms" and run.value("centered"):     # alias.py:2016-2031
            transform = "scale_by_stddev"
        out.append(item(transform, **{k: run.value(a) for k, a in keys.items()}))
    return out


# ---------------------------------------------------------------- reading a chain
def _factor(t) -> float:
    if t.transform == "scale":
        return t.step_size
    if t.transform == "scale_by_schedule":
        return t.init_value
    return -t.learning_rate if t.flip_sign else t.learning_rate


def _coef(t) -> float:
    """An add_decayed_weights' coefficient: its number, or its schedule's init_value."""
    return decay_value(t.weight_decay)[0]


def _optimizer(core, trace, velocity: bool, lr: float, placement: Optional[str] = None) -> dict:
    """The neutral optimizer of a chain's normaliser (None: SGD) and trace; `placement`: LAMB's, with a trust ratio."""
    name = core.transform if core is not None else None
    momentum = trace.decay if trace is not None else 0.0
    if placement is not None:                               # scale_by_adam, then the trust ratio (alias.py:1295-1300)
        return {"name": "lamb", "lr": lr, "betas": [core.b1, core.b2], "eps": core.eps, "decay_placement": placement}
    if name is None:   # trace(decay=0) adds nothing, nesterov included: plain SGD
        extra = {"momentum": momentum, "nesterov": trace.nesterov} if momentum > 0 else {}
        return {"name": "sgd", "lr": lr, **extra, "momentum_form": "velocity" if velocity else "buffer"}
    betas = [core.b1, core.b2] if hasattr(core, "b2") else None
    if name == "scale_by_adam" and core.nesterov:          # NAdam with a constant momentum b1 (transform.py:286-292)
        return {"name": "nadam", "lr": lr, "betas": betas, "eps": core.eps, "momentum_decay": None}
    if name == "scale_by_adam":
        return {"name": "adam", "lr": lr, "betas": betas, "eps": core.eps}
    if name == "scale_by_amsgrad":                          # max of the corrected nu_hat (transform.py:373-378)
        return {"name": "adam", "lr": lr, "betas": betas, "eps": core.eps, "amsgrad": "v_hat"}
    if name in WITH_TRACE:
        return {"name": "rmsprop", "lr": lr, "rho": core.decay, "eps": core.eps, "eps_in_sqrt": core.eps_in_sqrt,
                "centered": name == "scale_by_stddev", "momentum": momentum,
                "momentum_form": "velocity" if velocity and momentum > 0 else "buffer",
                "initial_scale": core.initial_scale, "bias_correction": core.bias_correction}
    if name == "scale_by_rss":                              # rsqrt(sum + eps): eps inside the root (transform.py:72)
        return {"name": "adagrad", "lr": lr, "initial_accumulator": core.initial_accumulator_value, "eps": core.eps,
                "eps_in_sqrt": True}
    if name == "scale_by_adamax":                           # max(|g| + eps, b2*u) (_tree_math.py:410)
        return {"name": "adamax", "lr": lr, "betas": betas, "eps": core.eps, "eps_placement": "in_max"}
    if name == "scale_by_radam":                            # eps after the correction, ro >= threshold (:876-879)
        return {"name": "radam", "lr": lr, "betas": betas, "eps": core.eps, "eps_placement": "corrected",
                "threshold": core.threshold, "threshold_inclusive": True}
    if name == "scale_by_lion":
        return {"name": "lion", "lr": lr, "betas": betas}
    return {"name": "adadelta", "lr": lr, "rho": core.rho, "eps": core.eps}


def _clip(chain: list, start: int, bad) -> Optional[Clip]:
    """The chain's clipping transform as the neutral Clip. It clips what the updates are at its position: before
    the optimizer starts (`start`) that is the loss's gradient plus the add_decayed_weights terms before it."""
    clips = [i for i, t in enumerate(chain) if t.transform in CLIP_TRANSFORMS]
    if not clips:
        return None
    k = clips[0]
    if len(clips) > 1:
        raise bad(clips[1], "transform", chain[clips[1]].transform, "is a second clipping transform (the neutral "
                  "model clips once)")
    if k > start:
        what = chain[start].transform
        if what in SCALINGS:
            why = "it would clip the lr-scaled step, not the gradient"
        else:
            why = "it would clip the optimizer's direction, not the gradient (outside the neutral model)"
        raise bad(k, "transform", chain[k].transform, f"must come before {what}: {why}")
    terms = [i for i in range(start) if chain[i].transform == "add_decayed_weights"]
    before = [i for i in terms if i < k]
    after = [i for i in terms if i > k and _coef(chain[i]) != 0.0]
    if after and any(_coef(chain[i]) != 0.0 for i in before):
        raise bad(k, "transform", chain[k].transform, "must not sit between two add_decayed_weights: one term "
                  "clipped and the other not is outside the neutral model")
    position = "after_coupled_decay" if before and not after else "loss_gradient"
    t = chain[k]
    if t.transform == "clip":
        return Clip(kind="value", threshold=t.max_delta, position=position)
    return Clip(kind="global_norm", threshold=t.max_norm, eps=0.0, position=position)


def _trust_ratio(chain: list, cores: list, traces: list, scalings: list, bad) -> Optional[int]:
    """Where LAMB's scale_by_trust_ratio stands (None: no ratio), checked to follow scale_by_adam as in optax.lamb."""
    ratios = [i for i, t in enumerate(chain) if t.transform == "scale_by_trust_ratio"]
    if not ratios:
        return None
    r = ratios[0]
    if len(ratios) > 1:
        raise bad(ratios[1], "transform", "scale_by_trust_ratio", "is a second trust ratio (one per chain)")
    core = chain[cores[0]] if cores else None
    if core is None or core.transform != "scale_by_adam" or core.nesterov or traces or cores[0] > r:
        raise bad(r, "transform", "scale_by_trust_ratio", "must follow scale_by_adam (nesterov false, no trace), as "
                  "in optax.lamb (optax/_src/alias.py:1295-1300): the ratio of another direction (optax.lars's "
                  "momentum, alias.py:1221-1232) is outside the neutral model's LAMB")
    between = [s for s in scalings if s < r]
    if between:
        raise bad(between[0], "transform", chain[between[0]].transform, "must come after scale_by_trust_ratio: the "
                  "ratio ||w||/||u|| undoes a scaling before it (optax.lamb scales after it, alias.py:1298-1299)")
    return r


def describe_chain(chain: list, schedule_kind: str) -> tuple[dict, list[DecayRule], Optional[Clip]]:
    """(optimizer dict, decay rules, clip) of a chain. Scalings multiply the update by K_i (x eta_t for
    carriers)."""
    def bad(i, key, value, expected):
        return InputError("", f"chain[{i}].{key}" if i is not None else "chain", expected, value)

    cores = [i for i, t in enumerate(chain) if t.transform in NORMALIZERS]
    traces = [i for i, t in enumerate(chain) if t.transform == "trace"]
    both = sorted(cores + traces)
    scalings = [i for i, t in enumerate(chain) if t.transform in SCALINGS]
    carriers = [i for i in scalings if chain[i].transform in CARRIERS]
    if len(both) > 1 and not (len(cores) == len(traces) == 1 and cores[0] < traces[0]
                              and chain[cores[0]].transform in WITH_TRACE):
        raise bad(both[1], "transform", chain[both[1]].transform, "must not follow another optimizer core (one "
                  "normaliser or trace per chain; a trace follows only scale_by_rms or scale_by_stddev, as "
                  "optax.rmsprop's momentum)")
    if len(carriers) > 1:
        raise bad(carriers[1], "transform", chain[carriers[1]].transform, "would apply the run's schedule a second "
                  "time (eta_t^2 is outside the neutral model); use scale(step_size=...) for constants")
    if schedule_kind != "constant" and not carriers:
        raise bad(None, "", "[...]", "must carry the run's schedule in a scale_by_learning_rate or scale_by_schedule "
                  "transform (otherwise the schedule would be silently ignored)")
    K = float(np.prod([_factor(chain[i]) for i in scalings])) if scalings else 1.0
    if not K < 0:
        raise bad(None, "", "[...]", f"must scale the update by a negative total (learning rate); its scalings "
                  f"multiply to {K}, which {'ascends' if K > 0 else 'freezes'} the loss")
    core = chain[cores[0]] if cores else None
    trace = chain[traces[0]] if traces else None
    c = both[0] if both else (scalings[0] if scalings else len(chain))   # where the optimizer starts ...
    end = both[-1] if both else c                                          # ... and ends (its trace)
    if core is not None and scalings and scalings[0] < cores[0]:
        raise bad(scalings[0], "transform", chain[scalings[0]].transform, f"must come after {core.transform} (a "
                  "scale before the gradient's normalisation is not a learning rate)")
    if trace is not None and trace.nesterov and trace.decay > 0 and core is not None:
        raise bad(traces[0], "nesterov", True, "must be false after scale_by_rms / scale_by_stddev: RMSprop with a "
                  "Nesterov trace (optax/_src/alias.py:2040-2044) is outside the neutral model")
    ratio = _trust_ratio(chain, cores, traces, scalings, bad)
    velocity = trace is not None and (carriers[0] < traces[0] if carriers else scalings[0] < traces[0]
                                      if scalings else False)
    rules, inside, outside = [], [], []   # LAMB: its add_decayed_weights inside the trust ratio, and after it
    for i, t in enumerate(chain):
        if t.transform != "add_decayed_weights":
            continue
        if ratio is not None and c < i < ratio:
            inside.append(i)
        wd, sched = decay_value(t.weight_decay)
        if wd == 0.0:   # a constant 0 is skipped (_adding.py:68); a schedule from 0 adds 0*w
            continue
        params = resolve(f"chain[{i}].mask", t.mask)
        if c < i < end:
            raise bad(i, "transform", t.transform, f"must not sit between {core.transform} and trace: the decay "
                      "would accumulate in RMSprop's momentum, outside the neutral model")
        if i < c:
            if any(s < i for s in scalings):
                raise bad(i, "transform", t.transform, "must come before every scaling transform when it precedes "
                          "the optimizer core (a pre-scaled decay term is outside the neutral model)")
            if wd < 0:
                raise bad(i, "weight_decay", wd, "must be >= 0 before the optimizer core (a negative L2 "
                          "term makes the weights grow)")
            rules.append(DecayRule(norm="l2", coupling="gradient", coefficient=wd, params=params, schedule=sched))
            continue
        if ratio is not None and i < ratio:   # u = d + lambda*w, then the ratio (optax.lamb, alias.py:1296-1298)
            if wd < 0:
                raise bad(i, "weight_decay", wd, "must be >= 0 inside scale_by_trust_ratio (the weights would grow)")
            if sched is not None:
                raise bad(i, "weight_decay", t.weight_decay.model_dump(), LAMB_SCHEDULED)
            rules.append(DecayRule(norm="l2", coupling="decoupled", coefficient=wd, scale="lr", params=params))
            continue
        after = [s for s in scalings if s > i]
        k_after = float(np.prod([_factor(chain[s]) for s in after])) if after else 1.0
        a = any(chain[s].transform in CARRIERS for s in after)
        if k_after == K and a == bool(carriers):        # every scaling follows: w <- w - lr_t*lambda*w
            scale, coef = "lr", wd
        else:                                           # step += lambda * k_after * (eta_t if a) * w
            scale, coef = ("schedule" if a else "none"), -wd * k_after
        if coef < 0:
            raise bad(i, "weight_decay", wd, f"adds {-coef:g}*{'eta_t*' if a else ''}w to the step: the "
                      f"weights grow (downstream scalings multiply it by {k_after:g}; flip its sign to decay)")
        if ratio is not None and scale != "lr":
            raise bad(i, "transform", t.transform, "must come before every scaling with scale_by_trust_ratio: "
                      "LAMB's decoupled decay is lr-scaled (the neutral LAMB has no decay after the learning rate)")
        if ratio is not None:
            outside.append(i)
        rules.append(DecayRule(norm="l2", coupling="decoupled", coefficient=coef, scale=scale, params=params,
                               schedule=sched))
    placement = None
    if ratio is not None:
        if outside and any(_coef(chain[i]) != 0.0 for i in inside):
            raise bad(outside[0], "transform", "add_decayed_weights", "must not follow scale_by_trust_ratio while "
                      "another decays inside it: the neutral LAMB has one decay placement")
        placement = "inside_trust_ratio" if inside and not outside else "after"
    return _optimizer(core, trace, velocity, -K, placement), rules, _clip(chain, c, bad)
