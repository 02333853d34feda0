"""The task's network as a torch user writes it (shared by the torch and fastai adapters), and its names.

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(d, 32), nn.LayerNorm(32, eps=...), nn.Tanh(), ..., nn.Linear(16, 1))

so `named_parameters()` gives `net.0.weight`, `net.0.bias`, `net.1.weight` (a LayerNorm's scale), `net.1.bias`,
... (NATIVE below maps them to the neutral names of spec/network.py). nn.Linear stores its weight (out, in):
the neutral (in, out) is its transpose. The activation is set explicitly (nn.GELU(approximate="none") for
"gelu", approximate="tanh" for "gelu_tanh": torch's default is "none"), and so is LayerNorm's eps (torch's
default 1e-5). Pure apart from `network()`, which imports nothing itself: torch is handed in by the worker.
"""

from __future__ import annotations

import numpy as np

from wdparity.engine import network as net_mod


def native_names(model: dict, d: int) -> dict[str, str]:
    """torch's `named_parameters()` name -> the neutral name, in layout order, for the module network() builds."""
    out, index = {}, 0
    for k, _ in enumerate(model["hidden"]):
        out[f"net.{index}.weight"], out[f"net.{index}.bias"] = f"dense_{k}.weight", f"dense_{k}.bias"
        index += 1
        if model["norm"] == "layer":
            out[f"net.{index}.weight"], out[f"net.{index}.bias"] = f"norm_{k}.scale", f"norm_{k}.offset"
            index += 1
        index += 1   # the activation module has no parameters
    out[f"net.{index}.weight"], out[f"net.{index}.bias"] = "out.weight", "out.bias"
    return out


def activation(torch, kind: str):
    nn = torch.nn
    if kind == "tanh":
        return nn.Tanh()
    if kind == "relu":
        return nn.ReLU()
    return nn.GELU(approximate="none" if kind == "gelu" else "tanh")


def network(torch, data: dict, dtype):
    """(module, X, y, {neutral name: parameter}) with the task's initial tensors copied in bit-identically."""
    model = net_mod.model_of(data)
    nn = torch.nn
    X = torch.as_tensor(data["X_train"], dtype=dtype)
    y = torch.as_tensor(data["y_train"], dtype=dtype).reshape(-1, 1)
    layers, fan_in = [], X.shape[1]
    for width in model["hidden"]:
        layers.append(nn.Linear(fan_in, width, dtype=dtype))
        if model["norm"] == "layer":
            layers.append(nn.LayerNorm(width, eps=float(model["norm_eps"]), dtype=dtype))
        layers.append(activation(torch, model["activation"]))
        fan_in = width
    layers.append(nn.Linear(fan_in, 1, dtype=dtype))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(*layers)

        def forward(self, x):
            return self.net(x)

    module = MLP()
    names = native_names(model, X.shape[1])
    start = net_mod.start(data)
    params = dict(module.named_parameters())
    with torch.no_grad():
        for native, neutral in names.items():
            value = start[neutral]
            value = value.T if value.ndim == 2 else value   # (in, out) -> nn.Linear's (out, in)
            params[native].copy_(torch.as_tensor(np.ascontiguousarray(value), dtype=dtype))
    return module, X, y, {neutral: params[native] for native, neutral in names.items()}


def read(tensors: dict) -> dict[str, np.ndarray]:
    """{neutral name: array in the neutral shape} of the live parameters."""
    out = {}
    for name, p in tensors.items():
        value = p.detach().cpu().numpy()
        out[name] = value.T.copy() if value.ndim == 2 else value.copy()
    return out
