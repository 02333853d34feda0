"""Release fingerprints: `wdparity setup FRAMEWORK==VERSION` (one venv per release, its manifest and freeze) and
`wdparity run --releases` (the catalogue per release, releases.json / releases.md), on synthetic case JSON and on one
real optax release venv built with uv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wdparity.spec.errors import InputError
from wdparity.tools import release_report as rr
from wdparity.tools import releases
from wdparity_backends import release_setup as rs

ROOT = Path(__file__).resolve().parents[1]
CASE = "comparisons/optax_weight_decay_schedule_follows_the_step.toml"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wdparity", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=900)


# ---------------------------------------------------------------- specs and refusals
def test_parse_spec_accepts_each_framework_and_its_aliases():
    assert rs.parse_spec("optax==0.2.2")[0].package == "optax"
    assert rs.parse_spec("tf-keras==2.17.0")[0].name == "tf_keras"
    assert rs.parse_spec("paddlepaddle==3.0.0") == (rs.FRAMEWORKS["paddle"], "3.0.0")
    assert rs.parse_spec("torch==2.13.0")[1] == "2.13.0"


@pytest.mark.parametrize("spec,words", [("optax", "FRAMEWORK==VERSION"), ("optax=0.2.2", "FRAMEWORK==VERSION"),
                                        ("tensorflow==2.21.0", "tensorflow"), ("optax==", "optax=="),
                                        ("torch==2.4.0", "multi-GB CUDA")])
def test_parse_spec_refuses_with_the_valid_frameworks(spec, words):
    with pytest.raises(rs.SpecError) as err:
        rs.parse_spec(spec)
    assert words in str(err.value) and "\n" not in str(err.value)
    if "CUDA" not in words:
        assert str(sorted(rs.FRAMEWORKS)) in str(err.value)


@pytest.mark.parametrize("args,words", [
    (["setup", "tensorflow==2.21.0"], "tensorflow"),
    (["setup", "optax==0.2.2", "keras"], "'keras'"),
    (["setup", "torch==2.5.0"], "torch is set up only as 2.13.0"),
    (["setup", "optax==0.2.2", "mxnet"], "mxnet is set up alone"),
    (["run", "--releases", "optax"], "FRAMEWORK=VERSION"),
    (["run", "--releases", "foo=1"], "'foo'"),
    (["run", "--releases", "optax=0.2.2", "jax=0.4.30"], "both drive the optax backend"),
    (["run", "--releases", "torch=2.5.0"], "torch is set up only as 2.13.0"),
    (["run", "--releases", "optax=0.2.2,0.2.2"], "twice"),
])
def test_bad_release_arguments_exit_2_with_one_line(args, words, tmp_path):
    proc = cli(*args, env={rs.ENV_VAR: str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []   # nothing set up


def test_parse_releases_orders_versions_numerically():
    assert releases.parse_releases(["optax=0.2.10,0.2.8,0.2.9"]) == {"optax": ["0.2.8", "0.2.9", "0.2.10"]}
    assert releases.parse_releases(["tf-keras=2.17.0", "mlx=0.26.5"]) == {"tf_keras": ["2.17.0"], "mlx": ["0.26.5"]}
    with pytest.raises(InputError):
        releases.parse_releases(["optax=0.2.2", "optax=0.2.3"])


def test_published_reads_uvs_upload_time(monkeypatch):
    answer = ("hint: `optax` was filtered by `exclude-newer` to only include packages uploaded before 1970-01-02. The "
              "requested version, v0.2.2, was published at 2024-03-27T18:05:53.199Z. Consider ...")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", answer))
    assert rs.published("uv", Path("py"), "optax==0.2.2").isoformat() == "2024-03-27T18:05:53.199000+00:00"
    missing = "cause: Because there is no version of optax==9.9.9 and you require optax==9.9.9, ..."
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", missing))
    with pytest.raises(rs.SpecError, match="no release optax==9.9.9"):
        rs.published("uv", Path("py"), "optax==9.9.9")


def test_without_uv_pip_installs_and_no_dates_are_used(monkeypatch):
    seen = []
    monkeypatch.setattr(subprocess, "run",
                        lambda cmd, **k: seen.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
    rs._install(None, Path("/v/bin/python"), ["optax==0.2.2", "jax"], None, lambda line: None)
    assert seen == [["/v/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "optax==0.2.2", "jax"]]


def test_requirements_carry_the_companions_and_the_workers_needs():
    reqs, optional = rs.requirements(rs.FRAMEWORKS["tf_keras"], "2.17.0")
    assert reqs[:3] == ["tf-keras==2.17.0", "tensorflow==2.17.*", "numpy"] and reqs[3].startswith("pydantic==")
    assert rs.requirements(rs.FRAMEWORKS["mlx"], "0.26.5")[1] == ["mlx-cpu==0.26.5"]
    assert rs.requirements(rs.FRAMEWORKS["torch"], "2.13.0")[0][0] == "torch==2.13.0+cpu"


# ---------------------------------------------------------------- the report, on synthetic case JSON
def case(holds, verdict="equivalent", rel=1e-7, fid=True, status="ok", causes=(), reason=None, expected="equivalent"):
    runs = {"native": {"backend": "optax", "status": status, "reason": reason,
                       "fidelity": None if status != "ok" else {"holds": fid, "max_rel_err": rel},
                       "versions": {"optax": "x"}},
            "ref": {"backend": "numpy", "status": "ok", "reason": None, "fidelity": {"holds": True, "max_rel_err": 0.0},
                    "versions": {}}}
    return {"case": "c.toml", "title": "t", "runs": runs,
            "pairs": [{"a": "native", "b": "ref", "verdict": verdict if status == "ok" else "unknown",
                       "max_rel_err": rel if status == "ok" else None, "causes": list(causes)}],
            "claim": {"expected": expected, "causes": [], "holds": holds, "found_causes": list(causes),
                      "reason": reason}}


def test_outcomes():
    assert rr.outcome(case(True)) == ("holds", None)
    assert rr.outcome(case(False, "diverges", fid=False, reason="fidelity fails"))[0] == "fails"
    assert rr.outcome(case(None, status="error", reason="TypeError: x")) == ("not runnable", "native: TypeError: x")
    assert rr.outcome(case(None, status="skipped", reason="not set up"))[0] == "not runnable"
    assert rr.outcome(case(None, "undecidable"))[0] == "not verified"
    assert rr.outcome(case(None, expected=None))[0] == "no claim"


def test_first_changed_release_and_the_measured_difference():
    by_release = {"1": {"c.toml": case(None, status="error", reason="TypeError")},
                  "2": {"c.toml": case(False, "diverges", rel=0.41, fid=False, causes=["unexplained"])},
                  "3": {"c.toml": case(True, rel=3e-6)},
                  "4": {"c.toml": case(True, rel=3.5e-6)}}
    (row,) = rr.claim_rows("optax", ["1", "2", "3", "4"], by_release)
    assert [row["releases"][v]["outcome"] for v in "1234"] == ["not runnable", "fails", "holds", "holds"]
    assert row["first_changed"] == "2" and [(c["from"], c["to"]) for c in row["changes"]] == [("1", "2"), ("2", "3")]
    second = row["changes"][1]
    assert second["verdict"]["pairs"]["native vs ref"] == {"verdict": ["diverges", "equivalent"],
                                                            "max_rel_err": [0.41, 3e-6]}
    assert second["causes"]["found"] == [["unexplained"], []]
    assert second["fidelity"]["native"] == {"holds": [False, True], "max_rel_err": [0.41, 3e-6]}


def test_a_claim_that_never_changes_has_no_first_change_even_when_its_figures_move():
    by_release = {v: {"c.toml": case(True, rel=r)} for v, r in (("1", 1e-7), ("2", 2e-7))}
    (row,) = rr.claim_rows("optax", ["1", "2"], by_release)
    assert row["changes"] == [] and row["first_changed"] is None


def test_a_change_of_causes_alone_is_a_change():
    by_release = {"1": {"c.toml": case(True, "diverges", causes=["coefficient"], expected="diverges")},
                  "2": {"c.toml": case(False, "diverges", causes=["coefficient", "epsilon"], expected="diverges")}}
    (row,) = rr.claim_rows("x", ["1", "2"], by_release)
    assert row["first_changed"] == "2"
    assert row["changes"][0]["causes"]["found"] == [["coefficient"], ["coefficient", "epsilon"]]


def test_render_has_a_table_row_per_claim_and_a_column_per_release():
    rows = rr.claim_rows("optax", ["1", "2"], {"1": {"c.toml": case(False, "diverges", rel=0.4, fid=False)},
                                              "2": {"c.toml": case(True)}})
    doc = {"frameworks": {"optax": {"backend": "optax", "cases": 1, "skipped_cases": 3, "skipped_because": "no run",
                                    "changed_claims": 1, "releases": [
                                        {"version": v, "python": "p", "source": "s", "manifest": None,
                                         "measured_versions": {"optax": v}} for v in ("1", "2")]}},
           "claims": rows}
    text = rr.render(doc)
    assert "| claim | 1 | 2 | first changed |" in text and "| `c.toml` | fails | holds | 2 |" in text
    assert "max rel err 0.4 → 1e-07" in text and "3 skipped" in text


# ---------------------------------------------------------------- one real release venv (uv), and the report
@pytest.fixture(scope="module")
def optax_0_2_6(tmp_path_factory):
    if rs.find_uv() is None:
        pytest.skip("uv is not installed here (pip install uv): the release venv test builds with uv")
    root = tmp_path_factory.mktemp("releases")
    os.environ[rs.ENV_VAR] = str(root)
    try:
        made = rs.create(rs.FRAMEWORKS["optax"], "0.2.6")
    finally:
        del os.environ[rs.ENV_VAR]
    return root, made


@pytest.mark.slow
def test_setup_writes_the_venv_its_freeze_and_manifest(optax_0_2_6):
    root, made = optax_0_2_6
    folder = root / "optax-0.2.6"
    manifest = json.loads((folder / "manifest.json").read_text())
    freeze = (folder / "freeze.txt").read_text().splitlines()
    assert manifest["installer"] == "uv" and manifest["framework"] == "optax" and manifest["version"] == "0.2.6"
    assert manifest["as_of"].startswith("2025-09-1")   # 0.2.6 was uploaded 2025-09-15, + 3 days
    assert "optax==0.2.6" in freeze and f"jax=={manifest['companions']['jax']}" in freeze
    assert manifest["companions"]["jax"] == manifest["companions"]["jaxlib"]
    assert manifest["seconds"] > 0 and manifest["size_mb"] > 50 and manifest["packages"] == len(freeze)
    assert manifest["check"].startswith("optax 0.2.6 jax ")
    assert rs.manifest("optax", "0.2.6", root)["python"] == str(rs.venv_python(folder))
    assert rs.create(rs.FRAMEWORKS["optax"], "0.2.6", root)["cached"] is True


@pytest.mark.slow
def test_release_report_from_that_venv_and_the_default(optax_0_2_6, tmp_path):
    root, _ = optax_0_2_6
    out = tmp_path / "report"
    installed = releases.installed_version(rs.FRAMEWORKS["optax"])
    proc = cli("run", "--releases", f"optax=0.2.6,{installed}", "--no-setup", "--out", str(out), CASE,
               "comparisons/penalty_vs_coupled.toml", env={rs.ENV_VAR: str(root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "releases.json").read_text())
    fw = doc["frameworks"]["optax"]
    assert (fw["cases"], fw["skipped_cases"]) == (1, 1)
    assert [r["source"] for r in fw["releases"]] == ["release venv", "default environment"]
    assert fw["releases"][0]["measured_versions"]["optax"] == "0.2.6"
    (row,) = doc["claims"]
    old, new = row["releases"]["0.2.6"], row["releases"][installed]
    assert (old["outcome"], new["outcome"]) == ("fails", "holds")
    assert old["fidelity"]["optax"]["holds"] is False and old["pairs"]["optax vs scheduled"]["verdict"] == "diverges"
    pair = "optax vs scheduled"
    assert old["pairs"][pair]["max_rel_err"] > 0.1 > 1e-4 > new["pairs"][pair]["max_rel_err"]
    assert row["first_changed"] == installed
    assert "| `comparisons/optax_weight_decay_schedule_follows_the_step.toml` | fails | holds |" in \
        (out / "releases.md").read_text()


def test_a_release_not_set_up_with_no_setup_exits_2_naming_the_command(tmp_path):
    proc = cli("run", "--releases", "optax=0.2.3", "--no-setup", "--out", str(tmp_path / "r"), CASE,
               env={rs.ENV_VAR: str(tmp_path / "none")})
    assert proc.returncode == 2 and "`wdparity setup optax==0.2.3`" in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_pinned_claim_without_its_release_is_not_verified_never_failed(tmp_path):
    proc = cli("check", "comparisons/optax_schedule_fix_pinned_0_2_7.toml", "--json", env={rs.ENV_VAR: str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["runs"]["release_0_2_7"]["status"] == "skipped" and out["claim"]["holds"] is None
    assert "optax==0.2.7" in out["claim"]["reason"] and out["claim"]["reason"].startswith("not verified")
