"""Stability: the largest stable learning rate of SGD on the task, and divergence in a trajectory.

For the linear model the batch loss is quadratic, so its Hessian is exact and independent of the
parameters: H_B = f/|B| * X~_B^T X~_B + D, with X~ = [X, 1], f = 1 (half_mse) or 2 (mse) and D the
coupled L2 coefficients of the decayed tensors. With L = max_B lambda_max(H_B), plain SGD is stable
for lr < 2/L; heavy-ball momentum m (dampening d) for lr*(1-d) < 2(1+m)/L; Nesterov for
lr < 2(1+m)/((1+2m) L). Adam has no such bound: it is judged by its trajectory alone, and so is a network
(`[task] model` with hidden layers: its loss is not quadratic, its Hessian moves with the parameters).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from wdparity.engine.data import batches, loss_factor
from wdparity.engine.schedules import multipliers

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
    # a frozen tensor never moves: its row and column of the Hessian (the bias is coordinate d) drop out
    frozen = set(semantics.get("frozen", []))
    trained = {k: c for k, c in coupled.items() if k not in frozen}
    if not trained:
        return 0.0
    seen, best = set(), 0.0
    for rows in batches(data["order"], batch_size):
        key = tuple(sorted(int(r) for r in rows))
        if key in seen:
            continue
        seen.add(key)
        Xt = np.hstack([X[list(key)], np.ones((len(key), 1))])
        if frozen:
            Xt = Xt[:, d:] if "weight" in frozen else Xt[:, :d]
        if not frozen and d + 1 <= EXACT_LIMIT and coupled["weight"] != coupled["bias"]:
            H = f / len(key) * (Xt.T @ Xt)
            H[np.diag_indices(d)] += coupled["weight"]
            H[d, d] += coupled["bias"]
            top = float(np.linalg.eigvalsh(H)[-1])
        else:  # uniform decay shifts every eigenvalue (one trained tensor: always); otherwise an upper bound
            gram = f / len(key) * (Xt @ Xt.T)
            top = float(np.linalg.eigvalsh(gram)[-1]) + max(trained.values())
        best = max(best, top)
    return best


def sgd_bound(semantics: dict, data: dict, batch_size: int) -> Optional[dict]:
    """{"L", "bound", "lr_max", "exceeds", "formula"} for SGD; None for Adam (no closed-form bound)."""
    opt = semantics["optimizer"]
    if opt["name"] != "sgd" or "model_json" in data:
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


GROWTH_RATIO = 10.0   # the scale grows at least this much over the last half of the steps, geometrically


def measured_growth(traj: dict) -> Optional[dict]:
    """How the run's scale max(|w|, |b|) grows: the per-step factor fitted (log-linear, least squares) over the
    last half of its finite steps, the growth over that half, and whether it is geometric (>= GROWTH_RATIO x
    with R^2 >= 0.9)."""
    from wdparity.engine.recording import per_step

    w, b, finite = per_step(traj)
    with np.errstate(all="ignore"):
        scale = np.fmax(w, np.abs(b))
    ok = finite & (scale > 0)
    n = int(np.argmin(ok)) if not ok.all() else len(ok)
    if n < 8:
        return None
    t = np.arange(n // 2, n)
    y = np.log(scale[t])
    slope, icept = np.polyfit(t, y, 1)
    resid = y - (slope * t + icept)
    spread = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / spread if spread > 0 else 0.0
    ratio = float(scale[n - 1] / scale[n // 2])
    return {"per_step": float(np.exp(slope)), "over_last_half": ratio,
            "geometric": bool(slope > 0 and ratio >= GROWTH_RATIO and r2 >= 0.9)}


def describe_instability(bound: Optional[dict], diverged_at: Optional[int], growth: Optional[dict] = None) -> Optional[str]:
    """The `reason` of an unstable run, or None when it is not: a run is unstable when it broke the stop
    rule, or when its lr exceeds the SGD bound and its scale grows geometrically as the bound predicts."""
    exceeds = bool(bound and bound["exceeds"])
    grows = bool(growth and growth["geometric"])
    if diverged_at is None and not (exceeds and grows):
        return None
    parts = []
    if diverged_at is not None:
        parts.append(f"diverged at step {diverged_at} (non-finite or grew past 1e6 x its start)")
    if bound is not None:
        relation = "exceeds" if exceeds else "is within"
        parts.append(f"lr {bound['lr_max']:.6g} {relation} the stability bound {bound['formula']} = "
                     f"{bound['bound']:.6g} (L = {bound['L']:.6g}, the largest eigenvalue of the batch-loss Hessian)")
    if diverged_at is None and growth is not None:
        parts.append(f"its scale grows geometrically, x{growth['per_step']:.6g} per step "
                     f"(x{growth['over_last_half']:.3g} over the last half of the steps)")
    return "; ".join(parts)
