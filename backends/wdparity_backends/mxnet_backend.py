"""The `mxnet` backend: MXNet 1.9.1 Gluon (`gluon.Trainer` with an optimizer of mxnet.optimizer), in its own venv.

Why it exists: d2l's weight-decay chapter (seed 002) was written in MXNet Gluon, where weight decay
is the optimizer's `wd` times each Parameter's `wd_mult`, and the loss gradient is the *sum* over the
batch rescaled by `trainer.step(batch_size)`. MXNet 1.9.1 (last release, project retired) needs
NumPy < 1.24, so its worker runs under a separate venv (`wdparity setup mxnet`, see mxnet_setup.py);
this module is imported both there (NumPy 1.23) and in the core (NumPy 2): module-level imports are
numpy, pydantic and the wdparity core only; mxnet is imported inside build(). The vocabulary (registry
names, keywords, defaults, refusals): mxnet_vocab.py; realize()'s pieces (optimizer, penalty, clip_gradient):
mxnet_realize.py; networks (`[task] model`: the Gluon MLP, its Parameter names, wd_mult by regex): mxnet_network.py.

Every statement it makes about MXNet 1.9.1, with its source (the installed package and the C++ source at
the release tag) and the test that measures it: docs/adapters/mxnet.md.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Optional

import numpy as np
from pydantic_core import PydanticCustomError

from wdparity.run.adapter import Adapter, refuse_frozen, refuse_l1, refuse_optimizer
from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError
from wdparity.spec.models import (
    AdadeltaSpec,
    AdagradSpec,
    AdamSpec,
    Clip,
    ConstantSchedule,
    LambSpec,
    LionSpec,
    Penalty,
    RmspropSpec,
    Semantics,
    SgdSpec,
    Task,
)
from wdparity.spec.rules import coefficients, penalty_terms, rules_from_coefficients

from . import mxnet_network
from .mxnet_network import collect_params_table, network_refusal, wd_mults
from .mxnet_realize import CLIPS_WITH_WD, clip_position, native_optimizer, penalty_table, realize_clip
from .mxnet_setup import default_venv, venv_python
from .mxnet_vocab import DEFAULT_LR, FLOAT32_DIRECTION, FLOAT32_STATE, KEYWORDS, MxnetRun

# abs backward is unary_bwd<mshadow_op::sign> (src/operator/tensor/elemwise_unary_op_basic.cc:723), sign(0) = 0;
# measured by the battery's l1 cases at init = "zeros" (sign(0) = 1 would move them by 0.67 relative).
L1_AT_ZERO = 0.0
COUPLED, DECOUPLED_LR, DECOUPLED_NONE = ("gradient", None), ("decoupled", "lr"), ("decoupled", "none")
# How each optimizer applies wd (times wd_mult): the derivations are in describe()'s docstring.
WD_FORM = {"sgd": COUPLED, "ccsgd": COUPLED, "nag": COUPLED, "adam": COUPLED, "rmsprop": COUPLED,
           "adagrad": DECOUPLED_LR, "adadelta": DECOUPLED_NONE, "signum": COUPLED, "signsgd": DECOUPLED_LR,
           "lamb": DECOUPLED_LR}   # LAMB's: inside the trust ratio (LambSpec decay_placement "inside_trust_ratio")
FORM_WORDS = {COUPLED: "coupled (wd*w added to the gradient)", DECOUPLED_LR: "decoupled, scaled by lr_t (w -= lr_t*wd*w)",
              DECOUPLED_NONE: "decoupled and unscaled (w -= wd*w)", ("decoupled", "schedule"): "decoupled, scaled by "
              "the schedule's multiplier"}
NEUTRAL = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "lion", "lamb")
LAMB_WD = ("inside the trust ratio (u = d + wd*w, the step -lr_t*r*u with r = ||w||/||u||, multi_lamb.cc:66-67, "
           "93-108)")


class MxnetBackend(Adapter):
    name = "mxnet"
    modules = ("mxnet",)
    install_hint = "run `wdparity setup mxnet` to create its venv"
    Config = MxnetRun
    hyper_dtype = "float32"
    models_networks = True   # the Gluon MLP of mxnet_network.py

    def snippet(self, config, task):
        from .mxnet_snippet import snippet
        return snippet(config, task)

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
        if opt == "lamb":
            out.append({"id": "lamb-corrections-float32-betas", "modelled": False,
                        "text": "LAMB's bias corrections 1 - beta^t are powers of the C-float betas (the neutral "
                                "LAMB's of the betas as given): ~7e-6 relative at beta2 = 0.999",
                        "source": "src/operator/contrib/multi_lamb.cc:59-65"})
        if task.dtype == "float64" and opt in FLOAT32_DIRECTION:
            out.append({"id": "lamb-float32-direction", "modelled": False,
                        "text": "Gluon updates LAMB's tensors together through multi_lamb_update, which keeps the "
                                "direction u and the norms ||w||, ||u|| in float32 even for float64 weights",
                        "source": FLOAT32_DIRECTION[opt]})
        if opt == "nag" and (config.momentum or 0) > 0 and (config.wd or 0) > 0:
            out.append({"id": "nag-wd-updated-weight", "modelled": False,
                        "text": "nag_mom_update runs in place and its momentum decays the already-updated weight",
                        "source": "mxnet/python/mxnet/optimizer/optimizer.py:1488; optimizer_op-inl.h:1076-1080"})
        if opt == "adadelta" and (config.learning_rate is not None or task.schedule.kind != "constant"):
            out.append({"id": "adadelta-no-learning-rate", "modelled": True,
                        "text": "AdaDelta never reads the learning rate or the lr_scheduler: the step is the "
                                "AdaDelta delta itself (lr 1, constant)", "source": "mxnet/optimizer/optimizer.py:1801-1823"})
        if config.clip_gradient is not None and opt in CLIPS_WITH_WD and (config.wd or 0) > 0:
            out.append({"id": f"{opt}-clips-wd", "modelled": True, "source": CLIPS_WITH_WD[opt],
                        "text": f"{opt} clips r*g + wd*w: the coupled wd is clipped with the gradient"})
        if config.clip_gradient is not None and opt == "signum" and config.value("momentum") == 0:
            out.append({"id": "signsgd-ignores-clip-gradient", "modelled": True, "source": "optimizer_op-inl.h:2351",
                        "text": "signsgd_update ignores clip_gradient, which changes nothing: sign(clip(g)) = sign(g)"})
        form = self._wd_form(config)
        if (config.wd or 0) > 0 and form != COUPLED:
            out.append({"id": f"{opt}-wd-{form[0]}", "modelled": True,
                        "text": f"{opt}'s wd is {LAMB_WD if opt == 'lamb' else FORM_WORDS[form]}, not an L2 term of "
                                "the gradient",
                        "source": {"adagrad": "mxnet/optimizer/optimizer.py:1685-1687", "adadelta":
                                   "mxnet/optimizer/optimizer.py:1823", "lamb": "multi_lamb.cc:66-67"
                                   }.get(opt, "optimizer_op-inl.h:2352-2354")})
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
        wd_mult); with momentum 0 (signsgd_update) sign(g) and wd decoupled, scaled by lr. LAMB (multi_lamb_update):
        eps after the bias-corrected root (eps/r), wd*w added to the direction inside the trust ratio. Every hyperparameter
        a C float. clip_gradient c clips r*g elementwise: a value clip of the mean gradient at c/r, on the loss's
        gradient, except for Adam and RMSProp, which clip r*g + wd*w (after_coupled_decay when there is a coupled
        wd); signsgd ignores it, which is the same (sign(clip(g)) = sign(g)). Each derivation, its source line and
        the test that measures it: docs/adapters/mxnet.md. On a network each tensor's wd_mult is what its
        collect_params(select).setattr calls leave (mxnet_network.py), 1.0 by default."""
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
        mult = self._wd_mults(config, task)
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
        elif opt == "lamb":
            optimizer = LambSpec(name="lamb", lr=lr, betas=[v("beta1"), v("beta2")], eps=v("epsilon") / r,
                                 decay_placement="inside_trust_ratio")
        else:   # signum
            optimizer = LionSpec(name="lion", lr=lr, betas=[v("momentum")] * 2)
            if form == COUPLED:
                decoupled = {k: v("wd_lh") for k in task.tensors}
        decay = rules_from_coefficients(coupled) + rules_from_coefficients(decoupled, coupling="decoupled", scale=form[1]
                                                                           or "lr")
        if config.penalty is not None:
            decay += config.penalty.rules(l1_at_zero=L1_AT_ZERO)
        clip = None
        if config.clip_gradient is not None:   # clips r*g elementwise: the mean gradient at clip_gradient/r
            clip = Clip(kind="value", threshold=config.clip_gradient / r, position=clip_position(opt, decay))
        # every hyperparameter reaches the update as a C float, even for float64 weights
        return Semantics(optimizer=optimizer, decay=decay, loss=task.loss, schedule=schedule, hyper_dtype="float32",
                         clip=clip)

    @staticmethod
    def _wd_mults(config: MxnetRun, task: Task) -> dict[str, float]:
        """Each tensor's wd_mult; a network's from its collect_params entries (an InputError for what MXNet cannot
        build: the tanh GELU, float64 GELU, a linear-model wd_mult)."""
        if task.model.linear:
            return {"weight": 1.0, "bias": 1.0, **(config.wd_mult or {})}
        why = network_refusal(task)
        if why is not None:
            raise InputError("", why[0], f"is not trained by MXNet as the neutral model says: {why[1]}", why[2])
        if config.wd_mult is not None:
            raise InputError("", "wd_mult", "names the linear model's tensors; on a network use collect_params = "
                             "[{select = \".*_bias\", wd_mult = 0.0}] (regex on the Parameter names)", config.wd_mult)
        try:
            return wd_mults(config.collect_params or [], task.tensors)
        except PydanticCustomError as exc:
            raise InputError("", exc.context["key"], exc.context["expected"], exc.context["value"]) from None

    def realize(self, semantics: Semantics, task: Task) -> dict:
        refuse_optimizer(semantics, NEUTRAL, "MXNet")
        why = network_refusal(task)
        if why is not None:
            raise Inexpressible(why[1])
        refuse_frozen(semantics, "grad_req = 'null', mxnet/gluon/parameter.py:94-96; wd_mult = 0 only stops the decay")
        if semantics.hyper_dtype != self.hyper_dtype:
            raise Inexpressible("MXNet hands every hyperparameter to its kernels as a C float; nearest: the same "
                                "keys, with lr, wd, momentum, betas and eps rounded to float32 (~1e-8 relative)")
        run = native_optimizer(semantics)
        native = run["optimizer"]
        if task.dtype == "float64" and native in FLOAT32_STATE:
            raise Inexpressible(f"MXNet's {native} creates its state in float32 ({FLOAT32_STATE[native]}) and fails "
                                "for float64 weights; nearest: the same run in float32")
        if task.dtype == "float64" and native in FLOAT32_DIRECTION:
            raise Inexpressible(f"Gluon's {native} (multi_lamb_update) keeps its direction and norms in float32 for "
                                f"float64 weights ({FLOAT32_DIRECTION[native]}); nearest: the same run in float32")
        form = WD_FORM["signsgd" if native == "signum" and run["momentum"] == 0 else native]
        lh = native == "signum" and form == COUPLED            # Signum's wd_lh: decoupled, lr-scaled
        loss = [rule for rule in semantics.decay if rule.via_loss]          # the loss `penalty`
        own = [rule for rule in semantics.decay if not rule.via_loss]       # the optimizer's wd (and wd_lh)
        for rule in own:
            got = (rule.coupling, rule.effective_scale)
            if rule.norm == "l1":
                refuse_l1([rule], L1_AT_ZERO, "MXNet")
                raise Inexpressible(f"MXNet's optimizers have no L1 term: an L1 decay is a loss `penalty`; nearest: "
                                    f"penalty = {{l1 = {rule.coefficient}, params = {rule.params}}} (via the loss)")
            if rule.schedule is not None and rule.schedule.kind != "constant":
                raise Inexpressible("MXNet's wd is one number for the run, with no schedule of its own; nearest: "
                                    f"wd = {rule.coefficient}, constant")
            if got != form and not (lh and got == DECOUPLED_LR):
                extra = " (no AdamW in mxnet.optimizer)" if form == COUPLED else ""
                how = LAMB_WD if native == "lamb" else FORM_WORDS[form]
                raise Inexpressible(f"MXNet's {native} applies wd {how}{extra}, not "
                                    f"{FORM_WORDS[got]}; nearest: wd = {rule.coefficient}, applied that way")
        coef = coefficients([rule for rule in own if (rule.coupling, rule.effective_scale) == form], "l2", form[0])
        refuse_l1(loss, L1_AT_ZERO, "MXNet")
        penalty = penalty_table(loss)
        if lh:
            decoupled = coefficients(own, "l2", "decoupled")
            if len(set(decoupled.values())) > 1:
                raise Inexpressible("Signum's wd_lh is one number for every parameter (wd_mult does not scale it, "
                                    f"optimizer.py:725-726); nearest: wd_lh = {max(decoupled.values())} on every one")
            if max(decoupled.values()):
                run["wd_lh"] = max(decoupled.values())
        clip = realize_clip(semantics, native, own)
        top = max(coef.values())
        if len(set(coef.values())) == 1 and top > 0:
            run["wd"] = top
        elif top > 0:
            mult = {k: c / top for k, c in coef.items()}
            if any(top * m != coef[k] for k, m in mult.items()):   # keep wd*wd_mult exact
                top, mult = 1.0, dict(coef)
            run["wd"] = top
            if task.model.linear:
                run["wd_mult"] = {k: m for k, m in mult.items() if m != 1.0}
            else:
                run["collect_params"] = collect_params_table(mult, task.tensors)
        if penalty:
            run["penalty"] = penalty
        if clip is not None:
            run["clip_gradient"] = clip
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
        if "model_json" in data:   # a network: the Gluon MLP, wd_mult set by collect_params(regex)
            net, tensors = mxnet_network.network(mx, data, dtype, run.get("collect_params") or [])
        else:
            net = gluon.nn.Dense(1, in_units=d)
            net.initialize(ctx=mx.cpu())
            net.cast(dtype)
            net.weight.set_data(nd.array(data["w0"].reshape(1, d), dtype=dtype))
            net.bias.set_data(nd.array(np.asarray(data["b0"]).reshape(1), dtype=dtype))
            for name, mult in (run.get("wd_mult") or {}).items():
                net.collect_params(f".*{name}").setattr("wd_mult", mult)
            tensors = None
        net.hybridize()

        lr = run.get("learning_rate")
        lr = lr if lr is not None else DEFAULT_LR[opt]
        params = {"learning_rate": lr}
        own = sorted({k for keys in KEYWORDS.values() for k in keys} - {"learning_rate"})
        for key in ("wd", "rescale_grad", "clip_gradient", *own):
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
                               X=data["X_train"].astype(dtype), y=data["y_train"].astype(dtype), dtype=dtype,
                               tensors=tensors or {"weight": net.weight, "bias": net.bias}, network=tensors is not None)

    def step(self, s: SimpleNamespace, rows: np.ndarray, t: int) -> None:
        xb, yb = s.nd.array(s.X[rows], dtype=s.dtype), s.nd.array(s.y[rows], dtype=s.dtype)
        with s.autograd.record():
            loss = s.loss_fn(s.net(xb), yb)
            if s.penalty:
                # d2l's from-scratch form: the penalty added to every sample's loss; the batch sum in
                # backward and step(batch_size) cancel, leaving its plain gradient.
                loss = loss + self._penalty(s.nd, s.tensors, s.penalty)
        loss.backward()
        s.trainer.step(len(rows))      # the short last batch is rescaled by its own size

    def read(self, s: SimpleNamespace):
        if s.network:
            return mxnet_network.read(s.tensors)
        return s.net.weight.data().asnumpy(), s.net.bias.data().asnumpy()

    @staticmethod
    def _penalty(nd, tensors: dict, terms: list[tuple[str, str, float]]):
        """The penalty's terms summed tensor by tensor (L2 then L1 of each), then over the tensors."""
        total = None
        for _, group in itertools.groupby(terms, key=lambda term: term[0]):
            term = None
            for name, kind, coef in group:
                w = tensors[name].data()
                part = coef * ((w ** 2).sum() if kind == "l2" else nd.abs(w).sum())
                term = part if term is None else term + part
            total = term if total is None else total + term
        return total



backend = MxnetBackend()
