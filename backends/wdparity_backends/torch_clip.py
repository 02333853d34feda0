"""Gradient clipping in torch's vocabulary, both ways: the run keys `clip_grad_norm` (max_norm of
torch.nn.utils.clip_grad_norm_) and `clip_grad_value` (clip_value of clip_grad_value_), called on
model.parameters() between backward() and optimizer.step(), as the neutral Clip; and the refusals, with the
nearest torch setting, of every clip torch does not have. Sources (torch 2.13.0): docs/adapters/torch.md.
"""

from __future__ import annotations

from typing import Optional

from wdparity.run.adapter import refuse_clip
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Clip, Semantics

CLIP_EPS = 1e-6        # clip_coef = max_norm / (total_norm + 1e-6), hard-coded (torch/nn/utils/clip_grad.py:164)
NORM_TYPE = 2.0        # clip_grad_norm_'s default norm_type (torch/nn/utils/clip_grad.py:188), the only one modelled
KEYS = ("clip_grad_norm", "clip_grad_value")
SUPPORTED = {
    ("global_norm", "loss_gradient"): "clip_grad_norm = max_norm (torch.nn.utils.clip_grad_norm_(model.parameters(), "
                                      "max_norm) between backward() and step(), eps 1e-6)",
    ("value", "loss_gradient"): "clip_grad_value = clip_value (torch.nn.utils.clip_grad_value_(model.parameters(), "
                                "clip_value))",
}
WHERE = ("torch clips the .grad that backward() left, a loss penalty's gradient included, and step() adds "
         "weight_decay*param after it (torch/optim/sgd.py:353, torch/optim/adam.py:428), so the optimizer's own term is never "
         "clipped")


def clip_spec(clip_grad_norm: Optional[float], clip_grad_value: Optional[float]) -> Optional[Clip]:
    """The neutral Clip of a torch run's clip keys (None: no clipping)."""
    if clip_grad_norm is not None:
        return Clip(kind="global_norm", threshold=clip_grad_norm, eps=CLIP_EPS, position="loss_gradient")
    if clip_grad_value is not None:
        return Clip(kind="value", threshold=clip_grad_value, position="loss_gradient")
    return None


def realize_clip(semantics: Semantics) -> dict:
    """The torch run keys for the semantics' clipping ({} without), or Inexpressible naming the nearest."""
    clip = semantics.clip
    if clip is None:
        return {}
    if clip.kind == "tensor_norm":
        raise Inexpressible("torch.nn.utils.clip_grad_norm_ takes one norm over all the tensors it is given, "
                            "sqrt(sum of their norms^2) (torch/nn/utils/clip_grad.py:105-107); a per-tensor norm would "
                            "be one clip_grad_norm_ call per parameter, which this adapter does not model; nearest: "
                            f"clip_grad_norm = {clip.threshold:g} (the global norm, eps 1e-6), which clips less")
    if clip.position == "after_coupled_decay":
        raise Inexpressible(f"{WHERE}; nearest: the coupled terms as a loss penalty (penalty l2 = lambda/2, via_loss), "
                            "clipped with the loss: clip(g + lambda*w), the same numbers up to rounding; identical "
                            "to position \"loss_gradient\" when the run's only coupled terms are loss penalties")
    if clip.kind == "global_norm" and semantics.frozen:
        raise Inexpressible(f"a tensor that no param group names ({semantics.frozen}) is not zeroed by "
                            "optimizer.zero_grad() (torch/optim/optimizer.py:1058-1062): its .grad accumulates over the "
                            "steps and clip_grad_norm_(model.parameters()) counts the sum; nearest: the same run "
                            "with clip_grad_value (elementwise, so a frozen tensor's gradient changes nothing) or "
                            "without frozen tensors")
    if clip.kind == "global_norm" and clip.eps != CLIP_EPS:
        raise Inexpressible(f"torch.nn.utils.clip_grad_norm_ scales by max_norm / (total_norm + 1e-6), eps hard-coded "
                            f"(torch/nn/utils/clip_grad.py:164); nearest: clip_grad_norm = {clip.threshold:g} (eps 1e-6 "
                            f"instead of {clip.eps:g}), whose scale differs by a relative (1e-6 - {clip.eps:g})/||g|| "
                            "on every clipped step")
    refuse_clip(semantics, SUPPORTED, "torch")   # anything else the neutral Clip may grow
    return {"clip_grad_norm": clip.threshold} if clip.kind == "global_norm" else {"clip_grad_value": clip.threshold}


def refuse_terms(semantics: Semantics, rules: list) -> None:
    """Under clipping a coupled term's origin matters (a loss penalty is clipped, weight_decay is not): refuse
    what torch cannot place. `rules`: the semantics' decay rules, in order."""
    if semantics.clip is None:
        return
    coupled = [r for r in rules if r.coupling == "gradient"]
    for r in coupled:
        if r.norm == "l1" and not r.via_loss:
            raise Inexpressible(f"torch adds an L1 term only as a loss penalty, whose gradient the clipping sees; {WHERE}; "
                                "nearest: the L1 rule with via_loss = true (clipped with the loss)")
    own = [r for r in coupled if not r.via_loss]
    if own and any(r.coupling == "decoupled" for r in rules):
        raise Inexpressible("a run with decoupled decay spends torch's weight_decay on it (AdamW, "
                            "decoupled_weight_decay), so a coupled term that the clipping does not see has no torch "
                            f"spelling ({WHERE}); nearest: that term as a loss penalty (via_loss), which is clipped")
    seen: set[str] = set()
    for r in own:
        if seen & set(r.params):
            raise Inexpressible(f"torch takes one weight_decay per tensor (its param group's); a second coupled term "
                                f"that the clipping does not see has no torch spelling ({WHERE}); nearest: one rule per "
                                "tensor with the summed coefficient, the same run")
        seen.update(r.params)
    first_penalty = next((i for i, r in enumerate(coupled) if r.via_loss), len(coupled))
    if any(not r.via_loss for r in coupled[first_penalty:]):
        raise Inexpressible("torch's weight_decay terms are listed before the loss penalty's (describe's order); "
                            "nearest: the same rules in that order, the same run")


def clipper(torch, parameters: list, clip_grad_norm: Optional[float], clip_grad_value: Optional[float]):
    """The call a user makes between backward() and step(), on every parameter (None: no clipping)."""
    if clip_grad_norm is not None:
        return lambda: torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm, norm_type=NORM_TYPE)
    if clip_grad_value is not None:
        return lambda: torch.nn.utils.clip_grad_value_(parameters, clip_grad_value)
    return None
