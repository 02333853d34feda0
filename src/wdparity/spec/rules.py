"""Decay rules to and from per-tensor coefficients: the one way every adapter states "tensor X decays by c".

Frameworks speak per tensor (torch param groups, MXNet wd_mult, Keras per-layer regularizers, optax
masks); the neutral model speaks in rules over lists of tensors. `rules_from_coefficients` is the
canonical form every describe() uses (one rule per distinct nonzero coefficient, tensors in the model's
layout order: network.in_scope()), `coefficients` the way back that realize() and the diagnosis read, and `penalty_terms` the
order in which a loss penalty's terms are added to a loss, shared by every adapter's training loop.
"""

from __future__ import annotations

from typing import Optional

from wdparity.spec.models import DecayRule, Penalty
from wdparity.spec.network import in_scope


def rules_from_coefficients(per: dict[str, float], *, norm: str = "l2", coupling: str = "gradient",
                            scale: Optional[str] = None, l1_at_zero: Optional[float] = None,
                            via_loss: bool = False) -> list[DecayRule]:
    """One rule per distinct nonzero coefficient, its tensors in layout order; tensors absent from `per`
    (or at 0) are not decayed by this term."""
    extra = {"l1_at_zero": l1_at_zero} if norm == "l1" and l1_at_zero is not None else {}
    extra.update({"scale": scale} if coupling == "decoupled" and scale is not None else {})
    extra.update({"via_loss": True} if via_loss else {})
    named = [name for name in in_scope() if name in per]
    rules = []
    for coef in dict.fromkeys(per[name] for name in named):
        if coef:
            rules.append(DecayRule(norm=norm, coupling=coupling, coefficient=coef,
                                   params=[name for name in named if per[name] == coef], **extra))
    return rules


def coefficients(rules: list[DecayRule], norm: str = "l2", coupling: str = "gradient") -> dict[str, float]:
    """Each tensor's summed coefficient over the rules of one norm and coupling (0.0 for an undecayed one)."""
    out = {name: 0.0 for name in in_scope()}
    for rule in rules:
        if rule.norm == norm and rule.coupling == coupling:
            for name in rule.params:
                out[name] += rule.coefficient
    return out


def penalty_terms(penalty: Optional[Penalty]) -> list[tuple[str, str, float]]:
    """(tensor, "l2" | "l1", coefficient) of a loss penalty c2*sum(w^2) + c1*sum(|w|), in the order a training
    loop adds them to its loss (tensor by tensor, L2 before L1); zero terms are left out."""
    if penalty is None:
        return []
    return [(name, kind, coef) for name in penalty.params for kind, coef in (("l2", penalty.l2), ("l1", penalty.l1))
            if coef]
