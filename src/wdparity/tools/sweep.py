"""Sweeps: the same nominal knob over a range of lambda, natively in every framework convention.

The seed 002 chapter's closing experiment, at scale: final test loss against the *nominal* lambda,
one curve per framework convention ("weight_decay = lambda" in torch, "L2(lambda)" in Keras, ...).
Where conventions agree the curves coincide; a factor of 2 shifts a curve by log10(2); a mask or a
coupling shows as a different shape. Every point is a native run in its framework's worker; `wdparity run`
trains them beside the cases, vectorized where the backend can (grid.py).

The file format is in spec/sweepfile.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from wdparity.run.cases import load_run
from wdparity.spec import budget
from wdparity.spec.casefile import read_toml
from wdparity.spec.errors import from_validation_error
from wdparity.spec.sweepfile import SweepFile, set_path


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


CSV_FIELDS = ("sweep", "convention", "label", "backend", "lambda", "lr", "status", "train_loss", "test_loss", "reason")


def grid_csv(results) -> str:
    """`wdparity sweep --csv FILE`: one row per config (grid.GridResult), empty cells where no loss was measured."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        for name, conv in result.conventions.items():
            for c in conv["configs"]:
                writer.writerow({"sweep": result.path, "convention": name, "label": conv["label"],
                                 "backend": conv["backend"], "lambda": repr(float(c["lambda"])), "lr": repr(float(c["lr"])),
                                 "status": c["status"], "reason": c.get("reason") or "",
                                 **{k: "" if c[k] is None else repr(float(c[k])) for k in ("train_loss", "test_loss")}})
    return buf.getvalue()
