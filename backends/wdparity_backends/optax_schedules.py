"""A schedule on weight_decay, spelled as data in optax's own vocabulary: add_decayed_weights(weight_decay=...) and
the aliases' weight_decay take a number or an optax schedule (optax/transforms/_adding.py:36; alias.py:147,605,932,
1240,2398). Read as the neutral DecayRule.schedule (coefficient = init_value) and built into optax's schedule.

Names, keywords and defaults are optax 0.2.8's (optax/schedules/_schedule.py; tests/test_optax_lamb.py compares
them with the installed signatures). Pure but for build(), which is handed the optax module.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import Discriminator, Tag, model_validator

from wdparity.spec.models import Finite, NonNeg, Strict, fail


class CosineDecaySchedule(Strict):
    """init_value*((1 - alpha)*((1 + cos(pi*min(t, T)/T))/2)**exponent + alpha) (_schedule.py:377-387)."""

    schedule: Literal["cosine_decay_schedule"]
    init_value: Finite
    decay_steps: int
    alpha: Finite = 0.0
    exponent: Finite = 1.0

    @model_validator(mode="after")
    def _neutral(self):
        if self.decay_steps < 1:
            raise fail("decay_steps", self.decay_steps, "must be >= 1 (optax raises for decay_steps <= 0, "
                       "optax/schedules/_schedule.py:371-375)")
        if not 0.0 <= self.alpha <= 1.0:
            raise fail("alpha", self.alpha, "must be within [0, 1]: the neutral cosine's floor (alpha > 1 grows the "
                       "coefficient, alpha < 0 turns its sign)")
        if self.exponent != 1.0:
            raise fail("exponent", self.exponent, "must be 1.0: a cosine raised to another power (optax/schedules/"
                       "_schedule.py:385) is outside the neutral cosine schedule")
        return self


class ExponentialDecay(Strict):
    """init_value * decay_rate**floor(t / transition_steps) with staircase=True (_schedule.py:313-323)."""

    schedule: Literal["exponential_decay"]
    init_value: Finite
    transition_steps: int
    decay_rate: Finite
    transition_begin: int = 0
    staircase: bool = False
    end_value: Optional[Finite] = None

    @model_validator(mode="after")
    def _neutral(self):
        if self.transition_steps < 1:
            raise fail("transition_steps", self.transition_steps, "must be >= 1: optax makes a non-positive "
                       "transition_steps a constant init_value (optax/schedules/_schedule.py:288-294); write the "
                       "number itself")
        if self.decay_rate <= 0:
            raise fail("decay_rate", self.decay_rate, "must be > 0: optax makes decay_rate 0 a constant init_value "
                       "(optax/schedules/_schedule.py:296-301), and a negative rate flips the sign of the coefficient")
        if not self.staircase:
            raise fail("staircase", False, "must be true: the continuous decay_rate**(t / transition_steps) "
                       "(optax/schedules/_schedule.py:315-317) is outside the neutral step schedule "
                       "factor**(t // every)")
        if self.transition_begin != 0:
            raise fail("transition_begin", self.transition_begin, "must be 0: a schedule held at init_value for "
                       "transition_begin steps (optax/schedules/_schedule.py:314,318-319) is outside the neutral "
                       "step schedule")
        if self.end_value is not None:
            raise fail("end_value", self.end_value, "must be unset: a decay clipped at end_value (optax/schedules/"
                       "_schedule.py:321-322) is outside the neutral step schedule")
        return self


class ConstantSchedule(Strict):
    """value at every step (_schedule.py:48): the constant coefficient `value`."""

    schedule: Literal["constant_schedule"]
    value: Finite


MODELS = {m.model_fields["schedule"].annotation.__args__[0]: m
          for m in (CosineDecaySchedule, ExponentialDecay, ConstantSchedule)}
# optax's other schedules, refused by name with the reason (a neutral schedule is constant, step or cosine)
NOT_MODELLED = {
    "piecewise_constant_schedule": "multiplies by each listed scale once, at its own boundary (optax/schedules/"
                                   "_schedule.py:239-245), while the neutral step schedule multiplies by one factor "
                                   "every `every` steps without end; nearest: exponential_decay(transition_steps, "
                                   "decay_rate, staircase=True)",
}


def _tag(v: Any) -> str:
    if isinstance(v, dict):
        return f"<{v.get('schedule')}>"
    return f"<{v.schedule}>" if isinstance(v, Strict) else "<number>"


def _value(number) -> Any:
    """A weight_decay: `number` (the field's own numeric type) or one of the modelled schedules."""
    members = [Annotated[number, Tag("<number>")]] + [Annotated[m, Tag(f"<{k}>")] for k, m in MODELS.items()]
    return Annotated[Union[tuple(members)], Discriminator(_tag)]


WeightDecay = _value(Finite)        # add_decayed_weights(weight_decay=...)
AliasWeightDecay = _value(NonNeg)   # an alias's weight_decay (its init_value checked >= 0 by check_alias)
Schedule = (CosineDecaySchedule, ExponentialDecay, ConstantSchedule)


def check_name(key: str, value: Any) -> None:
    """Before validation: a weight_decay table naming a schedule outside the modelled ones fails by name."""
    if not isinstance(value, dict):
        return
    name = value.get("schedule")
    if isinstance(name, str) and name in NOT_MODELLED:
        raise fail(f"{key}.schedule", name, f"is not modelled: optax.{name} {NOT_MODELLED[name]}")
    if name not in MODELS:
        raise fail(f"{key}.schedule", name, f"must be one of the modelled optax schedules {list(MODELS)} (a neutral "
                   "decay schedule is constant, step or cosine)")


def check_alias(key: str, value: Any) -> None:
    """An alias's scheduled weight_decay starts at init_value >= 0, as its number would be."""
    if isinstance(value, Schedule) and neutral(value)[0] < 0:
        field = "value" if isinstance(value, ConstantSchedule) else "init_value"
        raise fail(f"{key}.{field}", neutral(value)[0], "must be >= 0 (a negative decay makes the weights grow)")


def neutral(value) -> tuple[float, Optional[dict]]:
    """(coefficient, neutral schedule or None) of a weight_decay."""
    if isinstance(value, CosineDecaySchedule):
        return value.init_value, {"kind": "cosine", "total": value.decay_steps, "floor": value.alpha}
    if isinstance(value, ExponentialDecay):
        return value.init_value, {"kind": "step", "every": value.transition_steps, "factor": value.decay_rate}
    if isinstance(value, ConstantSchedule):
        return value.value, None
    return value, None


def native(coefficient: float, schedule) -> Any:
    """A neutral coefficient and schedule (a spec Schedule or None) as optax's weight_decay: a number or a table."""
    kind = "constant" if schedule is None else schedule.kind
    if kind == "step":
        return {"schedule": "exponential_decay", "init_value": coefficient, "transition_steps": schedule.every,
                "decay_rate": schedule.factor, "staircase": True}
    if kind == "cosine":
        return {"schedule": "cosine_decay_schedule", "init_value": coefficient, "decay_steps": schedule.total,
                "alpha": schedule.floor}
    return coefficient


def build(optax, value, dtype) -> Any:
    """optax's weight_decay for a run of `dtype`: the number, or the schedule object. exponential_decay's decay_rate
    is passed typed (a NumPy scalar of the run's dtype), as the run's own step schedule is: a Python float makes
    the staircase float32 even under x64 (jax/_src/dtypes.py:318), and a traced one cannot answer optax's
    `decay_rate == 0` (_schedule.py:296)."""
    if isinstance(value, CosineDecaySchedule):
        return optax.cosine_decay_schedule(init_value=value.init_value, decay_steps=value.decay_steps,
                                           alpha=value.alpha, exponent=value.exponent)
    if isinstance(value, ExponentialDecay):
        return optax.exponential_decay(init_value=value.init_value, transition_steps=value.transition_steps,
                                       decay_rate=np.asarray(value.decay_rate, dtype),
                                       transition_begin=value.transition_begin, staircase=value.staircase,
                                       end_value=value.end_value)
    if isinstance(value, ConstantSchedule):
        return optax.constant_schedule(value.value)
    return value
