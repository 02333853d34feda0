"""Catalogue wall time against the import floor, measured in the same run (issue: performance goal 1).

The floor is the sum of bare `import` times of each framework in a fresh process (what any tool that
runs them natively must pay); the goal is `wdparity run` on the whole catalogue within 1.5x of it.
Prints both, their ratio, and where the time goes (per-backend worker time from report.json).

    python benchmarks/catalogue_walltime.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = {"numpy": "import numpy", "torch": "import torch", "tensorflow+keras": "import tensorflow, keras",
           "jax+optax": "import jax, optax"}


def timed(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)
    return time.perf_counter() - start


def import_floor(repeat: int) -> dict[str, float]:
    out = {name: statistics.median(timed([sys.executable, "-c", code]) for _ in range(repeat))
           for name, code in IMPORTS.items()}
    sys.path.insert(0, str(ROOT / "backends"))
    from wdparity_backends.mxnet_setup import default_venv, venv_python

    mx = venv_python(default_venv())
    if mx.exists():
        out["mxnet (own venv)"] = statistics.median(timed([str(mx), "-c", "import mxnet"]) for _ in range(repeat))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    floor = import_floor(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for label, extra in (("wdparity run (with plots)", []), ("wdparity run --no-plots", ["--no-plots"])):
            runs[label] = timed([sys.executable, "-m", "wdparity.cli", "run", "--out", tmp, *extra], cwd=ROOT)
        doc = json.loads((Path(tmp) / "report.json").read_text())
    total_floor = sum(floor.values())
    print("import floor (fresh process, median of", args.repeat, "):")
    for name, t in floor.items():
        print(f"  {name:22s} {t:7.2f} s")
    print(f"  {'sum':22s} {total_floor:7.2f} s")
    for label, t in runs.items():
        print(f"{label:28s} {t:7.2f} s   ratio to the floor {t / total_floor:5.2f}  (goal <= 1.50)")
    per_backend: dict[str, float] = {}
    n_runs = 0
    for case in doc["cases"]:
        for run in case["runs"].values():
            per_backend[run["backend"]] = per_backend.get(run["backend"], 0.0) + run["seconds"]
            n_runs += 1
    print(f"{len(doc['cases'])} cases, {n_runs} runs; training time inside the workers (sum of run seconds):")
    for name, t in sorted(per_backend.items(), key=lambda kv: -kv[1]):
        print(f"  {name:10s} {t:7.2f} s")


if __name__ == "__main__":
    main()
