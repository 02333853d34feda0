"""The `mlx` backend: mlx.optimizers' SGD, RMSprop, Adagrad, AdaDelta, Adam, AdamW, Adamax, Lion and Adafactor
(MLX 0.32.4, Linux CPU), MultiOptimizer for per-tensor decay, loss penalties and clip_grad_norm, as an MLX user
writes them.

MLX's Adam and AdamW do not bias-correct by default (bias_correction=False: the first step is ~3.16x torch's);
AdamW's default weight_decay is 0.01, decoupled; SGD's is coupled. describe() is mlx_describe.py (Adafactor:
mlx_adafactor.py), realize() mlx_realize.py, the worker's training loop mlx_train.py (nn.value_and_grad,
optimizer.update, mx.eval), a network's nn.Sequential and its paths mlx_network.py. Every statement about MLX,
with its source and its test: docs/adapters/mlx.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wdparity.run.adapter import Adapter
from wdparity.spec.models import Semantics, Task

from .mlx_adafactor import decay_rate_dtype
from .mlx_describe import MLX_L1_AT_ZERO, bias_correction_dtype, describe, float32_lr
from .mlx_findings import class_findings
from .mlx_realize import realize
from .mlx_vocab import MULTI, MlxRun

__all__ = ["MLX_L1_AT_ZERO", "MlxBackend", "backend"]


class MlxBackend(Adapter):
    name = "mlx"
    modules = ("mlx",)
    install_hint = "pip install mlx mlx-cpu   # Linux CPU; on macOS: pip install mlx"
    Config = MlxRun
    models_networks = True   # the task's nn.Sequential (mlx_network.py)
    live_roots, live_label = ("mlx",), "mlx.optimizers"

    def read_live(self, obj, model, params):
        from .mlx_live import read_live
        return read_live(obj, model, params)

    def snippet(self, config: MlxRun, task: Task) -> str:
        from .mlx_snippet import snippet
        return snippet(config, task)

    def findings(self, config: MlxRun, task: Task) -> list[dict]:
        """Documented departures from what a reader of the call may expect, each modelled by describe()."""
        out: list[dict] = []
        for sub, _ in config.groups():
            out += [f for f in class_findings(sub) if f["id"] not in {g["id"] for g in out}]
        if float32_lr(config, task):
            out.append({"id": "learning-rate-float32", "modelled": True,
                        "text": "a Python-float learning_rate is stored as mx.array(learning_rate), float32, and cast "
                                "to the parameters' dtype at each step: a float64 run steps with the float32-rounded lr",
                        "source": "mlx/optimizers/optimizers.py:153,281"})
        if config.optimizer == MULTI:
            out.append({"id": "multi-optimizer-per-tensor", "modelled": True,
                        "text": "MultiOptimizer hands each parameter to the first optimizer whose filter takes its "
                                "path, the last one taking the rest: the tensors' decay is their optimizer's",
                        "source": "mlx/optimizers/optimizers.py:184-207"})
        if (config.optimizer == MULTI and task.model.norm == "layer"
                and any((sub.endswith or "").endswith("weight") for sub in config.optimizers)):
            out.append({"id": "endswith-weight-takes-layernorm-scales", "modelled": True,
                        "text": "path.endswith(\"weight\") takes every nn.LayerNorm's scale too (its parameter is "
                                "named weight); array.ndim == 2 takes the nn.Linear weights only",
                        "source": "mlx/nn/layers/normalization.py:118"})
        if config.clip_grad_norm is not None:
            out.append({"id": "clip-grad-norm-eps", "modelled": True,
                        "text": "clip_grad_norm scales by min(max_norm / (total_norm + 1e-6), 1) over every tensor",
                        "source": "mlx/optimizers/optimizers.py:1005-1008"})
        if config.penalty and config.penalty.l1:
            out.append({"id": "l1-at-zero-0", "modelled": True, "text": "mx.grad of mx.abs at 0 is 0",
                        "source": "tests/test_mlx_facts.py (measured)"})
        return out

    def describe(self, config: MlxRun, task: Task) -> Semantics:
        return describe(config, task)

    def inherent(self, semantics: Semantics, task: Task) -> Semantics:
        """A float32 run's bias corrections and Adafactor's b2 come from float32 hyperparameters (as in describe)."""
        semantics = super().inherent(semantics, task)
        opt = semantics.optimizer
        if opt.name == "adafactor":   # a float32 run computes step**decay_rate in float32
            return semantics.model_copy(update={"optimizer": opt.model_copy(update={
                "decay_rate_dtype": decay_rate_dtype(task)})})
        if opt.name == "adam":
            dtype = bias_correction_dtype(opt.bias_correction, task)
            return semantics.model_copy(update={"optimizer": opt.model_copy(update={"bias_correction_dtype": dtype})})
        return semantics

    def realize(self, semantics: Semantics, task: Task) -> dict:
        return realize(semantics, task)

    # ---------------------------------------------------------------- inside the worker
    def versions(self) -> dict[str, str]:
        import mlx.core as mx  # the `mlx` package itself has no __version__

        return {"mlx": mx.__version__}

    def build(self, job: dict, data: dict[str, np.ndarray]) -> Any:
        from .mlx_train import build

        return build(job, data)

    def step(self, native: Any, rows: np.ndarray, t: int) -> None:
        from .mlx_train import train_step

        train_step(native, rows)

    def read(self, native: Any) -> tuple[np.ndarray, np.ndarray]:
        from .mlx_train import read

        return read(native)


backend = MlxBackend()
