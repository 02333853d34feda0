"""`--trajectories DIR`: every run's recorded parameters as DIR/<case stem>__<run name>.npz, for users' own plots.

Arrays: weight (rows, d) and bias (rows,) — rows = steps + 1 (the initial parameters, then after every
optimizer step) unless the task records checkpoints — `step` (the optimizer step of each row), `steps`
(the task's step count) and `dtype` (the run's dtype, as text). Each file is written to a temporary name
and renamed into place, so nothing already there is lost to an interrupted run. Two cases sharing a stem
get their directory's name in front (`<dir>_<stem>__<run>.npz`).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from wdparity.engine import recording

SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def file_stems(results) -> list[str]:
    stems = [Path(res.case.path).stem for res in results]
    out = []
    for res, stem in zip(results, stems):
        if stems.count(stem) > 1:
            stem = f"{Path(res.case.path).resolve().parent.name}_{stem}"
        out.append(SAFE.sub("_", stem))
    return out


def _save(path: Path, arrays: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_trajectories(results, out: Path) -> list[Path]:
    """One .npz per run that trained (skipped and errored runs have no trajectory)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for res, stem in zip(results, file_stems(results)):
        for name, traj in sorted(res.trajectories.items()):
            run = res.case.runs[name]
            if "weight" in traj:
                w = np.asarray(traj["weight"])
                arrays = {"weight": w.reshape(len(w), -1), "bias": np.asarray(traj["bias"]).reshape(-1)}
            else:   # a network: one (rows, size) array per neutral tensor name (spec/network.py)
                arrays = {k: np.asarray(traj[k]).reshape(len(traj[k]), -1) for k in recording.tensor_names(traj)}
            arrays.update({"step": recording.steps_of(traj),
                           "steps": np.asarray(run.task.steps), "dtype": np.asarray(run.dtype)})
            path = out / f"{stem}__{name}.npz"
            _save(path, arrays)
            written.append(path)
    return written
