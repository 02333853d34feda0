"""One-line input errors: the file, the key and the received value, never a traceback.

Every bad input (a case file, a CLI argument) ends up as an `InputError`; the CLI prints
`str(error)` on one line and exits 2. Pydantic validation errors are turned into the same
shape ("`key` must be X. Received: key=value") by `from_validation_error`.
"""

from __future__ import annotations

import json
import math
from typing import Any

CUSTOM = "wdparity"  # pydantic error type used by our own validators (ctx: key, value, expected)


class InputError(Exception):
    """Bad input. `str()` is the single line shown to the user."""

    def __init__(self, where: str, key: str, expected: str, received: Any = None, *, has_value: bool = True):
        self.where, self.key, self.expected, self.received = where, key, expected, received
        self.has_value = has_value
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.where}: " if self.where else ""
        line = f"{head}`{self.key}` {self.expected}."
        if self.has_value:
            line += f" Received: {self.key}={show(self.received)}"
        return line.replace("\n", " ")


def show(value: Any, limit: int = 80) -> str:
    """A TOML-ish rendering of a received value, bounded in length and free of newlines."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    elif isinstance(value, (int, float, str, list, dict)) or value is None:
        try:
            text = json.dumps(value, default=str, allow_nan=True)
        except (TypeError, ValueError):
            text = repr(value)
    else:
        text = repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _strip_loc(loc: tuple, data: Any) -> list[str]:
    """Keep only the parts of a pydantic location that are real keys of the input.

    Discriminated unions and function validators add tags ("step", "function-after[...]")
    that are not in the file; walking the input drops them.
    """
    keys: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            keys.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            keys[-1:] = [f"{keys[-1]}[{part}]"] if keys else [f"[{part}]"]
            node = node[part]
        elif isinstance(node, dict) and not isinstance(part, int) and part not in node and _is_leaf_missing(part):
            keys.append(str(part))
            node = None
    return keys


def _is_leaf_missing(part: Any) -> bool:
    # A field name that is absent from the input (a "missing" error) still belongs in the key;
    # union tags and validator markers contain characters a field name never has.
    text = str(part)
    return text.isidentifier() and text not in {"constant", "step", "cosine", "sgd", "adam"}


_TYPE_WORDS = {
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing": "must be an integer",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "finite_number": "must be a finite number",
    "missing": "is required",
}


def _expected(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    if kind == "greater_than":
        return f"must be > {ctx['gt']}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}"
    if kind == "less_than":
        return f"must be < {ctx['lt']}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}"
    if kind == "literal_error":
        choices = [c.strip().strip("'") for c in str(ctx.get("expected", "")).replace(" or ", ",").split(",") if c.strip()]
        return f"must be one of {choices}"
    if kind == "union_tag_invalid":
        choices = [c.strip().strip("'") for c in str(ctx.get("expected_tags", "")).split(",")]
        return f"must be one of {choices}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    msg = err.get("msg", "is invalid")
    return msg.replace("Input should be", "must be").replace("Value error, ", "")


def from_validation_error(exc: Any, where: str, data: Any, prefix: str = "") -> InputError:
    """The first error of a pydantic ValidationError as an InputError naming file, key and value."""
    err = exc.errors(include_url=False)[0]
    keys = _strip_loc(tuple(err["loc"]), data)
    ctx = err.get("ctx") or {}
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        keys.append(str(ctx.get("discriminator", "kind")).strip("'"))
        received = ctx.get("tag") if err["type"] == "union_tag_invalid" else None
        expected = _expected(err) if err["type"] == "union_tag_invalid" else "is required"
        key = ".".join(k for k in [prefix, *keys] if k).replace(".[", "[")
        return InputError(where, key, expected, received, has_value=err["type"] == "union_tag_invalid")
    if err["type"] == CUSTOM:
        if ctx.get("key"):
            keys.append(str(ctx["key"]))
        received, expected = ctx.get("value"), str(ctx.get("expected"))
    else:
        received, expected = err.get("input"), _expected(err)
    key = ".".join(k for k in [prefix, *keys] if k) or (prefix or "(top level)")
    if key.startswith(".") or "..[" in key:
        key = key.lstrip(".")
    key = key.replace(".[", "[")
    return InputError(where, key, expected, received, has_value=err["type"] != "missing")
