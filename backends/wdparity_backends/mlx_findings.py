"""The findings of one mlx.optimizers class and its keywords (each of a MultiOptimizer's in turn), each modelled
by describe(); sources are mlx/optimizers/optimizers.py at MLX 0.32.4 (docs/adapters/mlx.md)."""

from __future__ import annotations


def class_findings(sub) -> list[dict]:
    out = []
    name = sub.optimizer
    if name in ("Adam", "AdamW") and not sub.get("bias_correction"):
        out.append({"id": "adam-no-bias-correction", "modelled": True,
                    "text": f"mlx.optimizers.{name} does not bias-correct its moments by default "
                            "(bias_correction=False): w -= lr*m/(sqrt(v) + eps), a first step (1-b1)/sqrt(1-b2) "
                            "= 3.16x torch's at the default betas",
                    "source": "mlx/optimizers/optimizers.py:503,548-549"})
    if name == "AdamW" and sub.weight_decay is None:
        out.append({"id": "adamw-default-weight-decay", "modelled": True,
                    "text": "mlx.optimizers.AdamW's default weight_decay is 0.01 (torch's too), decoupled: "
                            "w *= 1 - lr_t*weight_decay before the Adam step",
                    "source": "mlx/optimizers/optimizers.py:584,600-603"})
    if name == "Adamax":
        out.append({"id": "adamax-no-bias-correction", "modelled": True,
                    "text": "mlx.optimizers.Adamax does not bias-correct m, and adds eps outside the max: "
                            "lr*m/(max(b2*u, |g|) + eps)", "source": "mlx/optimizers/optimizers.py:654-659"})
    if name == "Adagrad" and sub.eps is None:
        out.append({"id": "adagrad-eps", "modelled": True,
                    "text": "mlx.optimizers.Adagrad's default eps is 1e-8 (torch's: 1e-10), outside the root",
                    "source": "mlx/optimizers/optimizers.py:379,404"})
    if name == "SGD" and sub.get("dampening") and sub.get("momentum"):
        out.append({"id": "sgd-dampening-first-step", "modelled": True,
                    "text": "mlx.optimizers.SGD dampens the first step too (v_1 = (1-d)*g; torch: buf_1 = g): "
                            "the run is SGD at lr*(1-d) without dampening",
                    "source": "mlx/optimizers/optimizers.py:283-287"})
    if name == "Adafactor" and sub.get("relative_step"):
        out.append({"id": "adafactor-relative-step", "modelled": True,
                    "text": "mlx.optimizers.Adafactor defaults to relative_step=True: its step size is min(1e-2, "
                            "1/sqrt(step)) (float32) times max(eps[1], rms(w)), and learning_rate, given or not, "
                            "is ignored", "source": "mlx/optimizers/optimizers.py:802-806"})
    if name == "Adafactor":
        out.append({"id": "adafactor-factored-row", "modelled": True,
                    "text": "mlx.optimizers.Adafactor factors the (1, d) Linear weight (ndim >= 2); its row factor "
                            "v_row/mean(v_row) is exactly 1 for one row, so the estimate is the unfactored one",
                    "source": "mlx/optimizers/optimizers.py:787-791,832-846"})
    return out
