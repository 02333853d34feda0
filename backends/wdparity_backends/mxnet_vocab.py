"""MXNet 1.9.1's optimizer vocabulary: the registry names the adapter models and those it refuses (with the
reason), each optimizer's own constructor keywords with the installed defaults, and the run table that checks them.

Imported in the core and in MXNet's venv: pydantic, the wdparity core and mxnet_network (numpy) only. Sources are
the installed mxnet/optimizer/optimizer.py; the statements and their tests: docs/adapters/mxnet.md.
"""

from __future__ import annotations

from typing import Optional

from pydantic import field_validator, model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import Finite, NonNeg, Penalty, Positive, Strict, Unit, check_tensors, fail
from wdparity.spec.network import LINEAR, in_scope, scoped

from .mxnet_network import CollectParams, check_entry, natives_of

# Registry names (Optimizer.opt_registry, the lower-cased class names) this adapter models, and each one's own
# constructor keywords with their defaults, as the installed signatures have them (test_mxnet_facts compares).
# learning_rate is listed where the class sets a default of its own; elsewhere Optimizer.__init__'s None -> 0.01
# applies (optimizer.py:103-110). ccSGD is "[DEPRECATED] Same as SGD" (*args, **kwargs, optimizer.py:1541-1544).
KEYWORDS = {
    "sgd": {"momentum": 0.0, "lazy_update": True},
    "ccsgd": {"momentum": 0.0, "lazy_update": True},
    "nag": {"momentum": 0.0},
    "adam": {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "lazy_update": True},
    "rmsprop": {"learning_rate": 0.001, "gamma1": 0.9, "gamma2": 0.9, "epsilon": 1e-8, "centered": False,
                "clip_weights": None},
    "adagrad": {"eps": 1e-7},
    "adadelta": {"rho": 0.9, "epsilon": 1e-5},
    "signum": {"learning_rate": 0.01, "momentum": 0.9, "wd_lh": 0.0},
    "lamb": {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-6, "lower_bound": None,
             "upper_bound": None, "bias_correction": True},
}
OPTIMIZERS = tuple(KEYWORDS)
BASE_LR = 0.01
DEFAULT_LR = {name: keys.get("learning_rate", BASE_LR) for name, keys in KEYWORDS.items()}
OWN = {name: tuple(k for k in keys if k != "learning_rate") for name, keys in KEYWORDS.items()}

# create_state without dtype= makes float32 states, and the update then raises MXNetError for float64 weights.
FLOAT32_STATE = {"rmsprop": "mxnet/optimizer/optimizer.py:1733-1740", "adagrad": "mxnet/optimizer/optimizer.py:1662-1663",
                 "adadelta": "mxnet/optimizer/optimizer.py:1797-1799"}
# Gluon's Updater hands LAMB all tensors at once (aggregate_num 45, optimizer.py:1262, 2103-2124), and
# multi_lamb_update keeps the direction u and both norms in float32 for float64 weights too.
MULTI_LAMB = ("src/operator/contrib/multi_lamb-inl.h:306-321", "src/operator/contrib/multi_lamb.cc:42,72,93-105",
              "src/operator/contrib/multi_sum_sq.cc:67-80")
FLOAT32_DIRECTION = {"lamb": "; ".join(MULTI_LAMB)}

# The rest of the registry: what each does that the neutral model has no field for.
REFUSED = {
    "adamax": "Adamax has no epsilon: u = max(beta2*u, |g|), w -= lr/(1-beta1^t)*m/u (optimizer.py:1936-1958), so a "
              "zero gradient gives 0/0 = NaN, and the neutral Adamax needs eps > 0",
    "nadam": "Nadam keeps one m_schedule for all parameters (optimizer.py:1989, 2012): each parameter's update "
             "multiplies it by mu_t again (in name order, gluon/trainer.py:77), so with weight and bias the schedule "
             "compounds twice per step",
    "ftml": "FTML (optimizer.py:739-794, ftml_update) has no neutral family",
    "ftrl": "Ftrl (optimizer.py:1828-1901, ftrl_update) has no neutral family",
    "lars": "LARS scales each layer's lr by eta*||w||/(||g|| + wd*||w|| + eps) (optimizer.py:797-1054)",
    "lbsgd": "LBSGD warms the lr up and scales it by the batch (optimizer.py:1057-1247)",
    "dcasgd": "DCASGD adds a delay compensation lamda*g^2*(w - w_prev) (optimizer.py:1408-1429); with lamda = 0 "
              "it is sgd",
    "sgld": "SGLD adds Gaussian noise of variance lr each step (optimizer.py:1524-1537)",
    "groupadagrad": "GroupAdaGrad keeps one accumulator per row (mxnet/optimizer/contrib.py:31-60)",
    "test": "Test (optimizer.py:2031-2044) is a test stub: w += rescale_grad*g",
}


class MxnetRun(Strict):
    """A Gluon Trainer's optimizer and its optimizer_params, keyword names as in MXNet 1.9.1."""

    optimizer: str
    learning_rate: Optional[Positive] = None
    wd: Optional[NonNeg] = None
    rescale_grad: Optional[Positive] = None
    clip_gradient: Optional[Finite] = None
    momentum: Optional[Unit] = None
    lazy_update: Optional[bool] = None
    beta1: Optional[Unit] = None
    beta2: Optional[Unit] = None
    epsilon: Optional[Positive] = None
    gamma1: Optional[Unit] = None
    gamma2: Optional[Unit] = None
    centered: Optional[bool] = None
    clip_weights: Optional[float] = None
    eps: Optional[Positive] = None
    rho: Optional[Unit] = None
    wd_lh: Optional[NonNeg] = None
    lower_bound: Optional[Finite] = None
    upper_bound: Optional[Finite] = None
    bias_correction: Optional[bool] = None
    wd_mult: Optional[dict[str, NonNeg]] = None          # the linear model: {weight = ..., bias = ...}
    collect_params: Optional[list[CollectParams]] = None  # a network: setattr by regex on Parameter names
    penalty: Optional[Penalty] = None

    @field_validator("optimizer")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name in REFUSED:
            raise fail("", name, f"is not modelled: {REFUSED[name]}")
        if name not in KEYWORDS:
            raise fail("", name, f"must be one of {list(OPTIMIZERS)} (MXNet's registry names; refused with a "
                       f"reason: {sorted(REFUSED)})")
        return name

    @model_validator(mode="after")
    def _consistent(self):
        check_keywords(self, self.optimizer, OWN, 'MXNet\'s "{optimizer}" optimizer')
        if self.clip_gradient is not None and not self.clip_gradient > 0:
            raise fail("clip_gradient", self.clip_gradient, "must be > 0 (remove the key for no clipping): the kernels "
                       "get it only when truthy (optimizer.py:622-623) and clip only when >= 0, so there 0 and negative "
                       "values turn clipping off, but AdaGrad and AdaDelta clip in Python whenever it is not None "
                       "(optimizer.py:1683-1684, 1809-1810): 0 zeroes their gradient, a negative value sends each "
                       "element to +-|clip_gradient| (clip with a_min > a_max)")
        if self.clip_weights:   # RMSProp passes it only when truthy (optimizer.py:1755-1756)
            raise fail("clip_weights", self.clip_weights, "is not modelled: RMSProp clips the updated weights to "
                       "[-clip_weights, clip_weights] (optimizer_op-inl.h:2072-2074); remove the key or set 0")
        if self.gamma2 is not None and not self.centered:
            raise fail("gamma2", self.gamma2, "is read only with centered = true (optimizer.py:1751-1752): "
                       "remove it or set centered = true")
        if self.wd_lh and self.momentum == 0:
            raise fail("wd_lh", self.wd_lh, "is not accepted by signsgd_update, which Signum calls with momentum = 0 "
                       "(optimizer.py:725-733; MXNet raises \"Cannot find argument 'wd_lh'\")")
        if self.optimizer == "adadelta" and self.rescale_grad not in (None, 1.0):
            raise fail("rescale_grad", self.rescale_grad, "is not modelled with adadelta: AdaDelta rescales the "
                       "gradient but not the epsilon of its numerator sqrt(acc_delta + epsilon) (optimizer.py:1808-1823)")
        for key in ("lower_bound", "upper_bound"):   # passed only when truthy, applied only when >= 0
            if (getattr(self, key) or 0) > 0:
                raise fail(key, getattr(self, key), "is not modelled: LAMB clamps the weight norm ||w|| of its trust "
                           "ratio to [lower_bound, upper_bound] (multi_lamb.cc:95-98, optimizer.py:1319-1322) and the "
                           "neutral ratio has no bounds; remove the key, or set it <= 0 (off)")
        if self.bias_correction is False:
            raise fail("bias_correction", False, "is not modelled: without it LAMB's direction is m/(sqrt(v) + "
                       "epsilon) (multi_lamb.cc:68-70) and the neutral LAMB always bias-corrects; remove the key")
        network = scoped() and tuple(in_scope()) != LINEAR
        if self.wd_mult is not None:
            if network:
                raise fail("wd_mult", self.wd_mult, "names the linear model's tensors; on a network set wd_mult by "
                           "regex on the Parameter names, as net.collect_params('.*_bias').setattr('wd_mult', 0) "
                           "does: collect_params = [{select = \".*_bias\", wd_mult = 0.0}] (the parameters: "
                           f"{list(natives_of(in_scope()).values())})")
            check_tensors("wd_mult", list(self.wd_mult))
        if self.collect_params is not None:
            if scoped() and not network:
                raise fail("collect_params", [e.model_dump(exclude_none=True) for e in self.collect_params],
                           "is for networks ([task] model with hidden layers); the linear model's multipliers are "
                           "wd_mult = {weight = ..., bias = ...}")
            for i, entry in enumerate(self.collect_params):
                check_entry(i, entry, list(natives_of(in_scope()).values()) if network else None)
        return self

    def value(self, key: str):
        """The keyword as set, else the optimizer's installed default."""
        given = getattr(self, key)
        return given if given is not None else KEYWORDS[self.optimizer][key]
