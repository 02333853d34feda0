"""lambda x lr grids (`wdparity sweep`): every convention at every (lambda, lr), vectorized where it can be.

Why a module of its own: sweep.py draws one lambda axis inside `wdparity run`, one native run per
point. A learning-rate axis multiplies that (8 x 8 = 64 runs a convention), which is affordable only
when a backend trains the configs of a convention together: `Backend.batch_groups` says which jobs
an adapter can vectorize (the batched reference, one torch optimizer with a param group per config,
jax.vmap over optax hyperparameters) and one worker item {"batch": [job, ...]} carries them. What
an adapter cannot batch goes as serial items, through the same worker, exactly as before.

The file format is in spec/sweepfile.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from pydantic import ValidationError

from wdparity.engine import recording
from wdparity.engine.data import losses, make_data, network_losses
from wdparity.run import harness, registry
from wdparity.run.cases import Run, load_run
from wdparity.spec.casefile import read_toml
from wdparity.spec.errors import InputError, from_validation_error
from wdparity.spec.sweepfile import LR_EXAMPLES, GridFile, set_path


@dataclass
class Grid:
    path: str
    spec: GridFile
    lambdas: list[float]
    lrs: Optional[list[float]]              # None: each convention at its own lr
    runs: dict[str, list[Run]]              # convention -> configs, lambda-major: k = i * len(lrs) + j

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.lambdas), len(self.lrs or [None])


def load_grid(path: str, overrides: Optional[dict[str, str]] = None) -> Grid:
    """Read and validate a grid (or sweep) file and expand it into one validated Run per config."""
    data = read_toml(Path(path))
    try:
        spec = GridFile.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, path, data)
    lrs = None if spec.sweep.lr is None else [float(v) for v in spec.sweep.lr]
    from wdparity.spec.budget import check_grid

    check_grid(path, spec.task, data, spec.conventions, len(spec.sweep.values) * len(lrs or [None]))
    runs: dict[str, list[Run]] = {}
    for name, conv in spec.conventions.items():
        where = f"conventions.{name}.lr_key"
        if lrs is not None and conv.lr_key is None:
            raise InputError(path, where, f"is required because [sweep] lr = {lrs} is given: the dotted path that "
                             f"receives the learning rate in this run (e.g. {LR_EXAMPLES})", None)
        if lrs is None and conv.lr_key is not None:
            raise InputError(path, where, "needs a learning-rate axis ([sweep] lr = [...]); without one it would "
                             "set nothing", conv.lr_key)
        runs[name] = []
        for lam in spec.sweep.values:
            raw = set_path(conv.run, conv.key, float(conv.factor * lam), path, f"conventions.{name}.key")
            for lr in lrs or [None]:
                table = raw if lr is None else set_path(raw, conv.lr_key, lr, path, where)
                run = load_run(name, table, spec.task, path, overrides or {})
                got = run.semantics.optimizer.lr
                if lr is not None and not math.isclose(got, lr, rel_tol=1e-12):
                    raise InputError(path, where, f"must lead to the run's learning rate: with {lr:g} written there "
                                     f"the run's optimizer lr is {got:g}", conv.lr_key)
                runs[name].append(run)
    return Grid(path, spec, [float(v) for v in spec.sweep.values], lrs, runs)


@dataclass
class GridResult:
    path: str
    title: str
    sources: list[str]
    task: dict
    lambdas: list[float]
    lrs: Optional[list[float]]
    conventions: dict[str, dict]   # name -> label, backend, mode, seconds, items, configs [{lambda, lr, status, ...}]
    versions: dict[str, str]

    def to_json(self) -> dict:
        return {"sweep": self.path, "title": self.title, "sources": self.sources, "task": self.task,
                "grid": {"lambda": self.lambdas, "lr": self.lrs}, "conventions": self.conventions,
                "versions": self.versions}

    def matrix(self, name: str, key: str = "test_loss") -> np.ndarray:
        """(n_lambda, n_lr) of a per-config number, NaN where there is none."""
        vals = [np.nan if c[key] is None else c[key] for c in self.conventions[name]["configs"]]
        return np.array(vals, dtype=np.float64).reshape(len(self.lambdas), len(self.lrs or [None]))

    @property
    def errored(self) -> bool:
        return any(c["status"] == "error" for conv in self.conventions.values() for c in conv["configs"])


def plan_items(grid: Grid, data: dict, serial: bool = False) -> tuple[list, dict[str, str], dict[str, tuple]]:
    """Worker items for the grid: (items, mode per convention, item id -> (convention, config indices)).

    A group of two or more jobs that the backend can vectorize becomes one {"batch": [...]} item; every
    other config is an item of its own (with serial=True, all of them: the fair serial baseline)."""
    items, modes, carries = [], {}, {}
    for name, runs in grid.runs.items():
        single = [run.work_item(f"{name}-{k}", "d") for k, run in enumerate(runs)]
        groups = ([[k] for k in range(len(runs))] if serial else
                  registry.get(runs[0].backend).batch_groups([it.job for it in single], data))
        modes[name] = "vectorized" if any(len(g) > 1 for g in groups) else "serial"
        for n, group in enumerate(groups):
            if len(group) == 1:
                item = single[group[0]]
            else:
                item = dataclasses.replace(single[group[0]], id=f"{name}-batch{n}",
                                           job={"batch": [single[k].job for k in group]})
            items.append(item)
            carries[item.id] = (name, list(group))
    return items, modes, carries


def run_grid(grid: Grid, serial: bool = False, timeout: float = harness.DEFAULT_TIMEOUT,
             on_done: Optional[Callable] = None) -> GridResult:
    """Train every config natively (one worker per backend) and collect final losses per config."""
    data = make_data(grid.spec.task.model_dump())
    items, modes, carries = plan_items(grid, data, serial)
    results = harness.run_items(items, {"d": data}, timeout=timeout, on_done=on_done)
    return collect(grid, data, modes, carries, results)


def collect(grid: Grid, data: dict, modes: dict[str, str], carries: dict[str, tuple],
            results: dict[str, harness.Result]) -> GridResult:
    """The grid's result from its items' results (run here or in a shared invocation: `wdparity run`)."""
    task = grid.spec.task
    conventions, versions = {}, {}
    for name, runs in grid.runs.items():
        configs: list[Optional[dict]] = [None] * len(runs)
        seconds, n_items = 0.0, 0
        for ident, (owner, ks) in carries.items():
            if owner != name:
                continue
            res = results[ident]
            seconds, n_items = seconds + res.seconds, n_items + 1
            for mod in registry.get(runs[0].backend).modules:
                if mod in res.versions:
                    versions[mod] = res.versions[mod]
            for i, k in enumerate(ks):
                arrays = res.arrays if len(ks) == 1 else {key.split(".", 1)[1]: v for key, v in res.arrays.items()
                                                          if key.split(".", 1)[0] == str(i)}
                configs[k] = _final(grid, runs, k, res.status, res.reason, arrays, data)
        conv = grid.spec.conventions[name]
        conventions[name] = {"label": conv.label, "backend": runs[0].backend, "mode": modes[name],
                             "seconds": round(seconds, 4), "items": n_items, "configs": configs}
    return GridResult(grid.path, grid.spec.title, list(grid.spec.sources), task.model_dump(), grid.lambdas,
                      grid.lrs, conventions, dict(sorted(versions.items())))


def _final(grid: Grid, runs: list[Run], k: int, status: str, reason: Optional[str], arrays: dict,
           data: dict) -> dict:
    i, j = divmod(k, grid.shape[1])
    out = {"lambda": grid.lambdas[i], "lr": float(runs[k].semantics.optimizer.lr), "status": status,
           "reason": reason, "train_loss": None, "test_loss": None}
    if status != "ok":
        return out
    if "model_json" in data:   # a network: its tensors' last row through the forward pass
        names = [k for k in arrays if k not in recording.SUMMARIES]
        if not names:
            return {**out, "status": "error", "reason": "the worker returned no trajectory for this config"}
        w = np.concatenate([np.asarray(arrays[k])[-1:].reshape(1, -1) for k in names], axis=1)
        b = np.zeros(1)
        tr, te = network_losses(data, {k: np.asarray(arrays[k])[-1:] for k in names}, grid.spec.task.loss)
    elif "weight" not in arrays:
        return {**out, "status": "error", "reason": "the worker returned no trajectory for this config"}
    else:
        w = np.asarray(arrays["weight"])[-1:].reshape(1, -1)
        b = np.asarray(arrays["bias"]).reshape(-1)[-1:]
        tr, te = losses(data, w, b, grid.spec.task.loss)
    if not (np.isfinite(w).all() and np.isfinite(b).all() and np.isfinite(tr[0]) and np.isfinite(te[0])):
        return {**out, "status": "unstable", "reason": "the weights left the finite range during training "
                "(this lr is too large at this lambda)"}
    return {**out, "train_loss": float(tr[0]), "test_loss": float(te[0])}


def shared_work(paths: list[str], overrides: dict) -> tuple[list, list, dict, dict]:
    """Sweeps to train beside the cases of `wdparity run` (check_cases(extra=...)): (plans, items, data,
    results) with item ids and data keys prefixed per file, so one worker per backend serves them all."""
    plans, items, data = [], [], {}
    for k, path in enumerate(paths):
        grid = load_grid(path, overrides)
        data[f"s{k}"] = make_data(grid.spec.task.model_dump())
        own, modes, carries = plan_items(grid, data[f"s{k}"])
        items += [dataclasses.replace(it, id=f"s{k}-{it.id}", data_key=f"s{k}") for it in own]
        plans.append((f"s{k}", grid, data[f"s{k}"], modes, carries))
    return plans, items, data, {}


def finish_shared(plan: tuple, results: dict) -> GridResult:
    key, grid, data, modes, carries = plan
    return collect(grid, data, modes, carries, {ident: results[f"{key}-{ident}"] for ident in carries})
