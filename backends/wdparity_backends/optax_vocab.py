"""The optax run's vocabulary, as data: alias keywords, chain transforms, and what a chain means.

optax is where "coupled vs decoupled" is an ordering: `add_decayed_weights` adds weight_decay * params
to whatever the updates are at its position in the chain. `describe_chain` reads that order and the
product of the downstream scalings into neutral terms (optax_backend.py's docstring has the sources).
Pure: no JAX import, shared by the adapter (describe) and the vmapped grid (optax_batch.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import Discriminator, Tag, model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.errors import InputError
from wdparity.spec.models import TENSORS, DecayRule, Finite, NonNeg, Penalty, Positive, Strict, Unit, check_tensors, fail

SCALINGS = ("scale", "scale_by_learning_rate", "scale_by_schedule")
CARRIERS = ("scale_by_learning_rate", "scale_by_schedule")   # the transforms that carry the run's schedule


# ---------------------------------------------------------------- the run's vocabulary
class AddDecayedWeights(Strict):
    transform: Literal["add_decayed_weights"]
    weight_decay: Finite = 0.0
    mask: Optional[list[str]] = None

    @model_validator(mode="after")
    def _mask(self):
        if self.mask is not None:
            check_tensors("mask", self.mask)
        return self


class ScaleByAdam(Strict):
    transform: Literal["scale_by_adam"]
    b1: Unit = 0.9
    b2: Unit = 0.999
    eps: Positive = 1e-8
    eps_root: NonNeg = 0.0
    nesterov: bool = False

    @model_validator(mode="after")
    def _neutral(self):
        _check_adam(self.eps_root, self.nesterov)
        return self


class Trace(Strict):
    transform: Literal["trace"]
    decay: Unit
    nesterov: bool = False


class ScaleByLearningRate(Strict):
    transform: Literal["scale_by_learning_rate"]
    learning_rate: Positive
    flip_sign: bool = True


class Scale(Strict):
    transform: Literal["scale"]
    step_size: Finite


class ScaleBySchedule(Strict):
    """scale_by_schedule(step_size_fn): the fn is the run's schedule built with this `init_value`."""

    transform: Literal["scale_by_schedule"]
    init_value: Finite


_KINDS = {m.model_fields["transform"].annotation.__args__[0]: m
          for m in (AddDecayedWeights, ScaleByAdam, Trace, ScaleByLearningRate, Scale, ScaleBySchedule)}
# Tags are not identifiers, so error keys read "chain[2].weight_decay", not "chain[2].scale.weight_decay".
ChainItem = Annotated[Union[tuple(Annotated[m, Tag(f"<{k}>")] for k, m in _KINDS.items())], Discriminator(
    lambda v: f"<{v.get('transform') if isinstance(v, dict) else getattr(v, 'transform', None)}>")]


def _check_adam(eps_root: Optional[float], nesterov: Optional[bool]) -> None:
    if eps_root:
        raise fail("eps_root", eps_root, "must be 0.0: sqrt(v_hat + eps_root) (optax/_src/transform.py:300) "
                   "is neither epsilon placement of the neutral model")
    if nesterov:
        raise fail("nesterov", nesterov, "must be false for Adam: NAdam (optax/_src/transform.py:286) is "
                   "outside the neutral model")


ALIAS_KEYS = {"sgd": ("momentum", "nesterov"), "adam": ("b1", "b2", "eps", "eps_root", "nesterov"),
              "adamw": ("b1", "b2", "eps", "eps_root", "nesterov", "weight_decay", "mask")}


class OptaxRun(Strict):
    optimizer: Optional[Literal["sgd", "adam", "adamw"]] = None
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    nesterov: Optional[bool] = None
    b1: Optional[Unit] = None
    b2: Optional[Unit] = None
    eps: Optional[Positive] = None
    eps_root: Optional[NonNeg] = None
    weight_decay: Optional[NonNeg] = None
    mask: Optional[list[str]] = None
    chain: Optional[list[ChainItem]] = None
    penalty: Optional[Penalty] = None

    @model_validator(mode="before")
    @classmethod
    def _transform_names(cls, data: Any) -> Any:
        chain = data.get("chain") if isinstance(data, dict) else None
        for i, item in enumerate(chain if isinstance(chain, list) else []):
            if not isinstance(item, dict):
                raise fail(f"chain[{i}]", item, "must be a table {transform = \"...\", <optax keywords>}")
            if item.get("transform") not in _KINDS:
                raise fail(f"chain[{i}].transform", item.get("transform"), f"must be one of {list(_KINDS)}")
        return data

    @model_validator(mode="after")
    def _consistent(self):
        alias_keys = sorted({k for keys in ALIAS_KEYS.values() for k in keys} | {"learning_rate"})
        if self.chain is not None:
            if self.optimizer is not None:
                raise fail("chain", "[...]", "excludes `optimizer`: give either an optax alias or a chain")
            if not self.chain:
                raise fail("chain", [], "must hold at least one transform")
            for key in alias_keys:
                if getattr(self, key) is not None:
                    raise fail(key, getattr(self, key), "belongs to `optimizer = ...`; in a chain, set it on a "
                               "transform")
            return self
        if self.optimizer is None:
            raise fail("optimizer", None, "is required (\"sgd\", \"adam\", \"adamw\") unless a `chain` is given")
        if self.learning_rate is None:
            raise fail("learning_rate", None, f"is required by optax.{self.optimizer}")
        check_keywords(self, self.optimizer, ALIAS_KEYS, "optax.{optimizer}")
        if self.mask is not None:
            check_tensors("mask", self.mask)
        if self.optimizer == "sgd" and self.nesterov and not self.momentum:
            raise fail("nesterov", True, "needs momentum > 0 (optax.sgd silently ignores nesterov without momentum, "
                       "optax/_src/alias.py:2132)")
        if self.optimizer != "sgd":
            _check_adam(self.eps_root, self.nesterov)
        return self


# ---------------------------------------------------------------- describe: reading a chain
def _factor(t) -> float:
    if t.transform == "scale":
        return t.step_size
    if t.transform == "scale_by_schedule":
        return t.init_value
    return -t.learning_rate if t.flip_sign else t.learning_rate


def describe_chain(chain: list, schedule_kind: str) -> tuple[dict, list[DecayRule]]:
    """(optimizer dict, decay rules) of a chain. Scalings multiply the update by K_i (x eta_t for carriers)."""
    def bad(i, key, value, expected):
        return InputError("", f"chain[{i}].{key}" if i is not None else "chain", expected, value)

    cores = [i for i, t in enumerate(chain) if t.transform in ("scale_by_adam", "trace")]
    scalings = [i for i, t in enumerate(chain) if t.transform in SCALINGS]
    carriers = [i for i in scalings if chain[i].transform in CARRIERS]
    if len(cores) > 1:
        raise bad(cores[1], "transform", chain[cores[1]].transform, "must not follow another optimizer core "
                  "(one scale_by_adam or trace per chain)")
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
    c = cores[0] if cores else (scalings[0] if scalings else len(chain))
    if core is not None and core.transform == "scale_by_adam" and scalings and scalings[0] < c:
        raise bad(scalings[0], "transform", chain[scalings[0]].transform, "must come after scale_by_adam (a scale "
                  "before Adam's normalisation is not a learning rate)")
    velocity = core is not None and core.transform == "trace" and (carriers[0] < c if carriers else scalings[0] < c
                                                                    if scalings else False)
    rules = []
    for i, t in enumerate(chain):
        if t.transform != "add_decayed_weights" or t.weight_decay == 0.0:   # a constant 0 is skipped (_adding.py:68)
            continue
        params = list(t.mask) if t.mask else list(TENSORS)
        if i < c:
            if any(s < i for s in scalings):
                raise bad(i, "transform", t.transform, "must come before every scaling transform when it precedes "
                          "the optimizer core (a pre-scaled decay term is outside the neutral model)")
            if t.weight_decay < 0:
                raise bad(i, "weight_decay", t.weight_decay, "must be >= 0 before the optimizer core (a negative L2 "
                          "term makes the weights grow)")
            rules.append(DecayRule(norm="l2", coupling="gradient", coefficient=t.weight_decay, params=params))
            continue
        after = [s for s in scalings if s > i]
        k_after = float(np.prod([_factor(chain[s]) for s in after])) if after else 1.0
        a = any(chain[s].transform in CARRIERS for s in after)
        if k_after == K and a == bool(carriers):        # every scaling follows: w <- w - lr_t*lambda*w
            scale, coef = "lr", t.weight_decay
        else:                                           # step += lambda * k_after * (eta_t if a) * w
            scale, coef = ("schedule" if a else "none"), -t.weight_decay * k_after
        if coef < 0:
            raise bad(i, "weight_decay", t.weight_decay, f"adds {-coef:g}*{'eta_t*' if a else ''}w to the step: the "
                      f"weights grow (downstream scalings multiply it by {k_after:g}; flip its sign to decay)")
        rules.append(DecayRule(norm="l2", coupling="decoupled", coefficient=coef, scale=scale, params=params))
    lr = -K
    if core is not None and core.transform == "scale_by_adam":
        opt = {"name": "adam", "lr": lr, "betas": [core.b1, core.b2], "eps": core.eps}
    elif core is not None and core.decay > 0:
        opt = {"name": "sgd", "lr": lr, "momentum": core.decay, "nesterov": core.nesterov,
               "momentum_form": "velocity" if velocity else "buffer"}
    else:   # trace(decay=0) adds nothing, nesterov included: plain SGD
        opt = {"name": "sgd", "lr": lr, "momentum_form": "velocity" if velocity else "buffer"}
    return opt, rules
