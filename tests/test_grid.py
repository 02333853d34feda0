"""lambda x lr grids (`wdparity sweep`): the batched reference equals the serial reference bit for bit, the
vectorized torch and optax paths equal their serial paths to rounding, bad grid files exit 2 with one line."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, cli

from wdparity.engine import batching as batched
from wdparity.engine import reference
from wdparity.engine.data import make_data
from wdparity.run import harness
from wdparity.spec.models import Task

SGD = {"name": "sgd", "lr": 0.003, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "momentum_form": "buffer"}
ADAM = {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "eps_placement": "corrected"}
BOTH = ["weight", "bias"]


def coupled(c, params=BOTH, norm="l2"):
    return {"norm": norm, "coupling": "gradient", "coefficient": c, "scale": None, "params": list(params),
            "l1_at_zero": 0.5 if norm == "l1" else None}


def decoupled(c, scale="lr"):
    return {"norm": "l2", "coupling": "decoupled", "coefficient": c, "scale": scale, "params": BOTH, "l1_at_zero": None}


# family -> (optimizer, rules(lambda), extra semantics); lambda = 0 drops the rules (as a zero penalty does)
FAMILIES = {
    "sgd_coupled": (SGD, lambda lam: [coupled(lam)], {}),
    "nesterov_weight_only_step": (dict(SGD, momentum=0.9, nesterov=True), lambda lam: [coupled(lam, ["weight"])],
                                  {"schedule": {"kind": "step", "every": 7, "factor": 0.5}}),
    "velocity_two_rules_cosine": (dict(SGD, momentum=0.9, momentum_form="velocity"),
                                  lambda lam: [coupled(lam), decoupled(lam / 10)],
                                  {"schedule": {"kind": "cosine", "total": 40, "floor": 0.1}}),
    "adamw": (ADAM, lambda lam: [decoupled(lam / 100)], {}),
    "adam_uncorrected_l1_mxnet_precision": (dict(ADAM, eps_placement="uncorrected", bias_correction_dtype="float32"),
                                            lambda lam: [coupled(lam, norm="l1"), decoupled(lam / 100, "schedule")],
                                            {"hyper_dtype": "float32"}),
    "adam_unscaled_mse": (ADAM, lambda lam: [decoupled(lam / 100, "none")], {"loss": "mse"}),
}
LAMBDAS, LRS = [0.0, 0.3, 3.0, 30.0], [0.001, 0.004, 0.5]   # lr 0.5: unstable, stopped mid-run


def grid_semantics(family: str) -> list[dict]:
    opt, rules, extra = FAMILIES[family]
    out = []
    for lam, lr in itertools.product(LAMBDAS, LRS):
        sem = {"optimizer": dict(opt, lr=lr), "decay": rules(lam) if lam else [], "loss": "half_mse",
               "schedule": {"kind": "constant"}}
        out.append({**sem, **extra})
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_batched_reference_equals_reference_run_bit_for_bit(family, dtype):
    """Exact, not within a tolerance: every config's trajectory (including where an unstable run stops)."""
    data = make_data(Task(epochs=3, batch_size=2, n_train=7).model_dump())   # a short last batch every epoch
    sems = grid_semantics(family)
    assert batched.groups(sems, [""] * len(sems)) == [list(range(len(sems)))]   # lambda = 0 joins via align
    together = reference.run(sems, data, 2, dtype)
    stopped = 0
    for sem, got in zip(sems, together):
        want = reference.run(sem, data, 2, dtype)
        assert np.array_equal(got["weight"], want["weight"], equal_nan=True)
        assert np.array_equal(got["bias"], want["bias"], equal_nan=True)
        stopped += bool(np.isnan(want["weight"][-1]).any())
    assert stopped > 0 or family.startswith("adam")   # the SGD grids include runs the reference stops


def test_align_adds_zero_rules_only_where_the_order_is_kept():
    a, b = coupled(1.0), decoupled(0.1)
    sems = [{"optimizer": SGD, "decay": rules} for rules in ([a, b], [], [b])]
    aligned = batched.align(sems)
    assert [[r["coefficient"] for r in s["decay"]] for s in aligned] == [[1.0, 0.1], [0.0, 0.0], [0.0, 0.1]]
    assert batched.align([{"optimizer": SGD, "decay": [a, b]}, {"optimizer": SGD, "decay": [b, a]}]) is None
    swapped = [{"optimizer": SGD, "decay": [a, b]}, {"optimizer": SGD, "decay": [b, a]}]
    assert batched.groups(swapped, ["", ""]) == [[0], [1]]


def test_the_grid_file_batches_every_vectorizable_convention_and_imports_no_framework():
    code = f"""
import json, sys
from wdparity.tools.grid import load_grid, plan_items
from wdparity.engine.data import make_data
grid = load_grid({str(ROOT / 'sweeps/grids/lambda_lr_grid.toml')!r})
items, modes, carries = plan_items(grid, make_data(grid.spec.task.model_dump()))
sizes = {{name: sorted(len(ks) for owner, ks in carries.values() if owner == name) for name in grid.runs}}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "keras", "jax", "optax", "mxnet"))
print(json.dumps({{"modes": modes, "sizes": {{k: [v[0], v[-1], len(v)] for k, v in sizes.items()}}, "loaded": loaded}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["modes"] == {"d2l_scratch": "vectorized", "torch_sgd": "vectorized", "optax_adw": "vectorized",
                            "keras_l2": "serial", "mxnet_wd": "serial"}
    assert out["sizes"]["torch_sgd"] == [64, 64, 1] and out["sizes"]["d2l_scratch"] == [64, 64, 1]
    assert out["sizes"]["keras_l2"] == [1, 1, 64]


def test_checkpoint_recording_trains_serially():
    from wdparity_backends.numpy_backend import backend

    sems = grid_semantics("sgd_coupled")
    jobs = [{"task": {"batch_size": 1}, "dtype": "float64", "semantics": s} for s in sems]
    assert backend.batch_groups(jobs, {"record_steps": np.arange(3)}) == [[i] for i in range(len(jobs))]


# ---------------------------------------------------------------- the CLI
GRID = """
title = "small grid"
[task]
epochs = 2
[sweep]
values = [0.0, 1.0, 4.0]
lr = [0.001, 0.003]
[conventions.penalty_half]
label = "loss + lambda/2 |w|^2"
key = "penalty.l2"
factor = 0.5
lr_key = "lr"
[conventions.penalty_half.run]
backend = "numpy"
optimizer = "sgd"
lr = 0.003
penalty = { l2 = 0.0, params = ["weight"] }
[conventions.coupled]
label = "coupled lambda on the weight"
key = "decay.0.coefficient"
lr_key = "lr"
[conventions.coupled.run]
backend = "numpy"
optimizer = "sgd"
lr = 0.003
decay = [{ coefficient = 0.0, params = ["weight"] }]
"""


def test_sweep_writes_json_and_html_and_vectorized_equals_serial(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    docs = {}
    for mode, extra in (("vectorized", []), ("serial", ["--serial"])):
        proc = cli("sweep", str(path), "--out", str(tmp_path / mode), *extra)
        assert proc.returncode == 0, proc.stderr
        assert "penalty_half" in proc.stdout and "best final test loss over lr" in proc.stdout
        docs[mode] = json.loads((tmp_path / mode / "sweep.json").read_text())
        assert "<svg" in (tmp_path / mode / "sweep.html").read_text()
    vec, ser = docs["vectorized"], docs["serial"]
    assert (vec["mode"], ser["mode"]) == ("vectorized", "serial")
    sweep = vec["sweeps"][0]
    assert sweep["grid"] == {"lambda": [0.0, 1.0, 4.0], "lr": [0.001, 0.003]}
    for name, conv in sweep["conventions"].items():
        assert conv["mode"] == "vectorized" and conv["items"] == 1
        assert ser["sweeps"][0]["conventions"][name]["mode"] == "serial"
        assert ser["sweeps"][0]["conventions"][name]["items"] == 6
        assert [c["test_loss"] for c in conv["configs"]] == \
            [c["test_loss"] for c in ser["sweeps"][0]["conventions"][name]["configs"]]   # bit-identical
        assert [(c["lambda"], c["lr"]) for c in conv["configs"]] == list(itertools.product([0.0, 1.0, 4.0],
                                                                                             [0.001, 0.003]))
    loss = {n: [c["test_loss"] for c in conv["configs"]] for n, conv in sweep["conventions"].items()}
    assert loss["penalty_half"] == loss["coupled"]   # lambda/2 penalty == coupled lambda, at every lr


def test_a_sweep_file_without_an_lr_axis_runs_as_is(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(GRID.replace("lr = [0.001, 0.003]\n", "").replace('lr_key = "lr"\n', ""))
    proc = cli("sweep", str(path), "--out", str(tmp_path / "out"), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())["sweeps"][0]
    assert sweep["grid"]["lr"] is None
    assert [c["lr"] for c in sweep["conventions"]["coupled"]["configs"]] == [0.003] * 3
    assert "<svg" not in (tmp_path / "out" / "sweep.html").read_text()


BAD = {
    "lr_key_missing": (GRID.replace('lr_key = "lr"\n[conventions.coupled.run]', '[conventions.coupled.run]'),
                       "conventions.coupled.lr_key", "null"),
    "lr_key_without_lr": (GRID.replace("lr = [0.001, 0.003]\n", "").replace(
        'factor = 0.5\nlr_key = "lr"', "factor = 0.5"), "conventions.coupled.lr_key", '"lr"'),
    "lr_key_nowhere": (GRID.replace('lr_key = "lr"\n[conventions.coupled.run]',
                                    'lr_key = "decay.3.lr"\n[conventions.coupled.run]'),
                       "conventions.coupled.lr_key", "decay.3.lr"),
    "lr_key_not_the_lr": (GRID.replace('lr_key = "lr"\n[conventions.coupled.run]',
                                       'lr_key = "momentum"\n[conventions.coupled.run]'),
                          "conventions.coupled.lr_key", "momentum"),
    "negative_lr": (GRID.replace("lr = [0.001, 0.003]", "lr = [-0.001, 0.003]"), "sweep.lr", "-0.001"),
    "not_a_sweep": ('title = "x"\n[runs.a]\nbackend = "numpy"\noptimizer = "sgd"\nlr = 0.1\n', "sweep", ""),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_grid_file_exits_2_with_one_line(tmp_path, name):
    text, key, value = BAD[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    proc = cli("sweep", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and key in lines[0] and value in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- frameworks: vectorized == serial
def _framework_grid(backend: str) -> str:
    """Two conventions per backend, each in float32 and float64 (runs' own dtype), step schedule, short batches."""
    head = ('title = "t"\n[task]\nepochs = 2\nn_train = 7\nbatch_size = 3\n'
            'schedule = { kind = "step", every = 3, factor = 0.5 }\n[sweep]\nvalues = [0.0, 3.0]\nlr = [0.001, 0.004]\n')
    if backend == "torch":
        convs = {"sgd": ("weight_decay", "lr", '{ backend = "torch", optimizer = "SGD", lr = 0.003, momentum = 0.9, '
                         'nesterov = true'),
                 "groups": ("param_groups.0.weight_decay", "lr", '{ backend = "torch", optimizer = "AdamW", lr = 0.003, '
                            'weight_decay = 0.0, param_groups = [{ params = ["weight"], weight_decay = 0.0 }]')}
    else:
        convs = {"chain": ("chain.0.weight_decay", "chain.2.learning_rate", '{ backend = "optax", chain = [{ transform = '
                           '"add_decayed_weights", weight_decay = 0.0 }, { transform = "trace", decay = 0.9 }, '
                           '{ transform = "scale_by_learning_rate", learning_rate = 0.003 }]'),
                 "adamw": ("weight_decay", "learning_rate", '{ backend = "optax", optimizer = "adamw", learning_rate = '
                           '0.003, weight_decay = 0.0, penalty = { l2 = 0.01 }')}
    body = ""
    for name, (key, lr_key, run) in convs.items():
        for dtype in ("float32", "float64"):
            body += (f'[conventions.{name}-{dtype}]\nlabel = "{name}"\nkey = "{key}"\nlr_key = "{lr_key}"\n'
                     f'run = {run}, dtype = "{dtype}" }}\n')
    return head + body


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "optax"])
def test_vectorized_framework_path_equals_its_serial_path(tmp_path, backend):
    """Same worker, same jobs: one batch item vs one item per config. Not bit for bit: the batched matmul
    sums the d products in another order (measured: ~5e-7 relative in float32, ~1e-15 in float64)."""
    pytest.importorskip({"torch": "torch", "optax": "optax"}[backend])
    from wdparity.tools.grid import load_grid, plan_items

    path = tmp_path / "grid.toml"
    path.write_text(_framework_grid(backend))
    grid = load_grid(str(path))
    data = make_data(grid.spec.task.model_dump())
    got = {}
    for serial in (False, True):
        items, modes, carries = plan_items(grid, data, serial=serial)
        assert set(modes.values()) == {"serial" if serial else "vectorized"}
        assert len(items) == (len(grid.runs) * 4 if serial else len(grid.runs))
        results = harness.run_items(items, {"d": data})
        assert all(r.status == "ok" for r in results.values()), {k: r.reason for k, r in results.items()}
        for ident, (name, ks) in carries.items():
            for i, k in enumerate(ks):
                arrays = results[ident].arrays
                got[(serial, name, k)] = arrays if len(ks) == 1 else {
                    key.split(".", 1)[1]: v for key, v in arrays.items() if key.split(".", 1)[0] == str(i)}
    for name, runs in grid.runs.items():
        tol = 1e-12 if name.endswith("float64") else 1e-5
        for k in range(len(runs)):
            a, b = got[(False, name, k)], got[(True, name, k)]
            for tensor in ("weight", "bias"):
                assert np.asarray(a[tensor]).dtype == np.asarray(b[tensor]).dtype
                x, y = np.asarray(a[tensor], np.float64), np.asarray(b[tensor], np.float64)
                assert x.shape == y.shape
                scale = max(1.0, float(np.max(np.abs(y))))
                assert float(np.max(np.abs(x - y))) <= tol * scale, (name, k, tensor)
