"""A Keras 3 or tf_keras run table as the Python a user pastes (Backend.snippet; tools/snippet.py frames it).

Why it exists: `translate(..., to="keras")` gives a table; this writes the same run as the calls the adapter's own
build() makes (keras_backend.py, tf_keras_backend.py, keras_network.py), so the code a user pastes trains exactly
what the adapter trains: the Keras backend set before `import keras` (Keras reads KERAS_BACKEND once), float64
through set_floatx (and JAX's x64 flag on JAX), the task's model as `model` (Dense(1), or the network's Sequential
with the layers named as Keras names them in a fresh session, so exclusion patterns and per-layer regularizers
name the same variables), the task's schedule as a LearningRateSchedule, the optimizer with its keywords in the
adapter's order and types, exclude_from_weight_decay, and compile() with the task's loss. Every key of the parsed
table is written or refused by name (Inexpressible); tests/test_snippets_keras_optax.py runs every snippet.
"""

from __future__ import annotations

from typing import Callable

from wdparity.run.backend import Inexpressible
from wdparity.run.literals import py
from wdparity.spec.models import Strict, Task

from . import keras_network
from .keras_vocab import CLIP, DECAY_IGNORED, DEFAULT_LR, KERAS_NAME
from .keras_vocab import OWN as KERAS_OWN

ACTIVATION = {"tanh": "{m}.activations.tanh", "relu": "{m}.activations.relu"}
LOSS_WEIGHTS = {"keras": "0.5", "tf_keras": "[0.5]"}   # as the adapters compile half_mse: mean(r^2) * 0.5


WIDTH = 110   # a generated call longer than this is written one argument a line


def call(head: str, args: list[str], indent: str = "", tail: str = "") -> str:
    """`head(args)tail` on one line, or one argument a line when that is longer than WIDTH."""
    line = f"{indent}{head}({', '.join(args)}){tail}"
    if len(line) <= WIDTH or not args:
        return line
    return f"{indent}{head}(\n" + "".join(f"{indent}    {a},\n" for a in args) + f"{indent}){tail}"


def num(value) -> str:
    """A keyword as the adapters pass it: numbers as Python floats (float(v)), booleans and strings as they are."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    return py(value)


def leftover(config: Strict, used: set[str]) -> None:
    """Inexpressible naming every key the snippet did not write (nothing is dropped silently)."""
    left = [k for k in type(config).model_fields if getattr(config, k) is not None and k not in used]
    if left:
        raise Inexpressible(f"the snippet does not write {left} (keys of the parsed run): no code is emitted rather "
                            "than code that builds another optimizer")


def _regularizer(m: str, reg) -> str:
    return "None" if reg is None else f"{m}.regularizers.L1L2(l1={float(reg.l1)!r}, l2={float(reg.l2)!r})"


def model_lines(m: str, config, task: Task) -> list[str]:
    """`model` as the adapter's keras_network.build_model builds it (the linear Dense(1) or the network)."""
    d = task.num_inputs
    if task.model.linear:
        if config.layers is not None:
            raise Inexpressible("layers: a network's per-layer regularizers; the linear task's one Dense takes "
                                "kernel_regularizer and bias_regularizer")
        regs = [f"{k}={_regularizer(m, getattr(config, k))}" for k in ("kernel_regularizer", "bias_regularizer")
                if getattr(config, k) is not None]
        line = f"model = {m}.Sequential([{m}.Input(shape=({d},)), {call(f'{m}.layers.Dense', ['1', *regs])}])"
        if len(line) > WIDTH:
            line = "\n".join([f"model = {m}.Sequential([", f"    {m}.Input(shape=({d},)),",
                              call(f"{m}.layers.Dense", ["1", *regs], "    ", ","), "])"])
        return ["# the task's model: y = Xw + b (replace it with yours)", line]
    spec = task.model
    tensors = task.tensors
    regs = keras_network.regularizers(config.layers, config.kernel_regularizer, config.bias_regularizer, tensors)
    out = [f"# the task's network: hidden {spec.hidden}, {spec.activation}, norm {spec.norm!r} (replace it with "
           "yours);",
           "# the layers carry the names Keras gives them in a fresh session, which exclusion patterns and per-layer",
           "# regularizers refer to"]
    if spec.activation in ACTIVATION:
        act = ACTIVATION[spec.activation].format(m=m)
    else:   # keras.activations.gelu's own default is approximate=False; the task says which form explicitly
        act = "act"
        out += ["", "", "def act(x):",
                f"    return {m}.activations.gelu(x, approximate={spec.activation == 'gelu_tanh'})", "", ""]
    norm = spec.norm == "layer"
    layers = iter(keras_network.native_layers(tensors).items())
    stack = [f"    {m}.Input(shape=({d},)),"]

    def keywords(keys: dict[str, str]) -> list[str]:
        return [f"{k}={_regularizer(m, regs[t])}" for k, t in keys.items() if t in regs]

    for width in spec.hidden:
        name, (_, keys) = next(layers)
        activation = [] if norm else [f"activation={act}"]
        args = [str(width), *activation, f"name={name!r}", *keywords(keys)]
        stack.append(call(f"{m}.layers.Dense", args, "    ", ","))
        if norm:
            name, (_, keys) = next(layers)
            stack.append(call(f"{m}.layers.LayerNormalization", [f"epsilon={float(spec.norm_eps)!r}", f"name={name!r}",
                                                                  *keywords(keys)], "    ", ","))
            stack.append(f"    {m}.layers.Activation({act}),")
    name, (_, keys) = next(layers)
    stack.append(call(f"{m}.layers.Dense", ["1", f"name={name!r}", *keywords(keys)], "    ", ","))
    return out + ["model = " + m + ".Sequential(["] + stack + ["])"]


def schedule_lines(m: str, task: Task, lr0: float, kinds: tuple[str, ...], typed: Callable[[float], str]) -> list[str]:
    """`learning_rate = <the task's schedule>` as the adapter builds it (typed: how its value is passed); [] for a
    constant learning rate, which the optimizer's call holds."""
    s = task.schedule
    if s.kind not in kinds:
        raise Inexpressible(f"schedule: {m} is trained here under the schedules {list(kinds)}, not {s.kind!r}")
    sched = f"{m}.optimizers.schedules"
    if s.kind == "step":
        return [f"# the task's step schedule: lr_t = {lr0!r} * {s.factor!r} ** (t // {s.every})",
                call(f"learning_rate = {sched}.ExponentialDecay", [typed(lr0), f"decay_steps={s.every}",
                                                                  f"decay_rate={typed(s.factor)}", "staircase=True"])]
    if s.kind == "cosine":
        return [f"# the task's cosine schedule over {s.total} steps down to {s.floor!r} of the learning rate",
                call(f"learning_rate = {sched}.CosineDecay", [typed(lr0), f"decay_steps={s.total}",
                                                             f"alpha={float(s.floor)!r}"])]
    if s.kind == "inverse_time":
        return [f"# the task's inverse-time schedule: lr_t = {lr0!r} / (1 + {s.rate!r} * t)",
                call(f"learning_rate = {sched}.InverseTimeDecay", [typed(lr0), "decay_steps=1",
                                                                  f"decay_rate={typed(s.rate)}"])]
    return []


def exclusion_lines(config, task: Task, names: dict[str, str]) -> list[str]:
    """exclude_from_weight_decay(var_names=...): the linear task's neutral names as Keras's, a network's patterns."""
    if config.exclude_from_weight_decay is None:
        return []
    if task.model.linear:
        var_names = [names[k] for k in config.exclude_from_weight_decay]
    else:
        var_names = list(config.exclude_from_weight_decay)
    return [f"optimizer.exclude_from_weight_decay(var_names={py(var_names)})"]


def compile_line(m: str, flavour: str, task: Task) -> list[str]:
    if task.loss == "half_mse":
        return ["# the task's loss: mean((yhat - y)^2) / 2",
                f"model.compile(optimizer=optimizer, loss={m}.losses.MeanSquaredError(), "
                f"loss_weights={LOSS_WEIGHTS[flavour]})"]
    return [f"model.compile(optimizer=optimizer, loss={m}.losses.MeanSquaredError())   # the task's loss: "
            "mean((yhat - y)^2)"]


def keras_snippet(config, task: Task, describe: Callable) -> str:
    """Keras 3 (keras_backend.py's build()); `describe` (the adapter's) validates the run as a case file would."""
    describe(config, task)
    kb, f64 = config.keras_backend, task.dtype == "float64"
    used = {"keras_backend", "optimizer", "learning_rate", "exclude_from_weight_decay", "kernel_regularizer",
            "bias_regularizer", "layers"}
    out = ["# Keras reads KERAS_BACKEND once, at its first import: set before `import keras`", "import os", "",
           f"os.environ.setdefault(\"KERAS_BACKEND\", {kb!r})"]
    if kb == "jax" and f64:
        out += ["import jax", "", "jax.config.update(\"jax_enable_x64\", True)   # float64 on JAX: before any array"]
    out += ["import keras", "",
            f"if keras.config.backend() != {kb!r}:",
            f"    raise RuntimeError(f\"this run is Keras on {kb}, this process has KERAS_BACKEND="
            "{keras.config.backend()!r}\")"]
    if f64:
        out += ["keras.config.set_floatx(\"float64\")", "keras.config.set_dtype_policy(\"float64\")"]
    out += [""] + model_lines("keras", config, task) + [""]
    lr0 = float(config.learning_rate if config.learning_rate is not None else DEFAULT_LR[config.optimizer])
    sched = schedule_lines("keras", task, lr0, ("constant", "step", "cosine"), lambda x: repr(float(x)))
    out += sched
    keys = [k for k in ("weight_decay", "decay", *CLIP, *KERAS_OWN[config.optimizer]) if getattr(config, k) is not None]
    used |= set(keys)
    if config.decay is not None:
        out.append(f"# decay: {DECAY_IGNORED}")
    lr = "learning_rate" if sched else repr(lr0)
    out.append(call(f"optimizer = keras.optimizers.{config.optimizer}",
                    [f"learning_rate={lr}", *(f"{k}={num(getattr(config, k))}" for k in keys)]))
    out += exclusion_lines(config, task, KERAS_NAME) + compile_line("keras", "keras", task)
    leftover(config, used)
    return "\n".join(out) + "\n"


def tf_keras_snippet(config, task: Task, describe: Callable) -> str:
    """tf_keras (tf_keras_backend.py's build()): new optimizers or `legacy.NAME`; a schedule's initial value (and
    its decay_rate) passed typed in the run's dtype, as the adapter does (a Python float would compute in float32).
    `describe` (the adapter's) validates the run as a case file would (legacy.Nadam under a schedule, ...)."""
    from .tf_keras_vocab import OWN

    describe(config, task)
    f64 = task.dtype == "float64"
    used = {"optimizer", "learning_rate", "exclude_from_weight_decay", "kernel_regularizer", "bias_regularizer",
            "layers"}
    np_type = "np.float64" if f64 else "np.float32"
    scheduled = task.schedule.kind != "constant"
    out = (["import numpy as np"] if scheduled else []) + ["import tf_keras", ""]
    if f64:
        out += ["tf_keras.backend.set_floatx(\"float64\")   # the layers, the loss and the optimizers' variables", ""]
    out += model_lines("tf_keras", config, task) + [""]
    lr0 = float(config.get("learning_rate"))
    sched = schedule_lines("tf_keras", task, lr0, ("constant", "step", "cosine", "inverse_time"),
                           lambda x: f"{np_type}({float(x)!r})")
    out += sched
    keys = [k for k in (*CLIP, *OWN[config.optimizer]) if getattr(config, k) is not None]
    used |= set(keys)
    module = "tf_keras.optimizers.legacy" if config.legacy else "tf_keras.optimizers"
    if config.legacy and config.decay:
        out += [f"# decay: the legacy optimizers' learning-rate schedule lr/(1 + {config.decay!r}*t), no weight decay",
                "# (tf_keras/src/optimizers/legacy/optimizer_v2.py:1183-1193)"]
    lr = "learning_rate" if sched else repr(lr0)
    out.append(call(f"optimizer = {module}.{config.optimizer.removeprefix('legacy.')}",
                    [f"learning_rate={lr}", *(f"{k}={num(getattr(config, k))}" for k in keys)]))
    # (the Dense layer's kernel/bias: tf_keras_backend.TF_NAME is the same mapping; importing it here is a cycle)
    out += exclusion_lines(config, task, KERAS_NAME) + compile_line("tf_keras", "tf_keras", task)
    leftover(config, used)
    return "\n".join(out) + "\n"
