"""The lazy entry-point registry of backends (group "wdparity.backends").

Backends are found through entry points (plus `WDPARITY_EXTRA_BACKENDS="name=module:attr,..."`, used by
the tests to register deliberately broken backends) and loaded only when a case names them: an adapter
that cannot be imported fails with a reason naming it, never at start-up.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from importlib.metadata import entry_points
from typing import Any

from wdparity.run.backend import Backend
from wdparity.spec.errors import InputError

GROUP = "wdparity.backends"
# Used when the distribution's metadata is absent (running from a source tree without installing).
BUILTIN = {
    "numpy": "wdparity_backends.numpy_backend:backend",
    "torch": "wdparity_backends.torch_backend:backend",
    "keras": "wdparity_backends.keras_backend:backend",
    "optax": "wdparity_backends.optax_backend:backend",
    "mxnet": "wdparity_backends.mxnet_backend:backend",
    "paddle": "wdparity_backends.paddle_backend:backend",
    "mlx": "wdparity_backends.mlx_backend:backend",
    "tf_keras": "wdparity_backends.tf_keras_backend:backend",
    "fastai": "wdparity_backends.fastai_backend:backend",
}
GENERIC_KEYS = ("backend", "dtype", "loss", "schedule", "python")

def _extra() -> dict[str, str]:
    extra = {}
    for item in filter(None, os.environ.get("WDPARITY_EXTRA_BACKENDS", "").split(",")):
        name, _, target = item.partition("=")
        extra[name.strip()] = target.strip()
    return extra


def targets() -> dict[str, str]:
    """name -> "module:attr" of every registered backend (entry points win over built-ins)."""
    return dict(_targets(os.environ.get("WDPARITY_EXTRA_BACKENDS", "")))


@functools.lru_cache(maxsize=4)
def _targets(extra: str) -> tuple[tuple[str, str], ...]:
    """Scanning entry points costs ~10 ms: done once per process (and per test-only extra list)."""
    found = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    out = {name: t for name, t in BUILTIN.items() if name in found or _module_exists(t.split(":")[0])}
    out.update(found)
    out.update(_extra())
    return tuple(sorted(out.items()))


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def load_target(target: str) -> Backend:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr or "backend")


_cache: dict[str, Backend] = {}


def get(name: Any, where: str = "", key: str = "backend") -> Backend:
    """The backend called `name`, or an InputError listing the valid names."""
    known = targets()
    if not isinstance(name, str) or name not in known:
        raise InputError(where, key, f"must be one of {list(known)}", name)
    if name not in _cache:
        try:
            _cache[name] = load_target(known[name])
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("wdparity_backends."):
                raise InputError(where, key, f"names a backend whose adapter is not written yet ({exc.name})", name)
            raise
    return _cache[name]


def missing_modules(backend: Backend) -> list[str]:
    """Framework modules this interpreter lacks (checked with find_spec: nothing is imported)."""
    return [m for m in backend.modules if importlib.util.find_spec(m) is None]


def network_backends() -> list[str]:
    """The registered backends that train networks (Backend.models_networks); one that fails to load is left out."""
    out = []
    for name in targets():
        try:
            if get(name).models_networks:
                out.append(name)
        except Exception:   # a broken adapter is reported where a case names it, not here
            continue
    return out
