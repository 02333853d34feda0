"""JUnit XML for CI servers (`--junit FILE` on run and check), and the case table as plain text.

One testcase per case file: classname the file's directory, name its stem. A claim that fails, a run that
errored or is off its fidelity, or a claim undecidable on its steps is a <failure> whose message is the
reason and whose text is the table `wdparity check` prints (without colour); a claim left unverified only
because a framework is not installed is <skipped> with the install command. The versions are <properties>.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional


def case_text(result: dict, width: int = 200) -> str:
    """The table `wdparity check` prints, as plain text (rich markup rendered, no colour codes)."""
    from rich.console import Console

    from wdparity.report.console import print_case

    buf = io.StringIO()
    print_case(result, Console(file=buf, width=width, color_system=None, force_terminal=False, soft_wrap=True))
    return buf.getvalue()


def outcome(result: dict) -> tuple[str, Optional[str]]:
    """("passed" | "failed" | "skipped", reason) for one case's contract JSON, by the CLI's exit-code rule."""
    claim, runs = result["claim"], result["runs"]
    bad = [f"{n}: {r['reason'] or r['status']}" for n, r in runs.items() if r["status"] == "error"]
    bad += [f"{n} is off its own semantics: {(r['fidelity'] or {}).get('reason') or 'fidelity fails'}"
            for n, r in runs.items() if (r["fidelity"] or {}).get("holds") is False]
    if claim["holds"] is False:
        return "failed", f"claim {claim['expected']} fails: {claim['reason']}"
    if bad:
        return "failed", "; ".join(bad)
    undecidable = [p for p in result["pairs"] if p["verdict"] == "undecidable"]
    if claim["expected"] and claim["holds"] is None and undecidable:
        return "failed", claim["reason"] or "undecidable"
    skipped = [f"{n}: {r['reason']}" for n, r in runs.items() if r["status"] == "skipped"]
    if claim["expected"] and claim["holds"] is None and skipped:
        return "skipped", "; ".join(skipped)
    return "passed", None


def junit_xml(results, suite: str = "wdparity") -> str:
    cases = [res.json if hasattr(res, "json") else res for res in results]
    versions: dict[str, str] = {}
    for c in cases:
        versions.update(c["versions"])
    counts = {"failed": 0, "skipped": 0}
    root = ET.Element("testsuites", name=suite)
    ts = ET.SubElement(root, "testsuite", name=suite)
    props = ET.SubElement(ts, "properties")
    for key, value in sorted(versions.items()):
        ET.SubElement(props, "property", name=key, value=str(value))
    total_time = 0.0
    for c in cases:
        path = Path(c["case"])
        seconds = sum(float(r.get("seconds") or 0.0) for r in c["runs"].values())
        total_time += seconds
        tc = ET.SubElement(ts, "testcase", classname=str(path.parent), name=path.stem, file=str(path),
                           time=f"{seconds:.3f}")
        state, reason = outcome(c)
        if state == "failed":
            counts["failed"] += 1
            el = ET.SubElement(tc, "failure", message=reason or "", type="wdparity")
            el.text = case_text(c)
        elif state == "skipped":
            counts["skipped"] += 1
            ET.SubElement(tc, "skipped", message=reason or "")
        else:
            ET.SubElement(tc, "system-out").text = case_text(c)
    for el in (root, ts):
        el.set("tests", str(len(cases)))
        el.set("failures", str(counts["failed"]))
        el.set("errors", "0")
        el.set("skipped", str(counts["skipped"]))
        el.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(results, path: Path) -> Path:
    from wdparity.report.writer import atomic_write

    atomic_write(Path(path), junit_xml(results))
    return Path(path)
