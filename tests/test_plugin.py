"""The pytest plugin (`pytest --wdparity PATH...`) and wdparity.testing's assertions."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import WRONG_CLAIM

from wdparity.testing import assert_diverges, assert_equivalent

ROOT = Path(__file__).resolve().parents[1]
CHEAP = ["comparisons/adam_coupled_vs_decoupled.toml", "comparisons/penalty_vs_coupled.toml",
         "comparisons/torch_sgd_vs_reference.toml"]
WRONG = WRONG_CLAIM
TYPO = 'title = "typo"\n[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.01\nweight_decya = 1\n[runs.b]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.01\n'
MISSING = ('title = "no interpreter"\nclaim = "equivalent"\n[task]\nepochs = 1\n[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\n'
           'lr = 0.01\n[runs.b]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.01\npython = "/nonexistent/bin/python"\n')


def pytest_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_catalogue_collects_one_item_per_case_file():
    proc = pytest_run(["--wdparity", "comparisons/", "--collect-only", "-q"], ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    cases = sorted(p for p in (ROOT / "comparisons").glob("*.toml") if "runs" in tomllib.loads(p.read_text()))
    assert sorted(ids) == sorted(f"comparisons/{p.name}::{p.stem}" for p in cases)
    assert len(ids) == len(cases) > 50   # the case files only, not the project's own tests


def test_cheap_cases_pass_with_one_worker_start_per_backend(monkeypatch, capsys):
    from wdparity.run import harness

    started: list[str] = []
    real = harness._run_worker

    def counting(jobdir, key, *args, **kwargs):
        started.append(key[0])
        return real(jobdir, key, *args, **kwargs)

    monkeypatch.setattr(harness, "_run_worker", counting)
    monkeypatch.chdir(ROOT)
    code = pytest.main(["-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--wdparity", *CHEAP])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 passed" in out
    assert sorted(started) == ["numpy", "torch"]   # three cases, one worker per backend


def test_failing_bad_and_unverifiable_case_files(tmp_path):
    (tmp_path / "wrong_claim.toml").write_text(WRONG)
    (tmp_path / "typo.toml").write_text(TYPO)
    (tmp_path / "missing.toml").write_text(MISSING)
    shutil.copy(ROOT / CHEAP[0], tmp_path / "holds.toml")
    (tmp_path / "notes.toml").write_text('title = "not a case file"\n')   # no [runs]: not collected
    proc = pytest_run(["--wdparity", str(tmp_path), "-rs"], tmp_path)
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "2 failed, 1 passed, 1 skipped" in out
    assert "claim equivalent fails: expected equivalent; measured causes ['coupling']" in out
    assert "pairs" in out and "max rel err" in out   # the divergence table is the failure message
    assert "wdparity: error:" in out and "weight_decya" in out and "Traceback" not in out
    assert "SKIPPED" in out and "/nonexistent/bin/python" in out
    assert "notes" not in out.replace("notes.toml", "")


def test_without_the_option_the_plugin_collects_nothing(tmp_path):
    (tmp_path / "wrong_claim.toml").write_text(WRONG)
    proc = pytest_run([str(tmp_path), "--collect-only", "-q"], tmp_path)
    assert "no tests collected" in proc.stdout


SGD_COUPLED = {"backend": "numpy", "optimizer": "sgd", "lr": 0.01, "decay": [{"coupling": "gradient", "coefficient": 0.1}]}
SGD_DECOUPLED = {"backend": "numpy", "optimizer": "sgd", "lr": 0.01,
                 "decay": [{"coupling": "decoupled", "coefficient": 0.1, "scale": "lr"}]}
ADAM_COUPLED = {**SGD_COUPLED, "optimizer": "adam"}
ADAM_DECOUPLED = {**SGD_DECOUPLED, "optimizer": "adam"}
TASK = {"epochs": 2}


def test_assert_equivalent_passes_for_plain_sgd():
    result = assert_equivalent(SGD_COUPLED, SGD_DECOUPLED, task=TASK)   # identical for plain SGD
    assert result["pairs"][0]["verdict"] == "equivalent"


def test_assert_diverges_passes_under_adam():
    assert_diverges(ADAM_COUPLED, ADAM_DECOUPLED, task=TASK)
    result = assert_diverges(ADAM_COUPLED, ADAM_DECOUPLED, causes=["coupling"], task=TASK)
    assert result["pairs"][0]["causes"] == ["coupling"]


def test_assertions_fail_with_the_table():
    with pytest.raises(AssertionError, match=r"expected equivalent; measured diverges \(causes coupling\)") as info:
        assert_equivalent(ADAM_COUPLED, ADAM_DECOUPLED, task=TASK)
    assert "pairs" in str(info.value) and "max rel err" in str(info.value)
    with pytest.raises(AssertionError, match=r"expected diverges; measured equivalent"):
        assert_diverges(SGD_COUPLED, SGD_DECOUPLED, task=TASK)
    with pytest.raises(AssertionError, match=r"expected diverges with causes \['coefficient'\]; measured diverges"):
        assert_diverges(ADAM_COUPLED, ADAM_DECOUPLED, causes=["coefficient"], task=TASK)


def test_an_assertion_on_a_missing_framework_skips():
    with pytest.raises(pytest.skip.Exception, match="does not exist"):
        assert_equivalent(SGD_COUPLED, {**SGD_COUPLED, "python": "/nonexistent/bin/python"}, task=TASK)


def test_bad_runs_raise_the_one_line_input_error():
    from wdparity.spec.errors import InputError

    with pytest.raises(InputError, match="weight_decya"):
        assert_equivalent(SGD_COUPLED, {**SGD_COUPLED, "weight_decya": 1}, task=TASK)
