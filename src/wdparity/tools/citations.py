"""What each adapter states about its framework, as data: docs/adapters/<framework>.toml -> <framework>.md.

Why it exists: the adapters' statements about each framework (semantics, defaults,
precision quirks, refusals) used to sit in docstrings as file:line citations, which go stale with every
release. Each statement is now one TOML entry: the sentence, where it was read (a path under
site-packages at the recorded release, a repository file or a URL) and the pytest node that measures
it. tests/test_citations.py checks the entries, that every named test exists, that every cited line of
an installed framework is in its file, and that the Markdown here is exactly the rendered data.

    python -m wdparity.tools.citations [--check]    # rewrite (or only compare) docs/adapters/*.md
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from pathlib import Path
from typing import Optional


def _repository() -> Path:
    """The source checkout holding docs/adapters/: three levels above this file when run from the checkout,
    else the working directory (an installed wdparity run from the repository, as CI's tests are)."""
    here = Path(__file__).resolve().parents[3]
    for candidate in (here, Path.cwd()):
        if (candidate / "docs" / "adapters").is_dir():
            return candidate
    return here


ROOT = _repository()
KEYS = ("id", "text", "sources", "test")
ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
LINES = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def docs_dir() -> Path:
    """docs/adapters/ of the repository (see _repository)."""
    path = ROOT / "docs" / "adapters"
    if not path.is_dir():
        raise FileNotFoundError(f"no docs/adapters/ at {path}: wdparity.tools.citations reads the citation files "
                                "of a source checkout (run it from the repository)")
    return path


def frameworks() -> list[str]:
    """The frameworks that have a citation file, by name."""
    return sorted(p.stem for p in docs_dir().glob("*.toml"))


def load(framework: str) -> dict:
    """docs/adapters/<framework>.toml as a dict: framework, releases, statement (a list of tables)."""
    path = docs_dir() / f"{framework}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"no citation file {path} (known: {', '.join(frameworks()) or 'none'})")
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    if doc.get("framework") != framework:
        raise ValueError(f"{path}: framework = {doc.get('framework')!r}, expected {framework!r}")
    return doc


def parse_source(source: str) -> tuple[str, str, list[tuple[int, int]]]:
    """("url", url, []) or ("file", path, [(first, last), ...]) for 'path:12', 'path:3-9,14' or a bare path."""
    if source.startswith(("https://", "http://")):
        return "url", source, []
    path, sep, lines = source.rpartition(":")
    if not sep:
        return "file", source, []
    if not path or not LINES.match(lines):
        raise ValueError(f"source {source!r}: expected PATH, PATH:LINE, PATH:FIRST-LAST[,...] or an http(s) URL")
    ranges = []
    for part in lines.split(","):
        lo, _, hi = part.partition("-")
        ranges.append((int(lo), int(hi or lo)))
    if any(lo < 1 or hi < lo for lo, hi in ranges):
        raise ValueError(f"source {source!r}: line ranges must be 1 <= first <= last")
    return "file", path, ranges


def problems(doc: dict) -> list[str]:
    """What is wrong with a citation document's shape: missing keys, bad ids, duplicates, bad sources."""
    out, seen = [], set()
    if not isinstance(doc.get("releases"), dict) or not doc["releases"]:
        out.append("releases: must name the installed releases the lines were read at")
    statements = doc.get("statement")
    if not isinstance(statements, list) or not statements:
        return out + ["statement: must hold at least one [[statement]]"]
    for i, st in enumerate(statements):
        where = f"statement[{i}] ({st.get('id', '?')})"
        missing = [k for k in KEYS if not st.get(k)]
        extra = sorted(set(st) - set(KEYS))
        if missing or extra:
            out.append(f"{where}: missing {missing}" if missing else f"{where}: unknown keys {extra}")
            continue
        if not isinstance(st["id"], str) or not ID.match(st["id"]):
            out.append(f"{where}: id must be kebab-case")
        elif st["id"] in seen:
            out.append(f"{where}: id used twice")
        seen.add(st["id"])
        if not isinstance(st["text"], str) or not st["text"].rstrip().endswith("."):
            out.append(f"{where}: text must be one sentence ending in '.'")
        if not isinstance(st["sources"], list) or not all(isinstance(s, str) and s for s in st["sources"]):
            out.append(f"{where}: sources must be a list of strings")
        else:
            for s in st["sources"]:
                try:
                    parse_source(s)
                except ValueError as exc:
                    out.append(f"{where}: {exc}")
        if not isinstance(st["test"], str) or not re.match(r"^tests/[\w/]+\.py::\w+(::\w+)?$", st["test"]):
            out.append(f"{where}: test must be tests/FILE.py::test_name (or ::Class::test_name)")
    return out


def missing_test(node: str, root: Path = ROOT) -> Optional[str]:
    """Why the pytest node `tests/FILE.py::name` (or `::Class::name`) does not exist; None when it does."""
    file, _, qual = node.partition("::")
    path = root / file
    if not path.is_file():
        return f"{node}: no file {file}"
    names = qual.split("::")
    body = ast.parse(path.read_text(encoding="utf-8")).body
    for depth, name in enumerate(names):
        kinds = (ast.ClassDef,) if depth < len(names) - 1 else (ast.FunctionDef, ast.AsyncFunctionDef)
        found = next((n for n in body if isinstance(n, kinds) and n.name == name), None)
        if found is None:
            return f"{node}: no {'class' if depth < len(names) - 1 else 'function'} {name} in {file}"
        body = found.body
    return None


def _md(text: str) -> str:
    return MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _source_md(source: str) -> str:
    return f"<{source}>" if parse_source(source)[0] == "url" else f"`{source}`"


def render(doc: dict) -> str:
    """The Markdown page of one citation document: title, releases, a statement | source | test table."""
    fw = doc["framework"]
    releases = ", ".join(f"{name} {version}" for name, version in doc["releases"].items())
    lines = [f"# {fw}: what the adapter states, where it was read, what measures it", "",
             (f"<!-- Generated from docs/adapters/{fw}.toml by `python -m wdparity.tools.citations`; "
              "edit the TOML, not this file. -->"), "",
             (f"Read at the installed releases: {releases}. A path is under `site-packages/` of that release "
              "(`benchmarks/...` is this repository); each test measures its statement."), "",
             f"{len(doc['statement'])} statements.", "",
             "| statement | source | test |", "|---|---|---|"]
    for st in doc["statement"]:
        sources = "<br>".join(_source_md(s) for s in st["sources"])
        lines.append(f"| **{_md(st['id'])}**: {_md(st['text'])} | {sources} | `{st['test']}` |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wdparity.tools.citations", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a .md differs from its TOML")
    args = parser.parse_args(argv)
    stale = []
    for fw in frameworks():
        doc = load(fw)
        bad = problems(doc) + [p for st in doc.get("statement", []) if st.get("test")
                               for p in [missing_test(st["test"])] if p]
        if bad:
            print(f"docs/adapters/{fw}.toml:\n  " + "\n  ".join(bad), file=sys.stderr)
            return 1
        path, text = docs_dir() / f"{fw}.md", render(doc)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    verb = "differ" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "docs/adapters/*.md are up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
