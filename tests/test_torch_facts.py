"""torch facts the adapter states (docs/adapters/torch.toml) that no battery or backend test measured
directly: each test measures one statement on the installed release and skips when the framework is absent.
"""


import importlib.util
import inspect
import warnings

import numpy as np
import pytest

HAVE_KERAS_JAX = all(importlib.util.find_spec(m) is not None for m in ("keras", "jax"))
HAVE_JAX = all(importlib.util.find_spec(m) is not None for m in ("jax", "optax"))



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
