"""torch facts the adapter states (docs/adapters/torch.toml) that no battery or backend test measured
directly: each test measures one statement on the installed release and skips when the framework is absent.
"""


import importlib.util
import inspect
import json
import textwrap
import warnings

import numpy as np
import pytest
from conftest import run_probe

from wdparity.engine.data import make_data
from wdparity.judge import fidelity
from wdparity.spec.models import Task
from wdparity_backends.torch_backend import TORCH_L1_AT_ZERO, backend
from wdparity_backends.torch_run import DEFAULT_LR, DEFAULT_WD, DEFAULTS, KEYWORDS

HAVE_KERAS_JAX = all(importlib.util.find_spec(m) is not None for m in ("keras", "jax"))
HAVE_JAX = all(importlib.util.find_spec(m) is not None for m in ("jax", "optax"))
NEEDS_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")



# ---------------------------------------------------------------- torch (in this process)
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _param(torch, values=(1.0, -2.0, 3.0)):
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _steps(torch, opt_cls, grads, **kwargs):
    p = _param(torch)
    opt = opt_cls([p], **kwargs)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy().copy()


G = [(0.5, -0.25, 1.0), (1.0, 0.5, -2.0), (-0.5, 0.25, 0.5)]


def test_torch_nesterov_requires_momentum_and_zero_dampening(torch):
    for kwargs in ({"momentum": 0.0}, {"momentum": 0.9, "dampening": 0.1}):
        with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
            torch.optim.SGD([_param(torch)], lr=0.1, nesterov=True, **kwargs)


def test_torch_maximize_negates_the_gradient(torch):
    w0, g = _param(torch).detach().numpy(), np.array(G[0])
    up = _steps(torch, torch.optim.SGD, G[:1], lr=0.1, maximize=True)
    np.testing.assert_allclose(up, w0 + 0.1 * g, rtol=1e-15)          # ascent: w + lr*g
    np.testing.assert_allclose(_steps(torch, torch.optim.SGD, G[:1], lr=0.1), w0 - 0.1 * g, rtol=1e-15)


def test_torch_dampening_without_momentum_changes_nothing(torch):
    damped = _steps(torch, torch.optim.SGD, G, lr=0.1, dampening=0.5)
    assert damped.tobytes() == _steps(torch, torch.optim.SGD, G, lr=0.1).tobytes()


def test_torch_sgd_has_no_decoupled_weight_decay(torch):
    params = inspect.signature(torch.optim.SGD).parameters
    assert "weight_decay" in params and "decoupled_weight_decay" not in params
    assert "decoupled_weight_decay" in inspect.signature(torch.optim.Adam).parameters
    with pytest.raises(TypeError):
        torch.optim.SGD([_param(torch)], lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)


def test_torch_tensor_lr_must_have_one_element(torch):
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        torch.optim.SGD([_param(torch)], lr=torch.tensor([0.1, 0.2]))


def test_torch_multi_element_weight_decay_is_refused_by_the_constructor(torch):
    """Refused in __init__ (`weight_decay < 0.0`), before `_single_tensor_sgd` ever tests `weight_decay != 0`."""
    with pytest.raises(RuntimeError, match="ambiguous"):
        torch.optim.SGD([_param(torch)], lr=0.1, weight_decay=torch.tensor([0.1, 0.2], dtype=torch.float64))


def test_torch_an_lr_requiring_grad_takes_the_addcmul_branch(torch):
    q = torch.ones(3, dtype=torch.float64)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([q], lr=lr, differentiable=True)
    q.grad = torch.full_like(q, 2.0)
    opt.step()
    assert type(q.grad_fn).__name__ == "AddcmulBackward0"
    np.testing.assert_allclose(q.detach().numpy(), 1 - 0.1 * 2.0, rtol=0, atol=1e-15)


def test_torch_a_tensor_in_two_groups_is_a_value_error(torch):
    w, b = _param(torch), _param(torch)
    with pytest.raises(ValueError, match="more than one parameter group"):
        torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [w, b], "weight_decay": 0.2}], lr=0.1)


def test_torch_adamw_is_adam_with_the_decoupled_flag(torch):
    kw = {"lr": 0.01, "weight_decay": 0.3}
    adamw = _steps(torch, torch.optim.AdamW, G, **kw)
    assert adamw.tobytes() == _steps(torch, torch.optim.Adam, G, decoupled_weight_decay=True, **kw).tobytes()
    assert adamw.tobytes() != _steps(torch, torch.optim.Adam, G, **kw).tobytes()


def test_torch_amsgrad_normalises_by_the_running_max_of_v(torch):
    grads = [tuple(10 * x for x in G[0]), tuple(0.1 * x for x in G[0])]
    lr, b1, b2, eps = 0.01, 0.9, 0.5, 1e-8
    w, m, v, vmax = np.array([1.0, -2.0, 3.0]), 0.0, 0.0, 0.0
    for t, g in enumerate(np.array(grads), 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        w = w - lr / (1 - b1 ** t) * m / (np.sqrt(vmax) / np.sqrt(1 - b2 ** t) + eps)
    ams = _steps(torch, torch.optim.Adam, grads, lr=lr, betas=(b1, b2), amsgrad=True)
    np.testing.assert_allclose(ams, w, rtol=1e-14)
    assert not np.allclose(ams, _steps(torch, torch.optim.Adam, grads, lr=lr, betas=(b1, b2)), rtol=1e-6)


def test_torch_rmsprop_defaults_to_alpha_099_and_eps_1e_8(torch):
    params = inspect.signature(torch.optim.RMSprop).parameters
    assert (params["alpha"].default, params["eps"].default) == (0.99, 1e-8)
    rho, eps, lr = 0.99, 1e-8, 1e-2                      # and they are what one default step uses
    g = np.array(G[0])
    want = np.array([1.0, -2.0, 3.0]) - lr * g / (np.sqrt((1 - rho) * g * g) + eps)
    np.testing.assert_allclose(_steps(torch, torch.optim.RMSprop, G[:1]), want, rtol=1e-14)


W0 = np.array([1.0, -2.0, 3.0])


def test_torch_adagrad_first_step_is_lr_times_the_sign_of_g_and_eps_sits_outside_the_root(torch):
    g, lr = np.array(G[0]), 0.1
    np.testing.assert_allclose(_steps(torch, torch.optim.Adagrad, G[:1], lr=lr), W0 - lr * np.sign(g), rtol=1e-9)
    tiny = [(1e-10, -1e-10, 3e-10)]   # sum = g^2 from 0: g / (sqrt(g^2) + eps), never g / sqrt(g^2 + eps)
    t = np.array(tiny[0])
    np.testing.assert_allclose(_steps(torch, torch.optim.Adagrad, tiny, lr=lr, eps=1e-10), W0 - lr * t / (np.abs(t) + 1e-10),
                               rtol=1e-14)


def test_torch_adagrad_lr_decay_and_accumulator_follow_the_closed_form(torch):
    lr, decay, s0, wd = 0.1, 0.05, 0.1, 0.2
    w, acc = W0.copy(), np.full(3, s0)
    for t, g in enumerate(np.array(G)):   # clr = lr / (1 + (step - 1)*lr_decay), weight_decay added to g
        g = g + wd * w
        acc = acc + g * g
        w = w - lr / (1 + t * decay) * g / (np.sqrt(acc) + 1e-10)
    got = _steps(torch, torch.optim.Adagrad, G, lr=lr, lr_decay=decay, initial_accumulator_value=s0, weight_decay=wd)
    np.testing.assert_allclose(got, w, rtol=1e-14)


def test_torch_adadelta_follows_the_closed_form_at_its_defaults(torch):
    rho, eps, lr, wd = 0.9, 1e-6, 1.0, 0.1
    w, v, x = W0.copy(), np.zeros(3), np.zeros(3)
    for g in np.array(G):
        g = g + wd * w
        v = rho * v + (1 - rho) * g * g
        d = np.sqrt(x + eps) / np.sqrt(v + eps) * g
        x = rho * x + (1 - rho) * d * d
        w = w - lr * d
    np.testing.assert_allclose(_steps(torch, torch.optim.Adadelta, G, weight_decay=wd), w, rtol=1e-13)


def test_torch_adamax_adds_eps_inside_the_max(torch):
    grads, lr, b1, b2, eps = [(1e-8, -1e-8, 2e-8), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)], 0.01, 0.9, 0.5, 1e-8
    placements = {}
    for where in ("in_max", "outside"):
        w, m, u = W0.copy(), np.zeros(3), np.zeros(3)
        for t, g in enumerate(np.array(grads), 1):
            m = b1 * m + (1 - b1) * g
            u = np.maximum(b2 * u, np.abs(g) + (eps if where == "in_max" else 0.0))
            w = w - lr / (1 - b1 ** t) * m / (u + (0.0 if where == "in_max" else eps))
        placements[where] = w
    got = _steps(torch, torch.optim.Adamax, grads, lr=lr, betas=(b1, b2), eps=eps)
    np.testing.assert_allclose(got - W0, placements["in_max"] - W0, rtol=1e-13)
    assert not np.allclose(got - W0, placements["outside"] - W0, rtol=1e-2)


@pytest.mark.parametrize("name", ["NAdam", "RAdam"])
def test_torch_decoupled_weight_decay_multiplies_w_by_1_minus_lr_wd_before_the_step(torch, name):
    """With zero gradients the step is 0 (m = v = 0), so the flag's decay alone moves w: w * (1 - lr*wd) per step."""
    lr, wd, zero = 0.01, 0.3, [(0.0, 0.0, 0.0)] * 2
    cls = getattr(torch.optim, name)
    got = _steps(torch, cls, zero, lr=lr, weight_decay=wd, decoupled_weight_decay=True)
    assert got.tobytes() == (W0 * (1 - lr * wd) * (1 - lr * wd)).tobytes()
    assert not np.allclose(_steps(torch, cls, zero, lr=lr, weight_decay=wd), got, rtol=1e-6)   # coupled: through m, v


def _nadam(grads, lr, b1, b2, eps, mu):
    w, m, v, prod = W0.copy(), np.zeros(3), np.zeros(3), 1.0
    for t, g in enumerate(np.array(grads), 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        prod *= mu(t)
        d = ((1 - mu(t)) / (1 - prod) * g + mu(t + 1) / (1 - prod * mu(t + 1)) * m) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        w = w - lr * d
    return w


def test_torch_nadam_momentum_decay_1000_is_the_constant_b1_momentum(torch):
    """0.96^(1000 t) < 2e-18 rounds mu_t = b1*(1 - 0.5*0.96^(t*momentum_decay)) to b1 (optax's constant mu)."""
    assert 0.9 * (1.0 - 0.5 * 0.96 ** 1000) == 0.9 and 0.96 ** 1000 < 2e-18
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)   # mu_product in float64 (next test)
    try:
        got = _steps(torch, torch.optim.NAdam, G, lr=0.01, momentum_decay=1000.0)
        sched = _steps(torch, torch.optim.NAdam, G, lr=0.01)
    finally:
        torch.set_default_dtype(prev)
    np.testing.assert_allclose(got, _nadam(G, 0.01, 0.9, 0.999, 1e-8, lambda t: 0.9), rtol=1e-14)
    np.testing.assert_allclose(sched, _nadam(G, 0.01, 0.9, 0.999, 1e-8, lambda t: 0.9 * (1 - 0.5 * 0.96 ** (t * 0.004))),
                               rtol=1e-14)


def test_torch_nadam_keeps_mu_product_in_the_default_dtype(torch):
    """A float64 NAdam run under the float32 default dtype rounds mu_product to float32 at every step."""
    gen = np.random.default_rng(0)
    grads, out, prev = [tuple(g) for g in gen.normal(size=(12, 3))], {}, torch.get_default_dtype()
    for default in (torch.float32, torch.float64):
        torch.set_default_dtype(default)
        try:
            p = _param(torch)
            opt = torch.optim.NAdam([p], lr=0.01)
            for g in grads:
                p.grad = torch.tensor(g, dtype=torch.float64)
                opt.step()
            out[default] = (opt.state[p]["mu_product"].dtype, p.detach().numpy() - W0)
        finally:
            torch.set_default_dtype(prev)
    assert out[torch.float32][0] == torch.float32 and out[torch.float64][0] == torch.float64
    rel = np.max(np.abs(out[torch.float32][1] - out[torch.float64][1]) / np.abs(out[torch.float64][1]))
    assert 1e-9 < rel < 1e-6   # far beyond float64 rounding (the float64 battery then fails from step 1)


def test_torch_radam_first_five_steps_are_bias_corrected_momentum_sgd(torch):
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-3
    grads = [G[t % 3] for t in range(7)]
    rho_inf, w, m, v, rhos = 2 / (1 - b2) - 1, W0.copy(), np.zeros(3), np.zeros(3), []
    for t, g in enumerate(np.array(grads), 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        rhos.append(rho)
        m_hat = m / (1 - b1 ** t)
        if rho > 5:   # eps added to sqrt(v) before the correction sqrt(1 - b2^t) ("uncorrected")
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            w = w - lr * m_hat * r * np.sqrt(1 - b2 ** t) / (np.sqrt(v) + eps)
        else:
            w = w - lr * m_hat
        if t == 5:
            sgd = w.copy()
    assert max(rhos[:5]) <= 5 < min(rhos[5:])
    np.testing.assert_allclose(_steps(torch, torch.optim.RAdam, grads[:5], lr=lr, eps=eps), sgd, rtol=1e-14)
    np.testing.assert_allclose(_steps(torch, torch.optim.RAdam, grads, lr=lr, eps=eps), w, rtol=1e-13)


@pytest.mark.parametrize("name, kwargs", [
    ("Adam", {"amsgrad": True}), ("Adagrad", {"lr_decay": 0.05, "initial_accumulator_value": 0.1}), ("Adadelta", {}),
    ("Adamax", {}), ("NAdam", {"decoupled_weight_decay": True}), ("NAdam", {}), ("RAdam", {"decoupled_weight_decay": True})])
def test_torch_foreach_and_fused_compute_the_loop_s_update(torch, name, kwargs):
    cls, grads = getattr(torch.optim, name), [G[t % 3] for t in range(8)]
    loop = _steps(torch, cls, grads, lr=0.01, weight_decay=0.2, foreach=False, **kwargs)
    kernels = [{"foreach": True}] + ([{"fused": True}] if "fused" in inspect.signature(cls).parameters else [])
    for kernel in kernels:
        np.testing.assert_allclose(_steps(torch, cls, grads, lr=0.01, weight_decay=0.2, **kernel, **kwargs), loop,
                                   rtol=1e-13, err_msg=str(kernel))


def test_torch_optim_has_no_lion(torch):
    assert not [n for n in dir(torch.optim) if "lion" in n.lower() or "lamb" in n.lower()]   # nor LAMB


def test_torch_foreach_none_resolves_to_the_single_tensor_loop_on_cpu(torch):
    from torch.optim.optimizer import _default_to_fused_or_foreach

    fused, foreach = _default_to_fused_or_foreach([_param(torch)], differentiable=False, use_fused=False)
    assert (fused, foreach) == (False, False)


def test_torch_foreach_and_fused_together_raise(torch):
    for cls in (torch.optim.SGD, torch.optim.Adam):
        with pytest.raises(RuntimeError, match="cannot be `True` together"):
            cls([_param(torch)], lr=0.1, foreach=True, fused=True)


def test_torch_mse_loss_broadcasts_a_vector_target_against_a_column(torch):
    pred, target = torch.arange(4.0).reshape(4, 1), torch.arange(4.0) * 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        loss = torch.nn.MSELoss()(pred, target)
    assert any("different to the input size" in str(w.message) for w in seen)
    pairs = (pred.numpy() - target.numpy()[None, :]) ** 2            # (4, 4): every prediction against every target
    assert float(loss) == pytest.approx(pairs.mean())
    assert float(loss) != pytest.approx(((pred[:, 0] - target) ** 2).mean().item())


# ---------------------------------------------------------------- measured facts about the installed torch
PROBE = textwrap.dedent("""
    import inspect, json, warnings
    import torch
    from wdparity.engine.schedules import multiplier
    from wdparity_backends.torch_run import scheduler as _scheduler
    warnings.simplefilter("ignore")
    out = {}
    for dt in (torch.float32, torch.float64):
        x = torch.zeros(3, dtype=dt, requires_grad=True)
        torch.sum(torch.abs(x)).backward()
        out[f"abs_grad_at_0_{dt}"] = x.grad.tolist()
    from wdparity_backends.torch_run import DEFAULTS, KEYWORDS
    sig = {n: inspect.signature(getattr(torch.optim, n)).parameters for n in KEYWORDS}
    out["defaults"] = {n: {k: s[k].default for k in DEFAULTS[n]} for n, s in sig.items()}
    out["keywords"] = {n: sorted(k for k in s if k != "params") for n, s in sig.items()}
    out["adam_has_decoupled_flag"] = "decoupled_weight_decay" in sig["Adam"]

    def err(schedule, lr, steps):
        p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        opt = torch.optim.SGD([p], lr=lr)
        sch = _scheduler(torch, opt, schedule, lr, steps)
        worst = 0.0
        for t in range(steps):
            want = lr * multiplier(schedule, t)
            got = opt.param_groups[0]["lr"]
            worst = max(worst, abs(got - want) / want if want else abs(got))
            opt.step(); sch.step()
        return worst
    cos = [({"kind": "cosine", "total": T, "floor": f}, lr) for T, f, lr in
           [(10, 0.1, 0.05), (7, 0.15, 0.07), (1, 0.2, 0.1), (1000, 0.0, 0.01), (3000, 0.3, 0.003)]]
    out["cosine_upto_total"] = max(err(s, lr, s["total"] + 1) for s, lr in cos)
    out["cosine_past_total"] = max(err(s, lr, 3 * s["total"] + 7) for s, lr in cos)
    out["step"] = max(err({"kind": "step", "every": e, "factor": g}, 0.07, 400) for e, g in [(1, 0.97), (4, 0.5), (7, 0.3)])
    # the plain CosineAnnealingLR after T_max: periodic (it rises again), unlike the neutral cosine
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=0.1)
    sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01)
    lrs = []
    for t in range(21):
        lrs.append(opt.param_groups[0]["lr"]); opt.step(); sch.step()
    out["plain_cosine_at_2T"] = lrs[20]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def probe():
    return run_probe(PROBE)


@NEEDS_TORCH
def test_torch_abs_subgradient_at_zero_is_the_modelled_one(probe):
    assert probe["abs_grad_at_0_torch.float32"] == [TORCH_L1_AT_ZERO] * 3
    assert probe["abs_grad_at_0_torch.float64"] == [TORCH_L1_AT_ZERO] * 3


@NEEDS_TORCH
def test_constructor_defaults_are_the_modelled_ones(probe):
    """DEFAULTS (lr, weight_decay and every numeric hyperparameter describe() fills in) is each signature's."""
    assert probe["defaults"] == {n: {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
                                 for n, d in DEFAULTS.items()}
    assert {n: d["weight_decay"] for n, d in probe["defaults"].items()} == DEFAULT_WD
    assert {n: d["lr"] for n, d in probe["defaults"].items()} == DEFAULT_LR


@NEEDS_TORCH
def test_the_keyword_table_is_the_installed_signatures(probe):
    """KEYWORDS (the vocabulary table: which keyword belongs to which torch.optim class) is each constructor's
    signature, read from the installed torch: a keyword torch adds or drops fails here."""
    assert probe["keywords"] == {n: sorted(keys) for n, keys in KEYWORDS.items()}
    assert probe["adam_has_decoupled_flag"]


@NEEDS_TORCH
def test_torch_schedulers_match_the_neutral_multiplier(probe):
    assert probe["cosine_upto_total"] < 1e-9     # recursive CosineAnnealingLR vs the closed form
    assert probe["cosine_past_total"] < 1e-9     # SequentialLR(..., ConstantLR(floor)) holds the floor
    assert probe["step"] < 1e-9                  # recursive StepLR, 400 steps
    assert probe["plain_cosine_at_2T"] == pytest.approx(0.1)   # finding: CosineAnnealingLR is periodic


@NEEDS_TORCH
@pytest.mark.slow
@pytest.mark.parametrize("row, field, wrong", [
    ("amsgrad-none", "amsgrad", None), ("adagrad_lr_decay-none", "lr_decay", 0.0), ("adadelta-none", "rho", 0.95),
    ("adamax-none", "eps_placement", "outside"), ("nadam-none", "momentum_decay", 1.0),
    ("radam-none", "threshold", 6.0), ("radam-none", "eps_placement", "corrected")])
def test_the_battery_tells_each_modelled_torch_field_from_its_neighbour(row, field, wrong):
    """A realized battery case, trained natively, meets its own describe() and fails one field changed."""
    task, sem = next(c for n, c in fidelity.neutral_battery().items() if n.startswith(row + "-"))
    task = Task.model_validate({**task, "dtype": "float64"})
    run = backend.parse(backend.realize(backend.inherent(sem, task), task))
    semantics, data = backend.describe(run, task).neutral(), make_data(task.model_dump())
    native = backend.train({"task": task.model_dump(), "run": run.model_dump(), "semantics": semantics,
                            "dtype": "float64"}, data)
    assert fidelity.fidelity(semantics, native, data, task.batch_size, "float64")["holds"]
    changed = json.loads(json.dumps(semantics))
    changed["optimizer"][field] = wrong
    assert not fidelity.fidelity(changed, native, data, task.batch_size, "float64")["holds"]
