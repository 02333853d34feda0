"""`assert_equivalent(run_a, run_b, task=None)` and `assert_diverges(run_a, run_b, causes=None, task=None)`.

Runs are dicts in the case-file vocabulary (what a `[runs.NAME]` table holds, `backend` included), `task` the
`[task]` table. The two runs become a case file in a temporary folder, checked by the same pipeline as
`wdparity check` (native training in the workers, fidelity, calibrated tolerance, causes); when the verdict
is not the asserted one, AssertionError carries the divergence table. A run whose framework is not installed
skips the test (pytest's skip, with the install command). Bad input raises wdparity's InputError (one line).
Workers are shared by every assertion of the process (run/pool.py: one start per backend, interpreter and
environment), so a suite of many assertions pays each framework's import once; they exit with the process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

_POOL = None


def shared_pool():
    """The process's worker pool (started on first use, closed at exit)."""
    global _POOL
    if _POOL is None:
        import atexit

        from wdparity.run.pool import WorkerPool

        _POOL = WorkerPool()
        atexit.register(_POOL.close)
    return _POOL


def _toml(claim: Optional[str], causes: list[str], task: Optional[dict], runs: dict[str, dict]) -> str:
    from wdparity.tools.translate import toml_value

    lines = ['title = "wdparity.testing assertion"']
    if claim:
        lines.append(f"claim = {toml_value(claim)}")
    if causes:
        lines.append(f"causes = {toml_value(list(causes))}")
    if task:
        lines.append("[task]")
        lines += [f"{k} = {toml_value(v)}" for k, v in task.items()]
    for name, run in runs.items():
        if not isinstance(run, dict):
            raise TypeError(f"run {name!r} must be a dict in the case-file vocabulary, got {type(run).__name__}")
        lines.append(f"[runs.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in run.items()]
    return "\n".join(lines) + "\n"


def check_runs(run_a: dict, run_b: dict, *, task: Optional[dict] = None, claim: Optional[str] = None,
               causes: Optional[list[str]] = None, timeout: Optional[float] = None) -> dict:
    """The contract JSON of the case {a: run_a, b: run_b} (what `wdparity check --json` prints)."""
    from wdparity.judge.check import check_cases
    from wdparity.run import harness, pool

    with tempfile.TemporaryDirectory(prefix="wdparity-assert-") as tmp:
        path = Path(tmp) / "assertion.toml"
        path.write_text(_toml(claim, list(causes or []), task, {"a": run_a, "b": run_b}), encoding="utf-8")
        with pool.sharing(shared_pool()):
            results = check_cases([str(path)], timeout=timeout or harness.DEFAULT_TIMEOUT)
    return results[0].json


def _skip(reason: str):
    try:
        import pytest
    except ImportError:   # outside pytest: an unverifiable assertion is not a pass
        raise AssertionError(f"not verified: {reason}")
    pytest.skip(reason)


def _judged(result: dict, expected: str, causes: Optional[list[str]]) -> None:
    from wdparity.report.junit import case_text, outcome

    state, reason = outcome(result)
    pair = result["pairs"][0]
    if state == "skipped":
        _skip(reason or "a framework is missing")
    if state == "passed" and pair["verdict"] == expected and (
            causes is None or expected == "equivalent" or set(causes) == set(pair["causes"])):
        return
    measured = pair["verdict"] + (f" (causes {', '.join(pair['causes'])})" if pair["causes"] else "")
    want = expected + (f" with causes {sorted(causes)}" if causes else "")
    raise AssertionError(f"expected {want}; measured {measured}" + (f": {reason}" if reason else "")
                         + "\n" + case_text(result))


def assert_equivalent(run_a: dict, run_b: dict, task: Optional[dict] = None, *, timeout: Optional[float] = None) -> dict:
    """Passes when the two runs train to the same trajectory within the calibrated tolerance; returns the JSON."""
    result = check_runs(run_a, run_b, task=task, claim="equivalent", timeout=timeout)
    _judged(result, "equivalent", None)
    return result


def assert_diverges(run_a: dict, run_b: dict, causes: Optional[list[str]] = None, task: Optional[dict] = None, *,
                    timeout: Optional[float] = None) -> dict:
    """Passes when the two runs diverge (and, with `causes`, for exactly those measured causes); returns the JSON."""
    result = check_runs(run_a, run_b, task=task, claim="diverges" if causes else None, causes=causes, timeout=timeout)
    _judged(result, "diverges", list(causes) if causes else None)
    return result
