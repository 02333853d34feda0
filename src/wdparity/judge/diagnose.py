"""Why two runs diverge: causes from the difference of their semantics, each confirmed numerically.

Each run's decay is put in a canonical per-tensor form (tensor, norm, coupling) -> term; the
difference between two runs' semantics is a list of labelled edits. With every edit applied, the
reference of run A must reproduce run B within B's envelope, or the pair is `unexplained` — a
finding, never hidden; then a label is a cause only if leaving that one edit out leaves B's
envelope. A label whose edit changes nothing measurable is `inert`.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from wdparity.engine import reference
from wdparity.judge import compare, envelope

Edit = tuple[str, Callable[[dict], None]]   # (cause label, in-place edit of a semantics dict)

# An optimizer field that differs between two runs of one family -> its cause label (any other field: "optimizer").
FIELD_CAUSES = {
    "momentum": "momentum", "dampening": "momentum", "nesterov": "momentum", "momentum_form": "momentum",
    "momentum_decay": "momentum",
    "eps": "epsilon", "eps_placement": "epsilon", "eps_in_sqrt": "epsilon",
    "rho": "second-moment", "initial_scale": "second-moment", "initial_accumulator": "second-moment",
    "amsgrad": "second-moment", "centered": "second-moment",
    "bias_correction": "bias-correction", "threshold": "bias-correction", "threshold_inclusive": "bias-correction",
    "bias_correction_dtype": "precision", "lr_decay": "schedule", "decay_placement": "coupling",
    # Adafactor
    "decay_rate": "second-moment", "clip_threshold": "clipping", "relative_step": "schedule",
    "parameter_scale": "lr-scaling", "decay_rate_dtype": "precision", "max_trust_ratio": "lr-scaling",
}
# betas[0]: the first moment's rate, betas[1] the second's (Adam, Adamax, NAdam, RAdam); Lion's are both momentum
BETA_CAUSES = {"lion": ("momentum", "momentum")}


def canonical_decay(semantics: dict) -> dict[tuple, dict]:
    """(tensor, norm, coupling) -> {coefficient, scale, l1_at_zero}; equal terms merged, zeros dropped.

    Decoupled terms are put in amplitude form, so that exact rewrites are not differences: the
    per-step decay is s_t*lambda, and "lr" (lr*eta_t*lambda) is "schedule" with amplitude lr*lambda;
    with a constant schedule "none" is "schedule" too. The coefficient of a canonical decoupled term
    is that amplitude, and its scale is "schedule" (follows eta_t) or "none" (constant).
    """
    lr = semantics["optimizer"]["lr"]
    constant = semantics.get("schedule", {"kind": "constant"}).get("kind") == "constant"
    out: dict[tuple, dict] = {}
    for rule in semantics.get("decay", []):
        if rule["coefficient"] == 0:
            continue
        coefficient, scale = rule["coefficient"], rule["scale"]
        if rule["coupling"] == "decoupled":
            coefficient = coefficient * lr if scale == "lr" else coefficient
            scale = "none" if scale == "none" and not constant else "schedule"
        # a loss penalty and the optimizer's own term differ in where clipping sees them (and nowhere else here)
        via_loss = bool(rule.get("via_loss")) and semantics.get("clip") is not None
        for name in rule["params"]:
            key = (name, rule["norm"], rule["coupling"])
            if key in out and (out[key]["scale"], out[key]["l1_at_zero"], out[key]["via_loss"],
                               out[key].get("schedule")) == (scale, rule["l1_at_zero"], via_loss, rule.get("schedule")):
                out[key]["coefficient"] += coefficient
            else:
                out[key] = {"coefficient": coefficient, "scale": scale, "l1_at_zero": rule["l1_at_zero"],
                            "via_loss": via_loss}
                if rule.get("schedule"):
                    out[key]["schedule"] = rule["schedule"]
    return out


def decay_rules(canon: dict[tuple, dict]) -> list[dict]:
    out = []
    for (name, norm, coupling), term in sorted(canon.items()):
        rule = {"norm": norm, "coupling": coupling, "params": [name], **term}
        if rule.pop("via_loss"):
            rule["via_loss"] = True
        out.append(rule)
    return out


def _decay_edits(a: dict, b: dict) -> list[Edit]:
    ca, cb = canonical_decay(a), canonical_decay(b)
    edits: list[Edit] = []

    def set_term(key, term):
        def edit(sem):
            canon = canonical_decay(sem)
            if term is None:
                canon.pop(key, None)
            else:
                canon[key] = dict(term)
            sem["decay"] = decay_rules(canon)
        return edit

    def set_attr(key, attr, value):
        def edit(sem):
            canon = canonical_decay(sem)
            if key in canon:
                canon[key][attr] = value
                if value is None and attr == "schedule":
                    del canon[key][attr]
            sem["decay"] = decay_rules(canon)
        return edit

    tensors_a = {k[0] for k in ca}
    tensors_b = {k[0] for k in cb}
    for key in sorted(set(ca) | set(cb)):
        name, norm, coupling = key
        if key in ca and key in cb:
            for attr, label in (("coefficient", "coefficient"), ("scale", "lr-scaling"), ("l1_at_zero", "l1-at-zero"),
                                ("via_loss", "clipping"), ("schedule", "schedule")):
                if ca[key].get(attr) != cb[key].get(attr):
                    edits.append((label, set_attr(key, attr, cb[key].get(attr))))
            continue
        other = tensors_b if key in ca else tensors_a
        others = cb if key in ca else ca
        if name not in other:
            # decayed here, not there: a mask if the other run decays some tensor by this norm (its coupling, if it
            # differs, is an edit of its own), else 0 vs lambda
            label = "mask" if any(k[1] == norm for k in others) else "coefficient"
        elif any(k[0] == name and k[1] == norm for k in others):
            label = "coupling"
            if key in cb:
                split = _coupling_split(a, ca, cb, key)
                if split is not None:
                    edits += split
                    continue
        else:
            label = "norm"
        edits.append((label, set_term(key, cb.get(key))))
    return edits


def _as_coupling(coefficient: float, lr: float, into: str) -> float:
    """A term's coefficient written in the coupling `into`, as plain SGD makes the two one update: w -= lr*(g +
    lambda*w) is w -= lr*g - (lr*lambda)*w, a decoupled amplitude lr*lambda that follows the schedule as lr does."""
    return coefficient * lr if into == "decoupled" else coefficient / lr


def _coupling_split(a: dict, ca: dict, cb: dict, key: tuple) -> "list[Edit] | None":
    """Where one tensor's term changes coupling and coefficient at once, two edits instead of one: `coupling`
    (b's coupling, a's coefficient carried over as plain SGD equates them) and `coefficient` (b's own), so that
    each is a cause only if it is measured to be one (Keras's decoupled SGD decay with a float32-rounded factor
    against torch's coupled one differs by the factor, not by the coupling). None where the terms do not convert
    (a decay that ignores the schedule) or a has several terms on the tensor."""
    name, norm, coupling = key
    mine = [k for k in ca if k[:2] == (name, norm) and k not in cb]
    if len(mine) != 1 or "none" in (ca[mine[0]]["scale"], cb[key]["scale"]):
        return None
    lr = a["optimizer"]["lr"]
    carried = _as_coupling(ca[mine[0]]["coefficient"], lr, coupling)
    wanted = cb[key]["coefficient"]
    if abs(carried - wanted) <= 4 * np.finfo(float).eps * abs(wanted):   # the conversion's own rounding
        carried = wanted

    def recouple(sem):
        canon = canonical_decay(sem)
        canon[key] = {**cb[key], "coefficient": carried}
        sem["decay"] = decay_rules(canon)

    def recoefficient(sem):   # whichever form the tensor's term has: b's coupling, or a's where that edit is left out
        canon = canonical_decay(sem)
        if key in canon:
            canon[key]["coefficient"] = wanted
        elif mine[0] in canon:
            canon[mine[0]]["coefficient"] = _as_coupling(wanted, lr, mine[0][2])
        sem["decay"] = decay_rules(canon)

    return [("coupling", recouple)] + ([("coefficient", recoefficient)] if carried != wanted else [])


def semantic_edits(a: dict, b: dict) -> list[Edit]:
    """Every labelled difference between two neutral semantics dicts, as edits turning a into b."""
    edits: list[Edit] = []
    oa, ob = a["optimizer"], b["optimizer"]

    def set_field(path: tuple, value):
        def edit(sem):
            node = sem
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = copy.deepcopy(value)
        return edit

    if oa["name"] != ob["name"]:
        edits.append(("optimizer", set_field(("optimizer",), ob)))
    else:
        for f in sorted(set(oa) | set(ob)):
            if f == "betas" and oa.get(f) and ob.get(f):   # first moment and second moment, each its own edit
                for i, label in enumerate(BETA_CAUSES.get(oa["name"], ("optimizer", "second-moment"))):
                    if oa[f][i] != ob[f][i]:
                        edits.append((label, set_field(("optimizer", f, i), ob[f][i])))
            elif f != "name" and oa.get(f) != ob.get(f):
                edits.append((FIELD_CAUSES.get(f, "optimizer"), set_field(("optimizer", f), ob.get(f))))
    if a.get("loss") != b.get("loss"):
        edits.append(("loss-scale", set_field(("loss",), b.get("loss"))))
    if a.get("schedule") != b.get("schedule"):
        edits.append(("schedule", set_field(("schedule",), b.get("schedule"))))
    if a.get("hyper_dtype", "float64") != b.get("hyper_dtype", "float64"):
        edits.append(("precision", set_field(("hyper_dtype",), b.get("hyper_dtype", "float64"))))
    if a.get("clip") != b.get("clip"):
        def set_clip(sem, value=copy.deepcopy(b.get("clip"))):
            if value is None:
                sem.pop("clip", None)
            else:
                sem["clip"] = copy.deepcopy(value)
        edits.append(("clipping", set_clip))
    if a.get("frozen", []) != b.get("frozen", []):   # which tensors train at all (absent: none frozen)
        def set_frozen(sem, value=list(b.get("frozen", []))):
            if value:
                sem["frozen"] = list(value)
            else:
                sem.pop("frozen", None)
        edits.append(("frozen", set_frozen))
    return edits + _decay_edits(a, b)


def apply(sem: dict, edits: list[Edit]) -> dict:
    out = copy.deepcopy(sem)
    for _, edit in edits:
        edit(out)
    return out


def diagnose(sem_a: dict, traj_b: dict, sem_b: dict, data: dict, batch_size: int, dtype_b: str) -> dict:
    """Causes of A diverging from B's native trajectory, A replayed by the float64 reference.

    Every comparison is against B's native run under B's own envelope (B's dtype and the float64
    reference's, as B's fidelity): (a) A with every labelled edit applied must reproduce B there,
    else the residual is `unexplained` and no label is reported; (b) a label is a cause only if A
    with every edit but that one applied leaves the envelope on a decidable step; a label whose
    edit changes nothing measurable is `inert` (in the checks, never a cause).

    Returns {"causes": [...], "inert": [...], "checks": [per-label evidence], "residual_after_all": err,
    "explained": bool}.
    """
    edits = semantic_edits(sem_a, sem_b)
    labels = sorted({label for label, _ in edits})
    envs = [envelope.envelope(sem_b, data, batch_size, dtype_b), envelope.envelope(sem_b, data, batch_size, "float64")]
    dtype = compare.pair_dtype((dtype_b,))

    def judged(selected: list[Edit]) -> dict:
        moved = reference.run_cached(apply(sem_a, selected), data, batch_size, "float64")
        return compare.judge(moved, traj_b, envs, dtype)

    everything = judged(edits)
    explained = bool(labels) and everything["verdict"] != "diverges"
    checks, causes, inert = [], [], []
    for label in labels:
        without = judged([e for e in edits if e[0] != label])
        needed = without["verdict"] == "diverges"
        checks.append({"cause": label, "err_with_all_but_this_applied": without["max_rel_err"],
                       "leaves_envelope_at_step": without["first_divergent_step"], "needed": needed,
                       "confirmed": bool(explained and needed)})
        if explained and needed:
            causes.append(label)
        elif not needed:
            inert.append(label)
    if not explained:
        causes = ["unexplained"]
    return {"causes": causes, "inert": inert, "checks": checks, "explained": explained,
            "residual_after_all": float(everything["max_rel_err"]),
            "residual_leaves_envelope_at_step": everything["first_divergent_step"]}
