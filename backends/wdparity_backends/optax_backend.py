"""The `optax` backend: optax aliases and arbitrary `chain`s of gradient transformations, given as data.

optax is where "coupled vs decoupled" is literally an ordering: `add_decayed_weights` adds
`weight_decay * params` to whatever the updates are at its position in the chain. Before the
optimizer core (`scale_by_adam`, `trace`) it edits the gradient (an L2 penalty); after it, it edits
the step (AdamW), scaled by whatever scaling transforms still follow it. describe() reads that order
and the product of the downstream scalings (optax_vocab.py); realize() writes the chain (or an alias
where exact); optax_jax.py is what runs inside the worker. Every statement about optax 0.2.8 and JAX
0.10.2, with its source and the test that measures it: docs/adapters/optax.md.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import numpy as np

from wdparity.engine.data import loss_factor
from wdparity.run.adapter import Adapter, refuse_frozen, refuse_l1, refuse_optimizer
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import TENSORS, AdamSpec, DecayRule, Semantics, SgdSpec, Task

from .optax_jax import dense_loss, dense_params, require_x64, transformation, x64_env
from .optax_vocab import OptaxRun, describe_chain

JAX_L1_AT_ZERO = 1.0   # jax.grad(jnp.abs)(0.0) == 1.0 (lax.py:4715); tests/test_optax_backend.py measures it


def _bias_correction_dtype(task: Task) -> Optional[str]:
    """Adam's 1 - b^t: `decay**count` with a Python-float decay and an int32 count is computed in JAX's default
    float, float32 without x64 (a float32 run), float64 with it (optax/tree_utils/_tree_math.py:449)."""
    return "float32" if task.dtype == "float32" else None


class OptaxBackend(Adapter):
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
            opt, rules = describe_chain(list(config.chain), task.schedule.kind)
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
        refuse_optimizer(semantics, ("sgd", "adam"), "optax")
        opt, rules = semantics.optimizer, list(semantics.decay)
        refuse_frozen(semantics, "optax.transforms.freeze / set_to_zero, optax/transforms/_freezing.py:29")
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
        refuse_l1(l1, JAX_L1_AT_ZERO, "optax (jax.grad)")
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
    record_checks = False   # a jitted step per batch, the stop rule applied to the record afterwards

    def build(self, job: dict, data: dict[str, np.ndarray]) -> SimpleNamespace:
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
        return SimpleNamespace(step=step, params=params, opt_state=tx.init(params), X=X, y=y, dtype=dtype)

    def step(self, s: SimpleNamespace, rows: np.ndarray, t: int) -> None:
        s.params, s.opt_state = s.step(s.params, s.opt_state, s.X[rows], s.y[rows])

    def read(self, s: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(s.params["weight"]), np.asarray(s.params["bias"])   # recorded flat: (d,) and a scalar

    def finish(self, s: SimpleNamespace) -> None:
        if s.params["weight"].dtype != s.dtype:
            raise RuntimeError(f"optax trained in {s.params['weight'].dtype}, not {s.dtype}")

    # ---- grids: runs differing only in learning rates, decay and penalty values train as one jit(vmap) with the
    # chain built from traced scalars (optax_batch.py)
    def batch_key(self, job: dict):
        from .optax_batch import batch_key

        return batch_key(job)

    def train_vectorized(self, jobs: list[dict], data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        from . import optax_batch

        return optax_batch.train(jobs, data)


backend = OptaxBackend()
