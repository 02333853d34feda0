"""fastai facts the adapter states (docs/adapters/fastai.toml) that no battery or backend test measures directly:
each test measures one statement on the installed release and skips when fastai is absent."""

from __future__ import annotations

import importlib.util
import inspect

import pytest

from wdparity.engine.schedules import multiplier
from wdparity_backends.fastai_clip import CLIP_EPS, GRADIENT_CLIP_DEFAULTS
from wdparity_backends.fastai_optimizers import RMSPROP_EPS
from wdparity_backends.fastai_vocab import DEFAULTS, LEARNER_LR, REFUSED

pytestmark = pytest.mark.skipif(importlib.util.find_spec("fastai") is None, reason="fastai not installed")


@pytest.fixture(scope="module")
def fa():
    import torch
    from fastai import optimizer

    torch.set_default_dtype(torch.float64)
    yield optimizer
    torch.set_default_dtype(torch.float32)


def linear(torch, d=3):
    net = torch.nn.Linear(d, 1, dtype=torch.float64)
    with torch.no_grad():
        net.weight.copy_(torch.arange(1.0, d + 1, dtype=torch.float64).reshape(1, d))
        net.bias.fill_(0.5)
    return net


def test_the_keyword_table_is_the_installed_signatures(fa):
    """DEFAULTS: each function's keywords after (params, lr) and their defaults; lr has none; the refused names exist."""
    for name, table in DEFAULTS.items():
        params = inspect.signature(getattr(fa, name)).parameters
        assert list(params)[:2] == ["params", "lr"] and params["lr"].default is inspect.Parameter.empty
        assert {k: p.default for k, p in list(params.items())[2:]} == table, name
    assert set(REFUSED) <= set(fa.__all__)
    makers = {n for n in fa.__all__ if n[0].isupper() and n not in ("Optimizer", "OptimWrapper")} | {"ranger"}
    assert makers == set(DEFAULTS) | set(REFUSED)


def test_rmsprop_drops_its_eps_keyword(fa):
    import torch

    opt = fa.RMSProp(list(linear(torch).parameters()), lr=0.1, eps=1e-3)
    assert opt.hypers[0]["eps"] == RMSPROP_EPS == 1e-8
    assert fa.QHAdam(list(linear(torch).parameters()), lr=0.1, eps=1e-3).hypers[0]["eps"] == 1e-3


def test_the_learner_excludes_the_linear_bias_from_weight_decay(fa):
    import torch
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    for wd_bn_bias, bias_state in ((None, {"do_wd": False}), (False, {"do_wd": False}), (True, {})):
        net = linear(torch)
        extra = {} if wd_bn_bias is None else {"wd_bn_bias": wd_bn_bias}
        learn = Learner(DataLoaders(), net, loss_func=torch.nn.MSELoss(), opt_func=fa.Adam, **extra)
        learn.create_opt()
        assert learn.opt.state[net.weight] == {} and learn.opt.state[net.bias] == bias_state
        assert learn.lr == LEARNER_LR and learn.wd is None and learn.opt.hypers[0]["wd"] == 0.01


@pytest.mark.parametrize("name", ["SGD", "RMSProp", "Adam", "RAdam", "QHAdam", "Lamb"])
def test_true_weight_decay_multiplies_by_1_minus_lr_wd(fa, name):
    """decouple_wd=True with a zero gradient: one step is p *= 1 - lr*wd, exactly (weight_decay before the step)."""
    import torch

    net = linear(torch)
    before = [p.detach().clone() for p in net.parameters()]
    opt = getattr(fa, name)(list(net.parameters()), lr=0.1, wd=0.3, **({"nu_1": 1.0} if name == "QHAdam" else {}))
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, p0 in zip(net.parameters(), before):
        assert torch.equal(p.detach(), p0 * (1 - 0.1 * 0.3)), name


@pytest.mark.parametrize("name", ["SGD", "Adam", "Lamb"])
def test_l2_reg_adds_wd_times_p_to_the_gradient(fa, name):
    import torch

    net = linear(torch)
    opt = getattr(fa, name)(list(net.parameters()), lr=0.1, wd=0.3, decouple_wd=False)
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.25)
    expect = [p.detach() * 0.3 + 0.25 for p in net.parameters()]
    opt.cbs[0](net.weight, **opt.hypers[0])   # l2_reg, the first callback
    opt.cbs[0](net.bias, **opt.hypers[0])
    assert opt.cbs[0].__name__ == "l2_reg"
    assert all(torch.equal(p.grad, e) for p, e in zip(net.parameters(), expect))


def test_lamb_caps_the_trust_ratio_at_10(fa):
    """q = min(rms(p)/rms(step), 10): a tensor 100x larger than its first step (|step| = 1) moves by lr*10."""
    import torch

    p = torch.nn.Parameter(torch.full((4,), 100.0))
    p.grad = torch.full((4,), 0.5)
    fa.Lamb([p], lr=0.01, eps=1e-12).step()
    assert torch.allclose(p.detach(), torch.full((4,), 100.0 - 0.01 * 10), rtol=0, atol=1e-9)   # uncapped: 99.0


def test_radam_rectifies_from_the_step_whose_r_exceeds_5(fa):
    """Below r = 5 RAdam steps -lr*m_hat, independent of sqr_avg; sqr_mom = 0.99 rectifies at step 6
    (r_5 = 4.96, r_6 = 5.94)."""
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = fa.RAdam([p], lr=0.1, mom=0.0, eps=1e-12)
    moved = []
    for t in range(1, 8):
        p.grad = torch.full((1,), 2.0)
        before = float(p.detach())
        opt.step()
        moved.append(round(before - float(p.detach()), 12))
    assert moved[:5] == [0.2] * 5 and all(m != 0.2 for m in moved[5:])   # -lr*g (m_hat = g at mom 0), then r_t*lr


def test_schedcos_is_the_neutral_cosine(fa):
    from fastai.callback.schedule import SchedCos

    sched = {"kind": "cosine", "total": 10, "floor": 0.1}
    cos = SchedCos(0.05, 0.1 * 0.05)
    for t in range(15):
        assert cos(min(t, 10) / 10) == pytest.approx(0.05 * multiplier(sched, t), rel=1e-14, abs=0)


def test_gradient_clip_is_clip_grad_norm_before_the_optimizer_callbacks(fa):
    """GradientClip(max_norm) in the Learner's before_step scales every .grad by max_norm/(||g|| + 1e-6) (the norm
    over the model's parameters); opt.step() then adds l2_reg's wd*p to the clipped gradient, unclipped."""
    from functools import partial

    import torch
    from fastai.callback.training import GradientClip
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    params = inspect.signature(GradientClip).parameters
    assert {k: p.default for k, p in params.items()} == GRADIENT_CLIP_DEFAULTS
    net = linear(torch)
    learn = Learner(DataLoaders(), net, loss_func=torch.nn.MSELoss(), lr=0.1, wd_bn_bias=True,
                    opt_func=partial(fa.SGD, wd=0.5, decouple_wd=False), cbs=GradientClip(0.2))
    learn.create_opt()
    grads = [torch.full_like(p, 3.0) for p in net.parameters()]
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    before = [p.detach().clone() for p in net.parameters()]
    for p, g in zip(net.parameters(), grads):
        p.grad = g.clone()
    learn("before_step")
    for p, g in zip(net.parameters(), grads):
        assert torch.equal(p.grad, g * (0.2 / (norm + CLIP_EPS)))
    learn.opt.step()
    for p, g, p0 in zip(net.parameters(), grads, before):
        expect = p0 - 0.1 * (g * (0.2 / (norm + CLIP_EPS)) + 0.5 * p0)
        assert torch.allclose(p.detach(), expect, rtol=1e-15, atol=0)


def test_rmsprop_momentum_is_uncorrected_adam_at_lr_over_1_minus_mom(fa):
    """RMSProp(mom > 0): grad_avg = mom*grad_avg + g (undampened), p -= lr*grad_avg/(sqrt(sqr_avg) + 1e-8); that is
    Adam's m = mom*m + (1-mom)*g without bias correction at lr' = lr/(1 - mom), and not momentum on g/(sqrt(v) + eps)."""
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    lr, mom, sqr_mom = 0.01, 0.75, 0.9
    opt = fa.RMSProp([p], lr=lr, mom=mom, sqr_mom=sqr_mom)
    m = v = buf = x = y = 0.0
    for g in (2.0, -1.0, 0.5, 4.0):
        p.grad = torch.full((1,), g)
        opt.step()
        m, v = mom * m + (1 - mom) * g, sqr_mom * v + (1 - sqr_mom) * g * g
        x -= lr / (1 - mom) * m / (v ** 0.5 + RMSPROP_EPS)
        buf = mom * buf + g / (v ** 0.5 + RMSPROP_EPS)
        y -= lr * buf
    assert float(p.detach()) == pytest.approx(x, rel=1e-13, abs=0)
    assert abs(float(p.detach()) - y) > 1e-3 * abs(y)   # the neutral RMSprop's momentum is another model


def test_fit_one_cycle_and_fit_flat_cos_are_outside_the_neutral_schedules(fa):
    """combined_cos: a cosine warm-up (fit_one_cycle) or a flat phase (fit_flat_cos) before the cosine decay, its
    position float32 whatever the default dtype; at pct_start = 0 it is SchedCos up to that float32 position."""
    import torch
    from fastai.callback.schedule import SchedCos, combined_cos
    from fastai.torch_core import tensor

    assert torch.get_default_dtype() == torch.float64 and tensor([0.0, 0.25]).dtype == torch.float32
    lr = 0.05
    one_cycle = combined_cos(0.25, lr / 25, lr, lr / 1e5)   # fit_one_cycle's defaults: div 25, div_final 1e5
    assert one_cycle(0.0) == pytest.approx(lr / 25) and one_cycle(0.25) == pytest.approx(lr)
    flat = combined_cos(0.75, lr, lr, lr / 1e5)             # fit_flat_cos's pct_start 0.75
    assert flat(0.5) == lr and flat(0.74) == lr
    at_zero, cos = combined_cos(0.0, lr, lr, lr / 1e5), SchedCos(lr, lr / 1e5)
    rel = max(abs(at_zero(t / 10) - cos(t / 10)) / cos(t / 10) for t in range(10))
    assert 1e-7 < rel < 1e-6   # 4.7e-7: the float32 position, beyond the float64 battery's 1e-9
