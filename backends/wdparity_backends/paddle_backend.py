"""The `paddle` backend: paddle.optimizer's SGD, Momentum, Adam(W), RMSProp, Adagrad, Adadelta, Adamax, NAdam, RAdam
and Lamb in dygraph, with L2Decay/L1Decay regularizers (the optimizer's weight_decay, or a ParamAttr's per parameter),
ParamAttr(trainable=False), AdamW's apply_decay_param_fun, Lamb's exclude_from_weight_decay_fn and grad_clip, as a
Paddle user writes them.

describe() states what each knob means in neutral terms, including the hyperparameters Paddle's kernels take as C
floats: their float32 values, so a float64 run meets the float64 reference; realize() writes the Paddle setting
(paddle_realize.py); build/step/read train nn.Linear, or a network's nn.Sequential (paddle_network.py: its
parameters' names, ParamAttrs keyed by layer), with the real optimizer and paddle.optimizer.lr schedulers.
Every statement about Paddle 3.3.1, with its source and the test that measures it: docs/adapters/paddle.md.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from wdparity.engine.data import batches
from wdparity.run.adapter import Adapter
from wdparity.spec.errors import InputError
from wdparity.spec.models import (
    AdadeltaSpec,
    AdagradSpec,
    AdamaxSpec,
    AdamSpec,
    Clip,
    LambSpec,
    NadamSpec,
    RadamSpec,
    RmspropSpec,
    Semantics,
    SgdSpec,
    Task,
)
from wdparity.spec.network import in_scope, tensor_scope
from wdparity.spec.rules import rules_from_coefficients

from . import paddle_network
from .paddle_network import LN_EPS_MAX, native_names
from .paddle_vocab import KEYWORDS, NEUTRAL_NAMES, PaddleRun, Regularizer

L1_AT_ZERO = 0.0   # L1Decay adds coeff*sign(w), sign(0) = 0 (regularizer.py); measured in tests/test_paddle_facts.py
# Hyperparameters each class hands its C++ kernel as a C float (the attribute's type), measured in the facts tests
FLOAT32 = {"Momentum": ("momentum", "L2 coefficient (fused regularization_coeff)"), "AdamW": ("coeff",),
           "RMSProp": ("rho", "epsilon", "momentum"), "Adagrad": ("epsilon",), "Adadelta": ("rho", "epsilon"),
           "Adamax": ("beta1", "beta2", "epsilon"), "NAdam": ("beta1", "beta2", "epsilon", "momentum_decay"),
           "RAdam": ("beta1", "beta2", "epsilon"), "Lamb": ("beta1", "beta2", "epsilon", "lamb_weight_decay")}
# In float64 the beta-power accumulators meet a float32 beta: Adamax's moment takes beta1 as a C float while its
# Beta1Pow is filled with the float64 beta1 and scaled by it (adamax.py:214-219, 330-333): 1 - b1^t exact, m with
# float32(b1); Lamb's Beta1Pow/Beta2Pow are filled with the float64 beta and multiplied by the kernel's float32 one
# (lamb.py:219-241, lamb_functors.h:385-386): 1 - b*float32(b)^(t-1). The neutral model has neither, so float64
# needs betas float32 represents exactly (both conventions are then one).
BETA_POWS = {
    "Adamax": (("beta1",), "its moment takes beta1 as a C float (adamax_kernel_impl.h:44,61-62) but Beta1Pow is filled "
               "with the float64 beta1 and scaled by it each step (adamax.py:214-219,330-333), so 1 - b1^t is exact "
               "while m uses float32(b1): 2.4e-7 relative off either neutral reading at beta1 = 0.9 (tests/"
               "test_paddle_adamax_lamb_frozen.py)"),
    "Lamb": (("beta1", "beta2"), "Beta1Pow/Beta2Pow are filled with the float64 betas (lamb.py:219-241) and "
             "multiplied by the kernel's float32 ones (lamb_functors.h:385-386), so step t corrects by 1 - b*float32(b)^"
             "(t-1): 6.7e-6 relative off the neutral LAMB at beta2 = 0.999 (tests/test_paddle_adamax_lamb_frozen.py)"),
}


def f32(x: float) -> float:
    return float(np.float32(x))


def linear_name(name: str) -> str:
    return NEUTRAL_NAMES[name]


def norm_eps_error(task: Task) -> str | None:
    """Why Paddle's LayerNorm refuses the task's norm_eps (its infermeta checks the C float: 0 <= eps <= 0.001f)."""
    m = task.model
    if m.norm == "layer" and f32(m.norm_eps) > f32(LN_EPS_MAX):
        return (f"paddle.nn.LayerNorm raises for epsilon {m.norm_eps:g}: its kernel takes epsilon as a C float and "
                "checks 0 <= epsilon <= 0.001f (paddle/phi/infermeta/ternary.cc:1496; ValueError at the first "
                "forward)")
    return None


class PaddleBackend(Adapter):
    name = "paddle"
    models_networks = True   # nn.Sequential of nn.Linear, nn.LayerNorm and activations (paddle_network.py)
    modules = ("paddle",)
    install_hint = "pip install paddlepaddle"
    Config = PaddleRun
    live_roots, live_label = ("paddle",), "paddle.optimizer"

    def read_live(self, obj, model, params):
        from .paddle_live import read_live
        return read_live(obj, model, params)

    def snippet(self, config: PaddleRun, task: Task) -> str:
        from .paddle_snippet import snippet
        return snippet(config, task)

    def worker_env(self, config: PaddleRun, task: Task) -> dict[str, str]:
        return {"OMP_NUM_THREADS": "1", "FLAGS_use_mkldnn": "0"}

    def findings(self, config: PaddleRun, task: Task) -> list[dict]:
        out = []
        opt = config.optimizer
        if opt in FLOAT32:
            out.append({"id": f"{opt.lower()}-float32-hyperparameters", "modelled": True,
                        "text": f"{opt} hands {', '.join(FLOAT32[opt])} to its kernel as C floats, also for float64 "
                                "parameters: describe() states their float32 values",
                        "source": "paddle/_C_ops signatures (float attributes); docs/adapters/paddle.md"})
        if opt == "AdamW" and config.weight_decay is None:
            out.append({"id": "adamw-default-weight-decay", "modelled": True, "source": "paddle/optimizer/adamw.py",
                        "text": "AdamW's default weight_decay is 0.01 (decoupled, w -= lr_t*0.01*w)"})
        if opt == "RMSProp":
            out.append({"id": "rmsprop-eps-inside-root", "modelled": True, "source": "paddle/optimizer/rmsprop.py",
                        "text": "RMSProp divides by sqrt(v + epsilon) (epsilon inside the root), rho 0.95, epsilon 1e-6 "
                                "by default; its momentum keeps lr inside the buffer (velocity form)"})
        if config.weight_decay is not None and (config.weight_attr or config.bias_attr):
            out.append({"id": "param-attr-regularizer-overrides", "modelled": True,
                        "source": "paddle/optimizer/optimizer.py:1775-1779",
                        "text": "a ParamAttr regularizer replaces the optimizer's weight_decay for that parameter"})
        if opt == "Lamb":
            out.append({"id": "lamb-trust-ratio-only-with-decay", "modelled": True,
                        "source": "paddle/phi/kernels/impl/lamb_kernel_impl.h:262-273",
                        "text": "Lamb takes the trust ratio only where lamb_weight_decay > 0 or always_adapt; "
                                "otherwise r = 1 and it is Adam"})
        if config.frozen:
            out.append({"id": "trainable-false-frozen", "modelled": True, "source": "paddle/optimizer/optimizer.py:2053",
                        "text": "ParamAttr(trainable=False) is stop_gradient = True: the optimizer skips the tensor, "
                                "so no gradient step, regularizer or decay reaches it, and a global-norm clip counts "
                                "only the trained tensor's gradient"})
        if config.grad_clip is not None:
            out.append({"id": "clip-before-regularization", "modelled": True,
                        "source": "paddle/optimizer/optimizer.py:1713-1717",
                        "text": "grad_clip sees the loss's gradient; the regularization terms are added after it"})
        return out

    # ---------------------------------------------------------------- describe
    def describe(self, config: PaddleRun, task: Task) -> Semantics:
        """Neutral semantics of a Paddle dygraph run (rules: coupled L2, coupled L1, then AdamW's decoupled)."""
        opt, v = config.optimizer, config.value
        why = norm_eps_error(task)
        if why:
            raise InputError("", "model.norm_eps", why + "; the Paddle adapter trains norm_eps <= 1e-3",
                             task.model.norm_eps)
        m = task.model
        if m.norm == "layer" and task.dtype == "float64" and f32(m.norm_eps) != m.norm_eps:
            raise InputError("", "model.norm_eps", f"must be a float32 value in a float64 run of paddle.nn.LayerNorm "
                             f"(e.g. {f32(m.norm_eps)!r}): its kernel takes epsilon as a C float (layer_norm_kernel.cc:"
                             "35), so float64 parameters are normalized by sqrt(var + float32(eps)); the neutral model "
                             "has no such rounding of the task's norm_eps", m.norm_eps)
        if opt in BETA_POWS and task.dtype == "float64":
            keys, why = BETA_POWS[opt]
            for key in keys:
                if f32(v(key)) != v(key):
                    raise InputError("", key, f"must be a float32 value in a float64 run of paddle.optimizer.{opt} "
                                     f"(e.g. {f32(v(key))!r}): {why}; the neutral model has no such correction",
                                     v(key))
        lr, frozen = config.lr, config.frozen
        if opt == "SGD":
            optimizer = SgdSpec(name="sgd", lr=lr)
        elif opt == "Momentum":
            optimizer = SgdSpec(name="sgd", lr=lr, momentum=f32(v("momentum")), nesterov=bool(config.use_nesterov))
        elif opt in ("Adam", "AdamW"):
            optimizer = AdamSpec(name="adam", lr=lr, betas=[v("beta1"), v("beta2")], eps=v("epsilon"),
                                 amsgrad="v" if config.amsgrad else None)
        elif opt == "RMSProp":
            momentum = f32(v("momentum"))
            optimizer = RmspropSpec(name="rmsprop", lr=lr, rho=f32(v("rho")), eps=f32(v("epsilon")), eps_in_sqrt=True,
                                    centered=bool(config.centered), momentum=momentum,
                                    momentum_form="velocity" if momentum > 0 else "buffer")
        elif opt == "Adagrad":
            optimizer = AdagradSpec(name="adagrad", lr=lr, eps=f32(v("epsilon")),
                                    initial_accumulator=v("initial_accumulator_value"))
        elif opt == "Adadelta":
            optimizer = AdadeltaSpec(name="adadelta", lr=lr, rho=f32(v("rho")), eps=f32(v("epsilon")))
        elif opt == "Adamax":   # u = max(|g|, b2*u + eps) (adamax_kernel_impl.h:63-64)
            optimizer = AdamaxSpec(name="adamax", lr=lr, betas=[f32(v("beta1")), f32(v("beta2"))],
                                   eps=f32(v("epsilon")), eps_placement="in_max_decayed")
        elif opt == "Lamb":
            optimizer = self._lamb(config, frozen)
        elif opt == "NAdam":
            optimizer = NadamSpec(name="nadam", lr=lr, betas=[f32(v("beta1")), f32(v("beta2"))],
                                  eps=f32(v("epsilon")), momentum_decay=f32(v("momentum_decay")))
        else:   # RAdam: rectified while rho_t > 5, epsilon added to sqrt(v) before the correction
            optimizer = RadamSpec(name="radam", lr=lr, betas=[f32(v("beta1")), f32(v("beta2"))], eps=f32(v("epsilon")),
                                  eps_placement="uncorrected", threshold=5.0, threshold_inclusive=False)
        decay = self._coupled(config) + self._decoupled(config)
        return Semantics(optimizer=optimizer, decay=decay, loss=task.loss, schedule=task.schedule, frozen=frozen,
                         clip=self._clip(config, task))

    @staticmethod
    def _lamb_decayed(config: PaddleRun) -> dict[str, float]:
        """Each trained tensor's lamb_weight_decay as the kernel sees it (float32; 0 where excluded)."""
        names = native_names(in_scope())
        excluded = {names[n] for n in config.exclude_from_weight_decay_fn or []}
        coeff = f32(config.value("lamb_weight_decay"))
        return {n: (0.0 if n in excluded else coeff) for n in in_scope() if n not in config.frozen}

    def _lamb(self, config: PaddleRun, frozen: list[str]):
        """LAMB when every trained tensor gets the trust ratio, Adam when none does: the kernel takes the norms only
        if weight_decay > 0 or always_adapt, else r = 1 (lamb_kernel_impl.h:262-273, lamb_functors.h:447-450)."""
        v = config.value
        adapted = {n: bool(c > 0 or config.always_adapt) for n, c in self._lamb_decayed(config).items()}
        common = {"lr": config.lr, "betas": [f32(v("beta1")), f32(v("beta2"))], "eps": f32(v("epsilon"))}
        if all(adapted.values()):   # m_hat/(sqrt(v_hat) + eps) + wd*w, inside the ratio (lamb_functors.h:181-185)
            return LambSpec(name="lamb", decay_placement="inside_trust_ratio", **common)
        if not any(adapted.values()):
            return AdamSpec(name="adam", eps_placement="corrected", **common)
        raise InputError("", "exclude_from_weight_decay_fn", "excludes " + str(config.exclude_from_weight_decay_fn) +
                         " without always_adapt: Paddle's Lamb then skips the trust ratio of that tensor only (weight_"
                         "decay 0, lamb_kernel_impl.h:262) while the other keeps it; the neutral LAMB has one trust "
                         "ratio for all; write always_adapt = true", config.exclude_from_weight_decay_fn)

    @staticmethod
    def _regularizers(config: PaddleRun) -> dict[str, Regularizer]:
        """Each tensor's regularizer: its ParamAttr's, else the optimizer's weight_decay (not AdamW's, which is
        decoupled), else none."""
        top = config.weight_decay if config.optimizer != "AdamW" else None
        if isinstance(top, float):
            top = Regularizer(L2Decay=top)
        out, attrs = {}, config.attrs()
        for name in in_scope():
            attr = attrs.get(name)
            reg = attr.regularizer if attr is not None and attr.regularizer is not None else top
            if reg is not None and name not in config.frozen:   # a frozen tensor has no gradient to regularize
                out[name] = reg
        return out

    def _coupled(self, config: PaddleRun) -> list:
        regs = self._regularizers(config)
        fused = config.optimizer == "Momentum"   # Momentum fuses L2Decay into its op, coeff a C float
        l2 = {n: (f32(r.coeff) if fused else r.coeff) for n, r in regs.items() if r.norm == "l2"}
        l1 = {n: r.coeff for n, r in regs.items() if r.norm == "l1"}
        return rules_from_coefficients(l2) + rules_from_coefficients(l1, norm="l1", l1_at_zero=L1_AT_ZERO)

    def _decoupled(self, config: PaddleRun) -> list:
        """AdamW's decay (apply_decay_param_fun's tensors) and Lamb's (inside the trust ratio), never on a frozen one
        (optimizer.step skips stop_gradient parameters, optimizer.py:2053-2054)."""
        if config.optimizer == "Lamb" and isinstance(self._lamb(config, config.frozen), LambSpec):
            return rules_from_coefficients(self._lamb_decayed(config), coupling="decoupled", scale="lr")
        if config.optimizer != "AdamW":
            return []
        coeff = f32(config.value("weight_decay"))
        names, tensors = config.apply_decay_param_fun, in_scope()
        decayed = tensors if names is None else [native_names(tensors)[n] for n in names]
        return rules_from_coefficients({n: coeff for n in tensors if n in decayed and n not in config.frozen},
                                       coupling="decoupled", scale="lr")

    @staticmethod
    def _clip(config: PaddleRun, task: Task):
        if config.grad_clip is None:
            return None
        kind, threshold = config.grad_clip.kind
        if kind == "ClipGradByNorm" and task.dtype == "float64":
            raise InputError("", "grad_clip", "ClipGradByNorm must run in float32: clip_by_norm has no float64 CPU "
                             "kernel in Paddle 3.3.1 (RuntimeError: kernel not registered for float64)",
                             {kind: threshold})
        neutral = {"ClipGradByGlobalNorm": "global_norm", "ClipGradByNorm": "tensor_norm", "ClipGradByValue": "value"}
        if kind == "ClipGradByGlobalNorm" and config.frozen:
            # a frozen tensor has no gradient, so the global norm is the trained tensors' alone (clip.py)
            trained = [n for n in in_scope() if n not in config.frozen]
            if len(trained) > 1:
                raise InputError("", "grad_clip", f"ClipGradByGlobalNorm with frozen parameters ({config.frozen}) "
                                 "takes the norm over the trained ones only (a frozen one has no gradient, optimizer."
                                 "py:2052-2054); the neutral global_norm clip counts every tensor",
                                 {kind: threshold})
            return Clip(kind="tensor_norm", threshold=threshold, eps=0.0, position="loss_gradient")
        return Clip(kind=neutral[kind], threshold=threshold, eps=0.0, position="loss_gradient")

    # ---------------------------------------------------------------- precision and realize
    def inherent(self, semantics: Semantics, task: Task) -> Semantics:
        from .paddle_realize import inherent

        return inherent(semantics)

    def realize(self, semantics: Semantics, task: Task) -> dict:
        from .paddle_realize import realize

        why = norm_eps_error(task)
        if why:
            from wdparity.run.backend import Inexpressible

            raise Inexpressible(why + "; nearest: norm_eps = 1e-3")
        run = realize(semantics)
        back = self.describe(self.parse(run), task).neutral()
        if back != semantics.neutral():
            from wdparity.run.backend import Inexpressible

            raise Inexpressible("Paddle's spelling of these rules describes back in its canonical form (coupled L2, "
                                f"coupled L1, decoupled; one regularizer per tensor): {back['decay']}; nearest: that "
                                "setting")
        return run

    # ---------------------------------------------------------------- inside the worker
    def build(self, job: dict, data: dict[str, np.ndarray]) -> SimpleNamespace:
        import paddle

        from wdparity.engine import network as net_mod

        task, dtype = job["task"], job["dtype"]
        model, tensors = net_mod.model_of(data), tuple(net_mod.names_of(data))
        with tensor_scope(tensors):   # native names and layer keys are checked against this model's
            run = PaddleRun.model_validate(job["run"])
        paddle.set_device("cpu")
        paddle.set_default_dtype(dtype)

        def attr(a):
            if a is None:
                return None
            reg = a.regularizer
            cls = None if reg is None else paddle.regularizer.L2Decay if reg.norm == "l2" else paddle.regularizer.L1Decay
            return paddle.ParamAttr(regularizer=None if reg is None else cls(reg.coeff), trainable=a.trainable)

        tensors_ = None
        if model is not None:
            attrs: dict = {}
            for key in ("weight_attr", "bias_attr"):
                for layer, a in (getattr(run, key) or {}).items():
                    attrs.setdefault(layer, {})[key] = attr(a)
            net, tensors_ = paddle_network.network(paddle, data, dtype, model, tensors, attrs)
        else:
            d = int(np.asarray(data["w0"]).size)
            with paddle.utils.unique_name.guard():   # a fresh program's names: linear_0.w_0, linear_0.b_0
                net = paddle.nn.Linear(d, 1, weight_attr=attr(run.weight_attr), bias_attr=attr(run.bias_attr))
            net.weight.set_value(np.asarray(data["w0"], dtype=dtype).reshape(d, 1))
            net.bias.set_value(np.asarray(data["b0"], dtype=dtype).reshape(1))
        steps = len(batches(data["order"], int(task["batch_size"])))
        lr = scheduler(paddle, task.get("schedule") or {"kind": "constant"}, run.lr, steps)
        kwargs = {"learning_rate": lr, "parameters": net.parameters()}
        for key in KEYWORDS[run.optimizer]:
            value = getattr(run, key)
            if key == "learning_rate" or value is None:
                continue
            if key == "weight_decay" and isinstance(value, Regularizer):
                cls = paddle.regularizer.L2Decay if value.norm == "l2" else paddle.regularizer.L1Decay
                value = cls(value.coeff)
            elif key == "grad_clip":
                kind, threshold = value.kind
                value = getattr(paddle.nn, kind)(threshold)
            elif key == "apply_decay_param_fun":   # called with the parameter's name (adamw.py:479-484)
                value = (lambda names: lambda name: name in names)(frozenset(value))
            elif key == "exclude_from_weight_decay_fn":   # called with the parameter itself (lamb.py)
                value = (lambda names: lambda param: param.name in names)(frozenset(value))
            kwargs[key] = value
        optimizer = getattr(paddle.optimizer, run.optimizer)(**kwargs)
        X = paddle.to_tensor(np.asarray(data["X_train"], dtype=dtype))
        y = paddle.to_tensor(np.asarray(data["y_train"], dtype=dtype).reshape(-1, 1))
        return SimpleNamespace(paddle=paddle, net=net, optimizer=optimizer, lr=lr, X=X, y=y, tensors=tensors_,
                               half=task["loss"] == "half_mse", scheduled=not isinstance(lr, float))

    def step(self, s: SimpleNamespace, rows: np.ndarray, t: int) -> None:
        idx = s.paddle.to_tensor(rows)
        loss = s.paddle.nn.functional.mse_loss(s.net(s.paddle.gather(s.X, idx)), s.paddle.gather(s.y, idx))
        if s.half:
            loss = loss / 2
        loss.backward()
        s.optimizer.step()
        s.optimizer.clear_grad()
        if s.scheduled:
            s.lr.step()

    def read(self, s: SimpleNamespace):
        if s.tensors is not None:   # a network: {neutral name: array}
            return paddle_network.read(s.tensors)
        return s.net.weight.numpy().ravel(), s.net.bias.numpy()


def cosine(total: int, floor: float):
    """The neutral cosine multiplier, held at `floor` after `total` (paddle.optimizer.lr.LambdaDecay's lr_lambda)."""
    return lambda t: floor + (1.0 - floor) * (1.0 + math.cos(math.pi * min(t, total) / total)) / 2.0


def scheduler(paddle, schedule: dict, lr: float, steps: int):
    """The run's schedule as a paddle.optimizer.lr scheduler, stepped once per optimizer step (a float: constant).
    step: StepDecay; cosine: LambdaDecay of the neutral formula (CosineAnnealingDecay's recursive form differs)."""
    if schedule["kind"] == "step":
        return paddle.optimizer.lr.StepDecay(lr, step_size=int(schedule["every"]), gamma=float(schedule["factor"]))
    if schedule["kind"] == "cosine":
        return paddle.optimizer.lr.LambdaDecay(lr, cosine(int(schedule["total"]), float(schedule.get("floor", 0.0))))
    return lr


backend = PaddleBackend()
