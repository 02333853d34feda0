"""The task's network as a JAX user without Flax writes it for optax, its parameter paths and its masks.

The params are a Flax-linen-style tree, as data: an `nn.compact` MLP of nn.Dense / nn.LayerNorm modules is
auto-named `{ClassName}_{count}` per class, so the tree is {"Dense_0": {"kernel" (in, out), "bias"},
"LayerNorm_0": {"scale", "bias"}, "Dense_1": ..., "Dense_L": the output layer}; `apply(params, x)` is pure
jax.numpy: LayerNorm with epsilon = norm_eps set explicitly (Flax's default is 1e-6), gelu through
jax.nn.gelu with `approximate` explicit (JAX's default is True, the tanh form). A parameter's path is its
keys joined by "/" ("Dense_0/kernel"), as jax.tree_util.keystr(path, simple=True, separator="/") spells it.

Masks are what optax's `mask=` takes, as data: a list of paths that decay (the linear model's ["weight"]),
a tree of booleans mirroring the params tree or a prefix of it (a boolean for a whole module), or a
callable spelled {patterns = [fnmatch patterns on paths]} or {ndim_gt = N} / {ndim_ne = N} (the
`lambda p: jax.tree.map(lambda x: x.ndim > 1, p)` idiom). A mask naming nothing, or one that matches no
parameter, is a validation error listing the parameters that exist. Pure apart from the worker functions,
which get JAX handed in.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Optional

import numpy as np

from wdparity.spec.base import check_tensors, fail
from wdparity.spec.network import LINEAR, in_scope, kernels, scoped

CALLABLES = ("patterns", "ndim_gt", "ndim_ne")   # the mask tables that stand for a callable


# ---------------------------------------------------------------- names
def native_names(tensors: tuple[str, ...]) -> dict[str, str]:
    """neutral name -> the parameter's path in the params tree, in layout order (the linear model: the same)."""
    tensors = tuple(tensors)
    if tensors == LINEAR:
        return {t: t for t in tensors}
    hidden = len({t.split(".")[0] for t in tensors if t.startswith("dense_")})
    out = {}
    for t in tensors:
        layer, leaf = t.split(".")
        if layer.startswith("norm_"):
            out[t] = f"LayerNorm_{layer[5:]}/{'scale' if leaf == 'scale' else 'bias'}"
        else:
            module = f"Dense_{hidden}" if layer == "out" else f"Dense_{layer[6:]}"
            out[t] = f"{module}/{'kernel' if leaf == 'weight' else 'bias'}"
    return out


def ndim_of(name: str) -> int:
    """A neutral tensor's ndim as stored here: kernels (the linear weight too: (d, 1)) 2, the rest 1."""
    return 2 if name == "weight" or name.endswith(".weight") else 1


def _tree(tensors: tuple[str, ...]) -> dict:
    """The params tree's structure with each leaf the neutral name."""
    tree: dict = {}
    for neutral, path in native_names(tensors).items():
        node = tree
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = neutral
    return tree


def _leaves(node) -> list[str]:
    return [node] if isinstance(node, str) else [x for v in node.values() for x in _leaves(v)]


# ---------------------------------------------------------------- masks: validated and read (describe)
def _paths() -> dict[str, str]:
    return {path: neutral for neutral, path in native_names(in_scope()).items()}


def _have() -> str:
    return ", ".join(f"{p} (ndim {ndim_of(n)})" for p, n in _paths().items())


def _tree_mask(key: str, mask: dict, node: dict, where: str) -> list[str]:
    """The neutral names a boolean tree decays, checked against the params tree as optax checks its structure."""
    if set(mask) != set(node):
        missing, extra = sorted(set(node) - set(mask)), sorted(set(mask) - set(node))
        raise fail(key, mask, f"must mirror the params tree{' at ' + where if where else ''} (keys {sorted(node)}; "
                   f"missing {missing}, unknown {extra}): optax raises a pytree structure error at init; the "
                   f"parameters are {_have()}")
    out = []
    for k, v in mask.items():
        here = f"{where}/{k}" if where else k
        if isinstance(v, bool):
            out += _leaves(node[k]) if v else []
        elif isinstance(v, dict) and isinstance(node[k], dict):
            out += _tree_mask(key, v, node[k], here)
        else:
            raise fail(key, mask, f"must hold booleans (or a table for a module) at {here!r}, not {v!r} (optax "
                       "takes any leaf by its truthiness without an error: optax/transforms/_masking.py:90-92); the "
                       f"parameters are {_have()}")
    return out


def _callable_mask(key: str, mask: dict) -> list[str]:
    paths = _paths()
    if len(mask) != 1:
        raise fail(key, mask, f"must hold one of {list(CALLABLES)} (a callable mask), not {sorted(mask)}")
    (kind, value), = mask.items()
    if kind == "patterns":
        if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
            raise fail(f"{key}.patterns", value, "must be a non-empty list of fnmatch patterns on parameter paths")
        for pattern in value:
            if not any(fnmatch.fnmatchcase(p, pattern) for p in paths):
                raise fail(f"{key}.patterns", value, f"pattern {pattern!r} matches no parameter (fnmatch, case-"
                           f"sensitive, on the whole path); the parameters are {_have()}")
        return [n for p, n in paths.items() if any(fnmatch.fnmatchcase(p, pat) for pat in value)]
    if not isinstance(value, int) or isinstance(value, bool):
        raise fail(f"{key}.{kind}", value, "must be an integer ndim")
    keep = [n for n in paths.values() if (ndim_of(n) > value if kind == "ndim_gt" else ndim_of(n) != value)]
    if not keep:
        raise fail(f"{key}.{kind}", value, f"matches no parameter; the parameters are {_have()}")
    return keep


def resolve(key: str, mask: Any) -> list[str]:
    """The neutral tensors a mask decays, in layout order, every tensor in scope when it is None; a mask that
    names or matches no parameter is a validation error listing the parameters."""
    tensors = in_scope()
    if mask is None:
        return list(tensors)
    if isinstance(mask, list):
        if tensors == LINEAR:
            check_tensors(key, mask)
            return [t for t in tensors if t in mask]
        paths = _paths()
        if not mask:
            raise fail(key, mask, f"must name at least one parameter of {_have()}")
        for name in mask:
            if name not in paths:
                raise fail(key, mask, f"must name parameters by their paths ({name!r} names no parameter); the "
                           f"parameters are {_have()}")
        if len(set(mask)) != len(mask):
            raise fail(key, mask, "must not name a parameter twice")
        chosen = {paths[p] for p in mask}
    elif isinstance(mask, dict) and set(mask) & set(CALLABLES):
        chosen = set(_callable_mask(key, mask))
    elif isinstance(mask, dict):
        chosen = set(_tree_mask(key, mask, _tree(tensors), ""))
        if not chosen:
            raise fail(key, mask, f"decays no parameter (every leaf false); the parameters are {_have()}")
    else:
        raise fail(key, mask, "must be a list of parameter paths, a table of booleans mirroring the params, or "
                   f"one of {[f'{{{c} = ...}}' for c in CALLABLES]}")
    return [t for t in tensors if t in chosen]


def check(key: str, mask: Any) -> None:
    """Validation: within a tensor scope (or for the linear model's names) a mask must match; outside one (a
    worker re-reading a network's run, which build() re-validates in the task's scope) only its form is read."""
    if mask is None:
        return
    if scoped() or (isinstance(mask, list) and all(isinstance(m, str) and "/" not in m for m in mask)):
        resolve(key, mask)
    elif not isinstance(mask, (list, dict)):
        resolve(key, mask)   # the form's error


# ---------------------------------------------------------------- masks: written (realize)
def spelled(params: list[str]) -> Any:
    """The optax mask a user writes for these neutral tensors: the linear model's list; on a network
    {ndim_gt = 1} where they are the weight matrices, else a boolean tree (a module's boolean where it is
    uniform, as optax's prefix trees allow)."""
    tensors = in_scope()
    if tensors == LINEAR:
        return list(params)
    if sorted(params) == sorted(kernels(tensors)):
        return {"ndim_gt": 1}

    def node(sub):
        if isinstance(sub, str):
            return sub in params
        out = {k: node(v) for k, v in sub.items()}
        flat = set(_leaves(sub))
        if flat <= set(params) or not flat & set(params):
            return bool(flat & set(params))
        return out

    tree = _tree(tensors)
    return {k: node(v) for k, v in tree.items()}


# ---------------------------------------------------------------- inside the worker
def optax_mask(mask: Any, tensors: tuple[str, ...]):
    """The object handed to optax's `mask=`: a boolean tree, or a callable of the params (updates) tree."""
    if mask is None:
        return None
    if isinstance(mask, list):
        names = set(mask)
        paths = native_names(tensors)
        return _map_tree(_tree(tensors), lambda n: n in names or paths[n] in names)
    if "patterns" in mask:
        import jax

        patterns = list(mask["patterns"])

        def by_path(p):
            return jax.tree_util.tree_map_with_path(lambda path, _: any(fnmatch.fnmatchcase(
                jax.tree_util.keystr(path, simple=True, separator="/"), pat) for pat in patterns), p)
        return by_path
    if "ndim_gt" in mask or "ndim_ne" in mask:
        import jax

        n = int(mask.get("ndim_gt", mask.get("ndim_ne")))
        if "ndim_gt" in mask:
            return lambda p: jax.tree.map(lambda x: x.ndim > n, p)
        return lambda p: jax.tree.map(lambda x: x.ndim != n, p)
    return mask   # a boolean tree, prefixes included, exactly as written


def _map_tree(node, fn):
    return fn(node) if isinstance(node, str) else {k: _map_tree(v, fn) for k, v in node.items()}


def init_params(jnp, data: dict, dtype) -> dict:
    """The params tree with the task's initial tensors copied in (neutral (in, out) kernels are Dense's)."""
    from wdparity.engine import network as net_mod

    start = net_mod.start(data)
    tensors = tuple(net_mod.names_of(data))
    return _map_tree(_tree(tensors), lambda n: jnp.asarray(np.asarray(start[n], dtype)))


def apply_fn(jax, jnp, model: dict):
    """apply(params, x): the MLP forward, (n, 1), as a JAX user writes an nn.compact Dense/LayerNorm MLP."""
    hidden, norm, eps = len(model["hidden"]), model["norm"] == "layer", float(model["norm_eps"])
    kind = model["activation"]
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu,
           "gelu": lambda u: jax.nn.gelu(u, approximate=False),      # the erf form (JAX's default: tanh)
           "gelu_tanh": lambda u: jax.nn.gelu(u, approximate=True)}[kind]

    def apply(params, x):
        h = x
        for k in range(hidden):
            dense = params[f"Dense_{k}"]
            z = h @ dense["kernel"] + dense["bias"]
            if norm:
                ln = params[f"LayerNorm_{k}"]
                mean = jnp.mean(z, axis=-1, keepdims=True)
                var = jnp.mean(jnp.square(z - mean), axis=-1, keepdims=True)   # biased
                z = (z - mean) / jnp.sqrt(var + eps) * ln["scale"] + ln["bias"]
            h = act(z)
        out = params[f"Dense_{hidden}"]
        return h @ out["kernel"] + out["bias"]

    return apply


def network_loss(jax, jnp, model: dict, factor: float, pen, tensors: tuple[str, ...]):
    """loss(params, X, y): the network's regression loss, y an (n, 1) column, plus the run's penalty (whose
    params are neutral names, looked up by path)."""
    apply = apply_fn(jax, jnp, model)
    paths = native_names(tensors)

    def leaf(params, name):
        node = params
        for part in paths[name].split("/"):
            node = node[part]
        return node

    def loss_fn(params, X, y):
        r = apply(params, X) - y
        if r.shape != (X.shape[0], 1):
            raise ValueError(f"residual of shape {r.shape}, expected ({X.shape[0]}, 1)")
        loss = jnp.mean(r ** 2) * (factor / 2)
        if pen is not None:
            for k in pen.params:
                w = leaf(params, k)
                loss = loss + pen.l2 * jnp.sum(w ** 2) + pen.l1 * jnp.sum(jnp.abs(w))
        return loss

    return loss_fn


def read(params: dict, tensors: tuple[str, ...]) -> dict[str, np.ndarray]:
    """{neutral name: array} of the live params (the kernels are already (in, out))."""
    out = {}
    for name, path in native_names(tensors).items():
        node = params
        for part in path.split("/"):
            node = node[part]
        out[name] = np.asarray(node).copy()
    return out


def leaf_dtype(params: dict) -> Optional[np.dtype]:
    first = params[next(iter(params))]
    return np.dtype(first[next(iter(first))].dtype) if isinstance(first, dict) else np.dtype(first.dtype)
