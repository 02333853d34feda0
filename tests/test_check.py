"""`wdparity check` end to end: the issue's must-show cases, instability, and the JSON contract."""

from __future__ import annotations

from conftest import ROOT, check_json, cli

CONTRACT_RUN_KEYS = {"backend", "status", "reason", "semantics", "fidelity", "final"}
CONTRACT_PAIR_KEYS = {"a", "b", "verdict", "max_abs_err", "max_rel_err", "first_divergent_step", "tensor", "causes"}


def test_penalty_equals_coupled_twice_the_coefficient():
    rc, out = check_json(ROOT / "comparisons/penalty_vs_coupled.toml")
    assert rc == 0
    assert out["pairs"][0]["verdict"] == "equivalent"
    assert out["claim"]["holds"] is True


def test_adam_coupled_vs_decoupled_diverges_by_coupling():
    rc, out = check_json(ROOT / "comparisons/adam_coupled_vs_decoupled.toml")
    assert rc == 0
    pair = out["pairs"][0]
    assert pair["verdict"] == "diverges" and pair["causes"] == ["coupling"]
    assert pair["first_divergent_step"] is not None and pair["tensor"] in ("weight", "bias")


def test_a_tenth_of_a_percent_of_lambda_is_detected_in_float32():
    rc, out = check_json(ROOT / "comparisons/coefficient_0p1_percent.toml")
    assert rc == 0
    pair = out["pairs"][0]
    assert pair["verdict"] == "diverges" and pair["causes"] == ["coefficient"]
    assert pair["max_rel_err"] > 3 * pair["tol"]


def test_float32_run_matches_the_float64_reference():
    rc, out = check_json(ROOT / "comparisons/float32_vs_float64.toml")
    assert rc == 0
    assert out["runs"]["f32"]["fidelity"]["holds"] is True
    assert 0 < out["runs"]["f32"]["fidelity"]["max_rel_err"] <= out["runs"]["f32"]["fidelity"]["tol"]
    assert out["pairs"][0]["verdict"] == "equivalent"


def test_json_has_the_contract_keys_and_versions():
    rc, out = check_json(ROOT / "comparisons/penalty_vs_coupled.toml")
    assert {"case", "title", "versions", "runs", "pairs", "claim"} <= set(out)
    assert out["versions"]["numpy"] and out["versions"]["wdparity"]
    for run in out["runs"].values():
        assert CONTRACT_RUN_KEYS <= set(run)
        assert set(run["final"]) == {"train_loss", "test_loss", "weight_l2", "bias", "step"}
    for pair in out["pairs"]:
        assert CONTRACT_PAIR_KEYS <= set(pair)
    assert set(out["claim"]) >= {"expected", "causes", "holds"}


SEED000 = """
title = "seed 000"
claim = "diverges"
causes = ["optimizer", "unstable"]
[task]
init = "normal_all"
loss = "mse"
[runs.fast]
backend = "numpy"
optimizer = "sgd"
lr = {lr_fast}
decay = [{{ coefficient = 3.0, params = ["weight"] }}]
[runs.slow]
backend = "numpy"
optimizer = "sgd"
lr = 0.003
decay = [{{ coefficient = 3.0, params = ["weight"] }}]
"""


def test_seed000_lr_above_the_bound_is_unstable_with_the_bound(write_case):
    rc, out = check_json(write_case(SEED000.format(lr_fast=0.03)))
    fast, slow = out["runs"]["fast"], out["runs"]["slow"]
    assert fast["status"] == "unstable"
    assert "stability bound 2/L" in fast["reason"] and "diverged at step" in fast["reason"]
    assert fast["stability"]["bound"] < 0.03 < 10 * fast["stability"]["bound"]
    assert slow["status"] == "ok" and slow["stability"]["exceeds"] is False
    # compared over the steps where both are finite: they part at once, by lr, one side blowing up
    pair = out["pairs"][0]
    assert pair["verdict"] == "diverges" and pair["causes"] == ["optimizer", "unstable"]
    assert 1 <= pair["first_divergent_step"] <= 10 and pair["compared_steps"] < 400
    assert out["claim"]["holds"] is True and rc == 0


def test_claim_that_does_not_hold_exits_1(write_case):
    text = SEED000.format(lr_fast=0.002).replace('causes = ["optimizer", "unstable"]', 'causes = ["coefficient"]')
    rc, out = check_json(write_case(text))
    assert out["claim"]["holds"] is False and rc == 1
    assert out["claim"]["found_causes"] == ["optimizer"]
    assert "measured causes ['optimizer']" in out["claim"]["reason"]


def test_no_semantic_difference_but_numeric_divergence_is_unexplained(write_case, monkeypatch):
    """A backend that lies about its semantics is caught: the divergence is labelled unexplained."""
    path = write_case("""
        title = "liar"
        [runs.honest]
        backend = "numpy"
        optimizer = "sgd"
        lr = 0.003
        [runs.liar]
        backend = "liar"
        optimizer = "sgd"
        lr = 0.003
    """)
    proc = cli("check", str(path), "--json", env={"WDPARITY_EXTRA_BACKENDS": "liar=fault_backends.liar:backend",
                                                  "PYTHONPATH": str(ROOT / "tests")})
    import json

    out = json.loads(proc.stdout)
    pair = out["pairs"][0]
    assert pair["verdict"] == "diverges" and pair["causes"] == ["unexplained"]
    assert out["runs"]["liar"]["fidelity"]["holds"] is False
    assert "off its own described semantics" in out["runs"]["liar"]["fidelity"]["reason"]
    assert proc.returncode == 1  # fidelity is a gate: a run off its own semantics fails the case


def test_human_table_names_the_verdict():
    proc = cli("check", str(ROOT / "comparisons/adam_coupled_vs_decoupled.toml"))
    assert proc.returncode == 0
    assert "diverges" in proc.stdout and "coupling" in proc.stdout and "holds" in proc.stdout
