"""Creates one virtual environment per framework release (`wdparity setup FRAMEWORK==VERSION`).

Frameworks change what weight decay means between releases; a release runs in a venv of its own so the
core's environment is never touched. Each venv holds the framework at that version, the companions that
release needs (optax needs jax/jaxlib, Keras 3 a backend, tf-keras its TensorFlow), numpy and pydantic
(the worker imports the staged wdparity packages: run/harness.py `_stage_packages`), and nothing else.

Companions are resolved as the world was when the release came out: with `uv`, every package except the
release itself, companions pinned to it (tf-keras's TensorFlow minor, jax's jaxlib) and pydantic with its own
dependencies is limited to uploads before the release's upload time plus GRACE_DAYS (`--exclude-newer`), so
optax 0.2.2 gets the jax and numpy of March 2024. Without uv,
`python -m venv` + pip resolves the newest companions (no dates; the manifest says so). The folder
<root>/<framework>-<version>/ holds `venv/`, `freeze.txt` (exactly what was installed) and
`manifest.json` (written last, after an import check passes: a release is set up iff it exists).
Standard library only: the CLI imports this before any framework.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ENV_VAR = "WDPARITY_RELEASES_DIR"
GRACE_DAYS = 3
TORCH_ONLY = "2.13.0"
# the worker's own needs, exempt from the release date (the core is written against today's pydantic)
WORKER_EXEMPT = ("pydantic", "pydantic-core", "typing-extensions", "annotated-types", "typing-inspection")
VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!_-]*$")


@dataclass(frozen=True)
class Framework:
    name: str                      # the spec's name (and the release folder's prefix)
    package: str                   # the registry name installed at the version
    backend: str                   # the wdparity backend whose worker runs under this release
    companions: tuple[str, ...]    # what the release needs beside it ("{v}" is the version)
    optional: tuple[str, ...] = ()  # companions dropped (with the resolver's reason) when they cannot join
    check: str = ""                # Python run in the venv after installing: it must print the versions


FRAMEWORKS = {
    "optax": Framework("optax", "optax", "optax", ("jax", "jaxlib"),
                       check="import jax, optax; optax.adamw(1e-3).init({'w': jax.numpy.ones(2)}); "
                             "print('optax', optax.__version__, 'jax', jax.__version__)"),
    "jax": Framework("jax", "jax", "optax", ("jaxlib=={v}", "optax"),
                     check="import jax, optax; print('jax', jax.__version__, 'optax', optax.__version__)"),
    "keras": Framework("keras", "keras", "keras", ("jax", "jaxlib", "packaging"), optional=("tensorflow",),
                       check="import os; os.environ['KERAS_BACKEND'] = 'jax'; import keras; "
                             "print('keras', keras.__version__)"),
    "tf_keras": Framework("tf_keras", "tf-keras", "tf_keras", ("tensorflow=={mm}.*",),
                          check="import tf_keras, tensorflow as tf; print('tf_keras', tf_keras.__version__, "
                                "'tensorflow', tf.__version__)"),
    "mlx": Framework("mlx", "mlx", "mlx", (), optional=("mlx-cpu=={v}",),
                     check="import mlx.core as mx; mx.eval(mx.array([1.0]) * 2); print('mlx', mx.__version__)"),
    "paddle": Framework("paddle", "paddlepaddle", "paddle", ("setuptools",),
                        check="import paddle; print('paddle', paddle.__version__)"),
    "torch": Framework("torch", "torch", "torch", (),
                       check="import torch; print('torch', torch.__version__)"),
}
ALIASES = {"tf-keras": "tf_keras", "paddlepaddle": "paddle", "jaxlib": "jax"}


class SpecError(ValueError):
    """A FRAMEWORK==VERSION that cannot be set up here: the message is the one line to print (exit 2)."""


def parse_spec(text: str, argument: str = "setup") -> tuple[Framework, str]:
    """'optax==0.2.2' -> (Framework, '0.2.2'); SpecError naming the argument and the valid frameworks."""
    valid = sorted(FRAMEWORKS)
    name, sep, version = str(text).partition("==")
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if not sep or key not in FRAMEWORKS or not VERSION.match(version.strip()):
        raise SpecError(f"`{argument}` must be FRAMEWORK==VERSION with FRAMEWORK one of {valid} "
                        f"(e.g. optax==0.2.2). Received: {text!r}")
    version = version.strip()
    if key == "torch" and version != TORCH_ONLY:
        raise SpecError(f"`{argument}`: torch is set up only as {TORCH_ONLY} (its CPU wheel is on this machine; other "
                        f"torch builds here are multi-GB CUDA wheels). Received: {text!r}")
    return FRAMEWORKS[key], version


def releases_root() -> Path:
    """$WDPARITY_RELEASES_DIR if set, else ~/.cache/wdparity/releases."""
    given = os.environ.get(ENV_VAR)
    return Path(given).expanduser() if given else Path.home() / ".cache" / "wdparity" / "releases"


def release_dir(framework: str, version: str, root: Optional[Path] = None) -> Path:
    return Path(root or releases_root()) / f"{framework}-{version}"


def venv_python(folder: Path) -> Path:
    return Path(folder) / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def manifest(framework: str, version: str, root: Optional[Path] = None) -> Optional[dict]:
    """The release's manifest when it is set up (manifest written and its interpreter present), else None."""
    folder = release_dir(framework, version, root)
    try:
        data = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and venv_python(folder).exists() else None


def setup_command(framework: str, version: str) -> str:
    return f"wdparity setup {framework}=={version}"


def find_uv() -> Optional[str]:
    """The `uv` binary: on PATH, beside this interpreter, or from the `uv` package (`pip install uv`)."""
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found:
        return found
    try:
        from uv import find_uv_bin  # the PyPI package's own locator

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return None


def _find_links() -> list[str]:
    """pip's find-links (this machine keeps the torch CPU wheel there); uv does not read pip's configuration."""
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True,
                             text=True, timeout=30)
        links += out.stdout.split() if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        pass
    return [link for i, link in enumerate(links) if link and link not in links[:i]]


PUBLISHED = re.compile(r"published at (\d{4}-\d\d-\d\dT[0-9:.]+Z)")


def published(uv: str, python: Path, requirement: str) -> dt.datetime:
    """When `requirement` (NAME==VERSION) was uploaded, from uv's own answer to a resolution before 1970-01-02.
    SpecError when the registry has no such release."""
    out = subprocess.run([uv, "pip", "install", "--dry-run", "--no-deps", "-p", str(python), requirement,
                          "--exclude-newer", "1970-01-02T00:00:00Z"], capture_output=True, text=True, timeout=300)
    found = PUBLISHED.search(out.stderr + out.stdout)
    if found is None:
        if "there is no version of" in out.stderr:
            raise SpecError(f"`setup`: the registry has no release {requirement} for Python "
                            f"{sys.version_info.major}.{sys.version_info.minor} on this platform")
        raise RuntimeError(f"cannot read the upload time of {requirement} from uv: {out.stderr.strip()[-300:]}")
    return dt.datetime.fromisoformat(found.group(1).replace("Z", "+00:00"))


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def requirements(fw: Framework, version: str) -> tuple[list[str], list[str]]:
    """(required, optional) requirement strings for the release (the worker's numpy and pydantic included)."""
    mm = ".".join(version.split(".")[:2])
    main = f"{fw.package}=={version}+cpu" if fw.name == "torch" else f"{fw.package}=={version}"
    import importlib.metadata as md

    pydantic = f"pydantic=={md.version('pydantic')}"
    return ([main, *(c.format(v=version, mm=mm) for c in fw.companions), "numpy", pydantic],
            [c.format(v=version, mm=mm) for c in fw.optional])


def _install(uv: Optional[str], python: Path, reqs: list[str], as_of: Optional[dt.datetime],
             log) -> subprocess.CompletedProcess:
    if uv is None:
        cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *reqs]
    else:
        cmd = [uv, "pip", "install", "-p", str(python), *reqs]
        for link in _find_links():
            cmd += ["--find-links", link]
        if as_of is not None:
            cmd += ["--exclude-newer", _stamp(as_of)]
            later = _stamp(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
            # the release's own files may be uploaded after its first (Linux wheels), and a companion pinned to the
            # release (tf-keras's TensorFlow, jax's jaxlib) may come days after it: the pin dates them already
            pinned = [r.split("==")[0].split("[")[0] for i, r in enumerate(reqs) if i == 0 or "==" in r]
            for name in (*pinned, *WORKER_EXEMPT):
                cmd += ["--exclude-newer-package", f"{name}={later}"]
    log(" ".join(cmd))
    return subprocess.run(cmd, capture_output=True, text=True)


def _reason(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
    causes = [ln for ln in lines if ln.startswith(("cause:", "error:", "ERROR:", "×"))]
    return " ".join((causes or lines[-2:])[-2:])[:400]


def create(fw: Framework, version: str, root: Optional[Path] = None, force: bool = False,
           log=lambda line: None) -> dict:
    """Create (or reuse) the release's venv; return its manifest. RuntimeError naming what failed."""
    folder = release_dir(fw.name, version, root)
    if not force and (done := manifest(fw.name, version, root)) is not None:
        return {**done, "cached": True}
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    start = time.monotonic()
    uv = find_uv()
    python = venv_python(folder)
    try:
        if uv is not None:
            subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(folder / "venv")], check=True,
                           capture_output=True, text=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True, capture_output=True,
                           text=True)
        reqs, optional = requirements(fw, version)
        as_of = None
        if uv is not None and fw.name != "torch":   # torch: the one CPU wheel on this machine, whatever its date
            as_of = published(uv, python, reqs[0]) + dt.timedelta(days=GRACE_DAYS)
        dropped = {}
        proc = _install(uv, python, reqs + optional, as_of, log)
        if proc.returncode != 0 and optional:
            for extra in optional:
                dropped[extra] = f"not installable beside {fw.package}=={version}: {_reason(proc)}"
            proc = _install(uv, python, reqs, as_of, log)
        if proc.returncode != 0:
            raise RuntimeError(f"installing {' '.join(reqs)} failed: {_reason(proc)}")
        check = subprocess.run([str(python), "-c", fw.check], capture_output=True, text=True, timeout=600,
                               env={**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
                                    "TF_CPP_MIN_LOG_LEVEL": "3"})
        if check.returncode != 0:
            raise RuntimeError(f"{fw.name}=={version} installed but does not import: {_reason(check)}")
        freeze = _freeze(uv, python)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    (folder / "freeze.txt").write_text(freeze)
    pins = dict(line.split("==", 1) for line in freeze.splitlines() if "==" in line)
    wanted = [r.split("==")[0].split("[")[0].lower() for r in reqs[1:-2] + [o for o in optional if o not in dropped]]
    data = {"framework": fw.name, "version": version, "package": fw.package, "backend": fw.backend,
            "python": str(python), "python_version": sys.version.split()[0],
            "installer": "uv" if uv else "pip", "installer_path": uv or f"{sys.executable} -m pip",
            "as_of": _stamp(as_of) if as_of else None,
            "companions_rule": (f"every package but {list(WORKER_EXEMPT)} as uploaded before {_stamp(as_of)} "
                                f"(the release's upload + {GRACE_DAYS} days)") if as_of else
                               ("the newest companions pip resolves (no upload dates without uv)" if uv is None
                                else "the torch CPU wheel of this machine, its dependencies the newest"),
            "companions": {name: _pin(pins, name) for name in wanted},
            "dropped": dropped, "check": check.stdout.strip(), "requirements": reqs,
            "seconds": round(time.monotonic() - start, 1), "size_mb": round(_size(folder / "venv") / 2**20, 1),
            "packages": len(pins)}
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, folder / "manifest.json")
    return {**data, "cached": False}


def _pin(pins: dict, name: str) -> Optional[str]:
    norm = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    return norm.get(name.lower().replace("_", "-"))


def _freeze(uv: Optional[str], python: Path) -> str:
    cmd = [uv, "pip", "freeze", "-p", str(python)] if uv else [str(python), "-m", "pip", "freeze"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _size(folder: Path) -> int:
    """Bytes under `folder`, each inode once (uv hard-links from its cache: this is the venv's own footprint)."""
    seen, total = set(), 0
    for base, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(base, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
