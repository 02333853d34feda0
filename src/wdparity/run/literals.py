"""Table values as Python literals, for the adapters' snippets (`Backend.snippet`, tools/snippet.py frames them).

In the run layer so the adapters, which sit below tools, can write snippets without importing upward.
"""

from __future__ import annotations

from typing import Any

from wdparity.run.backend import Inexpressible


def py(value: Any) -> str:
    """A table value as a Python literal (floats by repr, so the snippet holds the table's exact numbers)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float, str)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(py(v) for v in value)
        return f"({inner},)" if isinstance(value, tuple) and len(value) == 1 else (
            f"({inner})" if isinstance(value, tuple) else f"[{inner}]")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py(k)}: {py(v)}" for k, v in value.items()) + "}"
    raise Inexpressible(f"cannot write {type(value).__name__} {value!r} as Python")


def kwargs(values: dict) -> str:
    """`k=v, ...` in the table's order."""
    return ", ".join(f"{k}={py(v)}" for k, v in values.items())
