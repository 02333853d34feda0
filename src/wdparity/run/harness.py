"""Runs every backend in its own worker process: one per (backend, interpreter, env) per invocation.

Why processes: Keras reads KERAS_BACKEND once per process, TensorFlow and JAX grab threads and
memory, MXNet needs numpy < 1.24 in a venv of its own. A worker that is missing, crashes, hangs
past its timeout or prints garbage costs only its own runs (status "skipped"/"error" with the
reason); every other worker completes. Arrays travel as .npz files in a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
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
from wdparity.run import pool

# Small regressions run fastest single-threaded, and fixed threads keep results deterministic.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "PYTHONHASHSEED": "0", "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1",
}
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


RELEASE = "release:"   # a run's `python = "release:FRAMEWORK==VERSION"`: the venv of `wdparity setup FRAMEWORK==VERSION`


def releases_root() -> Path:
    """Where `wdparity setup FRAMEWORK==VERSION` keeps its venvs: $WDPARITY_RELEASES_DIR or ~/.cache/wdparity/releases."""
    given = os.environ.get("WDPARITY_RELEASES_DIR")
    return Path(given).expanduser() if given else Path.home() / ".cache" / "wdparity" / "releases"


def release_python(value: Optional[str]) -> Optional[str]:
    """A run's `python` key: a path as given, or "release:FRAMEWORK==VERSION" -> that release's venv interpreter."""
    if not value or not value.startswith(RELEASE):
        return value
    framework, _, version = value[len(RELEASE):].partition("==")
    return str(releases_root() / f"{framework}-{version}" / "venv" / "bin" / "python")


def _missing(python: str, backend: str) -> str:
    folder = Path(python).parent.parent.parent
    if folder.parent == releases_root() and not (folder / "manifest.json").exists():
        release = folder.name.replace("-", "==", 1)
        return (f"release {release} for backend {backend} is not set up ({python} does not exist); run "
                f"`wdparity setup {release}`")
    return f"interpreter {python} for backend {backend} does not exist"


def _stage_packages(tmp: Path) -> Path:
    """A directory holding only links to wdparity and wdparity_backends, for the worker's PYTHONPATH.

    Putting site-packages itself on PYTHONPATH would leak this venv's numpy into another interpreter.
    """
    import importlib.util

    stage = tmp / "pkgs"
    stage.mkdir()
    for name in ("wdparity", "wdparity_backends"):   # found, not imported: the adapters sit above this layer
        src = Path(importlib.util.find_spec(name).origin).resolve().parent
        (stage / src.name).symlink_to(src, target_is_directory=True)
    return stage


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
    parallel = parallel or max(1, min(len(groups), os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="wdparity-") as tmpname:
        tmp = Path(tmpname)
        shared = pool.active()   # inside pool.sharing(): workers outlive this call
        stage = shared.staged(_stage_packages) if shared else _stage_packages(tmp)
        for key, arrays in data.items():
            np.savez(tmp / f"data_{key}.npz", **arrays)
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
                out = _run_worker(tmp / f"w{index}", key, group, stage, timeout, by_id, on_done, lock, live,
                                  deliver if on_result else None, shared)
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
            raise
    return results


def _run_worker(jobdir: Path, key: tuple, group: list[WorkItem], stage: Path, timeout: float,
                by_id: dict[str, WorkItem], on_done, lock, live: list, on_result=None,
                shared: Optional[pool.WorkerPool] = None) -> dict[str, Result]:
    backend, target, python, env_items = key
    jobdir.mkdir()
    job = {"backend": backend, "target": target,
           "items": [{"id": it.id, "data": f"data_{it.data_key}.npz", "job": it.job} for it in group]}
    (jobdir / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(WORKER_ENV)
    env.update(dict(env_items))
    env["PYTHONPATH"] = os.pathsep.join([str(stage), *_extra_roots(target)])
    start = time.monotonic()
    if python != sys.executable and shutil.which(python) is None and not Path(python).exists():
        return {it.id: Result("skipped", _missing(python, backend)) for it in group}
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
    if shared is not None:
        try:
            timed_out, returncode, stderr_tail = shared.run(key, argv, env, jobdir, timeout, follow)
        except OSError as exc:
            return {it.id: Result("error", f"cannot start worker {python}: {exc}") for it in group}
    else:
        try:
            proc = subprocess.Popen(argv + [str(jobdir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    text=True, errors="replace")
        except OSError as exc:
            return {it.id: Result("error", f"cannot start worker {python}: {exc}") for it in group}
        live.append(proc)
        timed_out, stderr_tail = _follow(proc, timeout, follow)
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
            if timed_out:
                reason = f"worker for {backend} timed out after {timeout:.0f} s"
            else:
                last = "".join(stderr_tail).strip().splitlines()[-1:] or ["no output"]
                reason = f"worker for {backend} exited with code {returncode} before this run: {last[0][:300]}"
            res = Result("error", reason, versions=versions, seconds=elapsed)
        out[it.id] = res
    return out


def _follow(proc: subprocess.Popen, timeout: float, follow) -> tuple[bool, list[str]]:
    """Feed a one-shot worker's output lines to `follow` until it exits, killing it past `timeout`: (timed out,
    the last lines of its stderr, for the reasons of runs it never finished)."""
    tail: list[str] = []

    def drain_stderr():
        for line in proc.stderr:
            tail.append(line)
            del tail[:-20]

    def follow_stdout():
        for line in proc.stdout:
            follow(line)

    readers = [threading.Thread(target=drain_stderr, daemon=True), threading.Thread(target=follow_stdout, daemon=True)]
    for th in readers:
        th.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    for th in readers:
        th.join(timeout=5)
    return timed_out, tail


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


def _extra_roots(target: str) -> list[str]:
    """Import roots of a backend module that lives outside the staged packages (tests' fault backends)."""
    module = target.partition(":")[0]
    if module.split(".")[0] in ("wdparity", "wdparity_backends"):
        return []
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return []
    root = Path(spec.origin).resolve().parent
    for _ in module.split(".")[1:]:
        root = root.parent
    return [str(root)]


def _read_json(path: Path) -> Optional[dict]:
    try:
        obj = json.loads(path.read_text())
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None
