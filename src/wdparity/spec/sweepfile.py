"""Sweep and grid files as data: a lambda axis (and optionally an lr axis) over framework conventions.

Sweep file (TOML):

    title = "..."
    sources = ["..."]
    [task]                       # optional, as in case files
    [sweep]
    values = [0.0, 0.1, 1.0, 10.0]
    [conventions.NAME]
    label = "torch SGD(weight_decay=lambda)"
    key = "weight_decay"         # dotted path receiving lambda: "penalty.l2", "chain.0.weight_decay"
    factor = 1.0                 # the key receives factor * lambda (d2l's lambda/2 penalty: 0.5)
    [conventions.NAME.run]       # the run table, as in case files
    backend = "torch"

Grid file = a sweep file (above) plus an optional learning-rate axis:

    [sweep]
    values = [0.0, 0.1, 1.0]      # lambda, written at each convention's `key` (times `factor`)
    lr = [0.001, 0.003]           # optional; then every convention names `lr_key`
    [conventions.NAME]
    lr_key = "chain.1.learning_rate"   # dotted path receiving lr: "lr", "learning_rate", ...

Without `lr` each convention runs at its own learning rate (an existing sweep file works as is).
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import Field, model_validator

from wdparity.spec.casefile import RUN_NAME
from wdparity.spec.errors import InputError
from wdparity.spec.models import NonNeg, Positive, Strict, Task, fail


class Convention(Strict):
    label: str = Field(min_length=1)
    key: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$")
    factor: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0   # the key receives factor * lambda
    run: dict[str, Any]


class SweepRange(Strict):
    values: list[NonNeg] = Field(min_length=2)


class SweepFile(Strict):
    title: str = Field(min_length=1)
    sources: list[str] = Field(default_factory=list)
    task: Task = Field(default_factory=Task)
    sweep: SweepRange
    conventions: dict[str, Convention] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self):
        for name in self.conventions:
            if not RUN_NAME.match(name):
                raise fail("conventions", name, "names must match [a-z0-9_-]+")
        return self


def is_sweep(path: str) -> bool:
    try:
        return "sweep" in tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def set_path(table: dict, dotted: str, value: float, where: str, key: str) -> dict:
    """A copy of `table` with `value` at the dotted path (list indices allowed)."""
    out = copy.deepcopy(table)
    parts = dotted.split(".")
    node: Any = out
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            idx = int(part)
            if idx >= len(node):
                raise InputError(where, key, f"indexes past the end of a list of {len(node)}", dotted)
            node = node[idx]
        else:
            node = node.setdefault(part, [] if nxt.isdigit() else {})
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise InputError(where, key, "must end in a key, not past a list", dotted)
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise InputError(where, key, "must lead to a table", dotted)
    return out


KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$"
LR_EXAMPLES = '"lr", "learning_rate", "chain.1.learning_rate"'


class GridRange(SweepRange):
    lr: Optional[list[Positive]] = Field(None, min_length=1)


class GridConvention(Convention):
    lr_key: Optional[str] = Field(None, min_length=1, pattern=KEY_PATTERN)


class GridFile(SweepFile):
    sweep: GridRange
    conventions: dict[str, GridConvention] = Field(min_length=1)
