"""The release matrix (optax at three releases, every other framework at its default) with the local executor,
with Ray on this machine, and on a simulated two-node cluster; then the same matrix projected onto N nodes.

    python benchmarks/ray_releases.py [--releases 0.2.6,0.2.7,0.2.8] [--json FILE]

Projection model (written here, checked against the two-node simulation): a worker is the unit Ray schedules, so
the matrix takes T(N, c) = F + LPT(w, N * c), where w are the per-worker seconds measured on a node (the Ray log),
LPT the longest-first makespan of w over N * c one-CPU slots (how the harness orders submission), and F what does
not parallelize over workers (starting Ray, judging, the rounds that follow a case's first results) calibrated as
F = T(1, 1) - LPT(w, 1) on a one-node, one-CPU cluster measured in the same run. The check: the two-node, one-CPU
cluster's measured time against T(2, 1). Every time is from this run; the reports of every mode are compared.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lpt(times: list[float], slots: int) -> float:
    """Longest-first makespan of `times` over `slots` equal slots."""
    heap = [0.0] * max(1, slots)
    for t in sorted(times, reverse=True):
        heapq.heappush(heap, heapq.heappop(heap) + t)
    return max(heap)


def matrix(versions: list[str], executor) -> tuple[float, dict, list[dict]]:
    """(seconds, the release report, the executor's per-worker log) of one run of the matrix."""
    from wdparity.cli import case_files
    from wdparity.run import executors
    from wdparity.tools import release_report, releases

    files = case_files([])
    start = time.monotonic()
    with executors.using(executor):
        plans = releases.plan({"optax": versions}, files, setup=False, log=lambda line: None)
        results = releases.run_matrix(plans, {}, 900.0, log=lambda line: None)
        doc = release_report.build(plans, results)
    return time.monotonic() - start, doc, list(executor.log)


def cluster(nodes: int):
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(nodes):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    return c


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--releases", default="0.2.6,0.2.7,0.2.8")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    versions = args.releases.split(",")
    from wdparity.run import executors
    from wdparity.run.ray_executor import RayExecutor

    modes = {}
    modes["local"] = matrix(versions, executors.Local())
    modes["ray, this machine (1 node, 2 CPUs)"] = matrix(versions, RayExecutor())
    for n in (1, 2):
        c = cluster(n)
        try:
            modes[f"ray cluster, {n} node(s) x 1 CPU"] = matrix(versions, RayExecutor(c.address))
        finally:
            c.shutdown()
    from wdparity.judge.check import without_timing

    base_seconds, base_doc, _ = modes["local"]
    same = {name: without_timing(doc) == without_timing(base_doc) for name, (_, doc, _) in modes.items()}
    print(f"matrix: optax {', '.join(versions)} (cases with an optax run; every other framework at its default)")
    print("| mode | seconds | ratio to local | workers | report identical to local |")
    print("|---|---|---|---|---|")
    for name, (seconds, _, log) in modes.items():
        print(f"| {name} | {seconds:.1f} | {seconds / base_seconds:.2f} | {len(log)} | {same[name]} |")
    one_name, two_name = "ray cluster, 1 node(s) x 1 CPU", "ray cluster, 2 node(s) x 1 CPU"
    t11, _, log11 = modes[one_name]
    w = [e["seconds"] for e in log11 if e["where"] != "lost"]
    fixed = t11 - lpt(w, 1)
    predicted2 = fixed + lpt(w, 2)
    measured2 = modes[two_name][0]
    print(f"\nmodel: F = {fixed:.1f} s, sum(w) = {sum(w):.1f} s over {len(w)} workers, longest worker {max(w):.1f} s")
    print(f"check: two nodes x 1 CPU predicted {predicted2:.1f} s, measured {measured2:.1f} s "
          f"({(predicted2 - measured2) / measured2:+.1%})")
    print("\n| nodes x 2 CPUs | projected seconds |\n|---|---|")
    projection = {}
    for n in (1, 2, 4, 8, 16, 64):
        projection[n] = fixed + lpt(w, 2 * n)
        print(f"| {n} | {projection[n]:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "versions": versions, "modes": {k: {"seconds": v[0], "workers": v[2]} for k, v in modes.items()},
            "identical": same, "fixed": fixed, "predicted_two_nodes": predicted2, "measured_two_nodes": measured2,
            "projection_nodes_x2cpu": projection}, indent=1))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
