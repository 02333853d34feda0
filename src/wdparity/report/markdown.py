"""report.md: the catalogue as Markdown tables a person can read in a terminal or on GitHub."""

from __future__ import annotations


def _cell(x) -> str:
    text = "—" if x is None or x == [] else (", ".join(map(str, x)) if isinstance(x, list) else str(x))
    return text.replace("|", "\\|").replace("\n", " ")


def _num(x, fmt=".2e") -> str:
    return "—" if x is None else format(x, fmt)


def render(doc: dict) -> str:
    s = doc["summary"]
    lines = ["# wdparity report", "",
             f"{s['claims_hold']} of {s['cases']} claims hold, {s['claims_fail']} fail, "
             f"{s['claims_unverified']} not verified; {s['runs_error']} runs errored, {s['runs_skipped']} skipped.", ""]
    if s["unexplained"]:
        lines += ["**Unexplained divergences (findings):** " + ", ".join(s["unexplained"]), ""]
    lines += ["## Versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in doc["versions"].items()]
    lines += ["", "## Summary", "", "| case | claim | holds | pairs | causes found | max rel err | first step |",
              "|---|---|---|---|---|---|---|"]
    for c in doc["cases"]:
        holds = {True: "yes", False: "**NO**", None: "—"}[c["claim"]["holds"]]
        verdicts = ", ".join(sorted({p["verdict"] for p in c["pairs"]}))
        errs = [p["max_rel_err"] for p in c["pairs"] if p["max_rel_err"] is not None]
        firsts = [p["first_divergent_step"] for p in c["pairs"] if p["first_divergent_step"] is not None]
        lines.append(f"| {_cell(c['title'])} | {_cell(c['claim']['expected'])} {_cell(c['claim']['causes'])} | {holds} "
                     f"| {verdicts} | {_cell(c['claim']['found_causes'])} | {_num(max(errs) if errs else None)} "
                     f"| {_cell(min(firsts) if firsts else None)} |")
    for c in doc["cases"]:
        lines += ["", f"## {_cell(c['title'])}", "", f"`{_cell(c['case'])}`", ""]
        if c["claim"]["reason"]:
            lines += [f"Claim: {_cell(c['claim']['reason'])}", ""]
        lines += ["| run | backend | dtype | status | fidelity | train loss | test loss | ‖w‖ |", "|---|---|---|---|---|---|---|---|"]
        for name, r in c["runs"].items():
            fid = r["fidelity"] or {}
            final = r["final"] or {}
            lines.append(f"| {_cell(name)} | {r['backend']} | {r['dtype']} | {r['status']} | {_num(fid.get('max_rel_err'))} "
                         f"| {_num(final.get('train_loss'), '.4g')} | {_num(final.get('test_loss'), '.4g')} "
                         f"| {_num(final.get('weight_l2'), '.4g')} |")
        lines += ["", "| a | b | verdict | max rel err | tolerance | first step | decidable steps | tensor | causes |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in c["pairs"]:
            verdict = p["verdict"] + (" (float64)" if p.get("judged_in") == "float64" else "")
            lines.append(f"| {_cell(p['a'])} | {_cell(p['b'])} | {verdict} | {_num(p['max_rel_err'])} | {_num(p.get('tol'))} "
                         f"| {_cell(p['first_divergent_step'])} | {_cell(p.get('decidable_steps'))} "
                         f"| {_cell(p['tensor'])} | {_cell(p['causes'])} |")
        for name, r in c["runs"].items():
            for f in r.get("findings") or []:
                lines.append(f"\n- {_cell(name)}: finding `{f['id']}` ({'modelled' if f['modelled'] else 'not modelled'}): "
                             f"{_cell(f['text'])} ({_cell(f['source'])})")
        for name, r in c["runs"].items():
            if r["reason"]:
                lines.append(f"\n- {_cell(name)}: {_cell(r['reason'])}")
        if c.get("sources"):
            lines += ["", "Sources: " + " ".join(f"<{_cell(s)}>" for s in c["sources"])]
    return "\n".join(lines) + "\n"
