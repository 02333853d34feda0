"""What `wdparity sweep` shows and writes: a console table, DIR/sweep.json and DIR/sweep.html.

Why a module of its own: grid.py trains and collects; this turns a GridResult into what a person
reads. The figure is the seed 002 chapter's closing plot at scale: final test loss against the
nominal lambda, per framework convention. A lambda x lr grid has 8 curves per convention, so the
first panel draws each convention's best-lr envelope (min over lr at each lambda, where conventions
agree the envelopes coincide), and one small panel per convention draws every lr. The SVG is
written here directly (a few axes and polylines), with no plotting library.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from .grid import GridResult

CONV_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
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


# ---------------------------------------------------------------- SVG
def _decades(lo: float, hi: float) -> list[int]:
    return list(range(math.floor(lo), math.ceil(hi) + 1))


def _panel(x0: float, y0: float, w: float, h: float, title: str, lines: list[tuple[np.ndarray, np.ndarray, str, float]],
           xr: tuple[float, float], yr: tuple[float, float], zero_at: Optional[float], xlabel: bool) -> list[str]:
    """One log-log panel: frame, decade grid and labels, polylines (broken at non-finite values)."""
    left, top, right, bottom = x0 + 46, y0 + 22, x0 + w - 8, y0 + h - (34 if xlabel else 22)
    fx = lambda v: left + (math.log10(v) - xr[0]) / (xr[1] - xr[0]) * (right - left)     # noqa: E731
    fy = lambda v: bottom - (math.log10(v) - yr[0]) / (yr[1] - yr[0]) * (bottom - top)   # noqa: E731
    out = [f'<rect x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" height="{bottom - top:.1f}" '
           'fill="#fff" stroke="#444" stroke-width="0.8"/>',
           f'<text x="{(left + right) / 2:.1f}" y="{y0 + 14:.1f}" font-size="11" text-anchor="middle">'
           f'{html.escape(title)}</text>']
    for k in _decades(*xr):
        if xr[0] <= k <= xr[1]:
            px = fx(10.0 ** k)
            out.append(f'<path d="M{px:.1f} {top:.1f}V{bottom:.1f}" stroke="#e3e3e3" stroke-width="0.8"/>')
            out.append(f'<text x="{px:.1f}" y="{bottom + 12:.1f}" font-size="9" text-anchor="middle">1e{k}</text>')
    for k in _decades(*yr):
        if yr[0] <= k <= yr[1]:
            py = fy(10.0 ** k)
            out.append(f'<path d="M{left:.1f} {py:.1f}H{right:.1f}" stroke="#e3e3e3" stroke-width="0.8"/>')
            out.append(f'<text x="{left - 4:.1f}" y="{py + 3:.1f}" font-size="9" text-anchor="end">1e{k}</text>')
    if zero_at is not None:
        px = fx(zero_at)
        out.append(f'<path d="M{px:.1f} {top:.1f}V{bottom:.1f}" stroke="#999" stroke-width="0.6" '
                   'stroke-dasharray="3 2"/>')
        out.append(f'<text x="{px + 3:.1f}" y="{top + 10:.1f}" font-size="9" fill="#555">λ = 0</text>')
    if xlabel:
        out.append(f'<text x="{(left + right) / 2:.1f}" y="{y0 + h - 6:.1f}" font-size="10" text-anchor="middle">'
                   'nominal λ (the number written in each framework\'s knob)</text>')
    for xs, ys, color, width in lines:
        ok = np.isfinite(xs) & np.isfinite(ys) & (ys > 0)
        runs, cur = [], []
        for x, y, good in zip(xs, ys, ok):
            if good:
                cur.append(f"{fx(x):.1f},{fy(y):.1f}")
            elif cur:
                runs.append(cur)
                cur = []
        runs += [cur] if cur else []
        for pts in runs:
            if len(pts) == 1:
                cx, cy = pts[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            else:
                out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" '
                           f'stroke-width="{width:g}" stroke-linejoin="round"/>')
    return out


def _legend(x: float, y: float, entries: list[tuple[str, str]], per_row: int, col_w: float) -> list[str]:
    out = []
    for i, (label, color) in enumerate(entries):
        r, c = divmod(i, per_row)
        lx, ly = x + c * col_w, y + r * 15
        out.append(f'<path d="M{lx:.1f} {ly:.1f}h18" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{lx + 22:.1f}" y="{ly + 3.5:.1f}" font-size="9.5">{html.escape(label)}</text>')
    return out


def grid_figure(result: GridResult) -> str:
    """Envelope panel (best lr per lambda, one line per convention), then one panel per convention, one line per lr."""
    lams = np.array(result.lambdas, dtype=float)
    positive = lams[lams > 0]
    zero_at = positive.min() / 3 if positive.size and (lams == 0).any() else None
    xs = np.where(lams > 0, lams, zero_at if zero_at is not None else np.nan)
    mats = {n: result.matrix(n) for n in result.conventions}
    finite = np.concatenate([m[np.isfinite(m) & (m > 0)] for m in mats.values()] + [np.array([1.0])])
    fin_x = xs[np.isfinite(xs)]
    xr = (math.log10(fin_x.min()) - 0.1, math.log10(fin_x.max()) + 0.1) if fin_x.size else (-1.0, 1.0)
    yr = (math.log10(finite.min()) - 0.1, math.log10(finite.max()) + 0.1)
    W = 920.0
    names = list(result.conventions)
    out = _panel(0, 0, W * 0.62, 300, "best lr per λ (envelope over the lr axis)" if result.lrs else "final test loss",
                 [(xs, best_over_lr(result, n)[0], CONV_COLORS[i % 8], max(1.0, 3.4 - 0.6 * i))
                  for i, n in enumerate(names)],   # wide to narrow: coinciding conventions stay visible
                 xr, yr, zero_at, True)
    out += _legend(W * 0.64, 30, [(result.conventions[n]["label"], CONV_COLORS[i % 8]) for i, n in enumerate(names)],
                   1, W * 0.36)
    height = 310.0
    if result.lrs and len(result.lrs) > 1:
        per_row, pw, ph = 3, W / 3, 220.0
        for i, n in enumerate(names):
            r, c = divmod(i, per_row)
            lines = [(xs, mats[n][:, j], LR_COLORS[j * len(LR_COLORS) // len(result.lrs)], 1.2)
                     for j in range(len(result.lrs))]
            out += _panel(c * pw, height + r * ph, pw, ph, f"{n} ({result.conventions[n]['mode']})", lines, xr, yr,
                          zero_at, False)
        height += -(-len(names) // per_row) * ph + 8
        out += _legend(10, height, [(f"lr {lr:g}", LR_COLORS[j * len(LR_COLORS) // len(result.lrs)])
                                    for j, lr in enumerate(result.lrs)], 8, W / 8)
        height += 18
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W:g} {height:g}" width="{W:g}" '
            f'height="{height:g}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" role="img" '
            f'aria-label="final test loss against lambda per convention">')
    return "\n".join([head, '<rect width="100%" height="100%" fill="#fff"/>', *out, "</svg>"])


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
    from .check import core_versions
    from .report.writer import atomic_write

    doc = document(results, mode, core_versions())
    atomic_write(out / "sweep.json", json.dumps(doc, indent=1, allow_nan=False))
    atomic_write(out / "sweep.html", render_html(doc, results, plots))
    return [out / "sweep.json", out / "sweep.html"]
