"""The `numpy` backend: neutral semantics written directly, trained by the float64/float32 reference.

It is the first adapter and goes through the same worker-process path as every framework, so the
harness is exercised even where no framework is installed.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import numpy as np
from pydantic import Field, model_validator

from wdparity.engine import reference
from wdparity.run.adapter import check_keywords
from wdparity.run.backend import Backend
from wdparity.spec.models import (
    OPTIMIZER_SPECS,
    SCHEDULE_KINDS,
    Clip,
    DecayRule,
    NonNeg,
    Penalty,
    Positive,
    Semantics,
    Strict,
    Task,
    Unit,
)

# The vocabulary is the neutral spec itself: every family of spec/optimizers.py, each owning its own fields.
SPECS = OPTIMIZER_SPECS
OWN = {name: tuple(f for f in spec.model_fields if f not in ("name", "lr")) for name, spec in SPECS.items()}


class NumpyRun(Strict):
    """Every neutral optimizer field, None where not given (the family's model then supplies its default)."""

    optimizer: Literal["sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam", "lion", "lamb", "adafactor"]
    lr: Positive
    momentum: Optional[Unit] = None
    dampening: Optional[Unit] = None
    nesterov: Optional[bool] = None
    momentum_form: Optional[Literal["buffer", "velocity"]] = None
    betas: Optional[list[Unit]] = Field(None, min_length=2, max_length=2)
    eps: Optional[Positive] = None
    eps_placement: Optional[Literal["corrected", "uncorrected", "in_max", "outside", "in_max_decayed"]] = None
    bias_correction_dtype: Optional[Literal["float32"]] = None
    amsgrad: Optional[Literal["v", "v_hat"]] = None
    rho: Optional[Unit] = None
    eps_in_sqrt: Optional[bool] = None
    centered: Optional[bool] = None
    initial_scale: Optional[NonNeg] = None
    bias_correction: Optional[bool] = None
    initial_accumulator: Optional[NonNeg] = None
    lr_decay: Optional[NonNeg] = None
    # NAdam's mu_t schedule; "constant" is mu_t = b1 throughout (NadamSpec.momentum_decay = None; TOML has no null)
    momentum_decay: Optional[Union[Positive, Literal["constant"]]] = None
    threshold: Optional[Positive] = None
    threshold_inclusive: Optional[bool] = None
    decay_placement: Optional[Literal["inside_trust_ratio", "before", "after"]] = None
    max_trust_ratio: Optional[Positive] = None
    decay_rate: Optional[Positive] = None
    # Adafactor's clip and parameter scale; false is "none" (TOML has no null; AdafactorSpec None)
    clip_threshold: Optional[Union[Positive, Literal[False]]] = None
    relative_step: Optional[bool] = None
    parameter_scale: Optional[Union[Positive, Literal[False]]] = None
    decay_rate_dtype: Optional[Literal["float32"]] = None
    decay: list[DecayRule] = Field(default_factory=list)
    penalty: Optional[Penalty] = None
    hyper_dtype: Literal["float64", "float32"] = "float64"
    frozen: list[str] = Field(default_factory=list)   # tensors never updated (Semantics.frozen validates them)
    clip: Optional[Clip] = None

    @model_validator(mode="after")
    def _keys_fit_optimizer(self):
        check_keywords(self, self.optimizer, OWN, 'optimizer = "{optimizer}"')
        return self


class NumpyBackend(Backend):
    name = "numpy"
    modules = ("numpy",)
    schedules = SCHEDULE_KINDS
    models_networks = True   # the reference trains `[task] model` networks (engine/network.py)
    Config = NumpyRun

    def describe(self, config: NumpyRun, task: Task) -> Semantics:
        given = {k: v for k, v in config.model_dump().items()
                 if v is not None and k not in ("optimizer", "decay", "penalty", "hyper_dtype", "frozen", "clip")}
        if given.get("momentum_decay") == "constant":
            given["momentum_decay"] = None
        for key in ("clip_threshold", "parameter_scale"):
            if given.get(key) is False:
                given[key] = None
        optimizer = SPECS[config.optimizer](name=config.optimizer, **given)
        decay = list(config.decay) + (config.penalty.rules(l1_at_zero=0.0) if config.penalty else [])
        return Semantics(optimizer=optimizer, decay=decay, loss=task.loss, schedule=task.schedule,
                         hyper_dtype=config.hyper_dtype, frozen=list(config.frozen), clip=config.clip)

    def realize(self, semantics: Semantics, task: Task) -> dict:
        opt = {k: v for k, v in semantics.optimizer.model_dump().items() if v is not None}
        if semantics.optimizer.name == "nadam" and semantics.optimizer.momentum_decay is None:
            opt["momentum_decay"] = "constant"
        if semantics.optimizer.name == "adafactor":
            opt.update({k: False for k in ("clip_threshold", "parameter_scale") if getattr(semantics.optimizer, k) is None})
        run = {"optimizer": opt.pop("name"), **opt}
        if semantics.decay:
            keep_source = semantics.hyper_dtype != "float64" or semantics.clip is not None
            run["decay"] = [{k: v for k, v in r.neutral().items() if v is not None and (k != "via_loss" or keep_source)}
                            for r in semantics.decay]
        if semantics.hyper_dtype != "float64":
            run["hyper_dtype"] = semantics.hyper_dtype
        if semantics.frozen:
            run["frozen"] = list(semantics.frozen)
        if semantics.clip is not None:
            run["clip"] = semantics.clip.model_dump()
        return run

    def train(self, job: dict, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return reference.run(job["semantics"], data, int(job["task"]["batch_size"]), job["dtype"])

    def batch_groups(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[list[int]]:
        """Jobs whose semantics differ only in lr and decay coefficients (a missing rule counting as
        coefficient 0) train as one reference run with a config axis (engine/batching.py); checkpoint
        recording (record_steps) stays serial."""
        import json

        from wdparity.engine import batching

        if "record_steps" in data:
            return batching.partition([None] * len(jobs))
        return batching.groups([job["semantics"] for job in jobs],
                              [json.dumps([job["task"], job["dtype"]], sort_keys=True) for job in jobs])

    def train_batch(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        from wdparity.engine import batching

        def vectorized(group: list[dict], data: dict) -> list[dict]:
            return reference.run([j["semantics"] for j in group], data, int(group[0]["task"]["batch_size"]),
                               group[0]["dtype"])

        return batching.train_grouped(self.batch_groups(jobs, data), jobs, data, self.train, vectorized)


backend = NumpyBackend()
