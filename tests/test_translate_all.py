"""`translate --to all` / `wdparity.translate(..., to="all")`: one setting in every framework side by side, each
trained natively beside the source; `describe FILE.py:NAME` / `explain --from` / `python -m wdparity describe`
for the optimizer a script builds; describe() -> translate() -> the pasted Python builds the same setting."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, cli
from snippets import run_snippets

import wdparity
from wdparity.run import registry
from wdparity.run.cases import load_run
from wdparity.spec.models import Task

CASE = str(ROOT / "comparisons/adam_coupled_vs_decoupled.toml")
SCRIPT = """
import torch
torch.manual_seed(0)
model = torch.nn.Linear(200, 1)
optimizer = torch.optim.AdamW([{"params": [model.weight], "weight_decay": 0.05},
                               {"params": [model.bias], "weight_decay": 0.0}], lr=1e-3)

def build():
    m = torch.nn.Linear(200, 1)
    return torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4), m

def needs(x):
    return x

def broken():
    raise RuntimeError("no GPU here")
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def test_to_all_lists_every_framework_each_trained_natively_beside_the_source():
    proc = cli("translate", CASE, "--run", "decoupled", "--to", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    rows = {r["to"]: r for r in out["rows"]}
    assert set(rows) == set(registry.targets()) - {"numpy"}
    torch = rows["torch"]
    assert torch["status"] == "exact" and torch["native"]["pair"]["verdict"] == "equivalent"
    assert torch["native"]["pair"]["max_rel_err"] <= torch["native"]["pair"]["tol"]
    assert torch["native"]["run"]["fidelity"]["holds"] is True
    # MXNet 1.9.1's adam has no decoupled decay: its nearest setting couples it, and natively that diverges
    mx = rows["mxnet"]
    if mx["status"] != "not installed":
        assert mx["native"]["pair"]["verdict"] == "diverges" and "coupling" in mx["native"]["pair"]["causes"]
    for r in out["rows"]:   # every row either has a natively measured pair or says why not
        assert (r["native"].get("pair") is not None) or r["reason"], r


def test_to_all_text_names_what_diverges_and_why():
    proc = cli("translate", CASE, "--run", "decoupled", "--to", "all")
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.split("\n\n")[1].splitlines()
    assert head[0].split()[:2] == ["framework", "status"] and len(head) == len(registry.targets())   # numpy out
    if "mxnet " in proc.stdout and "not installed" not in proc.stdout:
        assert "Nearest setting only, and it measurably diverges natively:\n- mxnet: differs in coupling" in proc.stdout


def test_describe_then_translate_to_all_in_python():
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(200, 1)
    opt = torch.optim.SGD([{"params": [model.weight], "weight_decay": 1e-3}, {"params": [model.bias],
                           "weight_decay": 0.0}], lr=0.001, momentum=0.9)
    d = wdparity.describe(opt, model=model)
    sbs = wdparity.translate(d, to="all")
    rows = {r.target: r for r in sbs.rows}
    assert rows["torch"].status == "exact" and rows["torch"].native["pair"]["verdict"] == "equivalent"
    for row in sbs.rows:
        assert row.status != "error", (row.target, row.reason)
        if row.translation is None:
            assert row.reason, row.target
            continue
        semantics = load_run("x", row.translation.table, Task(), "test", {}).semantics
        if row.status == "exact" and not row.translation.notes:   # an exact row means what the live optimizer means
            assert semantics.neutral() == d.semantics.neutral(), row.target
        if row.status == "exact":   # exact after a rewrite (e.g. momentum form at a constant lr): natively too
            assert row.native["pair"]["verdict"] == "equivalent", row.target


@pytest.mark.parametrize("command", [["describe", "{p}:optimizer"], ["explain", "--from", "{p}:optimizer"]])
def test_describe_a_script_matches_describe_of_the_live_object(script, command):
    proc = cli(*[c.format(p=script) for c in command], "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(200, 1)
    opt = torch.optim.AdamW([{"params": [model.weight], "weight_decay": 0.05},
                             {"params": [model.bias], "weight_decay": 0.0}], lr=1e-3)
    d = wdparity.describe(opt, model=model)
    assert out["run"] == d.run and out["semantics"] == d.semantics.neutral()


def test_python_m_wdparity_describe_a_function_returning_optimizer_and_model(script):
    proc = subprocess.run([sys.executable, "-m", "wdparity", "describe", f"{script}:build", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["run"]["optimizer"] == "SGD" and out["run"]["momentum"] == 0.9 and out["run"]["weight_decay"] == 1e-4


@pytest.mark.parametrize("spec,words", [
    ("{p}:nothing", "must name an attribute of the module, one of ['broken', 'build', 'model', 'needs', 'optimizer'"),
    ("{p}:needs", "names a function that needs arguments"),
    ("{p}:broken", "calling it raised RuntimeError: no GPU here"),
    ("{d}/absent.py:optimizer", "must name an existing .py file"),
    ("{p}", "must be FILE.py:NAME"),
])
def test_bad_script_sources_are_one_line_exit_2(script, spec, words):
    proc = cli("describe", spec.format(p=script, d=script.parent))
    assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("args,words", [
    (["translate", "--to", "optax"], "`CASE` is required (or --from FILE.py:NAME)"),
    (["translate", CASE, "--to", "optax"], "`--run` is required with a case file"),
    (["explain"], "`BACKEND` is required"),
    (["translate", CASE, "--run", "nope", "--to", "all"], "`--run` must be one of ['coupled', 'decoupled']"),
])
def test_bad_translate_and_explain_arguments_are_exit_2(args, words):
    proc = cli(*args)
    assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_describe_translate_paste_builds_the_same_setting(script):
    """A script's optimizer -> translate --to torch --python -> the pasted snippet, run, describes as the table."""
    proc = cli("translate", "--from", f"{script}:optimizer", "--to", "torch", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    if out["python"] is None:
        pytest.fail(f"torch has no snippet: {out['python_reason']}")
    built = run_snippets([out["python"]])[0]
    assert built["ok"], built
    expected = load_run("x", out["table"], Task(), "test", {}).semantics.neutral()
    assert built["value"]["semantics"] == expected


def test_explain_from_refuses_backend_and_settings(script):
    proc = cli("explain", "torch", "lr=0.1", "--from", f"{script}:optimizer")
    assert proc.returncode == 2 and "takes no BACKEND KEY=VALUE" in proc.stderr


def test_translate_without_native_training_is_available_in_python():
    sbs = wdparity.translate(CASE, to="all", run="coupled", native=False)
    assert sbs.case == {} and all(r.native == {} for r in sbs.rows)
    assert {r.target for r in sbs.rows} == set(registry.targets()) - {"numpy"}
