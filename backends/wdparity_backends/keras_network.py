"""The task's network as a Keras user writes it (Keras 3 and tf_keras), its native names, masks and regularizers.

    keras.Sequential([keras.Input((d,)), layers.Dense(32), layers.LayerNormalization(epsilon=norm_eps),
                      layers.Activation(act), ..., layers.Dense(1)])

without LayerNorm each hidden layer is `layers.Dense(w, activation=act)`. The activation is explicit:
keras.activations.tanh / relu, gelu(x, approximate=False) for "gelu", approximate=True for "gelu_tanh"; so is
LayerNormalization's epsilon (Keras's default is 1e-3). Kernels are stored (in, out), the neutral shape. In a
fresh session (clear_session) Keras names the layers dense, layer_normalization, dense_1, ..., the output
dense_H, their variables kernel/bias/gamma/beta: Keras 3's `variable.path` is "sequential/dense/kernel" and its
`variable.name` "kernel"; tf_keras's `variable.name` is "dense/kernel:0". `exclude_from_weight_decay` is matched as
each Keras does: Keras 3 re.search("|".join(set(var_names)), variable.name), tf_keras re.search(name,
variable.name) per name. Per-layer regularizers: `layers = {NAME = {kernel_regularizer = {l2 = c}, ...}}`.
Pure apart from build_network / read, which take the framework module from the worker.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from wdparity.engine import network as net_mod
from wdparity.spec.errors import InputError
from wdparity.spec.network import LINEAR

from .keras_vocab import L1L2

DENSE_KEYS = {"kernel_regularizer": "kernel", "bias_regularizer": "bias"}
NORM_KEYS = {"gamma_regularizer": "gamma", "beta_regularizer": "beta"}
RULE = {"keras": "Keras 3 excludes a variable when re.search(\"|\".join(set(var_names)), variable.name) matches "
                 "(keras/src/optimizers/base_optimizer.py:912-916,942-948)",
        "tf_keras": "tf_keras excludes a variable when re.search(name, variable.name) matches for a name "
                    "(tf_keras/src/optimizers/optimizer.py:686-688)"}


def _suffix(i: int) -> str:
    return "" if i == 0 else f"_{i}"


def native_layers(tensors: tuple[str, ...]) -> dict[str, tuple[str, dict[str, str]]]:
    """Keras's layer name -> (class, {regularizer keyword: neutral tensor}) for the layers with variables, in layout
    order (Activation layers have none)."""
    hidden = sum(1 for t in tensors if t.startswith("dense_") and t.endswith(".weight"))
    norm = any(t.startswith("norm_") for t in tensors)
    out = {}
    for k in range(hidden):
        out[f"dense{_suffix(k)}"] = ("Dense", {"kernel_regularizer": f"dense_{k}.weight",
                                               "bias_regularizer": f"dense_{k}.bias"})
        if norm:
            out[f"layer_normalization{_suffix(k)}"] = ("LayerNormalization", {"gamma_regularizer": f"norm_{k}.scale",
                                                                               "beta_regularizer": f"norm_{k}.offset"})
    out[f"dense{_suffix(hidden)}"] = ("Dense", {"kernel_regularizer": "out.weight", "bias_regularizer": "out.bias"})
    return out


def native_names(tensors: tuple[str, ...], flavour: str) -> dict[str, tuple[str, str]]:
    """neutral name -> (path, name) of its Keras variable: Keras 3 ("sequential/dense/kernel", "kernel"), tf_keras
    ("dense/kernel:0", "dense/kernel:0")."""
    out = {}
    for layer, (_, keys) in native_layers(tensors).items():
        for key, neutral in keys.items():
            var = {**DENSE_KEYS, **NORM_KEYS}[key]
            out[neutral] = ((f"sequential/{layer}/{var}", var) if flavour == "keras"
                            else (f"{layer}/{var}:0", f"{layer}/{var}:0"))
    return {t: out[t] for t in tensors}


def excluded(var_names: list[str], tensors: tuple[str, ...], flavour: str,
             key: str = "exclude_from_weight_decay") -> list[str]:
    """The neutral tensors Keras's exclude_from_weight_decay(var_names=...) excludes, matched as that Keras does
    (RULE); a pattern that matches no variable, or an invalid one, is an error listing the names Keras matches."""
    matched = {t: name for t, (_, name) in native_names(tensors, flavour).items()}
    names = list(dict.fromkeys(matched.values()))
    if not var_names:
        raise InputError("", key, f"must name at least one pattern ({RULE[flavour]}; the variables' names: {names})",
                         var_names)
    for pattern in var_names:
        try:
            rx = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise InputError("", key, f"must be regular expressions ({pattern!r}: {exc})", var_names)
        if not any(rx.search(name) for name in names):
            paths = [p for p, _ in native_names(tensors, flavour).values()]
            raise InputError("", key, f"must match variables: {pattern!r} matches none. {RULE[flavour]}, and the "
                             f"variables' names are {names}" + (f" (their paths {paths} are not matched)"
                                                                 if flavour == "keras" else ""), var_names)
    if flavour == "keras":
        rx = re.compile("|".join(set(var_names)))
        return [t for t, name in matched.items() if rx.search(name)]
    return [t for t, name in matched.items() if any(re.search(p, name) for p in var_names)]


def exclusion_patterns(excluded_tensors: list[str], tensors: tuple[str, ...], flavour: str) -> Optional[list[str]]:
    """var_names that exclude exactly these tensors, or None: the variable kinds (kernel, bias, gamma, beta) when
    the set is a union of kinds, else (tf_keras, whose names carry the layer) one "layer/kind" per variable."""
    kinds = {t: {**DENSE_KEYS, **NORM_KEYS}[key] for _, keys in native_layers(tensors).values()
             for key, t in keys.items()}
    chosen = [k for k in ("kernel", "bias", "gamma", "beta")
              if any(kinds[t] == k for t in excluded_tensors) and all(t in excluded_tensors
                                                                      for t in tensors if kinds[t] == k)]
    if sorted(t for t in tensors if kinds[t] in chosen) == sorted(excluded_tensors):
        return chosen
    if flavour == "tf_keras":
        return [native_names(tensors, flavour)[t][1].removesuffix(":0") for t in excluded_tensors]
    return None


def regularizers(layers: Optional[dict], kernel: Optional[L1L2], bias: Optional[L1L2],
                 tensors: tuple[str, ...]) -> dict[str, L1L2]:
    """neutral tensor -> its Keras regularizer: `layers.NAME.KEY` on that layer, the top-level kernel_regularizer /
    bias_regularizer on every Dense layer. A layer the model lacks, a keyword of another layer class, or a
    keyword given both ways is an error naming the layers."""
    have = native_layers(tensors)
    top = {"kernel_regularizer": kernel, "bias_regularizer": bias}
    for name, table in (layers or {}).items():
        if name not in have:
            raise InputError("", f"layers.{name}", f"must name a layer of the model: its layers with variables are "
                             f"{ {n: c for n, (c, _) in have.items()} }", table)
        cls, keys = have[name]
        for key in table.given():
            if key not in keys:
                raise InputError("", f"layers.{name}.{key}", f"is not a regularizer of {cls} {name!r} (it takes "
                                 f"{list(keys)})", getattr(table, key).model_dump())
            if top.get(key) is not None:
                raise InputError("", f"layers.{name}.{key}", f"is also set for every Dense layer by `{key}`: set it "
                                 "one way", getattr(table, key).model_dump())
    out = {}
    for name, (cls, keys) in have.items():
        for key, neutral in keys.items():
            table = (layers or {}).get(name)
            reg = getattr(table, key) if table is not None else None
            reg = reg if reg is not None else top.get(key)
            if reg is not None:
                out[neutral] = reg
    return out


def realize_regularizers(l1: dict[str, float], l2: dict[str, float], tensors: tuple[str, ...]) -> dict:
    """Run-table keys for per-tensor coupled coefficients: L1L2(l1, l2/2) (L2(c) is a 2c gradient); one top-level
    kernel_regularizer / bias_regularizer when every Dense layer has the same, else a `layers` table per layer."""
    reg = {t: {k: v for k, v in (("l1", l1[t]), ("l2", l2[t] / 2.0)) if v} for t in tensors}
    have = native_layers(tensors)
    run, layers = {}, {}
    for key in DENSE_KEYS:
        dense = [keys[key] for cls, keys in have.values() if cls == "Dense"]
        if all(reg[t] == reg[dense[0]] for t in dense):
            if reg[dense[0]]:
                run[key] = reg[dense[0]]
            continue
        for name, (cls, keys) in have.items():
            if cls == "Dense" and reg[keys[key]]:
                layers.setdefault(name, {})[key] = reg[keys[key]]
    for name, (cls, keys) in have.items():
        if cls == "LayerNormalization":
            for key, t in keys.items():
                if reg[t]:
                    layers.setdefault(name, {})[key] = reg[t]
    if layers:
        run["layers"] = {name: layers[name] for name in have if name in layers}
    return run


def activation(keras, kind: str):
    """The activation explicitly: keras.activations.gelu's own default is approximate=False, keras.ops.gelu's True."""
    acts = keras.activations
    if kind == "tanh":
        return acts.tanh
    if kind == "relu":
        return acts.relu
    approximate = kind == "gelu_tanh"
    return lambda x: acts.gelu(x, approximate=approximate)


def build_network(keras, data: dict, dtype: str, regs: dict[str, L1L2], flavour: str):
    """(Sequential model, [variables in layout order]) with the task's initial tensors copied in bit-identically."""
    model_spec = net_mod.model_of(data)
    d = int(np.asarray(data["X_train"]).shape[1])
    L = keras.layers
    act = activation(keras, model_spec["activation"])
    norm = model_spec["norm"] == "layer"

    def reg(t):
        r = regs.get(t)
        return None if r is None else keras.regularizers.L1L2(l1=float(r.l1), l2=float(r.l2))

    stack = [keras.Input(shape=(d,), dtype=dtype)]
    for k, width in enumerate(model_spec["hidden"]):
        stack.append(L.Dense(width, activation=None if norm else act, kernel_regularizer=reg(f"dense_{k}.weight"),
                             bias_regularizer=reg(f"dense_{k}.bias")))
        if norm:
            stack += [L.LayerNormalization(epsilon=float(model_spec["norm_eps"]), gamma_regularizer=reg(f"norm_{k}.scale"),
                                           beta_regularizer=reg(f"norm_{k}.offset")), L.Activation(act)]
    stack.append(L.Dense(1, kernel_regularizer=reg("out.weight"), bias_regularizer=reg("out.bias")))
    model = keras.Sequential(stack)
    tensors = tuple(net_mod.names_of(data))
    expected = native_names(tensors, flavour)
    got = [(getattr(v, "path", v.name), v.name) for v in model.trainable_variables]
    if got != list(expected.values()):
        raise RuntimeError(f"Keras named the variables {got}, not {list(expected.values())} (keras_network.py)")
    start = net_mod.start(data)
    variables = list(model.trainable_variables)
    for t, v in zip(tensors, variables):
        v.assign(np.asarray(start[t], dtype).reshape(tuple(v.shape)))
    return model, variables


def build_model(keras, data: dict, dtype: str, run, tensors: tuple[str, ...], flavour: str, linear_names: dict):
    """(model, variables, var_names to exclude) for a run: the network, or the linear model's Dense(1) with the
    task's w0 and b0 (Keras 3 and tf_keras alike; `keras` is the module, `linear_names` maps weight/bias)."""
    if "model_json" in data:   # its run's names are the framework's
        regs = regularizers(run.layers, run.kernel_regularizer, run.bias_regularizer, tensors)
        model, variables = build_network(keras, data, dtype, regs, flavour)
        return model, variables, run.exclude_from_weight_decay

    def regularizer(r: Optional[L1L2]):
        return None if r is None else keras.regularizers.L1L2(l1=float(r.l1), l2=float(r.l2))

    d = int(np.asarray(data["w0"]).size)
    dense = keras.layers.Dense(1, kernel_regularizer=regularizer(run.kernel_regularizer),
                               bias_regularizer=regularizer(run.bias_regularizer))
    model = keras.Sequential([keras.Input(shape=(d,), dtype=dtype), dense])
    dense.set_weights([np.asarray(data["w0"], dtype).reshape(d, 1), np.asarray(data["b0"], dtype).reshape(1)])
    return model, [dense.kernel, dense.bias], [linear_names[k] for k in run.exclude_from_weight_decay or []]


def read(tensors: tuple[str, ...], values) -> dict[str, np.ndarray]:
    """{neutral name: array}: Keras's kernels are already (in, out), its biases and LayerNorm vectors 1-D."""
    return {t: np.array(v) for t, v in zip(tensors, values)}


def describe_layers(config, task, l1_at_zero: float, r, flavour: str) -> tuple[list, tuple[str, ...], list[str]]:
    """(coupled regularizer rules, the model's tensors, the tensors exclude_from_weight_decay excludes) of a Keras 3
    or tf_keras run: the linear model's Dense(1) as before, a network's per layer (module docstring)."""
    from .keras_vocab import per_tensor_rules, regularizer_rules

    if task.model.linear:
        if config.layers is not None:
            raise InputError("", "layers", "is a network's per-layer table ([task] model); the linear model's one "
                             "Dense takes kernel_regularizer and bias_regularizer", list(config.layers))
        return (regularizer_rules(config.kernel_regularizer, config.bias_regularizer, l1_at_zero, r), LINEAR,
                list(config.exclude_from_weight_decay or []))
    tensors = task.tensors
    regs = regularizers(config.layers, config.kernel_regularizer, config.bias_regularizer, tensors)
    out = []
    if config.exclude_from_weight_decay is not None:
        out = excluded(config.exclude_from_weight_decay, tensors, flavour)
        if set(out) == set(tensors):
            raise InputError("", "exclude_from_weight_decay", "must leave at least one variable decayed (it excludes "
                             f"every one: {[n for _, n in native_names(tensors, flavour).values()]})",
                             config.exclude_from_weight_decay)
    return per_tensor_rules(regs, l1_at_zero, r), tensors, out


def realize_exclusion(params: list[str], tensors: tuple[str, ...], flavour: str) -> list[str]:
    """exclude_from_weight_decay for a decoupled rule on `params`: neutral names on the linear model, var_names
    patterns on a network (Inexpressible where Keras 3's variable.name cannot tell the tensors apart)."""
    from wdparity.run.backend import Inexpressible

    rest = [t for t in tensors if t not in params]
    if tuple(tensors) == LINEAR:
        return rest
    patterns = exclusion_patterns(rest, tensors, flavour)
    if patterns is None:
        raise Inexpressible(f"Keras 3 matches exclude_from_weight_decay's var_names against variable.name, which is "
                            f"only kernel/bias/gamma/beta (keras/src/optimizers/base_optimizer.py:942-948), so it cannot "
                            f"exclude {rest} alone; nearest: exclude_from_weight_decay(var_list=[...]) with the variables "
                            "themselves (not modelled here), or decay every tensor of those kinds")
    return patterns
