"""Case files (contract v1): TOML in, validated runs with their neutral semantics out.

Validation happens in two layers: the case's own keys (title, claim, task, ...) against the
spec models, then each run's keys against its backend's vocabulary, which also describes the
run. Any problem is one InputError naming the file, the key and the received value.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, ValidationError, model_validator

from . import backend as registry
from .errors import InputError, from_validation_error
from .spec import Cause, DType, Loss, Schedule, Semantics, Strict, Task, fail

RUN_NAME = re.compile(r"^[a-z0-9_-]+$")


class CaseHeader(Strict):
    title: str = Field(min_length=1)
    claim: Optional[Literal["equivalent", "diverges"]] = None
    causes: list[Cause] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    task: Task = Field(default_factory=Task)
    runs: dict[str, dict[str, Any]]

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.runs) < 2:
            raise fail("runs", sorted(self.runs), "must hold two or more [runs.NAME] tables")
        for name in self.runs:
            if not RUN_NAME.match(name):
                raise fail("runs", name, "names must match [a-z0-9_-]+")
        if self.claim == "equivalent" and self.causes:
            raise fail("causes", self.causes, "belongs to claim = \"diverges\" only")
        if self.claim is None and self.causes:
            raise fail("causes", self.causes, "needs claim = \"diverges\"")
        if len(set(self.causes)) != len(self.causes):
            raise fail("causes", self.causes, "must not repeat a label")
        return self


class RunHeader(Strict):
    """The keys every run has, whatever its backend (the rest is the framework's vocabulary)."""

    backend: str
    dtype: Optional[DType] = None
    loss: Optional[Loss] = None
    schedule: Optional[Schedule] = None
    python: Optional[str] = Field(None, min_length=1)


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
        from .harness import WorkItem

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


def read_toml(path: Path) -> dict:
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("", "CASE", "must be an existing case file", where)
    except IsADirectoryError:
        raise InputError("", "CASE", "must be a file, not a directory", where)
    except OSError as exc:
        raise InputError(where, "(file)", f"cannot be read ({exc.strerror})", where)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(where, "(file)", f"must be UTF-8 TOML text (undecodable byte at offset {exc.start})",
                         raw[exc.start:exc.start + 8].hex(), has_value=True)
    if "\x00" in text:
        raise InputError(where, "(file)", "must be TOML text, not binary (contains NUL bytes)", None, has_value=False)
    if not text.strip():
        raise InputError(where, "(file)", "must not be empty: a case needs `title` and [runs.NAME] tables",
                         None, has_value=False)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(where, "(toml)", f"is not valid TOML: {exc}", None, has_value=False)


def load_case(path: str | Path, overrides: Optional[dict[str, str]] = None) -> Case:
    """Read, validate and describe a case file. `overrides`: backend -> interpreter (CLI --python)."""
    path = Path(path)
    where = str(path)
    data = read_toml(path)
    try:
        header = CaseHeader.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, where, data)
    from .budget import check_case

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
    try:
        config = backend.parse(own)
    except ValidationError as exc:
        raise from_validation_error(exc, where, own, prefix)
    update = {k: getattr(head, k) for k in ("dtype", "loss", "schedule") if getattr(head, k) is not None}
    run_task = task.model_copy(update=update)
    try:
        semantics = backend.describe(config, run_task)
    except ValidationError as exc:  # the backend's keys combine into semantics that do not validate
        raise from_validation_error(exc, where, own, prefix)
    except InputError as exc:  # adapters name keys relative to the run
        raise InputError(where, f"{prefix}.{exc.key}", exc.expected, exc.received, has_value=exc.has_value)
    python = head.python or overrides.get(head.backend) or backend.default_python()
    return Run(name, head.backend, config, run_task, semantics, python, backend.worker_env(config, run_task))
