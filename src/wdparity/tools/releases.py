"""The release matrix behind `wdparity run --releases optax=0.2.2,0.2.8 keras=3.8.0,3.15.1 [PATHS]`.

Users upgrade a framework without knowing that weight decay changed under them. This runs the catalogue once
per release of each named framework: each run of that framework's backend in the release's own interpreter
(its venv from `wdparity setup`, or this interpreter when it already has that version), every other backend at
its default, and only the case files that have a run of that backend (the others are counted as skipped).
release_report.py turns the results into releases.json / releases.md.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from wdparity.spec.errors import InputError
from wdparity_backends import release_setup as rs

ARG = "--releases"


class Refused(InputError):
    """A release spec refused by release_setup (its message is already the one line)."""

    def __init__(self, line: str):
        self.line = line
        super().__init__("", ARG, line, has_value=False)

    def __str__(self) -> str:
        return self.line


@dataclass
class Release:
    framework: str
    version: str
    backend: str
    python: str                      # the interpreter its backend's worker runs under
    source: str                      # "default environment" or "release venv"
    manifest: Optional[dict] = None
    setup_seconds: Optional[float] = None


@dataclass
class Plan:
    framework: str
    backend: str
    releases: list[Release]
    cases: list[str]
    skipped: list[str] = field(default_factory=list)   # case files with no run of the backend


def version_key(version: str) -> tuple:
    """Releases in order: numeric parts compared as numbers (0.2.10 after 0.2.9), a suffix after its release."""
    out = []
    for part in version.replace("-", ".").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append((int(digits) if digits and part.isdigit() else int(digits or 0), part))
    return tuple(out)


def parse_releases(values: list[str]) -> dict[str, list[str]]:
    """["optax=0.2.2,0.2.8", "keras=3.8.0"] -> {"optax": ["0.2.2", "0.2.8"], ...}, each list in release order.
    InputError (exit 2, one line) naming the argument: a bad form, an unknown framework, torch other than 2.13.0,
    a repeated framework, two frameworks driving one backend (jax and optax)."""
    out: dict[str, list[str]] = {}
    backends: dict[str, str] = {}
    for value in values:
        name, sep, versions = value.partition("=")
        listed = [v.strip() for v in versions.split(",")] if sep else []
        if not sep or not name.strip() or not listed or "" in listed:
            raise InputError("", ARG, "takes FRAMEWORK=VERSION[,VERSION...] with FRAMEWORK one of "
                             f"{sorted(rs.FRAMEWORKS)} "
                             "(e.g. optax=0.2.2,0.2.8)", value)
        key = name.strip().lower()
        if rs.ALIASES.get(key, key) not in rs.FRAMEWORKS:
            raise InputError("", ARG, f"names {name.strip()!r}, not a framework with releases: one of "
                             f"{sorted(rs.FRAMEWORKS)}", value)
        found = []
        for version in listed:
            try:
                fw, version = rs.parse_spec(f"{name.strip()}=={version}", ARG)
            except rs.SpecError as exc:
                raise Refused(f"{exc} (in {ARG} {value})") from None
            found.append(version)
        if fw.name in out:
            raise InputError("", ARG, f"names {fw.name} twice; list its releases once, comma-separated", value)
        if fw.backend in backends:
            raise InputError("", ARG, f"names {backends[fw.backend]} and {fw.name}, which both drive the {fw.backend} "
                             "backend: give one of them", value)
        if len(set(found)) != len(found):
            raise InputError("", ARG, "lists a release twice", value)
        backends[fw.backend] = fw.name
        out[fw.name] = sorted(found, key=version_key)
    return out


def installed_version(fw: rs.Framework) -> Optional[str]:
    """The version of the framework in this interpreter (None when it is not installed)."""
    try:
        return md.version(fw.package.split("[")[0]).split("+")[0]
    except md.PackageNotFoundError:
        return None


def resolve(framework: str, version: str, *, setup: bool = True, log: Callable[[str], None] = print) -> Release:
    """The interpreter that runs `framework==version`: this one when it has that version, else the release's
    venv, created first when `setup` (else InputError naming the setup command)."""
    fw = rs.FRAMEWORKS[framework]
    if installed_version(fw) == version:
        return Release(framework, version, fw.backend, sys.executable, "default environment")
    found = rs.manifest(framework, version)
    if found is None and not setup:
        raise InputError("", ARG, f"names {framework}=={version}, which is not set up: run "
                         f"`{rs.setup_command(framework, version)}`", f"{framework}={version}")
    start = time.monotonic()
    if found is None:
        log(f"setting up {framework}=={version} in {rs.release_dir(framework, version)} ...")
        found = rs.create(fw, version)
        log(f"  {describe_manifest(found)}")
    return Release(framework, version, fw.backend, found["python"], "release venv", found,
                   round(time.monotonic() - start, 1))


def describe_manifest(m: dict) -> str:
    companions = ", ".join(f"{k} {v}" for k, v in m.get("companions", {}).items()) or "no companions"
    dropped = f"; dropped {sorted(m['dropped'])}" if m.get("dropped") else ""
    cached = " (cached)" if m.get("cached") else ""
    return (f"{m['framework']} {m['version']} with {companions} by {m['installer']} in {m['seconds']} s, "
            f"{m['size_mb']} MB{dropped}{cached}")


def relevant(files: list[str], backend: str) -> tuple[list[str], list[str]]:
    """(case files with a run of `backend`, the others). Read as TOML only: nothing is validated twice."""
    from wdparity.spec.casefile import read_toml

    hits, others = [], []
    for path in files:
        runs = read_toml(Path(path)).get("runs", {})
        tables = runs.values() if isinstance(runs, dict) else ()
        uses = any(isinstance(r, dict) and r.get("backend") == backend for r in tables)
        (hits if uses else others).append(path)
    return hits, others


def plan(requested: dict[str, list[str]], files: list[str], *, setup: bool = True,
         log: Callable[[str], None] = print) -> list[Plan]:
    plans = []
    for framework, versions in requested.items():
        fw = rs.FRAMEWORKS[framework]
        cases, skipped = relevant(files, fw.backend)
        releases = [resolve(framework, v, setup=setup, log=log) for v in versions]
        plans.append(Plan(framework, fw.backend, releases, cases, skipped))
    return plans


def run_matrix(plans: list[Plan], overrides: dict[str, str], timeout: float,
               log: Callable[[str], None] = print) -> dict[tuple[str, str], list]:
    """(framework, version) -> that release's CaseResults: check_cases with the backend's interpreter overridden
    (a run's own `python` key still wins: a claim pinned to a release stays pinned)."""
    from wdparity.judge.check import check_cases
    from wdparity.run import executors

    out = {}
    jobs = [(p, release) for p in plans for release in p.releases]

    def one(p: Plan, release: Release) -> None:
        log(f"{p.framework} {release.version}: {len(p.cases)} case files ({len(p.skipped)} without a {p.backend} "
            f"run skipped) under {release.python}")
        start = time.monotonic()
        given = {**overrides, p.backend: release.python}
        out[(p.framework, release.version)] = check_cases(p.cases, overrides=given, timeout=timeout) if p.cases else []
        log(f"  {p.framework} {release.version} done in {time.monotonic() - start:.0f} s")

    chosen = executors.active()
    if chosen is None or not chosen.remote:
        for job in jobs:    # local: one release at a time, each already using every core
            one(*job)
        return out
    # A cluster schedules every release's workers at once: submit them all, each release from its own thread.
    with ThreadPoolExecutor(max_workers=len(jobs) or 1) as threads:
        for future in [threads.submit(one, *job) for job in jobs]:
            future.result()
    return {job_key: out[job_key] for job_key in [(p.framework, r.version) for p, r in jobs]}
