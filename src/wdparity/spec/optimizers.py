"""The neutral optimizer families: what each optimizer's update *is*, whatever a framework calls its knobs.

One model per family; a framework's variant of a family is a field (where epsilon sits, which moment the AMSGrad
max is taken of, the momentum schedule), never a family of its own, so that two frameworks' "Adamax" differ by a
labelled field (diagnose.py) rather than by name. The reference executes each (engine/reference.py CORES).
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from wdparity.spec.base import NonNeg, Positive, Strict, Unit, fail

Betas = Annotated[list[Unit], Field(min_length=2, max_length=2)]


def _betas(default: tuple[float, float]):
    return Field(default_factory=lambda: list(default), min_length=2, max_length=2)


class SgdSpec(Strict):
    """SGD. momentum_form "buffer" (torch, optax): buf = m*buf + (1-d)*g, step = -lr*buf;
    "velocity" (Keras, MXNet): v = m*v - lr*g, step = v (differs only when lr changes)."""

    name: Literal["sgd"]
    lr: Positive
    momentum: Unit = 0.0
    dampening: Unit = 0.0
    nesterov: bool = False
    momentum_form: Literal["buffer", "velocity"] = "buffer"

    @model_validator(mode="after")
    def _consistent(self):
        if self.nesterov and self.momentum == 0:
            raise fail("nesterov", self.nesterov, "needs momentum > 0")
        if self.nesterov and self.dampening != 0:
            raise fail("dampening", self.dampening, "must be 0 with nesterov (as in torch.optim.SGD)")
        if self.momentum_form == "velocity" and self.dampening != 0:
            raise fail("dampening", self.dampening, "must be 0 with momentum_form = \"velocity\"")
        return self


class AdamSpec(Strict):
    """Adam. eps_placement "corrected": m_hat / (sqrt(v_hat) + eps) (torch, optax);
    "uncorrected": lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps) (Keras, MXNet, TF)."""

    name: Literal["adam"]
    lr: Positive
    betas: list[Unit] = _betas((0.9, 0.999))
    eps: Positive = 1e-8
    eps_placement: Literal["corrected", "uncorrected"] = "corrected"
    # Keras computes the bias corrections 1 - beta^t from float32-rounded betas, in the run's arithmetic
    # (keras/src/optimizers/adam.py): "float32" says so; None is exact float64 corrections.
    bias_correction_dtype: Optional[Literal["float32"]] = None
    # AMSGrad: v is replaced by its running maximum, of the uncorrected v ("v": torch, Keras; with the corrected
    # placement that is sqrt(max v)/sqrt(1-b2^t)) or of the corrected v_hat ("v_hat": optax.amsgrad).
    amsgrad: Optional[Literal["v", "v_hat"]] = None
    # False: no bias correction at all, d = m/(sqrt(v) + eps) (MLX's Adam and AdamW default, mlx/optimizers)
    bias_correction: bool = True

    @model_validator(mode="after")
    def _amsgrad(self):
        if not self.bias_correction and (self.amsgrad == "v_hat" or self.eps_placement != "corrected"):
            raise fail("bias_correction", self.bias_correction, "false needs eps_placement = \"corrected\" and amsgrad "
                       "None or \"v\" (without corrections the placements coincide; write the one spelling)")
        if self.amsgrad == "v_hat" and self.eps_placement == "uncorrected":
            raise fail("amsgrad", self.amsgrad, "\"v_hat\" needs eps_placement = \"corrected\" (the max of the "
                       "corrected v is only defined where v is corrected)")
        return self


class RmspropSpec(Strict):
    """RMSprop. v = rho*v + (1-rho)*g^2 (v_0 = initial_scale); centered: a = rho*a + (1-rho)*g (a_0 = 0), v - a^2
    in the root; bias_correction: v and a divided by 1 - rho^t first; d = g / (sqrt(v) + eps), or g / sqrt(v + eps)
    with eps_in_sqrt. momentum m > 0, momentum_form "buffer" (torch): buf = m*buf + d, step = -lr_t*buf;
    "velocity" (Keras, optax, MXNet): buf = m*buf + lr_t*d, step = -buf (the two differ only when lr changes).
    Without momentum, step = -lr_t*d. (torch.optim.RMSprop: rho = alpha, eps outside the root.)"""

    name: Literal["rmsprop"]
    lr: Positive
    rho: Unit = 0.99
    eps: Positive = 1e-8
    eps_in_sqrt: bool = False
    centered: bool = False
    momentum: Unit = 0.0
    momentum_form: Literal["buffer", "velocity"] = "buffer"
    initial_scale: NonNeg = 0.0
    bias_correction: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        if self.momentum_form == "velocity" and self.momentum == 0:
            raise fail("momentum_form", self.momentum_form, "needs momentum > 0 (without momentum there is no buffer)")
        return self


class AdagradSpec(Strict):
    """Adagrad. s = s + g^2 (s_0 = initial_accumulator); d = g / (sqrt(s) + eps), or g / sqrt(s + eps) with
    eps_in_sqrt; step = -lr_t / (1 + t*lr_decay) * d at step t = 0, 1, ... (torch's lr_decay: a learning-rate
    schedule on top of the run's, not a decay of the weights)."""

    name: Literal["adagrad"]
    lr: Positive
    initial_accumulator: NonNeg = 0.0
    eps: Positive = 1e-10
    eps_in_sqrt: bool = False
    lr_decay: NonNeg = 0.0


class AdadeltaSpec(Strict):
    """Adadelta. v = rho*v + (1-rho)*g^2; d = sqrt(x + eps) / sqrt(v + eps) * g; x = rho*x + (1-rho)*d^2
    (v_0 = x_0 = 0); step = -lr_t*d."""

    name: Literal["adadelta"]
    lr: Positive
    rho: Unit = 0.9
    eps: Positive = 1e-6


class AdamaxSpec(Strict):
    """Adamax. m = b1*m + (1-b1)*g; eps_placement "in_max" (torch, optax): u = max(b2*u, |g| + eps), d = m_hat/u;
    "outside" (Keras): u = max(b2*u, |g|), d = m_hat/(u + eps); m_hat = m/(1-b1^t); step = -lr_t*d."""

    name: Literal["adamax"]
    lr: Positive
    betas: list[Unit] = _betas((0.9, 0.999))
    eps: Positive = 1e-8
    # "in_max_decayed" (Paddle): u = max(b2*u + eps, |g|), d = m_hat/u (paddle/phi/kernels/impl/adamax_kernel_impl.h)
    eps_placement: Literal["in_max", "outside", "in_max_decayed"] = "in_max"
    # False: m is not bias-corrected, d = m/u (MLX's Adamax, mlx/optimizers/optimizers.py)
    bias_correction: bool = True


class NadamSpec(Strict):
    """NAdam. mu_t = b1*(1 - 0.5*0.96^(t*momentum_decay)) at step t = 1, 2, ...; P_t = mu_1*...*mu_t;
    d = ((1-mu_t)/(1-P_t)*g + mu_{t+1}/(1-P_t*mu_{t+1})*m) / (sqrt(v/(1-b2^t)) + eps), m and v Adam's moments;
    step = -lr_t*d. momentum_decay 0.004 is torch's (and MXNet's schedule_decay), 1 is Keras 3's (0.96^t);
    None is mu_t = b1 throughout (optax.nadam: b1*m/(1-b1^(t+1)) + (1-b1)*g/(1-b1^t))."""

    name: Literal["nadam"]
    lr: Positive
    betas: list[Unit] = _betas((0.9, 0.999))
    eps: Positive = 1e-8
    momentum_decay: Optional[Positive] = 0.004


class RadamSpec(Strict):
    """RAdam. Adam's moments; rho_inf = 2/(1-b2) - 1, rho_t = rho_inf - 2t*b2^t/(1-b2^t); while rho_t > threshold
    (threshold_inclusive: >=) d = r_t * m_hat / (sqrt(v_hat) + eps) ("corrected": optax) or r_t * m_hat *
    sqrt(1-b2^t) / (sqrt(v) + eps) ("uncorrected": torch), r_t = sqrt((rho_t-4)(rho_t-2)rho_inf /
    ((rho_inf-4)(rho_inf-2)rho_t)); otherwise d = m_hat (SGD with bias-corrected momentum); step = -lr_t*d."""

    name: Literal["radam"]
    lr: Positive
    betas: list[Unit] = _betas((0.9, 0.999))
    eps: Positive = 1e-8
    eps_placement: Literal["corrected", "uncorrected"] = "uncorrected"
    threshold: Positive = 5.0
    threshold_inclusive: bool = False


class LionSpec(Strict):
    """Lion. d = sign(b1*m + (1-b1)*g), then m = b2*m + (1-b2)*g (m_0 = 0, sign(0) = 0); step = -lr_t*d."""

    name: Literal["lion"]
    lr: Positive
    betas: list[Unit] = _betas((0.9, 0.99))


class LambSpec(Strict):
    """LAMB. Adam's direction d = m_hat/(sqrt(v_hat) + eps); per tensor the trust ratio r = ||w|| / ||u|| (1 where
    either norm is 0) scales the step, -lr_t * r * u. Where the decoupled decay stands (it must be scale "lr"):
    "inside_trust_ratio" (optax.lamb): u = d + lambda*w, the decay inside the ratio and scaled by it;
    "before" (Keras Lamb: the base optimizer decays w first): w' = w - lr_t*lambda*w, then u = d and
    r = ||w'|| / ||d||; "after": u = d, r from the undecayed w, the decay outside the ratio."""

    name: Literal["lamb"]
    lr: Positive
    betas: list[Unit] = _betas((0.9, 0.999))
    eps: Positive = 1e-6
    decay_placement: Literal["inside_trust_ratio", "before", "after"] = "inside_trust_ratio"
    # r = min(r, max_trust_ratio): fastai's lamb_step caps the ratio at 10 (fastai/optimizer.py); None: no cap
    max_trust_ratio: Optional[Positive] = None


class AdafactorSpec(Strict):
    """Adafactor (Shazeer & Stern 2018), per tensor and unfactored: the task's tensors are a weight vector (a
    (d, 1) kernel or (1, d) matrix in the frameworks) and a bias, whose factored second moment is the unfactored
    one. At step k = t + 1: b2_k = 1 - k^(-decay_rate); v = b2_k*v + (1-b2_k)*(g^2 + eps); u = g/sqrt(v);
    clip_threshold c: u / max(1, rms(u)/c); step size rho = min(lr_t, 1/sqrt(k)) with relative_step, else lr_t;
    parameter_scale e: times max(e, rms(w)), w the weights before the step ("after": the decoupled decay comes
    after) or after the decoupled decay (decay_placement "before": Keras decays w first); momentum b1: m =
    b1*m + (1-b1)*(that step), no bias correction (optax's ema, MLX's beta_1); the step is -(m or that).
    decay_rate_dtype "float32": k^(-decay_rate) computed in float32 (optax, MLX)."""

    name: Literal["adafactor"]
    lr: Positive
    decay_rate: Positive = 0.8
    eps: Positive = 1e-30
    clip_threshold: Optional[Positive] = 1.0
    relative_step: bool = False
    parameter_scale: Optional[Positive] = 1e-3
    momentum: Optional[Unit] = None
    decay_placement: Literal["before", "after"] = "after"
    decay_rate_dtype: Optional[Literal["float32"]] = None


OPTIMIZER_SPECS = {"sgd": SgdSpec, "adam": AdamSpec, "rmsprop": RmspropSpec, "adagrad": AdagradSpec,
                   "adadelta": AdadeltaSpec, "adamax": AdamaxSpec, "nadam": NadamSpec, "radam": RadamSpec,
                   "lion": LionSpec, "lamb": LambSpec, "adafactor": AdafactorSpec}
OptimizerSpec = Annotated[Union[SgdSpec, AdamSpec, RmspropSpec, AdagradSpec, AdadeltaSpec, AdamaxSpec, NadamSpec,
                                RadamSpec, LionSpec, LambSpec, AdafactorSpec], Field(discriminator="name")]
