"""What an `mlx` run means in neutral terms (MLX 0.32.4, mlx/optimizers/optimizers.py), and its precision.

The learning rate is stored as mx.array(learning_rate): float32 for a Python float, and cast to the gradient's
dtype at each step (`self.learning_rate.astype(gradient.dtype)`); every other hyperparameter is a Python float,
weakly typed into the parameters' dtype. So a float64 run of Python floats steps with the float32-rounded lr,
stated exactly here; its schedules (evaluated in float32) and Adam's bias corrections (b**step, float32) have
no neutral statement and are refused unless hyperparameters_as_arrays hands them over as float64 arrays.
A float64 cosine schedule is refused either way: MLX's float64 mx.cos is float32-accurate; so is a float64
network with LayerNorm (mx.fast.layer_norm) or the erf GELU (mx.erf), both float32-accurate on CPU.
"""

from __future__ import annotations

import numpy as np

from wdparity.spec.errors import InputError
from wdparity.spec.models import (
    AdadeltaSpec,
    AdagradSpec,
    AdamaxSpec,
    AdamSpec,
    Clip,
    DecayRule,
    LionSpec,
    RmspropSpec,
    Semantics,
    SgdSpec,
    Task,
)
from wdparity.spec.rules import rules_from_coefficients

from . import mlx_adafactor as adafactor
from .mlx_vocab import MULTI, MlxOptimizer, MlxRun

MLX_L1_AT_ZERO = 0.0    # mx.grad of mx.abs at 0 is 0 (measured in tests/test_mlx_facts.py)
CLIP_EPS = 1e-6         # clip_grad_norm: max_norm / (total_norm + 1e-6) (mlx/optimizers/optimizers.py:1007)


def float32_lr(config: MlxRun, task: Task) -> bool:
    """The lr MLX steps with is the float32 rounding of learning_rate (a Python float in a float64 run); under
    Adafactor's relative_step, min(1e-2, rsqrt(step)) is float32 in any case (mlx_adafactor.py)."""
    return task.dtype == "float64" and not config.hyperparameters_as_arrays


FLOAT64_NETWORK = {   # what MLX's CPU computes to float32 accuracy in a float64 network (tests/test_mlx_network.py)
    ("norm", "layer"): "nn.LayerNorm calls mx.fast.layer_norm (mlx/nn/layers/normalization.py:130), which in "
                       "float64 on CPU is accurate to float32 only (1.7e-7 relative forward, 6.6e-8 in its gradient)",
    ("activation", "gelu"): "nn.GELU(approx=\"none\") is x*(1 + mx.erf(x/sqrt(2)))/2 (mlx/nn/layers/"
                            "activations.py:169), and float64 mx.erf on CPU is accurate to float32 only (2.6e-7 "
                            "absolute in GELU over [-6, 6])",
}


def check_network(config: MlxRun, task: Task) -> None:
    """A validation error for a float64 network that MLX computes in float32 in part."""
    if task.dtype != "float64" or task.model.linear:
        return
    for (key, value), why in FLOAT64_NETWORK.items():
        if getattr(task.model, key) == value:
            raise InputError("", f"model.{key}", f"must not be {value!r} for a float64 mlx run: {why}, which no "
                             "neutral float64 run states; nearest: the same run in float32"
                             + ("" if key == "norm" else ", or activation = \"gelu_tanh\" (nn.GELU(approx="
                                "\"precise\"), float64-exact)"), value)


def check_precision(config: MlxRun, task: Task) -> None:
    """A validation error for what a float64 run of Python floats computes in float32 beyond the lr."""
    check_network(config, task)
    if task.dtype == "float64" and task.schedule.kind == "cosine":
        raise InputError("", "schedule.kind", "must not be \"cosine\" for a float64 mlx run: cosine_decay takes "
                         "mx.cos (mlx/optimizers/schedulers.py:89), and MLX's float64 mx.cos on CPU is accurate to "
                         "float32 only (1.6e-4 relative near its zeros, measured in tests/test_mlx_facts.py), which "
                         "the neutral cosine schedule does not state; nearest: the same run in float32",
                         task.schedule.kind)
    for i, (sub, _) in enumerate(config.groups()):
        if sub.optimizer == "Adafactor":
            adafactor.check(sub, task, bool(config.hyperparameters_as_arrays), where(config, i))
    if not float32_lr(config, task):
        return
    if task.schedule.kind != "constant":
        raise InputError("", "hyperparameters_as_arrays", "must be true for a float64 run under a "
                         f"{task.schedule.kind!r} schedule: mlx.optimizers' step_decay/cosine_decay of Python floats "
                         "return float32 arrays (decay_rate ** step and (pi/decay_steps)*step are float32, "
                         "mlx/optimizers/schedulers.py:58,89), which the neutral schedule does not state",
                         config.hyperparameters_as_arrays)
    if any(sub.optimizer in ("Adam", "AdamW") and sub.get("bias_correction") for sub, _ in config.groups()):
        raise InputError("", "hyperparameters_as_arrays", "must be true for a float64 Adam(bias_correction=True): "
                         "with Python betas, b1**step and b2**step are float32 (step is a uint64 array) and so are "
                         "both corrections (mlx/optimizers/optimizers.py:543-544)", config.hyperparameters_as_arrays)


def where(config: MlxRun, i: int) -> str:
    return f"optimizers[{i}]." if config.optimizer == MULTI else ""


def optimizer_spec(sub: MlxOptimizer, config: MlxRun, task: Task):
    """The neutral optimizer: the class's family, unset keywords at the constructor's defaults."""
    name, get = sub.optimizer, sub.get
    lr = float(np.float32(sub.learning_rate)) if float32_lr(config, task) and sub.learning_rate else sub.learning_rate
    if name == "Adafactor":
        return adafactor.spec(sub, task, lr)
    if name == "SGD":
        momentum, dampening = get("momentum"), get("dampening")
        if momentum > 0 and dampening > 0:
            # v_1 = (1-d)*g and v = m*v + (1-d)*g (optimizers.py:283-287): (1-d) times the undampened buffer, so
            # the same run as lr*(1-d) without dampening (torch's buf_1 = g is another run)
            lr = lr * (1.0 - dampening)
        return SgdSpec(name="sgd", lr=lr, momentum=momentum, nesterov=bool(get("nesterov")))
    if name == "RMSprop":
        return RmspropSpec(name="rmsprop", lr=lr, rho=get("alpha"), eps=get("eps"))
    if name == "Adagrad":
        return AdagradSpec(name="adagrad", lr=lr, initial_accumulator=0.0, eps=get("eps"))
    if name == "AdaDelta":
        return AdadeltaSpec(name="adadelta", lr=lr, rho=get("rho"), eps=get("eps"))
    betas = list(get("betas"))
    if name == "Adamax":   # m never bias-corrected, eps added to the max (optimizers.py:654-659)
        return AdamaxSpec(name="adamax", lr=lr, betas=betas, eps=get("eps"), eps_placement="outside",
                          bias_correction=False)
    if name == "Lion":
        return LionSpec(name="lion", lr=lr, betas=betas)
    corrected = bool(get("bias_correction"))
    return AdamSpec(name="adam", lr=lr, betas=betas, eps=get("eps"), eps_placement="corrected",
                    bias_correction=corrected, bias_correction_dtype=bias_correction_dtype(corrected, task))


def bias_correction_dtype(corrected: bool, task: Task):
    """A float32 run's corrections 1 - b**step come from float32 betas (float32 arithmetic throughout)."""
    return "float32" if corrected and task.dtype == "float32" else None


def one_optimizer(config: MlxRun, task: Task):
    """The neutral optimizer of every group: MultiOptimizer's must all be one (the neutral model has one
    optimizer per run, decay rules per tensor), else a validation error naming where they differ."""
    specs = [optimizer_spec(sub, config, task) for sub, _ in config.groups()]
    first = specs[0].model_dump()
    for i, other in enumerate(specs[1:], 1):
        theirs = other.model_dump()
        if theirs != first:
            diff = {k: (first.get(k), theirs.get(k)) for k in first.keys() | theirs.keys() if first.get(k) != theirs.get(k)}
            raise InputError("", f"optimizers[{i}]", "must be the same neutral optimizer as optimizers[0] up to its "
                             "weight_decay: the neutral model has one optimizer per run, with per-tensor decay rules "
                             f"(they differ in {diff}); nearest: the same class and keywords in every sub-optimizer",
                             config.optimizers[i].optimizer)
    return specs[0]


def describe(config: MlxRun, task: Task) -> Semantics:
    """SGD: weight_decay*w added to the gradient first (coupled), through momentum and dampening. AdamW: w*(1 -
    lr_t*weight_decay) before the Adam step (decoupled, scale lr). Lion: the same when weight_decay > 0. The
    others have no weight_decay (Adafactor's is refused). MultiOptimizer: each tensor's weight_decay is its
    sub-optimizer's. A penalty is a loss term (coupled, via the loss). clip_grad_norm clips the loss's gradient
    (the penalty's included) before SGD adds its weight_decay inside update()."""
    check_precision(config, task)
    optimizer = one_optimizer(config, task)
    coupled: dict[str, float] = {}
    decoupled: dict[str, float] = {}
    for sub, names in config.groups():
        if sub.optimizer in ("SGD", "AdamW", "Lion"):
            per = coupled if sub.optimizer == "SGD" else decoupled
            per.update({name: sub.get("weight_decay") for name in names})
    rules: list[DecayRule] = rules_from_coefficients(coupled, coupling="gradient")
    if config.penalty:
        rules += config.penalty.rules(l1_at_zero=MLX_L1_AT_ZERO)
    rules += rules_from_coefficients(decoupled, coupling="decoupled", scale="lr")
    clip = (Clip(kind="global_norm", threshold=config.clip_grad_norm, eps=CLIP_EPS, position="loss_gradient")
            if config.clip_grad_norm is not None else None)
    return Semantics(optimizer=optimizer, decay=rules, loss=task.loss, schedule=task.schedule, clip=clip)
