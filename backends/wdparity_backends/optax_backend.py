"""The `optax` backend: optax aliases and arbitrary `chain`s of gradient transformations, given as data.

optax is where "coupled vs decoupled" is literally an ordering: `add_decayed_weights` adds `weight_decay * params`
to whatever the updates are at its position in the chain: before the optimizer's normaliser (scale_by_adam,
scale_by_rms, ..., or trace) it edits the gradient (an L2 penalty), after it the step (AdamW), scaled by the
scalings that follow. Gradient clipping is an ordering too: clip_by_global_norm / clip before the coupled
add_decayed_weights clips the loss's gradient, after it g + lambda*w; LAMB's decay stands inside or after
scale_by_trust_ratio; a weight_decay may be a schedule (optax_schedules.py). The vocabulary is optax_vocab.py;
describe() expands an alias into its chain and reads it (optax_describe.py); realize() writes an alias where one
is exact, else a chain (optax_realize.py); optax_jax.py runs inside the worker. A network (`[task] model`) is a
Flax-style params tree with a pure apply, its masks as optax takes them (optax_network.py), trained serially.
Every statement about optax 0.2.8 and JAX 0.10.2, with its source and the test that measures it:
docs/adapters/optax.md.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from wdparity.engine.data import loss_factor
from wdparity.run.adapter import Adapter
from wdparity.spec.models import OPTIMIZER_SPECS, Semantics, Task

from . import optax_adafactor as adafactor
from . import optax_network as onet
from .optax_describe import alias_chain, describe_chain
from .optax_jax import dense_loss, dense_params, require_x64, transformation, x64_env
from .optax_realize import JAX_L1_AT_ZERO, RADAM_FLOAT32, bias_correction_dtype, realize
from .optax_vocab import OptaxRun

__all__ = ["JAX_L1_AT_ZERO", "OptaxBackend", "backend", "transformation"]

# what a reader of an alias call may not expect: (alias, the keyword left at optax's default) -> finding
DEFAULT_FINDINGS = {
    ("adamw", "weight_decay"): ("adamw-default-weight-decay", "optax.adamw's default weight_decay is 1e-4 (torch's "
                                "AdamW: 1e-2)", "optax/_src/alias.py:605"),
    ("adamaxw", "weight_decay"): ("adamaxw-default-weight-decay", "optax.adamaxw's default weight_decay is 1e-4, "
                                  "decoupled and lr-scaled", "optax/_src/alias.py:2398,2461-2465"),
    ("nadamw", "weight_decay"): ("nadamw-default-weight-decay", "optax.nadamw's default weight_decay is 1e-4, "
                                 "decoupled and lr-scaled", "optax/_src/alias.py:605,730"),
    ("lion", "weight_decay"): ("lion-default-weight-decay", "optax.lion decays by default: weight_decay 1e-3, "
                               "decoupled and lr-scaled", "optax/_src/alias.py:932,1016-1020"),
    ("lamb", "eps"): ("lamb-default-eps", "optax.lamb's default eps is 1e-6 (optax.adam's: 1e-8)",
                      "optax/_src/alias.py:1238"),
    ("adagrad", "initial_accumulator_value"): ("adagrad-initial-accumulator", "optax.adagrad's accumulator starts at "
                                               "0.1 (torch: 0)", "optax/_src/alias.py:331"),
    ("rmsprop", "eps_in_sqrt"): ("rmsprop-eps-in-sqrt", "optax.rmsprop adds eps inside the square root by default, "
                                 "1/sqrt(v + eps) (torch: outside)", "optax/_src/alias.py:1940; transform.py:140"),
}


class OptaxBackend(Adapter):
    name = "optax"
    modules = ("jax", "optax")
    install_hint = "pip install 'wdparity[jax]'"
    Config = OptaxRun
    live_roots, live_label = ("optax",), "optax"
    models_networks = True   # the task's MLP as a Flax-style params tree with a pure apply (optax_network.py)

    def reads_live(self, obj) -> bool:
        from .optax_live import is_optax
        return super().reads_live(obj) or is_optax(obj)

    def read_live(self, obj, model, params):
        from .optax_live import read_live
        return read_live(obj, model, params)

    def snippet(self, config, task):
        from .optax_snippet import optax_snippet
        return optax_snippet(config, task, self.describe)

    def worker_env(self, config: OptaxRun, task: Task) -> dict[str, str]:
        return x64_env(task.dtype)

    def findings(self, config: OptaxRun, task: Task) -> list[dict]:
        """Documented departures from what a reader of the call may expect, each modelled by describe()."""
        out = self._adafactor_findings(config) if config.optimizer == "adafactor" else []
        for (alias, key), (ident, text, source) in DEFAULT_FINDINGS.items():
            if config.optimizer == alias and getattr(config, key) is None:
                out.append({"id": ident, "modelled": True, "text": text, "source": source})
        if config.optimizer == "rmsprop" and config.momentum:
            out.append({"id": "rmsprop-momentum-velocity", "modelled": True,
                        "text": "optax.rmsprop's momentum is a trace after the learning rate: buf = m*buf + lr_t*d "
                                "(the velocity form; torch's RMSprop: buf = m*buf + d, then lr_t*buf)",
                        "source": "optax/_src/alias.py:2040-2045"})
        if config.optimizer == "adadelta" and config.weight_decay:
            out.append({"id": "adadelta-weight-decay-coupled", "modelled": True,
                        "text": "optax.adadelta adds weight_decay*w before scale_by_adadelta: an L2 term on the "
                                "gradient (coupled), unlike adamw's decoupled weight_decay",
                        "source": "optax/_src/alias.py:217-221"})
        if config.optimizer == "lamb" and config.weight_decay:
            out.append({"id": "lamb-decay-inside-trust-ratio", "modelled": True,
                        "text": "optax.lamb adds weight_decay*w to Adam's direction before the trust ratio, which "
                                "scales both: -lr_t*r*(d + lambda*w), r = ||w||/||d + lambda*w|| (Keras's Lamb "
                                "decays w before the ratio)", "source": "optax/_src/alias.py:1295-1300"})
        for t in config.chain or []:
            if t.transform == "clip_by_global_norm":
                out.append({"id": "clip-global-norm-no-eps", "modelled": True,
                            "text": "optax.clip_by_global_norm scales by max_norm/||g|| with no eps, and not at all "
                                    "where ||g|| < max_norm (torch's clip_grad_norm_: max_norm/(||g|| + 1e-6))",
                            "source": "optax/transforms/_clipping.py:96-105"})
        sem = self.describe(config, task)
        if sem.clip is not None and sem.clip.position == "after_coupled_decay" and any(
                r.coupling == "gradient" and not r.via_loss for r in sem.decay):
            out.append({"id": "clip-after-add-decayed-weights", "modelled": True,
                        "text": "a clip after add_decayed_weights clips weight_decay*w with the gradient (torch's "
                                "clip_grad_norm_ before step() never sees its weight_decay)",
                        "source": "optax/transforms/_adding.py:73; optax/transforms/_clipping.py:94-108"})
        if config.penalty and config.penalty.l1:
            out.append({"id": "l1-at-zero-1", "modelled": True, "text": "jax.grad of |w| at w = 0 is +1",
                        "source": "jax/_src/lax/lax.py:4715; https://github.com/jax-ml/jax/issues/37820"})
        name = sem.optimizer.name
        if task.dtype == "float32" and name == "radam":
            out.append({"id": "radam-rectification-float32", "modelled": False, "text": RADAM_FLOAT32,
                        "source": "optax/_src/transform.py:842-847,865-866"})
        if task.dtype == "float32" and name == "nadam":
            out.append({"id": "nadam-bias-correction-float32", "modelled": False,
                        "text": "without x64 (a float32 run) NAdam's bias corrections 1 - b^t are float32 from float32 "
                                "betas (b2 = 0.999: 6.4e-6 relative on the first step), which the neutral NAdam does "
                                "not hold", "source": "optax/tree_utils/_tree_math.py:449"})
        if task.dtype == "float32" and name == "adam":
            out.append({"id": "bias-correction-float32", "modelled": True,
                        "text": "without x64 (a float32 run) Adam's bias corrections 1 - b^t are computed in float32 "
                                "from float32 betas",
                        "source": "optax/tree_utils/_tree_math.py:449"})
        return out

    def describe(self, config: OptaxRun, task: Task) -> Semantics:
        if config.optimizer == "adafactor":   # no chain of its parts is read (optax_adafactor.py)
            (opt, rules), clip = adafactor.describe(config, task), None
        else:
            chain = list(config.chain) if config.chain is not None else alias_chain(config)
            opt, rules, clip = describe_chain(chain, task.schedule.kind)
        if config.penalty:
            rules += config.penalty.rules(l1_at_zero=JAX_L1_AT_ZERO)
        if opt["name"] == "adam":
            opt["bias_correction_dtype"] = bias_correction_dtype(task)
        optimizer = OPTIMIZER_SPECS[opt["name"]](**opt)
        return Semantics(optimizer=optimizer, decay=rules, loss=task.loss, schedule=task.schedule, clip=clip)

    def inherent(self, semantics: Semantics, task: Task) -> Semantics:
        """optax's Adam computes its bias corrections from float32 betas in every float32 run (no x64); its
        Adafactor computes k^(-decay_rate) in float32 in every run (optax/_src/factorized.py:31-32)."""
        semantics = super().inherent(semantics, task)
        if semantics.optimizer.name == "adafactor":
            opt = semantics.optimizer.model_copy(update={"decay_rate_dtype": "float32"})
            return semantics.model_copy(update={"optimizer": opt})
        if semantics.optimizer.name == "adam":
            opt = semantics.optimizer.model_copy(update={"bias_correction_dtype": bias_correction_dtype(task)})
            return semantics.model_copy(update={"optimizer": opt})
        return semantics

    def realize(self, semantics: Semantics, task: Task) -> dict:
        return realize(semantics, task)

    def _adafactor_findings(self, config: OptaxRun) -> list[dict]:
        out = [{"id": "adafactor-decay-rate-float32", "modelled": True,
                "text": "optax.adafactor computes b2_k = 1 - k^(-decay_rate) in float32 even under x64",
                "source": "optax/_src/factorized.py:31-32"}]
        if config.learning_rate is None:
            out.append({"id": "adafactor-no-learning-rate", "modelled": True,
                        "text": "optax.adafactor's default learning_rate None scales by nothing: the step is the "
                                "clipped direction times max(1e-3, rms(w)) alone",
                        "source": "optax/_src/alias.py:225,312-315"})
        if config.weight_decay_rate:
            out.append({"id": "adafactor-weight-decay-unscaled", "modelled": True,
                        "text": "optax.adafactor adds weight_decay_rate*w after the learning rate, the parameter "
                                "scale and the momentum: w -= lambda*w, not scaled by the learning rate",
                        "source": "optax/_src/alias.py:320-325"})
        return out

    # ---------------------------------------------------------------- inside the worker
    record_checks = False   # a jitted step per batch, the stop rule applied to the record afterwards

    def build(self, job: dict, data: dict[str, np.ndarray]) -> SimpleNamespace:
        import jax
        import jax.numpy as jnp
        import optax

        from wdparity.engine import network as net_mod
        from wdparity.spec.network import tensor_scope

        model = net_mod.model_of(data)   # None: the linear model
        tensors = tuple(net_mod.names_of(data))
        with tensor_scope(tensors):      # a network's masks and penalty name its tensors
            run = OptaxRun.model_validate(job["run"])
        task, dtype = job["task"], np.dtype(job["dtype"])
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

        tx = transformation(optax, run, schedule, dtype, tensors)
        if model is None:
            loss_fn = dense_loss(jnp, loss_factor(task["loss"]), run.penalty)
        else:   # the Flax-style params tree and a pure apply (optax_network.py), trained one run at a time
            loss_fn = onet.network_loss(jax, jnp, model, loss_factor(task["loss"]), run.penalty, tensors)

        @jax.jit   # traced once per batch shape (the last batch of an epoch may be short)
        def step(params, opt_state, X, y):
            grads = jax.grad(loss_fn)(params, X, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        # Batches are cut on the host and handed to the jitted step, as from a numpy data loader: an eager
        # jnp gather X[idx] dispatches ~6 primitives op by op, ~1 ms per step on CPU (10x the step itself).
        X, y = np.asarray(data["X_train"], dtype), np.asarray(data["y_train"], dtype).reshape(-1, 1)
        params = dense_params(jnp, data, dtype) if model is None else onet.init_params(jnp, data, dtype)
        return SimpleNamespace(step=step, params=params, opt_state=tx.init(params), X=X, y=y, dtype=dtype,
                               network=model is not None, tensors=tensors)

    def step(self, s: SimpleNamespace, rows: np.ndarray, t: int) -> None:
        s.params, s.opt_state = s.step(s.params, s.opt_state, s.X[rows], s.y[rows])

    def read(self, s: SimpleNamespace):
        if s.network:   # {neutral name: array}, by path in the params tree
            return onet.read(s.params, s.tensors)
        return np.asarray(s.params["weight"]), np.asarray(s.params["bias"])   # recorded flat: (d,) and a scalar

    def finish(self, s: SimpleNamespace) -> None:
        have = onet.leaf_dtype(s.params)
        if have != s.dtype:
            raise RuntimeError(f"optax trained in {have}, not {s.dtype}")

    # ---- grids: runs differing only in learning rates, decay and penalty values train as one jit(vmap) with the
    # chain built from traced scalars (optax_batch.py)
    def batch_key(self, job: dict):
        from .optax_batch import batch_key

        return batch_key(job)

    def train_vectorized(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        from . import optax_batch

        return optax_batch.train(jobs, data)


backend = OptaxBackend()
