"""Shared workers (run/pool.py): assertions in one process start each backend's worker once, give the same
reports as one-shot workers, and a shared worker that dies or hangs costs only its runs and is replaced."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from wdparity.judge.check import TIMING_FIELDS, check_cases
from wdparity.run import pool
from wdparity.testing import assertions

SGD = {"backend": "numpy", "optimizer": "sgd", "lr": 0.01}
TASK = {"epochs": 1, "n_train": 8}


def _plain(doc: dict) -> str:
    for run in doc["runs"].values():
        for key in TIMING_FIELDS:
            run.pop(key, None)
    return json.dumps(doc, sort_keys=True)


def test_assertions_start_each_backend_once(monkeypatch):
    torch = {"backend": "torch", "optimizer": "SGD", "lr": 0.01}
    fresh = pool.WorkerPool()
    monkeypatch.setattr(assertions, "_POOL", fresh)
    try:
        for lam in (0.0, 0.01, 0.1):
            wd = {"weight_decay": lam} if lam else {}
            assertions.assert_equivalent({**SGD, **({"decay": [{"norm": "l2", "coupling": "gradient", "coefficient": lam}]} if lam else {})},
                                         {**torch, **wd}, task=TASK)
        starts = {key[0]: n for key, n in fresh.starts.items()}
    finally:
        fresh.close()
    assert starts == {"numpy": 1, "torch": 1}


def test_shared_workers_give_the_same_report_as_one_shot_workers():
    path = str(ROOT / "comparisons/adam_coupled_vs_decoupled.toml")
    alone = check_cases([path])[0].json
    with pool.sharing() as shared:
        first = check_cases([path])[0].json
        second = check_cases([path])[0].json
        assert sum(shared.starts.values()) == len(shared.starts)   # the second check started nothing
    assert _plain(first) == _plain(alone) == _plain(second)


def test_a_killed_shared_worker_is_replaced():
    path = str(ROOT / "comparisons/penalty_vs_coupled.toml")
    with pool.sharing() as shared:
        check_cases([path])
        for w in list(shared.workers.values()):
            w.proc.kill()
            w.proc.wait()
        again = check_cases([path])[0].json
        assert set(shared.starts.values()) == {2}
    assert all(r["status"] == "ok" for r in again["runs"].values()) and again["claim"]["holds"] is True


@pytest.fixture
def faults(monkeypatch):
    monkeypatch.setenv("WDPARITY_EXTRA_BACKENDS", "hangs=fault_backends.faulty:hangs,crashes=fault_backends.faulty:crashes")


@pytest.mark.parametrize("fault,words", [("hangs", "timed out after 5 s"), ("crashes", "exited with code 3")])
def test_a_shared_worker_that_hangs_or_crashes_costs_only_its_runs(faults, write_case, fault, words):
    text = ('title = "faults"\n[task]\nepochs = 1\n'
            f'[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.003\n'
            f'[runs.b]\nbackend = "{fault}"\noptimizer = "sgd"\nlr = 0.003\n')
    path = str(write_case(text))
    with pool.sharing() as shared:
        # 5 s lets the hang time out fast; a crash needs no timeout, and 5 s on a loaded machine can cut its start
        out = check_cases([path], timeout=5 if fault == "hangs" else 120)[0].json
        assert out["runs"]["b"]["status"] == "error" and words in out["runs"]["b"]["reason"], out["runs"]["b"]
        assert out["runs"]["a"]["status"] == "ok"
        assert [k[0] for k in shared.workers] == ["numpy"]   # the faulty one is gone, numpy's is kept
