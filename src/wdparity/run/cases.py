"""Case files into runs: each run's keys validated by its backend's vocabulary, described in neutral terms,
and turned into a work item for its worker (harness.py). A problem is one InputError naming the file,
the key and the received value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pydantic import ValidationError

from wdparity.run import registry
from wdparity.spec.casefile import CaseHeader, RunHeader, read_toml
from wdparity.spec.errors import InputError, from_validation_error
from wdparity.spec.models import Semantics, Strict, Task
from wdparity.spec.network import tensor_scope


@dataclass
class Run:
    name: str
    backend: str
    config: Strict                  # the validated framework-vocabulary keys
    task: Task                      # the case's task with this run's dtype/loss/schedule applied
    semantics: Semantics
    python: Optional[str] = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def dtype(self) -> str:
        return self.task.dtype

    def work_item(self, ident: str, data_key: str):
        """This run as a job for its backend's worker (data shared under `data_key`)."""
        from wdparity.run.harness import WorkItem

        job = {"task": self.task.model_dump(), "run": self.config.model_dump(),
               "semantics": self.semantics.neutral(), "dtype": self.dtype}
        return WorkItem(ident, self.backend, registry.targets()[self.backend], self.python, self.env, job, data_key)


@dataclass
class Case:
    path: str
    title: str
    claim: Optional[str]
    causes: list[str]
    sources: list[str]
    task: Task
    runs: dict[str, Run]


def load_case(path: str | Path, overrides: Optional[dict[str, str]] = None) -> Case:
    """Read, validate and describe a case file. `overrides`: backend -> interpreter (CLI --python)."""
    path = Path(path)
    where = str(path)
    data = read_toml(path)
    try:
        header = CaseHeader.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, where, data)
    from wdparity.spec.budget import check_case

    check_case(where, header.task, data, header.runs)   # over the memory available: exit 2 before any array exists
    runs = {}
    for name, raw in header.runs.items():
        runs[name] = load_run(name, raw, header.task, where, overrides or {})
    return Case(where, header.title, header.claim, list(header.causes), list(header.sources), header.task, runs)


def load_run(name: str, raw: dict, task: Task, where: str, overrides: dict[str, str]) -> Run:
    prefix = f"runs.{name}"
    if not isinstance(raw, dict):
        raise InputError(where, prefix, "must be a table", raw)
    generic = {k: v for k, v in raw.items() if k in registry.GENERIC_KEYS}
    if "backend" not in generic:
        raise InputError(where, f"{prefix}.backend", f"is required; one of {list(registry.targets())}", None,
                         has_value=False)
    backend = registry.get(generic["backend"], where, f"{prefix}.backend")
    try:
        head = RunHeader.model_validate(generic)
    except ValidationError as exc:
        raise from_validation_error(exc, where, generic, prefix)
    own = {k: v for k, v in raw.items() if k not in registry.GENERIC_KEYS}
    with tensor_scope(task.tensors):   # masks and groups name the task's tensors
        return _described(name, prefix, backend, head, generic, own, task, where, overrides)


def _described(name, prefix, backend, head, generic, own, task, where, overrides) -> Run:
    try:
        config = backend.parse(own)
    except ValidationError as exc:
        raise from_validation_error(exc, where, own, prefix)
    update = {k: getattr(head, k) for k in ("dtype", "loss", "schedule") if getattr(head, k) is not None}
    run_task = task.model_copy(update=update)
    if not task.model.linear and not backend.models_networks:
        raise InputError(where, "task.model.hidden", f"is a network, and backend {head.backend!r} trains the linear "
                         f"model only (backends that train networks: {registry.network_backends()})",
                         task.model.hidden)
    if run_task.schedule.kind not in backend.schedules:
        key = f"{prefix}.schedule" if "schedule" in generic else "task.schedule"
        raise InputError(where, f"{key}.kind", f"must be one of {list(backend.schedules)} for backend "
                         f"{head.backend!r}", run_task.schedule.kind)
    try:
        semantics = backend.describe(config, run_task)
    except ValidationError as exc:  # the backend's keys combine into semantics that do not validate
        raise from_validation_error(exc, where, own, prefix)
    except InputError as exc:  # adapters name keys relative to the run
        raise InputError(where, f"{prefix}.{exc.key}", exc.expected, exc.received, has_value=exc.has_value)
    if not task.model.linear and semantics.optimizer.name == "adafactor" and head.backend != "numpy":
        raise InputError(where, f"{prefix}.optimizer", "is Adafactor on a network, which no framework adapter trains: "
                         "frameworks factor a matrix's second moment into row and column means, the neutral "
                         "Adafactor's is per element (the numpy reference runs it)", semantics.optimizer.name)
    from wdparity.run.harness import release_python

    python = release_python(head.python) or overrides.get(head.backend) or backend.default_python()
    return Run(name, head.backend, config, run_task, semantics, python, backend.worker_env(config, run_task))
