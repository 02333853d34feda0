"""`wdparity run`: reports written atomically inside --out, HTML escaped, order-independent results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, cli
from wdparity.check import TIMING_FIELDS

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
