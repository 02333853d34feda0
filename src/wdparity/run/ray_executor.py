"""`--executor ray`: each worker of run_items() is a Ray task that starts today's worker process on its node.

The worker protocol is unchanged (job.json in; ITEM.npz, ITEM.json, versions.json and "done ITEM" lines out): the
task receives the job and the task data through Ray's object store, stages wdparity on its node, runs
`PYTHON -m wdparity.run.worker JOBDIR` there with the node's environment, and returns the files it wrote through
the object store; the driver writes them where the local executor's worker would have, so judging and reports
cannot tell the executors apart (apart from timing and memory fields). The interpreter is looked up on the node:
a release venv or MXNet's venv must exist there (`wdparity setup` on each node), else its runs are skipped naming
the node. A node or Ray worker that dies costs only the runs of the workers it held, reported like a crashed
local worker. Ray is an extra (`pip install "wdparity[ray]"`), imported only when this executor is made.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from wdparity.run.processes import WorkerLog
from wdparity.spec.errors import InputError

INSTALL = 'pip install "wdparity[ray]"'


@dataclass
class Launched:
    """What a worker left: its output lines, how it ended, or why it never ran / was lost."""

    lines: list[str] = field(default_factory=list)
    timed_out: bool = False
    returncode: Optional[int] = None
    stderr_tail: list[str] = field(default_factory=list)
    skipped: Optional[str] = None     # the interpreter does not exist on the node
    lost: Optional[str] = None        # the node or the Ray worker died, or Ray could not run the task


def _die_with_parent() -> None:
    """The worker process dies with the Ray worker that started it (a killed node leaves no orphan training)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_on_node(job_text: str, python: str, env_items: tuple, extra_roots: list[str], timeout: float,
                names: list[str], *blobs: bytes) -> dict:
    """The Ray task: today's worker process on this node; returns its files (name -> bytes) and how it ended."""
    import ray

    from wdparity.run import processes

    where = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"
    start = time.monotonic()
    if not processes.interpreter_exists(python):
        backend = json.loads(job_text)["backend"]
        return {"where": where, "skipped": f"{processes.missing(python, backend)} on Ray node {where}"}
    with tempfile.TemporaryDirectory(prefix="wdparity-ray-") as name:
        tmp = Path(name)
        stage = processes.stage_packages(tmp)
        for data_name, blob in zip(names, blobs):
            (tmp / data_name).write_bytes(blob)
        jobdir = tmp / "w"
        jobdir.mkdir()
        (jobdir / "job.json").write_text(job_text)
        env = processes.worker_env(env_items, stage, [r for r in extra_roots if Path(r).is_dir()])
        lines: list[str] = []
        proc = subprocess.Popen([python, "-m", "wdparity.run.worker", str(jobdir)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, text=True, errors="replace",
                                preexec_fn=_die_with_parent)
        timed_out, tail = processes.follow(proc, timeout, lines.append)
        files = {p.name: p.read_bytes() for p in jobdir.iterdir() if p.suffix in (".json", ".npz") and p.name != "job.json"}
    return {"where": where, "files": files, "lines": lines, "timed_out": timed_out, "returncode": proc.returncode,
            "stderr_tail": tail, "seconds": time.monotonic() - start}


class RayExecutor(WorkerLog):
    """Connects to the cluster at `address` (else $RAY_ADDRESS), or starts a local Ray on demand; the log's `where`
    is the node (host:node id) each worker ran on, its `seconds` the task's time on that node."""

    name, remote = "ray", True

    def __init__(self, address: Optional[str] = None) -> None:
        super().__init__()
        try:
            import ray
        except ImportError as exc:
            raise InputError("", "--executor", f"ray needs Ray, which cannot be imported here ({exc}); {INSTALL}",
                             "ray") from None
        self.ray = ray
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.key = "--ray-address" if address else "RAY_ADDRESS"   # where a bad address came from
        self.started = not ray.is_initialized()
        if self.started:
            kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            if self.address:   # a cluster elsewhere: ship this wdparity to its nodes
                kwargs["runtime_env"] = {"py_modules": _packages(), "excludes": ["__pycache__"]}
            _probe(self.address, self.key)
            try:
                ray.init(address=self.address, **kwargs)
            except Exception as exc:   # unreachable, refused, not a Ray address
                raise InputError("", self.key, f"must be a reachable Ray cluster ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''})", self.address) from None
        self.task = ray.remote(num_cpus=1, max_retries=0)(run_on_node)

    def describe(self) -> str:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)
        at = self.address or "a local Ray started for this command"
        return f"Ray {self.ray.__version__} at {at}: {len(nodes)} nodes, {cpus:g} CPUs"

    def begin(self, tmp: Path, data_keys: list[str]) -> "_Submission":
        """One run_items() call: its task data put in the object store once, shared by every worker's task."""
        refs = {f"data_{k}.npz": self.ray.put((tmp / f"data_{k}.npz").read_bytes()) for k in data_keys}
        return _Submission(self, refs)

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


class _Submission:
    def __init__(self, executor: RayExecutor, refs: dict) -> None:
        self.executor, self.refs = executor, refs
        self.pending: set = set()
        self.lock = threading.Lock()

    def launch(self, key: tuple, jobdir: Path, extra_roots: list[str], timeout: float) -> Launched:
        """Run one worker (blocking its harness thread) and write its files into jobdir; `key` = (backend, target,
        python, env items)."""
        ray, ex = self.executor.ray, self.executor
        backend, _, python, env_items = key
        job_text = (jobdir / "job.json").read_text()
        items = json.loads(job_text)["items"]
        names = sorted({it["data"] for it in items})
        ref = ex.task.remote(job_text, python, env_items, extra_roots, timeout, names, *(self.refs[n] for n in names))
        with self.lock:
            self.pending.add(ref)
        try:
            out = ray.get(ref)
        except ray.exceptions.RayError as exc:
            ex.record(backend, python, 0.0, "lost", len(items))
            return Launched(lost=f"{type(exc).__name__} ({_first_line(exc)})")
        finally:
            with self.lock:
                self.pending.discard(ref)
        ex.record(backend, python, out.get("seconds", 0.0), out["where"], len(items))
        if out.get("skipped"):
            return Launched(skipped=out["skipped"])
        for name, blob in out["files"].items():
            (jobdir / name).write_bytes(blob)
        return Launched(lines=out["lines"], timed_out=out["timed_out"], returncode=out["returncode"],
                        stderr_tail=out["stderr_tail"])

    def cancel(self) -> None:
        with self.lock:
            pending = list(self.pending)
        for ref in pending:
            try:
                self.executor.ray.cancel(ref, force=True)
            except Exception:   # already finished or its node is gone
                pass


def _probe(address: Optional[str], key: str, seconds: float = 5.0) -> None:
    """An unreachable HOST:PORT fails in seconds (ray.init would retry it for minutes)."""
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        raise InputError("", key, "must be HOST:PORT, ray://HOST:PORT or auto", address)
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise InputError("", key, f"must be a reachable Ray cluster (cannot connect: {exc})",
                         address) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _packages() -> list[str]:
    import importlib.util

    return [str(Path(importlib.util.find_spec(n).origin).resolve().parent) for n in ("wdparity", "wdparity_backends")]
