"""An optax run table as the Python a user pastes (Backend.snippet; tools/snippet.py frames it).

Why it exists: `translate(..., to="optax")` gives a table; this writes the same run as the calls the adapter's
train() makes (optax_backend.build, optax_jax.transformation, optax_schedules.build, optax_network), so the pasted
code trains exactly what the adapter trains: JAX's x64 flag for float64, the params pytree `params` as the adapter
lays it out (a Flax nn.Dense(1)'s {"weight" (d, 1), "bias" (1,)}, or the network's Flax-style tree with a pure-jnp
`apply`), `loss_fn` with the task's loss and the run's `penalty`, the task's schedule as an optax schedule, masks
as the tree or function handed to optax, and the optimizer as `optimizer`.

An alias is written `optax.inject_hyperparams(optax.<alias>, static_args=(...))(...)`, the form wdparity.describe()
reads back. Every keyword but learning_rate is static: injected, inject_hyperparams converts a number to an array of
the params' dtype (optax/schedules/_inject.py:146-166), so a float32 run's betas would become float32 arrays and
Adam's 1 - b1 another float than the plain alias's (1.2e-7 on the weights after 5 steps, measured by
tests/test_snippets_keras_optax.py); a static keyword reaches the alias as written, and so does a callable mask
(a non-static callable would be taken for a schedule, _inject.py:147-152). A `chain` is plain optax calls:
inject_hyperparams wraps one factory, and describe() reads aliases only. Every key of the parsed table is written
or refused by name (Inexpressible).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from wdparity.engine.data import loss_factor
from wdparity.run.backend import Inexpressible
from wdparity.run.literals import py
from wdparity.spec.models import Task
from wdparity.spec.network import layout

from . import optax_network as onet
from .keras_snippet import call
from .optax_schedules import ConstantSchedule, CosineDecaySchedule, ExponentialDecay
from .optax_vocab import ALIASES

ACTIVATION = {"tanh": "jnp.tanh(z)", "relu": "jax.nn.relu(z)", "gelu": "jax.nn.gelu(z, approximate=False)",
              "gelu_tanh": "jax.nn.gelu(z, approximate=True)"}
PARTIALS = {"nadam": "adam", "nadamw": "adamw"}   # functools.partial(<factory>, nesterov=True) in optax 0.2.8


class Writer:
    """The snippet's lines and the definitions (masks) its optimizer refers to."""

    def __init__(self, task: Task):
        self.task, self.jdt = task, f"jnp.{task.dtype}"
        self.defs: list[str] = []
        self.imports: set[str] = set()
        self.masks = 0

    def schedule(self, init_value) -> Optional[tuple[str, list[str]]]:
        """The task's lr schedule starting at init_value as the adapter builds it, (function, arguments); None for a
        constant learning rate."""
        s = self.task.schedule
        if s.kind == "step":   # decay_rate typed: a Python float makes the staircase float32 even under x64
            return "optax.exponential_decay", [f"init_value={init_value!r}", f"transition_steps={s.every}",
                                               f"decay_rate=jnp.asarray({s.factor!r}, {self.jdt})", "staircase=True"]
        if s.kind == "cosine":
            return "optax.cosine_decay_schedule", [f"init_value={init_value!r}", f"decay_steps={s.total}",
                                                   f"alpha={float(s.floor)!r}"]
        if s.kind != "constant":
            raise Inexpressible(f"schedule: optax is trained here under the schedules constant, step and cosine, "
                                f"not {s.kind!r}")
        return None

    def learning_rate(self, init_value) -> Optional[list[str]]:
        """`learning_rate = <the task's schedule>` (the one carrier of a run's schedule), or None when constant."""
        sched = self.schedule(init_value)
        if sched is None:
            return None
        return [f"# the task's {self.task.schedule.kind} schedule", call(f"learning_rate = {sched[0]}", sched[1])]

    def weight_decay(self, value) -> str:
        """A weight_decay as optax_schedules.build hands it to optax: the number, or the schedule object."""
        if isinstance(value, CosineDecaySchedule):
            return (f"optax.cosine_decay_schedule(init_value={value.init_value!r}, decay_steps={value.decay_steps}, "
                    f"alpha={value.alpha!r}, exponent={value.exponent!r})")
        if isinstance(value, ExponentialDecay):
            self.imports.add("import numpy as np")
            return (f"optax.exponential_decay(init_value={value.init_value!r}, transition_steps="
                    f"{value.transition_steps}, decay_rate=np.asarray({value.decay_rate!r}, np.{self.task.dtype}), "
                    f"transition_begin={value.transition_begin}, staircase={value.staircase}, "
                    f"end_value={py(value.end_value)})")
        if isinstance(value, ConstantSchedule):
            return f"optax.constant_schedule({value.value!r})"
        return py(value)

    def mask(self, value: Any) -> str:
        """The object optax_network.optax_mask hands to optax: a boolean tree, or a function of the params."""
        if value is None:
            return "None"
        tensors = self.task.tensors
        if isinstance(value, list):
            return py(onet.optax_mask(value, tensors))
        callable_kind = next((k for k in onet.CALLABLES if k in value), None)
        if callable_kind is None:
            return py(value)   # a boolean tree, prefixes included, exactly as written
        name = "decay_mask" if not self.masks else f"decay_mask_{self.masks}"
        self.masks += 1
        if callable_kind == "patterns":
            self.imports.add("import fnmatch")
            self.defs += [f"def {name}(params):   # True where a path (\"Dense_0/kernel\") matches a pattern",
                          f"    patterns = {py(list(value['patterns']))}",
                          "    return jax.tree_util.tree_map_with_path(lambda path, _: any(fnmatch.fnmatchcase(",
                          "        jax.tree_util.keystr(path, simple=True, separator=\"/\"), p) for p in patterns),",
                          "        params)",
                          ""]
        else:
            op = ">" if callable_kind == "ndim_gt" else "!="
            self.defs += [f"def {name}(params):   # True for the parameters with ndim {op} {int(value[callable_kind])}",
                          f"    return jax.tree.map(lambda x: x.ndim {op} {int(value[callable_kind])}, params)", ""]
        return name


def params_lines(task: Task) -> list[str]:
    """`params` laid out as the adapter's (optax_jax.dense_params, optax_network.init_params), placeholder values."""
    jdt = f"jnp.{task.dtype}"
    if task.model.linear:
        d = task.num_inputs
        return ["# the task's model as a Flax nn.Dense(1) user holds its params (replace the values with yours)",
                f"params = {{\"weight\": jnp.zeros(({d}, 1), {jdt}), \"bias\": jnp.zeros((1,), {jdt})}}"]
    shapes = dict(layout(task.model, task.num_inputs))
    tree: dict = {}
    for neutral, path in onet.native_names(task.tensors).items():
        module, leaf = path.split("/")
        fill = "ones" if neutral.endswith(".scale") else "zeros"
        tree.setdefault(module, []).append(f"{leaf!r}: jnp.{fill}({shapes[neutral]!r}, {jdt})")
    body = [f"    {module!r}: {{{', '.join(leaves)}}}," for module, leaves in tree.items()]
    return ["# the task's network as a Flax-linen nn.compact MLP names its params (replace the values with yours)",
            "params = {"] + body + ["}"]


def loss_lines(task: Task, penalty) -> list[str]:
    """loss_fn(params, X, y) as optax_jax.dense_loss / optax_network.network_loss compute it, the penalty included."""
    spec, out = task.model, []
    if not spec.linear:
        hidden, eps = len(spec.hidden), float(spec.norm_eps)
        out += [f"def apply(params, x):   # the MLP: hidden {spec.hidden}, {spec.activation}, norm {spec.norm!r}",
                "    h = x", f"    for k in range({hidden}):", "        dense = params[f\"Dense_{k}\"]",
                "        z = h @ dense[\"kernel\"] + dense[\"bias\"]"]
        if spec.norm == "layer":   # epsilon explicit: Flax's default is 1e-6
            out += ["        ln = params[f\"LayerNorm_{k}\"]", "        mean = jnp.mean(z, axis=-1, keepdims=True)",
                    "        var = jnp.mean(jnp.square(z - mean), axis=-1, keepdims=True)   # biased",
                    f"        z = (z - mean) / jnp.sqrt(var + {eps!r}) * ln[\"scale\"] + ln[\"bias\"]"]
        out += [f"        h = {ACTIVATION[spec.activation]}", f"    out = params[\"Dense_{hidden}\"]",
                "    return h @ out[\"kernel\"] + out[\"bias\"]", "", ""]
    predict = "X @ params[\"weight\"] + params[\"bias\"]" if spec.linear else "apply(params, X)"
    half = task.loss == "half_mse"
    out += ["def loss_fn(params, X, y):   # y: an (n, 1) column",
            f"    r = {predict} - y",
            f"    loss = jnp.mean(r ** 2) * {loss_factor(task.loss) / 2!r}   # the task's loss: mean((yhat - y)^2)"
            + (" / 2" if half else "")]
    if penalty is not None and (penalty.l2 or penalty.l1):
        paths = onet.native_names(task.tensors)
        for k in penalty.params:
            leaf = "".join(f"[{p!r}]" for p in paths[k].split("/"))
            terms = ([f"{penalty.l2!r} * jnp.sum(params{leaf} ** 2)"] if penalty.l2 else []) + (
                [f"{penalty.l1!r} * jnp.sum(jnp.abs(params{leaf}))"] if penalty.l1 else [])
            out.append(f"    loss = loss + {' + '.join(terms)}   # the run's penalty on {k}")
    return out + ["    return loss"]


def _alias(c, w: Writer) -> list[str]:
    given = c.given()
    lr = c.learning_rate
    sched = None if lr is None else w.learning_rate(lr)
    out = list(sched or [])
    rendered = []
    for key, value in given.items():
        if key in ("mask", "weight_decay_mask"):
            rendered.append(f"{key}={w.mask(value)}")
        elif key in ("weight_decay", "weight_decay_rate"):
            rendered.append(f"{key}={w.weight_decay(value)}")
        elif key == "clipping_threshold" and value is False:
            rendered.append(f"{key}=None")   # false is optax's None: no clipping (optax_adafactor.clip_threshold)
        else:
            rendered.append(f"{key}={py(value)}")
    factory = c.optimizer
    if c.optimizer in PARTIALS:   # a functools.partial has no __name__ for describe() to read: its call, spelled out
        factory = PARTIALS[c.optimizer]
        out.append(f"# optax.{c.optimizer} is functools.partial(optax.{factory}, nesterov=True) (optax/_src/alias.py:"
                   f"{'532' if factory == 'adam' else '730'}), written as that call so describe() can name it")
        if "nesterov" not in given:
            rendered.append("nesterov=True")
    # every keyword but learning_rate static, the defaults too: inject_hyperparams binds them (apply_defaults) and
    # would inject a default b1 = 0.9 as well (optax/schedules/_inject.py:142-156)
    keys = tuple(ALIASES[factory])
    static = f", static_args={py(keys)}" if keys else ""
    args = [f"learning_rate={'learning_rate' if sched is not None else py(lr)}"] + rendered
    out += ["# inject_hyperparams, so wdparity.describe(optimizer) reads it back; the other keywords static, so they",
            f"# reach optax.{factory} as written (injected, they would become arrays of the params' dtype)",
            call(f"optimizer = optax.inject_hyperparams(optax.{factory}{static})", args)]
    return out


def _chain(c, w: Writer) -> list[str]:
    items, head = [], []
    for t in c.chain:   # (describe_chain allows one carrier of the schedule: one `learning_rate` at most)
        if t.transform == "add_decayed_weights":
            items.append(("optax.add_decayed_weights", [f"weight_decay={w.weight_decay(t.weight_decay)}",
                                                        f"mask={w.mask(t.mask)}"]))
        elif t.transform == "scale_by_learning_rate":
            head += w.learning_rate(t.learning_rate) or []
            items.append(("optax.scale_by_learning_rate", ["learning_rate" if head else py(t.learning_rate),
                                                           f"flip_sign={t.flip_sign}"]))
        elif t.transform == "scale_by_schedule":
            head += w.learning_rate(t.init_value) or []
            items.append(("optax.scale_by_schedule", ["learning_rate" if head else
                                                      f"optax.constant_schedule({t.init_value!r})"]))
        else:
            keys = [k for k in type(t).model_fields if k != "transform" and k in t.model_fields_set]
            items.append((f"optax.{t.transform}", [f"{k}={py(getattr(t, k))}" for k in keys]))
    calls = [call(f, args, "    ", ",") for f, args in items]
    return head + ["# a chain, as plain optax calls: inject_hyperparams wraps one factory, so wdparity.describe()",
                   "# cannot read this object back (it reads inject_hyperparams(optax.<alias>)); the run's table is",
                   "# the readable form", "optimizer = optax.chain("] + calls + [")"]


def optax_snippet(config, task: Task, describe: Callable) -> str:
    """The snippet's body; `describe` (the adapter's) validates the run as a case file would."""
    describe(config, task)
    w = Writer(task)
    if config.chain is not None:
        opt, used = _chain(config, w), {"chain"}
    else:
        opt, used = _alias(config, w), {"optimizer", "learning_rate", *config.given()}
    used.add("penalty")
    left = [k for k in type(config).model_fields if getattr(config, k) is not None and k not in used]
    if left:
        raise Inexpressible(f"the snippet does not write {left} (keys of the parsed run): no code is emitted rather "
                            "than code that builds another optimizer")
    head = ["import jax"]
    if task.dtype == "float64":
        head += ["", "jax.config.update(\"jax_enable_x64\", True)   # float64: before any array is made"]
    head += sorted(w.imports) + ["import jax.numpy as jnp", "import optax", ""]
    body = params_lines(task) + ["", ""] + loss_lines(task, config.penalty) + ["", ""] + w.defs + opt
    return "\n".join(head + body) + "\n"
