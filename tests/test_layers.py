"""The house by layers: lower layers never import higher ones, no module imports itself round a cycle, and
the engine (with the worker) loads nothing but NumPy and the standard library, in every interpreter a worker
runs under (MXNet's venv included).

    engine < spec < run < adapters (wdparity_backends) < judge < tools < report < cli, testing

`testing` (the pytest plugin and assertions) sits at the top beside cli: neither imports the other.

Every import counts, the lazy ones inside functions included (read with ast, nothing is imported)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"wdparity": ROOT / "src" / "wdparity", "wdparity_backends": ROOT / "backends" / "wdparity_backends"}
LAYERS = ["engine", "spec", "run", "adapters", "judge", "tools", "report", "cli", "testing"]
# The two modules the core imports by entry point or by path, never by an import statement, may sit anywhere.
ALLOWED_UP = {("wdparity.cli", "wdparity_backends.mxnet_setup"),   # `wdparity setup mxnet`: cli is the top
              ("wdparity", "wdparity.tools.live"),   # the lazy `wdparity.describe` (module __getattr__, on first use)
              ("wdparity", "wdparity.tools.translate_all")}   # the lazy `wdparity.translate`, likewise


def modules() -> dict[str, Path]:
    out = {}
    for pkg, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = path
    return out


def layer(module: str) -> int:
    if module.startswith("wdparity_backends"):
        return LAYERS.index("adapters")
    parts = module.split(".")
    if len(parts) == 1:            # the package itself: __version__ only
        return LAYERS.index("engine")
    return LAYERS.index(_layer_name(parts[1]))


def _layer_name(top: str) -> str:
    """The command's own modules (cli_translate.py, __main__.py for `python -m wdparity`) are the cli layer."""
    return "cli" if top == "__main__" or top.startswith("cli_") else top


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported wdparity module, line) for every import statement in the file, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.append((name, node.lineno))
    return out


def graph() -> dict[str, list[tuple[str, int]]]:
    mods = modules()
    return {m: [(d, line) for d, line in imports(m, p, set(mods)) if d != m] for m, p in mods.items()}


def test_every_module_sits_in_a_layer():
    for module in modules():
        if module.startswith("wdparity.") and module != "wdparity.cli":
            assert _layer_name(module.split(".")[1]) in LAYERS, f"{module} is in no layer of {LAYERS}"


def test_no_module_imports_a_higher_layer():
    upward = [f"{m}:{line} imports {d} ({LAYERS[layer(d)]} above {LAYERS[layer(m)]})"
              for m, deps in graph().items() for d, line in deps
              if layer(d) > layer(m) and (m, d) not in ALLOWED_UP and d not in ("wdparity",)]
    assert not upward, "\n".join(upward)


def test_cli_and_testing_stay_apart():
    """Both sit at the top: the command never loads the pytest plugin, the plugin never runs the command."""
    apart = [f"{m}:{line} imports {d}" for m, deps in graph().items() for d, line in deps
             if {_layer_name(m.split(".")[1]) if "." in m else "", _layer_name(d.split(".")[1]) if "." in d else ""}
             == {"cli", "testing"}]
    assert not apart, "\n".join(apart)


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    edges = {m: sorted({d for d, _ in deps if d != "wdparity"}) for m, deps in graph().items()}
    assert not _cycles(edges), _cycles(edges)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]


def test_the_layer_walk_sees_lazy_and_relative_imports(tmp_path):
    """The walk is not vacuous: an import inside a function, relative or absolute, is found."""
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from ..judge import check\n    import wdparity.report.html\n")
    known = {"wdparity.judge.check", "wdparity.report.html", "wdparity.judge", "wdparity.report"}
    assert imports("wdparity.engine.x", path, known) == [("wdparity.judge.check", 2), ("wdparity.report.html", 3)]


# ---------------------------------------------------------------- the engine loads numpy and the stdlib only
PURE = sorted(m for m in modules() if m.startswith("wdparity.engine")) + ["wdparity.run.worker"]
PROBE = """
import json, sys
before = set(sys.modules)
import importlib
for name in {mods}:
    importlib.import_module(name)
loaded = sorted({{m.split(".")[0] for m in set(sys.modules) - before}})
print(json.dumps(loaded))
"""


def interpreters() -> list[str]:
    out = [sys.executable]
    try:
        from wdparity_backends.mxnet_setup import default_venv, venv_python
    except ImportError:
        return out
    exe = venv_python(default_venv())
    return out + ([str(exe)] if exe.exists() else [])


@pytest.mark.parametrize("python", interpreters(), ids=lambda p: "this-venv" if p == sys.executable else "mxnet-venv")
def test_engine_imports_nothing_but_numpy_and_the_standard_library(python):
    env = {"PYTHONPATH": str(PACKAGES["wdparity"].parent), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([python, "-c", PROBE.format(mods=PURE)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    stdlib = set(sys.stdlib_module_names) | {"_distutils_hack"}
    cython = {m for m in loaded if m.startswith("_cython_") or m == "cython_runtime"}   # NumPy 1.x's random loads them
    foreign = sorted(loaded - stdlib - cython - {"numpy", "wdparity"})
    assert not foreign, f"{python}: importing the engine loaded {foreign}"
    assert "numpy" in loaded and "wdparity" in loaded   # the probe really imported them
