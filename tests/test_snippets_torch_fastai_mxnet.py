"""translate(..., to=X) as Python (tools/snippet.py) for torch, fastai and MXNet: every table of each adapter's fidelity
battery (linear and network) is written as a snippet or refused naming a key; a backend's snippets run in one fresh
interpreter (tests/snippets.py), which probes what each built and trains it as the snippet says against the adapter's
own build()/step() on the same data (float64 where the framework allows): bit for bit the same trajectory.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from snippets import run_snippets

from wdparity.engine.data import make_data
from wdparity.judge import fidelity, network_battery
from wdparity.run import registry
from wdparity.run.backend import Inexpressible
from wdparity.run.cases import load_run
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope
from wdparity.tools.snippet import RUN_LEVEL, python_snippet
from wdparity_backends import fastai_snippet, mxnet_setup, mxnet_snippet, torch_snippet
from wdparity_backends.fastai_network import native_table
from wdparity_backends.fastai_optimizers import lr_factor
from wdparity_backends.mxnet_backend import backend as mxnet_backend
from wdparity_backends.mxnet_network import network_refusal
from wdparity_backends.mxnet_vocab import DEFAULT_LR, FLOAT32_DIRECTION, FLOAT32_STATE

ROOT = Path(__file__).resolve().parents[1]
MXNET_PYTHON = mxnet_setup.venv_python(mxnet_setup.default_venv())
TOL = 1e-15   # max relative error allowed where the trajectories are not bitwise equal (float64)
NETWORKS = {"torch": 27, "fastai": 28, "mxnet": 8}   # realized network battery cases (the rest: linear, extras)

# The probe's first lines: which snippet this is (runpy sets __file__), its job and data (written by render()).
PRELUDE = r'''import json, os, re
from pathlib import Path
import numpy as np
from wdparity.engine import network as net_mod
from wdparity.engine.data import batches
i = int(re.fullmatch(r"snippet_(\d+)", Path(ns["__file__"]).stem).group(1))
root = Path(os.environ["WDPARITY_SNIPPET_JOBS"])
job = json.loads((root / f"job_{i}.json").read_text())
data = dict(np.load(root / f"data_{i}.npz"))
network = data.get("model_json") is not None
rows = batches(data["order"], int(job["task"]["batch_size"]))
start = net_mod.start(data) if network else {"weight": data["w0"].reshape(1, -1), "bias": data["b0"].reshape(1)}
start = {k: np.ascontiguousarray(v.T if network and v.ndim == 2 else v) for k, v in start.items()}   # (out, in)
def compare(mine, theirs):
    """(bitwise equal, max relative error, moved) of two trajectories [{neutral name: array}] step by step."""
    pairs = [(a[k], b[k]) for a, b in zip(mine, theirs) for k in b]
    same = len(mine) == len(theirs) and all(np.array_equal(x, z) for x, z in pairs)
    worst = max(float(np.max(np.abs(x - z) / np.maximum(np.abs(z), 1e-300))) for x, z in pairs)
    moved = any(not np.array_equal(mine[0][k], mine[-1][k]) for k in mine[0])
    return {"bitwise": bool(same), "max_rel_err": worst, "moved": moved, "steps": len(mine) - 1}
def adapter_run(backend, read, structure):
    """The adapter's own build() and step() on the same job and data: (structure(built), trajectory)."""
    s = backend.build(job, data)
    built, theirs = structure(s), [read(s.tensors)]
    for t, idx in enumerate(rows):
        backend.step(s, idx, t)
        theirs.append(read(s.tensors))
    return built, theirs
'''

# torch and fastai: the snippet's model gets the task's initial tensors; its parameters read in neutral names.
TORCH_COMMON = r'''
import torch
from wdparity_backends.torch_network import native_names, read
def plain(v):   # JSON of a torch value: a tensor's number(s), containers element by element, an object's type
    if isinstance(v, (torch.Tensor, list, tuple, dict)):
        return ((v.item() if v.ndim == 0 else v.tolist()) if isinstance(v, torch.Tensor) else
                {str(k): plain(x) for k, x in v.items()} if isinstance(v, dict) else [plain(x) for x in v])
    return v if v is None or isinstance(v, (bool, int, float, str)) else type(v).__name__
torch.set_num_threads(1)
dtype = getattr(torch, job["dtype"])
X = torch.as_tensor(data["X_train"], dtype=dtype)
y = torch.as_tensor(data["y_train"], dtype=dtype).reshape(-1, 1)
model = ns["model"]
named = dict(model.named_parameters())
tensors = ({neutral: named[native] for native, neutral in native_names(net_mod.model_of(data), 0).items()}
           if network else {"weight": named["weight"], "bias": named["bias"]})
with torch.no_grad():
    for name, value in start.items():
        tensors[name].copy_(torch.as_tensor(value, dtype=dtype))
'''

TORCH_PROBE = PRELUDE + TORCH_COMMON + r'''
from wdparity_backends.torch_backend import backend
def structure(opt, model, sched):
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [{**{k: plain(v) for k, v in g.items() if k != "params"}, "params": [names[id(p)] for p in g["params"]]}
              for g in opt.param_groups]
    return {"class": type(opt).__name__, "defaults": plain(opt.defaults), "groups": groups,
            "scheduler": None if sched is None else [type(sched).__name__, plain(sched.state_dict())]}
opt, sched = ns["optimizer"], ns.get("scheduler")
out = {"structure": structure(opt, model, sched)}
if not network:
    import wdparity
    d = wdparity.describe(opt, model=model)
    out["live"] = {"semantics": d.semantics.neutral(), "unsupported": [u.key for u in d.unsupported]}
mine = [read(tensors)]
for idx in rows:   # the loop the snippet's last comment writes
    index = torch.as_tensor(idx)
    opt.zero_grad()
    loss = ns["loss_fn"](model(X[index]), y[index])
    loss = loss + ns["penalty"](model) if "penalty" in ns else loss
    loss.backward()
    if "clip_gradients" in ns:
        ns["clip_gradients"](model)
    opt.step()
    if sched is not None:
        sched.step()
    mine.append(read(tensors))
out["adapter"], theirs = adapter_run(backend, read, lambda s: structure(s.optimizer, s.net, s.scheduler))
out["training"] = compare(mine, theirs)
torch.set_default_dtype(torch.float32)
return out
'''

FASTAI_PROBE = PRELUDE + TORCH_COMMON + r'''
from functools import partial
from wdparity_backends.fastai_backend import backend
def cb_name(cb):
    return (cb.func.__name__ + repr(sorted(cb.keywords.items()))) if isinstance(cb, partial) else cb.__name__
def structure(opt, model, learn):
    names = {id(p): n for n, p in model.named_parameters()}
    out = {"class": type(opt).__name__, "cbs": [cb_name(cb) for cb in opt.cbs],
           "groups": [[names[id(p)] for p in pg] for pg in opt.param_lists],
           "hypers": [plain(dict(h)) for h in opt.hypers],
           "do_wd": {names[id(p)]: opt.state[p].get("do_wd", True) for pg in opt.param_lists for p in pg}}
    if learn is not None:   # the Learner's callbacks with their plain attributes (GradientClip's max_norm, ...)
        cbs = [[type(cb).__name__, {k: v for k, v in vars(cb).items() if isinstance(v, (bool, int, float, str))}]
               for cb in learn.cbs]
        out["learner"] = {"lr": learn.lr, "wd_bn_bias": learn.wd_bn_bias, "cbs": cbs}
    return out
opt, learn = ns["optimizer"], ns.get("learn")
out = {"structure": structure(opt, model, learn)}
mine = [read(tensors)]
for t, idx in enumerate(rows):   # the loop the snippet's last comment writes
    if "set_lr" in ns:
        ns["set_lr"](opt, t)
    index = torch.as_tensor(idx)
    if learn is not None:
        learn.loss_grad = ns["loss_func"](model(X[index]), y[index])
        learn._do_grad_opt()
    else:
        loss = ns["loss_fn"](model(X[index]), y[index])
        loss = loss + ns["penalty"](model) if "penalty" in ns else loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    mine.append(read(tensors))
out["adapter"], theirs = adapter_run(backend, read, lambda s: structure(s.opt, s.net, s.learn))
out["training"] = compare(mine, theirs)
torch.set_default_dtype(torch.float32)
return out
'''

MXNET_PROBE = PRELUDE + r'''
from mxnet import autograd, nd
from wdparity_backends.mxnet_backend import backend
from wdparity_backends.mxnet_network import natives_of
def tensors_of(net):
    params = net.collect_params()
    return ({neutral: params[native] for neutral, native in natives_of(tuple(net_mod.names_of(data))).items()}
            if network else {"weight": net.weight, "bias": net.bias})
def simple(obj):
    return {k: v for k, v in sorted(vars(obj).items()) if v is None or isinstance(v, (bool, int, float, str))}
def structure(trainer, net):
    opt, names = trainer.optimizer, {p.name: n for n, p in tensors_of(net).items()}
    return {"class": type(opt).__name__, "attrs": simple(opt),
            "params": {names[p.name]: {"wd_mult": p.wd_mult, "lr_mult": p.lr_mult, "wd": opt._get_wd(i)}
                       for i, p in opt.param_dict.items()},
            "scheduler": opt.lr_scheduler and [type(opt.lr_scheduler).__name__, simple(opt.lr_scheduler)]}
def read(tensors):
    return {name: p.data().asnumpy().copy() for name, p in tensors.items()}
model, trainer, dt = ns["model"], ns["trainer"], job["dtype"]
assert ns["optimizer"] is trainer.optimizer
out = {"structure": structure(trainer, model)}
tensors = tensors_of(model)
for name, value in start.items():
    tensors[name].set_data(nd.array(value, dtype=dt))
X, y = data["X_train"].astype(dt), data["y_train"].astype(dt)
mine = [read(tensors)]
for idx in rows:   # the loop the snippet's last comment writes
    xb, yb = nd.array(X[idx], dtype=dt), nd.array(y[idx], dtype=dt)
    with autograd.record():
        loss = ns["loss_fn"](model(xb), yb)
        loss = loss + ns["penalty"](model) if "penalty" in ns else loss
    loss.backward()
    trainer.step(xb.shape[0])
    mine.append(read(tensors))
out["adapter"], theirs = adapter_run(backend, read, lambda s: structure(s.trainer, s.net))
out["training"] = compare(mine, theirs)
return out
'''
NET_TASK = {**network_battery.NETWORK_TASK, "model": network_battery.MODELS[0]}   # LayerNorm: net.1, net.4
# torch's group builders, which no battery case uses (realize() writes explicit param_groups)
TORCH_BUILDERS = {
    "builder-hf-trainer-network": (NET_TASK, {"optimizer": "AdamW", "weight_decay": 0.1, "hf_trainer_groups": True}),
    "builder-timm-network": (NET_TASK, {"optimizer": "SGD", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.2,
                                        "timm_groups": True, "no_weight_decay_list": ["net.3.*"]}),
    "builder-no-decay-network": ({**NET_TASK, "schedule": {"kind": "step", "every": 4, "factor": 0.5}}, {
        "optimizer": "Adam", "lr": 0.01, "weight_decay": 0.3, "no_decay": ["bias", "net.1.weight"]}),
    "builder-no-decay-linear": (fidelity.BATTERY_TASK, {"optimizer": "AdamW", "weight_decay": 0.1, "no_decay": ["bias"]}),
}


def battery(name: str) -> dict[str, tuple[dict, dict]]:
    """The adapter's linear fidelity battery and, where it trains networks, its network battery."""
    cases, _ = fidelity.native_battery(name)
    if registry.get(name).models_networks:
        cases.update(network_battery.network_battery(name)[0])
    return cases


def mxnet_dtype(task_dict: dict, table: dict) -> str:
    """float64 where MXNet trains the run in it, else float32 (float32 state or direction, a float32 kernel)."""
    f32 = table["optimizer"] in {**FLOAT32_STATE, **FLOAT32_DIRECTION} or network_refusal(
        Task.model_validate({**task_dict, "dtype": "float64"}))
    return "float32" if f32 else "float64"


def render(cases: dict, root: Path, dtype_of) -> tuple[dict, dict]:
    """(case -> snippet, case -> Inexpressible reason); each rendered case's job and data written under root."""
    codes, refused = {}, {}
    for case, (task_dict, table) in sorted(cases.items()):
        task = Task.model_validate({**task_dict, "dtype": dtype_of(task_dict, table)})
        try:
            code = python_snippet(table, task)
        except Inexpressible as exc:
            refused[case] = str(exc)
            continue
        run = load_run("snippet", dict(table), task, f"battery:{case}", {})
        (root / f"job_{len(codes)}.json").write_text(json.dumps({  # the worker's job (cases.Run.work_item)
            "task": run.task.model_dump(), "run": run.config.model_dump(), "semantics": run.semantics.neutral(),
            "dtype": run.dtype}))
        np.savez(root / f"data_{len(codes)}.npz", **make_data(run.task.model_dump()))
        codes[case] = code
    return codes, refused


def run_backend(name: str, root: Path) -> tuple[dict, dict, dict, dict]:
    """(cases, case -> snippet, case -> reason, case -> probe result) for every battery table of backend `name`."""
    python, env, dtype_of = sys.executable, {"WDPARITY_SNIPPET_JOBS": str(root)}, lambda task, table: "float64"
    cases = {**battery(name), **({k: (t, {"backend": "torch", **r}) for k, (t, r) in TORCH_BUILDERS.items()}
                                 if name == "torch" else {})}
    if name == "mxnet":   # MXNet's venv, as the harness runs its worker
        if not MXNET_PYTHON.exists():
            pytest.skip(f"no MXNet venv at {MXNET_PYTHON.parent.parent}: run `wdparity setup mxnet`")
        python, dtype_of = str(MXNET_PYTHON), mxnet_dtype
        env.update(PYTHONPATH=f"{ROOT / 'src'}:{ROOT / 'backends'}", MXNET_ENGINE_TYPE="NaiveEngine",
                   MXNET_CPU_WORKER_NTHREADS="1")
    else:
        pytest.importorskip(name)
    codes, refused = render(cases, root, dtype_of)
    probe = {"torch": TORCH_PROBE, "fastai": FASTAI_PROBE, "mxnet": MXNET_PROBE}[name]
    return cases, codes, refused, dict(zip(codes, run_snippets(list(codes.values()), probe, python=python, env=env)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache: dict = {}
    return lambda name: cache.get(name) or cache.setdefault(name, run_backend(name, tmp_path_factory.mktemp(name)))


# ---------------------------------------------------------------- every backend
@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_battery_table_is_written(name, runs):
    cases, codes, refused, _ = runs(name)
    for case, reason in refused.items():   # a refusal names a key of the table or of the run's task
        assert reason.split(":")[0] in cases[case][1] or reason.split(":")[0] in RUN_LEVEL, (case, reason)
    assert (len(codes), len(refused)) == (len(cases), 0)
    assert sum(1 for c in codes if c.startswith("realized-net-")) == NETWORKS[name]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_snippet_builds_what_the_adapter_builds(name, runs):
    """What the snippet built (torch: groups, hyperparameters, scheduler state; fastai: hypers, callbacks, do_wd, the
    Learner's callbacks; MXNet: the optimizer's attributes, wd_mult and wd per Parameter, lr_scheduler) = build()'s."""
    for case, r in runs(name)[3].items():
        assert r["ok"] and r["value"]["structure"] == r["value"]["adapter"], (case, r)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_snippet_trains_as_the_adapter_bit_for_bit(name, runs):
    results = runs(name)[3]
    training = {case: r["value"]["training"] for case, r in results.items() if r["ok"]}
    assert len(training) == len(results)
    assert all(t["moved"] and t["steps"] >= 6 for t in training.values())
    assert not {case: t for case, t in training.items() if t["max_rel_err"] > TOL}
    assert all(t["bitwise"] for t in training.values()), {case: t for case, t in training.items() if not t["bitwise"]}


def test_a_key_without_code_is_refused_by_name(monkeypatch):
    """A key the snippet writer has no code for (here: as if `momentum` were new) is an error naming it."""
    for module, table in ((torch_snippet, {"backend": "torch", "optimizer": "SGD", "lr": 0.1, "momentum": 0.9}),
                          (fastai_snippet, {"backend": "fastai", "optimizer": "SGD", "lr": 0.1, "mom": 0.9}),
                          (mxnet_snippet, {"backend": "mxnet", "optimizer": "sgd", "momentum": 0.9})):
        key = [k for k in table if k not in ("backend", "optimizer", "lr")][0]
        monkeypatch.setattr(module, "RENDERED", module.RENDERED - {key})
        with pytest.raises(Inexpressible, match=f"^{key}: the .* snippet has no code for this key"):
            python_snippet(table)


# ---------------------------------------------------------------- torch
def test_torch_group_builders_are_written_out(runs):
    groups = {case: r["value"]["structure"]["groups"] for case, r in runs("torch")[3].items() if case in TORCH_BUILDERS}
    timm = [g["params"] for g in groups["builder-timm-network"]]   # ndim <= 1, ".bias" and net.3.* undecayed
    assert timm[1] == ["net.0.weight", "net.6.weight"] and len(timm[0]) == 8 and "net.3.weight" in timm[0]
    assert [g["weight_decay"] for g in groups["builder-no-decay-linear"]] == [0.1, 0.0] and len(groups) == 4


def one_group_own_wd(s: dict) -> bool:   # one param group whose weight_decay is not the constructor's
    return len(s["groups"]) == 1 and s["groups"][0]["weight_decay"] != s["defaults"]["weight_decay"]


def live_mismatches(runs, which) -> tuple[int, dict]:
    """wdparity.describe() of each built optimizer against the adapter's describe() of its table less what describe()
    of a live optimizer cannot see (the penalty, the clipping; a scheduler's initial_lr is listed as unread)."""
    cases, _, _, results = runs("torch")
    unseen = ("penalty", "clip_grad_norm", "norm_type", "clip_grad_value")
    read, wrong = 0, {}
    for case, r in results.items():
        if "live" not in r["value"] or not which(r["value"]["structure"]):
            continue
        expected = load_run("live", {k: v for k, v in cases[case][1].items() if k not in unseen}, Task(), "test",
                            {}).semantics.neutral()
        if r["value"]["live"]["semantics"] != expected:
            wrong[case] = (r["value"]["live"]["semantics"]["decay"], expected["decay"])
        schedule = cases[case][0].get("schedule", {"kind": "constant"})["kind"]
        assert all(re.fullmatch(r"param_groups\[\d+\]\.initial_lr", k) for k in r["value"]["live"]["unsupported"])
        assert bool(r["value"]["live"]["unsupported"]) == (schedule != "constant"), case
        read += 1
    return read, wrong


def test_torch_snippet_describes_as_the_table(runs):
    read, wrong = live_mismatches(runs, lambda s: True)
    assert not wrong and read == sum(1 for task, _ in runs("torch")[0].values() if "model" not in task), wrong


def test_one_group_with_its_own_weight_decay_is_read_as_that_group(runs):
    """SGD([{"params": ..., "weight_decay": 0.2}]) decays by 0.2 (torch_live read the constructor's 0 before)."""
    read, wrong = live_mismatches(runs, one_group_own_wd)
    assert read >= 5 and not wrong, sorted(wrong)


# ---------------------------------------------------------------- fastai
def test_fastai_snippet_decays_as_described(runs):
    """What fastai exposes on the built optimizer (each group's wd hyper, do_wd per tensor, weight_decay or l2_reg
    among its callbacks) gives each tensor the coefficient and coupling of the adapter's describe() of the table."""
    cases, _, _, results = runs("fastai")
    for case, r in results.items():
        task = Task.model_validate({**cases[case][0], "dtype": "float64"})
        run, s = load_run("x", dict(cases[case][1]), task, "test", {}), r["value"]["structure"]
        assert ("weight_decay" in s["cbs"]) != ("l2_reg" in s["cbs"]), case
        coupling = "decoupled" if "weight_decay" in s["cbs"] else "gradient"
        f, neutral = lr_factor(run.config) if coupling == "decoupled" else 1.0, native_table(task.tensors)
        built = {neutral[n]: (h["wd"] / f if f != 1 else h["wd"]) if s["do_wd"][n] else 0.0
                 for group, h in zip(s["groups"], s["hypers"]) for n in group}
        described = {name: 0.0 for name in built}
        for rule in (rule for rule in run.semantics.decay if not rule.via_loss):
            assert rule.coupling == coupling, case
            described.update({name: rule.coefficient for name in rule.params})
        assert built == described, case
        assert sorted(run.semantics.frozen) == sorted(t for t in task.tensors if t not in built), case
    learners = [r["value"]["structure"]["learner"] for r in results.values() if "learner" in r["value"]["structure"]]
    assert len(learners) >= 8 and sum(any(cb[0] == "GradientClip" for cb in x["cbs"]) for x in learners) >= 4


# ---------------------------------------------------------------- MXNet (its own venv)
def test_mxnet_float32_only_runs_are_refused_in_float64_naming_dtype():
    cases = {k: v for k, v in battery("mxnet").items() if v[1]["optimizer"] in {**FLOAT32_STATE, **FLOAT32_DIRECTION}}
    for case, (task_dict, table) in cases.items():
        with pytest.raises(Inexpressible, match=r"^dtype: MXNet's " + table["optimizer"]):
            python_snippet(table, Task.model_validate({**task_dict, "dtype": "float64"}))
    assert len(cases) >= 20


def test_mxnet_optimizer_holds_the_tables_numbers(runs):
    """The built optimizer's attributes are the table's keywords (lr its default where unset), and each Parameter's
    wd (MXNet's _get_wd: wd * wd_mult) is the wd times the multiplier the adapter reads from the table."""
    cases, _, _, results = runs("mxnet")
    for case, r in results.items():
        (task_dict, table), s = cases[case], r["value"]["structure"]
        assert s["attrs"]["lr"] == table.get("learning_rate", DEFAULT_LR[table["optimizer"]]), case
        for key in set(table) - {"backend", "optimizer", "learning_rate", "wd_mult", "collect_params", "penalty"}:
            assert s["attrs"][{"eps": "float_stable_eps"}.get(key, key)] == table[key], (case, key)   # AdaGrad's
        task = Task.model_validate({**task_dict, "dtype": mxnet_dtype(task_dict, table)})
        with tensor_scope(task.tensors):
            mult = mxnet_backend._wd_mults(mxnet_backend.parse({k: v for k, v in table.items() if k != "backend"}), task)
        assert {n: p["wd"] for n, p in s["params"].items()} == {n: table.get("wd", 0.0) * m for n, m in mult.items()}
        assert (s["scheduler"] is None) == (task.schedule.kind == "constant"), case
