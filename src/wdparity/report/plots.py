"""Per-case figures as inline SVG (matplotlib, Agg): what a person reads before the numbers.

Left: ||w|| over steps for every run. Middle: the bias. Right: |a - b| relative to the tensor's
scale for every compared pair, on a log axis, with the tolerance line and the first divergent
step marked. Unstable runs are drawn up to where they left the plot.
"""

from __future__ import annotations

import io

import numpy as np

_READY = False


def _plt():
    global _READY
    import matplotlib

    if not _READY:
        matplotlib.use("Agg")
        matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 8, "axes.titlesize": 9,
                                    "figure.dpi": 100, "svg.hashsalt": "wdparity"})
        _READY = True
    import matplotlib.pyplot as plt

    return plt


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})   # fixed margins: one draw, not three
    _plt().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


MAX_POINTS = 400   # per drawn line: more only costs SVG size and time, the eye sees no difference


def thin(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) with at most MAX_POINTS points, keeping each stride's extreme so spikes stay visible."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n <= MAX_POINTS:
        return np.arange(n), y
    edges = np.linspace(0, n, MAX_POINTS + 1).astype(int)
    xs, ys = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        seg = y[a:b]
        with np.errstate(all="ignore"):
            i = a + (int(np.nanargmax(np.abs(seg))) if np.isfinite(seg).any() else 0)
        xs.append(i)
        ys.append(y[i])
    xs[-1], ys[-1] = n - 1, y[-1]
    return np.array(xs), np.array(ys)


def case_figure(result) -> str:
    """One SVG for a CaseResult: ||w||, bias, pair errors; train and test loss (per recorded step)."""
    from ..data import losses

    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.4))
    (ax_w, ax_b, ax_e), (ax_tr, ax_te, ax_leg) = axes
    for name, traj in sorted(result.trajectories.items()):
        w = np.asarray(traj["weight"], dtype=np.float64)
        with np.errstate(all="ignore"):
            norm = np.linalg.norm(w, axis=1)
        ax_w.plot(*thin(norm), label=name, lw=1.2)
        ax_b.plot(*thin(traj["bias"]), label=name, lw=1.2)
        tr, te = losses(result.data, w, traj["bias"], result.case.task.loss)
        ax_tr.semilogy(*thin(tr), lw=1.2, label=name)
        ax_te.semilogy(*thin(te), lw=1.2, label=name)
    ax_w.set_title("‖w‖ over steps")
    ax_b.set_title("bias over steps")
    common = result.case.task.loss
    ax_tr.set_title(f"train loss ({common} for every run, float64)")
    ax_te.set_title(f"test loss ({common} for every run)")
    handles, labels = ax_w.get_legend_handles_labels()
    ax_leg.axis("off")
    for ax in (ax_w, ax_b, ax_e, ax_tr, ax_te):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    if handles:   # kept as an artist: the pairs' legend below would otherwise replace it
        ax_leg.add_artist(ax_leg.legend(handles, labels, loc="upper center", fontsize=7, title="runs",
                                        ncol=2 if len(handles) > 5 else 1))
    drew = False
    for (a, b), c in sorted(result.curves.items()):
        rel = np.maximum.reduce([np.asarray(v, dtype=np.float64) for v in c["curve"].values()])
        rel = np.where(rel > 0, rel, np.nan)
        line, = ax_e.semilogy(*thin(rel), lw=1.2, label=f"{a} vs {b}")
        if c["first"] is not None:
            ax_e.axvline(c["first"], color=line.get_color(), ls=":", lw=1)
        ax_e.axhline(c["tol"], color="red", ls="--", lw=0.8)
        drew = True
    ax_e.set_title("relative |a − b|  (red: tolerance, dotted: 1st divergence)", fontsize=8)
    if drew:   # the pairs' legend goes beside the runs' one, so it never hides the curves
        ax_leg.legend(*ax_e.get_legend_handles_labels(), loc="lower center", fontsize=6, title="pairs",
                      ncol=2 if len(result.curves) > 6 else 1)
    else:
        ax_e.text(0.5, 0.5, "no pair compared", ha="center", va="center", transform=ax_e.transAxes)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.09, top=0.95, wspace=0.28, hspace=0.42)
    return svg(fig)
