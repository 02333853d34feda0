"""The multi-layer perceptron of `[task] model`, by hand in NumPy: initial parameters, forward, backward.

The reference's gradients of a network, in float64 (or the run's dtype), written out layer by layer so
that nothing depends on an autodiff: proven against central finite differences (tests/test_network.py)
and against every framework's autograd (the batteries). The model's constants travel inside the task data
(`data["model_json"]`, its initial tensors as `data["init:NAME"]`), made once by data.make_data and handed
bit-identically to every backend, as the linear model's w0 is. Under an active RandomRounding each computed
quantity gets a rounding error of its own size (the envelopes). NumPy + stdlib only: workers import it.

Initialization (documented, from the task's seed, drawn after every draw of the linear task so the data of
a case without `model` is unchanged): each weight matrix N(0, 1) / sqrt(fan_in) (LeCun normal), biases 0
(init = "normal_all": N(0, 1) / sqrt(fan_in) too), LayerNorm scale 1 and offset 0; init = "zeros" zeroes
every weight and bias (a degenerate start: every hidden unit stays equal).
"""

from __future__ import annotations

import json
import math
from typing import Optional

import numpy as np

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715
_ERF = np.frompyfunc(math.erf, 1, 1)


def model_of(data: dict) -> Optional[dict]:
    """The network's constants from the task data ({"hidden", "activation", "norm", "norm_eps"}), or None for
    the linear model."""
    raw = data.get("model_json")
    return None if raw is None else json.loads(bytes(np.asarray(raw, dtype=np.uint8)).decode())


def names_of(data: dict) -> list[str]:
    """The tensors of the task data's model, in layout order ("weight", "bias" for the linear model)."""
    model = model_of(data)
    if model is None:
        return ["weight", "bias"]
    return [name for name, _ in layout(model, int(np.asarray(data["X_train"]).shape[1]))]


def encode(model: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(model, sort_keys=True).encode(), dtype=np.uint8).copy()


def layout(model: dict, d: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) in layout order (the same as spec/network.layout, from the data's plain dict)."""
    out, fan_in = [], d
    for k, width in enumerate(model["hidden"]):
        out += [(f"dense_{k}.weight", (fan_in, width)), (f"dense_{k}.bias", (width,))]
        if model["norm"] == "layer":
            out += [(f"norm_{k}.scale", (width,)), (f"norm_{k}.offset", (width,))]
        fan_in = width
    return out + [("out.weight", (fan_in, 1)), ("out.bias", (1,))]


def initial(model: dict, d: int, rng: np.random.Generator, init: str) -> dict[str, np.ndarray]:
    """The initial tensors (float64), drawn in layout order."""
    out = {}
    for name, shape in layout(model, d):
        kind = name.split(".")[1]
        if kind == "weight":
            out[name] = (rng.standard_normal(shape) / math.sqrt(shape[0]) if init != "zeros" else np.zeros(shape))
        elif kind == "bias":
            fan_in = out[name.replace(".bias", ".weight")].shape[0]
            out[name] = rng.standard_normal(shape) / math.sqrt(fan_in) if init == "normal_all" else np.zeros(shape)
        elif kind == "scale":
            out[name] = np.ones(shape)
        else:
            out[name] = np.zeros(shape)
    return out


def start(data: dict) -> dict[str, np.ndarray]:
    """The initial tensors as the data carries them (float64, neutral shapes)."""
    return {k[len("init:"):]: v for k, v in data.items() if k.startswith("init:")}


def activate(u: np.ndarray, kind: str) -> np.ndarray:
    if kind == "tanh":
        return np.tanh(u)
    if kind == "relu":
        return np.maximum(u, u.dtype.type(0))
    if kind == "gelu":
        return u * (0.5 * (1.0 + _ERF(u / math.sqrt(2.0)).astype(u.dtype)))
    inner = SQRT_2_OVER_PI * (u + GELU_CUBIC * u ** 3)
    return 0.5 * u * (1.0 + np.tanh(inner))


def activation_grad(u: np.ndarray, a: np.ndarray, kind: str) -> np.ndarray:
    """d act / du at u (a = act(u))."""
    if kind == "tanh":
        return 1.0 - a * a
    if kind == "relu":
        return (u > 0).astype(u.dtype)
    if kind == "gelu":
        cdf = 0.5 * (1.0 + _ERF(u / math.sqrt(2.0)).astype(u.dtype))
        return cdf + u * np.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)
    t = np.tanh(SQRT_2_OVER_PI * (u + GELU_CUBIC * u ** 3))
    return 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * u * u)


def _activation_magnitude(u: np.ndarray, a: np.ndarray, kind: str) -> np.ndarray:
    """The size an activation's rounding error scales with: tanh's own result (an elementary function, rounded
    relative to what it returns, which saturates at 1 while u grows); gelu's |u|, since u * (1 + erf) or
    u * (1 + tanh) cancels in the bracket where erf or tanh is near -1 and the bracket's error is relative to 1."""
    return np.abs(a) if kind == "tanh" else np.abs(u)


def _noisy(rr, x, magnitude):
    return x if rr is None else rr(x, magnitude)


def forward(params: dict, X: np.ndarray, model: dict, rr=None) -> tuple[np.ndarray, list[dict]]:
    """The network's output (n,) and what the backward pass needs of each hidden layer. Tensors may carry a
    leading member axis (engine/stacking.py: samples trained as one stack), X never does: every product and
    reduction is written on the last two axes, so a member computes exactly what it computes alone."""
    dt = X.dtype.type
    eps = dt(model["norm_eps"])
    h, cache = X, []
    for k in range(len(model["hidden"])):
        W, b = params[f"dense_{k}.weight"], _row(params[f"dense_{k}.bias"])
        z = _noisy(rr, h @ W + b, np.abs(h) @ np.abs(W) + np.abs(b) if rr is not None else None)
        layer = {"h": h, "W": W}
        if model["norm"] == "layer":
            mean = z.mean(axis=-1, keepdims=True)
            c = z - mean
            var = (c * c).mean(axis=-1, keepdims=True)
            inv = dt(1.0) / np.sqrt(var + eps)
            zhat = _noisy(rr, c * inv, np.abs(c * inv) if rr is not None else None)
            scale = _row(params[f"norm_{k}.scale"])
            u = zhat * scale + _row(params[f"norm_{k}.offset"])
            layer.update(zhat=zhat, inv=inv, scale=scale)
        else:
            u = z
        a = activate(u, model["activation"])
        if rr is not None and model["activation"] != "relu":   # max(u, 0) is exact: a dead unit stays exactly 0
            a = rr(a, _activation_magnitude(u, a, model["activation"]))
        layer.update(u=u, a=a)
        cache.append(layer)
        h = a
    W, b = params["out.weight"], params["out.bias"]
    out = (h @ W)[..., 0] + b[..., :1]
    if rr is not None:
        out = rr(out, (np.abs(h) @ np.abs(W))[..., 0] + np.abs(b[..., :1]))
    return out, cache + [{"h": h, "W": W}]


def _row(v: np.ndarray) -> np.ndarray:
    """A per-unit vector (k,) as a row against the batch's (n, k) (with a member axis: (S, 1, k))."""
    return v[..., None, :]


def _t(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


def gradients(params: dict, X: np.ndarray, y: np.ndarray, factor, model: dict, hyper_dtype: str = "float64",
              rr=None) -> dict[str, np.ndarray]:
    """Gradient of factor * mean(r^2) / 2, r = net(X) - y, for every tensor (neutral shapes; a leading member
    axis kept, as in forward)."""
    dt = X.dtype.type
    out_, cache = forward(params, X, model, rr)
    r = out_ - y
    if rr is not None:
        r = rr(r, np.abs(out_) + np.abs(y))
    n = r.shape[-1]
    if hyper_dtype == "float32":
        d_out = dt(np.float32(1.0 / n)) * (factor * r)
    else:
        d_out = factor * r / dt(n)
    grads: dict[str, np.ndarray] = {}
    last = cache[-1]
    grads["out.weight"] = _noisy(rr, _t(last["h"]) @ d_out[..., None],
                                 None if rr is None else _t(np.abs(last["h"])) @ np.abs(d_out)[..., None])
    grads["out.bias"] = _noisy(rr, d_out.sum(axis=-1, keepdims=True).astype(X.dtype),
                               None if rr is None else np.abs(d_out).sum(axis=-1, keepdims=True))
    dh = d_out[..., None] @ _t(last["W"])
    for k in reversed(range(len(model["hidden"]))):
        layer = cache[k]
        du = dh * activation_grad(layer["u"], layer["a"], model["activation"])
        if model["norm"] == "layer":
            zhat = layer["zhat"]
            grads[f"norm_{k}.scale"] = (du * zhat).sum(axis=-2)
            grads[f"norm_{k}.offset"] = du.sum(axis=-2)
            dzhat = du * layer["scale"]
            dz = layer["inv"] * (dzhat - dzhat.mean(axis=-1, keepdims=True)
                                 - zhat * (dzhat * zhat).mean(axis=-1, keepdims=True))
        else:
            dz = du
        if rr is not None:
            dz = rr(dz, np.abs(dz))
        grads[f"dense_{k}.weight"] = _noisy(rr, _t(layer["h"]) @ dz,
                                            None if rr is None else _t(np.abs(layer["h"])) @ np.abs(dz))
        grads[f"dense_{k}.bias"] = _noisy(rr, dz.sum(axis=-2), None if rr is None else np.abs(dz).sum(axis=-2))
        if k:
            dh = _noisy(rr, dz @ _t(layer["W"]), None if rr is None else np.abs(dz) @ _t(np.abs(layer["W"])))
    return {name: grads[name] for name in params}


def predict(params: dict, X: np.ndarray, model: dict) -> np.ndarray:
    with np.errstate(all="ignore"):
        return forward(params, X, model)[0]
