"""The `keras` backend: a Keras 3 Dense(1) model trained with compile() + the model's own train step, on
TensorFlow, JAX or torch.

Why it exists: Keras has two unrelated "weight decay" knobs. `kernel_regularizer = L1L2(l2=c)` adds
c*sum(w^2) to the loss (a coupled L2 with coefficient 2c, not c), while every Keras 3 optimizer, SGD
included, takes `weight_decay`, which is *decoupled*: w <- w - lr_t*wd*w outside the optimizer's moments.
Keras's momentum (SGD, RMSprop) is the velocity form, its Adam adds epsilon before the bias correction, its
RMSprop and Adagrad inside the root, its Adamax outside the max, its Lamb takes the trust ratio from the already
decayed w, its clipping (clipnorm, clipvalue, global_clipnorm) acts on the loss's gradient, regularizers
included, never on weight_decay, and which backend runs Keras decides sign(0) of the L1 term and several
precision findings. The vocabulary is in keras_vocab.py, what each optimizer means in
keras_optimizers.py; every statement about Keras 3.15.1, with its source and the test that measures it, is
in docs/adapters/keras.md. A `[task] model` network is a Sequential of Dense / LayerNormalization / Activation layers
named as Keras names them (keras_network.py).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

from wdparity.engine import network as net_mod
from wdparity.run.adapter import Adapter, refuse_frozen, refuse_l1, refuse_optimizer
from wdparity.run.backend import Inexpressible, load_battery
from wdparity.spec.models import TENSORS, DecayRule, Semantics, Task
from wdparity.spec.network import in_scope, tensor_scope
from wdparity.spec.rules import coefficients

from . import keras_network
from .keras_adafactor import realize_adafactor
from .keras_optimizers import MODELLED, describe_clip, describe_optimizer, realize_clip, realize_optimizer
from .keras_vocab import (
    CLIP,
    DECAY_IGNORED,
    DEFAULT_LR,
    KERAS_BACKENDS,
    KERAS_NAME,
    L1_AT_ZERO,
    OWN,
    KerasRun,
    f32,
    float32_inherent,
    precision_findings,
)
from .optax_jax import require_x64, x64_env  # JAX's x64 flag, shared with the optax adapter


class KerasBackend(Adapter):
    name = "keras"
    install_hint = "pip install 'wdparity[keras]' (and 'wdparity[jax]' or 'wdparity[torch]' for those Keras backends)"
    Config = KerasRun
    live_roots, live_label = ("keras",), "keras.optimizers"
    models_networks = True   # keras_network.py: Dense / LayerNormalization / Activation in a Sequential

    def read_live(self, obj, model, params):
        from .keras_live import read_live
        return read_live(obj, model, params)

    def snippet(self, config, task):
        from .keras_snippet import keras_snippet
        return keras_snippet(config, task, self.describe)

    @property
    def modules(self) -> tuple[str, ...]:
        """keras and the framework of this process's KERAS_BACKEND (set per worker by worker_env)."""
        return ("keras", os.environ.get("KERAS_BACKEND", "tensorflow"))

    def precision_findings(self, config: KerasRun, task: Task) -> list[str]:
        """The measured ways this run departs from its own describe() (module-level precision_findings)."""
        return precision_findings(config, task)

    def findings(self, config: KerasRun, task: Task) -> list[dict]:
        """Documented departures on this run: the unmodelled precision findings, and what describe() models."""
        out = [{"id": f.split(":", 1)[0], "text": f.split(":", 1)[1].strip(), "source": f.split("(")[-1].rstrip(")"),
                "modelled": False} for f in precision_findings(config, task)]
        if config.optimizer in ("Adam", "AdamW") and (task.dtype == "float32" or config.keras_backend == "tensorflow"):
            out.append({"id": "bias-correction-float32", "modelled": True,
                        "text": "Adam's bias corrections 1 - beta^t use float32-rounded betas",
                        "source": "keras/src/optimizers/adam.py:106-117"})
        if task.dtype == "float64" and config.keras_backend == "tensorflow":
            out.append({"id": "cast-float32", "modelled": True,
                        "text": "SGD's momentum, Adagrad's initial accumulator, Lion's betas, weight_decay and "
                                "regularizer factors are rounded to float32 by tf.cast",
                        "source": "keras/src/backend/tensorflow/core.py:210-218; tensorflow/tensorflow#35938"})
        if config.weight_decay and task.dtype == "float32":
            out.append({"id": "weight-decay-rounded-apart-float32", "modelled": False,
                        "text": "weight_decay is an assignment of its own, w - w*wd*lr before the update step, so a "
                                "float32 run rounds w twice a step; where lr*wd is small that rounding keeps its "
                                "direction step after step (300 steps at lr*wd = 2.5e-6: 24x the drift of one "
                                "combined update), which the neutral update, rounded once, does not state",
                        "source": "keras/src/optimizers/base_optimizer.py:952-959 (_apply_weight_decay)"})
        if config.weight_decay and config.optimizer != "AdamW":
            out.append({"id": "weight-decay-decoupled", "modelled": True,
                        "text": f"{config.optimizer}(weight_decay) is decoupled decay w -= lr*wd*w, not L2",
                        "source": "keras/src/optimizers/base_optimizer.py:952-959 (_apply_weight_decay)"})
        if config.optimizer == "Lamb" and config.weight_decay:
            out.append({"id": "lamb-decay-before-trust-ratio", "modelled": True,
                        "text": "Lamb's weight_decay decays w before update_step, whose trust ratio ||w||/||u|| takes "
                                "the decayed w (decay_placement \"before\")",
                        "source": "keras/src/optimizers/base_optimizer.py:586-594; keras/src/optimizers/lamb.py:122-132"})
        if config.optimizer == "Adafactor" and config.weight_decay:
            out.append({"id": "adafactor-decay-before-parameter-scale", "modelled": True,
                        "text": "Adafactor's weight_decay decays w before update_step, whose max(epsilon_2, rms(w)) takes "
                                "the decayed w (decay_placement \"before\")",
                        "source": "keras/src/optimizers/base_optimizer.py:586-594; keras/src/optimizers/adafactor.py:159"})
        if describe_clip(config) is not None:
            out.append({"id": "clip-before-weight-decay", "modelled": True,
                        "text": "Keras clips the loss's gradient, the regularizers' terms included; weight_decay "
                                "(decoupled) is applied after it, unclipped",
                        "source": "keras/src/optimizers/base_optimizer.py:586-594,870-881"})
        if config.decay is not None:
            out.append({"id": "decay-ignored", "modelled": True, "text": DECAY_IGNORED,
                        "source": "keras/src/optimizers/base_optimizer.py:85-88"})
        return out

    def inherent(self, semantics: Semantics, task: Task) -> Semantics:
        """Keras computes Adam's bias corrections from float32 betas and Adafactor's k^beta_2_decay in float32 in every
        float32 run."""
        return float32_inherent(semantics, task)

    def worker_env(self, config: KerasRun, task: Task) -> dict[str, str]:
        """Keras reads KERAS_BACKEND once per process, JAX reads jax_enable_x64 once: both fixed at start-up."""
        if config.keras_backend == "jax":
            return {"KERAS_BACKEND": "jax", **x64_env(task.dtype)}
        return {"KERAS_BACKEND": config.keras_backend}

    def describe(self, config: KerasRun, task: Task) -> Semantics:
        """What the run does (keras_optimizers.describe_optimizer). On TensorFlow in float64, weight_decay and the
        regularizer factors are the float32-rounded values Keras's tf.cast produces (module docstring)."""
        optimizer = describe_optimizer(config, task)
        r = f32 if (config.keras_backend == "tensorflow" and task.dtype == "float64") else float
        decay, tensors, excluded = keras_network.describe_layers(config, task, L1_AT_ZERO[config.keras_backend], r, "keras")
        wd = r(config.get("weight_decay") or 0.0)   # decoupled, lr_t-scaled on every optimizer; `decay` ignored
        if wd > 0:
            params = [k for k in tensors if k not in excluded]
            decay.append(DecayRule(norm="l2", coupling="decoupled", coefficient=wd, scale="lr", params=params))
        return Semantics(optimizer=optimizer, decay=decay, loss=task.loss, schedule=task.schedule,
                         clip=describe_clip(config))

    def realize(self, semantics: Semantics, task: Task) -> dict:
        refuse_optimizer(semantics, MODELLED, "Keras")
        opt = semantics.optimizer
        refuse_frozen(semantics, "a non-trainable variable, e.g. `dense.bias.trainable = False`, "
                                 "keras/src/backend/common/variables.py:335-337")
        decoupled = [r for r in semantics.decay if r.coupling == "decoupled"]
        if opt.name == "adafactor":
            run = {**realize_adafactor(opt, task, bool(decoupled), "keras"), **realize_clip(semantics)}
        else:
            run = {**realize_optimizer(opt), **realize_clip(semantics)}
        coupled_l1, coupled_l2 = coefficients(semantics.decay, "l1"), coefficients(semantics.decay, "l2")
        tensors = in_scope()
        regs = {k: {"l1": coupled_l1[k], "l2": coupled_l2[k] / 2.0} for k in tensors}   # L1L2(l2) is a 2*l2 gradient
        l1 = {r.effective_l1_at_zero for r in semantics.decay if r.norm == "l1"}
        refuse_l1(decoupled, None, "Keras")   # the L1 sign at zero picks the Keras backend below
        for rule in decoupled:
            if rule.effective_scale != "lr":
                ratio = rule.coefficient / opt.lr
                raise Inexpressible(
                    f"Keras's weight_decay is always scaled by the scheduled learning rate lr_t (keras/src/optimizers/"
                    f"base_optimizer.py:952-959); nearest: weight_decay = {ratio:g} (= coefficient/lr, identical "
                    + ("up to rounding)" if rule.effective_scale == "schedule" else "while the schedule is constant)"))
        if len(decoupled) > 1:
            raise Inexpressible("a Keras optimizer has one weight_decay; nearest: weight_decay = "
                                f"{decoupled[0].coefficient} on {decoupled[0].params} (the other decoupled terms are lost)")
        if len(l1) > 1:
            raise Inexpressible("one Keras backend has one d|w|/dw at 0; nearest: every L1 term with "
                                f"l1_at_zero = {min(l1)}")
        if decoupled:
            rule = decoupled[0]
            run["optimizer"] = "AdamW" if run["optimizer"] == "Adam" else run["optimizer"]
            run["weight_decay"] = rule.coefficient
            if len(rule.params) < len(tensors):
                run["exclude_from_weight_decay"] = keras_network.realize_exclusion(rule.params, tensors, "keras")
        if tensors != TENSORS:
            run.update(keras_network.realize_regularizers(coupled_l1, coupled_l2, tensors))
        for k, key in (("weight", "kernel_regularizer"), ("bias", "bias_regularizer")) if tensors == TENSORS else ():
            if regs[k]["l1"] or regs[k]["l2"]:
                run[key] = {n: v for n, v in regs[k].items() if v}
        # The Keras backend: one whose d|w|/dw at 0 is the asked one and whose describe() is exactly the asked
        # semantics (TensorFlow float64 rounds momentum/weight_decay/factors), preferring one without a precision
        # finding, TensorFlow first.
        wanted = semantics.neutral()
        fits = [b for b in KERAS_BACKENDS if not l1 or L1_AT_ZERO[b] in l1]
        if not fits:
            raise Inexpressible(f"Keras's L1 gradient at 0 is {L1_AT_ZERO} per backend; nearest: keras_backend = "
                                f"\"tensorflow\" (l1_at_zero = 0.0, differs where a weight is exactly 0)")
        candidates = [{"keras_backend": b, **run} for b in fits]
        exact = [c for c in candidates if self.describe(self.parse(c), task).neutral() == wanted]
        if not exact:
            described = self.describe(self.parse(candidates[0]), task).neutral()
            raise Inexpressible(f"Keras states these semantics differently (regularizers per tensor, one weight_decay"
                                f"{', float32-rounded factors on TensorFlow in float64' if task.dtype == 'float64' else ''}"
                                f"); nearest: {candidates[0]}, which means {described}")
        clean = [c for c in exact if not precision_findings(self.parse(c), task)]
        return (clean or exact)[0]

    # ---------------------------------------------------------------- inside the worker
    record_checks = False   # the compiled loops (TF, JAX) record without the per-step test; torch checks in read()

    def build(self, job: dict, data: dict[str, np.ndarray]) -> SimpleNamespace:
        tensors = tuple(net_mod.names_of(data))
        with tensor_scope(tensors):   # a network's exclude_from_weight_decay holds Keras patterns
            run = KerasRun.model_validate(job["run"])
        task, dtype = job["task"], job["dtype"]
        active = os.environ.get("KERAS_BACKEND", "tensorflow")
        if active != run.keras_backend:
            raise RuntimeError(f"worker runs KERAS_BACKEND={active!r}, the run asks keras_backend={run.keras_backend!r}")
        if active == "jax":   # JAX_ENABLE_X64 fixed at the worker's start-up (worker_env), as a JAX user sets it
            import jax
            require_x64(jax, dtype)
        import keras

        keras.config.set_floatx(dtype)
        keras.config.set_dtype_policy(dtype)
        # Keras's global state (layer-name uids, TF graph/kernel caches) is reset for every run; the full
        # gc.collect() of free_memory=True costs 0.1-0.15 s per run in a worker holding TF/JAX (profile,
        # benchmarks/RESULTS.md section 2) and frees nothing refcounting would not: skipped.
        keras.utils.clear_session(free_memory=False)

        model, variables, var_names = keras_network.build_model(keras, data, dtype, run, tensors, "keras", KERAS_NAME)

        lr0 = float(run.learning_rate if run.learning_rate is not None else DEFAULT_LR[run.optimizer])
        sched = task.get("schedule") or {"kind": "constant"}
        schedules = keras.optimizers.schedules
        if sched["kind"] == "step":
            lr = schedules.ExponentialDecay(lr0, decay_steps=int(sched["every"]), decay_rate=float(sched["factor"]),
                                            staircase=True)
        elif sched["kind"] == "cosine":
            lr = schedules.CosineDecay(lr0, decay_steps=int(sched["total"]), alpha=float(sched.get("floor", 0.0)))
        else:
            lr = lr0
        given = {k: getattr(run, k) for k in ("weight_decay", "decay", *CLIP, *OWN[run.optimizer])
                 if getattr(run, k) is not None}
        given = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in given.items()}
        optimizer = getattr(keras.optimizers, run.optimizer)(learning_rate=lr, **given)
        if var_names:
            optimizer.exclude_from_weight_decay(var_names=var_names)
        model.compile(optimizer=optimizer, loss=keras.losses.MeanSquaredError(),
                      loss_weights=0.5 if task["loss"] == "half_mse" else None)
        s = SimpleNamespace(keras=keras, active=active, model=model, vars=variables, optimizer=optimizer, dtype=dtype,
                            X=np.asarray(data["X_train"], dtype), y=np.asarray(data["y_train"], dtype).reshape(-1, 1),
                            tensors=tensors if "model_json" in data else None)
        s.params = tuple(keras.ops.convert_to_numpy(v) for v in variables)
        # TensorFlow and JAX: the model's own compiled train step, called for every batch. train_on_batch runs
        # this same Model.train_step (compiled loss and loss_weights, regularization losses, optimizer) under
        # tf.function(reduce_retracing=True, jit_compile=model.jit_compile) / jax.jit (keras/src/backend/
        # tensorflow/trainer.py:130-148, backend/jax/trainer.py:261-279), but per call it also resets the
        # metrics, matches a generator against the tf.function signature, and on JAX writes every state array
        # back into the Keras variables and the loss to a Python float: 1.7x (TF) and 7-9x (JAX) a compiled
        # loop (benchmarks/adapter_overhead.py). torch: Keras runs train_step eagerly there, train_on_batch stays.
        if active in ("tensorflow", "jax"):
            optimizer.build(model.trainable_variables)   # what train_on_batch's first call does (_symbolic_build)
        if active == "tensorflow":
            import tensorflow as tf

            @tf.autograph.experimental.do_not_convert
            def train_step(x, y):
                model.train_step((x, y))
                return tuple(v.value.read_value() for v in variables)   # after the update

            s.train_step = tf.function(train_step, reduce_retracing=True, jit_compile=model.jit_compile)
        elif active == "jax":
            import jax

            s.groups = (model.trainable_variables, model.non_trainable_variables, optimizer.variables,
                        model.metrics_variables)
            s.state = tuple([v.value for v in group] for group in s.groups)
            s.index = [next(i for i, v in enumerate(s.groups[0]) if v is w) for w in variables]
            # donate_argnums=0 as Keras's make_train_function: the state is updated in place (the rows are
            # copied by the Recorder before the next step donates them; the variables get the state back in finish)
            s.train_step = jax.jit(model.train_step, donate_argnums=0)
        return s

    def step(self, s: SimpleNamespace, rows: np.ndarray, t: int) -> None:
        if s.active == "tensorflow":
            s.params = tuple(v.numpy() for v in s.train_step(s.X[rows], s.y[rows]))
        elif s.active == "jax":
            _, s.state = s.train_step(s.state, (s.X[rows], s.y[rows]))
            s.params = tuple(s.state[0][i] for i in s.index)
        else:
            s.model.train_on_batch(s.X[rows], s.y[rows])
            s.params = tuple(s.keras.ops.convert_to_numpy(v) for v in s.vars)

    def read(self, s: SimpleNamespace):
        return s.params if s.tensors is None else keras_network.read(s.tensors, s.params)

    def finish(self, s: SimpleNamespace) -> None:
        if s.active == "jax":
            for group, values in zip(s.groups, s.state):
                for v, value in zip(group, values):
                    v.assign(value)
        trained = s.keras.ops.convert_to_numpy(s.vars[0]).dtype
        if trained != np.dtype(s.dtype):
            raise RuntimeError(f"Keras trained in {trained}, not {s.dtype}")

    def battery_extras(self) -> dict[str, tuple[dict, dict]]:
        return {f"{kb}-{name}": (task, {"keras_backend": kb, **run})
                for kb in KERAS_BACKENDS for name, (task, run) in native_cases().items()}


def native_cases() -> dict[str, tuple[dict, dict]]:
    """Keras knobs realize() never emits (batteries/keras.toml); battery_extras runs them on every Keras backend."""
    return load_battery("keras")


backend = KerasBackend()
