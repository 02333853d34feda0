"""report.html: one self-contained page (inline SVG plots), rendered by jinja2 with autoescape.

Every string that came from a case file (titles, sources, run names, reasons) is escaped by the
template engine; only the SVG that report/svgplot.py drew (its text escaped there) is inserted as markup.
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, Undefined, select_autoescape
from markupsafe import Markup

from wdparity.spec.network import LINEAR


def mask_coverage(case_json: dict) -> list[dict]:
    """Which tensors each run decays, and how (for the mask-coverage table): one cell per tensor of the model."""
    rows = []
    for name, run in case_json["runs"].items():
        cells = []
        for tensor in case_json.get("tensors", LINEAR):
            terms = [f"{r['norm']} {'coupled' if r['coupling'] == 'gradient' else 'decoupled'} {r['coefficient']:g}"
                     for r in run["semantics"]["decay"] if tensor in r["params"] and r["coefficient"]]
            cells.append(", ".join(terms))
        rows.append({"run": name, "backend": run["backend"], "cells": cells})
    return rows


def fmt(x, spec: str = ".3g") -> str:
    return "—" if x is None or isinstance(x, Undefined) else format(x, spec)


def render(doc: dict, results, plots: bool = True, sweeps=()) -> str:
    env = Environment(loader=PackageLoader("wdparity.report", "templates"),
                      autoescape=select_autoescape(["html"], default_for_string=True))
    env.filters["fmt"] = fmt
    figures = {}
    if plots:
        from wdparity.report.plots import case_figure

        for res in results:
            figures[res.case.path] = Markup(case_figure(res))
    cases = [{**c, "figure": figures.get(c["case"]), "coverage": mask_coverage(c)} for c in doc["cases"]]
    sweep_views = []
    for sw in sweeps:
        from wdparity.report.plots import sweep_figure

        sweep_views.append({**sw.to_json(), "figure": Markup(sweep_figure(sw)) if plots else None})
    return env.get_template("report.html").render(doc=doc, cases=cases, summary=doc["summary"], sweeps=sweep_views)
