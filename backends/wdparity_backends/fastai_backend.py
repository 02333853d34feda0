"""The `fastai` backend: fastai.optimizer's SGD, RMSProp, Adam, RAdam, QHAdam and Lamb with `wd` and `decouple_wd`,
the splitter's parameter groups and the Learner's wd_bn_bias, as a fastai user writes them.

fastai's `decouple_wd=True` (every function's default) is "true weight decay", p *= 1 - lr*wd before the step;
`decouple_wd=False` is l2_reg, wd*p added to the gradient. A Learner excludes every bias (on a network every
LayerNorm parameter too) from weight decay by default (wd_bn_bias=False). The model is torch's nn.Linear set up as
the torch adapter does (torch_run.py); the optimizer is stepped as the Learner does (with learner = true by the
Learner's own _do_grad_opt, its callbacks, GradientClip for gradient_clip, in before_step), its lr set per step by
set_hyper as ParamScheduler does. A network (`[task] model`) is torch's MLP (torch_network.py), its groups by
torch's names (fastai_network.py). Every statement this adapter makes about fastai 2.8.12: docs/adapters/fastai.md.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from wdparity.run.adapter import Adapter, refuse_l1
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity.spec.network import LINEAR, in_scope, kernels, tensor_scope
from wdparity.spec.rules import penalty_terms, rules_from_coefficients

from .fastai_clip import clip_spec, realize_clip, refuse_terms
from .fastai_network import compress, learner_excludes
from .fastai_optimizers import exact, lr_factor, native_optimizer, optimizer_spec
from .fastai_vocab import FastaiRun
from .torch_run import batch_loss, linear_model, penalty_table, set_up

FASTAI_L1_AT_ZERO = 0.0   # torch's autograd: d|w|/dw at 0 is 0 (the loss is torch's)


class FastaiBackend(Adapter):
    name = "fastai"
    modules = ("fastai", "torch")
    install_hint = "pip install fastai"
    Config = FastaiRun
    models_networks = True   # torch's MLP (torch_network.py) through the same optimizer / Learner (fastai_network.py)

    def snippet(self, config, task):
        from .fastai_snippet import snippet
        return snippet(config, task)

    def findings(self, config: FastaiRun, task: Task) -> list[dict]:
        """Documented departures from what a reader of the call may expect: modelled ones are in describe()."""
        out = []
        if config.optimizer == "Adam" and config.wd is None:
            out.append({"id": "adam-default-true-weight-decay", "modelled": True,
                        "text": "fastai's Adam decays by default: wd = 0.01, decouple_wd = True (p *= 1 - lr*0.01 per "
                                "step), with sqr_mom = 0.99 and eps = 1e-5 (torch's Adam: 0, 0.999, 1e-8)",
                        "source": "fastai/optimizer.py:233-245"})
        if config.optimizer == "RMSProp" and config.eps is not None and config.eps != 1e-8:
            out.append({"id": "rmsprop-eps-dropped", "modelled": True,
                        "text": f"RMSProp(eps={config.eps:g}) steps with eps = 1e-8: the eps keyword never reaches "
                                "the Optimizer, rms_prop_step's default is used",
                        "source": "fastai/optimizer.py:195,211"})
        if config.optimizer == "RMSProp" and config.get("mom"):
            out.append({"id": "rmsprop-momentum-is-uncorrected-adam", "modelled": True,
                        "text": f"RMSProp(mom={config.get('mom'):g}) divides an undampened momentum of raw gradients by "
                                "the current root: Adam without bias correction at lr/(1 - mom), not torch's RMSprop "
                                "momentum (a buffer of g/(sqrt(v) + eps))",
                        "source": "fastai/optimizer.py:152-156,190-211"})
        if config.excludes_bias:
            out.append({"id": "learner-excludes-bias", "modelled": True,
                        "text": "Learner(wd_bn_bias=False), the default, sets do_wd = False on every bias (and "
                                "BatchNorm parameter): the Linear layer's bias is not decayed, by wd nor by l2_reg"
                        if in_scope() == LINEAR else
                        "Learner(wd_bn_bias=False), the default, sets do_wd = False on every Linear bias and on "
                        "LayerNorm's weight and bias (nn.LayerNorm is in norm_types): of the network only the "
                        f"weight matrices {kernels(in_scope())} are decayed, by wd or by l2_reg",
                        "source": "fastai/learner.py:121,198-199; fastai/torch_core.py:685-693"})
        if config.gradient_clip is not None:
            out.append({"id": "gradient-clip-before-wd", "modelled": True,
                        "text": "GradientClip is torch's clip_grad_norm_ in before_step, min(1, max_norm / (norm + "
                                "1e-6)) over every parameter: it clips the loss's gradient (a penalty included), and "
                                "the optimizer's wd (l2_reg or true weight decay) comes after it, unclipped",
                        "source": "fastai/callback/training.py:43; fastai/optimizer.py:113-115,138-149"})
        if config.optimizer == "Lamb":
            out.append({"id": "lamb-trust-ratio-capped-at-10", "modelled": True,
                        "text": "Lamb caps the trust ratio at 10, q = min(rms(p)/rms(step), 10) (LambSpec.max_trust_ratio; "
                                "optax's and Keras's LAMB have no cap)",
                        "source": "fastai/optimizer.py:349"})
        return out

    def describe(self, config: FastaiRun, task: Task) -> Semantics:
        """Neutral semantics of a fastai run. Rule order: gradient-coupled (l2_reg's wd, then the penalty's), then
        decoupled (true weight decay)."""
        optimizer = optimizer_spec(config, config.effective_lr)
        decoupled, f = bool(config.get("decouple_wd")), lr_factor(config)   # f: RMSProp(mom)'s lr' = lr*f
        per = {k: v / f if decoupled and f != 1 else v for k, v in config.per_tensor_wd().items()}
        wd = rules_from_coefficients(per, coupling="decoupled" if decoupled else "gradient",
                                     scale="lr" if decoupled else None)
        pen = config.penalty.rules(l1_at_zero=FASTAI_L1_AT_ZERO) if config.penalty else []
        return Semantics(optimizer=optimizer, decay=pen + wd if decoupled else wd + pen, loss=task.loss,
                         schedule=task.schedule, frozen=config.frozen, clip=clip_spec(config.gradient_clip, None))

    def realize(self, semantics: Semantics, task: Task) -> dict:
        opt, rules = semantics.optimizer, list(semantics.decay)
        run = native_optimizer(opt)   # refuses the optimizer fields no fastai function computes
        refuse_l1(rules, FASTAI_L1_AT_ZERO, "fastai")
        clipping = realize_clip(semantics)   # {} or learner + gradient_clip; refuses the clips fastai has not
        refuse_terms(semantics, rules)       # under clipping: a penalty is clipped, l2_reg's wd*p is not
        for r in rules:
            if r.schedule is not None and r.schedule.kind != "constant":
                raise Inexpressible(f"fastai's wd is one hyperparameter per parameter group, scheduled only by hand; "
                                    f"nearest: the constant wd = {r.coefficient}, which differs once the rule's schedule "
                                    "moves")
        decoupled = [r for r in rules if r.coupling == "decoupled"]
        for r in decoupled:
            if r.effective_scale != "lr":
                what = ("the same decay lr_t*lambda/lr = eta_t*lambda, up to rounding" if r.effective_scale == "schedule"
                        else "the same decay under a constant schedule; under a schedule it follows eta_t")
                raise Inexpressible(f"fastai's true weight decay is p *= 1 - lr_t*wd with the scheduled lr (fastai/"
                                    f"optimizer.py:138-140); nearest: {run['optimizer']}(wd={r.coefficient}/lr = "
                                    f"{r.coefficient / opt.lr:.6g}), {what}")
        wd_rules = decoupled or [r for r in rules if r.norm == "l2"
                                 and not (semantics.clip is not None and r.via_loss)]   # a penalty, when clipped
        per: dict[str, float] = {}
        rest = [r for r in rules if not any(r is w for w in wd_rules)]
        for r in wd_rules:
            if per.keys() & set(r.params):
                if decoupled:
                    raise Inexpressible(f"fastai's {run['optimizer']} takes one wd per parameter group (fastai/"
                                        "optimizer.py:138-140); nearest: one decoupled rule per tensor with the summed "
                                        "coefficient (same to first order)")
                rest.append(r)   # a second coupled rule on a tensor: the loss penalty
                continue
            per.update({name: r.coefficient for name in r.params})
        l2 = [r for r in rest if r.norm == "l2"]
        l1 = [r for r in rest if r.norm == "l1"]
        if len(l2) > 1 or len(l1) > 1 or (l2 and l1 and l2[0].params != l1[0].params):
            raise Inexpressible("one `penalty` table holds one L2 and one L1 term on one list of tensors; nearest: "
                                "merge the rules (sum the coefficients on each tensor)")
        if decoupled and run["optimizer"] == "RMSProp" and run.get("mom"):   # describe's coefficient is wd*(1-mom)
            per = {k: rmsprop_wd(v, run["mom"]) for k, v in per.items()}
        tensors = in_scope()
        trained = [name for name in tensors if name not in semantics.frozen]
        decayed = {name for name in trained if per.get(name)}
        if tensors != LINEAR and not semantics.frozen and decayed and decayed == set(kernels(tensors)) \
                and len({per[name] for name in decayed}) == 1:
            run.update(learner=True, wd=per[kernels(tensors)[0]])   # Learner(wd_bn_bias=False) excludes the rest
            clipping.pop("learner", None)
        else:
            values = list(dict.fromkeys(per.get(name, 0.0) for name in trained))   # one group per distinct wd
            if semantics.frozen or len(values) > 1:
                groups = [[name for name in trained if per.get(name, 0.0) == v] for v in values]
                run["param_groups"] = groups if tensors == LINEAR else [compress(g, tensors) for g in groups]
                run["wd"] = values if len(values) > 1 else values[0]
            else:
                run["wd"] = values[0]   # always written: Adam's default wd is 0.01
        if per and not decoupled:
            run["decouple_wd"] = False
        if clipping and any(per.get(name) for name in learner_excludes(tensors)):
            clipping["wd_bn_bias"] = True   # the Learner would exclude the biases (and norms) from wd otherwise
        return {**run, **penalty_table(l2, l1), **clipping}

    # ---------------------------------------------------------------- inside the worker
    def build(self, job: dict, data: dict[str, np.ndarray]) -> SimpleNamespace:
        import torch
        from fastai import optimizer as fo

        dtype = set_up(torch, job["dtype"])
        if "model_json" in data:   # a network: torch's MLP, its tensors by neutral name
            from .torch_network import network

            net, X, y, tensors = network(torch, data, dtype)
        else:
            net, X, y = linear_model(torch, data, dtype)
            tensors = {"weight": net.weight, "bias": net.bias}
        with tensor_scope(tuple(tensors)):   # param_groups name torch's parameters of this model
            run = FastaiRun.model_validate(job["run"])
        keywords = {k: getattr(run, k) for k in run.model_fields_set if getattr(run, k) is not None
                    and k not in ("optimizer", "lr", "param_groups", "learner", "wd_bn_bias", "penalty",
                                  "gradient_clip", "norm_type")}
        opt_func = getattr(fo, run.optimizer)
        groups = [[tensors[name] for name in group] for group in run.groups] if run.param_groups else None
        learn = learner(torch, net, opt_func, keywords, run, groups) if run.learner else None
        opt = learn.opt if learn else opt_func(groups if groups else list(net.parameters()), lr=run.lr, **keywords)
        return SimpleNamespace(torch=torch, net=net, tensors=tensors, opt=opt, learn=learn, X=X, y=y,
                               network="model_json" in data,
                               mse=torch.nn.MSELoss(),
                               half=job["task"]["loss"] == "half_mse", penalty=penalty_terms(run.penalty),
                               lr=run.effective_lr, schedule=job["task"].get("schedule") or {"kind": "constant"},
                               cos=cosine(run.effective_lr, job["task"].get("schedule") or {}))

    def step(self, s: SimpleNamespace, rows: np.ndarray, t: int) -> None:
        kind = s.schedule["kind"]
        if kind == "step":   # ParamScheduler's way: set_hyper('lr', value) before the batch (callback/schedule.py:99)
            s.opt.set_hyper("lr", s.lr * float(s.schedule["factor"]) ** (t // int(s.schedule["every"])))
        elif kind == "cosine":
            s.opt.set_hyper("lr", s.cos(min(t, int(s.schedule["total"])) / int(s.schedule["total"])))
        loss = batch_loss(s, s.torch.as_tensor(rows))
        if s.learn is not None:   # the Learner's own: backward, before_step (GradientClip), step, zero_grad
            s.learn.loss_grad = loss
            s.learn._do_grad_opt()   # fastai/learner.py:219-222
            return
        loss.backward()
        s.opt.step()
        s.opt.zero_grad()

    def read(self, s: SimpleNamespace):
        if s.network:
            from .torch_network import read

            return read(s.tensors)
        return s.net.weight.detach().numpy(), s.net.bias.detach().numpy()


def rmsprop_wd(coefficient: float, mom: float) -> float:
    """The wd of RMSProp(mom) whose true weight decay lr*wd is the neutral lr'*coefficient, lr' = lr/(1 - mom)."""
    wd = exact(coefficient / (1 - mom), lambda x: x / (1 / (1 - mom)) == coefficient)
    if wd is None:
        raise Inexpressible(f"no float wd makes wd*(1 - {mom:g}) = {coefficient!r} exactly; nearest: RMSProp(wd="
                            f"{coefficient / (1 - mom)!r}, mom={mom:g}), the same up to rounding")
    return wd


def learner(torch, net, opt_func, keywords: dict, run: FastaiRun, groups):
    """The Learner, its callbacks (GradientClip for gradient_clip) and the optimizer its create_opt builds:
    opt_func(splitter(model), lr=learn.lr), then do_wd = False on the biases unless wd_bn_bias (fastai/learner.py:
    189-201). No data is needed to build it."""
    from functools import partial

    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    extra = {} if run.wd_bn_bias is None else {"wd_bn_bias": run.wd_bn_bias}
    extra.update({} if run.lr is None else {"lr": run.lr})
    extra.update({"splitter": lambda m: groups} if groups else {})
    if run.gradient_clip is not None:
        from fastai.callback.training import GradientClip

        norm = {} if run.norm_type is None else {"norm_type": run.norm_type}
        extra["cbs"] = [GradientClip(max_norm=run.gradient_clip, **norm)]
    learn = Learner(DataLoaders(), net, loss_func=torch.nn.MSELoss(), opt_func=partial(opt_func, **keywords), **extra)
    learn.create_opt()
    return learn


def cosine(lr: float, schedule: dict):
    """fastai's SchedCos(lr, floor*lr), called with pos = min(t, total)/total (callback/schedule.py:49,54)."""
    if schedule.get("kind") != "cosine":
        return None
    from fastai.callback.schedule import SchedCos

    return SchedCos(lr, float(schedule.get("floor", 0.0)) * lr)


backend = FastaiBackend()
