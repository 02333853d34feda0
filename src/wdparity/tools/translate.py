"""explain and translate: a framework setting in plain words, and the same semantics in another framework.

`explain` parses KEY=VALUE pairs as TOML literals (never evaluated), lets the backend describe
them, and puts the neutral semantics into words. `translate` realizes a run's semantics in a
target backend; where the target cannot express them exactly it searches the nearest expressible
semantics (exact rewrites first, e.g. decoupled scale "schedule" = scale "lr" with lambda/lr; then
single and paired approximations such as flipping the epsilon placement) and measures the
residual with the reference on the case's own task.
"""

from __future__ import annotations

import copy
import itertools
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import ValidationError

from wdparity.engine import reference
from wdparity.engine.data import make_data
from wdparity.judge import compare, envelope
from wdparity.judge.diagnose import semantic_edits
from wdparity.run import registry
from wdparity.run.backend import Inexpressible, refuse_schedule
from wdparity.run.cases import load_case, load_run
from wdparity.spec.errors import InputError
from wdparity.spec.models import Semantics, Task, semantics_from_dict
from wdparity.spec.network import tensor_scope
from wdparity.tools import optimizer_words

BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is a TOML literal (0.01, true, [0.9, 0.999], {l2 = 0.1}) or a bare word."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", key):
            raise InputError("", "KEY=VALUE", "must look like weight_decay=0.01", pair)
        text = text.strip()
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            if not BARE.match(text):
                raise InputError("", key, "must be a TOML value (number, true/false, \"text\", [list], {table})", text)
            value = text
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError("", key, "conflicts with an earlier assignment", text)
        node[parts[-1]] = value
    return out


def explain(backend: str, pairs: list[str]) -> tuple[Semantics, str]:
    raw = {"backend": backend, **parse_assignments(pairs)}
    run = load_run("setting", raw, Task(), "explain", {})
    return run.semantics, words(run.semantics.neutral(), backend)


def words(sem: dict, backend: str = "") -> str:
    """The neutral semantics as sentences a person can check against the framework's docs."""
    opt = sem["optimizer"]
    lines = [f"Optimizer: {optimizer_words.sentence(opt)}."]
    if not sem["decay"]:
        lines.append("Weight decay: none.")
    for r in sem["decay"]:
        where = " and ".join(r["params"])
        lam = r["coefficient"]
        shape = "w" if r["norm"] == "l2" else f"sign(w) (sign(0) taken as {r['l1_at_zero']:g})"
        if r["coupling"] == "gradient":
            text = (f"{r['norm'].upper()} decay coupled to the gradient: adds {lam:g}*{shape} to the gradient of {where} "
                    "before the optimizer sees it")
            text += (f"; the same as a loss penalty {lam / 2:g}*||w||^2 (lambda/2 convention)" if r["norm"] == "l2"
                     else f"; the same as a loss penalty {lam:g}*|w|_1")
            if opt["name"] not in ("sgd", "lion"):
                text += f"; {optimizer_words.sentence(opt).split(',')[0]} then rescales it per coordinate, so it is NOT decoupled decay"
            elif opt["name"] == "lion":
                text += "; Lion then takes the sign of its momentum mix, so only the sign survives: NOT decoupled decay"
        else:
            s = {"lr": "lr_t (the scheduled learning rate)", "schedule": "eta_t (the schedule multiplier, as in the AdamW paper)",
                 "none": "1 (not scaled)"}[r["scale"]]
            text = (f"{r['norm'].upper()} decay decoupled from the gradient: w <- w - s*{lam:g}*{shape} on {where} every "
                    f"step, outside the optimizer's moments, with s = {s}")
            if r["scale"] == "lr" and r["norm"] == "l2":
                text += f"; per step the weights shrink by the factor 1 - {opt['lr'] * lam:.3g} at the base lr"
        lines.append(text + ".")
    for name in sem.get("frozen", []):
        why = "no param group names it, torch never updates it" if backend == "torch" else "never updated"
        lines.append(f"{name} is frozen: {why} (no gradient step, no decay); it keeps its initial value exactly.")
    lines.append(f"Loss: {'mean((yhat-y)^2)/2' if sem['loss'] == 'half_mse' else 'mean((yhat-y)^2)'}; "
                 f"schedule: {sem['schedule']['kind']}.")
    return "\n".join(lines)


# ------------------------------------------------------------------ translate
@dataclass
class Translation:
    table: dict                        # the [runs.NAME_as_BACKEND] table (with backend)
    name: str
    exact: bool
    residual: Optional[float] = None   # max rel err of the reference, source vs realized semantics
    tolerance: Optional[float] = None
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    python: Optional[str] = None       # the table as Python (tools/snippet.py), or None with python_reason
    python_reason: Optional[str] = None


def _variants(sem: dict) -> list[tuple[list[str], dict, frozenset]]:
    """(what changed, semantics, which parts it touched) alternatives to try when the target cannot express `sem`."""
    out = []
    opt = sem["optimizer"]
    lr = opt["lr"]
    constant = sem["schedule"]["kind"] == "constant"

    def variant(note: str, touched, edit) -> None:
        v = copy.deepcopy(sem)
        edit(v)
        out.append(([note], v, frozenset([touched])))

    # exact rewrites of decoupled scales: s*lambda with s = eta_t equals lr_t * (lambda/lr), and 1 equals lr_t/lr when constant
    for i, r in enumerate(sem["decay"]):
        if r["coupling"] == "decoupled" and (r["scale"] == "schedule" or (r["scale"] == "none" and constant)):
            variant(f"decoupled scale {r['scale']} rewritten as scale lr with lambda/lr", i,
                    lambda v, i=i, r=r: v["decay"][i].update(scale="lr", coefficient=r["coefficient"] / lr))
        if r["coupling"] == "decoupled" and r["scale"] == "none" and not constant:   # approximate: now follows lr_t
            variant("unscaled decoupled decay as scale lr with lambda/lr (it now follows the schedule)", i,
                    lambda v, i=i, r=r: v["decay"][i].update(scale="lr", coefficient=r["coefficient"] / lr))
        if r["coupling"] == "decoupled" and r["scale"] == "lr" and constant:
            variant("decoupled scale lr rewritten as unscaled lambda*lr", i,
                    lambda v, i=i, r=r: v["decay"][i].update(scale="none", coefficient=r["coefficient"] * lr))
    # approximations: each changes the math; the residual is measured
    if sem.get("frozen"):   # a framework that trains every tensor: the nearest setting trains the frozen ones too
        variant(f"{' and '.join(sem['frozen'])} trained (not frozen)", "frozen", lambda v: v.pop("frozen"))
    other = "float32" if sem.get("hyper_dtype", "float64") == "float64" else "float64"
    variant(f"hyperparameters in {other}", "hyper", lambda v: v.update(hyper_dtype=other))
    for f, values, note in optimizer_words.FIELD_VARIANTS.get(opt["name"], []):
        for value in values:
            if f in opt and opt[f] != value and (f != "momentum_form" or opt.get("momentum")):
                variant(f"{note}: {f} = {value!r}", ("opt", f), lambda v, f=f, value=value: v["optimizer"].update({f: value}))
    for i, r in enumerate(sem["decay"]):
        if r["coupling"] == "decoupled":   # the same per-step amplitude at the base lr, moved into the gradient
            coefficient = r["coefficient"] if r["scale"] == "lr" else r["coefficient"] / lr
            variant("decoupled decay as coupled L2 (identical only for plain SGD)", i,
                    lambda v, i=i, c=coefficient: v["decay"][i].update(coupling="gradient", scale=None, coefficient=c))
        else:
            variant("coupled decay as decoupled (identical only for plain SGD)", i,
                    lambda v, i=i: v["decay"][i].update(coupling="decoupled", scale="lr"))
        if r["norm"] == "l1":
            for at_zero in (0.0, 1.0, -1.0):
                if at_zero != r["l1_at_zero"]:
                    variant(f"sign(0) = {at_zero:g} instead of {r['l1_at_zero']:g}", ("l1", i),
                            lambda v, i=i, z=at_zero: v["decay"][i].update(l1_at_zero=z))
    return out


def _try_realize(target, sem: dict, task: Task) -> Optional[tuple[dict, dict]]:
    """(native table, what that table really means) or None. The meaning is read back with the
    target's own describe(), so a realize() that silently drops something cannot hide it. A learning-rate
    schedule of the run's own (e.g. Keras 2's legacy decay=) that is not the task's becomes the table's
    `schedule` key where the target trains that schedule."""
    with tensor_scope(task.tensors):   # a network's masks name its tensors
        return _realized(target, sem, task)


def _realized(target, sem: dict, task: Task) -> Optional[tuple[dict, dict]]:
    semantics = semantics_from_dict(sem)
    moved = semantics.schedule != task.schedule
    if moved:
        task = task.model_copy(update={"schedule": semantics.schedule})
    try:
        refuse_schedule(target, semantics)
        table = target.realize(semantics, task)
    except Inexpressible:
        return None
    actual = target.describe(target.parse({k: v for k, v in table.items() if k != "backend"}), task).neutral()
    return ({**table, "schedule": task.schedule.model_dump()} if moved else table), actual


def translate(case_path: str, run_name: str, to: str) -> Translation:
    case = load_case(case_path)
    if run_name not in case.runs:
        raise InputError(case_path, "--run", f"must be one of {sorted(case.runs)}", run_name)
    return translate_run(case.runs[run_name], case.task, to, case_path)


def translate_run(run, case_task: Task, to: str, where: str = "") -> Translation:
    """`run` (a loaded Run of a case whose task is `case_task`) realized in backend `to`; `where` names the source
    in messages."""
    target = registry.get(to, "", "--to")
    run_name = run.name
    sem = run.semantics.neutral()
    name = f"{run_name}_as_{to}"
    data = make_data(case_task.model_dump())
    batch = run.task.batch_size
    source_traj = reference.run_cached(sem, data, batch, "float64")
    env32 = envelope.envelope(sem, data, batch, "float32")
    tol = compare.judge(source_traj, source_traj, [env32, env32], "float32")["tol"] or compare.FLOOR["float32"]
    singles = _variants(sem)
    candidates = [([], sem)] + [(notes, v) for notes, v, _ in singles]
    candidates += [(a[0] + b[0], _compose(sem, a[1], b[1])) for a, b in itertools.combinations(singles, 2)
                   if not a[2] & b[2]]   # two changes to the same part do not compose
    candidates = [(notes, v) for notes, v in candidates if _valid(v)]   # e.g. AMSGrad's v_hat needs "corrected"
    best = None
    for changed, variant in candidates:
        found = _try_realize(target, variant, run.task)
        if found is None:   # what the target does to every setting (its float32 hyperparameters, ...)
            with tensor_scope(run.task.tensors):
                inherent = target.inherent(semantics_from_dict(variant), run.task).neutral()
            found = _try_realize(target, inherent, run.task)
        if found is None:
            continue
        table, actual = found
        table = {**_run_level(run.task, case_task), **table}
        if actual == sem:
            return Translation({"backend": to, **table}, name, True, 0.0, tol, [], changed)
        traj = reference.run_cached(actual, data, batch, "float64")
        n = min(compare.stable_length(traj), compare.stable_length(source_traj))
        err = compare.max_rel(traj, source_traj, n)
        if best is None or err < best[0]:
            best = (err, changed, actual, table, traj)
    if best is None:
        raise Inexpressible(f"{to} cannot express run {run_name!r} of {where or 'the source'}, nor any nearby setting "
                            f"(tried {len(candidates)} variants)")
    err, changed, actual, table, traj = best
    labels = sorted({label for label, _ in semantic_edits(sem, actual)})
    envs64 = [envelope.envelope(s_, data, batch, "float64") for s_ in (sem, actual)]
    exact = not labels or compare.judge(traj, source_traj, envs64, "float64")["verdict"] == "equivalent"
    return Translation({"backend": to, **table}, name, exact, err, tol, [] if exact else labels, changed)


def _run_level(run_task: Task, case_task: Task) -> dict:
    """The run's own dtype / loss / schedule keys where they differ from the case's task, so the translated
    table means the same when pasted beside the source run."""
    out = {}
    for key in ("dtype", "loss", "schedule"):
        value = getattr(run_task, key)
        if value != getattr(case_task, key):
            out[key] = value.model_dump() if key == "schedule" else value
    return out


def _valid(sem: dict) -> bool:
    """Whether a variant is neutral semantics at all (two edits may combine into a setting the spec rejects)."""
    try:
        semantics_from_dict(sem)
    except ValidationError:
        return False
    return True


def _compose(base: dict, a: dict, b: dict) -> dict:
    """Apply the changes of two variants of `base` together."""
    out = copy.deepcopy(a)
    if b.get("frozen") != base.get("frozen"):
        out.pop("frozen", None)
        out.update({"frozen": b["frozen"]} if b.get("frozen") else {})
    if b["optimizer"] != base["optimizer"]:
        out["optimizer"] = {**out["optimizer"], **{k: v for k, v in b["optimizer"].items() if base["optimizer"].get(k) != v}}
    for i, (rb, r0) in enumerate(zip(b["decay"], base["decay"])):
        if rb != r0:
            out["decay"][i] = {**out["decay"][i], **{k: v for k, v in rb.items() if r0.get(k) != v}}
    return out


def to_toml(t: Translation) -> str:
    """The table as TOML, with the residual as comments."""
    lines = []
    if t.exact and not t.notes:
        lines.append("# exact: the target expresses the same neutral semantics")
    elif t.exact:
        lines.append(f"# exact after rewriting: {'; '.join(t.notes)} (reference residual {t.residual:.2e})")
    else:
        why = "; ".join(t.notes) or "the same setting, computed in the framework's own arithmetic"
        lines.append(f"# approximate: {why}")
        lines.append(f"# residual (reference, float64, this case's task): max rel err {t.residual:.3e} "
                     f"vs float32 tolerance {t.tolerance:.3e}; differs in: {', '.join(t.differences) or '-'}")
    lines.append(f"[runs.{t.name}]")
    nested = {}
    for key, value in t.table.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            nested[key] = value
        else:
            lines.append(f"{key} = {toml_value(value)}")
    for key, rows in nested.items():
        for row in rows:
            lines.append(f"[[runs.{t.name}.{key}]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in row.items()]
    return "\n".join(lines) + "\n"


def toml_value(v: Any) -> str:
    """A Python value as a TOML literal (inline tables for dicts)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_json(t: Translation, source_run: str = "", target: str = "") -> dict:
    """`wdparity translate --json`: the table, whether it is exact, the measured residual, differences and notes."""
    return {"run": source_run, "to": target, "name": t.name, "table": t.table, "toml": to_toml(t), "exact": t.exact,
            "residual": t.residual, "tolerance": t.tolerance, "differences": list(t.differences), "notes": list(t.notes)}
