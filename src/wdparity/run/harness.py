"""Runs every backend in its own worker process: one per (backend, interpreter, env) per invocation.

Why processes: Keras reads KERAS_BACKEND once per process, TensorFlow and JAX grab threads and
memory, MXNet needs numpy < 1.24 in a venv of its own. A worker that is missing, crashes, hangs
past its timeout or prints garbage costs only its own runs (status "skipped"/"error" with the
reason); every other worker completes. Arrays travel as .npz files in a temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from wdparity.engine.recording import task_steps
from wdparity.run import executors, pool
from wdparity.run.processes import (  # noqa: F401
    RELEASE,
    WORKER_ENV,
    extra_roots,
    interpreter_exists,
    missing,
    release_python,
    releases_root,
    stage_packages,
    worker_env,
)
from wdparity.run.processes import follow as follow_worker

DEFAULT_TIMEOUT = 900.0
# Rough seconds a worker pays to start (framework import) and per optimizer step, for longest-first
# scheduling: with two cores, starting the Keras worker last would leave one core idle at the end.
START_COST = {"keras": 7.0, "torch": 3.0, "mxnet": 2.5, "optax": 2.0}
STEP_COST = {"keras": 2e-3, "optax": 1e-3, "torch": 1e-3, "mxnet": 1e-3}


@dataclass
class WorkItem:
    id: str
    backend: str
    target: str                      # "module:attr" of the backend object
    python: Optional[str]            # interpreter; None = this one
    env: dict[str, str]
    job: dict                        # task, run, semantics, dtype
    data_key: str                    # which shared data file


@dataclass
class Result:
    status: str                      # ok | skipped | error
    reason: Optional[str] = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: Optional[float] = None


def estimated_cost(backend: str, group: list[WorkItem]) -> float:
    steps = 0
    for it in group:
        try:
            steps += task_steps(it.job.get("task", {}))
        except (KeyError, TypeError, ValueError):
            steps += 1000
    return START_COST.get(backend, 0.5) + STEP_COST.get(backend, 2e-4) * steps


def run_items(items: list[WorkItem], data: dict[str, dict[str, np.ndarray]], *,
              timeout: float = DEFAULT_TIMEOUT, parallel: Optional[int] = None,
              on_done: Optional[Callable[[WorkItem], None]] = None,
              on_result: Optional[Callable[[str, Result], None]] = None) -> dict[str, Result]:
    """Run all items, grouped into one worker per (backend, interpreter, env); return id -> Result.

    Workers start longest-first, `parallel` at a time; `on_result(id, result)` is called (from a
    reader thread) as soon as each item's trajectory is written, so the caller can judge while the
    other workers still train."""
    results: dict[str, Result] = {}
    if not items:
        return results
    groups: dict[tuple, list[WorkItem]] = {}
    for item in items:
        key = (item.backend, item.target, item.python or sys.executable, tuple(sorted(item.env.items())))
        groups.setdefault(key, []).append(item)
    by_id = {item.id: item for item in items}
    chosen = executors.active()   # inside executors.using(): `--executor ray`, or the local one keeping a log
    with tempfile.TemporaryDirectory(prefix="wdparity-") as tmpname:
        tmp = Path(tmpname)
        for key, arrays in data.items():
            np.savez(tmp / f"data_{key}.npz", **arrays)
        remote = chosen.begin(tmp, list(data)) if chosen is not None and chosen.remote else None
        # Remote: every worker is submitted at once and the cluster's scheduler decides where and when each runs.
        parallel = len(groups) if remote else parallel or max(1, min(len(groups), os.cpu_count() or 1))
        shared = None if remote else pool.active()   # inside pool.sharing(): workers outlive this call
        stage = None if remote else shared.staged(stage_packages) if shared else stage_packages(tmp)
        lock = threading.Lock()
        live: list[subprocess.Popen] = []
        queue = sorted(enumerate(groups.items()), key=lambda e: -estimated_cost(e[1][0][0], e[1][1]))
        delivered: set[str] = set()

        def deliver(ident: str, res: Result) -> None:
            with lock:
                if ident in delivered:
                    return
                delivered.add(ident)
            on_result(ident, res)

        def runner() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    index, (key, group) = queue.pop(0)
                began = time.monotonic()
                out = _run_worker(tmp / f"w{index}", key, group, stage, timeout, by_id, on_done, lock, live,
                                  deliver if on_result else None, shared, remote)
                if chosen is not None and remote is None:
                    chosen.record(key[0], key[2], time.monotonic() - began, "local", len(group))
                with lock:
                    results.update(out)
                for ident, res in out.items() if on_result else ():
                    deliver(ident, res)

        threads = [threading.Thread(target=runner, daemon=True) for _ in range(parallel)]
        try:
            for th in threads:
                th.start()
            for th in threads:
                while th.is_alive():
                    th.join(timeout=0.2)
        except BaseException:  # Ctrl-C: no worker outlives the invocation
            for proc in list(live):
                if proc.poll() is None:
                    proc.kill()
            if remote is not None:
                remote.cancel()
            raise
    return results


def _run_worker(jobdir: Path, key: tuple, group: list[WorkItem], stage: Path, timeout: float,
                by_id: dict[str, WorkItem], on_done, lock, live: list, on_result=None,
                shared: Optional[pool.WorkerPool] = None, remote=None) -> dict[str, Result]:
    backend, target, python, env_items = key
    jobdir.mkdir()
    job = {"backend": backend, "target": target,
           "items": [{"id": it.id, "data": f"data_{it.data_key}.npz", "job": it.job} for it in group]}
    (jobdir / "job.json").write_text(json.dumps(job))
    start = time.monotonic()
    if remote is None and not interpreter_exists(python):
        return {it.id: Result("skipped", missing(python, backend)) for it in group}
    collected: dict[str, Result] = {}

    def follow(line: str) -> None:
        ident = line.strip()[5:] if line.startswith("done ") else None
        if ident not in by_id:
            return
        if on_result is not None and ident not in collected:
            res = _collect(jobdir, backend, _read_json(jobdir / "versions.json") or {}, ident)
            if res is not None:
                collected[ident] = res
                on_result(ident, res)
        if on_done is not None:
            with lock:
                on_done(by_id[ident])

    argv = [python, "-m", "wdparity.run.worker"]
    lost = None   # why a remote executor lost the worker (its node died), for the runs it never finished
    if remote is not None:
        launched = remote.launch(key, jobdir, extra_roots(target), timeout)
        if launched.skipped:
            return {it.id: Result("skipped", launched.skipped) for it in group}
        for line in launched.lines:
            follow(line)
        timed_out, returncode, stderr_tail, lost = launched.timed_out, launched.returncode, launched.stderr_tail, launched.lost
    elif shared is not None:
        env = worker_env(env_items, stage, extra_roots(target))
        try:
            timed_out, returncode, stderr_tail = shared.run(key, argv, env, jobdir, timeout, follow)
        except OSError as exc:
            return {it.id: Result("error", f"cannot start worker {python}: {exc}") for it in group}
    else:
        env = worker_env(env_items, stage, extra_roots(target))
        try:
            proc = subprocess.Popen(argv + [str(jobdir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    text=True, errors="replace")
        except OSError as exc:
            return {it.id: Result("error", f"cannot start worker {python}: {exc}") for it in group}
        live.append(proc)
        timed_out, stderr_tail = follow_worker(proc, timeout, follow)
        returncode = proc.returncode
    elapsed = time.monotonic() - start
    versions = _read_json(jobdir / "versions.json") or {}
    out = {}
    for it in group:
        if it.id in collected:
            out[it.id] = collected[it.id]
            continue
        res = _collect(jobdir, backend, versions, it.id)
        if res is None:
            if lost:
                reason = f"worker for {backend} lost before this run: {lost}"
            elif timed_out:
                reason = f"worker for {backend} timed out after {timeout:.0f} s"
            else:
                last = "".join(stderr_tail).strip().splitlines()[-1:] or ["no output"]
                reason = f"worker for {backend} exited with code {returncode} before this run: {last[0][:300]}"
            res = Result("error", reason, versions=versions, seconds=elapsed)
        out[it.id] = res
    return out


def _collect(jobdir: Path, backend: str, versions: dict, ident: str) -> Optional[Result]:
    """The result the worker wrote for one item; None when it wrote none."""
    status = _read_json(jobdir / f"{ident}.json")
    if status is None:
        return None
    res = Result(status.get("status", "error"), status.get("reason"), versions=versions,
                 seconds=float(status.get("seconds", 0.0)), peak_rss_mb=status.get("peak_rss_mb"))
    if res.status == "ok":
        try:
            with np.load(jobdir / f"{ident}.npz") as npz:
                res.arrays = {k: npz[k] for k in npz.files}
        except Exception as exc:
            res = Result("error", f"unreadable trajectory from {backend}: {exc}", versions=versions)
    return res


def _read_json(path: Path) -> Optional[dict]:
    try:
        obj = json.loads(path.read_text())
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None
