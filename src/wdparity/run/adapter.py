"""The adapter template: what every framework adapter shares, written once, and the hooks it fills in.

In the spirit of Keras 3's base_optimizer with backend hooks. The shared part: the task data cut into
batches, the Recorder and its one stop rule, grids trained in groups, keyword ownership per optimizer,
refusals of what a framework cannot express (an L1 sign at zero, decoupled L1, frozen tensors). An
adapter supplies its vocabulary (a pydantic Config, its tables: which keyword belongs to which optimizer,
defaults) and these hooks:

    describe(config, task) -> Semantics      what the native setting means (pure)
    realize(semantics, task) -> run table    the native setting for given semantics (pure)
    build(job, data) -> native               the framework's model and optimizer, inside the worker
    step(native, rows, t)                    one optimizer step on those rows
    read(native) -> (w, b)                   the parameters now, as arrays; for a network (`[task] model`,
                                             Backend.models_networks) {neutral name: array}, neutral shapes
    finish(native)                           after the last step (optional)
    batch_key(job) / train_vectorized(...)   grids trained together (optional)

The README's contributor section says what a new adapter or optimizer takes.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

from wdparity.engine import network_recording
from wdparity.engine.batching import partition, train_grouped
from wdparity.engine.data import batches
from wdparity.engine.recording import Recorder
from wdparity.run.backend import Backend, Inexpressible
from wdparity.spec.models import DecayRule, Semantics, Strict, fail


def check_keywords(config: Strict, optimizer: str, own: dict[str, Iterable[str]], spelled: str) -> None:
    """Keyword ownership: a keyword that some optimizer of the table owns, set on a run of another optimizer, is
    an error naming whose it is. `spelled` names the optimizer as the framework writes it, "{optimizer}" filled in."""
    mine = set(own[optimizer])
    for key in sorted({k for keys in own.values() for k in keys} - mine):
        value = getattr(config, key, None)
        if value is not None:
            owners = [name for name, keys in own.items() if key in keys]
            raise fail(key, value, f"is not a keyword of {spelled.format(optimizer=optimizer)} (it belongs to "
                       f"{', '.join(spelled.format(optimizer=o) for o in owners)})")


def refuse_l1(rules: list[DecayRule], at_zero: Optional[float], framework: str) -> None:
    """Inexpressible unless every L1 rule is one this framework computes: gradient-coupled (no framework here has
    a decoupled L1) and with its autodiff's d|w|/dw at w = 0 (None: the adapter chooses among several)."""
    for rule in rules:
        if rule.norm != "l1":
            continue
        if rule.coupling != "gradient":
            raise Inexpressible(f"{framework} has no decoupled L1 decay; nearest: an L1 `penalty` (gradient coupling), "
                                f"coefficient {rule.coefficient} on {rule.params}, which passes through the "
                                "optimizer's moments")
        if at_zero is not None and rule.effective_l1_at_zero != at_zero:
            raise Inexpressible(f"an L1 penalty through {framework}'s autodiff takes d|w|/dw = {at_zero} at w = 0, not "
                                f"{rule.effective_l1_at_zero}; nearest: l1_at_zero = {at_zero}, which differs wherever "
                                f"a weight is exactly 0 (by lr*lambda per step)")


def refuse_optimizer(semantics: Semantics, modelled: Iterable[str], framework: str) -> None:
    """Inexpressible when the adapter does not model the neutral optimizer (yet): named, never mistaken for another."""
    name = semantics.optimizer.name
    if name not in modelled:
        raise Inexpressible(f"this {framework} adapter models the optimizers {sorted(modelled)}, not {name!r}; nearest: "
                            f"the same run through an adapter that models {name!r} (the numpy reference does)")


def refuse_frozen(semantics: Semantics, why: str) -> None:
    """Inexpressible when tensors are frozen and the adapter cannot freeze them (`why` cites the framework's way)."""
    if semantics.frozen:
        raise Inexpressible(f"this adapter updates every parameter ({why}, is not modelled); nearest: the same setting "
                            f"with {semantics.frozen} trained too, which differs from the first step")


def refuse_no_bias_correction(optimizer, framework: str) -> None:
    """Inexpressible when Adam's or Adamax's moments go uncorrected (MLX's default) on a framework that always
    bias-corrects them."""
    if getattr(optimizer, "bias_correction", True) is False and optimizer.name in ("adam", "adamax"):
        raise Inexpressible(f"{framework}'s {optimizer.name} always bias-corrects its moments; nearest: bias_correction = "
                            "true, whose first step is smaller by (1-b1)/sqrt(1-b2) (0.1/0.0316 = 3.16x at the "
                            "default betas) and the same once 1 - b^t is near 1")


def refuse_clip(semantics: Semantics, supported: dict[tuple[str, str], str], framework: str) -> None:
    """Inexpressible unless the run's clipping (kind, position) is one the framework has; `supported` maps each
    it has to its native spelling (named in the reason), so a clip is realized or refused, never dropped."""
    clip = semantics.clip
    if clip is None:
        return
    if (clip.kind, clip.position) not in supported:
        have = "; ".join(f"{kind} at {position}: {native}" for (kind, position), native in sorted(supported.items()))
        raise Inexpressible(f"{framework} has no {clip.kind} clipping at position {clip.position!r}"
                            + (f"; it has {have}" if have else " (no gradient clipping is modelled here)")
                            + "; nearest: the run without clipping, which differs from the first clipped step")


class Adapter(Backend):
    """A Backend whose train() is the shared loop over the hooks build / step / read / finish."""

    record_checks = True   # False: a compiled loop records without the per-step test, the stop rule is applied after

    def build(self, job: dict, data: dict[str, np.ndarray]) -> Any:
        raise NotImplementedError

    def step(self, native: Any, rows: np.ndarray, t: int) -> None:
        raise NotImplementedError

    def read(self, native: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def finish(self, native: Any) -> None:
        """After the last step (e.g. write a compiled loop's state back, check the dtype it trained in)."""

    def train(self, job: dict, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        native = self.build(job, data)
        rows = batches(data["order"], int(job["task"]["batch_size"]))
        net = network_recording.recorder(data, len(rows), np.dtype(job["dtype"]))
        if net is not None:   # a network: read() gives {name: array}
            def record(t, check=True):
                return net.record(t, self.read(native), check)
            rec = net
        else:
            rec = Recorder(data, len(rows), int(np.asarray(data["w0"]).size), np.dtype(job["dtype"]))

            def record(t, check=True):
                return rec.record(t, *self.read(native), check=check)
        record(0)
        for t, idx in enumerate(rows):
            self.step(native, idx, t)
            if not record(t + 1, check=self.record_checks):
                break
        self.finish(native)
        return rec.result()

    # ---- grids: configs whose batch_key is equal train as one vectorized run
    def batch_key(self, job: dict) -> Optional[str]:
        """Equal keys train together through train_vectorized; None (the default): this job trains alone."""
        return None

    def train_vectorized(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        raise NotImplementedError

    def batch_groups(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[list[int]]:
        """Jobs with equal batch keys, together; checkpoint recording (record_steps) and networks stay serial."""
        serial = "record_steps" in data or "model_json" in data
        return partition([None if serial else self.batch_key(job) for job in jobs])

    def train_batch(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        return train_grouped(self.batch_groups(jobs, data), jobs, data, self.train, self.train_vectorized)
