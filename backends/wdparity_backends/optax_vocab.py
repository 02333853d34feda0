"""The optax run's vocabulary, as data: the aliases' keywords and defaults, the chain transforms, the run model.

Names, keywords and defaults are optax 0.2.8's own (tests/test_optax_backend.py compares them with the installed
signatures). A knob the neutral model cannot hold is refused here by name with optax's reason; what a run means is
read in optax_describe.py. Pure: no JAX import, shared by the adapter and the vmapped grid (optax_batch.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Discriminator, Tag, model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import Finite, NonNeg, Penalty, Positive, Strict, Unit, fail

from . import optax_adafactor as adafactor
from . import optax_network as network
from .optax_schedules import AliasWeightDecay, WeightDecay, check_alias, check_name

B, ADAM = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}, {"eps_root": 0.0, "mu_dtype": None}
# alias -> {keyword: optax's default} (every keyword but learning_rate; optax/_src/alias.py)
ALIASES: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": None, "nesterov": False, "accumulator_dtype": None},
    "adam": {**B, **ADAM, "nesterov": False},
    "adamw": {**B, **ADAM, "weight_decay": 1e-4, "mask": None, "nesterov": False},
    "nadam": {**B, **ADAM, "nesterov": True},
    "nadamw": {**B, **ADAM, "weight_decay": 1e-4, "mask": None, "nesterov": True},
    "amsgrad": {**B, **ADAM, "bias_correction_mu": True, "bias_correction_nu": True},
    "rmsprop": {"decay": 0.9, "eps": 1e-8, "initial_scale": 0.0, "eps_in_sqrt": True, "centered": False,
                "momentum": None, "nesterov": False, "bias_correction": False},
    "adagrad": {"initial_accumulator_value": 0.1, "eps": 1e-7},
    "adadelta": {"rho": 0.9, "eps": 1e-6, "weight_decay": 0.0, "weight_decay_mask": None},
    "adamax": dict(B),
    "adamaxw": {**B, "weight_decay": 1e-4, "mask": None},
    "radam": {**B, "eps_root": 0.0, "threshold": 5.0, "nesterov": False},
    "lion": {"b1": 0.9, "b2": 0.99, "mu_dtype": None, "weight_decay": 1e-3, "mask": None},
    "lamb": {"b1": 0.9, "b2": 0.999, "eps": 1e-6, "eps_root": 0.0, "weight_decay": 0.0, "mask": None},
    "adafactor": {"min_dim_size_to_factor": 128, "decay_rate": 0.8, "decay_offset": 0,   # alias.py:224-236
                  "multiply_by_parameter_scale": True, "clipping_threshold": 1.0, "momentum": None,
                  "dtype_momentum": "float32", "weight_decay_rate": None, "eps": 1e-30, "factored": True,
                  "weight_decay_mask": None},
}
ALIAS_KEYS = {name: tuple(keys) for name, keys in ALIASES.items()}
# optax aliases outside the neutral model (yet), refused by name (none left: adafactor is optax_adafactor.py)
NOT_MODELLED: dict[str, str] = {}
# optax's other clipping transforms, outside the neutral Clip (global norm, per-tensor norm, value), refused by name
CLIPS_NOT_MODELLED = {
    "clip_by_block_rms": adafactor.CLIP_REASON,
    "adaptive_grad_clip": "adaptive_grad_clip bounds each unit (a kernel column) by clipping*max(||w_unit||, eps), "
                          "relative to the parameters (optax/transforms/_clipping.py:334-344)",
    "per_example_global_norm_clip": "per_example_global_norm_clip is a function of per-example gradients (a batch "
                                    "axis, optax/transforms/_clipping.py:120-168), not a chain transform",
    "per_example_layer_norm_clip": "per_example_layer_norm_clip is a function of per-example gradients (a batch "
                                   "axis, optax/transforms/_clipping.py:171-249), not a chain transform",
    **adafactor.CHAIN_REFUSED,
}
LAMB_SCHEDULED = ("must be a number with LAMB's trust ratio after it: a scheduled decay inside LAMB's ratio is outside the "
                  "neutral model (its inside term is lambda*w with a constant lambda)")
# optax's `mask=`, as data (optax_network.py): a list of parameter paths, a boolean tree, or a callable's table
Mask = Union[list[str], dict[str, Any]]
SCALINGS = ("scale", "scale_by_learning_rate", "scale_by_schedule")
CARRIERS = ("scale_by_learning_rate", "scale_by_schedule")   # the transforms that carry the run's schedule


def refuse_knobs(values: dict[str, Any]) -> None:
    """The optax keywords whose non-default values the neutral model cannot hold (alias or transform)."""
    if values.get("eps_root"):
        raise fail("eps_root", values["eps_root"], "must be 0.0: sqrt(v_hat + eps_root) (optax/_src/transform.py:300) "
                   "is neither epsilon placement of the neutral model")
    for key in ("mu_dtype", "accumulator_dtype"):
        if values.get(key) is not None:
            raise fail(key, values[key], "must be unset: a moment stored in another dtype (optax/_src/transform.py:"
                       "305; transforms/_accumulation.py:76) is rounded each step, outside the neutral model")
    for key in ("bias_correction_mu", "bias_correction_nu"):
        if values.get(key) is False:
            raise fail(key, False, "must be true: AMSGrad without this bias correction (optax/_src/transform.py:"
                       "368-376) is outside the neutral model (which holds optax's max of the corrected v_hat)")


# ---------------------------------------------------------------- the chain transforms
class AddDecayedWeights(Strict):
    transform: Literal["add_decayed_weights"]
    weight_decay: WeightDecay = 0.0   # a number or a schedule (optax_schedules.py)
    mask: Optional[Mask] = None

    @model_validator(mode="after")
    def _mask(self):
        network.check("mask", self.mask)
        return self


class _Core(Strict):
    @model_validator(mode="after")
    def _neutral(self):
        refuse_knobs(self.__dict__)
        return self


class ScaleByAdam(_Core):
    """nesterov=True is NAdam with optax's constant momentum (optax/_src/transform.py:286-292)."""

    transform: Literal["scale_by_adam"]
    b1: Unit = 0.9
    b2: Unit = 0.999
    eps: Positive = 1e-8
    eps_root: NonNeg = 0.0
    mu_dtype: Optional[str] = None
    nesterov: bool = False


class ScaleByAmsgrad(_Core):
    transform: Literal["scale_by_amsgrad"]
    b1: Unit = 0.9
    b2: Unit = 0.999
    eps: Positive = 1e-8
    eps_root: NonNeg = 0.0
    mu_dtype: Optional[str] = None
    bias_correction_mu: bool = True
    bias_correction_nu: bool = True


class ScaleByRms(_Core):
    transform: Literal["scale_by_rms"]
    decay: Unit = 0.9
    eps: Positive = 1e-8
    initial_scale: NonNeg = 0.0
    eps_in_sqrt: bool = True
    bias_correction: bool = False


class ScaleByStddev(_Core):
    transform: Literal["scale_by_stddev"]
    decay: Unit = 0.9
    eps: Positive = 1e-8
    initial_scale: NonNeg = 0.0
    eps_in_sqrt: bool = True
    bias_correction: bool = False


class ScaleByRss(_Core):
    transform: Literal["scale_by_rss"]
    initial_accumulator_value: NonNeg = 0.1
    eps: Positive = 1e-7


class ScaleByAdamax(_Core):
    transform: Literal["scale_by_adamax"]
    b1: Unit = 0.9
    b2: Unit = 0.999
    eps: Positive = 1e-8


class ScaleByRadam(_Core):
    transform: Literal["scale_by_radam"]
    b1: Unit = 0.9
    b2: Unit = 0.999
    eps: Positive = 1e-8
    eps_root: NonNeg = 0.0
    threshold: Positive = 5.0
    nesterov: bool = False

    @model_validator(mode="after")
    def _plain(self):
        if self.nesterov:
            raise fail("nesterov", True, "must be false: RAdam with Nesterov momentum (optax/_src/transform.py:"
                       "867-873) is outside the neutral model")
        return self


class ScaleByLion(_Core):
    transform: Literal["scale_by_lion"]
    b1: Unit = 0.9
    b2: Unit = 0.99
    mu_dtype: Optional[str] = None
    mode: Literal["hard", "smooth", "refined"] = "hard"
    smooth_beta: Finite = 1.0

    @model_validator(mode="after")
    def _hard(self):
        if self.mode != "hard":
            raise fail("mode", self.mode, "must be \"hard\" (sign): the \"smooth\" (tanh) and \"refined\" directions "
                       "(optax/_src/transform.py:473-479) are outside the neutral model")
        if self.smooth_beta != 1.0:
            raise fail("smooth_beta", self.smooth_beta, "must stay 1.0: it is used by mode \"smooth\" only "
                       "(optax/_src/transform.py:476), so with mode \"hard\" it would be ignored")
        return self


class ScaleByAdadelta(_Core):
    transform: Literal["scale_by_adadelta"]
    rho: Unit = 0.9
    eps: Positive = 1e-6


class Trace(_Core):
    transform: Literal["trace"]
    decay: Unit
    nesterov: bool = False
    accumulator_dtype: Optional[str] = None


class ScaleByTrustRatio(Strict):
    """LAMB's ratio u*||w||/||u|| per tensor, 1 where a norm is 0 (optax/_src/transform.py:1063-1074); its knobs at
    optax's defaults, the neutral LAMB's ratio."""

    transform: Literal["scale_by_trust_ratio"]
    min_norm: Finite = 0.0
    trust_coefficient: Finite = 1.0
    eps: Finite = 0.0

    @model_validator(mode="after")
    def _neutral(self):
        why = {"min_norm": (0.0, "norms raised to at least min_norm (optax/_src/transform.py:1063-1064; "
                                 "_src/numerics.py:79-83) bound a small tensor's ratio"),
               "trust_coefficient": (1.0, "it multiplies the ratio but not the 1 taken where a norm is 0 "
                                          "(optax/_src/transform.py:1065,1069-1072), so it is no learning rate"),
               "eps": (0.0, "||w|| / (||u|| + eps) (optax/_src/transform.py:1065) is outside the neutral ratio")}
        for key, (default, reason) in why.items():
            if getattr(self, key) != default:
                raise fail(key, getattr(self, key), f"must be {default}: {reason}, outside the neutral LAMB")
        return self


class ClipByGlobalNorm(Strict):
    """g * max_norm / ||g|| where ||g|| >= max_norm, ||g|| over every tensor, no eps (transforms/_clipping.py:96-105)."""

    transform: Literal["clip_by_global_norm"]
    max_norm: Positive


class ClipValue(Strict):
    """optax.clip: each element clipped to [-max_delta, max_delta] (transforms/_clipping.py:41-43)."""

    transform: Literal["clip"]
    max_delta: Positive


CLIP_TRANSFORMS = ("clip_by_global_norm", "clip")


class ScaleByLearningRate(Strict):
    transform: Literal["scale_by_learning_rate"]
    learning_rate: Positive   # required: optax's default None is the identity (optax/_src/transform.py:1000-1001)
    flip_sign: bool = True


class Scale(Strict):
    transform: Literal["scale"]
    step_size: Finite


class ScaleBySchedule(Strict):
    """scale_by_schedule(step_size_fn): the fn is the run's schedule built with this `init_value`."""

    transform: Literal["scale_by_schedule"]
    init_value: Finite


_KINDS = {m.model_fields["transform"].annotation.__args__[0]: m
          for m in (AddDecayedWeights, ScaleByAdam, ScaleByAmsgrad, ScaleByRms, ScaleByStddev, ScaleByRss,
                    ScaleByAdamax, ScaleByRadam, ScaleByLion, ScaleByAdadelta, Trace, ScaleByTrustRatio,
                    ClipByGlobalNorm, ClipValue, ScaleByLearningRate, Scale, ScaleBySchedule)}
# Tags are not identifiers, so error keys read "chain[2].weight_decay", not "chain[2].scale.weight_decay".
ChainItem = Annotated[Union[tuple(Annotated[m, Tag(f"<{k}>")] for k, m in _KINDS.items())], Discriminator(
    lambda v: f"<{v.get('transform') if isinstance(v, dict) else getattr(v, 'transform', None)}>")]


def item(transform: str, **keywords) -> Strict:
    """One chain transform, validated (an alias's expansion, optax_describe.alias_chain)."""
    return _KINDS[transform].model_validate({"transform": transform, **keywords})


# ---------------------------------------------------------------- the run
class OptaxRun(Strict):
    optimizer: Optional[str] = None
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    nesterov: Optional[bool] = None
    accumulator_dtype: Optional[str] = None
    b1: Optional[Unit] = None
    b2: Optional[Unit] = None
    eps: Optional[Positive] = None
    eps_root: Optional[NonNeg] = None
    mu_dtype: Optional[str] = None
    weight_decay: Optional[AliasWeightDecay] = None   # a number or a schedule (optax_schedules.py)
    mask: Optional[Mask] = None
    bias_correction_mu: Optional[bool] = None
    bias_correction_nu: Optional[bool] = None
    decay: Optional[Unit] = None
    initial_scale: Optional[NonNeg] = None
    eps_in_sqrt: Optional[bool] = None
    centered: Optional[bool] = None
    bias_correction: Optional[bool] = None
    initial_accumulator_value: Optional[NonNeg] = None
    rho: Optional[Unit] = None
    weight_decay_mask: Optional[Mask] = None
    threshold: Optional[Positive] = None
    # optax.adafactor's own (optax_adafactor.py); clipping_threshold false: None (no clip; TOML has no null)
    min_dim_size_to_factor: Optional[int] = None
    decay_rate: Optional[Positive] = None
    decay_offset: Optional[int] = None
    multiply_by_parameter_scale: Optional[bool] = None
    clipping_threshold: Optional[Union[Literal[False], Positive]] = None
    dtype_momentum: Optional[str] = None
    weight_decay_rate: Optional[AliasWeightDecay] = None
    factored: Optional[bool] = None
    chain: Optional[list[ChainItem]] = None
    penalty: Optional[Penalty] = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("optimizer")
        if isinstance(name, str) and name in NOT_MODELLED:
            raise fail("optimizer", name, f"is not modelled yet: {NOT_MODELLED[name]}, outside the neutral model")
        if isinstance(name, str) and name not in ALIASES:
            raise fail("optimizer", name, f"must be one of the modelled optax aliases {list(ALIASES)}")
        check_name("weight_decay", data.get("weight_decay"))
        check_name("weight_decay_rate", data.get("weight_decay_rate"))
        chain = data.get("chain")
        for i, t in enumerate(chain if isinstance(chain, list) else []):
            if not isinstance(t, dict):
                raise fail(f"chain[{i}]", t, "must be a table {transform = \"...\", <optax keywords>}")
            if t.get("transform") == "add_decayed_weights":
                check_name(f"chain[{i}].weight_decay", t.get("weight_decay"))
            if t.get("transform") in CLIPS_NOT_MODELLED:
                raise fail(f"chain[{i}].transform", t["transform"], f"is not modelled: optax."
                           f"{CLIPS_NOT_MODELLED[t['transform']]}, outside the neutral model")
            if t.get("transform") not in _KINDS:
                raise fail(f"chain[{i}].transform", t.get("transform"), f"must be one of {list(_KINDS)}")
        return data

    def given(self) -> dict[str, Any]:
        """The alias keywords this run sets (learning_rate aside), as written."""
        return {k: getattr(self, k) for k in ALIAS_KEYS[self.optimizer] if getattr(self, k) is not None}

    def value(self, key: str) -> Any:
        """An alias keyword's value: as given, else optax's default."""
        given = getattr(self, key)
        return ALIASES[self.optimizer][key] if given is None else given

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
            raise fail("optimizer", None, f"is required (one of {list(ALIASES)}) unless a `chain` is given")
        if self.learning_rate is None and self.optimizer != "adafactor":   # adafactor's None: no lr scaling
            why = (": its default None makes scale_by_learning_rate the identity (optax/_src/alias.py:144,220; "
                   "transform.py:1000-1001), so the update +d climbs the loss" if self.optimizer == "adadelta" else "")
            raise fail("learning_rate", None, f"is required by optax.{self.optimizer}{why}")
        check_keywords(self, self.optimizer, ALIAS_KEYS, "optax.{optimizer}")
        for key in ("mask", "weight_decay_mask"):
            network.check(key, getattr(self, key))
        refuse_knobs(self.given())
        check_alias("weight_decay", self.weight_decay)
        if self.optimizer == "adafactor":
            adafactor.check(self)
        if self.optimizer == "lamb" and isinstance(self.weight_decay, Strict):   # optax.lamb adds it inside the ratio
            raise fail("weight_decay", self.weight_decay.model_dump(), LAMB_SCHEDULED)
        if self.optimizer in ("sgd", "rmsprop") and self.nesterov and self.momentum is None:
            raise fail("nesterov", True, f"needs momentum > 0 (optax.{self.optimizer} silently ignores nesterov "
                       f"without momentum, optax/_src/alias.py:{2132 if self.optimizer == 'sgd' else '2040-2044'})")
        if self.optimizer == "rmsprop" and self.nesterov:
            raise fail("nesterov", True, "must be false: optax.rmsprop's Nesterov trace after the learning rate "
                       "(optax/_src/alias.py:2040-2044) is outside the neutral RMSprop")
        if self.optimizer == "radam" and self.nesterov:
            raise fail("nesterov", True, "must be false: RAdam with Nesterov momentum (optax/_src/transform.py:"
                       "867-873) is outside the neutral model")
        return self
