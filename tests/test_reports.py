"""`wdparity run`: reports written atomically inside --out, HTML escaped, order-independent results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, cli

from wdparity.judge.check import TIMING_FIELDS

CASE = """
title = "{title}"
claim = "diverges"
causes = ["coupling"]
sources = ["https://arxiv.org/abs/1711.05101"]
[task]
epochs = 2
{runs}
"""
RUN_A = '[runs.coupled]\nbackend = "numpy"\noptimizer = "adam"\nlr = 0.01\ndecay = [{ coefficient = 0.1 }]\n'
RUN_B = '[runs.decoupled]\nbackend = "numpy"\noptimizer = "adam"\nlr = 0.01\ndecay = [{ coupling = "decoupled", coefficient = 0.1 }]\n'


def test_run_writes_the_three_reports_and_exits_0(tmp_path):
    case = tmp_path / "c.toml"
    case.write_text(CASE.format(title="t", runs=RUN_A + RUN_B))
    out = tmp_path / "out"
    proc = cli("run", str(case), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    doc = json.loads((out / "report.json").read_text())
    assert set(doc) == {"versions", "cases", "summary"}
    assert doc["cases"][0]["sources"] == ["https://arxiv.org/abs/1711.05101"]
    assert doc["summary"]["claims_hold"] == 1
    html = (out / "report.html").read_text()
    assert "<svg" in html and "coupling" in html


def test_html_escapes_strings_from_the_case_file(tmp_path):
    case = tmp_path / "c.toml"
    case.write_text(CASE.format(title="<script>alert(1)</script>", runs=RUN_A + RUN_B)
                    .replace("https://arxiv.org/abs/1711.05101", "javascript:<b>x</b>"))
    out = tmp_path / "out"
    assert cli("run", str(case), "--out", str(out)).returncode == 0
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html


def test_results_do_not_depend_on_the_order_of_runs(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(CASE.format(title="t", runs=RUN_A + RUN_B))
    b.write_text(CASE.format(title="t", runs=RUN_B + RUN_A))
    ja = json.loads(cli("check", str(a), "--json").stdout)
    jb = json.loads(cli("check", str(b), "--json").stdout)
    for doc in (ja, jb):
        doc.pop("case")
        for run in doc["runs"].values():
            for key in TIMING_FIELDS:
                run.pop(key, None)
    assert json.dumps(ja, sort_keys=True) == json.dumps(jb, sort_keys=True)


def test_results_do_not_depend_on_the_order_of_cases(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(CASE.format(title="first", runs=RUN_A + RUN_B))
    b.write_text(CASE.format(title="second", runs=RUN_B + RUN_A).replace("0.1 }", "0.2 }"))
    outs = []
    for order in ((a, b), (b, a)):
        out = tmp_path / f"out{len(outs)}"
        assert cli("run", *map(str, order), "--out", str(out), "--no-plots").returncode == 0
        doc = json.loads((out / "report.json").read_text())
        cases = {c["title"]: c for c in doc["cases"]}
        for c in cases.values():
            for run in c["runs"].values():
                for key in TIMING_FIELDS:
                    run.pop(key, None)
        outs.append(cases)
    assert json.dumps(outs[0], sort_keys=True) == json.dumps(outs[1], sort_keys=True)


def test_sigint_leaves_the_previous_report_intact(tmp_path):
    case = tmp_path / "c.toml"
    case.write_text(CASE.format(title="t", runs=RUN_A + RUN_B).replace("epochs = 2", "epochs = 400"))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("report.json", "report.md", "report.html"):
        (out / name).write_text("previous")
    proc = subprocess.Popen([sys.executable, "-m", "wdparity.cli", "run", str(case), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:   # finished before the signal: then the reports are complete, not torn
        assert json.loads((out / "report.json").read_text())["cases"]
    else:
        assert proc.returncode == 130 and "Traceback" not in err
        assert all((out / n).read_text() == "previous" for n in ("report.json", "report.md", "report.html"))
    assert not [p for p in os.listdir(out) if p.startswith(".")]


def test_out_that_is_a_file_is_refused(tmp_path):
    case = tmp_path / "c.toml"
    case.write_text(CASE.format(title="t", runs=RUN_A + RUN_B))
    target = tmp_path / "afile"
    target.write_text("keep")
    proc = cli("run", str(case), "--out", str(target))
    assert proc.returncode == 2 and target.read_text() == "keep"


def test_html_report_of_an_unstable_case(tmp_path):
    """Unstable runs have no final numbers and their pairs no tolerance: the page still renders."""
    out = tmp_path / "out"
    proc = cli("run", str(ROOT / "comparisons/seed000_instability.toml"), "--out", str(out))
    assert proc.returncode in (0, 1), proc.stderr
    html = (out / "report.html").read_text()
    assert "unstable" in html and "stability bound" in html


# ---- the SVG plotter (report/svgplot.py, report/plots.py): fast, in-process


def _fake_case(names=("a", "b"), steps=50, title="t", curves=True):
    """A CaseResult-shaped object: what case_figure reads, without running any framework."""
    from types import SimpleNamespace

    import numpy as np

    rng = np.random.default_rng(0)
    d = 3
    data = {"X_train": rng.normal(size=(8, d)), "y_train": rng.normal(size=8),
            "X_test": rng.normal(size=(6, d)), "y_test": rng.normal(size=6)}
    trajs = {n: {"weight": np.cumsum(rng.normal(size=(steps + 1, d)), axis=0) * (i + 1),
                 "bias": np.linspace(0, 1 + i, steps + 1)} for i, n in enumerate(names)}
    pairs = {}
    if curves and len(names) > 1:
        rel = np.abs(rng.normal(size=steps + 1)) * 1e-6
        rel[0] = 0.0
        pairs[(names[0], names[1])] = {"curve": {"weight": rel, "bias": rel / 2}, "tol": 1e-5, "first": 3}
    case = SimpleNamespace(title=title, task=SimpleNamespace(loss="mse"))
    return SimpleNamespace(case=case, trajectories=trajs, curves=pairs, data=data)


def _well_formed(svg: str):
    import xml.etree.ElementTree as ET

    assert svg.startswith("<svg") and 'viewBox="' in svg
    assert "nan" not in svg.lower() and "inf" not in svg.replace("info", "")
    return ET.fromstring(svg)


def test_nice_ticks_on_known_ranges():
    from wdparity.report.svgplot import nice_ticks, tick_labels

    assert nice_ticks(-20, 420, 7) == [0, 100, 200, 300, 400]
    assert nice_ticks(11, 14.3, 5) == [11, 12, 13, 14]
    assert tick_labels(nice_ticks(0.0, 0.5, 6)) == ["0", "0.1", "0.2", "0.3", "0.4", "0.5"]
    assert tick_labels(nice_ticks(-1, 1, 5)) == ["−1.0", "−0.5", "0", "0.5", "1.0"]
    assert tick_labels(nice_ticks(0, 1.6e15, 5)) == ["0", "5e14", "1e15", "1.5e15"]
    ticks = nice_ticks(0.000123, 0.000987, 5)
    assert 2 <= len(ticks) <= 5 and all(0.000123 <= t <= 0.000987 for t in ticks)


def test_log_ticks_are_decades_else_1_2_5():
    from wdparity.report.svgplot import log_ticks

    assert [lab for _, lab in log_ticks(-9.2, -0.8, 6)] == ["10^-8", "10^-6", "10^-4", "10^-2"]
    assert [lab for _, lab in log_ticks(-0.3, 3.2, 6)] == ["10^0", "10^1", "10^2", "10^3"]
    assert [lab for _, lab in log_ticks(1.75, 2.02, 6)] == ["60", "80", "100"]   # less than a decade


def test_nan_and_inf_break_the_line_and_never_reach_the_svg():
    import numpy as np

    from wdparity.report.svgplot import Figure

    fig = Figure(300, 200)
    ax = fig.add_axes((0, 0, 300, 200), ylog=True)
    ax.plot(np.arange(9), [1, 2, np.nan, 3, 4, np.inf, 5, 0.0, -1.0], "#000")
    root = _well_formed(fig.svg())
    lines = [e for e in root.iter() if e.tag.endswith("polyline")]
    assert [len(e.get("points").split()) for e in lines] == [2, 2]
    assert len([e for e in root.iter() if e.tag.endswith("circle")]) == 1     # the lone 5: a dot
    for e in lines:
        for pt in e.get("points").split():
            x, y = map(float, pt.split(","))
            assert 0 <= x <= 300 and 0 <= y <= 200


def test_degenerate_series_still_draw():
    import numpy as np

    from wdparity.report.svgplot import Figure

    for ys, log in (([], False), ([], True), ([3.0] * 10, False), ([3.0] * 10, True), ([0.0] * 5, True),
                    ([0.0] * 5, False), ([7.0], False), ([np.nan] * 4, False), ([1e300, -1e300], False)):
        fig = Figure(300, 200)
        ax = fig.add_axes((0, 0, 300, 200), title="x", xlabel="x", ylabel="y", ylog=log)
        ax.plot(np.arange(len(ys)), ys, "#000")
        _well_formed(fig.svg())


def test_case_figure_escapes_names_and_titles():
    from wdparity.report.plots import case_figure

    svg = case_figure(_fake_case(names=("<script>alert(1)</script>", "b&c"), title='"x" <b>'))
    _well_formed(svg)
    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg and "b&amp;c" in svg


def test_sweep_figure_escapes_and_handles_missing_points():
    from types import SimpleNamespace

    from wdparity.report.plots import sweep_figure

    sw = SimpleNamespace(title="<i>sweep</i>", values=[0.0, 0.1, 1.0], curves={
        "x": {"label": "<script>alert(1)</script>", "test_loss": [1.0, None, 0.5], "train_loss": [0.9, 0.8, None]},
        "y": {"label": "y", "test_loss": [None, None, None], "train_loss": [None, None, None]}})
    svg = sweep_figure(sw)
    _well_formed(svg)
    assert "<script>" not in svg and "<i>" not in svg and "&lt;script&gt;" in svg and "λ = 0" in svg


def test_figures_are_deterministic_and_small():
    import time

    from wdparity.report.plots import case_figure

    res = _fake_case(names=("a", "b", "c"), steps=2000)
    start = time.perf_counter()
    first = case_figure(res)
    elapsed = time.perf_counter() - start
    assert first == case_figure(_fake_case(names=("a", "b", "c"), steps=2000))
    assert elapsed < 0.5     # matplotlib took about a second; this takes milliseconds
    assert case_figure(_fake_case(names=(), curves=False)).startswith("<svg")
    assert "no pair compared" in case_figure(_fake_case(names=("a",)))


def test_thin_keeps_extremes_and_at_most_max_points():
    import numpy as np

    from wdparity.report.plots import MAX_POINTS, thin

    y = np.zeros(5000)
    y[1234], y[4321], y[10:20] = 50.0, -70.0, np.nan
    x, t = thin(y)
    assert len(x) == MAX_POINTS and x[-1] == 4999 and 1234 in x and 4321 in x
    assert np.array_equal(t, y[x], equal_nan=True)
    assert np.array_equal(thin(np.ones(7))[0], np.arange(7))
