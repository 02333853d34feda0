"""The `mxnet` backend: MXNet 1.9.1 Gluon (`gluon.Trainer` with an optimizer of mxnet.optimizer), in its own venv.

Why it exists: d2l's weight-decay chapter (seed 002) was written in MXNet Gluon, where weight decay
is the optimizer's `wd` times each Parameter's `wd_mult`, and the loss gradient is the *sum* over the
batch rescaled by `trainer.step(batch_size)`. MXNet 1.9.1 (last release, project retired) needs
NumPy < 1.24, so its worker runs under a separate venv (`wdparity setup mxnet`, see mxnet_setup.py);
this module is imported both there (NumPy 1.23) and in the core (NumPy 2): module-level imports are
numpy, pydantic and the wdparity core only; mxnet is imported inside build(). The vocabulary (registry
names, keywords, defaults, refusals): mxnet_vocab.py.

Every statement it makes about MXNet 1.9.1, with its source (the installed package and the C++ source at
the release tag) and the test that measures it: docs/adapters/mxnet.md.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Optional

import numpy as np

from wdparity.run.adapter import Adapter, refuse_frozen, refuse_l1, refuse_optimizer
from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError
from wdparity.spec.models import (TENSORS, AdadeltaSpec, AdagradSpec, AdamSpec, ConstantSchedule, LionSpec, Penalty,
                                  RmspropSpec, Semantics, SgdSpec, Task)
from wdparity.spec.rules import coefficients, penalty_terms, rules_from_coefficients

from .mxnet_setup import default_venv, venv_python
from .mxnet_vocab import DEFAULT_LR, FLOAT32_STATE, KEYWORDS, MxnetRun

# abs backward is unary_bwd<mshadow_op::sign> (src/operator/tensor/elemwise_unary_op_basic.cc:723), sign(0) = 0;
# measured by the battery's l1 cases at init = "zeros" (sign(0) = 1 would move them by 0.67 relative).
L1_AT_ZERO = 0.0
COUPLED, DECOUPLED_LR, DECOUPLED_NONE = ("gradient", None), ("decoupled", "lr"), ("decoupled", "none")
# How each optimizer applies wd (times wd_mult): the derivations are in describe()'s docstring.
WD_FORM = {"sgd": COUPLED, "ccsgd": COUPLED, "nag": COUPLED, "adam": COUPLED, "rmsprop": COUPLED,
           "adagrad": DECOUPLED_LR, "adadelta": DECOUPLED_NONE, "signum": COUPLED, "signsgd": DECOUPLED_LR}
FORM_WORDS = {COUPLED: "coupled (wd*w added to the gradient)", DECOUPLED_LR: "decoupled, scaled by lr_t (w -= lr_t*wd*w)",
              DECOUPLED_NONE: "decoupled and unscaled (w -= wd*w)", ("decoupled", "schedule"): "decoupled, scaled by "
              "the schedule's multiplier"}
NEUTRAL = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "lion")


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
        opt = config.optimizer
        out = [{"id": "hyper-float32", "modelled": True,
                "text": "every hyperparameter reaches the C++ kernel as a C float, even for float64 weights",
                "source": "mxnet/src/operator/optimizer_op-inl.h:56-130, 566-572, 1251-1259"}]
        if task.dtype == "float64":
            out.append({"id": "stof-rounding", "modelled": False,
                        "text": "scalar hyperparameters are parsed from str() by dmlc::stof, not always correctly "
                                "rounded (Adam's default lr_t is off by an ulp of float32)",
                        "source": "mxnet/include/dmlc/strtonum.h:99-250"})
        if opt == "nag" and (config.momentum or 0) > 0 and (config.wd or 0) > 0:
            out.append({"id": "nag-wd-updated-weight", "modelled": False,
                        "text": "nag_mom_update runs in place and its momentum decays the already-updated weight",
                        "source": "mxnet/python/mxnet/optimizer/optimizer.py:1488; optimizer_op-inl.h:1076-1080"})
        if opt == "adadelta" and (config.learning_rate is not None or task.schedule.kind != "constant"):
            out.append({"id": "adadelta-no-learning-rate", "modelled": True,
                        "text": "AdaDelta never reads the learning rate or the lr_scheduler: the step is the "
                                "AdaDelta delta itself (lr 1, constant)", "source": "mxnet/optimizer/optimizer.py:1801-1823"})
        form = self._wd_form(config)
        if (config.wd or 0) > 0 and form != COUPLED:
            out.append({"id": f"{opt}-wd-{form[0]}", "modelled": True,
                        "text": f"{opt}'s wd is {FORM_WORDS[form]}, not an L2 term of the gradient",
                        "source": {"adagrad": "mxnet/optimizer/optimizer.py:1685-1687", "adadelta":
                                   "mxnet/optimizer/optimizer.py:1823"}.get(opt, "optimizer_op-inl.h:2352-2354")})
        return out

    @staticmethod
    def _wd_form(config: MxnetRun) -> tuple:
        signsgd = config.optimizer == "signum" and config.value("momentum") == 0
        return WD_FORM["signsgd" if signsgd else config.optimizer]

    def describe(self, config: MxnetRun, task: Task) -> Semantics:
        """What a Gluon Trainer with these optimizer_params does (MXNet 1.9.1). wd is wd * wd_mult per tensor;
        r the user's rescale_grad, relative to the batch mean. SGD/NAG: velocity-form momentum, wd/r coupled,
        lr*r. Adam: epsilon before the bias correction, eps/r, wd/r coupled. RMSProp (rmsprop_update): eps inside
        the root, eps/r^2, wd/r coupled; centered (rmspropalex_update): gamma2 a velocity-form momentum. AdaGrad:
        history from 0, eps inside the root (eps/r^2), wd*w added after the division: decoupled, scaled by lr.
        AdaDelta: no learning rate nor schedule (lr 1, constant), wd*w subtracted unscaled: decoupled, scale none.
        Signum: Lion with beta1 = beta2 = momentum, wd/r coupled, wd_lh decoupled (lr-scaled, on every tensor, no
        wd_mult); with momentum 0 (signsgd_update) sign(g) and wd decoupled, scaled by lr. Every hyperparameter
        a C float. Each derivation, its source line and the test that measures it: docs/adapters/mxnet.md."""
        opt, v = config.optimizer, config.value
        if task.dtype == "float64" and opt in FLOAT32_STATE:
            raise InputError("", "dtype", f"must be \"float32\" for MXNet's {opt}: its state is created in float32 "
                             f"({FLOAT32_STATE[opt]}: zeros() without dtype) and the update raises MXNetError for "
                             "float64 weights", task.dtype)
        if task.schedule.kind == "step" and task.schedule.factor > 1:
            raise InputError("", "schedule.factor", "must be <= 1 for MXNet's FactorScheduler "
                             "(lr_scheduler.py:107-108 raises ValueError)", task.schedule.factor)
        r = config.rescale_grad if config.rescale_grad is not None else 1.0
        lr = config.learning_rate if config.learning_rate is not None else DEFAULT_LR[opt]
        mult = {"weight": 1.0, "bias": 1.0, **(config.wd_mult or {})}
        per = {k: (config.wd or 0.0) * m for k, m in mult.items()}
        coupled, decoupled, schedule = {k: c / r for k, c in per.items()}, {}, task.schedule
        form = self._wd_form(config)
        if form != COUPLED:
            coupled, decoupled = {}, per
        if opt in ("sgd", "ccsgd", "nag"):
            momentum = v("momentum")
            nesterov = opt == "nag" and momentum > 0
            optimizer = SgdSpec(name="sgd", lr=lr * r, momentum=momentum, nesterov=nesterov,
                                momentum_form="velocity" if momentum > 0 else "buffer")  # identical without momentum
        elif opt == "adam":
            optimizer = AdamSpec(name="adam", lr=lr, betas=[v("beta1"), v("beta2")], eps=v("epsilon") / r,
                                 eps_placement="uncorrected")
        elif opt == "rmsprop":
            centered = bool(v("centered"))
            momentum = v("gamma2") if centered else 0.0
            optimizer = RmspropSpec(name="rmsprop", lr=lr, rho=v("gamma1"), eps=v("epsilon") / r ** 2, eps_in_sqrt=True,
                                    centered=centered, momentum=momentum,
                                    momentum_form="velocity" if momentum > 0 else "buffer")
        elif opt == "adagrad":
            optimizer = AdagradSpec(name="adagrad", lr=lr, eps=v("eps") / r ** 2, eps_in_sqrt=True)
        elif opt == "adadelta":
            optimizer, schedule = AdadeltaSpec(name="adadelta", lr=1.0, rho=v("rho"), eps=v("epsilon")), ConstantSchedule()
        else:   # signum
            optimizer = LionSpec(name="lion", lr=lr, betas=[v("momentum")] * 2)
            if form == COUPLED:
                decoupled = {k: v("wd_lh") for k in TENSORS}
        decay = rules_from_coefficients(coupled) + rules_from_coefficients(decoupled, coupling="decoupled", scale=form[1]
                                                                           or "lr")
        if config.penalty is not None:
            decay += config.penalty.rules(l1_at_zero=L1_AT_ZERO)
        # every hyperparameter reaches the update as a C float, even for float64 weights
        return Semantics(optimizer=optimizer, decay=decay, loss=task.loss, schedule=schedule, hyper_dtype="float32")

    def realize(self, semantics: Semantics, task: Task) -> dict:
        refuse_optimizer(semantics, NEUTRAL, "MXNet")
        refuse_frozen(semantics, "grad_req = 'null', mxnet/gluon/parameter.py:94-96; wd_mult = 0 only stops the decay")
        if semantics.hyper_dtype != self.hyper_dtype:
            raise Inexpressible("MXNet hands every hyperparameter to its kernels as a C float; nearest: the same "
                                "keys, with lr, wd, momentum, betas and eps rounded to float32 (~1e-8 relative)")
        run = _native_optimizer(semantics)
        native = run["optimizer"]
        if task.dtype == "float64" and native in FLOAT32_STATE:
            raise Inexpressible(f"MXNet's {native} creates its state in float32 ({FLOAT32_STATE[native]}) and fails "
                                "for float64 weights; nearest: the same run in float32")
        form = WD_FORM["signsgd" if native == "signum" and run["momentum"] == 0 else native]
        lh = native == "signum" and form == COUPLED            # Signum's wd_lh: decoupled, lr-scaled
        l1 = [rule for rule in semantics.decay if rule.norm == "l1"]
        for rule in semantics.decay:
            got = (rule.coupling, rule.effective_scale)
            if rule.norm == "l2" and got != form and not (lh and got == DECOUPLED_LR):
                extra = " (no AdamW in mxnet.optimizer)" if form == COUPLED else ""
                raise Inexpressible(f"MXNet's {native} applies wd {FORM_WORDS[form]}{extra}, not "
                                    f"{FORM_WORDS[got]}; nearest: wd = {rule.coefficient}, applied that way")
        rules = [rule for rule in semantics.decay if rule.norm == "l2" and (rule.coupling, rule.effective_scale) == form]
        coef = coefficients(rules, "l2", form[0])
        if len(l1) > 1:
            raise Inexpressible("one `penalty` table holds one L1 term; nearest: penalty = {l1 = "
                                f"{l1[0].coefficient}, params = {l1[0].params}}} (the other L1 terms are lost)")
        refuse_l1(l1, L1_AT_ZERO, "MXNet")
        if lh:
            decoupled = coefficients([rule for rule in semantics.decay if rule.norm == "l2"], "l2", "decoupled")
            if decoupled["weight"] != decoupled["bias"]:
                raise Inexpressible("Signum's wd_lh is one number for every parameter (wd_mult does not scale it, "
                                    f"optimizer.py:725-726); nearest: wd_lh = {max(decoupled.values())} on both")
            if decoupled["weight"]:
                run["wd_lh"] = decoupled["weight"]
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
        for key in ("wd", "rescale_grad", *sorted({k for keys in KEYWORDS.values() for k in keys} - {"learning_rate"})):
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


def _native_optimizer(semantics: Semantics) -> dict:
    """The optimizer and its own keywords for a neutral optimizer (decay aside), or Inexpressible naming why."""
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
        return run
    if isinstance(opt, AdamSpec):
        if opt.eps_placement != "uncorrected":
            raise Inexpressible(
                f"MXNet's Adam adds epsilon before bias correction; nearest: optimizer = \"adam\", epsilon = "
                f"{opt.eps} (the step differs while sqrt(1-beta2^t) is far from 1)")
        if opt.amsgrad:
            raise Inexpressible("MXNet's Adam has no AMSGrad (no such keyword, optimizer.py:1594); nearest: "
                                "optimizer = \"adam\" (v itself, not its running maximum)")
        if opt.bias_correction_dtype:
            raise Inexpressible("MXNet computes Adam's bias corrections in Python floats (optimizer.py:1617-1619); "
                                "nearest: the same run with exact corrections (~1e-7 relative apart)")
        return {"optimizer": "adam", "learning_rate": opt.lr, "beta1": opt.betas[0], "beta2": opt.betas[1],
                "epsilon": opt.eps}
    if isinstance(opt, RmspropSpec):
        if not opt.eps_in_sqrt:
            raise Inexpressible(f"MXNet's RMSProp adds epsilon inside the root, sqrt(n + epsilon) (optimizer_op-inl.h:"
                                f"2071, 1976-1977); nearest: epsilon = {opt.eps} inside it")
        if opt.initial_scale or opt.bias_correction:
            raise Inexpressible("MXNet's RMSProp starts its averages at 0 and does not correct them "
                                "(optimizer.py:1733-1740); nearest: the same run with n_0 = 0, uncorrected")
        if opt.momentum > 0 and not opt.centered:
            raise Inexpressible("MXNet's non-centered RMSProp has no momentum (rmsprop_update; gamma2 is read only "
                                f"with centered = true, optimizer.py:1751-1752); nearest: momentum {opt.momentum} dropped")
        if opt.momentum > 0 and opt.momentum_form != "velocity":
            raise Inexpressible("MXNet's centered RMSProp momentum is the velocity form (delta = gamma2*delta - "
                                f"lr*d; w += delta); nearest: gamma2 = {opt.momentum} (differs when lr changes)")
        run = {"optimizer": "rmsprop", "learning_rate": opt.lr, "gamma1": opt.rho, "epsilon": opt.eps}
        return {**run, "centered": True, "gamma2": opt.momentum} if opt.centered else run
    if isinstance(opt, AdagradSpec):
        if not opt.eps_in_sqrt or opt.initial_accumulator or opt.lr_decay:
            raise Inexpressible("MXNet's AdaGrad starts its history at 0, adds eps inside the root, "
                                "sqrt(history + eps), and has no lr_decay (optimizer.py:1662-1687); nearest: "
                                f"eps = {opt.eps + opt.initial_accumulator} inside the root, without lr_decay")
        return {"optimizer": "adagrad", "learning_rate": opt.lr, "eps": opt.eps}
    if isinstance(opt, AdadeltaSpec):
        if opt.lr != 1.0 or semantics.schedule.kind != "constant":
            raise Inexpressible("MXNet's AdaDelta has no learning rate: it never reads lr nor the lr_scheduler "
                                "(optimizer.py:1801-1823); nearest: optimizer = \"adadelta\" (lr 1, constant)")
        return {"optimizer": "adadelta", "rho": opt.rho, "epsilon": opt.eps}
    b1, b2 = opt.betas      # lion
    if b1 != b2:
        raise Inexpressible("MXNet's Signum is Lion with beta1 = beta2 = momentum (one state: the sign of the new "
                            f"momentum, optimizer_op-inl.h:2421-2431); nearest: momentum = {b1}")
    return {"optimizer": "signum", "learning_rate": opt.lr, "momentum": b1}


backend = MxnetBackend()
