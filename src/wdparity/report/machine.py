"""The machine-readable outputs' options (--junit FILE, --trajectories DIR, --csv FILE): checked before anything
runs (exit 2 with one line naming the option and the value), then written atomically after the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from wdparity.spec.errors import InputError


def _writable_parent(path: Path, option: str, value: str) -> None:
    """The nearest existing folder above `path` must be a folder this process can write into."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError("", option, f"must be a path under a folder ({parent} is a file)", value)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError("", option, f"must be writable ({parent} is not)", value)


def out_file(value: Optional[str], option: str) -> Optional[Path]:
    """A file to write (--junit, --csv), checked before anything runs; None when the option is absent."""
    if value is None:
        return None
    path = Path(value)
    if not value or value.endswith(("/", os.sep)) or path.is_dir():
        raise InputError("", option, "must be a file path (a folder of that name exists)" if path.is_dir()
                         else "must be a file path, not a folder", value)
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError("", option, "must be writable (the existing file is not)", value)
    _writable_parent(path, option, value)
    return path


def out_folder(value: Optional[str], option: str) -> Optional[Path]:
    """A folder to write into (--trajectories), checked before anything runs."""
    if value is None:
        return None
    path = Path(value)
    if not value or (path.exists() and not path.is_dir()):
        raise InputError("", option, "must be a folder (a file of that name exists)", value)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError("", option, "must be a writable folder", value)
    else:
        _writable_parent(path, option, value)
    return path


def machine_outputs(args) -> tuple[Optional[Path], Optional[Path]]:
    return out_file(getattr(args, "junit", None), "--junit"), out_folder(getattr(args, "trajectories", None),
                                                                          "--trajectories")


def write_machine_outputs(results, junit: Optional[Path], trajectories: Optional[Path]) -> list[Path]:
    written = []
    if junit is not None:
        from wdparity.report.junit import write_junit

        written.append(write_junit(results, junit))
    if trajectories is not None:
        from wdparity.report.trajectories import write_trajectories

        write_trajectories(results, trajectories)
        written.append(trajectories)
    return written
