"""The catalogue on a 2-hidden-layer MLP vs the same catalogue on the linear model (issue 19, goal 5).

Goal: a 2-hidden-layer MLP on each case's own task runs the catalogue within 1.5 x the time of the same cases on
the linear model, per step (both sides train the same steps, so the ratio of wall times is the ratio per step).
Every case of comparisons/ is written again with `model = { hidden = [32, 16], activation = "tanh" }` in its
[task]; a case that cannot be a network as written (a mask naming the linear model's `weight`, a backend that
trains the linear model only) is left out of both sides and listed with the reason. Both sides run in this
process through check_cases (the same workers, judge and reports as `wdparity check`), linear first, then the
network, then linear again (the baseline is the mean of the two linear runs, measured in the same run).

It also prints the floor no judge can remove: the frameworks' own training per step, on each side, as the
workers timed it (each run's `seconds`: build, steps and reads in the framework's process), per backend, and
a plain PyTorch loop outside wdparity (AdamW, batch 1, the same two models), when torch is installed.

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


def plain_torch(hidden: list[int], inputs: int = 200, steps: int = 2000) -> tuple[float, float] | None:
    """Seconds per AdamW step of torch alone (no wdparity code) on the linear model and on the MLP; None
    without torch. One thread, best of three, so that the two models meet the same machine."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(1)
    X, y = torch.randn(inputs, inputs), torch.randn(inputs, 1)

    def per_step(model) -> float:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for s in range(steps):
                i = s % inputs
                opt.zero_grad()
                (0.5 * ((model(X[i:i + 1]) - y[i:i + 1]) ** 2).mean()).backward()
                opt.step()
            best = min(best, (time.perf_counter() - start) / steps)
        return best

    layers, width = [], inputs
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.Tanh()]
        width = h
    return per_step(torch.nn.Linear(inputs, 1)), per_step(torch.nn.Sequential(*layers, torch.nn.Linear(width, 1)))


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
        native = {}
        for r in results:
            for run in r.json["runs"].values():
                native[run["backend"]] = native.get(run["backend"], 0.0) + run.get("seconds", 0.0)
        return seconds, holds, steps, native

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
    lin_native = {k: (lin1[3].get(k, 0.0) + lin2[3].get(k, 0.0)) / 2 for k in net[3]}
    print(f"the frameworks' own training (the workers' per-run seconds): linear {sum(lin_native.values()):.1f} s, "
          f"network {sum(net[3].values()):.1f} s, ratio {sum(net[3].values()) / sum(lin_native.values()):.2f}")
    for backend in sorted(net[3]):
        if lin_native[backend] > 0:
            print(f"  {backend:9s} {lin_native[backend]:6.2f} s -> {net[3][backend]:6.2f} s  "
                  f"ratio {net[3][backend] / lin_native[backend]:.2f}")
    plain = plain_torch(args.hidden)
    if plain:
        print(f"plain PyTorch AdamW step, batch 1, outside wdparity: linear {plain[0] * 1e6:.0f} us, network "
              f"{plain[1] * 1e6:.0f} us, ratio {plain[1] / plain[0]:.2f}")
    for stem, why in sorted(left_out.items()):
        print(f"  left out {stem}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
