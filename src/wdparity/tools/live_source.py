"""`FILE.py:NAME`: the optimizer a user's own script builds, for `wdparity describe`, `explain --from` and
`translate --from`.

The file is imported as a module (importlib, as Python imports any module: its top level runs, which is the
point: it builds the optimizer); NAME is a module attribute holding the optimizer (a torch scheduler, an optax
transformation, ...) or a function of no arguments returning one. A function may return (optimizer, model) or
{"optimizer": ..., "model": ..., "params": ...}. The model and params default to the module's `model` and
`params` attributes when they exist (`--model` / `--params` name others). Nothing is evaluated from text.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Optional

from wdparity.spec.errors import InputError

KEY = "--from"


def load(spec: str, model: Optional[str] = None, params: Optional[str] = None, key: str = KEY) -> tuple:
    """(optimizer, model, params) named by "FILE.py:NAME"."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name.isidentifier():
        raise InputError("", key, "must be FILE.py:NAME (a Python file and the attribute that holds or builds the "
                         "optimizer)", spec)
    path = Path(path_text)
    if path.suffix != ".py" or not path.is_file():
        raise InputError("", key, "must name an existing .py file before the colon", spec)
    module = _import(path, spec, key)
    names = sorted(n for n in vars(module) if not n.startswith("_"))
    for wanted, what in ((name, key), (model, "--model"), (params, "--params")):
        if wanted is not None and not hasattr(module, wanted):
            raise InputError(str(path), what, f"must name an attribute of the module, one of {names}", wanted)
    obj = getattr(module, name)
    found_model = getattr(module, model or "model", None)
    found_params = getattr(module, params or "params", None)
    if inspect.isfunction(obj):
        if any(p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in inspect.signature(obj).parameters.values()):
            raise InputError(str(path), key, "names a function that needs arguments: it must take none and return the "
                             "optimizer (or (optimizer, model), or a dict with optimizer/model/params)", spec)
        obj = _call(obj, path, spec, key)
        if isinstance(obj, tuple) and len(obj) in (2, 3):
            obj, found_model, *rest = obj
            found_params = rest[0] if rest else found_params
        elif isinstance(obj, dict) and "optimizer" in obj:
            found_model = obj.get("model", found_model)
            found_params = obj.get("params", found_params)
            obj = obj["optimizer"]
    return obj, found_model, found_params


def _import(path: Path, spec: str, key: str):
    mod_name = f"wdparity_user_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.path.insert(0, str(path.resolve().parent))   # the script's own imports of its neighbours
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:   # the user's script failed: say where, one line
        raise InputError(str(path), key, f"must import cleanly; importing it raised {type(exc).__name__}: {exc}", spec)
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _call(fn, path: Path, spec: str, key: str) -> Any:
    try:
        return fn()
    except Exception as exc:
        raise InputError(str(path), key, f"must build the optimizer; calling it raised {type(exc).__name__}: {exc}",
                         spec)


def describe_from(spec: str, model: Optional[str] = None, params: Optional[str] = None, key: str = KEY):
    """wdparity.describe() of what FILE.py:NAME builds; what describe() cannot read is exit 2 naming the file."""
    from wdparity.tools.live import describe

    obj, found_model, found_params = load(spec, model, params, key)
    try:
        return describe(obj, model=found_model, params=found_params)
    except (TypeError, ValueError) as exc:
        raise InputError(spec.rpartition(":")[0], key, f"must build an optimizer describe() reads: {exc}", spec)
