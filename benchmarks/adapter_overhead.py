"""Adapter loop overhead: each adapter's train() against a hand-written native loop (issue: performance goal 2).

Why: an adapter exists to run what a user runs (the real optimizer objects), and it records the
parameters after every step; the goal is that this costs at most 1.2x an idiomatic loop a user would
write in the same framework, so that the tool's time goes into the frameworks and not into its glue.

For each setting the script times, in a fresh subprocess with the harness's single-threaded WORKER_ENV
(plus the backend's own worker_env, e.g. KERAS_BACKEND; MXNet under its own venv's interpreter):
  adapter   backend.train(job, data), the job built by Run.work_item from a case file, exactly as
            wdparity.run.worker calls it (job through JSON, data through .npz);
  idiomatic the same optimizer (real framework objects), same hyperparameters, same float32, same batches
            (wdparity.engine.data.batches), written the way the framework's docs write a loop: torch eager
            zero_grad/backward/step; Keras-on-TF a @tf.function step with GradientTape + apply_gradients;
            Keras-on-JAX the stateless API under jax.jit; optax a @jax.jit step; MXNet Gluon Trainer with
            autograd.record. The baseline RECORDS the weights after every step into a preallocated numpy
            array (the fair comparison, "idiom+rec"); the extra column "idiom" records only the end.
Timing: each timed repetition builds its model, optimizer and compiled step afresh, so trace/compile is
included in both sides (a worker run pays it); process-wide one-time initialisation is excluded by one
untimed 1-epoch warm-up of every variant. Median of --repeat repetitions, variants interleaved.
"cpu ratio" is the same ratio in process CPU time (less sensitive to other load on a shared machine).
"max rel diff" compares the adapter's final weights with the idiomatic loop's: max|a - b| / max|b|.
--backends times another copy of the adapters (e.g. `git archive REV backends | tar -x -C /tmp/old`)
under the same conditions, for before/after figures.

Task: num_inputs = 1000, n_train = 4096, batch_size = 32, epochs = 16 -> 2048 steps (128 per epoch; n_train is
kept at the goal's 4096, so 2048 rather than exactly 2000 steps). Batches are cut on the host in every idiomatic
loop (numpy rows or torch tensor indexing), as a data loader yields them; torch's loop runs with torch's default
use_deterministic_algorithms(False).

    python benchmarks/adapter_overhead.py [--repeat 3] [--only torch,keras-tf] [--backends DIR]
    python benchmarks/adapter_overhead.py --profile keras-jax-sgd     # cProfile of one adapter run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL = 1.2
TASK = {"num_inputs": 1000, "n_train": 4096, "n_test": 100, "batch_size": 32, "epochs": 16, "dtype": "float32"}
SGD = {"lr": 0.01, "momentum": 0.9, "wd": 1e-3}
ADAMW = {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-7, "wd": 0.01}
# setting -> (backend, run keys in the backend's vocabulary, idiomatic loop)
SETTINGS = {
    "torch-sgd": ("torch", {"optimizer": "SGD", "lr": SGD["lr"], "momentum": SGD["momentum"],
                            "weight_decay": SGD["wd"]}, "torch"),
    "torch-adamw": ("torch", {"optimizer": "AdamW", "lr": ADAMW["lr"], "betas": [ADAMW["b1"], ADAMW["b2"]],
                              "eps": ADAMW["eps"], "weight_decay": ADAMW["wd"]}, "torch"),
    **{f"keras-{short}-{name.lower()}": ("keras", {"keras_backend": kb, **run}, f"keras_{short}")
       for kb, short in (("tensorflow", "tf"), ("jax", "jax"))
       for name, run in (("SGD", {"optimizer": "SGD", "learning_rate": SGD["lr"], "momentum": SGD["momentum"],
                                  "weight_decay": SGD["wd"]}),
                         ("AdamW", {"optimizer": "AdamW", "learning_rate": ADAMW["lr"], "beta_1": ADAMW["b1"],
                                    "beta_2": ADAMW["b2"], "epsilon": ADAMW["eps"], "weight_decay": ADAMW["wd"]}))},
    "optax-sgd-chain": ("optax", {"chain": [{"transform": "add_decayed_weights", "weight_decay": SGD["wd"]},
                                            {"transform": "trace", "decay": SGD["momentum"]},
                                            {"transform": "scale_by_learning_rate", "learning_rate": SGD["lr"]}]},
                        "optax"),
    "optax-adamw": ("optax", {"optimizer": "adamw", "learning_rate": ADAMW["lr"], "b1": ADAMW["b1"],
                              "b2": ADAMW["b2"], "eps": ADAMW["eps"], "weight_decay": ADAMW["wd"]}, "optax"),
    "mxnet-sgd": ("mxnet", {"optimizer": "sgd", "learning_rate": SGD["lr"], "momentum": SGD["momentum"],
                            "wd": SGD["wd"]}, "mxnet"),
}


# ------------------------------------------------------------------ idiomatic loops (run in the child)
def _rows_and_store(data, record, d):
    from wdparity.engine.data import batches

    rows = batches(data["order"], 32)
    n = len(rows) + 1 if record else 2
    return rows, np.empty((n, d), np.float32), np.empty(n, np.float32)


def idiom_torch(run, data, record):
    import torch

    torch.use_deterministic_algorithms(False)    # torch's default (the adapter's call sets it process-wide)
    d = data["X_train"].shape[1]
    X = torch.as_tensor(data["X_train"], dtype=torch.float32)
    y = torch.as_tensor(data["y_train"], dtype=torch.float32).reshape(-1, 1)
    net = torch.nn.Linear(d, 1)
    with torch.no_grad():
        net.weight.copy_(torch.as_tensor(data["w0"]).reshape(1, d))
        net.bias.copy_(torch.as_tensor(data["b0"]).reshape(1))
    if run["optimizer"] == "SGD":
        opt = torch.optim.SGD(net.parameters(), lr=run["lr"], momentum=run["momentum"], weight_decay=run["weight_decay"])
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=run["lr"], betas=tuple(run["betas"]), eps=run["eps"],
                                weight_decay=run["weight_decay"])
    mse = torch.nn.MSELoss()
    rows, W, B = _rows_and_store(data, record, d)
    W[0], B[0] = net.weight.detach().numpy().ravel(), net.bias.item()
    for t, idx in enumerate(rows):
        i = torch.as_tensor(idx)
        opt.zero_grad()
        loss = mse(net(X[i]), y[i]) / 2
        loss.backward()
        opt.step()
        if record:
            W[t + 1], B[t + 1] = net.weight.detach().numpy().ravel(), net.bias.item()
    W[-1], B[-1] = net.weight.detach().numpy().ravel(), net.bias.item()
    return {"weight": W, "bias": B}


def _keras_model_and_opt(run, data):
    import keras

    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")
    d = data["X_train"].shape[1]
    dense = keras.layers.Dense(1)
    model = keras.Sequential([keras.Input(shape=(d,)), dense])
    dense.set_weights([data["w0"].astype(np.float32).reshape(d, 1), np.asarray(data["b0"], np.float32).reshape(1)])
    keys = ("learning_rate", "momentum", "weight_decay", "beta_1", "beta_2", "epsilon")
    opt = getattr(keras.optimizers, run["optimizer"])(**{k: run[k] for k in keys if run.get(k) is not None})
    return keras, model, dense, opt, d


def idiom_keras_tf(run, data, record):
    import tensorflow as tf

    keras, model, dense, opt, d = _keras_model_and_opt(run, data)
    mse = keras.losses.MeanSquaredError()
    X, y = data["X_train"].astype(np.float32), data["y_train"].astype(np.float32).reshape(-1, 1)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = 0.5 * mse(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))

    rows, W, B = _rows_and_store(data, record, d)
    W[0], B[0] = dense.kernel.numpy().ravel(), dense.bias.numpy()[0]
    for t, idx in enumerate(rows):
        step(X[idx], y[idx])
        if record:
            W[t + 1], B[t + 1] = dense.kernel.numpy().ravel(), dense.bias.numpy()[0]
    W[-1], B[-1] = dense.kernel.numpy().ravel(), dense.bias.numpy()[0]
    return {"weight": W, "bias": B}


def idiom_keras_jax(run, data, record):
    import jax

    keras, model, dense, opt, d = _keras_model_and_opt(run, data)
    mse = keras.losses.MeanSquaredError()
    opt.build(model.trainable_variables)
    X, y = data["X_train"].astype(np.float32), data["y_train"].astype(np.float32).reshape(-1, 1)

    def loss_of(tv, ntv, x, y):
        pred, ntv = model.stateless_call(tv, ntv, x, training=True)
        return 0.5 * mse(y, pred), ntv

    grad_fn = jax.value_and_grad(loss_of, has_aux=True)

    @jax.jit
    def step(state, x, y):
        tv, ntv, ov = state
        (_, ntv), grads = grad_fn(tv, ntv, x, y)
        tv, ov = opt.stateless_apply(ov, grads, tv)
        return tv, ntv, ov

    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in opt.variables])
    rows, W, B = _rows_and_store(data, record, d)
    W[0], B[0] = np.asarray(state[0][0]).ravel(), np.asarray(state[0][1])[0]
    for t, idx in enumerate(rows):
        state = step(state, X[idx], y[idx])
        if record:
            W[t + 1], B[t + 1] = np.asarray(state[0][0]).ravel(), np.asarray(state[0][1])[0]
    W[-1], B[-1] = np.asarray(state[0][0]).ravel(), np.asarray(state[0][1])[0]
    return {"weight": W, "bias": B}


def idiom_optax(run, data, record):
    import jax
    import jax.numpy as jnp
    import optax

    if run.get("chain"):
        c = {t["transform"]: t for t in run["chain"]}
        tx = optax.chain(optax.add_decayed_weights(c["add_decayed_weights"]["weight_decay"]),
                         optax.sgd(c["scale_by_learning_rate"]["learning_rate"], momentum=c["trace"]["decay"]))
    else:
        tx = optax.adamw(run["learning_rate"], b1=run["b1"], b2=run["b2"], eps=run["eps"],
                         weight_decay=run["weight_decay"])
    # batches cut on the host, as a numpy data loader yields them (eager jnp gathers cost ~1 ms each on CPU)
    X, y = data["X_train"].astype(np.float32), data["y_train"].astype(np.float32)
    params = {"weight": jnp.asarray(data["w0"], jnp.float32), "bias": jnp.asarray(data["b0"], jnp.float32)}

    def loss_fn(p, x, y):
        return jnp.mean((x @ p["weight"] + p["bias"] - y) ** 2) / 2

    @jax.jit
    def step(p, s, x, y):
        updates, s = tx.update(jax.grad(loss_fn)(p, x, y), s, p)
        return optax.apply_updates(p, updates), s

    state = tx.init(params)
    rows, W, B = _rows_and_store(data, record, X.shape[1])
    W[0], B[0] = np.asarray(params["weight"]), np.asarray(params["bias"])
    for t, idx in enumerate(rows):
        params, state = step(params, state, X[idx], y[idx])
        if record:
            W[t + 1], B[t + 1] = np.asarray(params["weight"]), np.asarray(params["bias"])
    W[-1], B[-1] = np.asarray(params["weight"]), np.asarray(params["bias"])
    return {"weight": W, "bias": B}


def idiom_mxnet(run, data, record):
    import mxnet as mx
    from mxnet import autograd, gluon, nd

    d = data["X_train"].shape[1]
    net = gluon.nn.Dense(1, in_units=d)
    net.initialize(ctx=mx.cpu())
    net.weight.set_data(nd.array(data["w0"].reshape(1, d)))
    net.bias.set_data(nd.array(np.asarray(data["b0"]).reshape(1)))
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": run["learning_rate"],
                                                          "momentum": run["momentum"], "wd": run["wd"]})
    loss_fn = gluon.loss.L2Loss()
    X, y = data["X_train"].astype(np.float32), data["y_train"].astype(np.float32)
    rows, W, B = _rows_and_store(data, record, d)
    W[0], B[0] = net.weight.data().asnumpy().ravel(), net.bias.data().asnumpy()[0]
    for t, idx in enumerate(rows):
        xb, yb = nd.array(X[idx]), nd.array(y[idx])
        with autograd.record():
            loss = loss_fn(net(xb), yb)
        loss.backward()
        trainer.step(len(idx))
        if record:
            W[t + 1], B[t + 1] = net.weight.data().asnumpy().ravel(), net.bias.data().asnumpy()[0]
    W[-1], B[-1] = net.weight.data().asnumpy().ravel(), net.bias.data().asnumpy()[0]
    return {"weight": W, "bias": B}


# ------------------------------------------------------------------ child: one setting, one process
def child(spec_path: str, repeat: int, profile: bool) -> None:
    import importlib

    spec = json.loads(Path(spec_path).read_text())
    with np.load(spec["data"]) as npz:
        data = {k: npz[k] for k in npz.files}
    warm = dict(data, order=data["order"][:1])
    module, _, attr = spec["target"].partition(":")
    backend = getattr(importlib.import_module(module), attr or "backend")
    idiom = globals()["idiom_" + spec["idiom"]]
    job = spec["job"]
    variants = {"adapter": lambda d: backend.train(job, d),
                "idiom+rec": lambda d: idiom(job["run"], d, True),
                "idiom": lambda d: idiom(job["run"], d, False)}
    if profile:
        import cProfile
        import pstats

        backend.train(job, warm)
        prof = cProfile.Profile()
        prof.runcall(backend.train, job, data)
        pstats.Stats(prof, stream=sys.stderr).sort_stats(os.environ.get("ADAPTER_OVERHEAD_SORT", "tottime")).print_stats(30)
        return
    finals = {}
    for name, fn in variants.items():    # process-wide one-time initialisation, not timed
        fn(warm)
    times = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeat):
        for name in names[r % 3:] + names[:r % 3]:     # rotate the order between repetitions
            start, start_cpu = time.perf_counter(), time.process_time()
            out = variants[name](data)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            finals[name] = np.append(out["weight"][-1], out["bias"][-1]).astype(np.float64)
    ref, got = finals["idiom+rec"], finals["adapter"]
    print(json.dumps({"times": times, "cpu": cpu, "rel_diff": float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))}))


# ------------------------------------------------------------------ parent: build jobs, run children, table
def toml(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(toml(x) for x in v) + "]"
    return json.dumps(v)      # strings, numbers and booleans are written alike in JSON and TOML


def prepare(tmp: Path, name: str, backends: Path) -> tuple[list[str], dict, dict]:
    from wdparity.engine.data import make_data
    from wdparity.run.cases import load_case
    from wdparity.run.harness import WORKER_ENV

    backend, run, idiom = SETTINGS[name]
    lines = ["title = \"adapter overhead\"", "[task]", *(f"{k} = {toml(v)}" for k, v in TASK.items())]
    for r in ("a", "b"):
        lines += [f"[runs.{r}]", f"backend = \"{backend}\"", *(f"{k} = {toml(v)}" for k, v in run.items())]
    (tmp / f"{name}.toml").write_text("\n".join(lines) + "\n")
    case = load_case(tmp / f"{name}.toml")
    item = case.runs["a"].work_item(name, "data.npz")
    data_path = tmp / "data.npz"
    if not data_path.exists():
        np.savez(data_path, **make_data(case.runs["a"].task.model_dump()))
    spec = {"job": json.loads(json.dumps(item.job)), "target": item.target, "data": str(data_path), "idiom": idiom}
    (tmp / f"{name}.json").write_text(json.dumps(spec))
    env = {**os.environ, **WORKER_ENV, **case.runs["a"].env,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(backends)])}
    python = case.runs["a"].python or sys.executable
    return [python, str(Path(__file__).resolve()), "--child", str(tmp / f"{name}.json")], env, spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated prefixes of setting names")
    ap.add_argument("--profile", default="", help="cProfile the adapter of this setting (one run, after a warm-up)")
    ap.add_argument("--backends", default=str(ROOT / "backends"),
                    help="root of the wdparity_backends package to time (e.g. an exported older version)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.repeat, bool(os.environ.get("ADAPTER_OVERHEAD_PROFILE")))
    names = [n for n in SETTINGS if not args.only or any(n.startswith(p) for p in args.only.split(","))]
    if args.profile:
        names = [args.profile]
    print(f"task {TASK}: {TASK['epochs'] * TASK['n_train'] // TASK['batch_size']} steps; median of {args.repeat}; "
          f"ratio = adapter / idiomatic loop WITH per-step recording (goal <= {GOAL})")
    print(f"{'setting':18s} {'adapter s':>9s} {'idiom+rec s':>11s} {'ratio':>6s} {'goal':>5s} "
          f"{'idiom s':>8s} {'vs idiom':>8s} {'cpu ratio':>9s} {'max rel diff':>12s}")
    with tempfile.TemporaryDirectory() as td:
        for name in names:
            cmd, env, spec = prepare(Path(td), name, Path(args.backends).resolve())
            if not Path(cmd[0]).exists() and cmd[0] != sys.executable:
                print(f"{name:18s} skipped: interpreter {cmd[0]} does not exist (python -m wdparity_backends.mxnet_setup)")
                continue
            if args.profile:
                env["ADAPTER_OVERHEAD_PROFILE"] = "1"
                subprocess.run(cmd, env=env, check=True)
                return
            proc = subprocess.run(cmd + ["--repeat", str(args.repeat)], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{name:18s} failed:\n{proc.stderr[-3000:]}")
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            a, i, n = (statistics.median(res["times"][k]) for k in ("adapter", "idiom+rec", "idiom"))
            ca, ci = (statistics.median(res["cpu"][k]) for k in ("adapter", "idiom+rec"))
            print(f"{name:18s} {a:9.2f} {i:11.2f} {a / i:6.2f} {'met' if a / i <= GOAL else 'NOT':>5s} "
                  f"{n:8.2f} {a / n:8.2f} {ca / ci:9.2f} {res['rel_diff']:12.2e}", flush=True)


if __name__ == "__main__":
    main()
