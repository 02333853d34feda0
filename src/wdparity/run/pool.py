"""Workers kept across calls: one `worker --serve` process per (backend, interpreter, env), reused by every
run_items() inside `sharing()`, so a test suite of many small checks (wdparity.testing's assertions) pays each
framework's import once instead of once per check.

The protocol is the one-shot worker's (job.json in, ITEM.npz/ITEM.json and "done ITEM" out), plus one job folder
per stdin line and "end JOBDIR" after it. A worker that dies or runs past the timeout is killed and forgotten: it
costs only its runs, reported like a one-shot worker's, and the next call starts a fresh one.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

_ACTIVE: Optional["WorkerPool"] = None


class _Worker:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: queue.Queue = queue.Queue()
        self.stderr_tail: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)   # end of output: the process is gone

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail.append(line)
            del self.stderr_tail[:-20]


class WorkerPool:
    """Live `--serve` workers by key; `starts[key]` counts how often each was started (tests read it)."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="wdparity-pool-")
        self.stage: Optional[Path] = None
        self.workers: dict[tuple, _Worker] = {}
        self.starts: dict[tuple, int] = {}
        self.lock = threading.Lock()

    def staged(self, make_stage) -> Path:
        """The pool's own staged package folder (a worker's PYTHONPATH outlives any one call's temporary folder)."""
        with self.lock:
            if self.stage is None:
                self.stage = make_stage(Path(self._tmp.name))
            return self.stage

    def worker(self, key: tuple, argv: list[str], env: dict) -> _Worker:
        with self.lock:
            w = self.workers.get(key)
            if w is not None and w.proc.poll() is None:
                return w
            proc = subprocess.Popen(argv + ["--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, text=True, errors="replace")
            self.workers[key] = w = _Worker(proc)
            self.starts[key] = self.starts.get(key, 0) + 1
            return w

    def run(self, key: tuple, argv: list[str], env: dict, jobdir: Path, timeout: float, on_line) -> tuple:
        """Send one job folder; call on_line(line) for each output line until its "end". Returns (timed_out,
        returncode or None, stderr tail). A dead or timed-out worker is dropped from the pool."""
        w = self.worker(key, argv, env)
        deadline = time.monotonic() + timeout
        try:
            w.proc.stdin.write(f"{jobdir}\n")
            w.proc.stdin.flush()
        except OSError:
            pass   # it died: the loop below sees its end of output
        end = f"end {jobdir}"
        while True:
            left = deadline - time.monotonic()
            try:
                line = w.lines.get(timeout=max(left, 0.01)) if left > 0 else None
            except queue.Empty:
                line = None
            if line is None:   # end of output, or the deadline passed
                # Not poll(): a worker that just crashed may not be reaped yet, and is no time-out.
                timed_out = time.monotonic() >= deadline
                self.drop(key, w)
                return timed_out, w.proc.returncode, list(w.stderr_tail)
            if line.strip() == end:
                return False, None, list(w.stderr_tail)
            on_line(line)

    def drop(self, key: tuple, w: _Worker) -> None:
        with self.lock:
            if self.workers.get(key) is w:
                del self.workers[key]
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.wait()

    def close(self) -> None:
        for key, w in list(self.workers.items()):
            with contextlib.suppress(OSError):
                w.proc.stdin.close()   # end of input: the worker exits on its own
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        self.workers.clear()
        self._tmp.cleanup()


def active() -> Optional[WorkerPool]:
    return _ACTIVE


@contextlib.contextmanager
def sharing(pool: Optional[WorkerPool] = None) -> Iterator[WorkerPool]:
    """Every run_items() inside reuses the pool's workers (a new pool, closed at the end, unless one is given)."""
    global _ACTIVE
    previous, own = _ACTIVE, pool is None
    _ACTIVE = pool = pool or WorkerPool()
    try:
        yield pool
    finally:
        _ACTIVE = previous
        if own:
            pool.close()

