"""Sweeps: the same nominal knob over a range of lambda, natively in every framework convention.

The seed 002 chapter's closing experiment, at scale: final test loss against the *nominal* lambda,
one curve per framework convention ("weight_decay = lambda" in torch, "L2(lambda)" in Keras, ...).
Where conventions agree the curves coincide; a factor of 2 shifts a curve by log10(2); a mask or a
coupling shows as a different shape. Every point is a native run in its framework's worker; `wdparity run`
trains them beside the cases, vectorized where the backend can (grid.py).

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
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from . import budget
from .case import RUN_NAME, load_run, read_toml
from .errors import InputError, from_validation_error
from .spec import NonNeg, Strict, Task, fail


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


@dataclass
class SweepResult:
    path: str
    title: str
    sources: list[str]
    values: list[float]
    curves: dict[str, dict]          # name -> {"label", "backend", "test_loss": [...], "train_loss": [...], "status": [...]}
    versions: dict[str, str]

    def to_json(self) -> dict:
        return {"sweep": self.path, "title": self.title, "sources": self.sources, "values": self.values,
                "conventions": self.curves, "versions": self.versions}


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


def load_sweep(path: str):
    data = read_toml(Path(path))
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, path, data)
    budget.check_grid(path, spec.task, data, spec.conventions, len(spec.sweep.values))
    runs = {}
    for name, conv in spec.conventions.items():
        for i, lam in enumerate(spec.sweep.values):
            raw = set_path(conv.run, conv.key, float(conv.factor * lam), path, f"conventions.{name}.key")
            runs[(name, i)] = load_run(f"{name}", raw, spec.task, path, {})
    return spec, runs


def from_grid(grid) -> SweepResult:
    """A lambda-only grid's result (grid.GridResult, trained vectorized where it can be) as a sweep's."""
    curves = {name: {"label": conv["label"], "backend": conv["backend"],
                     "test_loss": [c["test_loss"] for c in conv["configs"]],
                     "train_loss": [c["train_loss"] for c in conv["configs"]],
                     "status": [c["status"] for c in conv["configs"]]} for name, conv in grid.conventions.items()}
    return SweepResult(grid.path, grid.title, list(grid.sources), list(grid.lambdas), curves, grid.versions)


def sweep_figure(result: SweepResult) -> str:
    """Final test (solid) and train (dotted) loss against nominal lambda, one colour per convention."""
    from .report.plots import sweep_figure as draw

    return draw(result)
