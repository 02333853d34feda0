"""Per-case and sweep figures as inline SVG: what a person reads before the numbers.

Case figure, top: ||w|| over steps for every run, the bias, and |a - b| relative to the tensor's scale
for every compared pair on a log axis, with the tolerance line and the first divergent step marked.
Bottom: train and test loss per run (log axis) and the legends. Unstable runs are drawn up to where
they left the plot. Sweep figure: final loss against the nominal lambda, one colour per convention.

Drawn by the small plotter in svgplot (milliseconds a figure), not matplotlib (about a second each,
two thirds of a catalogue run).
"""

from __future__ import annotations

import numpy as np

from wdparity.report.svgplot import Figure, color, legend

MAX_POINTS = 400   # per drawn line: more only costs SVG size and time, the eye sees no difference


def thin(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) with at most MAX_POINTS points, keeping each stride's extreme so spikes stay visible."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n <= MAX_POINTS:
        return np.arange(n), y
    starts = np.linspace(0, n, MAX_POINTS + 1).astype(int)[:-1]        # every stride is nonempty
    stride = np.repeat(np.arange(MAX_POINTS), np.diff(np.append(starts, n)))
    finite = np.isfinite(y)
    with np.errstate(all="ignore"):
        key = np.where(np.isnan(y), -1.0, np.abs(y))                   # NaN never wins, inf does
    top = np.maximum.reduceat(key, starts)
    hits = np.flatnonzero(key == top[stride])
    _, first = np.unique(stride[hits], return_index=True)              # the first extreme of each stride
    xs = np.where(np.logical_or.reduceat(finite, starts), hits[first], starts)
    xs[-1] = n - 1
    return xs, y[xs]


CASE_W, CASE_H, PAD = 1100, 540, 6


def case_figure(result) -> str:
    """One SVG for a CaseResult: ||w||, bias, pair errors; train and test loss (per recorded step)."""
    from wdparity.engine import recording
    from wdparity.engine.data import losses, network_losses

    fig = Figure(CASE_W, CASE_H, label=f"figure: {result.case.title}")
    cw, ch = (CASE_W - 2 * PAD) / 3, (CASE_H - 2 * PAD) / 2
    cell = [(PAD + c * cw, PAD + r * ch, cw, ch - 8) for r in range(2) for c in range(3)]
    common = result.case.task.loss
    step = "optimizer step"
    net = "model_json" in result.data
    ax_w = fig.add_axes(cell[0], title="‖weight matrices‖ over steps" if net else "‖w‖ over steps", xlabel=step)
    ax_b = fig.add_axes(cell[1], title="‖biases, LayerNorm scales, offsets‖" if net else "bias over steps", xlabel=step)
    ax_e = fig.add_axes(cell[2], title="relative |a − b|  (red: per-step tolerance, dotted: 1st divergence)", xlabel=step,
                        ylog=bool(result.curves), title_size=10)
    ax_tr = fig.add_axes(cell[3], title=f"train loss ({common} for every run, float64)", xlabel=step, ylog=True)
    ax_te = fig.add_axes(cell[4], title=f"test loss ({common} for every run)", xlabel=step, ylog=True)
    runs = []
    for i, (name, traj) in enumerate(sorted(result.trajectories.items())):
        steps = recording.steps_of(traj)                            # the recorded rows (checkpoints at scale)
        if net:   # per layer group, at the recorded rows
            weights, rest = recording.group_norms(traj)
            for ax, series in ((ax_w, weights), (ax_b, rest)):
                x, y = thin(series)
                ax.plot(steps[x], y, color(i))
            tr, te = network_losses(result.data, {k: traj[k] for k in recording.tensor_names(traj)}, common)
        else:
            ax_w.plot(*thin(recording.norms(traj)[1]), color(i))      # every step, also at scale
            ax_b.plot(*thin(recording.biases(traj)[1]), color(i))
            tr, te = losses(result.data, np.asarray(traj["weight"], dtype=np.float64), traj["bias"], common)
        for ax, series in ((ax_tr, tr), (ax_te, te)):
            x, y = thin(series)
            ax.plot(steps[x], y, color(i))
        runs.append((name, color(i), None, False))
    pairs = []
    for i, ((a, b), c) in enumerate(sorted(result.curves.items())):
        rel = np.maximum.reduce([np.asarray(v, dtype=np.float64) for v in c["curve"].values()])
        x, y = thin(np.where(rel > 0, rel, np.nan))
        ax_e.plot(np.asarray(c.get("x", np.arange(len(rel))))[x], y, color(i))
        if c["first"] is not None:
            ax_e.vline(c["first"], color(i), "dotted")
        tol = c["tol"]
        if isinstance(tol, dict):   # per step: the tighter of the tensors' tolerances where both are finite
            line = np.minimum.reduce([np.asarray(v, dtype=np.float64) for v in tol.values()])
            tx, ty = thin(np.where(np.isfinite(line) & (line > 0), line, np.nan))
            ax_e.plot(np.asarray(c.get("x", np.arange(len(line))))[tx], ty, "#d62728")
        elif tol is not None and np.isfinite(tol) and tol > 0:
            ax_e.hline(tol, "#d62728", "dashed")
        pairs.append((f"{a} vs {b}", color(i), None, False))
    if not pairs:
        ax_e.note = "no pair compared"
    lx, ly, lw, lh = cell[5]
    marks, used = legend(lx, ly + 18, lw, (lh - 30) * (0.5 if pairs else 1.0), runs, title="runs")
    fig.extra += marks
    fig.extra += legend(lx, ly + 18 + used + 14, lw, lh - used - 36, pairs, title="pairs", size=9)[0]
    return fig.svg()


def sweep_figure(result) -> str:
    """Final test (solid) and train (dotted) loss against nominal lambda, one colour per convention."""
    width, height, legend_w = 940, 420, 300
    fig = Figure(width, height, label=f"figure: {result.title}")
    values = np.array(result.values, dtype=float)
    positive = values[values > 0]
    zero_at = positive.min() / 3 if positive.size else 1e-3   # lambda = 0 drawn left of the smallest value
    xs = np.where(values > 0, values, zero_at)
    has_zero = bool((values == 0).any())
    ax = fig.add_axes((PAD, PAD, width - legend_w - 2 * PAD, height - 2 * PAD), title=result.title, xlog=True,
                      ylog=True, xlabel="nominal λ (the number written in each framework's knob)",
                      ylabel="final loss (solid: test, dotted: train)", top_note=14 if has_zero else 0)
    entries = []
    for i, c in enumerate(result.curves.values()):
        y = np.array([np.nan if v is None else v for v in c["test_loss"]], dtype=float)
        ytr = np.array([np.nan if v is None else v for v in c["train_loss"]], dtype=float)
        ax.plot(xs, y, color(i), width=1.4, marker=True)
        ax.plot(xs, ytr, color(i), width=1.0, dash="dotted")
        entries.append((str(c["label"]), color(i), None, True))
    if has_zero:
        ax.vline(zero_at, "#999", label="λ = 0")
    entries += [("final test loss", "#555", None, True), ("final train loss", "#555", "dotted", False)]
    fig.extra += legend(width - legend_w, PAD + 24, legend_w - PAD, height - 60, entries, size=9.5)[0]
    return fig.svg()
