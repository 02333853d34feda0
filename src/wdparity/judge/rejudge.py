"""Judging again in float64 where float32 cannot decide.

A float32 pair whose envelope exceeds the ceiling early (compare.py: `undecidable`) is not
necessarily undecidable in float64, where rounding is 2^29 times smaller. `rejudge` trains both
runs of every such pair again in float64 (all pairs of all cases in one more worker per backend,
the same task data), checks each float64 run against its own reference, judges the pair under the
float64 envelopes, and keeps the float64 verdict when it decides more steps, saying so in the pair
(`judged_in = "float64"`, the float32 result under `float32`). The caller judges those cases'
claims again.
"""

from __future__ import annotations

import dataclasses

from pydantic import ValidationError

from wdparity.engine import recording
from wdparity.judge import compare, diagnose, envelope, fidelity
from wdparity.run import harness, registry
from wdparity.spec.errors import InputError
from wdparity.spec.network import tensor_scope

KEPT = ("verdict", "max_abs_err", "max_rel_err", "first_divergent_step", "tensor", "compared_steps",
        "decidable_steps", "tol", "causes", "reason")


def float64_run(run):
    """The same run at float64: re-described (a framework may round differently there) with its worker env;
    (None, why) where the framework does not train this setting in float64 (the adapter refuses it)."""
    backend = registry.get(run.backend)
    task = run.task.model_copy(update={"dtype": "float64"})
    try:
        with tensor_scope(task.tensors):
            semantics = backend.describe(run.config, task)
    except (InputError, ValidationError) as exc:
        return None, f"{run.name} cannot be trained in float64: {str(exc).splitlines()[0]}"
    return dataclasses.replace(run, task=task, semantics=semantics, env=backend.worker_env(run.config, task)), None


def rejudge(results: list, timeout: float = harness.DEFAULT_TIMEOUT) -> list:
    """Re-judge every undecidable float32 pair in float64; returns the results whose pairs it re-judged."""
    items, data, todo, runs64 = [], {}, [], {}
    for ci, res in enumerate(results):
        pairs = [p for p in res.json["pairs"] if p["verdict"] == "undecidable" and p.get("dtype") == "float32"
                 and all(res.case.runs[p[s]].dtype == "float32" for s in ("a", "b"))]
        if not pairs:
            continue
        key = f"d{ci}"
        data[key] = res.data
        refused = {}
        for name in sorted({p[s] for p in pairs for s in ("a", "b")}):
            run64, why = float64_run(res.case.runs[name])
            if run64 is None:
                refused[name] = why
                continue
            runs64[(ci, name)] = run64
            items.append(run64.work_item(f"{key}-{name}", key))
        for pair in pairs:
            why = [refused[pair[s]] for s in ("a", "b") if pair[s] in refused]
            if why:   # stays undecidable, saying why it could not be judged in float64
                pair["float64"] = {"why": "the float32 envelope exceeds the ceiling", "reason": "; ".join(why)}
            else:
                todo.append((ci, res, pair, key))
    if not todo:
        return []
    out = harness.run_items(items, data, timeout=timeout)
    for ci, res, pair, key in todo:
        sides = {s: out[f"{key}-{pair[s]}"] for s in ("a", "b")}
        entry = {"why": "the float32 envelope exceeds the ceiling from step "
                        f"{pair['decidable_steps']}: both runs trained again in float64"}
        if any(r.status != "ok" for r in sides.values()):
            entry["reason"] = "; ".join(f"{pair[s]}: {r.status}: {r.reason}" for s, r in sides.items() if r.status != "ok")
            pair["float64"] = entry
            continue
        run_a, run_b = runs64[(ci, pair["a"])], runs64[(ci, pair["b"])]
        ta, tb = (recording.as_trajectory(sides[s].arrays) for s in ("a", "b"))
        bs = res.case.task.batch_size
        fids = {r.name: fidelity.fidelity(r.semantics.neutral(), t, res.data, bs, "float64")
                for r, t in ((run_a, ta), (run_b, tb))}
        envs = [envelope.envelope(r.semantics.neutral(), res.data, bs, "float64") for r in (run_a, run_b)]
        summary = compare.judge(ta, tb, envs, "float64")
        for k in ("curve", "tol_curve", "first_divergent_row", "tol_at_first"):
            summary.pop(k, None)
        summary["causes"] = []
        if summary["verdict"] == "diverges":
            found = diagnose.diagnose(run_a.semantics.neutral(), tb, run_b.semantics.neutral(), res.data, bs, "float64")
            summary["causes"] = found["causes"]
        summary["fidelity"] = {n: compare.finite_fields(f) for n, f in fids.items()}
        entry.update(summary)
        pair["float64"] = entry
        decided_more = summary["decidable_steps"] > pair["decidable_steps"] or summary["verdict"] != "undecidable"
        if decided_more and all(f["holds"] for f in fids.values()):
            pair["float32"] = {k: pair.get(k) for k in KEPT}
            for k in KEPT:
                if k in summary:
                    pair[k] = summary[k]
            pair["reason"] = (f"judged in float64: float32 decides only {pair['float32']['decidable_steps']} steps"
                              + (f"; float64 decides {summary['decidable_steps']}" if summary["verdict"] == "undecidable"
                                 else ""))
            pair["judged_in"] = "float64"
    return list({id(res): res for _, res, _, _ in todo}.values())
