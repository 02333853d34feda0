"""Scale: 100 000 inputs, 1 000 steps, every framework; peak RSS per worker and the recording mode used.

Performance goal 3: peak RSS <= 3 GB per worker at num_inputs = 100 000 and 1 000 steps. Full
recording would keep 1 001 x 100 000 weights per run (800 MB in float64, in the worker, in the
.npz and again in the judge); "auto" switches to checkpoints (recording.py): per-step bias, ||w||
and digest, w every k steps, and the first divergence localized exactly by replaying the window.
The script runs the same case in both modes (the baseline is `record = "full"`, measured in the
same run) and prints wall time, every worker's peak RSS, the judging process's peak RSS, and
whether the verdicts and first divergent steps agree.

    python benchmarks/scale_recording.py [--modes auto full] [--inputs 100000] [--hidden 64 16]

`--hidden` trains the same case on a multi-layer perceptron (`[task] model`, issue 19): e.g. --inputs 1530
--hidden 64 16 has 99 041 parameters, recorded per tensor name in either mode.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASE = """
title = "scale: {inputs} inputs, 1000 steps, recorded {record}"
claim = "diverges"
causes = ["coefficient"]
[task]
num_inputs = {inputs}
n_train = 100
n_test = 100
batch_size = 1
epochs = 10
dtype = "float32"
record = "{record}"
{model}
[runs.reference]          # the coupled reading, in float64
backend = "numpy"
dtype = "float64"
optimizer = "sgd"
lr = 0.000005
decay = [{{ coupling = "gradient", coefficient = 0.5 }}]
[runs.doubled]            # the same rule at twice the coefficient: diverges, cause "coefficient"
backend = "numpy"
dtype = "float64"
optimizer = "sgd"
lr = 0.000005
decay = [{{ coupling = "gradient", coefficient = 1.0 }}]
[runs.torch]              # torch SGD(weight_decay): the same coupled reading
backend = "torch"
optimizer = "SGD"
lr = 0.000005
weight_decay = 0.5
[runs.optax]              # add_decayed_weights before sgd: coupled
backend = "optax"
chain = [{{ transform = "add_decayed_weights", weight_decay = 0.5 }},
         {{ transform = "scale_by_learning_rate", learning_rate = 0.000005 }}]
[runs.mxnet]              # Gluon sgd wd: coupled, bias too
backend = "mxnet"
optimizer = "sgd"
learning_rate = 0.000005
wd = 0.5
[runs.keras]              # Keras SGD(weight_decay): decoupled and lr-scaled, the same as coupled without momentum
backend = "keras"
optimizer = "SGD"
learning_rate = 0.000005
weight_decay = 0.5
"""
# Judge in-process so this process's own peak RSS is the judge's (workers are children).
JUDGE = """
import json, resource, sys, time
from wdparity.judge.check import check_cases
start = time.perf_counter()
res = check_cases([sys.argv[1]])[0]
doc = res.json
doc["_wall"] = time.perf_counter() - start
doc["_judge_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(doc, default=str))
"""


def measure(record: str, inputs: int, tmp: Path, hidden=None) -> dict:
    path = tmp / f"scale_{record}.toml"
    model = f"model = {{ hidden = [{', '.join(map(str, hidden))}] }}" if hidden else ""
    path.write_text(CASE.format(inputs=inputs, record=record, model=model))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", JUDGE, str(path)], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{record}: wdparity failed: {proc.stderr[-2000:]}")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    doc["_total"] = wall
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["auto", "full"], choices=["auto", "full", "checkpoints"])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--hidden", type=int, nargs="*", default=None, help="hidden layer widths: an MLP")
    args = ap.parse_args()
    docs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            docs[mode] = measure(mode, args.inputs, Path(tmp), args.hidden)
    for mode, doc in docs.items():
        print(f"\nrecord = {mode!r}: recording {doc['recording']}")
        print(f"  wall {doc['_total']:.1f} s (check_cases {doc['_wall']:.1f} s), judging process peak RSS "
              f"{doc['_judge_rss_mb']:.0f} MB")
        for name, run in doc["runs"].items():
            print(f"  {name:10s} {run['status']:8s} {run['seconds']:7.1f} s  worker peak RSS "
                  f"{run.get('peak_rss_mb') or 0:7.0f} MB  (goal <= 3072)  fidelity {run['fidelity']}")
        for pair in doc["pairs"]:
            print(f"  {pair['a']:>10s} vs {pair['b']:10s} {pair['verdict']:11s} first step "
                  f"{pair['first_divergent_step']}  causes {pair['causes']}  localized {pair.get('localized')}")
        print(f"  claim holds: {doc['claim']['holds']}  {doc['claim'].get('reason') or ''}")
    if len(docs) > 1:
        a, b = list(docs.values())[:2]
        same = [(p["a"], p["b"], p["verdict"], p["first_divergent_step"], p["causes"]) for p in a["pairs"]] == \
               [(p["a"], p["b"], p["verdict"], p["first_divergent_step"], p["causes"]) for p in b["pairs"]]
        print(f"\nverdicts, first divergent steps and causes identical across modes: {same}")


if __name__ == "__main__":
    main()
