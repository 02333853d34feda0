"""docs/adapters/*.toml: every statement is complete, names a test that exists and lines that exist in the
installed release it was read at, and the Markdown next to it is exactly the rendered data."""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
from pathlib import Path

import pytest

from wdparity.tools import citations

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = citations.frameworks()
PACKAGES = ("torch", "keras", "optax", "jax", "tensorflow", "paddle", "mlx", "tf_keras", "fastai")   # checked where installed
REPO_DIRS = ("benchmarks", "tests", "docs", "src", "backends")   # repository paths, always checked


def _mxnet_site() -> Path | None:
    from wdparity_backends import mxnet_setup

    found = sorted(glob.glob(str(mxnet_setup.default_venv() / "lib" / "python*" / "site-packages" / "mxnet")))
    return Path(found[0]).parent if found else None


def _site(top: str) -> Path | None:
    """site-packages holding package `top`, None where it is not installed (nothing is imported)."""
    if top == "mxnet":
        return _mxnet_site()
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


def _installed_version(name: str) -> str | None:
    if name == "mxnet":
        site = _mxnet_site()
        dist = sorted(site.glob("mxnet-*.dist-info")) if site else []
        return dist[0].name[len("mxnet-"):-len(".dist-info")] if dist else None
    for dist in importlib.metadata.packages_distributions().get(name, [name]):   # paddle -> paddlepaddle
        try:
            return importlib.metadata.version(dist).split("+")[0]
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def test_every_registered_framework_has_a_citation_file():
    from wdparity.run import registry

    assert FRAMEWORKS == sorted(name for name in registry.targets() if name != "numpy")


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_every_statement_has_id_text_sources_and_test(fw):
    doc = citations.load(fw)
    assert citations.problems(doc) == []
    ids = [st["id"] for st in doc["statement"]]
    assert len(ids) == len(set(ids))


def test_the_shape_checker_rejects_incomplete_and_duplicate_statements():
    good = {"id": "a-b", "text": "A sentence.", "sources": ["torch/optim/sgd.py:1-2"], "test": "tests/test_x.py::test_y"}
    doc = {"framework": "torch", "releases": {"torch": "2.13.0"},
           "statement": [good, dict(good), {**good, "id": "c", "sources": ["torch/optim/sgd.py:9-3"]},
                         {k: v for k, v in good.items() if k != "test"} | {"id": "d"}, {**good, "id": "Not_Kebab"},
                         {**good, "id": "e", "test": "test_x::y"}]}
    found = citations.problems(doc)
    assert len(found) == 5, found
    assert any("id used twice" in p for p in found) and any("first <= last" in p for p in found)
    assert any("missing ['test']" in p for p in found) and any("kebab-case" in p for p in found)
    assert any("tests/FILE.py::test_name" in p for p in found)
    assert citations.problems({"framework": "torch", "releases": {}, "statement": []}) == [
        "releases: must name the installed releases the lines were read at",
        "statement: must hold at least one [[statement]]"]


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_every_named_test_exists(fw):
    missing = [p for st in citations.load(fw)["statement"] for p in [citations.missing_test(st["test"], ROOT)] if p]
    assert missing == []


def test_the_test_checker_rejects_a_statement_naming_a_nonexistent_test(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_here.py").write_text("def test_present():\n    pass\n\n\nclass TestGroup:\n"
                                                     "    def test_method(self):\n        pass\n")
    assert citations.missing_test("tests/test_here.py::test_present", tmp_path) is None
    assert citations.missing_test("tests/test_here.py::TestGroup::test_method", tmp_path) is None
    assert "no function test_absent" in citations.missing_test("tests/test_here.py::test_absent", tmp_path)
    assert "no function test_present" in citations.missing_test("tests/test_here.py::TestGroup::test_present", tmp_path)
    assert "no class Nope" in citations.missing_test("tests/test_here.py::Nope::test_method", tmp_path)
    assert "no file" in citations.missing_test("tests/test_gone.py::test_present", tmp_path)
    # and in the real tree: a statement naming a test nobody wrote is caught
    assert citations.missing_test("tests/test_citations.py::test_that_was_never_written", ROOT) is not None


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_the_markdown_is_the_rendered_data(fw):
    md = citations.docs_dir() / f"{fw}.md"
    assert md.read_text(encoding="utf-8") == citations.render(citations.load(fw)), (
        f"{md.name} is stale: run `python -m wdparity.tools.citations`")


def test_render_lists_every_statement_once_and_escapes_markdown():
    doc = {"framework": "x", "releases": {"x": "1.0"}, "statement": [
        {"id": "a", "text": "w*x | y_z.", "sources": ["x/y.py:3", "https://example.org/i/1"], "test": "tests/t.py::test_a"}]}
    text = citations.render(doc)
    assert "| **a**: w\\*x \\| y\\_z. | `x/y.py:3`<br><https://example.org/i/1> | `tests/t.py::test_a` |" in text
    assert "x 1.0" in text and text.endswith("\n")


def _sources(fw):
    doc = citations.load(fw)
    return [(st["id"], s) for st in doc["statement"] for s in st["sources"]]


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_every_cited_file_and_line_exists_in_the_installed_release(fw):
    """Site-packages paths of installed frameworks and repository paths must name a file and lines within it;
    a framework not installed here is skipped (the MXNet files live in its venv)."""
    checked, skipped, bad = 0, set(), []
    for sid, source in _sources(fw):
        kind, path, ranges = citations.parse_source(source)
        if kind == "url":
            continue
        top = path.split("/")[0]
        if top in REPO_DIRS:
            base = ROOT
        elif top in PACKAGES or top == "mxnet":
            base = _site(top)
            if base is None:
                skipped.add(top)
                continue
        else:
            bad.append(f"{sid}: {source}: neither a site-packages path of {PACKAGES + ('mxnet',)} nor a repository path")
            continue
        file = base / path
        if not file.is_file():
            bad.append(f"{sid}: {source}: no file {file}")
            continue
        length = len(file.read_text(encoding="utf-8", errors="replace").splitlines())
        bad += [f"{sid}: {source}: line {hi} past the end ({length} lines)" for _, hi in ranges if hi > length]
        checked += 1
    assert bad == []
    if not checked:
        pytest.skip(f"none of {sorted(skipped)} is installed here")


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_installed_releases_are_the_ones_the_lines_were_read_at(fw):
    """A new release moves the lines: re-read every cited line, then update `releases` (and the .md)."""
    releases = citations.load(fw)["releases"]
    installed = {name: _installed_version(name) for name in releases}
    present = {name: v for name, v in installed.items() if v is not None}
    if not present:
        pytest.skip(f"none of {sorted(releases)} is installed here")
    assert {name: releases[name] for name in present} == present


def test_main_check_finds_the_docs_current(capsys):
    assert citations.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_a_missing_docs_dir_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(citations, "ROOT", tmp_path)
    with pytest.raises(FileNotFoundError, match="no docs/adapters/"):
        citations.load("torch")
