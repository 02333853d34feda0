"""A 64-config lambda x lr grid, vectorized against 64 serial runs, per backend (issue: performance goal 4).

Goal: `wdparity sweep` trains the grid >= 10x faster than 64 serial runs, with identical results.

Both sides go through the same harness and the same worker process per backend:
- vectorized: what `wdparity sweep` sends, one worker item {"batch": [64 jobs]} (Backend.train_batch);
- serial: the same 64 jobs as 64 items, trained one at a time by the same worker (`wdparity sweep
  --serial`). That is the fair baseline: same data, same adapter code, same process start and
  framework import, only the batching differs.
"train s" is the training time the worker reports for the grid's items; "wall s" is the whole harness
call, including process start and framework import. Each worker first trains one warm-up item (the
grid's first config alone, excluded from "train s", in both modes): it absorbs the lazy imports a
framework does on first use (torch.use_deterministic_algorithms imports torch._dynamo: ~3 s), which
are import cost, not training. Compilation is not warmed: serially every optax run compiles its own.
Differences: max |vectorized - serial| over the 64 configs, final weights and whole trajectories
(also relative to max |w|), NaN rows (stopped unstable runs) compared as equal.

    python benchmarks/sweep_vectorized.py [--grid sweeps/grids/lambda_lr_grid.toml] [--backends numpy,torch,optax]
                                          [--repeat 1] [--profile torch] [--probe]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "backends"))

from wdparity.engine.data import losses, make_data
from wdparity.run import harness, registry
from wdparity.tools.grid import load_grid, plan_items

PROBE = r"""
import json, torch
out = {}
def attempt(label, make):
    try:
        make(); out[label] = "ok"
    except Exception as exc:
        out[label] = f"{type(exc).__name__}: {exc}"
rows = lambda: torch.tensor([[0.0], [1.0], [2.0], [3.0]])
p = torch.nn.Parameter(torch.ones(4, 3))
p.grad = torch.ones(4, 3)
attempt("SGD(weight_decay=(G,1) tensor)", lambda: torch.optim.SGD([p], lr=0.1, weight_decay=rows()))
attempt("param group weight_decay=(G,1) tensor, step()",
        lambda: torch.optim.SGD([{"params": [p], "weight_decay": rows()}], lr=0.1).step())
attempt("SGD(lr=(G,1) tensor)", lambda: torch.optim.SGD([p], lr=rows() / 10))
attempt("param group lr=(G,1) tensor, step()", lambda: torch.optim.SGD([{"params": [p], "lr": rows() / 10}]).step())
print(json.dumps({"torch": torch.__version__, **out}))
"""


def run(items, data, timeout) -> tuple[float, float, dict]:
    warmup = dataclasses.replace(items[0], id="warmup", job=items[0].job["batch"][0] if "batch" in items[0].job
                                 else items[0].job)
    start = time.perf_counter()
    results = harness.run_items([warmup, *items], {"d": data}, timeout=timeout)
    wall = time.perf_counter() - start
    bad = {k: r.reason for k, r in results.items() if r.status != "ok"}
    if bad:
        raise SystemExit(f"runs did not complete: {bad}")
    return wall, sum(r.seconds for k, r in results.items() if k != "warmup"), results


def trajectories(results: dict, carries: dict) -> dict[int, dict]:
    out = {}
    for ident, (_, ks) in carries.items():
        arrays = results[ident].arrays
        for i, k in enumerate(ks):
            out[k] = arrays if len(ks) == 1 else {key.split(".", 1)[1]: v for key, v in arrays.items()
                                                  if key.split(".", 1)[0] == str(i)}
    return out


def differences(a: dict[int, dict], b: dict[int, dict], data: dict, loss: str) -> dict[str, float]:
    """max |a - b| over configs: final weights, whole trajectories (w and bias), relative to max |w|;
    max relative difference of the final test loss."""
    final, traj, scale, exact, test = 0.0, 0.0, 0.0, 0, 0.0
    for k in a:
        la, lb = (losses(data, t["weight"][-1:], t["bias"][-1:], loss)[1][0] for t in (a[k], b[k]))
        if np.isfinite(lb):
            test = max(test, abs(la - lb) / abs(lb))
        for name in ("weight", "bias"):
            x, y = np.asarray(a[k][name], np.float64), np.asarray(b[k][name], np.float64)
            if x.shape != y.shape or not (np.isnan(x) == np.isnan(y)).all():
                return {"final": float("inf"), "trajectory": float("inf"), "relative": float("inf"), "exact": 0,
                        "test_loss": float("inf")}
            with np.errstate(invalid="ignore"):
                d = np.where(np.isnan(x), 0.0, np.abs(x - y))
            traj = max(traj, float(d.max()))
            final = max(final, float(d[-1].max()))
            scale = max(scale, float(np.nanmax(np.abs(x))))
        exact += all(np.array_equal(a[k][n], b[k][n], equal_nan=True) for n in ("weight", "bias"))
    return {"final": final, "trajectory": traj, "relative": traj / scale if scale else 0.0, "exact": exact,
            "test_loss": test}


def profile(grid, data, backend: str) -> None:
    """cProfile of the vectorized training of `backend`'s convention, in this process."""
    for name, runs in grid.runs.items():
        if runs[0].backend != backend:
            continue
        jobs = [run.work_item("p", "d").job for run in runs]
        adapter = registry.get(backend)
        adapter.train_batch(jobs, data)   # warm: imports and first compilation out of the profile
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        adapter.train_batch(jobs, data)
        prof.disable()
        print(f"\nprofile of {name} vectorized ({len(jobs)} configs, {time.perf_counter() - start:.2f} s "
              "under the profiler), top 12 by own time:")
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default=str(ROOT / "sweeps" / "grids" / "lambda_lr_grid.toml"))
    ap.add_argument("--backends", default="numpy,torch,optax")
    ap.add_argument("--repeat", type=int, default=1, help="timings: the minimum over this many runs of each side")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--profile", default="", help="also profile this backend's vectorized training in-process")
    ap.add_argument("--probe", action="store_true", help="probe whether torch takes per-row coefficients")
    args = ap.parse_args()
    grid = load_grid(args.grid)
    data = make_data(grid.spec.task.model_dump())
    wanted = args.backends.split(",")
    rows = []
    for name, runs in grid.runs.items():
        if runs[0].backend not in wanted:
            continue
        sub = type(grid)(grid.path, grid.spec, grid.lambdas, grid.lrs, {name: runs})
        sides = {}
        for mode in ("vectorized", "serial"):
            items, modes, carries = plan_items(sub, data, serial=mode == "serial")
            best = None
            for _ in range(args.repeat):
                wall, train, results = run(items, data, args.timeout)
                best = (wall, train, results) if best is None or train < best[1] else best
            sides[mode] = (best[0], best[1], trajectories(best[2], carries), modes[name], len(items))
        diff = differences(sides["vectorized"][2], sides["serial"][2], data, grid.spec.task.loss)
        rows.append((name, runs[0].backend, len(runs), sides, diff))
        v, s = sides["vectorized"], sides["serial"]
        print(f"{name} ({runs[0].backend}, {len(runs)} configs, {runs[0].dtype}): vectorized [{v[3]}, {v[4]} item(s)] "
              f"train {v[1]:.2f} s wall {v[0]:.2f} s | serial [{s[4]} items] train {s[1]:.2f} s wall {s[0]:.2f} s | "
              f"speedup train {s[1] / v[1]:.1f}x wall {s[0] / v[0]:.1f}x | max|diff| final {diff['final']:.3g} "
              f"trajectory {diff['trajectory']:.3g} (relative {diff['relative']:.3g}), final test loss relative "
              f"{diff['test_loss']:.3g}, bit-identical configs {diff['exact']}/{len(runs)}", flush=True)
    print("\n| convention | backend | configs | vectorized train s | serial train s | speedup (train) | "
          "vectorized wall s | serial wall s | speedup (wall) | max abs diff, final w | max abs diff, trajectory | "
          "relative to max abs w | test loss, max rel diff | bit-identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, backend, n, sides, diff in rows:
        v, s = sides["vectorized"], sides["serial"]
        print(f"| {name} | {backend} | {n} | {v[1]:.2f} | {s[1]:.2f} | {s[1] / v[1]:.1f}x | {v[0]:.2f} | {s[0]:.2f} | "
              f"{s[0] / v[0]:.1f}x | {diff['final']:.2g} | {diff['trajectory']:.2g} | {diff['relative']:.2g} | "
              f"{diff['test_loss']:.2g} | {diff['exact']}/{n} |")
    if args.probe:
        proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
        print("\ntorch per-row coefficients on a (G, d) parameter:", proc.stdout.strip() or proc.stderr[-500:])
    if args.profile:
        profile(grid, data, args.profile)


if __name__ == "__main__":
    main()
