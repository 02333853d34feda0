"""Which executor runs the workers of run_items(): the local one (worker processes on this machine, the default)
or a distributed engine a command asked for (`--executor ray`, run/ray_executor.py, imported only then).

Either way a worker is today's worker process, one per (backend, interpreter, env), so Keras backends, JAX's x64
flag and per-release interpreters stay one per process; an executor only decides where that process runs and how
its files travel. Each keeps a log of its workers (backend, interpreter, where, seconds, runs) for benchmarks.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from wdparity.run.processes import WorkerLog
from wdparity.spec.errors import InputError

EXECUTORS = ("local", "ray")
_ACTIVE = None


class Local(WorkerLog):
    """Worker processes on this machine (harness.run_items' own threads); only keeps the log."""

    name, remote = "local", False

    def describe(self) -> str:
        return "local worker processes"

    def close(self) -> None:
        pass


def active():
    return _ACTIVE


def make(name: str, address: Optional[str] = None):
    """The executor `--executor NAME [--ray-address ADDRESS]` asks for; bad names and addresses are InputErrors."""
    if name not in EXECUTORS:
        raise InputError("", "--executor", f"must be one of {list(EXECUTORS)}", name)
    if name == "local":
        if address:
            raise InputError("", "--ray-address", "needs --executor ray", address)
        return Local()
    from wdparity.run.ray_executor import RayExecutor

    return RayExecutor(address)


@contextlib.contextmanager
def using(executor) -> Iterator:
    """Every run_items() inside runs its workers with `executor` (closed at the end)."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, executor
    try:
        yield executor
    finally:
        _ACTIVE = previous
        executor.close()
