"""The `optax` backend: optax aliases and arbitrary `chain`s of gradient transformations, given as data.

optax is where "coupled vs decoupled" is literally an ordering: `add_decayed_weights` adds
`weight_decay * params` to whatever the updates are at its position in the chain. Before the
optimizer core (`scale_by_adam`, `trace`) it edits the gradient (an L2 penalty); after it, it edits
the step (AdamW), scaled by whatever scaling transforms still follow it. describe() reads that order
and the product of the downstream scalings; realize() writes the chain (or an alias where exact).

Everything is checked against the installed optax 0.2.8 (paths under site-packages/optax/):
- `sgd` = chain(trace(momentum) | identity, scale_by_learning_rate): _src/alias.py:2125-2137.
  `nesterov` is silently ignored when `momentum` is None (alias.py:2132): rejected here.
- `trace`: trace = g + decay*trace, zeros at init, so the first step is g exactly as torch's buffer;
  nesterov returns g + decay*trace (transforms/_accumulation.py:63,68,75). No dampening.
- `scale_by_adam`: corrected epsilon, m_hat / (sqrt(v_hat + eps_root) + eps) (_src/transform.py:294-300);
  eps_root != 0 and nesterov (NAdam, transform.py:286-293) are outside the neutral model: rejected.
  Its bias correction 1 - decay**count (tree_utils/_tree_math.py:449: a Python-float decay, an int32
  count) is computed in JAX's default float: float32 from float32 betas in a float32 run (no x64, as a
  float32 JAX program runs), float64 in a float64 run; describe() states it (bias_correction_dtype).
- `adamw` = chain(scale_by_adam, add_decayed_weights(weight_decay, mask), scale_by_learning_rate)
  (alias.py:716-727); default weight_decay = 1e-4 (alias.py:605), torch's AdamW default is 1e-2.
- `add_decayed_weights`: updates + weight_decay * params (transforms/_adding.py:73); a constant 0
  is skipped (:68); a mask wraps it in `masked` (:83, transforms/_masking.py:92).
- `scale_by_learning_rate(lr)` = scale(-lr), or scale_by_schedule(-lr(count)) for a schedule
  (transform.py:1004-1005); scale_by_schedule casts the value to the update dtype (:1029).
- Penalties go through jax.grad: d|w|/dw at w = 0 is +1 in JAX (`select(x >= 0, g, -g)`,
  jax/_src/lax/lax.py:4715; https://github.com/jax-ml/jax/issues/37820), not torch's sign(0) = 0.
- Params are shaped as a Flax nn.Dense(1) (and a Keras Dense(1)) user has them: {"weight": kernel
  (d, 1), "bias": (1,)}, loss r = X @ W + b - y with y as an (n, 1) column (recorded flat: (d,), scalar).
- Masks name tensors and must match one; optax itself accepts any boolean tree. The shape idiom
  `mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)` (optax#25,
  https://github.com/salesforce/jaxformer/issues/28) selects the (d, 1) kernel and not the (1,) bias:
  the same as mask = ["weight"] (measured, tests/test_optax_backend.py; on a (d,) vector it would
  select nothing, silently).
- x64: JAX reads jax_enable_x64 once per process, so worker_env() starts float32 and float64 runs in
  separate workers with JAX_ENABLE_X64 fixed at start-up ("0" / "1"); train() never flips the flag and
  refuses a job whose dtype disagrees with it (require_x64).
- Schedules: exponential_decay(staircase) / cosine_decay_schedule(alpha=floor). With a Python-float
  decay_rate the staircase value is float32 even under x64 (int32 count / int -> float32,
  jax/_src/dtypes.py:318; schedules/_schedule.py:315-319), so decay_rate is passed typed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import Discriminator, Tag, model_validator

from wdparity.backend import Backend, Inexpressible
from wdparity.data import batches, loss_factor
from wdparity.recording import Recorder
from wdparity.errors import InputError
from wdparity.spec import (TENSORS, AdamSpec, DecayRule, Finite, NonNeg, Penalty, Positive, Semantics, SgdSpec,
                           Strict, Task, Unit, check_tensors, fail)

JAX_L1_AT_ZERO = 1.0   # jax.grad(jnp.abs)(0.0) == 1.0 (lax.py:4715); tests/test_optax_backend.py measures it
X64_VAR = "JAX_ENABLE_X64"   # read by JAX once, at import, into jax_enable_x64
SCALINGS = ("scale", "scale_by_learning_rate", "scale_by_schedule")
CARRIERS = ("scale_by_learning_rate", "scale_by_schedule")   # the transforms that carry the run's schedule


# ---------------------------------------------------------------- the run's vocabulary
class AddDecayedWeights(Strict):
    transform: Literal["add_decayed_weights"]
    weight_decay: Finite = 0.0
    mask: Optional[list[str]] = None

    @model_validator(mode="after")
    def _mask(self):
        if self.mask is not None:
            check_tensors("mask", self.mask)
        return self


class ScaleByAdam(Strict):
    transform: Literal["scale_by_adam"]
    b1: Unit = 0.9
    b2: Unit = 0.999
    eps: Positive = 1e-8
    eps_root: NonNeg = 0.0
    nesterov: bool = False

    @model_validator(mode="after")
    def _neutral(self):
        _check_adam(self.eps_root, self.nesterov)
        return self


class Trace(Strict):
    transform: Literal["trace"]
    decay: Unit
    nesterov: bool = False


class ScaleByLearningRate(Strict):
    transform: Literal["scale_by_learning_rate"]
    learning_rate: Positive
    flip_sign: bool = True


class Scale(Strict):
    transform: Literal["scale"]
    step_size: Finite


class ScaleBySchedule(Strict):
    """scale_by_schedule(step_size_fn): the fn is the run's schedule built with this `init_value`."""

    transform: Literal["scale_by_schedule"]
    init_value: Finite


_KINDS = {m.model_fields["transform"].annotation.__args__[0]: m
          for m in (AddDecayedWeights, ScaleByAdam, Trace, ScaleByLearningRate, Scale, ScaleBySchedule)}
# Tags are not identifiers, so error keys read "chain[2].weight_decay", not "chain[2].scale.weight_decay".
ChainItem = Annotated[Union[tuple(Annotated[m, Tag(f"<{k}>")] for k, m in _KINDS.items())], Discriminator(
    lambda v: f"<{v.get('transform') if isinstance(v, dict) else getattr(v, 'transform', None)}>")]


def _check_adam(eps_root: Optional[float], nesterov: Optional[bool]) -> None:
    if eps_root:
        raise fail("eps_root", eps_root, "must be 0.0: sqrt(v_hat + eps_root) (optax/_src/transform.py:300) "
                   "is neither epsilon placement of the neutral model")
    if nesterov:
        raise fail("nesterov", nesterov, "must be false for Adam: NAdam (optax/_src/transform.py:286) is "
                   "outside the neutral model")


ALIAS_KEYS = {"sgd": ("momentum", "nesterov"), "adam": ("b1", "b2", "eps", "eps_root", "nesterov"),
              "adamw": ("b1", "b2", "eps", "eps_root", "nesterov", "weight_decay", "mask")}


class OptaxRun(Strict):
    optimizer: Optional[Literal["sgd", "adam", "adamw"]] = None
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    nesterov: Optional[bool] = None
    b1: Optional[Unit] = None
    b2: Optional[Unit] = None
    eps: Optional[Positive] = None
    eps_root: Optional[NonNeg] = None
    weight_decay: Optional[NonNeg] = None
    mask: Optional[list[str]] = None
    chain: Optional[list[ChainItem]] = None
    penalty: Optional[Penalty] = None

    @model_validator(mode="before")
    @classmethod
    def _transform_names(cls, data: Any) -> Any:
        chain = data.get("chain") if isinstance(data, dict) else None
        for i, item in enumerate(chain if isinstance(chain, list) else []):
            if not isinstance(item, dict):
                raise fail(f"chain[{i}]", item, "must be a table {transform = \"...\", <optax keywords>}")
            if item.get("transform") not in _KINDS:
                raise fail(f"chain[{i}].transform", item.get("transform"), f"must be one of {list(_KINDS)}")
        return data

    @model_validator(mode="after")
    def _consistent(self):
        alias_keys = sorted({k for keys in ALIAS_KEYS.values() for k in keys} | {"learning_rate"})
        if self.chain is not None:
            if self.optimizer is not None:
                raise fail("chain", "[...]", "excludes `optimizer`: give either an optax alias or a chain")
            if not self.chain:
                raise fail("chain", [], "must hold at least one transform")
            for key in alias_keys:
                if getattr(self, key) is not None:
                    raise fail(key, getattr(self, key), "belongs to `optimizer = ...`; in a chain, set it on a "
                               "transform")
            return self
        if self.optimizer is None:
            raise fail("optimizer", None, "is required (\"sgd\", \"adam\", \"adamw\") unless a `chain` is given")
        if self.learning_rate is None:
            raise fail("learning_rate", None, f"is required by optax.{self.optimizer}")
        for key in alias_keys:
            if key != "learning_rate" and getattr(self, key) is not None and key not in ALIAS_KEYS[self.optimizer]:
                raise fail(key, getattr(self, key), f"is not a keyword of optax.{self.optimizer}")
        if self.mask is not None:
            check_tensors("mask", self.mask)
        if self.optimizer == "sgd" and self.nesterov and not self.momentum:
            raise fail("nesterov", True, "needs momentum > 0 (optax.sgd silently ignores nesterov without momentum, "
                       "optax/_src/alias.py:2132)")
        if self.optimizer != "sgd":
            _check_adam(self.eps_root, self.nesterov)
        return self


# ---------------------------------------------------------------- describe: reading a chain
def _factor(t) -> float:
    if t.transform == "scale":
        return t.step_size
    if t.transform == "scale_by_schedule":
        return t.init_value
    return -t.learning_rate if t.flip_sign else t.learning_rate


def _describe_chain(chain: list, schedule_kind: str) -> tuple[dict, list[DecayRule]]:
    """(optimizer dict, decay rules) of a chain. Scalings multiply the update by K_i (x eta_t for carriers)."""
    def bad(i, key, value, expected):
        return InputError("", f"chain[{i}].{key}" if i is not None else "chain", expected, value)

    cores = [i for i, t in enumerate(chain) if t.transform in ("scale_by_adam", "trace")]
    scalings = [i for i, t in enumerate(chain) if t.transform in SCALINGS]
    carriers = [i for i in scalings if chain[i].transform in CARRIERS]
    if len(cores) > 1:
        raise bad(cores[1], "transform", chain[cores[1]].transform, "must not follow another optimizer core "
                  "(one scale_by_adam or trace per chain)")
    if len(carriers) > 1:
        raise bad(carriers[1], "transform", chain[carriers[1]].transform, "would apply the run's schedule a second "
                  "time (eta_t^2 is outside the neutral model); use scale(step_size=...) for constants")
    if schedule_kind != "constant" and not carriers:
        raise bad(None, "", "[...]", "must carry the run's schedule in a scale_by_learning_rate or scale_by_schedule "
                  "transform (otherwise the schedule would be silently ignored)")
    K = float(np.prod([_factor(chain[i]) for i in scalings])) if scalings else 1.0
    if not K < 0:
        raise bad(None, "", "[...]", f"must scale the update by a negative total (learning rate); its scalings "
                  f"multiply to {K}, which {'ascends' if K > 0 else 'freezes'} the loss")
    core = chain[cores[0]] if cores else None
    c = cores[0] if cores else (scalings[0] if scalings else len(chain))
    if core is not None and core.transform == "scale_by_adam" and scalings and scalings[0] < c:
        raise bad(scalings[0], "transform", chain[scalings[0]].transform, "must come after scale_by_adam (a scale "
                  "before Adam's normalisation is not a learning rate)")
    velocity = core is not None and core.transform == "trace" and (carriers[0] < c if carriers else scalings[0] < c
                                                                    if scalings else False)
    rules = []
    for i, t in enumerate(chain):
        if t.transform != "add_decayed_weights" or t.weight_decay == 0.0:   # a constant 0 is skipped (_adding.py:68)
            continue
        params = list(t.mask) if t.mask else list(TENSORS)
        if i < c:
            if any(s < i for s in scalings):
                raise bad(i, "transform", t.transform, "must come before every scaling transform when it precedes "
                          "the optimizer core (a pre-scaled decay term is outside the neutral model)")
            if t.weight_decay < 0:
                raise bad(i, "weight_decay", t.weight_decay, "must be >= 0 before the optimizer core (a negative L2 "
                          "term makes the weights grow)")
            rules.append(DecayRule(norm="l2", coupling="gradient", coefficient=t.weight_decay, params=params))
            continue
        after = [s for s in scalings if s > i]
        k_after = float(np.prod([_factor(chain[s]) for s in after])) if after else 1.0
        a = any(chain[s].transform in CARRIERS for s in after)
        if k_after == K and a == bool(carriers):        # every scaling follows: w <- w - lr_t*lambda*w
            scale, coef = "lr", t.weight_decay
        else:                                           # step += lambda * k_after * (eta_t if a) * w
            scale, coef = ("schedule" if a else "none"), -t.weight_decay * k_after
        if coef < 0:
            raise bad(i, "weight_decay", t.weight_decay, f"adds {-coef:g}*{'eta_t*' if a else ''}w to the step: the "
                      f"weights grow (downstream scalings multiply it by {k_after:g}; flip its sign to decay)")
        rules.append(DecayRule(norm="l2", coupling="decoupled", coefficient=coef, scale=scale, params=params))
    lr = -K
    if core is not None and core.transform == "scale_by_adam":
        opt = {"name": "adam", "lr": lr, "betas": [core.b1, core.b2], "eps": core.eps}
    elif core is not None and core.decay > 0:
        opt = {"name": "sgd", "lr": lr, "momentum": core.decay, "nesterov": core.nesterov,
               "momentum_form": "velocity" if velocity else "buffer"}
    else:   # trace(decay=0) adds nothing, nesterov included: plain SGD
        opt = {"name": "sgd", "lr": lr, "momentum_form": "velocity" if velocity else "buffer"}
    return opt, rules


def x64_env(dtype: str) -> dict[str, str]:
    """The worker environment fixing JAX's x64 flag for a run of `dtype` (float64 needs it, float32 runs
    without it, as a JAX user's float32 program does): the harness starts one worker per env."""
    return {X64_VAR: "1" if np.dtype(dtype) == np.float64 else "0"}


def require_x64(jax, dtype) -> None:
    """Raise unless this process's jax_enable_x64 is the one a `dtype` run is started with (x64_env): JAX
    expects the flag set once at start-up, so a worker started wrongly refuses the job rather than
    computing it in another precision (without x64 a float64 array is silently float32)."""
    want = x64_env(dtype)[X64_VAR] == "1"
    have = bool(jax.config.jax_enable_x64)
    if have != want:
        import os

        given = os.environ.get(X64_VAR)
        raise RuntimeError(f"this JAX worker runs with jax_enable_x64={have} ("
                           f"{X64_VAR + ' unset' if given is None else f'{X64_VAR}={given}'} at start-up), the job "
                           f"is {np.dtype(dtype)}: it must run in a worker started with {X64_VAR}="
                           f"{x64_env(dtype)[X64_VAR]} (worker_env)")


def dense_params(jnp, data: dict, dtype) -> dict:
    """The initial params as a Flax nn.Dense(1) user has them: {"weight": kernel (d, 1), "bias": (1,)}."""
    w0, b0 = np.asarray(data["w0"], dtype), np.asarray(data["b0"], dtype)
    return {"weight": jnp.asarray(w0.reshape(w0.size, 1)), "bias": jnp.asarray(b0.reshape(1))}


def dense_loss(jnp, factor: float, pen):
    """loss(params, X, y): the regression loss of a Dense(1) layer, y an (n, 1) column (shapes checked at
    trace time: an (n,) y against the (n, 1) prediction would broadcast r to (n, n)), plus the penalty."""

    def loss_fn(params, X, y):
        r = X @ params["weight"] + params["bias"] - y
        if r.shape != (X.shape[0], 1):
            raise ValueError(f"residual of shape {r.shape}, expected ({X.shape[0]}, 1)")
        loss = jnp.mean(r ** 2) * (factor / 2)       # half_mse: mean(r^2)/2; mse: mean(r^2)
        if pen is not None:
            for k in pen.params:
                loss = loss + pen.l2 * jnp.sum(params[k] ** 2) + pen.l1 * jnp.sum(jnp.abs(params[k]))
        return loss

    return loss_fn


def _bias_correction_dtype(task: Task) -> Optional[str]:
    """Adam's 1 - b^t: `decay**count` with a Python-float decay and an int32 count is computed in JAX's default
    float, float32 without x64 (a float32 run), float64 with it (optax/tree_utils/_tree_math.py:449)."""
    return "float32" if task.dtype == "float32" else None


class OptaxBackend(Backend):
    name = "optax"
    modules = ("jax", "optax")
    install_hint = "pip install 'wdparity[jax]'"
    Config = OptaxRun

    def worker_env(self, config: OptaxRun, task: Task) -> dict[str, str]:
        return x64_env(task.dtype)

    def findings(self, config: OptaxRun, task: Task) -> list[dict]:
        """Documented departures from what a reader of the call may expect, each modelled by describe()."""
        out = []
        if config.optimizer == "adamw" and config.weight_decay is None:
            out.append({"id": "adamw-default-weight-decay", "modelled": True,
                        "text": "optax.adamw's default weight_decay is 1e-4 (torch's AdamW: 1e-2)",
                        "source": "optax/_src/alias.py:605"})
        if config.penalty and config.penalty.l1:
            out.append({"id": "l1-at-zero-1", "modelled": True, "text": "jax.grad of |w| at w = 0 is +1",
                        "source": "jax/_src/lax/lax.py:4715; https://github.com/jax-ml/jax/issues/37820"})
        if task.dtype == "float32" and self.describe(config, task).optimizer.name == "adam":
            out.append({"id": "bias-correction-float32", "modelled": True,
                        "text": "without x64 (a float32 run) Adam's bias corrections 1 - b^t are computed in float32 "
                                "from float32 betas",
                        "source": "optax/tree_utils/_tree_math.py:449"})
        return out

    def describe(self, config: OptaxRun, task: Task) -> Semantics:
        if config.chain is not None:
            opt, rules = _describe_chain(list(config.chain), task.schedule.kind)
        elif config.optimizer == "sgd":
            opt, rules = {"name": "sgd", "lr": config.learning_rate, "momentum": config.momentum or 0.0,
                          "nesterov": bool(config.nesterov)}, []
        else:
            opt = {"name": "adam", "lr": config.learning_rate, "eps": 1e-8 if config.eps is None else config.eps,
                   "betas": [0.9 if config.b1 is None else config.b1, 0.999 if config.b2 is None else config.b2]}
            wd = 1e-4 if config.weight_decay is None else config.weight_decay   # optax default (alias.py:605)
            rules = [DecayRule(coupling="decoupled", coefficient=wd, scale="lr", params=list(config.mask or TENSORS))
                     ] if config.optimizer == "adamw" and wd else []
        if config.penalty:
            rules += config.penalty.rules(l1_at_zero=JAX_L1_AT_ZERO)
        if opt["name"] == "adam":
            opt["bias_correction_dtype"] = _bias_correction_dtype(task)
        optimizer = (SgdSpec if opt["name"] == "sgd" else AdamSpec)(**opt)
        return Semantics(optimizer=optimizer, decay=rules, loss=task.loss, schedule=task.schedule)

    def inherent(self, semantics: Semantics, task: Task) -> Semantics:
        """optax's Adam computes its bias corrections from float32 betas in every float32 run (no x64)."""
        semantics = super().inherent(semantics, task)
        if semantics.optimizer.name == "adam":
            opt = semantics.optimizer.model_copy(update={"bias_correction_dtype": _bias_correction_dtype(task)})
            return semantics.model_copy(update={"optimizer": opt})
        return semantics

    def realize(self, semantics: Semantics, task: Task) -> dict:
        opt, rules = semantics.optimizer, list(semantics.decay)
        if semantics.frozen:
            raise Inexpressible(f"this adapter's chains update every parameter (optax.transforms.freeze / "
                                f"set_to_zero, optax/transforms/_freezing.py:29, are not modelled); nearest: the same "
                                f"setting with {semantics.frozen} trained too, which differs from the first step")
        if opt.name == "adam" and opt.bias_correction_dtype != _bias_correction_dtype(task):
            f32 = task.dtype == "float32"
            nearest = 'bias_correction_dtype = "float32"' if f32 else "exact bias corrections"
            raise Inexpressible(f"optax.scale_by_adam computes 1 - b^t (optax/tree_utils/_tree_math.py:449) in "
                                f"{'float32 from float32 betas' if f32 else 'float64'} in a {task.dtype} run; "
                                f"nearest: {nearest}")
        if opt.name == "sgd" and opt.dampening:
            raise Inexpressible(f"optax.trace has no dampening (optax/transforms/_accumulation.py:68: trace = g + "
                                f"decay*trace); nearest: trace(decay={opt.momentum}) with dampening 0, whose buffer "
                                f"grows {1 / (1 - opt.dampening):.3g}x larger")
        if opt.name == "adam" and opt.eps_placement != "corrected":
            raise Inexpressible("optax.scale_by_adam adds eps to sqrt(v_hat) (optax/_src/transform.py:300); nearest: "
                                "eps_placement = \"corrected\", whose effective epsilon is larger by 1/sqrt(1-b2^t)")
        l1 = [r for r in rules if r.norm == "l1"]
        for r in l1:
            if r.coupling != "gradient":
                raise Inexpressible("optax has no decoupled L1 transform; nearest: an L1 penalty (gradient coupling)")
            if r.effective_l1_at_zero != JAX_L1_AT_ZERO:
                raise Inexpressible(f"an L1 penalty through jax.grad takes d|w|/dw = {JAX_L1_AT_ZERO} at w = 0 "
                                    f"(jax/_src/lax/lax.py:4715), not {r.effective_l1_at_zero}; nearest: l1_at_zero = "
                                    f"{JAX_L1_AT_ZERO}, which differs wherever a weight is exactly 0")
        if len(l1) > 1:
            raise Inexpressible("one `penalty` holds one L1 term; nearest: a single L1 rule")
        penalty = {"penalty": {"l1": l1[0].coefficient, "params": list(l1[0].params)}} if l1 else {}
        coupled = [r for r in rules if r.norm == "l2" and r.coupling == "gradient"]
        dec = {s: [r for r in rules if r.norm == "l2" and r.coupling == "decoupled" and r.effective_scale == s]
               for s in ("lr", "schedule", "none")}
        velocity = opt.name == "sgd" and opt.momentum_form == "velocity"
        if velocity and (dec["lr"] or dec["schedule"]):
            raise Inexpressible("optax applies the schedule once: with it before trace (velocity form), a decoupled "
                                "decay after trace cannot be scaled by it; nearest: momentum_form = \"buffer\"")
        if opt.name == "sgd" and not velocity and not rules:
            return {"optimizer": "sgd", "learning_rate": opt.lr, **({"momentum": opt.momentum} if opt.momentum else {}),
                    **({"nesterov": True} if opt.nesterov else {})}
        adam = {"b1": opt.betas[0], "b2": opt.betas[1], "eps": opt.eps} if opt.name == "adam" else {}
        if adam and not coupled and not dec["schedule"] and not dec["none"] and len(dec["lr"]) <= 1:
            run = {"optimizer": "adamw" if dec["lr"] else "adam", "learning_rate": opt.lr, **adam}
            if dec["lr"]:
                run["weight_decay"] = dec["lr"][0].coefficient
                run.update({"mask": list(dec["lr"][0].params)} if len(dec["lr"][0].params) < len(TENSORS) else {})
            return {**run, **penalty}
        if opt.name == "sgd" and not velocity and not coupled and not any(dec.values()):
            return {**self.realize(semantics.model_copy(update={"decay": []}), task), **penalty}

        def adw(coef, r):
            mask = {"mask": list(r.params)} if len(r.params) < len(TENSORS) else {}
            return {"transform": "add_decayed_weights", "weight_decay": coef, **mask}

        chain = [adw(r.coefficient, r) for r in coupled]
        if opt.name == "adam":
            core = [{"transform": "scale_by_adam", **adam}]
        elif opt.momentum or dec["lr"] or dec["schedule"] or dec["none"] or velocity:   # trace(0) marks the core
            core = [{"transform": "trace", "decay": opt.momentum, **({"nesterov": True} if opt.nesterov else {})}]
        else:
            core = []
        lr = {"transform": "scale_by_learning_rate", "learning_rate": opt.lr}
        if velocity:
            chain += [lr] + core
        elif dec["schedule"]:
            chain += core + [adw(r.coefficient, r) for r in dec["lr"]] + [{"transform": "scale", "step_size": opt.lr}]
            chain += [adw(r.coefficient, r) for r in dec["schedule"]]
            chain += [{"transform": "scale_by_learning_rate", "learning_rate": 1.0}]
        else:
            chain += core + [adw(r.coefficient, r) for r in dec["lr"]] + [lr]
        chain += [adw(-r.coefficient, r) for r in dec["none"]]
        return {"chain": chain, **penalty}

    # ---------------------------------------------------------------- inside the worker
    def train(self, job: dict, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import jax
        import jax.numpy as jnp
        import optax

        task, run, dtype = job["task"], OptaxRun.model_validate(job["run"]), np.dtype(job["dtype"])
        require_x64(jax, dtype)   # fixed at start-up by worker_env, never flipped here
        sched = task.get("schedule") or {"kind": "constant"}

        def schedule(init_value: float):
            """The run's schedule as an optax schedule object starting at init_value (None: constant)."""
            if sched["kind"] == "step":   # decay_rate as a typed scalar: a Python float makes it float32 (finding)
                return optax.exponential_decay(init_value=init_value, transition_steps=int(sched["every"]),
                                               decay_rate=jnp.asarray(sched["factor"], dtype), staircase=True)
            if sched["kind"] == "cosine":
                return optax.cosine_decay_schedule(init_value=init_value, decay_steps=int(sched["total"]),
                                                   alpha=float(sched.get("floor", 0.0)))
            return None

        tx = transformation(optax, run, schedule)

        loss_fn = dense_loss(jnp, loss_factor(task["loss"]), run.penalty)

        @jax.jit   # traced once per batch shape (the last batch of an epoch may be short)
        def step(params, opt_state, X, y):
            grads = jax.grad(loss_fn)(params, X, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        # Batches are cut on the host and handed to the jitted step, as from a numpy data loader: an eager
        # jnp gather X[idx] dispatches ~6 primitives op by op, ~1 ms per step on CPU (10x the step itself).
        X, y = np.asarray(data["X_train"], dtype), np.asarray(data["y_train"], dtype).reshape(-1, 1)
        params = dense_params(jnp, data, dtype)
        opt_state = tx.init(params)
        rows = batches(data["order"], int(task["batch_size"]))
        rec = Recorder(data, len(rows), params["weight"].size, dtype)   # records w flat (d,), b as a scalar
        rec.record(0, np.asarray(params["weight"]), np.asarray(params["bias"]))
        for t, idx in enumerate(rows):
            params, opt_state = step(params, opt_state, X[idx], y[idx])
            rec.record(t + 1, np.asarray(params["weight"]), np.asarray(params["bias"]), check=False)
        if params["weight"].dtype != dtype:
            raise RuntimeError(f"optax trained in {params['weight'].dtype}, not {dtype}")
        return rec.result()

    def batch_groups(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[list[int]]:
        """Runs differing only in learning rates, decay and penalty values train as one jit(vmap) with the
        chain built from traced scalars (optax_batch.py); checkpoint recording (record_steps) stays serial."""
        from wdparity.batched import partition

        from .optax_batch import batch_key

        return partition([None if "record_steps" in data else batch_key(job) for job in jobs])

    def train_batch(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        from wdparity.batched import train_grouped

        from . import optax_batch

        return train_grouped(self.batch_groups(jobs, data), jobs, data, self.train, optax_batch.train)


def transformation(optax, run: OptaxRun, schedule):
    """The run's optax GradientTransformation; `schedule(init_value)` gives the optax schedule or None for a
    constant (train() and the vmapped grid, whose fields may be tracers, share this one builder)."""

    def mask(names):
        return None if names is None else {k: k in names for k in TENSORS}

    build = {  # one optax constructor per transform name, keywords as in optax
        "add_decayed_weights": lambda t: optax.add_decayed_weights(weight_decay=t.weight_decay, mask=mask(t.mask)),
        "scale_by_adam": lambda t: optax.scale_by_adam(b1=t.b1, b2=t.b2, eps=t.eps, eps_root=t.eps_root,
                                                       nesterov=t.nesterov),
        "trace": lambda t: optax.trace(decay=t.decay, nesterov=t.nesterov),
        "scale_by_learning_rate": lambda t: optax.scale_by_learning_rate(
            schedule(t.learning_rate) or t.learning_rate, flip_sign=t.flip_sign),
        "scale": lambda t: optax.scale(t.step_size),
        "scale_by_schedule": lambda t: optax.scale_by_schedule(
            schedule(t.init_value) or optax.constant_schedule(t.init_value)),
    }
    if run.chain is not None:
        return optax.chain(*[build[t.transform](t) for t in run.chain])
    lr = schedule(run.learning_rate) or run.learning_rate
    given = {k: getattr(run, k) for k in ALIAS_KEYS[run.optimizer] if getattr(run, k) is not None}
    if "mask" in given:
        given["mask"] = mask(given["mask"])
    return getattr(optax, run.optimizer)(learning_rate=lr, **given)


backend = OptaxBackend()
