"""Memory a case needs, estimated from its task before anything is allocated, against the memory available.

A case's memory grows with its sizes: the task data (X_train, X_test: (n_train + n_test) x num_inputs
float64), the batch order (epochs x n_train int64), each run's recorded trajectory ((steps + 1) x
num_inputs values in "full" recording, the recorded rows in "checkpoints": recording.plan) and the
float64 reference replays the judge keeps of each run (the envelope, fidelity and diagnosis: counted
as REFERENCES_PER_RUN per run). Every process holds its own copy: the judge (this process) the data,
the order, every run's trajectory as the worker returns it and the references; each worker the data
(read back from the .npz), its cast to the run dtype, the order and the trajectories it holds at
once. Smaller terms that can still dominate: the per-step bookkeeping (data.batches keeps a view per
step) and the batch Hessian or Gram matrix of the SGD stability bound (stability.curvature). Schema-valid sizes can ask for exabytes (`num_inputs = 10000000, n_train = 1000000000000`):
`check` refuses a case whose estimate exceeds the available memory with the usual one-line
InputError (exit 2) naming the file, `task` and the received sizes, before make_data allocates.

The estimate counts what scales with the case, not the frameworks' own fixed footprint (an import
of TensorFlow is a few hundred MB whatever the task). It is arithmetic on Python ints only: no
array is made, however absurd the sizes. Available memory: $WDPARITY_MEMORY_BYTES if set (tests,
or a deliberate limit), else MemAvailable of /proc/meminfo (capped by a cgroup v2 memory.max), else
the free physical pages; when none can be read, nothing is refused.

NumPy + standard library only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from wdparity.engine.recording import plan, values_per_row
from wdparity.spec.errors import InputError, show

ENV_VAR = "WDPARITY_MEMORY_BYTES"
REFERENCES_PER_RUN = 8     # float64 reference trajectories the judge keeps per run (envelope, fidelity, diagnosis)
TRAJECTORIES_PER_WORKER = 2  # a worker's last result is still referenced while it trains its next item
PER_STEP_BYTES = 136       # data.batches(): a ~112-byte index view + an 8-byte list slot per step; schedules, bias
INDEX_BYTES = 36           # stability.curvature keeps each distinct batch as a tuple of Python ints (28 + 8 bytes)
EXACT_LIMIT = 1500         # stability.EXACT_LIMIT: above it the Hessian is bounded through the batch Gram matrix
KEYS = ("num_inputs", "n_train", "n_test", "batch_size", "epochs", "dtype", "record", "checkpoint_every")


TERMS = ("data", "batch order", "bookkeeping", "trajectories", "references", "batch")
SIZE_KEYS = ("num_inputs", "n_train", "n_test", "epochs", "batch_size")


@dataclass(frozen=True)
class Estimate:
    """Bytes a case needs, per process and per term; every count is a Python int (no overflow, no allocation)."""

    runs: int
    workers: int
    mode: str                 # the recording plan: "full" or "checkpoints"
    steps: int
    n_train: int
    n_test: int
    data_values: int          # float64 values of the task data (X, y, w0, b0)
    order_values: int         # int64 batch-order entries
    trajectory_values: int    # recorded weight values of one run
    summary_values: int       # per-step summaries of one run (checkpoints: bias, norm, absmax, digest per step)
    references: int           # float64 reference trajectories the judge keeps, all runs together
    square_values: int        # the largest batch Hessian or Gram matrix the stability bound builds
    judge_terms: dict         # term -> bytes in the judge
    worker_terms: dict        # term -> bytes in each worker

    @property
    def judge(self) -> int:
        return sum(self.judge_terms.values())

    @property
    def worker(self) -> int:
        return sum(self.worker_terms.values())

    @property
    def total(self) -> int:
        return self.judge + self.workers * self.worker

    def term(self, name: str) -> int:
        """Bytes of one term over every process."""
        return self.judge_terms.get(name, 0) + self.workers * self.worker_terms.get(name, 0)


def estimate(task: Mapping[str, Any], runs: int, workers: int, *, itemsize: Optional[int] = None,
             per_worker: Optional[int] = None, references: int = REFERENCES_PER_RUN) -> Estimate:
    """The memory a task (a spec.Task as a dict) needs with `runs` runs, `workers` workers running at once.

    itemsize: bytes of a run's value (default from task["dtype"]); per_worker: trajectories one worker
    holds at once (default TRAJECTORIES_PER_WORKER, at most `runs`); references: per run, in the judge."""
    d, n_train, n_test = int(task["num_inputs"]), int(task["n_train"]), int(task["n_test"])
    epochs, bs = int(task["epochs"]), int(task["batch_size"])
    size = itemsize or (8 if task.get("dtype", "float32") == "float64" else 4)
    steps = epochs * -(-n_train // bs)
    how = plan(dict(task))
    if how["mode"] == "full":
        rows, summaries = steps + 1, 0
    else:
        every = int(how["every"])
        rows = steps // every + 1 + (1 if steps % every else 0)   # len(recording.recorded_steps), counted
        summaries = steps + 1                                      # per step: bias, norm, absmax, digest
    weights = rows * values_per_row(dict(task))   # a network's row holds every tensor (recording.values_per_row)

    def trajectory(nbytes: int) -> int:   # Recorder.result(): weight rows, bias, the per-step summaries
        return weights * nbytes + (rows + summaries) * nbytes + summaries * 24 + rows * 8

    data_values = (n_train + n_test) * (d + 1) + d + 1
    order = epochs * n_train
    # stability.curvature: each distinct batch kept as a tuple of ints; its Hessian ((d+1)^2, up to
    # EXACT_LIMIT) or Gram matrix (batch^2) with eigvalsh's workspace and copies.
    distinct = n_train * (epochs if task.get("shuffle", True) and steps > epochs else 1)
    square = max((d + 1) ** 2, bs ** 2) if d + 1 <= EXACT_LIMIT else bs ** 2
    batch_rows = 2 * bs * (d + 1) * 8                                # a batch's rows gathered, and its residual
    per_worker = min(runs, TRAJECTORIES_PER_WORKER if per_worker is None else per_worker)
    judge = {"data": 2 * data_values * 8,                            # the arrays, and a replay's cast of them
             "batch order": 2 * order * 8 + distinct * INDEX_BYTES,  # make_data stacks, then casts
             "bookkeeping": steps * PER_STEP_BYTES,
             "trajectories": runs * trajectory(size),
             "references": runs * references * trajectory(8),
             "batch": 3 * square * 8 + batch_rows}
    worker = {"data": data_values * (8 + size),                      # read from the .npz, cast to the run dtype
              "batch order": order * 8,
              "bookkeeping": steps * PER_STEP_BYTES,
              "trajectories": per_worker * trajectory(size),
              "batch": batch_rows}
    return Estimate(runs, workers, how["mode"], steps, n_train, n_test, data_values, order, weights, 4 * summaries,
                    runs * references, square, judge, worker)


def available() -> tuple[Optional[int], str]:
    """(bytes available, where that number comes from); (None, "") when it cannot be read."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw:
        try:
            value = float(raw.replace("_", ""))
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 1):
            raise InputError("", ENV_VAR, "must be a number of bytes >= 1 (the memory wdparity may use)", raw)
        return int(value), ENV_VAR
    found, source = None, ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found, source = int(line.split()[1]) * 1024, "MemAvailable"
                break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found, source = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical memory"
        except (ValueError, OSError, AttributeError):
            return None, ""
    try:   # a container's limit (cgroup v2) is what the kernel's OOM killer enforces
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            room = int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            if room < found:
                found, source = max(0, room), "cgroup memory.max"
    except (OSError, ValueError):
        pass
    return found, source


def size_text(nbytes: int) -> str:
    """512 B, 19.1 MiB, 69.4 EiB; past 10 000 EiB in bytes (1.8e+23 B)."""
    if nbytes < 1024:
        return f"{nbytes} B"
    value = float(min(nbytes, 10 ** 300))
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}" if value < 10_000 else f"{float(min(nbytes, 10 ** 300)):.1e} B"


def _count(n: int) -> str:
    return f"{float(min(n, 10 ** 300)):.1e}" if n >= 10_000 else str(n)


class BudgetError(InputError):
    """A task over the memory budget; `received` is {key: value} of the task keys the estimate used."""

    def __init__(self, where: str, expected: str, received: dict):
        super().__init__(where, "task", expected, received)

    def __str__(self) -> str:
        head = f"{self.where}: " if self.where else ""
        got = ", ".join(f"task.{k}={show(v)}" for k, v in self.received.items())
        return f"{head}`task` {self.expected}. Received: {got}".replace("\n", " ")


def check(where: str, task: Any, given: Any, *, runs: int, workers: int, itemsize: Optional[int] = None,
          per_worker: Optional[int] = None, references: int = REFERENCES_PER_RUN) -> Estimate:
    """Raise BudgetError when the task (a validated spec.Task or its dict) needs more than is available.

    `given`: the file's own [task] table, to name the keys the user set."""
    values = task.model_dump() if hasattr(task, "model_dump") else dict(task)
    est = estimate(values, runs, workers, itemsize=itemsize, per_worker=per_worker, references=references)
    room, source = available()
    if room is None or est.total <= room:
        return est
    given = given if isinstance(given, dict) else {}
    received = {k: values[k] for k in KEYS if k in given} or {k: values[k] for k in ("num_inputs", "n_train", "epochs")}
    raise BudgetError(where, _explain(est, room, source), received)


def _grows_with(est: Estimate, term: str) -> tuple[str, ...]:
    """The task keys a term grows with, as far as reducing them would help."""
    if term == "data":
        return ("num_inputs",) + (("n_train",) if 4 * est.n_train >= est.n_test else ()) + \
            (("n_test",) if 4 * est.n_test >= est.n_train else ())
    if term in ("trajectories", "references"):
        if est.mode == "checkpoints" and est.trajectory_values >= est.summary_values:
            return ("num_inputs",)   # the recorded rows: checkpoint_every sets how many
        return (("num_inputs",) if est.mode == "full" else ()) + ("n_train", "epochs")
    if term == "batch":
        return ("batch_size",)
    return ("n_train", "epochs")     # the batch order, the per-step bookkeeping


def _explain(est: Estimate, room: int, source: str) -> str:
    """`task` needs an estimated ... but ... is available; what to reduce."""
    run_word = f"{est.runs} run{'s' if est.runs != 1 else ''}"
    worker_word = f"{est.workers} worker{'s' if est.workers != 1 else ''}"
    largest = max(est.term(name) for name in TERMS)
    big = [name for name in TERMS if 4 * est.term(name) >= largest]
    parts = [f"data {_count(est.data_values)} values", f"batch order {_count(est.order_values)} indices",
             f"trajectories {run_word} x {_count(est.trajectory_values)} values"]
    if est.references:
        parts.append(f"{est.references} float64 references of as many")
    if "bookkeeping" in big:
        parts.append(f"{_count(est.steps)} steps of bookkeeping")
    if "batch" in big:
        parts.append(f"a batch Hessian of {_count(est.square_values)} values")
    keys = [k for k in SIZE_KEYS if any(k in _grows_with(est, name) for name in big)]
    options = ["reduce " + (", ".join(keys[:-1]) + " or " + keys[-1] if len(keys) > 1 else keys[0])]
    if "bookkeeping" in big and "batch" not in big:
        options.append("raise batch_size")
    rows_matter = est.mode == "full" or est.trajectory_values >= est.summary_values
    if rows_matter and {"trajectories", "references"} & set(big):
        options.append('set record = "checkpoints"' if est.mode == "full" else "raise checkpoint_every")
    return (f"needs an estimated {size_text(est.total)} for {run_word} (the judge {size_text(est.judge)}: "
            f"{', '.join(parts)}; {worker_word} {size_text(est.worker)} each) but {size_text(room)} is "
            f"available ({source}); {', or '.join(options)}")


def _itemsize(dtypes: Iterable[Any]) -> int:
    return 8 if any(t == "float64" for t in dtypes) else 4


def _workers(tables: Iterable[Any], runs: int) -> int:
    """Workers that run at once: one per (backend, interpreter), at most one per CPU (harness.run_items)."""
    groups = {(t.get("backend"), t.get("python")) if isinstance(t, dict) else None for t in tables}
    return max(1, min(len(groups) or 1, runs, os.cpu_count() or 1))


def check_case(where: str, task: Any, data: Any, runs: Mapping[str, Any]) -> Estimate:
    """A case file: its [runs.NAME] tables (raw) give the run count, the workers and the dtypes."""
    tables = list(runs.values())
    dtypes = [task.dtype] + [t.get("dtype") for t in tables if isinstance(t, dict)]
    given = data.get("task") if isinstance(data, dict) else None
    return check(where, task, given, runs=len(tables), workers=_workers(tables, len(tables)),
                 itemsize=_itemsize(dtypes))


def check_grid(where: str, task: Any, data: Any, conventions: Mapping[str, Any], configs: int) -> Estimate:
    """A sweep or grid file: `configs` runs per convention. The judge keeps every config's result until the
    file is collected but replays no reference; a worker trains a convention's configs together."""
    tables = [getattr(conv, "run", conv) for conv in conventions.values()]
    dtypes = [task.dtype] + [t.get("dtype") for t in tables if isinstance(t, dict)]
    given = data.get("task") if isinstance(data, dict) else None
    runs = configs * len(tables)
    return check(where, task, given, runs=runs, workers=_workers(tables, runs), itemsize=_itemsize(dtypes),
                 per_worker=max(configs, TRAJECTORIES_PER_WORKER), references=0)
