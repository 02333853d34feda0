"""torch gradient clipping: torch.nn.utils.clip_grad_norm_ / clip_grad_value_ measured on the installed release
(formula, scope, position against weight_decay), and the adapter's clip keys both ways (docs/adapters/torch.toml)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import detects_a_wrong_model

from wdparity.engine.data import make_data
from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity_backends.torch_backend import backend
from wdparity_backends.torch_clip import CLIP_EPS, NORM_TYPE

TASK = Task.model_validate(fidelity.BATTERY_TASK)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _grads(torch, *values):
    """Parameters (float64) whose .grad holds `values`."""
    out = []
    for v in values:
        p = torch.nn.Parameter(torch.zeros(len(v), dtype=torch.float64))
        p.grad = torch.tensor(v, dtype=torch.float64)
        out.append(p)
    return out


# ---------------------------------------------------------------- torch, measured
def test_torch_clip_signatures_are_the_modelled_ones(torch):
    norm = inspect.signature(torch.nn.utils.clip_grad_norm_).parameters
    assert list(norm) == ["parameters", "max_norm", "norm_type", "error_if_nonfinite", "foreach"]
    assert (norm["norm_type"].default, norm["error_if_nonfinite"].default, norm["foreach"].default) == (NORM_TYPE, False, None)
    assert list(inspect.signature(torch.nn.utils.clip_grad_value_).parameters) == ["parameters", "clip_value", "foreach"]


def test_torch_clip_grad_norm_scales_by_max_norm_over_the_global_norm_plus_1e_6(torch):
    """Two tensors with norms 3 and 4: the global norm is 5 and both are scaled by 1/(5 + 1e-6), bit for bit."""
    a, b = _grads(torch, (3.0, 0.0), (4.0,))
    total = torch.nn.utils.clip_grad_norm_([a, b], 1.0)
    assert float(total) == 5.0 and CLIP_EPS == 1e-6
    scale = np.float64(1.0) / (np.float64(5.0) + np.float64(1e-6))
    assert a.grad.numpy().tobytes() == (np.array([3.0, 0.0]) * scale).tobytes()
    assert b.grad.numpy().tobytes() == (np.array([4.0]) * scale).tobytes()
    assert b.grad.numpy()[0] != 4.0 / 5.0                          # the eps is there: not max_norm / total_norm
    alone = _grads(torch, (4.0,))[0]                               # per tensor the factor would be 1/(4 + 1e-6)
    torch.nn.utils.clip_grad_norm_([alone], 1.0)
    assert alone.grad.numpy()[0] != b.grad.numpy()[0]


def test_torch_clip_grad_norm_never_scales_up(torch):
    """min(1, ...): under max_norm the gradient is multiplied by exactly 1.0, unchanged bit for bit."""
    (p,) = _grads(torch, (0.3, -0.4))
    torch.nn.utils.clip_grad_norm_([p], 1.0)
    assert p.grad.numpy().tobytes() == np.array([0.3, -0.4]).tobytes()
    (q,) = _grads(torch, (1.0, 0.0))                               # norm exactly max_norm: 1/(1 + 1e-6) < 1 scales
    torch.nn.utils.clip_grad_norm_([q], 1.0)
    assert q.grad.tolist() == [1.0 / (1.0 + 1e-6), 0.0]


def test_torch_norm_type_inf_is_the_largest_element(torch):
    (p,) = _grads(torch, (3.0, -4.0))
    assert float(torch.nn.utils.clip_grad_norm_([p], 10.0, norm_type=float("inf"))) == 4.0


def test_torch_clip_grad_value_clamps_each_element(torch):
    a, b = _grads(torch, (0.5, -0.05, -2.0), (0.1,))
    torch.nn.utils.clip_grad_value_([a, b], 0.1)
    assert a.grad.tolist() == [0.1, -0.05, -0.1] and b.grad.tolist() == [0.1]


def test_torch_clips_on_cpu_with_the_foreach_kernels(torch):
    """foreach = None takes _foreach_norm/_foreach_mul_ on CPU (unlike the optimizers' foreach = None): same numbers."""
    from torch.utils._foreach_utils import _device_has_foreach_support, _get_foreach_kernels_supported_devices

    assert _device_has_foreach_support(torch.device("cpu")) and "cpu" not in _get_foreach_kernels_supported_devices()
    got = {}
    for foreach in (None, True, False):
        params = _grads(torch, (0.7, -1.3, 2.1), (0.4,))
        torch.nn.utils.clip_grad_norm_(params, 0.5, foreach=foreach)
        got[foreach] = np.concatenate([p.grad.numpy() for p in params])
    np.testing.assert_allclose(got[None], got[False], rtol=1e-15)
    assert got[None].tobytes() == got[True].tobytes()


@pytest.mark.parametrize("decoupled", [False, True])
def test_torch_weight_decay_is_added_after_the_clipping(torch, decoupled):
    """clip before step(): SGD's weight_decay*w joins the clipped gradient (sgd.py:353); AdamW's w *= 1 - lr*wd
    comes after it too; neither is clipped (clip(g + wd*w) would give another step)."""
    lr, wd, w0, g = 0.1, 0.5, np.array([2.0, -1.0]), np.array([3.0, 4.0])
    p = torch.nn.Parameter(torch.tensor(w0))
    cls = torch.optim.AdamW if decoupled else torch.optim.SGD
    opt = cls([p], lr=lr, weight_decay=wd)
    p.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_([p], 1.0)
    opt.step()
    clipped = g / (5.0 + 1e-6)
    if decoupled:   # Adam's first step is lr * m_hat / (sqrt(v_hat) + eps) = lr * sign(g), after w *= 1 - lr*wd
        want = w0 * (1 - lr * wd) - lr * clipped / (np.abs(clipped) + 1e-8)
    else:
        want = w0 - lr * (clipped + wd * w0)
        both = g + wd * w0                                          # clip(g + wd*w) would be another step
        assert not np.allclose(w0 - lr * both / (np.linalg.norm(both) + 1e-6), want, rtol=1e-3)
    np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-13)


def test_torch_a_tensor_no_group_names_accumulates_its_grad_into_the_norm(torch):
    """optimizer.zero_grad() zeroes only its groups' params (optimizer.py:1058-1062): an unnamed tensor's .grad is
    the sum of every step's, and clip_grad_norm_(model.parameters()) counts that sum."""
    net = torch.nn.Linear(2, 1, dtype=torch.float64)
    opt = torch.optim.SGD([{"params": [net.weight]}], lr=0.0)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        net(x).sum().backward()                                     # d/db = 1 at every step
        total = torch.nn.utils.clip_grad_norm_(net.parameters(), 1e9)
    assert net.bias.grad.tolist() == [3.0]
    assert float(total) == pytest.approx(np.sqrt(1.0 + 4.0 + 9.0), rel=1e-15)


# ---------------------------------------------------------------- the adapter
def _sem(clip, decay=(), opt=None, frozen=()):
    return Semantics.model_validate({"optimizer": opt or {"name": "sgd", "lr": 0.05}, "decay": list(decay),
                                     "clip": clip, "frozen": list(frozen)})


def _describe(run):
    return backend.describe(backend.parse(run), TASK).neutral()


def test_describe_states_the_clip_keys():
    assert _describe({"optimizer": "SGD", "clip_grad_norm": 0.5})["clip"] == {
        "kind": "global_norm", "threshold": 0.5, "eps": 1e-6, "position": "loss_gradient"}
    assert _describe({"optimizer": "SGD", "clip_grad_norm": 0.5, "norm_type": 2.0})["clip"]["kind"] == "global_norm"
    assert _describe({"optimizer": "Adam", "clip_grad_value": 0.1})["clip"] == {
        "kind": "value", "threshold": 0.1, "eps": 0.0, "position": "loss_gradient"}
    assert "clip" not in _describe({"optimizer": "SGD"})
    # under clipping the penalty keeps its via_loss (it is clipped), weight_decay has none (it is not)
    rules = _describe({"optimizer": "SGD", "weight_decay": 0.1, "penalty": {"l2": 0.2}, "clip_grad_value": 0.1})["decay"]
    assert [(r["coefficient"], r.get("via_loss", False)) for r in rules] == [(0.1, False), (0.4, True)]


@pytest.mark.parametrize("clip, decay, table", [
    ({"kind": "global_norm", "threshold": 1.0, "eps": 1e-6}, [{"coefficient": 0.3, "params": ["weight"], "via_loss": True}],
     {"penalty": {"l2": 0.15, "params": ["weight"]}, "clip_grad_norm": 1.0}),
    ({"kind": "value", "threshold": 0.1}, [{"coefficient": 0.2}, {"coefficient": 0.3, "params": ["weight"], "via_loss": True}],
     {"weight_decay": 0.2, "penalty": {"l2": 0.15, "params": ["weight"]}, "clip_grad_value": 0.1}),
    ({"kind": "value", "threshold": 0.1}, [{"coefficient": 0.3, "via_loss": True}],
     {"penalty": {"l2": 0.15, "params": ["weight", "bias"]}, "clip_grad_value": 0.1}),
])
def test_realize_places_each_term_where_the_clipping_sees_it_or_not(clip, decay, table):
    sem = _sem(clip, decay)
    assert backend.realize(sem, TASK) == {"optimizer": "SGD", "lr": 0.05, **table}
    assert _describe(backend.realize(sem, TASK)) == sem.neutral()


GLOBAL = {"kind": "global_norm", "threshold": 1.0, "eps": 1e-6}


@pytest.mark.parametrize("sem, words", [
    (_sem({"kind": "tensor_norm", "threshold": 0.5}), "one norm over all the tensors"),
    (_sem({"kind": "global_norm", "threshold": 1.0}), "eps 1e-6 instead of 0"),
    (_sem({**GLOBAL, "position": "after_coupled_decay"}, [{"coefficient": 0.3}]), "as a loss penalty"),
    (_sem(GLOBAL, [{"coefficient": 0.3, "params": ["weight"]}], frozen=["bias"]), "accumulates"),
    (_sem(GLOBAL, [{"norm": "l1", "coefficient": 0.1, "params": ["weight"]}]), "L1 term only as a loss penalty"),
    (_sem(GLOBAL, [{"coefficient": 0.2}, {"coefficient": 0.1, "params": ["weight"]}]), "one weight_decay per tensor"),
    (_sem(GLOBAL, [{"coefficient": 0.2, "via_loss": True}, {"coefficient": 0.1}]), "in that order"),
    (_sem(GLOBAL, [{"coefficient": 0.2}, {"coupling": "decoupled", "coefficient": 0.1}], {"name": "adam", "lr": 0.01}),
     "spends torch's weight_decay"),
])
def test_realize_refuses_the_clips_torch_has_not(sem, words):
    with pytest.raises(Inexpressible) as err:
        backend.realize(sem, TASK)
    assert words in str(err.value) and "nearest" in str(err.value), str(err.value)


CLIP_REASON = {"clip_global_exact": "eps 1e-6 instead of 0", "clip_tensor": "one norm over all the tensors",
               "clip_after_decay": "as a loss penalty"}


def test_the_clip_rows_of_the_round_trip():
    """clip_grad_norm (eps 1e-6) and clip_grad_value realize every optimizer's penalty and coupled rows, and Adam's
    decoupled ones (AdamW); SGD's decoupled rows fall on SGD's coupled-only weight_decay, the rest on the clip."""
    expressed, reasons = fidelity.round_trip("torch")
    done = sorted(n for n in expressed if "-clip_" in n)
    assert len(done) == 14 and {n.split("-")[2] for n in done} == {"clip_global", "clip_value"}
    assert [n for n in done if "-decoupled-" in n] == ["adam-decoupled-clip_global-step-normal-half_mse",
                                                     "adam-decoupled-clip_value-step-zeros-half_mse"]
    refused = {n: r for n, r in reasons.items() if "-clip_" in n}
    assert len(refused) == 31
    for n, r in refused.items():
        row, decay, clip = n.split("-")[:3]
        assert CLIP_REASON[clip] in r if clip in CLIP_REASON else (row != "adam" and decay == "decoupled"
                                                                   and "only gradient-coupled" in r), (n, r)
    assert {run.get("clip_grad_norm", run.get("clip_grad_value")) for n, run in expressed.items() if "-clip_" in n} == {
        fidelity.CLIPS["clip_global"]["threshold"], fidelity.CLIPS["clip_value"]["threshold"]}


def test_every_torch_class_has_a_battery_case_at_its_defaults():
    from wdparity_backends.torch_run import KEYWORDS

    bare = {run["optimizer"] for task, run in backend.battery_extras().values() if list(run) == ["optimizer"]}
    assert bare == set(KEYWORDS)


@pytest.mark.parametrize("sem, words", [
    (Semantics.model_validate({"optimizer": {"name": "lamb", "lr": 0.01}}), "torch.optim has no LAMB"),
    (Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1}, "decay": [
        {"coefficient": 0.1, "schedule": {"kind": "step", "every": 4, "factor": 0.5}}]}), "constant of its param group"),
])
def test_realize_refuses_the_newest_neutral_fields_by_name(sem, words):
    """LAMB and a schedule on the decay coefficient (neutral, after round 1): refused, never dropped."""
    with pytest.raises(Inexpressible) as err:
        backend.realize(sem, TASK)
    assert words in str(err.value) and "nearest" in str(err.value), str(err.value)


def test_no_torch_scheduler_writes_weight_decay(torch):
    """LRScheduler writes each group's "lr" (lr_scheduler.py:296-297); weight_decay is named nowhere in the module."""
    assert "weight_decay" not in inspect.getsource(torch.optim.lr_scheduler)


def test_clipped_runs_train_alone_in_grids():
    jobs = [{"task": TASK.model_dump(), "run": backend.parse({"optimizer": "SGD", "lr": lr, "clip_grad_norm": 1.0}
                                                             ).model_dump(), "dtype": "float64"} for lr in (0.1, 0.2)]
    assert backend.batch_key(jobs[0]) is None and backend.batch_groups(jobs, make_data(jobs[0]["task"])) == [[0], [1]]


@pytest.mark.parametrize("run, key, words", [
    ({"optimizer": "SGD", "clip_grad_norm": 1.0, "clip_grad_value": 0.1}, "clip_grad_value", "one clipping per run"),
    ({"optimizer": "SGD", "norm_type": 2.0}, "norm_type", "belongs to clip_grad_norm"),
    ({"optimizer": "SGD", "clip_grad_norm": 1.0, "norm_type": 1.0}, "norm_type", "must be 2.0"),
    ({"optimizer": "SGD", "clip_grad_norm": 1.0, "norm_type": float("inf")}, "norm_type", "the largest |g|"),
    ({"optimizer": "SGD", "clip_grad_norm": 0.0}, "clip_grad_norm", "> 0"),
    ({"optimizer": "SGD", "clip_grad_value": -0.1}, "clip_grad_value", "> 0"),
    ({"optimizer": "SGD", "clip_grad_norm": 1.0, "param_groups": [{"params": ["weight"]}]}, "clip_grad_norm",
     "accumulates"),
])
def test_bad_clip_keys_name_the_key(bad_run, run, key, words):
    err = bad_run("torch", run)
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


@pytest.mark.slow
@pytest.mark.parametrize("case, mutate", [
    ("clip-norm-penalty-and-wd", lambda s: s.pop("clip")),
    ("clip-norm-penalty-and-wd", lambda s: s["clip"].update(eps=0.0)),                 # the 1e-6 is measured
    ("clip-norm-penalty-and-wd", lambda s: s["clip"].update(kind="tensor_norm")),      # global, not per tensor
    ("clip-norm-penalty-and-wd", lambda s: s["decay"][0].update(via_loss=True)),       # weight_decay is not clipped
    ("clip-norm-penalty-and-wd", lambda s: s["clip"].update(position="after_coupled_decay")),
    ("clip-value-penalty-l1-adam", lambda s: [r.pop("via_loss", None) for r in s["decay"]]),   # the penalty is
    ("clip-value-penalty-l1-adam", lambda s: s["clip"].update(threshold=0.0505)),
    ("clip-norm-radam-penalty", lambda s: s.pop("clip")),
    ("clip-value-adamw-frozen-bias", lambda s: s.pop("clip")),
    ("clip-value-adagrad-penalty", lambda s: s["decay"][0].pop("via_loss")),
])
def test_the_battery_tells_torch_clipping_from_its_neighbours(case, mutate):
    """A native clip case meets its own describe() in float64 and fails a neighbouring clip or term placement."""
    pytest.importorskip("torch")
    detects_a_wrong_model(backend, case, mutate)
