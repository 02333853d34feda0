"""The catalogue on a 2-hidden-layer MLP vs the same catalogue on the linear model (issue 19, goal 5).

Goal: a 2-hidden-layer MLP on each case's own task runs the catalogue within 1.5 x the time of the same cases on
the linear model, per step (both sides train the same steps, so the ratio of wall times is the ratio per step).
Every case of comparisons/ is written again with `model = { hidden = [32, 16], activation = "tanh" }` in its
[task]; a case that cannot be a network as written (a mask naming the linear model's `weight`, a backend that
trains the linear model only) is left out of both sides and listed with the reason. Both sides run in this
process through check_cases (the same workers, judge and reports as `wdparity check`), linear first, then the
network, then linear again (the baseline is the mean of the two linear runs, measured in the same run).

    python benchmarks/network_walltime.py [--hidden 32 16] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def as_network(text: str, hidden: list[int]) -> str:
    model = f'model = {{ hidden = [{", ".join(map(str, hidden))}], activation = "tanh" }}'
    if re.search(r"^\[task\]\s*$", text, flags=re.M):
        return re.sub(r"^\[task\]\s*$", f"[task]\n{model}", text, count=1, flags=re.M)
    return re.sub(r"^\[runs\.", f"[task]\n{model}\n\n[runs.", text, count=1, flags=re.M)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 16])
    parser.add_argument("--only", nargs="*", default=None, help="case file stems")
    args = parser.parse_args()
    from wdparity.judge.check import check_cases
    from wdparity.run.cases import load_case
    from wdparity.spec.errors import InputError

    files = sorted((ROOT / "comparisons").glob("*.toml"))
    if args.only:
        files = [f for f in files if f.stem in args.only]
    tmp = Path(tempfile.mkdtemp(prefix="wdparity-net-bench-"))
    linear, network, left_out = [], [], {}
    import tomllib

    for f in files:
        if tomllib.loads(f.read_text()).get("task", {}).get("model"):
            left_out[f.stem] = "already a network case"
            continue
        net = tmp / f.name
        net.write_text(as_network(f.read_text(), args.hidden))
        try:
            load_case(net)
        except InputError as exc:
            left_out[f.stem] = str(exc).split(": ", 1)[-1][:140]
            continue
        linear.append(str(f))
        network.append(str(net))
    if not linear:
        print("no case of comparisons/ can be a network as written")
        return 1

    def timed(paths):
        start = time.perf_counter()
        results = check_cases(paths)
        seconds = time.perf_counter() - start
        holds = sum(1 for r in results if r.json["claim"]["holds"])
        steps = sum(r.case.task.steps * len(r.case.runs) for r in results)
        return seconds, holds, steps

    lin1 = timed(linear)
    net = timed(network)
    lin2 = timed(linear)
    base = (lin1[0] + lin2[0]) / 2
    print(f"cases: {len(linear)} of {len(files)} (left out: {len(left_out)})")
    print(f"native + reference steps per side: {lin1[2]}")
    print(f"linear: {lin1[0]:.1f} s and {lin2[0]:.1f} s (claims holding {lin1[1]}, {lin2[1]})")
    print(f"network hidden={args.hidden}: {net[0]:.1f} s (claims holding {net[1]}: the claims are about the linear "
          "model; on a network they are measured, not expected)")
    print(f"ratio network / linear, per step: {net[0] / base:.2f} (goal <= 1.5)")
    for stem, why in sorted(left_out.items()):
        print(f"  left out {stem}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
