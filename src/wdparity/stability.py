"""Stability: the largest stable learning rate of SGD on the task, and divergence in a trajectory.

For the linear model the batch loss is quadratic, so its Hessian is exact and independent of the
parameters: H_B = f/|B| * X~_B^T X~_B + D, with X~ = [X, 1], f = 1 (half_mse) or 2 (mse) and D the
coupled L2 coefficients of the decayed tensors. With L = max_B lambda_max(H_B), plain SGD is stable
for lr < 2/L; heavy-ball momentum m (dampening d) for lr*(1-d) < 2(1+m)/L; Nesterov for
lr < 2(1+m)/((1+2m) L). Adam has no such bound: it is judged by its trajectory alone.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .data import batches, loss_factor
from .schedules import multipliers

EXACT_LIMIT = 1500  # above this many parameters, bound D by its largest entry instead of diagonalizing


def curvature(semantics: dict, data: dict, batch_size: int) -> float:
    """L: the largest eigenvalue over batches of the batch-loss Hessian (decay included)."""
    f = loss_factor(semantics.get("loss", "half_mse"))
    coupled = {"weight": 0.0, "bias": 0.0}
    lr = semantics["optimizer"]["lr"]
    for rule in semantics.get("decay", []):
        if rule["norm"] != "l2":
            continue
        if rule["coupling"] == "gradient":
            c = rule["coefficient"]
        elif rule["scale"] == "lr":     # w <- w - lr*lambda*w acts like curvature lambda
            c = rule["coefficient"]
        else:                           # s*lambda with s independent of lr: curvature s*lambda/lr
            c = rule["coefficient"] / lr
        for name in rule["params"]:
            coupled[name] += c
    X = data["X_train"]
    d = X.shape[1]
    seen, best = set(), 0.0
    for rows in batches(data["order"], batch_size):
        key = tuple(sorted(int(r) for r in rows))
        if key in seen:
            continue
        seen.add(key)
        Xt = np.hstack([X[list(key)], np.ones((len(key), 1))])
        if d + 1 <= EXACT_LIMIT and coupled["weight"] != coupled["bias"]:
            H = f / len(key) * (Xt.T @ Xt)
            H[np.diag_indices(d)] += coupled["weight"]
            H[d, d] += coupled["bias"]
            top = float(np.linalg.eigvalsh(H)[-1])
        else:  # uniform decay shifts every eigenvalue; otherwise this is an upper bound
            gram = f / len(key) * (Xt @ Xt.T)
            top = float(np.linalg.eigvalsh(gram)[-1]) + max(coupled.values())
        best = max(best, top)
    return best


def sgd_bound(semantics: dict, data: dict, batch_size: int) -> Optional[dict]:
    """{"L", "bound", "lr_max", "exceeds", "formula"} for SGD; None for Adam (no closed-form bound)."""
    opt = semantics["optimizer"]
    if opt["name"] != "sgd":
        return None
    L = curvature(semantics, data, batch_size)
    if L <= 0:
        return None
    m, damp = opt.get("momentum", 0.0), opt.get("dampening", 0.0)
    if m == 0:
        bound, formula = 2.0 / L, "2/L"
    elif opt.get("nesterov"):
        bound, formula = 2.0 * (1 + m) / ((1 + 2 * m) * L), "2(1+m)/((1+2m)L)"
    else:
        bound, formula = 2.0 * (1 + m) / ((1 - damp) * L), "2(1+m)/((1-d)L)"
    steps = len(batches(data["order"], batch_size))
    lr_max = opt["lr"] * float(multipliers(semantics.get("schedule", {"kind": "constant"}), steps).max())
    return {"L": L, "bound": bound, "lr_max": lr_max, "exceeds": bool(lr_max > bound), "formula": formula}


def describe_instability(bound: Optional[dict], diverged_at: Optional[int]) -> Optional[str]:
    """The `reason` of an unstable run, or None when the run is stable by both tests."""
    exceeds = bool(bound and bound["exceeds"])
    if diverged_at is None and not exceeds:
        return None
    parts = []
    if diverged_at is not None:
        parts.append(f"diverged at step {diverged_at} (non-finite or grew past 1e6 x its start)")
    if bound is not None:
        relation = "exceeds" if exceeds else "is within"
        parts.append(f"lr {bound['lr_max']:.6g} {relation} the stability bound {bound['formula']} = "
                     f"{bound['bound']:.6g} (L = {bound['L']:.6g}, the largest eigenvalue of the batch-loss Hessian)")
    if diverged_at is None:
        parts.append("not yet diverged within the recorded steps")
    return "; ".join(parts)
