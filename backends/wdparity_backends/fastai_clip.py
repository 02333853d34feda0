"""Gradient clipping in fastai's vocabulary, both ways: the run key `gradient_clip` (max_norm of the Learner callback
fastai.callback.training.GradientClip, whose before_step is torch.nn.utils.clip_grad_norm_ over the model's
parameters) as the neutral Clip, and the refusals, with the nearest fastai setting, of every clip fastai has not.
The clip itself is torch's (torch_clip.py: eps 1e-6, the Euclidean norm). Sources: docs/adapters/fastai.md.
"""

from __future__ import annotations

from wdparity.run.adapter import refuse_clip
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics

from .torch_clip import CLIP_EPS, NORM_TYPE, clip_spec

# GradientClip(max_norm=1., norm_type=2.0) (fastai/callback/training.py:42); tests/test_fastai_facts.py reads them
GRADIENT_CLIP_DEFAULTS = {"max_norm": 1.0, "norm_type": NORM_TYPE}
SUPPORTED = {("global_norm", "loss_gradient"): "learner = true, gradient_clip = max_norm (Learner(..., cbs="
                                               "GradientClip(max_norm)), clip_grad_norm_ in before_step, eps 1e-6)"}
WHERE = ("GradientClip clips the .grad that backward() left, a loss penalty's gradient included, in before_step; "
         "opt.step() then runs the optimizer's callbacks, l2_reg's wd*p or weight_decay's p *= 1 - lr*wd first "
         "(fastai/callback/training.py:43, fastai/learner.py:219-222, fastai/optimizer.py:113-115,138-149), so wd is "
         "never clipped")

__all__ = ["CLIP_EPS", "clip_spec", "realize_clip", "refuse_terms"]


def realize_clip(semantics: Semantics) -> dict:
    """The fastai run keys for the semantics' clipping ({} without), or Inexpressible naming the nearest."""
    clip = semantics.clip
    if clip is None:
        return {}
    if clip.kind == "value":
        raise Inexpressible("fastai has no value-clipping callback: GradientClip (fastai/callback/training.py:39-43) "
                            "clips the global norm only; nearest: the torch adapter's clip_grad_value (torch.nn.utils."
                            "clip_grad_value_ called by hand), or gradient_clip, a norm clip, which differs from the "
                            "first clipped step")
    if clip.kind == "tensor_norm":
        raise Inexpressible("fastai's GradientClip takes one norm over every parameter of the model, sqrt(sum of their "
                            "norms^2) (fastai/callback/training.py:43, torch/nn/utils/clip_grad.py:105-107); nearest: "
                            f"gradient_clip = {clip.threshold:g} (the global norm, eps 1e-6), which clips less")
    if clip.position == "after_coupled_decay":
        raise Inexpressible(f"{WHERE}; nearest: the coupled terms as a loss penalty (penalty l2 = lambda/2, via_loss), "
                            "clipped with the loss: clip(g + lambda*w), the same numbers up to rounding")
    if semantics.frozen:
        raise Inexpressible(f"a tensor that no parameter group names ({semantics.frozen}) is not zeroed by opt."
                            "zero_grad() (fastai/optimizer.py:106-109), so its .grad accumulates over the steps and "
                            "GradientClip's clip_grad_norm_(learn.parameters()) counts the sum; nearest: the same run "
                            "without frozen tensors")
    if clip.eps != CLIP_EPS:
        raise Inexpressible(f"GradientClip is torch's clip_grad_norm_, max_norm / (total_norm + 1e-6) with eps hard-coded "
                            f"(torch/nn/utils/clip_grad.py:164); nearest: gradient_clip = {clip.threshold:g} (eps 1e-6 "
                            f"instead of {clip.eps:g}), whose scale differs by a relative (1e-6 - {clip.eps:g})/||g|| "
                            "on every clipped step")
    refuse_clip(semantics, SUPPORTED, "fastai")   # anything else the neutral Clip may grow
    return {"learner": True, "gradient_clip": clip.threshold}


def refuse_terms(semantics: Semantics, rules: list) -> None:
    """Under clipping a coupled term's origin matters (a loss penalty is clipped, l2_reg's wd*p is not): refuse what
    fastai cannot place. `rules`: the semantics' decay rules, in order."""
    if semantics.clip is None:
        return
    coupled = [r for r in rules if r.coupling == "gradient"]
    if any(r.norm == "l1" and not r.via_loss for r in coupled):
        raise Inexpressible(f"fastai has no L1 optimizer callback: an L1 term is a loss penalty, whose gradient "
                            f"GradientClip sees; {WHERE}; nearest: the L1 rule with via_loss = true")
    own = [r for r in coupled if not r.via_loss]
    if own and any(r.coupling == "decoupled" for r in rules):
        raise Inexpressible("decouple_wd is one flag per optimizer: a run with true weight decay has no l2_reg, so a "
                            f"coupled term that the clipping does not see has no fastai spelling ({WHERE}); nearest: "
                            "that term as a loss penalty (via_loss), which is clipped")
    seen: set[str] = set()
    for r in own:
        if seen & set(r.params):
            raise Inexpressible("fastai's l2_reg takes one wd per parameter group; a second coupled term that the "
                                f"clipping does not see has no fastai spelling ({WHERE}); nearest: one rule per tensor "
                                "with the summed coefficient, the same run")
        seen.update(r.params)
    first_penalty = next((i for i, r in enumerate(coupled) if r.via_loss), len(coupled))
    if any(not r.via_loss for r in coupled[first_penalty:]):
        raise Inexpressible("fastai's l2_reg terms are listed before the loss penalty's (describe's order); nearest: "
                            "the same rules in that order, the same run")
