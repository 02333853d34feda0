"""The `mlx` backend: mlx.optimizers' SGD, RMSprop, Adagrad, AdaDelta, Adam, AdamW, Adamax and Lion (MLX 0.32.4,
Linux CPU), loss penalties and clip_grad_norm, as an MLX user writes them.

MLX's Adam and AdamW do not bias-correct by default (bias_correction=False: the first step is ~3.16x torch's);
AdamW's default weight_decay is 0.01, decoupled; SGD's is coupled. describe() is mlx_describe.py, realize()
mlx_realize.py, the worker's training loop mlx_train.py (nn.value_and_grad, optimizer.update, mx.eval). Every
statement about MLX, with its source and the test that measures it: docs/adapters/mlx.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wdparity.run.adapter import Adapter
from wdparity.spec.models import Semantics, Task

from .mlx_describe import MLX_L1_AT_ZERO, bias_correction_dtype, describe, float32_lr
from .mlx_realize import realize
from .mlx_vocab import MlxRun

__all__ = ["MLX_L1_AT_ZERO", "MlxBackend", "backend"]


class MlxBackend(Adapter):
    name = "mlx"
    modules = ("mlx",)
    install_hint = "pip install mlx mlx-cpu   # Linux CPU; on macOS: pip install mlx"
    Config = MlxRun

    def findings(self, config: MlxRun, task: Task) -> list[dict]:
        """Documented departures from what a reader of the call may expect, each modelled by describe()."""
        out = []
        if config.optimizer in ("Adam", "AdamW") and not config.get("bias_correction"):
            out.append({"id": "adam-no-bias-correction", "modelled": True,
                        "text": f"mlx.optimizers.{config.optimizer} does not bias-correct its moments by default "
                                "(bias_correction=False): w -= lr*m/(sqrt(v) + eps), a first step (1-b1)/sqrt(1-b2) "
                                "= 3.16x torch's at the default betas",
                        "source": "mlx/optimizers/optimizers.py:503,548-549"})
        if config.optimizer == "AdamW" and config.weight_decay is None:
            out.append({"id": "adamw-default-weight-decay", "modelled": True,
                        "text": "mlx.optimizers.AdamW's default weight_decay is 0.01 (torch's too), decoupled: "
                                "w *= 1 - lr_t*weight_decay before the Adam step",
                        "source": "mlx/optimizers/optimizers.py:584,600-603"})
        if config.optimizer == "Adamax":
            out.append({"id": "adamax-no-bias-correction", "modelled": True,
                        "text": "mlx.optimizers.Adamax does not bias-correct m, and adds eps outside the max: "
                                "lr*m/(max(b2*u, |g|) + eps)", "source": "mlx/optimizers/optimizers.py:654-659"})
        if config.optimizer == "Adagrad" and config.eps is None:
            out.append({"id": "adagrad-eps", "modelled": True,
                        "text": "mlx.optimizers.Adagrad's default eps is 1e-8 (torch's: 1e-10), outside the root",
                        "source": "mlx/optimizers/optimizers.py:379,404"})
        if config.optimizer == "SGD" and config.get("dampening") and config.get("momentum"):
            out.append({"id": "sgd-dampening-first-step", "modelled": True,
                        "text": "mlx.optimizers.SGD dampens the first step too (v_1 = (1-d)*g; torch: buf_1 = g): "
                                "the run is SGD at lr*(1-d) without dampening",
                        "source": "mlx/optimizers/optimizers.py:283-287"})
        if float32_lr(config, task):
            out.append({"id": "learning-rate-float32", "modelled": True,
                        "text": "a Python-float learning_rate is stored as mx.array(learning_rate), float32, and cast "
                                "to the parameters' dtype at each step: a float64 run steps with the float32-rounded lr",
                        "source": "mlx/optimizers/optimizers.py:153,281"})
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
        """A float32 run's bias corrections come from float32 betas (as in describe)."""
        semantics = super().inherent(semantics, task)
        opt = semantics.optimizer
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
