"""Deterministic task data, made once by the core and handed bit-identically to every backend.

Features, labels, initial parameters and the batch order all come from one
`numpy.random.Generator` seeded by the task, in a fixed order of draws, in float64. A backend
casts to its run dtype itself (IEEE rounding makes that cast identical everywhere).
"""

from __future__ import annotations

import numpy as np

from wdparity.engine import network
from wdparity.engine.recording import plan, recorded_steps

ARRAYS = ("X_train", "y_train", "X_test", "y_test", "w0", "b0", "order")


def make_data(task: dict) -> dict[str, np.ndarray]:
    """The task's arrays. `order[e]` is the permutation of training rows used in epoch e."""
    rng = np.random.default_rng(int(task["seed"]))
    d, n_train, n_test = int(task["num_inputs"]), int(task["n_train"]), int(task["n_test"])
    true_w, true_b, noise = float(task["true_w"]), float(task["true_b"]), float(task["noise"])

    def synthetic(n: int) -> tuple[np.ndarray, np.ndarray]:
        X = rng.standard_normal((n, d))
        y = X @ np.full(d, true_w) + true_b + noise * rng.standard_normal(n)
        return X, y

    X_train, y_train = synthetic(n_train)
    X_test, y_test = synthetic(n_test)
    init = task.get("init", "normal")
    w0 = rng.standard_normal(d) if init in ("normal", "normal_all") else np.zeros(d)
    b0 = np.array(rng.standard_normal() if init == "normal_all" else 0.0)
    if task.get("shuffle", True):
        order = np.stack([rng.permutation(n_train) for _ in range(int(task["epochs"]))])
    else:
        order = np.tile(np.arange(n_train), (int(task["epochs"]), 1))
    out = {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test,
           "w0": w0, "b0": b0, "order": order.astype(np.int64)}
    model = task.get("model") or {}
    if model.get("hidden"):   # a network: its constants and initial tensors, drawn after everything above
        model = {k: model[k] for k in ("hidden", "activation", "norm", "norm_eps")}
        out["model_json"] = network.encode(model)
        out.update({f"init:{name}": value for name, value in network.initial(model, d, rng, init).items()})
    if "batch_size" in task:   # the recording plan (recording.py): absent = every step in full
        how = plan(task)
        if how["mode"] == "checkpoints":
            out["record_steps"] = recorded_steps(len(batches(out["order"], int(task["batch_size"]))), how["every"])
    return out


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices of every optimizer step, in order: epoch by epoch, the last batch may be short."""
    out = []
    for perm in order:
        for start in range(0, len(perm), batch_size):
            out.append(perm[start:start + batch_size])
    return out


def loss_factor(loss: str) -> float:
    """d(loss)/d(residual) per sample: half_mse = mean(r^2)/2 -> 1, mse = mean(r^2) -> 2."""
    if loss == "half_mse":
        return 1.0
    if loss == "mse":
        return 2.0
    raise ValueError(f"`loss` must be one of ['half_mse', 'mse']. Received: loss={loss!r}")


def network_losses(data: dict, tensors: dict, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """losses() of a network: `tensors` {name: (rows, ...)} per recorded row, each row's forward in float64."""
    model = network.model_of(data)
    shapes = dict(network.layout(model, data["X_train"].shape[1]))
    rows = len(next(iter(tensors.values())))
    half = loss_factor(loss) / 2.0
    tr, te = np.full(rows, np.nan), np.full(rows, np.nan)
    with np.errstate(all="ignore"):
        for i in range(rows):
            params = {k: np.asarray(v[i], dtype=np.float64).reshape(shapes[k]) for k, v in tensors.items()}
            tr[i] = ((network.predict(params, data["X_train"], model) - data["y_train"]) ** 2).mean() * half
            te[i] = ((network.predict(params, data["X_test"], model) - data["y_test"]) ** 2).mean() * half
    return tr, te


def losses(data: dict, weight: np.ndarray, bias: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """Train and test loss per recorded step, recomputed in float64 from the parameters."""
    W = np.asarray(weight, dtype=np.float64)
    B = np.asarray(bias, dtype=np.float64).reshape(-1)
    half = loss_factor(loss) / 2.0
    with np.errstate(all="ignore"):
        tr = ((data["X_train"] @ W.T + B - data["y_train"][:, None]) ** 2).mean(axis=0) * half
        te = ((data["X_test"] @ W.T + B - data["y_test"][:, None]) ** 2).mean(axis=0) * half
    return tr, te
