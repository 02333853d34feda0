"""The release report (releases.json + releases.md): per claim and per release holds / fails / not runnable, and
for each claim whose verdict, causes or fidelity changed, the first release where it changed and by how much.

Built from plain case JSON (the contract of `wdparity check --json`), so it is tested on synthetic inputs as well as
on real runs. A release's outcome for a claim:
  holds          the claim holds
  fails          every run ran and the claim does not hold (a verdict, a cause or a fidelity off)
  not runnable   a run errored or was skipped there (the reason says why: a keyword the release lacks, a venv absent)
  not verified   every run ran but the claim could not be decided (undecidable steps)
  no claim       the case states no claim
"""

from __future__ import annotations

from typing import Optional

OUTCOMES = ("holds", "fails", "not runnable", "not verified", "no claim")


def outcome(case: dict) -> tuple[str, Optional[str]]:
    """(outcome, reason) of one case's JSON."""
    claim = case.get("claim") or {}
    runs = case.get("runs", {})
    broken = {n: r for n, r in runs.items() if r.get("status") in ("error", "skipped")}
    if claim.get("expected") is None:
        return "no claim", claim.get("reason")
    if broken:
        return "not runnable", "; ".join(f"{n}: {r.get('reason')}" for n, r in sorted(broken.items()))
    if claim.get("holds") is True:
        return "holds", None
    if claim.get("holds") is False:
        return "fails", claim.get("reason")
    return "not verified", claim.get("reason")


def fingerprint(case: dict) -> dict:
    """What is compared between releases: the outcome, the causes found, each pair's verdict and causes, each
    run's fidelity (holds or not), with the measured figures beside them."""
    kind, reason = outcome(case)
    pairs = {f"{p['a']} vs {p['b']}": {"verdict": p.get("verdict"), "causes": sorted(p.get("causes") or []),
                                       "max_rel_err": p.get("max_rel_err"),
                                       "first_divergent_step": p.get("first_divergent_step")}
             for p in case.get("pairs", [])}
    runs = sorted(case.get("runs", {}).items())
    fidelity = {n: {"holds": (r.get("fidelity") or {}).get("holds"),
                    "max_rel_err": (r.get("fidelity") or {}).get("max_rel_err"), "status": r.get("status")}
                for n, r in runs}
    versions = {n: dict(r.get("versions") or {}) for n, r in runs}
    found = sorted((case.get("claim") or {}).get("found_causes") or [])
    return {"outcome": kind, "reason": reason, "found_causes": found, "pairs": pairs, "fidelity": fidelity,
            "versions": versions}


def _both(before: dict, after: dict, key: str) -> list:
    return [before.get(key), after.get(key)]


def differences(before: dict, after: dict) -> dict:
    """What changed from one release's fingerprint to the next: {"verdict": ..., "causes": ..., "fidelity": ...}
    (each present only when it changed), with the measured figures on both sides."""
    out: dict = {}
    names = sorted(set(before["pairs"]) | set(after["pairs"]))
    pairs = {k: (before["pairs"].get(k, {}), after["pairs"].get(k, {})) for k in names}
    changed = {k: v for k, v in pairs.items() if v[0].get("verdict") != v[1].get("verdict")}
    if before["outcome"] != after["outcome"] or changed:
        out["verdict"] = {"outcome": [before["outcome"], after["outcome"]],
                          "pairs": {k: {"verdict": _both(*v, "verdict"), "max_rel_err": _both(*v, "max_rel_err")}
                                    for k, v in changed.items()}}
    causes = {k: _both(*v, "causes") for k, v in pairs.items() if v[0].get("causes") != v[1].get("causes")}
    if before["found_causes"] != after["found_causes"] or causes:
        out["causes"] = {"found": [before["found_causes"], after["found_causes"]], "pairs": causes}
    runs = sorted(set(before["fidelity"]) | set(after["fidelity"]))
    fid = {n: (before["fidelity"].get(n, {}), after["fidelity"].get(n, {})) for n in runs}
    fid = {n: v for n, v in fid.items() if v[0].get("holds") != v[1].get("holds")}
    if fid:
        out["fidelity"] = {n: {"holds": _both(*v, "holds"), "max_rel_err": _both(*v, "max_rel_err")}
                           for n, v in fid.items()}
    return out


def claim_rows(framework: str, releases: list[str], by_release: dict[str, dict[str, dict]]) -> list[dict]:
    """One row per case file: its fingerprint per release (in release order), every change between consecutive
    releases, and the first release where it changed. `by_release`: version -> case path -> case JSON."""
    paths = sorted({p for cases in by_release.values() for p in cases})
    rows = []
    for path in paths:
        prints = {v: fingerprint(by_release[v][path]) for v in releases if path in by_release.get(v, {})}
        some = next(by_release[v][path] for v in releases if path in by_release.get(v, {}))
        changes, order = [], [v for v in releases if v in prints]
        for prev, cur in zip(order, order[1:]):
            diff = differences(prints[prev], prints[cur])
            if diff:
                changes.append({"from": prev, "to": cur, **diff})
        rows.append({"framework": framework, "case": path, "title": some.get("title"),
                     "expected": (some.get("claim") or {}).get("expected"),
                     "causes": (some.get("claim") or {}).get("causes", []),
                     "releases": prints, "changes": changes,
                     "first_changed": changes[0]["to"] if changes else None})
    return rows


def build(plans: list, results: dict, skipped_reason: str = "no run of the framework's backend") -> dict:
    """releases.json from the matrix (tools/releases.py: plans and (framework, version) -> CaseResults)."""
    doc = {"frameworks": {}, "claims": []}
    for p in plans:
        versions = [r.version for r in p.releases]
        by_release = {r.version: {res.json["case"]: res.json for res in results.get((p.framework, r.version), [])}
                      for r in p.releases}
        measured = {}
        for r in p.releases:
            found = {}
            for case in by_release[r.version].values():
                for run in case["runs"].values():
                    if run.get("backend") == p.backend and run.get("status") == "ok":
                        found = {k: v for k, v in (run.get("versions") or {}).items()}
                        break
                if found:
                    break
            measured[r.version] = found
        rows = claim_rows(p.framework, versions, by_release)
        counts = {v: {o: sum(1 for row in rows if row["releases"].get(v, {}).get("outcome") == o) for o in OUTCOMES}
                  for v in versions}
        doc["frameworks"][p.framework] = {
            "backend": p.backend, "cases": len(p.cases), "skipped_cases": len(p.skipped),
            "skipped_because": skipped_reason,
            "releases": [{"version": r.version, "python": r.python, "source": r.source, "manifest": r.manifest,
                          "setup_seconds": r.setup_seconds, "measured_versions": measured[r.version],
                          "outcomes": counts[r.version]} for r in p.releases],
            "changed_claims": sum(1 for row in rows if row["changes"])}
        doc["claims"] += rows
    return doc


def _figures(pair: list) -> str:
    return f"(max rel err {_num(pair[0])} → {_num(pair[1])})"


def _change(row: dict, ch: dict) -> str:
    """One change in words: outcome and pair verdicts, causes, fidelity, and the reasons where it does not hold."""
    bits = []
    if "verdict" in ch:
        bits.append("outcome " + " → ".join(ch["verdict"]["outcome"]) + "".join(
            f"; {k}: {' → '.join(map(str, v['verdict']))} {_figures(v['max_rel_err'])}"
            for k, v in ch["verdict"]["pairs"].items()))
    if "causes" in ch:
        bits.append("causes " + " → ".join(str(c) for c in ch["causes"]["found"]))
    if "fidelity" in ch:
        bits.append("fidelity " + "; ".join(
            f"{n}: holds {_flag(v['holds'][0])} → {_flag(v['holds'][1])} {_figures(v['max_rel_err'])}"
            for n, v in ch["fidelity"].items()))
    sides = [(v, row["releases"][v]) for v in (ch["from"], ch["to"])]
    why = [f"{v}: {r['reason']}" for v, r in sides if r["outcome"] in ("not runnable", "fails", "not verified")
           and r.get("reason")]
    return "; ".join(bits) + (f" — {' | '.join(why)}" if why else "")


def _flag(x) -> str:
    return "—" if x is None else str(x).lower()


def _num(x) -> str:
    return "—" if x is None else f"{x:.3g}"


def render(doc: dict) -> str:
    """releases.md: per framework a claim x release table, then the changes with their figures, then versions."""
    out = ["# Release report", ""]
    for name, fw in doc["frameworks"].items():
        versions = [r["version"] for r in fw["releases"]]
        out += [f"## {name} (backend `{fw['backend']}`)", "",
                f"{fw['cases']} case files with a `{fw['backend']}` run; {fw['skipped_cases']} skipped "
                f"({fw['skipped_because']}). {fw['changed_claims']} changed between releases.", "",
                "| claim | " + " | ".join(versions) + " | first changed |",
                "|---|" + "---|" * len(versions) + "---|"]
        rows = [r for r in doc["claims"] if r["framework"] == name]
        for row in rows:
            cells = [row["releases"].get(v, {}).get("outcome", "—") for v in versions]
            out.append(f"| `{row['case']}` | " + " | ".join(cells) + f" | {row['first_changed'] or '—'} |")
        out += ["", "### Changes", ""]
        changed = [r for r in rows if r["changes"]]
        if not changed:
            out.append("None: every claim has the same outcome, causes and fidelity on every release.")
        for row in changed:
            out.append(f"- `{row['case']}` ({row['title']}): first changed in {row['first_changed']}")
            out += [f"  - {ch['from']} → {ch['to']}: " + _change(row, ch) for ch in row["changes"]]
        out += ["", "### Versions", "", "| release | interpreter | measured in the worker | installed |",
                "|---|---|---|---|"]
        for r in fw["releases"]:
            measured = ", ".join(f"{k} {v}" for k, v in sorted(r["measured_versions"].items())) or "—"
            m = r["manifest"]
            installed = (f"{m['installer']}, as of {m['as_of'] or 'now'}: " + ", ".join(
                f"{k} {v}" for k, v in m["companions"].items())) if m else r["source"]
            out.append(f"| {r['version']} | `{r['python']}` | {measured} | {installed} |")
        out.append("")
    return "\n".join(out)
