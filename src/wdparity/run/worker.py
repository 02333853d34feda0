"""The worker process: one per backend (and interpreter) per invocation, all its runs batched.

    python -m wdparity.run.worker JOBDIR
    python -m wdparity.run.worker --serve      (job folders on stdin, one per line: run/pool.py)

JOBDIR/job.json names the backend ("module:attr") and its items; the shared task data lie in
JOBDIR/../data_*.npz. For each item the worker writes ITEM.npz (the trajectory) and ITEM.json
(status, reason, seconds), then prints "done ITEM" for the progress display. It imports only the
standard library, numpy and the backend module (tests/test_layers.py checks the first two), so it also
runs under a separate interpreter (MXNet's own venv, NumPy < 1.24); what the adapter imports is its own.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _peak_rss_mb() -> float:
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)   # Linux: KiB
    except (ImportError, OSError):
        return 0.0


def _train_batch(backend, jobs: list, data: dict) -> dict:
    """Backend.train_batch (or train() per job for an adapter without it), config i's arrays as "i.NAME"."""
    batch = getattr(backend, "train_batch", None)
    outs = batch(jobs, data) if batch is not None else [backend.train(job, data) for job in jobs]
    if len(outs) != len(jobs):
        raise RuntimeError(f"train_batch returned {len(outs)} trajectories for {len(jobs)} jobs")
    return {f"{i}.{name}": value for i, out in enumerate(outs) for name, value in out.items()}


def load(target: str) -> tuple:
    """(backend, ok, reason, info) for the adapter "module:attr": imported once per worker process."""
    import importlib

    import numpy as np

    info = {"python": sys.version.split()[0], "executable": sys.executable, "numpy": np.__version__}
    try:
        module, _, attr = target.partition(":")
        backend = getattr(importlib.import_module(module), attr or "backend")
        backend_ok, backend_reason = True, None
    except Exception as exc:  # a broken adapter costs only its own runs
        backend, backend_ok = None, False
        backend_reason = f"cannot load adapter {target}: {type(exc).__name__}: {exc}"
    if backend is not None:
        missing = []
        for mod in getattr(backend, "modules", ()):
            try:
                importlib.import_module(mod)
            except ImportError as exc:
                missing.append(f"{mod} ({exc})")
        if missing:
            backend_ok = False
            hint = getattr(backend, "install_hint", "")
            backend_reason = f"missing in {sys.executable}: {', '.join(missing)}" + (f"; {hint}" if hint else "")
            info["skipped"] = True
        else:
            info.update(backend.versions())
    return backend, backend_ok, backend_reason, info


def main(jobdir: str, loaded: tuple | None = None) -> int:
    import numpy as np

    root = Path(jobdir)
    job = json.loads((root / "job.json").read_text())
    backend, backend_ok, backend_reason, info = loaded or load(job["target"])
    _write_json(root / "versions.json", info)

    data_cache: dict[str, dict] = {}
    for item in job["items"]:
        ident = item["id"]
        start = time.perf_counter()
        if not backend_ok:
            status = {"status": "skipped" if info.get("skipped") else "error", "reason": backend_reason}
        else:
            try:
                path = item["data"]
                if path not in data_cache:
                    with np.load(root.parent / path) as npz:
                        data_cache[path] = {k: npz[k] for k in npz.files}
                if "batch" in item["job"]:   # many configs in one item (wdparity sweep): "{i}.weight", ...
                    out = _train_batch(backend, item["job"]["batch"], data_cache[path])
                else:
                    out = backend.train(item["job"], data_cache[path])
                arrays = {k: np.asarray(v) for k, v in out.items()}
                np.savez(root / f"{ident}.npz", **arrays)
                status = {"status": "ok", "reason": None}
            except Exception as exc:
                tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
                status = {"status": "error", "reason": f"{type(exc).__name__}: {exc}".strip(),
                          "traceback": "".join(tb[-6:])}
        status["seconds"] = round(time.perf_counter() - start, 4)
        status["peak_rss_mb"] = _peak_rss_mb()   # the worker's high-water mark so far (scale goal: per worker)
        _write_json(root / f"{ident}.json", status)
        print(f"done {ident}", flush=True)
    return 0


def serve() -> int:
    """`--serve`: one job folder per stdin line, the adapter loaded once (run/pool.py keeps this process across
    calls, so a test session pays the framework's import once); "end JOBDIR" after each; exit at end of input."""
    loaded: dict[str, tuple] = {}
    for line in sys.stdin:
        jobdir = line.strip()
        if not jobdir:
            continue
        target = json.loads((Path(jobdir) / "job.json").read_text())["target"]
        if target not in loaded:
            loaded[target] = load(target)
        main(jobdir, loaded[target])
        print(f"end {jobdir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["--serve"] else main(sys.argv[1]))
