"""The exact first divergent step at scale: replay the window between two checkpoints in full.

In checkpoint mode (recording.py) a pair is compared at its recorded rows, so its first divergent
row only bounds the step: after the previous checkpoint, at or before this one. `localize` runs
both sides of every such pair again, all pairs of all cases in one more worker per backend, with
that window recorded in full (the task data carry the rows; every run is deterministic, so the
replay retraces the first pass), and takes the first step whose relative error leaves the pair's
per-step tolerance (its envelopes measured on the same rows). The metric's scale (each tensor's largest magnitude over all steps) comes from the per-step
summaries, so the relative error of a recorded step is exactly what full recording gives.
"""

from __future__ import annotations

from wdparity.engine import recording
from wdparity.judge import compare, envelope
from wdparity.run import harness


def localize(results: list, timeout: float = harness.DEFAULT_TIMEOUT) -> int:
    """Replace each pair's checkpoint-bounded first divergent step by the exact one; returns how many.

    Each run is replayed once per case, with the windows of all its case's pairs recorded together."""
    items, data, todo = [], {}, []
    for ci, res in enumerate(results):
        pairs = [p for p in res.json["pairs"] if "localize" in p]
        if not pairs:
            continue
        key = f"r{ci}"
        data[key] = res.data
        for pair in pairs:
            data[key] = recording.with_window(data[key], tuple(pair["localize"]))
        for side in sorted({p[s] for p in pairs for s in ("a", "b")}):
            items.append(res.case.runs[side].work_item(f"{key}-{side}", key))
        todo += [(res, pair, key, pair.pop("localize")) for pair in pairs]
    if not todo:
        return 0
    out = harness.run_items(items, data, timeout=timeout)
    for res, pair, key, window in todo:
        sides = [out[f"{key}-{pair[s]}"] for s in ("a", "b")]
        entry = {"window": window, "checkpoint_step": pair["first_divergent_step"],
                 "by": "both runs replayed with the window recorded in full"}
        if any(r.status != "ok" for r in sides):
            entry["reason"] = "; ".join(f"{r.status}: {r.reason}" for r in sides if r.status != "ok")
            pair["localized"] = entry
            continue
        a, b = (recording.as_trajectory(r.arrays) for r in sides)
        steps = recording.steps_of(sides[0].arrays)
        runs = res.case.runs
        envs = [envelope.envelope(runs[pair[s]].semantics.neutral(), data[key], res.case.task.batch_size,
                                  runs[pair[s]].dtype) for s in ("a", "b")]
        summary = compare.judge(a, b, envs, compare.pair_dtype(tuple(runs[pair[s]].dtype for s in ("a", "b"))))
        row = summary["first_divergent_row"]
        if row is not None and steps[row] <= window[1]:   # earlier than the window only via another pair's window
            pair["first_divergent_step"], pair["tensor"] = int(steps[row]), summary["tensor"]
            curve = res.curves.get((pair["a"], pair["b"]))
            if curve is not None:
                curve["first"] = pair["first_divergent_step"]
        else:   # the replay did not retrace the first pass: say so rather than guess
            entry["reason"] = (f"the replay's first divergent row is step {None if row is None else int(steps[row])},"
                               " after the window: the runs are not deterministic")
        pair["localized"] = entry
    return len(todo)
