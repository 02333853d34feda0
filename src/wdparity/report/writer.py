"""Writes report.json, report.md (and report.html when available) into --out, atomically.

Each file is written to a temporary file in the same folder and renamed into place, so an
interrupted run (SIGINT) leaves the previous report intact. Only the fixed file names below are
ever written: nothing from a case file becomes a path.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from wdparity.judge.check import core_versions
from wdparity.report import markdown


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the report from other users
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def summary(results) -> dict:
    claims = [r.json["claim"] for r in results]
    causes = sorted({c for r in results for p in r.json["pairs"] if p["verdict"] != "equivalent" for c in p["causes"]})
    return {
        "cases": len(results),
        "claims_hold": sum(c["holds"] is True for c in claims),
        "claims_fail": sum(c["holds"] is False for c in claims),
        "claims_unverified": sum(c["holds"] is None for c in claims),
        "runs_error": sum(r["status"] == "error" for res in results for r in res.json["runs"].values()),
        "runs_skipped": sum(r["status"] == "skipped" for res in results for r in res.json["runs"].values()),
        "cause_labels_found": causes,
        "unexplained": [r.json["case"] for r in results if any("unexplained" in p["causes"] for p in r.json["pairs"])],
    }


def report_json(results, sweeps=()) -> dict:
    versions = core_versions()
    for res in list(results) + list(sweeps):
        versions.update(res.json["versions"] if hasattr(res, "json") else res.versions)
    cases = [{**res.json, "sources": res.case.sources} for res in results]
    doc = {"versions": dict(sorted(versions.items())), "cases": cases, "summary": summary(results)}
    if sweeps:
        doc["sweeps"] = [s.to_json() for s in sweeps]
    return doc


def write_reports(results, out: Path, plots: bool = True, sweeps=()) -> list[Path]:
    doc = report_json(results, sweeps)
    written = []
    path = out / "report.json"
    atomic_write(path, json.dumps(doc, indent=2))
    written.append(path)
    path = out / "report.md"
    atomic_write(path, markdown.render(doc))
    written.append(path)
    try:
        from wdparity.report import html
    except ImportError:  # the HTML writer is optional until its dependencies are present
        return written
    path = out / "report.html"
    atomic_write(path, html.render(doc, results, plots=plots, sweeps=sweeps))
    written.append(path)
    return written
