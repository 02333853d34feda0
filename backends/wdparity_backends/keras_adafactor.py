"""Adafactor in the two Keras adapters: what keras.optimizers.Adafactor (Keras 3.15) and tf_keras.optimizers.Adafactor
(2.21) compute, as the neutral AdafactorSpec (describe_adafactor), and their keywords for one (realize_adafactor).

Both update_step bodies are the same algorithm (keras/src/optimizers/adafactor.py:143-214, tf_keras/src/optimizers/
adafactor.py:155-209): b2_k = 1 - k^beta_2_decay; v from g^2 + epsilon_1 (factored into row and column averages for
a kernel, which for the task's (d, 1) kernel is the unfactored v: c = mean(r)); u = g/sqrt(v) clipped by
max(1, rms(u)/clip_threshold); the step max(epsilon_2, rms(w)) * min(lr_t, 1/sqrt(k)). `relative_step` only sets
lr = min(lr, 1/sqrt(k)) (constant lr) before the same unconditional min (adafactor.py:151-158; tf_keras :162-177), so
it changes nothing: the neutral relative_step is always true. weight_decay is applied by the base optimizer before
update_step (keras/src/optimizers/base_optimizer.py:586-594, tf_keras/src/optimizers/optimizer.py:727-730), so rms(w)
is that of the decayed w: decay_placement "before", the decay scaled by the nominal lr_t (not rho_t). Keras has no
momentum and computes b2_k in the variables' dtype. Sources and tests: docs/adapters/keras.md, tf_keras.md.
"""

from __future__ import annotations

from typing import Callable

from wdparity.run.backend import Inexpressible
from wdparity.spec.models import AdafactorSpec, Task, fail

# The installed signatures (keras/src/optimizers/adafactor.py:44-63, tf_keras/src/optimizers/adafactor.py:68-86)
KEYWORDS = {"beta_2_decay": -0.8, "epsilon_1": 1e-30, "epsilon_2": 1e-3, "clip_threshold": 1.0, "relative_step": True}
SOURCE = {"keras": "keras/src/optimizers/adafactor.py", "tf_keras": "tf_keras/src/optimizers/adafactor.py"}
LINES = {"keras": {"step": "151-158", "decay": "keras/src/optimizers/base_optimizer.py:586-594"},
         "tf_keras": {"step": "162-177", "decay": "tf_keras/src/optimizers/optimizer.py:727-730"}}


def check_beta_2_decay(value) -> None:
    """beta_2_decay must be < 0: the neutral decay rate is -beta_2_decay > 0."""
    if value is not None and value >= 0:
        raise fail("beta_2_decay", value, "must be < 0: Adafactor's beta_2_t = 1 - k^beta_2_decay is then 1 - 1 = 0 or "
                   "negative from step 1 on (no average at all), which no neutral decay_rate (> 0) states")


def describe_adafactor(get: Callable[[str], object], task: Task, decayed: bool, eps2: Callable = float) -> AdafactorSpec:
    """The neutral Adafactor of a run whose keyword getter is `get`. eps2: what the framework leaves of epsilon_2
    (ops.cast / tf.cast of a Python float: float32-rounded on TensorFlow in float64; beta_2_decay and epsilon_1 enter
    as Python floats converted to the variables' dtype, exact). decayed: a weight_decay is set
    (then the parameter scale reads the decayed w, decay_placement "before"; without one the two placements are
    the same computation, stated as the neutral default "after")."""
    return AdafactorSpec(name="adafactor", lr=get("learning_rate"), decay_rate=-get("beta_2_decay"),
                         eps=get("epsilon_1"), clip_threshold=get("clip_threshold"), relative_step=True,
                         parameter_scale=eps2(get("epsilon_2")), momentum=None,
                         decay_placement="before" if decayed else "after",
                         decay_rate_dtype="float32" if task.dtype == "float32" else None)


def realize_adafactor(opt: AdafactorSpec, task: Task, decayed: bool, fw: str) -> dict:
    """The Adafactor keywords of `opt` (learning_rate included), or Inexpressible with the nearest setting."""
    src, lines = SOURCE[fw], LINES[fw]
    if not opt.relative_step:
        raise Inexpressible(f"{fw}'s Adafactor always takes rho_t = min(lr_t, 1/sqrt(k)): relative_step=False only "
                            f"skips a first, identical min ({src}:{lines['step']}); nearest: relative_step = true "
                            "(identical while lr_t <= 1/sqrt(k))")
    if opt.parameter_scale is None:
        raise Inexpressible(f"{fw}'s Adafactor always scales the step by max(epsilon_2, rms(w)) ({src}); nearest: "
                            "epsilon_2 = 1e-3, its default (the step is lr_t*max(1e-3, rms(w)) times the one asked)")
    if opt.clip_threshold is None:
        raise Inexpressible(f"{fw}'s Adafactor always clips u by max(1, rms(u)/clip_threshold) ({src}); nearest: "
                            "clip_threshold = 1.0, its default (identical while rms(u) <= 1)")
    if opt.momentum is not None:
        raise Inexpressible(f"{fw}'s Adafactor has no momentum (no first moment in {src}); nearest: momentum = None "
                            f"instead of {opt.momentum}")
    if opt.decay_rate_dtype == "float32" and task.dtype == "float64":
        raise Inexpressible(f"{fw}'s Adafactor computes k^beta_2_decay in the variables' dtype, float64 here ({src}); "
                            "nearest: decay_rate_dtype = None (exact power)")
    if opt.decay_rate_dtype is None and task.dtype == "float32":
        raise Inexpressible(f"{fw}'s Adafactor computes k^beta_2_decay in float32 in a float32 run ({src}); nearest: "
                            "decay_rate_dtype = \"float32\"")
    if decayed and opt.decay_placement != "before":
        raise Inexpressible(f"{fw}'s weight_decay decays w before update_step, whose max(epsilon_2, rms(w)) then reads "
                            f"the decayed w ({lines['decay']}); nearest: decay_placement = \"before\"")
    if not decayed and opt.decay_placement != "after":
        raise Inexpressible("without a decoupled decay the two placements are one computation, described as the "
                            "neutral default; nearest: decay_placement = \"after\"")
    return {"optimizer": "Adafactor", "learning_rate": opt.lr, "beta_2_decay": -opt.decay_rate, "epsilon_1": opt.eps,
            "epsilon_2": opt.parameter_scale, "clip_threshold": opt.clip_threshold}
