"""How one worker process is started and followed wherever it runs: its interpreter (a release venv's), its
environment, the staged packages on its PYTHONPATH, its output lines and timeout. harness.run_items() uses these
on this machine; run/ray_executor.py uses the same on a Ray node, so a worker is the same process under either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

# Small regressions run fastest single-threaded, and fixed threads keep results deterministic.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "PYTHONHASHSEED": "0", "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1",
}

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


def missing(python: str, backend: str) -> str:
    folder = Path(python).parent.parent.parent
    if folder.parent == releases_root() and not (folder / "manifest.json").exists():
        release = folder.name.replace("-", "==", 1)
        return (f"release {release} for backend {backend} is not set up ({python} does not exist); run "
                f"`wdparity setup {release}`")
    return f"interpreter {python} for backend {backend} does not exist"


def stage_packages(tmp: Path) -> Path:
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


def interpreter_exists(python: str) -> bool:
    return python == sys.executable or shutil.which(python) is not None or Path(python).exists()


def worker_env(env_items, stage, extra_roots: list[str], base: Optional[dict] = None) -> dict[str, str]:
    """A worker's environment: this process's (or a node's) less Keras/venv/path settings, the fixed threads, the
    run's own env, and PYTHONPATH = the staged packages (+ a test backend's import root)."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(("KERAS_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(WORKER_ENV)
    env.update(dict(env_items))
    env["PYTHONPATH"] = os.pathsep.join([str(stage), *extra_roots])
    return env


def follow(proc: subprocess.Popen, timeout: float, follow) -> tuple[bool, list[str]]:
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


def extra_roots(target: str) -> list[str]:
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


class WorkerLog:
    """Each worker an executor ran: backend, interpreter, where (local, or a Ray node), seconds, runs (benchmarks
    read it: per-worker times are what a projection to N nodes schedules)."""

    def __init__(self) -> None:
        self.log: list[dict] = []
        self._lock = threading.Lock()

    def record(self, backend: str, python: str, seconds: float, where: str, runs: int) -> None:
        with self._lock:
            self.log.append({"backend": backend, "python": python, "where": where, "seconds": round(seconds, 3),
                             "runs": runs})
