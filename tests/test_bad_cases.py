"""The bad-input corpus: every malformed case file exits 2 with one line naming file, key and value."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, cli

CORPUS = ROOT / "tests" / "bad_cases"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


def test_corpus_is_complete():
    files = {p.stem for p in CORPUS.glob("*.toml")}
    assert files == set(EXPECTED) and len(files) >= 40


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_case(name):
    path = CORPUS / f"{name}.toml"
    proc = cli("check", str(path), "--json")
    assert proc.returncode == 2, proc.stdout[:300]
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    exp = EXPECTED[name]
    assert str(path) in line and f"`{exp['key']}`" in line and exp["value"] in line, line


def test_a_bad_case_in_a_run_writes_no_report_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.json").write_text("previous")
    proc = cli("run", str(ROOT / "comparisons/penalty_vs_coupled.toml"), str(CORPUS / "negative_lr.toml"), "--out", str(out))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert (out / "report.json").read_text() == "previous"
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
