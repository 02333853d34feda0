"""The `mxnet` backend: MXNet 1.9.1 Gluon (`gluon.Trainer` with "sgd", "nag" or "adam"), in its own venv.

Why it exists: d2l's weight-decay chapter (seed 002) was written in MXNet Gluon, where weight decay
is the optimizer's `wd` times each Parameter's `wd_mult`, and the loss gradient is the *sum* over the
batch rescaled by `trainer.step(batch_size)`. MXNet 1.9.1 (last release, project retired) needs
NumPy < 1.24, so its worker runs under a separate venv (`wdparity setup mxnet`, see mxnet_setup.py);
this module is imported both there (NumPy 1.23) and in the core (NumPy 2): module-level imports are
numpy, pydantic and the wdparity core only; mxnet is imported inside train().

Every statement it makes about MXNet 1.9.1, with its source (the installed package and the C++ source at
the release tag) and the test that measures it: docs/adapters/mxnet.md.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Literal, Optional

import numpy as np
from pydantic import model_validator

from wdparity.run.adapter import Adapter, check_keywords, refuse_frozen, refuse_l1, refuse_optimizer
from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError
from wdparity.spec.models import AdamSpec, NonNeg, Penalty, Positive, Semantics, SgdSpec, Strict, Task, Unit, check_tensors, fail
from wdparity.spec.rules import coefficients, penalty_terms, rules_from_coefficients

from .mxnet_setup import default_venv, venv_python

# Defaults of the installed release: Optimizer.__init__ (optimizer.py:103-110: learning_rate None and no
# scheduler -> 0.01), Adam.__init__ (optimizer.py:1594: learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8).
DEFAULT_LR = {"sgd": 0.01, "nag": 0.01, "adam": 0.001}
# abs backward is unary_bwd<mshadow_op::sign> (src/operator/tensor/elemwise_unary_op_basic.cc:723), sign(0) = 0;
# measured by the battery's l1 cases at init = "zeros" (sign(0) = 1 would move them by 0.67 relative).
L1_AT_ZERO = 0.0
OWN = {"sgd": ("momentum", "lazy_update"), "nag": ("momentum",), "adam": ("beta1", "beta2", "epsilon", "lazy_update")}


class MxnetRun(Strict):
    """A Gluon Trainer's optimizer and its optimizer_params, keyword names as in MXNet 1.9.1."""

    optimizer: Literal["sgd", "nag", "adam"]
    learning_rate: Optional[Positive] = None
    momentum: Optional[Unit] = None
    wd: Optional[NonNeg] = None
    beta1: Optional[Unit] = None
    beta2: Optional[Unit] = None
    epsilon: Optional[Positive] = None
    rescale_grad: Optional[Positive] = None
    lazy_update: Optional[bool] = None
    clip_gradient: Optional[float] = None
    wd_mult: Optional[dict[str, NonNeg]] = None
    penalty: Optional[Penalty] = None

    @model_validator(mode="after")
    def _consistent(self):
        check_keywords(self, self.optimizer, OWN, 'MXNet\'s "{optimizer}" optimizer')
        if self.clip_gradient is not None:
            raise fail("clip_gradient", self.clip_gradient,
                       "is not modelled: gradient clipping has no neutral semantics (remove the key)")
        if self.wd_mult is not None:
            check_tensors("wd_mult", list(self.wd_mult))
        return self


class MxnetBackend(Adapter):
    name = "mxnet"
    modules = ("mxnet",)
    install_hint = "run `wdparity setup mxnet` to create its venv"
    Config = MxnetRun
    hyper_dtype = "float32"

    def default_python(self) -> Optional[str]:
        exe = venv_python(default_venv())
        return str(exe) if exe.exists() else None

    def findings(self, config: MxnetRun, task: Task) -> list[dict]:
        """Documented departures on this run (describe()'s docstring has the derivations)."""
        out = [{"id": "hyper-float32", "modelled": True,
                "text": "every hyperparameter reaches the C++ kernel as a C float, even for float64 weights",
                "source": "mxnet/src/operator/optimizer_op-inl.h:56-130, 566-572, 1251-1259"}]
        if task.dtype == "float64":
            out.append({"id": "stof-rounding", "modelled": False,
                        "text": "scalar hyperparameters are parsed from str() by dmlc::stof, not always correctly "
                                "rounded (Adam's default lr_t is off by an ulp of float32)",
                        "source": "mxnet/include/dmlc/strtonum.h:99-250"})
        if config.optimizer == "nag" and (config.momentum or 0) > 0 and (config.wd or 0) > 0:
            out.append({"id": "nag-wd-updated-weight", "modelled": False,
                        "text": "nag_mom_update runs in place and its momentum decays the already-updated weight",
                        "source": "mxnet/python/mxnet/optimizer/optimizer.py:1488; optimizer_op-inl.h:1076-1080"})
        return out

    def describe(self, config: MxnetRun, task: Task) -> Semantics:
        """What a Gluon Trainer with these optimizer_params does (MXNet 1.9.1): SGD/NAG momentum in the velocity
        form with wd added to the gradient, Adam with epsilon before the bias correction, wd/r and eps/r under a
        user rescale_grad r, per-tensor wd = wd * wd_mult, every hyperparameter a C float. The derivations, each
        with its source line and the test that measures it: docs/adapters/mxnet.md."""
        opt = config.optimizer
        r = config.rescale_grad if config.rescale_grad is not None else 1.0
        lr = config.learning_rate if config.learning_rate is not None else DEFAULT_LR[opt]
        if task.schedule.kind == "step" and task.schedule.factor > 1:
            raise InputError("", "schedule.factor", "must be <= 1 for MXNet's FactorScheduler "
                             "(lr_scheduler.py:107-108 raises ValueError)", task.schedule.factor)
        if opt in ("sgd", "nag"):
            momentum = config.momentum or 0.0
            nesterov = opt == "nag" and momentum > 0
            form = "velocity" if momentum > 0 else "buffer"   # identical forms without momentum
            optimizer = SgdSpec(name="sgd", lr=lr * r, momentum=momentum, nesterov=nesterov, momentum_form=form)
        else:
            b1 = config.beta1 if config.beta1 is not None else 0.9
            b2 = config.beta2 if config.beta2 is not None else 0.999
            eps = config.epsilon if config.epsilon is not None else 1e-8
            optimizer = AdamSpec(name="adam", lr=lr, betas=[b1, b2], eps=eps / r, eps_placement="uncorrected")
        wd = config.wd or 0.0
        mult = {"weight": 1.0, "bias": 1.0, **(config.wd_mult or {})}
        coef = {k: wd * m / r for k, m in mult.items()}   # SGD and Adam alike: wd/r
        decay = rules_from_coefficients(coef)
        if config.penalty is not None:
            decay += config.penalty.rules(l1_at_zero=L1_AT_ZERO)
        # every hyperparameter reaches the C++ kernel as a C float, even for float64 weights
        return Semantics(optimizer=optimizer, decay=decay, loss=task.loss, schedule=task.schedule, hyper_dtype="float32")

    def realize(self, semantics: Semantics, task: Task) -> dict:
        refuse_optimizer(semantics, ("sgd", "adam"), "MXNet")
        refuse_frozen(semantics, "grad_req = 'null', mxnet/gluon/parameter.py:94-96; wd_mult = 0 only stops the decay")
        if semantics.hyper_dtype != self.hyper_dtype:
            raise Inexpressible("MXNet hands every hyperparameter to its kernels as a C float; nearest: the same "
                                "keys, with lr, wd, momentum, betas and eps rounded to float32 (~1e-8 relative)")
        opt = semantics.optimizer
        if isinstance(opt, SgdSpec):
            if opt.momentum > 0 and opt.momentum_form != "velocity":
                raise Inexpressible(
                    "MXNet's SGD/NAG momentum is the velocity form (mom = momentum*mom - lr*g; w += mom); nearest: "
                    f"optimizer = \"{'nag' if opt.nesterov else 'sgd'}\", momentum = {opt.momentum} "
                    "(identical while the learning rate is constant, differs when the schedule changes lr)")
            if opt.dampening:
                raise Inexpressible(f"MXNet's SGD has no dampening; nearest: momentum = {opt.momentum} without "
                                    f"dampening (the step grows by 1/(1-{opt.dampening}))")
            run = {"optimizer": "nag" if opt.nesterov else "sgd", "learning_rate": opt.lr}
            if opt.momentum > 0:
                run["momentum"] = opt.momentum
        else:
            if opt.eps_placement != "uncorrected":
                raise Inexpressible(
                    f"MXNet's Adam adds epsilon before bias correction; nearest: optimizer = \"adam\", epsilon = "
                    f"{opt.eps} (the step differs while sqrt(1-beta2^t) is far from 1)")
            run = {"optimizer": "adam", "learning_rate": opt.lr, "beta1": opt.betas[0], "beta2": opt.betas[1],
                   "epsilon": opt.eps}
        l1 = [rule for rule in semantics.decay if rule.norm == "l1"]
        for rule in semantics.decay:
            if rule.coupling != "gradient":
                raise Inexpressible("MXNet 1.9.1 has no decoupled weight decay (no AdamW in mxnet.optimizer); "
                                    f"nearest: wd = {rule.coefficient} (coupled: added to the gradient)")
        coef = coefficients(semantics.decay, "l2")
        if len(l1) > 1:
            raise Inexpressible("one `penalty` table holds one L1 term; nearest: penalty = {l1 = "
                                f"{l1[0].coefficient}, params = {l1[0].params}}} (the other L1 terms are lost)")
        refuse_l1(l1, L1_AT_ZERO, "MXNet")
        if coef["weight"] == coef["bias"] and coef["weight"] > 0:
            run["wd"] = coef["weight"]
        elif coef["weight"] > 0 or coef["bias"] > 0:
            top = max(coef.values())
            mult = {k: c / top for k, c in coef.items()}
            if any(top * m != coef[k] for k, m in mult.items()):   # keep wd*wd_mult exact
                top, mult = 1.0, dict(coef)
            run["wd"] = top
            run["wd_mult"] = {k: m for k, m in mult.items() if m != 1.0}
        if l1:
            run["penalty"] = {"l1": l1[0].coefficient, "params": list(l1[0].params)}
        return run

    def worker_env(self, config: MxnetRun, task: Task) -> dict[str, str]:
        # One engine thread and the synchronous engine: deterministic, and no idle pools for tiny models.
        return {"MXNET_ENGINE_TYPE": "NaiveEngine", "MXNET_CPU_WORKER_NTHREADS": "1"}

    def versions(self) -> dict[str, str]:
        out = super().versions()
        out["numpy"] = np.__version__
        return out

    # ---- inside the worker (the mxnet venv)
    record_checks = False   # as a Gluon loop runs: every step, the stop rule applied to the record afterwards

    def build(self, job: dict, data: dict[str, np.ndarray]) -> SimpleNamespace:
        import mxnet as mx
        from mxnet import autograd, gluon, nd

        task, run, dtype = job["task"], job["run"], job["dtype"]
        opt = run["optimizer"]
        d = int(data["w0"].shape[0])
        net = gluon.nn.Dense(1, in_units=d)
        net.initialize(ctx=mx.cpu())
        net.cast(dtype)
        net.weight.set_data(nd.array(data["w0"].reshape(1, d), dtype=dtype))
        net.bias.set_data(nd.array(np.asarray(data["b0"]).reshape(1), dtype=dtype))
        for name, mult in (run.get("wd_mult") or {}).items():
            net.collect_params(f".*{name}").setattr("wd_mult", mult)
        net.hybridize()

        lr = run.get("learning_rate")
        lr = lr if lr is not None else DEFAULT_LR[opt]
        params = {"learning_rate": lr}
        for key in ("momentum", "wd", "beta1", "beta2", "epsilon", "rescale_grad", "lazy_update"):
            if run.get(key) is not None:
                params[key] = run[key]
        schedule = task.get("schedule") or {"kind": "constant"}
        if schedule["kind"] == "step":
            # stop_factor_lr=0: the default 1e-8 floor would clamp a long decay (lr_scheduler.py:122).
            params["lr_scheduler"] = mx.lr_scheduler.FactorScheduler(
                step=int(schedule["every"]), factor=float(schedule["factor"]), stop_factor_lr=0.0, base_lr=lr)
        elif schedule["kind"] == "cosine":
            class ZeroBasedCosine(mx.lr_scheduler.CosineScheduler):
                """MXNet's cosine formula counted from the first update (num_update starts at 1)."""

                def __call__(self, num_update):
                    return super().__call__(num_update - 1)

            params["lr_scheduler"] = ZeroBasedCosine(
                max_update=int(schedule["total"]), base_lr=lr, final_lr=float(schedule.get("floor", 0.0)) * lr)
        trainer = gluon.Trainer(net.collect_params(), opt, params)
        # Gluon's L2Loss is weight/2 * (yhat - y)^2 per sample: "half_mse" weight 1, "mse" weight 2.
        loss_fn = gluon.loss.L2Loss(weight=1.0 if task["loss"] == "half_mse" else 2.0)
        penalty = penalty_terms(Penalty.model_validate(run["penalty"])) if run.get("penalty") else []
        return SimpleNamespace(nd=nd, autograd=autograd, net=net, trainer=trainer, loss_fn=loss_fn, penalty=penalty,
                               X=data["X_train"].astype(dtype), y=data["y_train"].astype(dtype), dtype=dtype)

    def step(self, s: SimpleNamespace, rows: np.ndarray, t: int) -> None:
        xb, yb = s.nd.array(s.X[rows], dtype=s.dtype), s.nd.array(s.y[rows], dtype=s.dtype)
        with s.autograd.record():
            loss = s.loss_fn(s.net(xb), yb)
            if s.penalty:
                # d2l's from-scratch form: the penalty added to every sample's loss; the batch sum in
                # backward and step(batch_size) cancel, leaving its plain gradient.
                loss = loss + self._penalty(s.nd, s.net, s.penalty)
        loss.backward()
        s.trainer.step(len(rows))      # the short last batch is rescaled by its own size

    def read(self, s: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
        return s.net.weight.data().asnumpy(), s.net.bias.data().asnumpy()

    @staticmethod
    def _penalty(nd, net, terms: list[tuple[str, str, float]]):
        """The penalty's terms summed tensor by tensor (L2 then L1 of each), then over the tensors."""
        total = None
        for _, group in itertools.groupby(terms, key=lambda term: term[0]):
            term = None
            for name, kind, coef in group:
                w = getattr(net, name).data()
                part = coef * ((w ** 2).sum() if kind == "l2" else nd.abs(w).sum())
                term = part if term is None else term + part
            total = term if total is None else total + term
        return total


backend = MxnetBackend()
