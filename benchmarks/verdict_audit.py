"""An audit of the verdicts anyone can rerun: false alarms and power over the whole catalogue.

- False alarms: every pair of identical semantics on different backends judged `diverges`, and every
  native run judged off its own reference (fidelity). Goal: 0.
- Power: every pair the catalogue judges `equivalent`, with one side's lambda, lr or eps changed by
  1 % and by 0.1 % in that side's own framework keys (trained natively again): the fraction judged
  `diverges` on decidable steps. Goal: 100 % at 1 %, >= 95 % at 0.1 %. A change whose own effect (the
  float64 reference of the changed side against the unchanged one) stays within the pair's tolerance is
  below what float arithmetic in these dtypes can resolve: listed apart, not counted either way. A pair that
  `check` judged in float64 (float32 could not decide it) is perturbed and judged in float64 too, both sides
  trained again there, as `check` would.

    python benchmarks/verdict_audit.py [PATH ...] [--json FILE]

Prints both rates and the worst cases (the smallest margin of a false-alarm check, the misses).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KNOBS = {"lambda": ("weight_decay", "wd", "l2", "l1", "coefficient"), "lr": ("lr", "learning_rate"),
         "eps": ("eps", "epsilon")}
CHANGES = (1.01, 1.001)


def scaled(raw, keys, factor):
    """A copy of a run table with every numeric value at one of `keys` (nested too) times `factor`, and
    how many it changed."""
    count = 0

    def walk(node):
        nonlocal count
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k in keys and isinstance(v, (int, float)) and not isinstance(v, bool) and v:
                    out[k] = v * factor
                    count += 1
                else:
                    out[k] = walk(v)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(copy.deepcopy(raw)), count


def main(argv=None) -> int:
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "backends")]
    from wdparity.cli import case_files
    from wdparity.engine import reference
    from wdparity.engine.recording import as_trajectory
    from wdparity.judge import compare, envelope
    from wdparity.judge.check import check_cases
    from wdparity.judge.rejudge import float64_run
    from wdparity.run import harness
    from wdparity.run.cases import load_run
    from wdparity.spec.casefile import read_toml

    p = argparse.ArgumentParser()
    p.add_argument("paths", nargs="*", default=[str(ROOT / "comparisons")])
    p.add_argument("--json", help="write the figures and every check here")
    args = p.parse_args(argv)
    files = [f for f in case_files(args.paths) if "[sweep]" not in Path(f).read_text()]
    start = time.perf_counter()
    results = check_cases(files)
    alarms, alarm_checks, margins = [], 0, []
    for res in results:
        j = res.json
        for name, r in j["runs"].items():
            if r["fidelity"] is not None:
                alarm_checks += 1
                margins.append(((r["fidelity"]["max_rel_err"] or 0) / (r["fidelity"]["tol"] or 1), "fidelity",
                                j["case"], name))
                if not r["fidelity"]["holds"]:
                    alarms.append(("fidelity", j["case"], name, r["fidelity"].get("reason")))
        for pr in j["pairs"]:
            if not pr["semantic_differences"] and j["runs"][pr["a"]]["backend"] != j["runs"][pr["b"]]["backend"] \
                    and pr["verdict"] != "unknown":
                alarm_checks += 1
                margins.append(((pr["max_rel_err"] or 0) / (pr["tol"] or 1), "pair", j["case"], f"{pr['a']} vs {pr['b']}"))
                if pr["verdict"] == "diverges":
                    alarms.append(("pair", j["case"], f"{pr['a']} vs {pr['b']}", pr["max_rel_err"]))
    # power: perturb side b of every equivalent pair in its own keys, train natively again
    items, data, todo = [], {}, []
    for ci, res in enumerate(results):
        raw_runs = read_toml(Path(res.case.path))["runs"]
        for pr in res.json["pairs"]:
            if pr["verdict"] != "equivalent":
                continue
            run_b = res.case.runs[pr["b"]]
            for knob, keys in KNOBS.items():
                for factor in CHANGES:
                    raw, count = scaled(raw_runs[pr["b"]], keys, factor)
                    if not count:
                        continue
                    new = load_run(pr["b"], raw, res.case.task, res.case.path, {})
                    if new.semantics.neutral() == run_b.semantics.neutral():
                        continue   # the knob does not reach the semantics (e.g. a coefficient of a frozen part)
                    ident = f"a{len(todo)}"
                    data[f"c{ci}"] = res.data
                    side_a = None
                    if pr.get("judged_in") == "float64":   # as check does: both sides again in float64
                        new = float64_run(new)[0]
                        side_a = (float64_run(res.case.runs[pr["a"]])[0], f"c{ci}-{pr['a']}-f64")
                        if side_a[1] not in {it.id for it in items}:
                            items.append(side_a[0].work_item(side_a[1], f"c{ci}"))
                    items.append(new.work_item(ident, f"c{ci}"))
                    todo.append((res, pr, knob, factor, new, ident, side_a))
    out = harness.run_items(items, data)
    power = {(knob, f): [0, 0] for knob in KNOBS for f in CHANGES}
    misses, below = [], []
    for res, pr, knob, factor, new, ident, side_a in todo:
        r = out[ident]
        if r.status != "ok" or (side_a is not None and out[side_a[1]].status != "ok"):
            side, bad = (pr["b"], r) if r.status != "ok" else (f"{pr['a']} in float64", out[side_a[1]])
            misses.append((knob, factor, res.json["case"], side, f"{bad.status}: {bad.reason}"))
            continue
        bs = res.case.task.batch_size
        run_a = res.case.runs[pr["a"]] if side_a is None else side_a[0]
        traj_a = res.trajectories[pr["a"]] if side_a is None else as_trajectory(out[side_a[1]].arrays)
        envs = [envelope.envelope(run_a.semantics.neutral(), res.data, bs, run_a.dtype),
                envelope.envelope(new.semantics.neutral(), res.data, bs, new.dtype)]
        verdict = compare.judge(traj_a, as_trajectory(r.arrays), envs, compare.pair_dtype((run_a.dtype, new.dtype)))
        # how far the change moves the run in exact-ish arithmetic: below the pair's own tolerance no judge
        # working in these dtypes could see it (float arithmetic cannot decide), so it is counted apart
        ref = reference.run_cached(run_b_sem := res.case.runs[pr["b"]].semantics.neutral(), res.data, bs, "float64")
        moved = reference.run_cached(new.semantics.neutral(), res.data, bs, "float64")
        effect = compare.max_rel(ref, moved, min(compare.stable_length(ref), compare.stable_length(moved)))
        del run_b_sem
        detected = verdict["verdict"] == "diverges"
        if not detected and verdict["tol"] is not None and effect <= verdict["tol"]:
            below.append((knob, factor, res.json["case"], f"{pr['a']} vs {pr['b']}",
                          f"effect {effect:.3g} <= tol {verdict['tol']:.3g}"))
            continue
        cell = power[(knob, factor)]
        cell[1] += 1
        if detected:
            cell[0] += 1
        else:
            misses.append((knob, factor, res.json["case"], f"{pr['a']} vs {pr['b']}",
                           f"{verdict['verdict']}: max rel err {verdict['max_rel_err']:.3g}, tol {verdict['tol']}, "
                           f"effect in float64 {effect:.3g}"))
    seconds = time.perf_counter() - start
    print(f"verdict audit over {len(results)} cases ({seconds:.0f} s)")
    print(f"false alarms: {len(alarms)} of {alarm_checks} checks "
          f"({100 * len(alarms) / max(1, alarm_checks):.1f} %; goal 0)")
    for a in alarms:
        print("  ", *a)
    print("closest to an alarm (max rel err / tolerance):")
    for m in sorted(margins, reverse=True)[:5]:
        print(f"   {m[0]:.3f}", *m[1:])
    for factor in CHANGES:
        hit = sum(power[(k, factor)][0] for k in KNOBS)
        tot = sum(power[(k, factor)][1] for k in KNOBS)
        per = ", ".join(f"{k} {power[(k, factor)][0]}/{power[(k, factor)][1]}" for k in KNOBS)
        print(f"power at {100 * (factor - 1):.1f} %: {hit}/{tot} = {100 * hit / max(1, tot):.1f} % ({per})")
    print("misses:" if misses else "misses: none")
    for m in misses:
        print("  ", *m)
    print(f"changes below the pair's own resolution (float arithmetic cannot decide; not counted): {len(below)}")
    for m in below:
        print("  ", *m)
    if args.json:
        Path(args.json).write_text(json.dumps({"alarms": alarms, "alarm_checks": alarm_checks, "margins": sorted(margins, reverse=True)[:10],
                                               "power": {f"{k}@{f}": v for (k, f), v in power.items()},
                                               "misses": misses, "below_resolution": below, "seconds": seconds}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
