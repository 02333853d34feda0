"""Creates the separate virtual environment that runs the MXNet backend's worker.

MXNet 1.9.1 (the last release; the project is retired) is built against the NumPy 1.x C API and
calls `numpy.bool`, removed in NumPy 1.24, so it cannot live beside the core's NumPy 2. The
harness runs MXNet's worker under this venv's interpreter with only the wdparity packages on
PYTHONPATH; the worker imports the wdparity core, which needs numpy and pydantic, so those are
installed here too (wdparity itself is not: the harness stages it). Standard library only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

PACKAGES = ("mxnet==1.9.1", "numpy<1.24", "pydantic>=2.5")
ENV_VAR = "WDPARITY_MXNET_VENV"


def default_venv() -> Path:
    """$WDPARITY_MXNET_VENV if set, else ~/.cache/wdparity/mxnet-venv."""
    given = os.environ.get(ENV_VAR)
    return Path(given).expanduser() if given else Path.home() / ".cache" / "wdparity" / "mxnet-venv"


def venv_python(path: Path) -> Path:
    """The interpreter inside the venv at `path` (which may not exist)."""
    return Path(path) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def create_venv(path: Path | None = None, python: str = sys.executable, quiet: bool = False) -> Path:
    """Create (or update) the venv at `path` with MXNet 1.9.1 and NumPy < 1.24; return its python.

    `python` is the interpreter the venv is built from (MXNet 1.9.1 wheels exist for CPython 3.6-3.11
    on manylinux x86_64). Raises subprocess.CalledProcessError if pip fails.
    """
    path = Path(path) if path is not None else default_venv()
    path.parent.mkdir(parents=True, exist_ok=True)
    if Path(python).resolve() == Path(sys.executable).resolve():
        venv.EnvBuilder(with_pip=True, clear=False).create(path)
    else:
        subprocess.run([python, "-m", "venv", str(path)], check=True)
    exe = venv_python(path)
    flags = ["-q"] if quiet else []
    subprocess.run([str(exe), "-m", "pip", "install", *flags, "--disable-pip-version-check", *PACKAGES], check=True)
    check = "import mxnet, numpy; print('mxnet', mxnet.__version__, 'numpy', numpy.__version__)"
    done = subprocess.run([str(exe), "-c", check], check=True, capture_output=True, text=True)
    if not quiet:
        print(done.stdout.strip())
    return exe
