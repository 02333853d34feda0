"""A small SVG line plotter: the report's figures in milliseconds instead of matplotlib's second each.

The report draws only line plots (linear or log axes, a few reference lines, legends), and matplotlib
spent most of a catalogue run laying out ticks and mathtext for them. This draws the same things as
plain SVG markup: nice ticks (1/2/5 x 10^k, decades on log axes), light grid, polylines broken at
NaN/inf (and at nonpositive values on log axes), text escaped for inlining in HTML, coordinates
rounded to 2 decimals so the same input always gives the same bytes. Layout is computed from
estimated text widths, so tick labels, titles and legends get the room they need.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import numpy as np

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",     # matplotlib's tab10
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
DASHES = {None: "", "dashed": "5 2.5", "dotted": "1.5 2"}
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
TICK_SIZE, LABEL_SIZE, TITLE_SIZE = 10, 10.5, 11.5
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def text_width(s: str, size: float) -> float:
    """Estimated rendered width (DejaVu-like sans-serif averages ~0.6 em a character)."""
    return 0.6 * size * len(s)


def _esc(s) -> str:
    return escape(_CONTROL.sub("", str(s)))


def _f(v: float) -> str:
    return f"{v:.2f}"


def text(x: float, y: float, s: str, size: float, anchor: str = "start", fill: str = "#222",
         max_width: float | None = None, rotate: bool = False) -> str:
    """One <text>; squeezed (textLength) when its estimated width exceeds max_width."""
    attrs = f'x="{_f(x)}" y="{_f(y)}" font-size="{size:g}"'
    if anchor != "start":
        attrs += f' text-anchor="{anchor}"'
    if fill != "#222":
        attrs += f' fill="{fill}"'
    if max_width is not None and text_width(s, size) > max_width:
        attrs += f' textLength="{_f(max_width)}" lengthAdjust="spacingAndGlyphs"'
    if rotate:
        attrs += f' transform="rotate(-90 {_f(x)} {_f(y)})"'
    return f"<text {attrs}>{_esc(s)}</text>"


# ---------------------------------------------------------------- ticks


def _num(v: float, spec: str) -> str:
    s = format(v, spec)
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant.rstrip('0').rstrip('.') if '.' in mant else mant}e{int(exp)}"
    return "0" if float(s) == 0 else s.replace("-", "−")


def tick_labels(values: list[float]) -> list[str]:
    """The shortest labels that tell every tick apart and read back as its value.

    Plain decimals (0.25, 150, 12000) while the largest magnitude is in [1e-3, 1e5), else 2.5e-7, 1.5e15."""
    if not values:
        return []
    step = min((abs(b - a) for a, b in zip(values, values[1:])), default=0.0) or abs(values[0]) or 1.0
    big = max(abs(v) for v in values)
    specs = [f".{d}f" for d in range(13)] if 1e-3 <= big < 1e5 else [f".{d}e" for d in range(13)]
    for spec in specs:
        labels = [_num(v, spec) for v in values]
        if len(set(labels)) == len(labels) and all(
                abs(float(lab.replace("−", "-")) - v) <= step * 1e-6 for lab, v in zip(labels, values)):
            return labels
    return labels


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Multiples of 1, 2 or 5 x 10^k inside [lo, hi]: as many as fit in `target` (at least 2 if any step gives 2)."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo] if math.isfinite(lo) else []
    mag = 10.0 ** math.floor(math.log10(span / target))
    best: list[float] = []
    for step in (m * mag for m in (20, 10, 5, 2, 1, 0.5)):          # coarse to fine
        nd = max(0, 1 - math.floor(math.log10(step)))
        k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        if k1 - k0 + 1 > target and len(best) >= 2:
            break
        best = [round(k * step, nd) + 0.0 for k in range(k0, k1 + 1)]
    return best


def log_ticks(lo: float, hi: float, target: int = 6) -> list[tuple[float, str]]:
    """(log10 position, label) for a log axis spanning 10**lo .. 10**hi: decades, else 1/2/5, else linear."""
    k0, k1 = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
    if k1 - k0 + 1 >= 2:
        stride = next(s for s in (1, 2, 3, 4, 5, 10, 20, 25, 50, 100, 1000) if (k1 - k0) / s < target)
        ks = [k for k in range(k0, k1 + 1) if k % stride == 0]             # round decades: 10^0, 10^5, ...
        return [(float(k), f"10^{k}") for k in (ks if len(ks) >= 2 else range(k0, k1 + 1, stride))]
    vals = [m * 10.0 ** k for k in range(k0 - 1, k1 + 2) for m in (1, 2, 5)]
    vals = [v for v in vals if lo - 1e-9 <= math.log10(v) <= hi + 1e-9]
    if len(vals) < 2:
        vals = [v for v in nice_ticks(10.0 ** lo, 10.0 ** hi, 4) if v > 0]
    return list(zip((math.log10(v) for v in vals), tick_labels(vals)))


def _label_markup(label: str, x: float, y: float, anchor: str) -> tuple[str, float]:
    """Tick label markup and its estimated width; "10^k" becomes 10 with a superscript k."""
    if label.startswith("10^"):
        exp = label[3:].replace("-", "−")
        w = text_width("10", TICK_SIZE) + text_width(exp, TICK_SIZE * 0.75)
        sup = f'<tspan dy="-4.5" font-size="{TICK_SIZE * 0.75:g}">{exp}</tspan>'
        return (f'<text x="{_f(x)}" y="{_f(y)}" font-size="{TICK_SIZE:g}" text-anchor="{anchor}">10{sup}</text>', w)
    return text(x, y, label, TICK_SIZE, anchor), text_width(label, TICK_SIZE)


# ---------------------------------------------------------------- axes


@dataclass
class Scale:
    log: bool
    lo: float = 0.0   # in log10 units on a log axis
    hi: float = 1.0

    def fit(self, values: list[np.ndarray], margin: float = 0.05) -> None:
        data = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values]) if values else np.zeros(0)
        with np.errstate(all="ignore"):
            data = data[np.isfinite(data) & (data > 0)] if self.log else data[np.isfinite(data)]
            if self.log:
                data = np.log10(data)
        if data.size == 0:
            self.lo, self.hi = (0.0, 1.0)
            return
        lo, hi = float(data.min()), float(data.max())
        if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300) or not math.isfinite(hi - lo):
            pad = 0.5 if self.log else (abs(lo) * 0.1 if lo else 1.0)
            lo, hi = (lo - pad, hi + pad) if math.isfinite(hi - lo) else (lo, lo + 1.0)
        pad = (hi - lo) * margin
        self.lo, self.hi = lo - pad, hi + pad

    def ticks(self, target: int) -> list[tuple[float, str]]:
        if self.log:
            return log_ticks(self.lo, self.hi, target)
        vals = nice_ticks(self.lo, self.hi, target)
        return list(zip(vals, tick_labels(vals)))

    def frac(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        with np.errstate(all="ignore"):
            if self.log:
                v = np.where(v > 0, np.log10(v), np.nan)
            return (v - self.lo) / (self.hi - self.lo)

    def frac_pos(self, p: float) -> float:
        """Where a tick position (log10 units on a log axis) falls, 0..1."""
        return (p - self.lo) / (self.hi - self.lo)


@dataclass
class Series:
    x: np.ndarray
    y: np.ndarray
    color: str
    width: float = 1.2
    dash: str | None = None
    marker: bool = False


@dataclass
class Axes:
    """One panel inside the box (x, y, w, h) of its figure; everything is laid out inside that box."""
    box: tuple[float, float, float, float]
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    xlog: bool = False
    ylog: bool = False
    title_size: float = TITLE_SIZE
    top_note: float = 0.0          # extra room above the frame for vline labels
    series: list[Series] = field(default_factory=list)
    hlines: list[tuple[float, str, str | None]] = field(default_factory=list)
    vlines: list[tuple[float, str, str | None, str]] = field(default_factory=list)
    note: str = ""

    def plot(self, x, y, color: str, width: float = 1.2, dash: str | None = None, marker: bool = False) -> None:
        self.series.append(Series(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
                                  color, width, dash, marker))

    def hline(self, y: float, color: str, dash: str | None = None) -> None:
        self.hlines.append((float(y), color, dash))

    def vline(self, x: float, color: str, dash: str | None = None, label: str = "") -> None:
        self.vlines.append((float(x), color, dash, label))

    def render(self) -> list[str]:
        bx, by, bw, bh = self.box
        sx, sy = Scale(self.xlog), Scale(self.ylog)
        sx.fit([s.x for s in self.series] + [np.array([v[0] for v in self.vlines])])
        sy.fit([s.y for s in self.series] + [np.array([h[0] for h in self.hlines])])
        top = by + (self.title_size * 1.5 if self.title else 4) + self.top_note
        bottom = by + bh - TICK_SIZE * 1.6 - (LABEL_SIZE * 1.4 if self.xlabel else 0)
        yticks = sy.ticks(max(3, min(8, int((bottom - top) / 28))))
        ylab = [_label_markup(lab, 0, 0, "end")[1] for _, lab in yticks]
        left = bx + max(ylab, default=0) + 8 + (LABEL_SIZE * 1.5 if self.ylabel else 0)
        right = bx + bw - 6
        width, height = right - left, bottom - top
        xticks = sx.ticks(7)
        while len(xticks) > 2 and sum(_label_markup(lab, 0, 0, "middle")[1] + 10 for _, lab in xticks) > width:
            xticks = sx.ticks(len(xticks) - 1)
        # inf and NaN (overflowed runs, nonpositive values on a log axis) become gaps, never coordinates
        X = lambda f: left + np.clip(np.where(np.isfinite(f), f, np.nan), -0.01, 1.01) * width   # noqa: E731
        Y = lambda f: bottom - np.clip(np.where(np.isfinite(f), f, np.nan), -0.01, 1.01) * height  # noqa: E731
        xpos = lambda p: left + sx.frac_pos(p) * width                                             # noqa: E731
        ypos = lambda p: bottom - sy.frac_pos(p) * height                                          # noqa: E731
        out = [f'<rect x="{_f(left)}" y="{_f(top)}" width="{_f(width)}" height="{_f(height)}" fill="#fff"/>']
        for stroke, xs, ys in (('stroke="#f0f0f0" stroke-width="0.6"', _minor(sx, xticks), _minor(sy, yticks)),
                               ('stroke="#e3e3e3" stroke-width="0.8"', [p for p, _ in xticks], [p for p, _ in yticks])):
            grid = [f"M{_f(xpos(p))} {_f(top)}V{_f(bottom)}" for p in xs]
            grid += [f"M{_f(left)} {_f(ypos(p))}H{_f(right)}" for p in ys]
            if grid:
                out.append(f'<path d="{"".join(grid)}" {stroke} fill="none"/>')
        vlines = [(float(sx.frac(np.array([v]))[0]), c, dash, label) for v, c, dash, label in self.vlines]
        vlines = [(left + f * width, c, dash, label) for f, c, dash, label in vlines if 0 <= f <= 1]
        for px, c, dash, _ in vlines:
            out.append(_line(px, top, px, bottom, c, 1.0, dash))
        for v, c, dash in self.hlines:
            f = float(sy.frac(np.array([v]))[0])
            if 0 <= f <= 1:                       # False for NaN
                out.append(_line(left, bottom - f * height, right, bottom - f * height, c, 0.9, dash))
        for s in self.series:
            out += _polyline(X(sx.frac(s.x)), Y(sy.frac(s.y)), s)
        out.append(f'<rect x="{_f(left)}" y="{_f(top)}" width="{_f(width)}" height="{_f(height)}" '
                   'fill="none" stroke="#444" stroke-width="0.8"/>')
        marks = []
        for p, lab in xticks:
            marks.append(f"M{_f(xpos(p))} {_f(bottom)}v3.5")
            out.append(_label_markup(lab, xpos(p), bottom + 4 + TICK_SIZE, "middle")[0])
        for p, lab in yticks:
            marks.append(f"M{_f(left)} {_f(ypos(p))}h-3.5")
            out.append(_label_markup(lab, left - 5, ypos(p) + TICK_SIZE * 0.35, "end")[0])
        if marks:
            out.append(f'<path d="{"".join(marks)}" stroke="#444" stroke-width="0.8"/>')
        out += [text(px, top - 3, label, TICK_SIZE * 0.9, "middle", fill="#555") for px, _, _, label in vlines if label]
        if self.xlabel:
            out.append(text(left + width / 2, by + bh - 3, self.xlabel, LABEL_SIZE, "middle", max_width=bw))
        if self.ylabel:
            out.append(text(bx + LABEL_SIZE, top + height / 2, self.ylabel, LABEL_SIZE, "middle",
                            max_width=bh, rotate=True))
        if self.title:
            out.append(text(left + width / 2, by + self.title_size * 1.1, self.title, self.title_size, "middle",
                            max_width=bw))
        if self.note:
            out.append(text(left + width / 2, top + height / 2, self.note, LABEL_SIZE, "middle", fill="#555"))
        return out


def _minor(scale: Scale, ticks: list[tuple[float, str]]) -> list[float]:
    """2..9 x 10^k grid positions on a log axis labelled at every decade (none otherwise)."""
    if not scale.log or len(ticks) < 2 or ticks[1][0] - ticks[0][0] != 1 or not ticks[0][1].startswith("10^"):
        return []
    logs = [k + math.log10(m) for k in range(math.floor(scale.lo), math.ceil(scale.hi)) for m in range(2, 10)]
    return [p for p in logs if scale.lo <= p <= scale.hi]


def _stroke(c: str, width: float, dash: str | None) -> str:
    d = f' stroke-dasharray="{DASHES[dash]}"' if dash else ""
    return f'stroke="{c}" stroke-width="{width:g}"{d}'


def _line(x0: float, y0: float, x1: float, y1: float, c: str, width: float, dash: str | None) -> str:
    return f'<path d="M{_f(x0)} {_f(y0)}L{_f(x1)} {_f(y1)}" {_stroke(c, width, dash)} fill="none"/>'


def _polyline(px: np.ndarray, py: np.ndarray, s: Series) -> list[str]:
    """One polyline per finite stretch; a lone finite point becomes a dot so it stays visible."""
    ok = np.isfinite(px) & np.isfinite(py)
    out = []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.view(np.int8), [0]))))
    for a, b in zip(edges[::2], edges[1::2]):
        xs, ys = np.round(px[a:b], 2), np.round(py[a:b], 2)
        if b - a == 1 and not s.marker:
            out.append(f'<circle cx="{_f(xs[0])}" cy="{_f(ys[0])}" r="{s.width:g}" fill="{s.color}"/>')
        elif b - a > 1:
            pts = ("%.2f,%.2f " * (b - a) % tuple(np.column_stack((xs, ys)).ravel().tolist()))[:-1]
            out.append(f'<polyline points="{pts}" fill="none" {_stroke(s.color, s.width, s.dash)} '
                       'stroke-linejoin="round"/>')
        if s.marker:
            out += [f'<circle cx="{x:.2f}" cy="{y:.2f}" r="2.6" fill="{s.color}"/>'
                    for x, y in zip(xs.tolist(), ys.tolist())]
    return out


# ---------------------------------------------------------------- legend and figure


def legend(x: float, y: float, w: float, max_h: float, entries: list[tuple[str, str, str | None, bool]],
           title: str = "", size: float = 10.0) -> tuple[list[str], float]:
    """A boxed legend centred in [x, x + w] from top y; columns and font shrink to fit max_h.

    entries: (label, colour, dash, marker). Returns (markup, height used)."""
    if not entries:
        return [], 0.0
    for size in (size, size * 0.9, size * 0.8, size * 0.7):
        row = size * 1.5
        for ncol in (1, 2, 3):
            nrow = -(-len(entries) // ncol)
            h = nrow * row + (row * 1.1 if title else 0) + 8
            if h <= max_h:
                break
        if h <= max_h:
            break
    sample = 24.0
    need = max(text_width(lab, size) for lab, *_ in entries) + sample + 12
    colw = min(need, (w - 8) / ncol)
    boxw = colw * ncol + 8
    bx = x + (w - boxw) / 2
    out = [f'<rect x="{_f(bx)}" y="{_f(y)}" width="{_f(boxw)}" height="{_f(h)}" rx="3" fill="#fff" '
           'stroke="#ccc" stroke-width="0.8"/>']
    ty = y + 4
    if title:
        out.append(text(bx + boxw / 2, ty + size, title, size, "middle"))
        ty += row * 1.1
    for i, (lab, c, dash, marker) in enumerate(entries):
        col, r = divmod(i, nrow)
        ex, ey = bx + 6 + col * colw, ty + r * row + row / 2
        out.append(_line(ex, ey, ex + sample - 4, ey, c, 1.6, dash))
        if marker:
            out.append(f'<circle cx="{_f(ex + sample / 2 - 2)}" cy="{_f(ey)}" r="2.6" fill="{c}"/>')
        out.append(text(ex + sample, ey + size * 0.35, lab, size, max_width=colw - sample - 6))
    return out, h


class Figure:
    def __init__(self, width: float, height: float, label: str = "") -> None:
        self.width, self.height, self.label = width, height, label
        self.axes: list[Axes] = []
        self.extra: list[str] = []      # markup outside any axes (legends), drawn last

    def add_axes(self, box: tuple[float, float, float, float], **kw) -> Axes:
        ax = Axes(box, **kw)
        self.axes.append(ax)
        return ax

    def svg(self) -> str:
        body = [part for ax in self.axes for part in ax.render()] + self.extra
        aria = f' role="img" aria-label={quoteattr(_CONTROL.sub("", self.label))}' if self.label else ""
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width:g} {self.height:g}" '
                f'width="{self.width:g}" height="{self.height:g}" font-family="{FONT}"{aria}>\n'
                f'<rect width="100%" height="100%" fill="#fff"/>\n' + "\n".join(body) + "\n</svg>")
