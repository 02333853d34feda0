"""The fastai run's vocabulary: fastai.optimizer's functions (SGD, RMSProp, Adam, RAdam, QHAdam, Lamb) with their
keywords and defaults, the splitter's parameter groups, and the Learner's create_opt (wd_bn_bias).

fastai 2.8.12, fastai/optimizer.py and fastai/learner.py under site-packages; the sources of every statement:
docs/adapters/fastai.md.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, PrivateAttr, model_validator

from wdparity.run.adapter import check_keywords
from wdparity.spec.models import NonNeg, Penalty, Positive, Strict, Unit, check_tensors, fail
from wdparity.spec.network import LINEAR, in_scope

from .fastai_network import learner_excludes, resolve_group

# One row per fastai.optimizer function: its numeric defaults after `params, lr` (tests/test_fastai_facts.py reads
# them from the installed signatures). lr has no default in any of them (optimizer.py:178 ...).
DEFAULTS = {
    "SGD": {"mom": 0.0, "wd": 0.0, "decouple_wd": True},
    "RMSProp": {"mom": 0.0, "sqr_mom": 0.99, "eps": 1e-8, "wd": 0.0, "decouple_wd": True},
    "Adam": {"mom": 0.9, "sqr_mom": 0.99, "eps": 1e-5, "wd": 0.01, "decouple_wd": True},
    "RAdam": {"mom": 0.9, "sqr_mom": 0.99, "eps": 1e-5, "wd": 0.0, "beta": 0.0, "decouple_wd": True},
    "QHAdam": {"mom": 0.999, "sqr_mom": 0.999, "nu_1": 0.7, "nu_2": 1.0, "eps": 1e-8, "wd": 0.0, "decouple_wd": True},
    "Lamb": {"mom": 0.9, "sqr_mom": 0.99, "eps": 1e-5, "wd": 0.0, "decouple_wd": True},
}
KEYWORDS = {name: ("lr", *d) for name, d in DEFAULTS.items()}
LEARNER_LR = 1e-3   # Learner(lr=defaults.lr) (fastai/learner.py:115)
# The functions of fastai/optimizer.py (__all__, lines 8-11) the neutral model cannot hold, refused by name.
REFUSED = {
    "Larc": "Larc scales each tensor's step by a local lr = lr*trust_coeff*||p|| / (||g|| + wd*||p|| + eps), clipped "
            "to lr (fastai/optimizer.py:311-322): the neutral model has no LARS/LARC family",
    "Lookahead": "Lookahead moves slow weights toward the fast ones every k steps and copies them back "
                 "(fastai/optimizer.py:381-390): the neutral model has no lookahead",
    "ranger": "ranger is Lookahead(RAdam(...), k=6, alpha=0.5) (fastai/optimizer.py:416-428): the neutral model has "
              "no lookahead",
}
OPTIMIZER_NAMES = Literal["SGD", "RMSProp", "Adam", "RAdam", "QHAdam", "Lamb", "Larc", "Lookahead", "ranger"]
NU = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class FastaiRun(Strict):
    """opt_func(params, lr=lr, **keywords), fastai's way; learner = true: the optimizer a Learner(dls, model,
    opt_func=partial(opt_func, **keywords), lr=lr, splitter=..., wd_bn_bias=...) builds in create_opt()."""

    optimizer: OPTIMIZER_NAMES
    lr: Optional[Positive] = None
    mom: Optional[Unit] = None
    sqr_mom: Optional[Unit] = None
    eps: Optional[Positive] = None
    wd: Optional[Union[NonNeg, list[NonNeg]]] = None   # a list: one value per parameter group (set_hyper)
    decouple_wd: Optional[bool] = None
    beta: Optional[NonNeg] = None
    nu_1: Optional[NU] = None
    nu_2: Optional[NU] = None
    # the splitter's output, params = [[...], [...]] (optimizer.py:101), each group by torch's parameter names or
    # module paths (fastai_network.py; the linear model's are `weight` and `bias`); a tensor no group names is
    # never stepped
    param_groups: Optional[list[list[str]]] = None
    learner: Optional[bool] = None
    wd_bn_bias: Optional[bool] = None
    penalty: Optional[Penalty] = None   # added to the loss, as a fastai loss_func would
    # Learner(..., cbs=GradientClip(max_norm=gradient_clip, norm_type=norm_type)) (fastai/callback/training.py:39-43);
    # norm_type = inf is accepted to be refused
    gradient_clip: Optional[Positive] = None
    norm_type: Optional[Annotated[float, Field(allow_inf_nan=True)]] = None
    _groups: list[list[str]] = PrivateAttr(default_factory=list)   # param_groups as neutral names (the scope's)

    @model_validator(mode="after")
    def _consistent(self):
        if self.optimizer in REFUSED:
            raise fail("optimizer", self.optimizer, f"is not modelled: {REFUSED[self.optimizer]}")
        check_keywords(self, self.optimizer, KEYWORDS, "fastai.optimizer.{optimizer}")
        if self.lr is None and not self.learner:
            raise fail("lr", None, f"is required: fastai.optimizer.{self.optimizer}(params, lr, ...) has no default "
                       "lr (fastai/optimizer.py:178); a Learner's is 1e-3 (learner = true)")
        if self.beta:
            raise fail("beta", self.beta, "must be 0 here: beta > 0 is SAdam, softplus(denominator, beta) "
                       "(fastai/optimizer.py:258), outside the neutral RAdam")
        if self.optimizer == "QHAdam" and self.nus not in ((1.0, 1.0), (0.0, 1.0)):
            raise fail("nu_1", self.nus[0], f"with nu_2 = {self.nus[1]} is not modelled: QHAdam steps "
                       "((1-nu_1)*g + nu_1*m_hat) / (sqrt((1-nu_2)*g^2 + nu_2*v_hat) + eps) (fastai/optimizer.py:"
                       "285-287); the neutral model holds nu_1 = nu_2 = 1 (Adam) and nu_1 = 0, nu_2 = 1 (bias-"
                       "corrected RMSprop) only")
        if self.wd_bn_bias is not None and not self.learner:
            raise fail("wd_bn_bias", self.wd_bn_bias, "is a Learner setting (fastai/learner.py:121,198-199): it needs "
                       "learner = true")
        if self.gradient_clip is not None and not self.learner:
            raise fail("gradient_clip", self.gradient_clip, "is the GradientClip callback, which runs inside a Learner "
                       "(its before_step reads learn.parameters(), fastai/callback/core.py:49-51, fastai/callback/"
                       "training.py:43): it needs learner = true (without one, a user calls torch's clip_grad_norm_ "
                       "by hand: the torch adapter's clip_grad_norm)")
        if self.norm_type is not None and self.gradient_clip is None:
            raise fail("norm_type", self.norm_type, "belongs to gradient_clip (GradientClip(max_norm, norm_type))")
        if self.norm_type is not None and self.norm_type != 2.0:
            raise fail("norm_type", self.norm_type, "must be 2.0 here: the neutral global_norm is the Euclidean norm; "
                       "GradientClip passes norm_type to torch's clip_grad_norm_, p-norm or, for inf, the largest |g| "
                       "(fastai/callback/training.py:43, torch/nn/utils/clip_grad.py:95-107)")
        tensors = in_scope()
        seen: list[str] = []
        groups = []
        for i, group in enumerate(self.param_groups if self.param_groups is not None else [list(tensors)]):
            if tensors == LINEAR or self.param_groups is None:
                check_tensors(f"param_groups[{i}]", group)
            else:
                group = resolve_group(f"param_groups[{i}]", group, tensors)
            if set(group) & set(seen):
                raise fail(f"param_groups[{i}]", self.param_groups[i], f"names {sorted(set(group) & set(seen))} "
                           "again: fastai does not check, and would step that tensor once per group")
            seen += group
            groups.append(list(group))
        self._groups = groups
        if self.gradient_clip is not None and set(seen) != set(tensors):
            raise fail("gradient_clip", self.gradient_clip, f"cannot be used with a tensor no parameter group names "
                       f"({[t for t in tensors if t not in seen]}) here: opt.zero_grad() zeroes only its groups' parameters "
                       "(fastai/optimizer.py:106-109), so that tensor's .grad accumulates and GradientClip's "
                       "clip_grad_norm_(learn.parameters()) counts the sum, which the neutral model does not state")
        if isinstance(self.wd, list) and len(self.wd) != len(groups):
            raise fail("wd", self.wd, f"must hold one value per parameter group ({len(groups)}): fastai asserts it "
                       "(fastai/optimizer.py:62)")
        if self.penalty:
            idle = [name for name in self.penalty.params if name not in seen]
            if idle:
                raise fail("penalty.params", self.penalty.params, f"names {idle}, which no parameter group names: it "
                           "is never stepped (frozen), so its penalty would change nothing")
        return self

    def get(self, key: str):
        value = getattr(self, key)
        return DEFAULTS[self.optimizer][key] if value is None else value

    @property
    def nus(self) -> tuple[float, float]:
        return float(self.get("nu_1")), float(self.get("nu_2"))

    @property
    def groups(self) -> list[list[str]]:
        """The parameter groups as neutral tensor names (resolved from torch's names in the tensor scope)."""
        return [list(g) for g in self._groups]

    @property
    def effective_lr(self) -> float:
        return LEARNER_LR if self.lr is None else self.lr

    @property
    def excludes_bias(self) -> bool:
        """Learner(wd_bn_bias=False), its default: create_opt sets do_wd = False on every bias and every LayerNorm
        parameter (learner.py:198-199, fastai_network.learner_excludes)."""
        return bool(self.learner) and not self.wd_bn_bias

    def per_tensor_wd(self) -> dict[str, float]:
        """wd of each stepped tensor: its group's (or the one wd), 0 for the biases and norms a Learner excludes."""
        wd = self.get("wd")
        out = {}
        for i, group in enumerate(self.groups):
            for name in group:
                out[name] = float(wd[i] if isinstance(wd, list) else wd)
        if self.excludes_bias:
            out.update({name: 0.0 for name in learner_excludes(in_scope()) if name in out})
        return out

    @property
    def frozen(self) -> list[str]:
        named = {name for group in self.groups for name in group}
        return [name for name in in_scope() if name not in named]
