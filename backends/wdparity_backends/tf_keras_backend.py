"""The `tf_keras` backend: Keras 2 (tf_keras 2.21, TensorFlow's tf.keras before Keras 3), a Sequential Dense(1)
trained with compile() and the model's own train_step, with the new optimizers (tf_keras.optimizers.*) or the
legacy ones (tf_keras.optimizers.legacy.*, written `legacy.NAME`).

Why it exists: Keras 2 has three unrelated knobs called decay. `kernel_regularizer = L2(c)` adds c*sum(w^2) to the
loss (a coupled L2 of coefficient 2c); the new optimizers' `weight_decay` is decoupled, w -= lr_t*wd*w before the
update; the legacy optimizers' `decay` is no weight decay at all but the learning-rate schedule lr/(1 + decay*t)
(the neutral inverse_time schedule), which the new optimizers reject with a ValueError. Vocabulary:
tf_keras_vocab.py; what each optimizer computes: tf_keras_optimizers.py; sources: docs/adapters/tf_keras.md.
Networks (`[task] model`): keras_network.py, shared with the Keras 3 adapter.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from wdparity.engine import network as net_mod
from wdparity.run.adapter import Adapter, refuse_clip, refuse_frozen, refuse_l1, refuse_no_bias_correction, refuse_optimizer
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import TENSORS, DecayRule, InverseTimeSchedule, Semantics, Task, fail
from wdparity.spec.network import in_scope, tensor_scope
from wdparity.spec.rules import coefficients

from . import keras_network
from .keras_optimizers import describe_clip
from .keras_vocab import CLIP, GELU_FLOAT32, f32, float32_inherent, gelu_on_tf
from .tf_keras_optimizers import MODELLED, candidates, describe_optimizer
from .tf_keras_vocab import DEFAULTS, OWN, TfKerasRun

L1_AT_ZERO = 0.0   # d|w|/dw at 0 through tf.abs's gradient (sign(0) = 0)
TF_NAME = {"weight": "kernel", "bias": "bias"}


class TfKerasBackend(Adapter):
    name = "tf_keras"
    modules = ("tf_keras", "tensorflow")
    install_hint = "pip install 'wdparity[tf_keras]'"
    Config = TfKerasRun
    schedules = ("constant", "step", "cosine", "inverse_time")
    models_networks = True   # keras_network.py: Dense / LayerNormalization / Activation in a Sequential

    def snippet(self, config, task):
        from .keras_snippet import tf_keras_snippet
        return tf_keras_snippet(config, task, self.describe)

    def findings(self, config: TfKerasRun, task: Task) -> list[dict]:
        out = []
        if config.get("weight_decay") if not config.legacy else False:
            out.append({"id": "weight-decay-decoupled", "modelled": True,
                        "text": f"{config.optimizer}(weight_decay) is decoupled decay w -= lr_t*wd*w, not L2",
                        "source": "tf_keras/src/optimizers/optimizer.py:727-746"})
        if config.legacy and config.decay:
            out.append({"id": "legacy-decay-is-a-schedule", "modelled": True,
                        "text": f"{config.optimizer}(decay={config.decay}) is the learning-rate schedule "
                                "lr/(1 + decay*t), no weight decay", "source": "tf_keras/src/optimizers/legacy/"
                                                                              "optimizer_v2.py:1183-1193"})
        if task.dtype == "float64" and not config.legacy:
            out.append({"id": "cast-float32", "modelled": True,
                        "text": "tf.cast of a Python float rounds to float32: SGD's momentum, the betas of Adam's bias "
                                "correction, Nadam's and Lion's betas, Adafactor's epsilon_2 and weight_decay are "
                                "float32-rounded",
                        "source": "tf_keras/src/optimizers/sgd.py, adam.py, nadam.py, lion.py, adafactor.py update_step"})
        if task.dtype == "float64" and gelu_on_tf(task):
            out.append({"id": GELU_FLOAT32.split(":")[0], "text": GELU_FLOAT32.split(":", 1)[1].strip(),
                        "source": "tensorflow/python/ops/nn_ops.py:3747-3757", "modelled": False})
        return out

    def inherent(self, semantics: Semantics, task: Task) -> Semantics:
        """tf_keras computes Adam's 1 - beta^t from float32 betas (new and legacy) and Adafactor's k^beta_2_decay in
        float32 in every float32 run."""
        return float32_inherent(semantics, task)

    def describe(self, config: TfKerasRun, task: Task) -> Semantics:
        """What the run does. weight_decay (new optimizers) and legacy decay enter through tf.cast, float32-rounded
        in float64 runs; the regularizer factors through backend.cast_to_floatx, exact (tf_keras/src/regularizers.py:
        243-252)."""
        optimizer = describe_optimizer(config, task)
        r = f32 if task.dtype == "float64" else float
        decay, tensors, excluded = keras_network.describe_layers(config, task, L1_AT_ZERO, float, "tf_keras")
        wd = 0.0 if config.legacy else r(config.get("weight_decay") or 0.0)
        if wd > 0:
            params = [k for k in tensors if k not in excluded]
            decay.append(DecayRule(norm="l2", coupling="decoupled", coefficient=wd, scale="lr", params=params))
        schedule = task.schedule
        if config.optimizer == "legacy.Nadam" and schedule.kind != "constant":
            raise fail("optimizer", config.optimizer, "takes no learning-rate schedule: tf_keras raises ValueError "
                       "(\"The Nadam optimizer does not support tf.keras.optimizers.LearningRateSchedules as the "
                       f"learning rate.\", legacy/nadam.py:80-87); the task's schedule is {schedule.kind!r}")
        if config.legacy and config.decay:
            if schedule.kind != "constant":
                raise fail("decay", config.decay, "with a learning-rate schedule is their product, schedule(t)/(1 + "
                           "decay*t) (legacy/optimizer_v2.py:1183-1193), which no neutral schedule states; the "
                           f"task's schedule is {schedule.kind!r}")
            schedule = InverseTimeSchedule(kind="inverse_time", rate=r(config.decay))
        return Semantics(optimizer=optimizer, decay=decay, loss=task.loss, schedule=schedule,
                         clip=describe_clip(config))

    def realize(self, semantics: Semantics, task: Task) -> dict:
        refuse_optimizer(semantics, MODELLED, "tf_keras")
        refuse_frozen(semantics, "a non-trainable variable, e.g. `dense.bias.trainable = False`")
        refuse_no_bias_correction(semantics.optimizer, "tf_keras")
        refuse_clip(semantics, {(kind, "loss_gradient"): k for k, kind in CLIP.items()}, "tf_keras")
        clip = semantics.clip
        if clip is not None and clip.eps:
            raise Inexpressible(f"tf_keras's norm clipping adds no eps (tf.clip_by_norm, tf.clip_by_global_norm: "
                                f"c/max(||g||, c)); nearest: eps = 0 instead of {clip.eps}")
        decoupled = [r for r in semantics.decay if r.coupling == "decoupled"]
        refuse_l1(semantics.decay, L1_AT_ZERO, "tf_keras")
        for rule in decoupled:
            if rule.effective_scale != "lr":
                raise Inexpressible(f"tf_keras's weight_decay is always scaled by the learning rate lr_t (optimizers/"
                                    f"optimizer.py:739-746); nearest: weight_decay = {rule.coefficient / semantics.optimizer.lr:g}"
                                    " (= coefficient/lr, identical while the schedule is constant)")
        if len(decoupled) > 1:
            raise Inexpressible(f"a tf_keras optimizer has one weight_decay; nearest: weight_decay = "
                                f"{decoupled[0].coefficient} on {decoupled[0].params}")
        extra: dict = {k: clip.threshold for k in CLIP if clip is not None and CLIP[k] == clip.kind}
        l1, l2 = coefficients(semantics.decay, "l1"), coefficients(semantics.decay, "l2")
        tensors = in_scope()
        if tensors != TENSORS:
            extra.update(keras_network.realize_regularizers(l1, l2, tensors))
        for k, key in (("weight", "kernel_regularizer"), ("bias", "bias_regularizer")) if tensors == TENSORS else ():
            reg = {n: v for n, v in (("l1", l1[k]), ("l2", l2[k] / 2.0)) if v}   # L2(c) is a 2c gradient
            if reg:
                extra[key] = reg
        runs = []
        for run in candidates(semantics.optimizer, task, bool(decoupled)):
            if decoupled:
                if run["optimizer"].startswith("legacy."):
                    continue   # the legacy optimizers have no weight decay (their `decay` is a schedule)
                rule = decoupled[0]
                run = {**run, "optimizer": "AdamW" if run["optimizer"] == "Adam" else run["optimizer"],
                       "weight_decay": rule.coefficient}
                if len(rule.params) < len(tensors):
                    run["exclude_from_weight_decay"] = keras_network.realize_exclusion(rule.params, tensors, "tf_keras")
            runs.append({**run, **extra})
        wanted = semantics.neutral()
        nearest = None
        for run in runs:
            try:
                described = self.describe(self.parse(run), task).neutral()
            except ValueError:   # e.g. legacy.Nadam under a schedule
                continue
            if described == wanted:
                return run
            nearest = nearest or (run, described)
        if nearest is None:
            raise Inexpressible(f"no tf_keras optimizer computes {semantics.optimizer.name} {wanted['optimizer']} "
                                f"under the {semantics.schedule.kind} schedule with {len(decoupled)} decoupled terms; "
                                "nearest: none modelled (legacy.Nadam takes no schedule, legacy optimizers no weight_decay)")
        run, described = nearest
        diff = {k: (wanted.get(k), described.get(k)) for k in {**wanted, **described} if wanted.get(k) != described.get(k)}
        raise Inexpressible(f"tf_keras states these semantics differently: {diff} (asked, nearest); nearest: {run}")

    # ---------------------------------------------------------------- inside the worker
    record_checks = False   # a compiled step: the Recorder's stop rule is applied after

    def build(self, job: dict, data: dict[str, np.ndarray]) -> SimpleNamespace:
        tensors = tuple(net_mod.names_of(data))
        with tensor_scope(tensors):   # a network's exclude_from_weight_decay holds tf_keras patterns
            run = TfKerasRun.model_validate(job["run"])
        task, dtype = job["task"], job["dtype"]
        import tensorflow as tf
        import tf_keras

        tf_keras.backend.clear_session()
        tf_keras.backend.set_floatx(dtype)   # the layer, the loss and the optimizers' floatx variables

        model, variables, var_names = keras_network.build_model(tf_keras, data, dtype, run, tensors, "tf_keras",
                                                                 TF_NAME)
        lr0 = float(run.get("learning_rate"))
        sched = task.get("schedule") or {"kind": "constant"}
        # A schedule computes in its initial_learning_rate's dtype (learning_rate_schedule.py:184-187): a Python
        # float is float32, so a float64 run passes a float64 one (tests/test_tf_keras_facts.py measures both)
        # (and tf.cast of its Python-float decay_rate goes through float32, :188-189,557-558: typed as well)
        typed = np.dtype(dtype).type
        lr_t0 = typed(lr0)
        schedules = tf_keras.optimizers.schedules
        if sched["kind"] == "step":
            lr = schedules.ExponentialDecay(lr_t0, decay_steps=int(sched["every"]), decay_rate=typed(sched["factor"]),
                                            staircase=True)
        elif sched["kind"] == "cosine":
            lr = schedules.CosineDecay(lr_t0, decay_steps=int(sched["total"]), alpha=float(sched.get("floor", 0.0)))
        elif sched["kind"] == "inverse_time":
            lr = schedules.InverseTimeDecay(lr_t0, decay_steps=1, decay_rate=typed(sched["rate"]))
        else:
            lr = lr0
        given = {k: getattr(run, k) for k in (*CLIP, *OWN[run.optimizer]) if getattr(run, k) is not None}
        given = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in given.items()}
        module = tf_keras.optimizers.legacy if run.legacy else tf_keras.optimizers
        optimizer = getattr(module, run.optimizer.removeprefix("legacy."))(learning_rate=lr, **given)
        if var_names:
            optimizer.exclude_from_weight_decay(var_names=var_names)
        model.compile(optimizer=optimizer, loss=tf_keras.losses.MeanSquaredError(),
                      loss_weights=[0.5] if task["loss"] == "half_mse" else None)
        s = SimpleNamespace(model=model, vars=variables, dtype=dtype, X=np.asarray(data["X_train"], dtype),
                            y=np.asarray(data["y_train"], dtype).reshape(-1, 1),
                            tensors=tensors if "model_json" in data else None)
        s.params = tuple(v.numpy() for v in variables)

        # The model's own train_step (compiled loss, loss_weights, regularization losses, optimizer.minimize) in one
        # tf.function, what Model.make_train_function wraps for fit() and train_on_batch (tf_keras/src/engine/
        # training.py), without train_on_batch's per-call metric resets and data adapter
        @tf.autograph.experimental.do_not_convert
        def train_step(x, y):
            model.train_step((x, y))
            return tuple(v.read_value() for v in variables)

        s.train_step = tf.function(train_step, reduce_retracing=True)
        return s

    def step(self, s: SimpleNamespace, rows: np.ndarray, t: int) -> None:
        s.params = tuple(v.numpy() for v in s.train_step(s.X[rows], s.y[rows]))

    def read(self, s: SimpleNamespace):
        return s.params if s.tensors is None else keras_network.read(s.tensors, s.params)

    def finish(self, s: SimpleNamespace) -> None:
        trained = s.vars[0].dtype.name
        if trained != s.dtype:
            raise RuntimeError(f"tf_keras trained in {trained}, not {s.dtype}")


assert set(OWN) == set(DEFAULTS)
backend = TfKerasBackend()
