"""What `wdparity sweep` shows and writes: a console table, DIR/sweep.json and DIR/sweep.html.

Why a module of its own: grid.py trains and collects; this turns a GridResult into what a person
reads. The figure is the seed 002 chapter's closing plot at scale: final test loss against the
nominal lambda, per framework convention. A lambda x lr grid has 8 curves per convention, so the
first panel draws each convention's best-lr envelope (min over lr at each lambda, where conventions
agree the envelopes coincide), and one small panel per convention draws every lr, with the report's
own SVG plotter (report/svgplot.py).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from wdparity.tools.grid import GridResult

LR_COLORS = ("#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#e0c91f")   # viridis


# ---------------------------------------------------------------- numbers
def best_over_lr(result: GridResult, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(best test loss, its lr) per lambda, NaN where no lr gave a finite loss."""
    m = result.matrix(name)
    lrs = np.array([c["lr"] for c in result.conventions[name]["configs"]], dtype=float).reshape(m.shape)
    best, at = np.full(m.shape[0], np.nan), np.full(m.shape[0], np.nan)
    for i, row in enumerate(m):
        if np.isfinite(row).any():
            j = int(np.nanargmin(row))
            best[i], at[i] = row[j], lrs[i, j]
    return best, at


def status_counts(conv: dict) -> str:
    counts: dict[str, int] = {}
    for c in conv["configs"]:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def document(results: list[GridResult], mode: str, core: dict[str, str]) -> dict:
    versions = dict(core)
    for r in results:
        versions.update(r.versions)
    return {"mode": mode, "versions": dict(sorted(versions.items())), "sweeps": [r.to_json() for r in results]}


# ---------------------------------------------------------------- console
def print_grid(result: GridResult, console=None) -> None:
    """Two tables: how each convention ran, then final test loss with lambda down and conventions across."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    runs = Table(title=f"{result.title}  ({result.path})", title_justify="left")
    for col in ("convention", "backend", "mode", "seconds", "configs"):
        runs.add_column(col, no_wrap=col != "configs")
    for name, conv in result.conventions.items():
        runs.add_row(name, conv["backend"], conv["mode"], f"{conv['seconds']:.2f}", status_counts(conv))
    console.print(runs)
    what = "best final test loss over lr (@ that lr)" if result.lrs else "final test loss"
    console.print(what, highlight=False)
    losses = Table()
    losses.add_column("λ", justify="right", no_wrap=True)
    best = {}
    for name in result.conventions:
        losses.add_column(name, justify="right")
        best[name] = best_over_lr(result, name)
    for i, lam in enumerate(result.lambdas):
        cells = []
        for name in result.conventions:
            b, a = best[name][0][i], best[name][1][i]
            cells.append("—" if not np.isfinite(b) else f"{b:.3g}" + (f" [dim]@{a:g}[/dim]" if result.lrs else ""))
        losses.add_row(f"{lam:g}", *cells)
    console.print(losses)
    console.print("[dim]seconds: training time reported by the workers (framework import excluded)[/dim]",
                  highlight=False)


# ---------------------------------------------------------------- SVG (report/svgplot.py, as the report's figures)
def grid_figure(result: GridResult) -> str:
    """Envelope panel (best lr per lambda, one line per convention), then one panel per convention, one line per lr."""
    from wdparity.report.svgplot import Figure, color, legend

    lams = np.array(result.lambdas, dtype=float)
    positive = lams[lams > 0]
    zero_at = positive.min() / 3 if positive.size else 1e-3   # lambda = 0 drawn left of the smallest value
    xs = np.where(lams > 0, lams, zero_at)
    has_zero = bool((lams == 0).any())
    names = list(result.conventions)
    many = bool(result.lrs) and len(result.lrs) > 1
    per_row, pad, top_h, panel_h, width, legend_w = 3, 8.0, 330.0, 230.0, 940.0, 320.0
    rows = -(-len(names) // per_row) if many else 0
    height = top_h + rows * panel_h + (84.0 if many else 0.0)
    fig = Figure(width, height, label=f"figure: {result.title}")
    ax = fig.add_axes((pad, pad, width - legend_w - 2 * pad, top_h - 2 * pad), xlog=True, ylog=True,
                      title="final test loss, best lr per λ" if many else "final test loss",
                      xlabel="nominal λ (the number written in each framework's knob)", ylabel="final test loss",
                      top_note=14 if has_zero else 0)
    entries = []
    for i, name in enumerate(names):   # wide to narrow: conventions that coincide all stay visible
        ax.plot(xs, best_over_lr(result, name)[0], color(i), width=max(1.0, 3.4 - 0.6 * i), marker=not many)
        entries.append((f"{name}: {result.conventions[name]['label']}", color(i), None, False))
    if has_zero:
        ax.vline(zero_at, "#999", dash="dashed", label="λ = 0")
    fig.extra += legend(width - legend_w, pad + 24, legend_w - pad, top_h - 60, entries, size=9.5)[0]
    if many:
        shade = [LR_COLORS[j * len(LR_COLORS) // len(result.lrs)] for j in range(len(result.lrs))]
        pw = width / per_row
        for i, name in enumerate(names):
            r, c = divmod(i, per_row)
            sub = fig.add_axes((c * pw + pad, top_h + r * panel_h, pw - 2 * pad, panel_h - pad), xlog=True, ylog=True,
                               title=f"{name} ({result.conventions[name]['mode']})", title_size=10.5)
            m = result.matrix(name)
            for j in range(len(result.lrs)):
                sub.plot(xs, m[:, j], shade[j], width=1.2)
            if has_zero:
                sub.vline(zero_at, "#999", dash="dashed")
        lr_entries = [(f"lr {lr:g}", shade[j], None, False) for j, lr in enumerate(result.lrs)]
        fig.extra += legend(pad, top_h + rows * panel_h + 4, width - 2 * pad, 76, lr_entries,
                            title="per convention: final test loss against λ, one line per lr", size=9.5)[0]
    return fig.svg()


# ---------------------------------------------------------------- HTML and files
STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
         "text-align:right}th:first-child,td:first-child{text-align:left}.dim{color:#777}")


def _detail(result: GridResult, name: str) -> str:
    conv = result.conventions[name]
    cols = result.lrs or [None]
    rows = []
    for i, lam in enumerate(result.lambdas):
        cells = []
        for j in range(len(cols)):
            c = conv["configs"][i * len(cols) + j]
            cells.append(f"<td>{c['test_loss']:.4g}</td>" if c["test_loss"] is not None else
                         f"<td class=dim title=\"{html.escape(c['reason'] or '')}\">{html.escape(c['status'])}</td>")
        rows.append(f"<tr><td>{lam:g}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>lr {lr:g}</th>" if lr is not None else "<th>test loss</th>" for lr in cols)
    return (f"<details><summary>{html.escape(name)}: {html.escape(conv['label'])} — {conv['mode']}, "
            f"{conv['seconds']:.2f} s, {status_counts(conv)}</summary><table><tr><th>λ</th>{head}</tr>"
            f"{''.join(rows)}</table></details>")


def render_html(doc: dict, results: list[GridResult], plots: bool = True) -> str:
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>wdparity sweep</title><style>{STYLE}"
             "</style></head><body><h1>wdparity sweep</h1>",
             f"<p>mode: {html.escape(doc['mode'])}; versions: "
             + html.escape(", ".join(f"{k} {v}" for k, v in doc["versions"].items())) + "</p>"]
    for r in results:
        parts.append(f"<section><h2>{html.escape(r.title)}</h2><p class=dim>{html.escape(r.path)}; "
                     f"λ × lr = {len(r.lambdas)} × {len(r.lrs or [None])}</p>")
        if r.sources:
            parts.append("<p>" + " ".join(f'<a href="{html.escape(s, quote=True)}">{html.escape(s)}</a>'
                                          for s in r.sources) + "</p>")
        if plots:
            parts.append(grid_figure(r))
        parts += [_detail(r, name) for name in r.conventions]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(results: list[GridResult], out: Path, mode: str, plots: bool = True) -> list[Path]:
    from wdparity.judge.check import core_versions
    from wdparity.report.writer import atomic_write

    doc = document(results, mode, core_versions())
    atomic_write(out / "sweep.json", json.dumps(doc, indent=1, allow_nan=False))
    atomic_write(out / "sweep.html", render_html(doc, results, plots))
    return [out / "sweep.json", out / "sweep.html"]
