"""Case files (contract v1) as data: the TOML text read safely and the keys every case and every run has.

Validation happens in two layers: the case's own keys (title, claim, task, ...) against these models,
then each run's keys against its backend's vocabulary (run/cases.py). Any problem is one InputError
naming the file, the key and the received value.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from wdparity.spec.errors import InputError
from wdparity.spec.models import Cause, DType, Loss, Schedule, Strict, Task, fail

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
