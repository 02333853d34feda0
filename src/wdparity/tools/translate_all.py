"""One setting in every framework, side by side: `translate --to all` and `wdparity.translate(..., to=...)`.

A source is a run of a case file, a `wdparity.describe()` Description, or a run table. Each registered
framework's nearest setting is found by translate_run (exact, exact after a rewrite, or approximate with its
reference residual), written as a `[runs.…]` table and as Python (tools/snippet.py), then every translation is
trained natively beside the source in one case (the check pipeline: fidelity, calibrated per-pair tolerance,
causes), so each row carries the residual measured in the framework itself, not only the reference's.
A framework that cannot express the setting, is not installed, or whose run fails says why in its row.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from wdparity.run import registry
from wdparity.run.backend import Inexpressible
from wdparity.run.cases import load_case, load_run
from wdparity.spec.casefile import read_toml
from wdparity.spec.errors import InputError
from wdparity.spec.models import Task
from wdparity.tools import snippet
from wdparity.tools.translate import Translation, toml_value, translate_run

SOURCE = "source"


@dataclass
class Source:
    name: str                 # the run's name ("source" for a Description or a bare table)
    table: dict               # its [runs.…] table, backend included
    task: dict                # the [task] table it runs on (raw: what a case file holds)
    where: str                # for messages


@dataclass
class Row:
    target: str
    status: str                               # exact | approximate | inexpressible | not installed | error
    translation: Optional[Translation] = None
    reason: Optional[str] = None
    python: Optional[str] = None              # the snippet, or None with python_reason
    python_reason: Optional[str] = None
    native: dict = field(default_factory=dict)   # the source-vs-target pair as trained natively (check JSON)


@dataclass
class SideBySide:
    source: Source
    rows: list[Row]
    case: dict                # the check JSON of the side-by-side case (source + every translation)


def source_of(obj: Any, run: Optional[str] = None, task: Optional[dict] = None) -> Source:
    """A case file (path, with run=NAME), a describe() Description, or a run table dict (with task=)."""
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        raw = read_toml(path)
        runs = raw.get("runs", {}) if isinstance(raw.get("runs"), dict) else {}
        if run not in runs:
            raise InputError(str(path), "--run", f"must be one of {sorted(runs)}", run)
        load_case(path)   # the whole case validates (exit 2 naming the key) before anything is translated
        return Source(run, dict(runs[run]), dict(raw.get("task", {})), str(path))
    table = getattr(obj, "run", obj)   # a Description holds its table as .run
    if not isinstance(table, dict) or "backend" not in table:
        raise TypeError(f"translate() takes a case file path, a wdparity.describe() Description or a run table dict "
                        f"with `backend`; got {type(obj).__name__}")
    return Source(run or SOURCE, dict(table), dict(task or {}), "describe()" if table is not obj else "the table")


def translate(obj: Any, to: str, run: Optional[str] = None, task: Optional[dict] = None, *, native: bool = True):
    """`to` a backend name: its Translation (with `.python`); `to="all"`: a SideBySide of every framework."""
    src = source_of(obj, run, task)
    case_task = Task.model_validate(src.task)
    loaded = load_run(src.name, src.table, case_task, src.where, {})
    if to != "all":
        return with_python(translate_run(loaded, case_task, to, src.where), loaded.task)
    rows = []
    for target in registry.targets():
        if target == "numpy":   # the float64 reference every row is measured against, not a framework
            continue
        try:
            t = translate_run(loaded, case_task, target, src.where)
        except Inexpressible as exc:
            rows.append(Row(target, "inexpressible", reason=str(exc)))
            continue
        except InputError as exc:   # e.g. a network the target does not train
            rows.append(Row(target, "inexpressible", reason=exc.expected))
            continue
        row = Row(target, "exact" if t.exact else "approximate", t)
        row.python, row.python_reason = _python(t.table, loaded.task)
        rows.append(row)
    case = _train_beside(src, rows) if native else {}
    return SideBySide(src, rows, case)


def with_python(t: Translation, task: Task) -> Translation:
    t.python, t.python_reason = _python(t.table, task)
    return t


def _python(table: dict, task: Task) -> tuple[Optional[str], Optional[str]]:
    try:
        return snippet.python_snippet(table, task), None
    except Inexpressible as exc:
        return None, str(exc)


def side_by_side_toml(src: Source, rows: list[Row]) -> str:
    """The case that trains the source and every translation together (a case file a user can keep)."""
    lines = [f"title = {toml_value(f'{src.name} of {src.where} in every framework (wdparity translate --to all)')}"]
    if src.task:
        lines.append("[task]")
        lines += [f"{k} = {toml_value(v)}" for k, v in src.task.items()]
    tables = [(src.name, src.table)]
    tables += [(r.translation.name, r.translation.table) for r in rows if r.translation is not None]
    for name, table in tables:
        lines.append(f"[runs.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _train_beside(src: Source, rows: list[Row]) -> dict:
    from wdparity.judge.check import check_cases

    if not any(r.translation for r in rows):
        return {}
    with tempfile.TemporaryDirectory(prefix="wdparity-translate-") as tmp:
        path = Path(tmp) / "side_by_side.toml"
        path.write_text(side_by_side_toml(src, rows), encoding="utf-8")
        case = check_cases([str(path)])[0].json
    name = src.name
    for row in rows:
        if row.translation is None:
            continue
        run = case["runs"].get(row.translation.name, {})
        if run.get("status") == "skipped":
            row.status, row.reason = "not installed", run.get("reason")
        elif run.get("status") == "unstable":   # the setting itself blows up on this task: measured, not a fault
            row.status, row.reason = "unstable", run.get("reason")
        elif run.get("status") not in ("ok", None):
            row.status, row.reason = "error", run.get("reason")
        pair = next((p for p in case["pairs"] if {p["a"], p["b"]} == {name, row.translation.name}), None)
        row.native = {"run": {k: run.get(k) for k in ("status", "reason", "fidelity", "versions")}, "pair": pair}
    return case


def _measured(row: Row) -> tuple[str, str, str]:
    """(native verdict, its max rel err, the pair's tolerance) as text for the side-by-side table."""
    pair = row.native.get("pair") or {}
    if not pair:
        return "-", "-", "-"
    err = pair.get("max_rel_err")
    tol = pair.get("tol")
    return (pair.get("verdict", "-") + (f" ({', '.join(pair['causes'])})" if pair.get("causes") else ""),
            f"{err:.2e}" if isinstance(err, (int, float)) else "-", f"{tol:.2e}" if isinstance(tol, (int, float)) else "-")


def to_text(sbs: SideBySide) -> str:
    """The side-by-side table, then each framework's table and Python, then why the others cannot."""
    src = sbs.source
    own = sbs.case.get("runs", {}).get(src.name, {})
    lines = [f"{src.name} ({src.table['backend']}, {src.where}) in every framework; each trained natively beside it:"]
    if own.get("status") not in ("ok", None):
        lines.append(f"the source run itself is {own['status']}: {own.get('reason')}")
    lines += [
             "", f"{'framework':<10} {'status':<14} {'native verdict':<28} {'max rel err':>11} {'tolerance':>10}"]
    for row in sbs.rows:
        verdict, err, tol = _measured(row)
        lines.append(f"{row.target:<10} {row.status:<14} {verdict:<28} {err:>11} {tol:>10}")
    for row in sbs.rows:
        if row.translation is None or row.status in ("not installed",):
            continue
        from wdparity.tools.translate import to_toml

        lines += ["", f"## {row.target}", to_toml(row.translation).rstrip()]
        lines += (["", "```python", row.python.rstrip(), "```"] if row.python
                  else [f"# no Python snippet: {row.python_reason}"])
    cannot = [r for r in sbs.rows if r.reason]
    if cannot:
        lines += ["", "Cannot express it, or did not run:"]
        lines += [f"- {r.target} ({r.status}): {r.reason}" for r in cannot]
    apart = [r for r in sbs.rows if not r.reason and (r.native.get("pair") or {}).get("verdict") == "diverges"]
    if apart:
        lines += ["", "Nearest setting only, and it measurably diverges natively:"]
        lines += [f"- {r.target}: differs in {', '.join(r.native['pair']['causes']) or 'unexplained'} "
                  f"({'; '.join(r.translation.notes) or 'no exact equivalent'})" for r in apart]
    return "\n".join(lines) + "\n"


def to_json(sbs: SideBySide) -> dict:
    from wdparity.tools.translate import to_json as one

    rows = []
    for r in sbs.rows:
        entry = {"to": r.target, "status": r.status, "reason": r.reason, "python": r.python,
                 "python_reason": r.python_reason, "native": r.native}
        if r.translation is not None:
            entry.update({k: v for k, v in one(r.translation, sbs.source.name, r.target).items() if k not in entry})
        rows.append(entry)
    return {"source": {"run": sbs.source.name, "table": sbs.source.table, "task": sbs.source.task,
                       "where": sbs.source.where}, "rows": rows, "versions": sbs.case.get("versions", {})}
