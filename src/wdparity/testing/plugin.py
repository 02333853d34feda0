"""The pytest plugin (entry point `pytest11`): `pytest --wdparity PATH...` makes every case file under the paths
(TOML with `[runs]`) a test item named by its file stem.

A case whose claim fails, or with a run that errored or is off its fidelity, fails with the table
`wdparity check` prints; one that cannot be verified because a framework is missing is skipped with the
install command; a bad case file fails with its one-line input error. All selected cases are checked
together on the first item that runs (`check_cases` over them all), so each backend's worker starts once
per pytest process: 50 cases pay the framework import once. (Under pytest-xdist each process checks the
cases it is given one by one.) Without `--wdparity` the plugin does nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

KEY = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("wdparity", "wdparity case files as tests")
    group.addoption("--wdparity", action="extend", nargs="+", default=[], metavar="PATH",
                    help="collect every wdparity case file (TOML with [runs]) under PATH as a test")
    group.addoption("--wdparity-timeout", type=float, default=900.0, metavar="SECONDS",
                    help="seconds each backend's worker may take (default 900)")


def pytest_configure(config):
    paths = config.getoption("wdparity", default=[]) or []
    if not paths:
        return
    config.stash[KEY] = {"roots": [Path(p).resolve() for p in paths], "results": None}
    if config.args_source == pytest.Config.ArgsSource.ARGS:   # explicit test paths too: add ours
        config.args = list(config.args) + [p for p in paths if p not in config.args]
    else:   # no paths given: only the case files, not the project's testpaths
        config.args = list(paths)


def _under(path: Path, roots: list[Path]) -> bool:
    path = path.resolve()
    return any(path == r or r in path.parents for r in roots)


def pytest_collect_file(file_path: Path, parent):
    state = parent.config.stash.get(KEY, None)
    if state is None or file_path.suffix != ".toml" or not _under(file_path, state["roots"]):
        return None
    import tomllib

    try:
        data = tomllib.loads(file_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        data = {"runs": None}   # unreadable: an item that fails with the input error
    if "runs" not in data or "sweep" in data:
        return None
    return CaseFile.from_parent(parent, path=file_path)


class CaseFile(pytest.File):
    def collect(self):
        yield CaseItem.from_parent(self, name=self.path.stem)


class CaseFailure(Exception):
    """A case that does not pass: the reason and the table."""


class CaseItem(pytest.Item):
    def runtest(self):
        from wdparity.report.junit import case_text, outcome

        result = _result_for(self)
        if isinstance(result, Exception):
            raise result
        state, reason = outcome(result)
        if state == "skipped":
            pytest.skip(reason or "a framework is missing")
        if state == "failed":
            raise CaseFailure(f"{reason}\n{case_text(result)}")

    def repr_failure(self, excinfo, style=None):
        from wdparity.spec.errors import InputError

        if isinstance(excinfo.value, InputError):
            return f"wdparity: error: {excinfo.value}"
        if isinstance(excinfo.value, CaseFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"wdparity case {self.name}"


def _check(paths: list[str], timeout: float) -> dict:
    """path -> the case's contract JSON, or the InputError that keeps it from running."""
    from wdparity.judge.check import check_cases
    from wdparity.run import pool
    from wdparity.run.cases import load_case
    from wdparity.spec.errors import InputError
    from wdparity.testing.assertions import shared_pool

    out, good = {}, []
    for path in paths:
        try:
            load_case(path)
            good.append(path)
        except InputError as exc:
            out[path] = exc
    if good:
        with pool.sharing(shared_pool()):   # the same workers as the session's assert_equivalent calls
            for path, res in zip(good, check_cases(good, timeout=timeout)):
                out[path] = res.json
    return out


def _result_for(item: CaseItem):
    state = item.config.stash[KEY]
    timeout = item.config.getoption("wdparity_timeout")
    path = str(item.path)
    if hasattr(item.config, "workerinput"):   # a pytest-xdist worker: its share of the items is not known up front
        return _check([path], timeout)[path]
    if state["results"] is None or path not in state["results"]:
        paths = [str(it.path) for it in item.session.items if isinstance(it, CaseItem)]
        done = state["results"] or {}
        state["results"] = {**done, **_check([p for p in paths if p not in done] or [path], timeout)}
    return state["results"][path]
