"""The Backend protocol: what every adapter provides (describe, realize, train, and their companions).

The core never imports a framework. A backend module imports only numpy, pydantic and the core
at module level; its framework is imported inside `train()`, in a worker process. registry.py
finds backends; adapter.py is the template most adapters are written on.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Optional

import numpy as np

from wdparity.spec.models import Semantics, Strict, Task

# what describe() of a live object accepts as the task's model (the adapters' read_live say so)
ONE_LINEAR = ("only the one-Linear task is modelled today: the model's parameters must be exactly one `weight` "
              "(shape (1, d)) and one `bias` (shape (1,)), as nn.Linear(d, 1) / keras.layers.Dense(1) hold them")


class Inexpressible(Exception):
    """realize(): the framework cannot express these semantics. The message names the nearest
    expressible setting and what would differ."""


class Backend:
    """What an adapter provides. Subclass it and register an instance under GROUP.

    describe/realize are pure (no framework import); train runs inside the worker process.
    """

    name: str = ""
    modules: tuple[str, ...] = ()          # import names whose presence and versions matter
    install_hint: str = ""                 # how to get the framework, shown when it is missing
    Config: type[Strict] = Strict          # validates the run's own keys (framework vocabulary)
    hyper_dtype: str = "float64"           # the precision its update receives hyperparameters in
    schedules: tuple[str, ...] = ("constant", "step", "cosine")   # learning-rate schedule kinds it trains
    models_networks: bool = False          # trains `[task] model` with hidden layers (spec/network.py), not only y = Xw + b

    def parse(self, run: dict) -> Strict:
        return self.Config.model_validate(run)

    def describe(self, config: Strict, task: Task) -> Semantics:
        raise NotImplementedError

    def realize(self, semantics: Semantics, task: Task) -> dict:
        raise Inexpressible(f"{self.name} has no realize()")

    def inherent(self, semantics: Semantics, task: Task) -> Semantics:
        """The semantics with this framework's inherent precision applied (what it does to any setting:
        MXNet's float32 hyperparameters, Keras's float32 bias corrections); realize() starts from here."""
        return semantics.model_copy(update={"hyper_dtype": self.hyper_dtype})

    def findings(self, config: Strict, task: Task) -> list[dict]:
        """The known, documented ways this framework departs from the neutral model on this run, each
        {"id", "text", "source", "modelled"}: modelled ones are in describe()'s semantics (the reference
        reproduces them), the others are not (the run's fidelity shows them, and then fails)."""
        return []

    def worker_env(self, config: Strict, task: Task) -> dict[str, str]:
        """Environment variables the worker needs for this run, fixed at the worker's start-up (runs differing
        here get separate workers). `task`: the run's effective task (its dtype, loss, schedule applied), e.g.
        JAX's x64 flag per dtype."""
        return {}

    # ---- wdparity.describe(obj): a live optimizer the user already has (tools/live.py)
    live_roots: tuple[str, ...] = ()       # top-level modules of the optimizer types this adapter reads
    live_label: str = ""                   # what they are, in the framework's words ("torch.optim")

    def reads_live(self, obj: Any) -> bool:
        return type(obj).__module__.split(".")[0] in self.live_roots

    def read_live(self, obj: Any, model: Any, params: Any) -> tuple[dict, list[tuple], list[str]]:
        """(run table, [(key, value, why it is not read)], notes) of a live optimizer, in this adapter's vocabulary;
        the framework is imported here, in the user's process, never by the core."""
        raise NotImplementedError

    def snippet(self, config: Strict, task: Task) -> str:
        """Python that builds this run's optimizer natively (tools/snippet.py frames it): imports, `model` (the
        task's), `optimizer`; Inexpressible naming any key it cannot write."""
        raise Inexpressible(f"{self.name} cannot write its runs as Python yet")

    def default_python(self) -> Optional[str]:
        """The interpreter that runs this backend's worker when no override is given (None: this one)."""
        return None

    def battery_extras(self) -> dict[str, tuple[dict, dict]]:
        """Native knobs realize() never emits, for the fidelity battery: batteries/NAME.toml (data, not code)."""
        return load_battery(self.name)

    # ---- inside the worker
    def versions(self) -> dict[str, str]:
        out = {}
        for mod in self.modules:
            try:
                out[mod] = str(getattr(importlib.import_module(mod), "__version__", "unknown"))
            except Exception:  # a version we cannot read is reported, not fatal
                out[mod] = "unavailable"
        return out

    def train(self, job: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Train natively; return {"weight": (steps+1, d), "bias": (steps+1,)} including the start.

        job = {"task": effective task dict, "run": config dict, "semantics": neutral dict, "dtype": str}.
        """
        raise NotImplementedError

    # ---- batches (`wdparity sweep`): many configs of one run, trained together where the adapter can
    def batch_groups(self, jobs: list[dict[str, Any]], data: dict[str, np.ndarray]) -> list[list[int]]:
        """Indices of `jobs` that train_batch trains together in one vectorized run (pure: no framework
        import, so the parent can tell a sweep's mode). Default: each job alone, i.e. serially."""
        return [[i] for i in range(len(jobs))]

    def train_batch(self, jobs: list[dict[str, Any]], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """train() for every job, in order. Adapters that vectorize override this (and batch_groups)."""
        return [self.train(job, data) for job in jobs]


def refuse_schedule(backend: Backend, semantics: Semantics) -> None:
    """Inexpressible when the semantics' learning-rate schedule is a kind this backend does not train."""
    kind = semantics.schedule.kind
    if kind not in backend.schedules:
        raise Inexpressible(f"{backend.name} trains the learning-rate schedules {list(backend.schedules)}, not {kind!r}; "
                            "nearest: the same run under a constant or step schedule, which differs from the second step")


def load_battery(name: str) -> dict[str, tuple[dict, dict]]:
    """wdparity_backends/batteries/NAME.toml: [cases."case"] task = {...}, run = {...}; {} when absent."""
    import tomllib
    from importlib.resources import files

    path = files("wdparity_backends").joinpath("batteries", f"{name}.toml")
    if not path.is_file():
        return {}
    cases = tomllib.loads(path.read_text(encoding="utf-8")).get("cases", {})
    return {case: (dict(spec.get("task", {})), dict(spec["run"])) for case, spec in cases.items()}
