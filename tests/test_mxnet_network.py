"""The MXNet adapter on networks (`[task] model`): the Gluon MLP of mxnet_network.py, its Parameter names,
`wd_mult` set by regex (collect_params), the refusals, and the network battery natively in both dtypes.

Translation tests need no MXNet; the batteries and the measured facts run in MXNet's venv (skipped without it).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from conftest import assert_network_battery_green
from test_mxnet_backend import needs_venv

from wdparity.judge import fidelity, network_battery
from wdparity.run.cases import load_run
from wdparity.run.registry import get
from wdparity.spec.errors import InputError
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope
from wdparity_backends import mxnet_setup
from wdparity_backends.mxnet_network import natives_of

backend = get("mxnet")
ROOT = Path(__file__).resolve().parents[1]
TASK = {"num_inputs": 6, "n_train": 16, "n_test": 8, "batch_size": 4, "epochs": 3, "seed": 5}
TANH = {"hidden": [5, 4], "activation": "tanh", "norm": "layer", "norm_eps": 2.0 ** -17}   # a float32 value
RELU = {"hidden": [6], "activation": "relu", "norm": "none"}
GELU = {"hidden": [4, 3], "activation": "gelu", "norm": "layer", "norm_eps": 1e-3}
NORMS = ".*_bias|.*_gamma|.*_beta"
NAMES = ["mlp_dense0_weight", "mlp_dense0_bias", "mlp_layernorm0_gamma", "mlp_layernorm0_beta", "mlp_dense1_weight",
         "mlp_dense1_bias", "mlp_layernorm1_gamma", "mlp_layernorm1_beta", "mlp_dense2_weight", "mlp_dense2_bias"]

# Of the network battery's 56 cases: realized in float32 (float64 tasks: 1 realized, 55 refused).
REALIZED, INEXPRESSIBLE = 8, 48
REALIZED64, INEXPRESSIBLE64 = 1, 55


def load(run: dict, model: dict = TANH, dtype: str = "float32", **task):
    """The run as the case loader reads it (inside the task's tensor scope): InputError for a bad setting."""
    t = Task.model_validate({**TASK, "model": model, "dtype": dtype, **task})
    return load_run("r", {"backend": "mxnet", **run}, t, "case", {})


def decay(run: dict, model: dict = TANH, **task) -> list[tuple]:
    return [(r["coupling"], r["coefficient"], r["params"]) for r in load(run, model, **task).semantics.neutral()["decay"]]


# ---------------------------------------------------------------- names and wd_mult by regex (fast)
def test_native_names_map_to_the_neutral_names_in_layout_order():
    tensors = Task.model_validate({**TASK, "model": TANH}).tensors
    assert list(natives_of(tensors).values()) == NAMES
    assert list(natives_of(tensors)) == list(tensors)
    relu = Task.model_validate({**TASK, "model": RELU}).tensors
    assert natives_of(relu) == {"dense_0.weight": "mlp_dense0_weight", "dense_0.bias": "mlp_dense0_bias",
                                "out.weight": "mlp_dense1_weight", "out.bias": "mlp_dense1_bias"}


def test_collect_params_selects_by_re_match_from_the_start():
    weights = ["dense_0.weight", "dense_1.weight", "out.weight"]
    everything = list(Task.model_validate({**TASK, "model": TANH}).tensors)
    # as users write it: every name ending in bias, gamma or beta (anchored at the start only, hence the .*)
    assert decay({"optimizer": "sgd", "wd": 0.1, "collect_params": [{"select": NORMS, "wd_mult": 0.0}]}) == [
        ("gradient", pytest.approx(0.1), weights)]
    # a prefix selects a whole layer; later calls override earlier ones, as setattr does
    got = decay({"optimizer": "sgd", "wd": 0.1, "collect_params": [
        {"select": ".*bias", "wd_mult": 0.0}, {"select": "mlp_dense1", "wd_mult": 2.0}]})
    biases = {"dense_0.bias", "out.bias"}
    assert got == [("gradient", pytest.approx(0.1), [t for t in everything if t not in biases | {"dense_1.weight",
                                                                                                 "dense_1.bias"}]),
                   ("gradient", pytest.approx(0.2), ["dense_1.weight", "dense_1.bias"])]
    # no collect_params: Gluon decays every Parameter (wd_mult 1.0)
    assert decay({"optimizer": "sgd", "wd": 0.1}) == [("gradient", pytest.approx(0.1), everything)]
    assert decay({"optimizer": "sgd", "wd": 0.1, "collect_params": [{"select": "mlp_dense0_weight|mlp_dense2_weight",
                                                                     "lr_mult": 1.0}]}) == [
        ("gradient", pytest.approx(0.1), everything)]


@pytest.mark.parametrize("entry, key, words", [
    ({"select": "bias", "wd_mult": 0.0}, "collect_params[0].select", "selects no parameter"),
    ({"select": "dense0_bias", "wd_mult": 0.0}, "collect_params[0].select", "selects no parameter"),
    ({"select": "mlp_dense(", "wd_mult": 0.0}, "select", "must be a Python regular expression"),
    ({"select": ".*bias", "lr_mult": 2.0}, "collect_params[0].lr_mult", "one learning rate for every tensor"),
    ({"select": ".*bias"}, "collect_params[0]", "must set wd_mult"),
])
def test_a_select_that_matches_nothing_or_cannot_be_applied_is_an_error(entry, key, words):
    with pytest.raises(InputError) as err:
        load({"optimizer": "sgd", "wd": 0.1, "collect_params": [entry]})
    assert key in err.value.key and words in str(err.value)
    if "selects no parameter" in words:
        assert all(name in str(err.value) for name in NAMES)     # the parameters that exist are listed


def test_the_linear_wd_mult_and_collect_params_do_not_cross():
    with pytest.raises(InputError, match="collect_params = .*mlp_dense0_weight"):
        load({"optimizer": "sgd", "wd": 0.1, "wd_mult": {"bias": 0.0}})
    with pytest.raises(InputError, match="is for networks"):
        load({"optimizer": "sgd", "wd": 0.1, "collect_params": [{"select": ".*bias", "wd_mult": 0.0}]}, {})


def test_what_mxnet_cannot_train_is_refused_with_the_reason():
    with pytest.raises(InputError, match="no tanh-approximate GELU"):
        load({"optimizer": "sgd"}, {**GELU, "activation": "gelu_tanh"})
    with pytest.raises(InputError, match="in C float"):
        load({"optimizer": "sgd"}, GELU, dtype="float64")
    with pytest.raises(InputError, match=r"norm_eps = 9.99999974737875\de-06"):
        load({"optimizer": "sgd"}, {**TANH, "norm_eps": 1e-5}, dtype="float64")
    load({"optimizer": "sgd"}, TANH, dtype="float64")            # 2**-17 is a float32: passed exactly
    load({"optimizer": "sgd"}, GELU)                              # float32: gelu and any eps are what MXNet computes


# ---------------------------------------------------------------- realize on networks (fast)
def test_round_trip_on_the_network_battery_with_counts_and_reasons():
    expressed, reasons = network_battery.round_trip("mxnet")
    assert (len(expressed), len(reasons)) == (REALIZED, INEXPRESSIBLE)
    why = Counter(text.split(" (")[0].split(";")[0] for text in reasons.values())
    assert why["MXNet 1.9.1 has no tanh-approximate GELU: nn.GELU() takes no argument"] == 14
    groups = expressed["net-sgd-coupled_groups-gelu-4-3-layer-constant-normal"]
    assert groups["collect_params"] == [{"select": NORMS, "wd_mult": pytest.approx(1 / 6)}]
    assert expressed["net-lamb-decoupled_weight-gelu-4-3-layer-cosine-normal_all"]["collect_params"] == [
        {"select": NORMS, "wd_mult": 0.0}]


def test_realize_names_parameters_when_a_group_is_not_whole_kinds():
    task = Task.model_validate({**TASK, "model": TANH})
    with tensor_scope(task.tensors):
        sem = load({"optimizer": "sgd", "learning_rate": 0.1, "wd": 0.1, "collect_params": [
            {"select": "mlp_dense1", "wd_mult": 0.0}, {"select": "mlp_layernorm0_gamma", "wd_mult": 0.5}]}).semantics
        run = backend.realize(sem, task)
    assert run["collect_params"] == [{"select": "mlp_layernorm0_gamma", "wd_mult": 0.5},
                                     {"select": "mlp_dense1_weight|mlp_dense1_bias", "wd_mult": 0.0}]
    assert load(run).semantics.neutral() == sem.neutral()


def _realized64():
    """The network cases realized for float64 runs (realize() sees the float64 task: its eps and gelu refusals)."""
    battery = {case: ({**task, "dtype": "float64"}, sem) for case, (task, sem) in network_battery.network_cases().items()}
    return fidelity.realized_cases("mxnet", battery)


def test_float64_realize_refuses_gelu_norm_eps_and_the_float32_state_optimizers():
    cases, refused = _realized64()
    assert (len(cases), len(refused)) == (REALIZED64, INEXPRESSIBLE64)
    assert sum("in C float (static_cast<float>" in v for v in refused.values()) >= 3
    assert sum("LayerNorm takes eps as a C float" in v for v in refused.values()) >= 1


# ---------------------------------------------------------------- native network runs (MXNet's own settings)
STEP, COSINE = {"kind": "step", "every": 4, "factor": 0.5}, {"kind": "cosine", "total": 12, "floor": 0.1}
NATIVE = {
    "sgd-momentum-no-decay-on-biases-and-norms": (TANH, STEP, {"optimizer": "sgd", "learning_rate": 0.05,
                                                  "momentum": 0.9, "wd": 0.01,
                                                  "collect_params": [{"select": NORMS, "wd_mult": 0.0}]}),
    "nag-momentum": (RELU, COSINE, {"optimizer": "nag", "learning_rate": 0.05, "momentum": 0.9}),
    "adam-three-groups": (TANH, None, {"optimizer": "adam", "learning_rate": 0.01, "wd": 0.05, "collect_params": [
        {"select": ".*bias", "wd_mult": 0.0}, {"select": "mlp_layernorm", "wd_mult": 0.5}]}),
    "signum-wd-lh": (RELU, None, {"optimizer": "signum", "learning_rate": 0.01, "momentum": 0.9, "wd": 0.01,
                                  "wd_lh": 0.02}),
    "sgd-clip-rescale-first-layer": (RELU, None, {"optimizer": "sgd", "learning_rate": 0.1, "rescale_grad": 0.5,
                                                  "clip_gradient": 0.5, "wd": 0.01,
                                                  "collect_params": [{"select": "mlp_dense0", "wd_mult": 3.0}]}),
    "adam-l2-penalty": (TANH, STEP, {"optimizer": "adam", "learning_rate": 0.01, "penalty": {"l2": 0.01}}),
    "rmsprop-centered": (GELU, None, {"optimizer": "rmsprop", "learning_rate": 0.01, "centered": True, "gamma2": 0.9,
                                      "wd": 0.01, "collect_params": [{"select": "mlp_dense0", "wd_mult": 2.0}]}),
    "adagrad": (TANH, None, {"optimizer": "adagrad", "learning_rate": 0.1, "wd": 0.01}),
    "adadelta": (RELU, None, {"optimizer": "adadelta", "wd": 0.01}),
    "lamb-weights-only": (GELU, COSINE, {"optimizer": "lamb", "learning_rate": 0.01, "wd": 0.1,
                                         "collect_params": [{"select": ".*_(bias|gamma|beta)", "wd_mult": 0.0}]}),
    "sgd-gelu": (GELU, STEP, {"optimizer": "sgd", "learning_rate": 0.1, "wd": 0.02}),
}
FLOAT32_ONLY = ("rmsprop", "adagrad", "adadelta", "lamb")   # float32 state / float32 direction (mxnet_vocab.py)


def native_cases(dtype: str) -> dict[str, tuple[dict, dict]]:
    out = {}
    for name, (model, schedule, run) in NATIVE.items():
        if dtype == "float64" and (model is GELU or run["optimizer"] in FLOAT32_ONLY):
            continue
        task = {**TASK, "model": model, **({"schedule": schedule} if schedule else {})}
        out[f"native-net-{name}"] = (task, {"backend": "mxnet", **run})
    return out


def _green(report: dict, dtype: str) -> float:
    for name, entry in report.items():
        assert entry["status"] == "ok", (name, entry["reason"])
        assert entry["versions"].get("mxnet") == "1.9.1"
        assert entry["holds"], (name, entry["max_rel_err"], entry["tol"])
    worst = max(entry["max_rel_err"] for entry in report.values())
    if dtype == "float64":
        assert worst <= 1e-9
    return worst


@needs_venv
@pytest.mark.slow
def test_network_battery_float32():
    report = assert_network_battery_green("mxnet", "float32", realized=REALIZED, inexpressible=INEXPRESSIBLE)
    assert max(v["max_rel_err"] for v in report.values()) < 1e-5
    assert len(native_cases("float32")) == 11
    assert _green(fidelity.run_battery(native_cases("float32"), "float32"), "float32") < 1e-5


@needs_venv
@pytest.mark.slow
def test_network_battery_float64():
    """float64: what MXNet trains honestly there (no gelu, float32-exact norm_eps, no float32-state optimizer)."""
    cases, _ = _realized64()
    cases.update(native_cases("float64"))
    assert len(cases) == REALIZED64 + 6
    assert _green(fidelity.run_battery(cases, "float64"), "float64") < 1e-14


# ---------------------------------------------------------------- facts measured on the installed release
PROBE = textwrap.dedent("""
    import json, math
    import numpy as np
    import mxnet as mx
    from mxnet import gluon, nd
    from wdparity.engine import network as net_mod
    from wdparity.engine.data import make_data
    from wdparity.spec.models import Task
    from wdparity_backends import mxnet_network
    nn, out = gluon.nn, {}
    for _ in range(2):                 # blocks made before: the prefixed names do not move
        nn.Dense(3), nn.HybridSequential()
    task = Task.model_validate({**TASK, "model": {**TANH, "norm_eps": 1e-5}, "init": "normal_all"}).model_dump()
    data = make_data(task)
    net, named = mxnet_network.network(mx, data, "float64", [{"select": ".*bias", "wd_mult": 0.0}])
    params = net.collect_params()
    out["names"] = list(params.keys())
    out["wd_mult"] = {k: p.wd_mult for k, p in params.items()}
    out["shape"] = list(params["mlp_dense0_weight"].shape)
    out["eps"] = [b._kwargs["eps"] for b in net._children.values() if type(b).__name__ == "LayerNorm"]
    out["acts"] = [b._act_type for b in net._children.values() if type(b).__name__ == "Activation"]
    start, back = net_mod.start(data), mxnet_network.read(named)
    out["bit_identical"] = sorted(start) == sorted(back) and all((start[k] == back[k]).all() for k in start)
    out["select"] = {s: list(net.collect_params(s).keys()) for s in (".*bias", "bias", "mlp_dense1")}
    plain = nn.HybridSequential()
    with plain.name_scope():
        plain.add(nn.Dense(2, in_units=3))
    out["unprefixed"] = list(plain.collect_params().keys())
    out["default_params"] = {k: [p.wd_mult, p.lr_mult] for k, p in nn.LayerNorm(in_channels=2).collect_params().items()}
    out["layernorm_default_eps"] = nn.LayerNorm()._kwargs["eps"]
    x = np.linspace(-4, 4, 33)
    erf = 0.5 * x * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x]))
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    for dt in ("float32", "float64"):
        g = nn.GELU()(nd.array(x, dtype=dt)).asnumpy().astype(np.float64)
        out["gelu_" + dt] = [float(abs(g - erf).max()), float(abs(g - tanh).max())]
    try:
        nd.LeakyReLU(nd.array(x), act_type="gelu_tanh")
        out["gelu_tanh"] = "accepted"
    except mx.base.MXNetError:
        out["gelu_tanh"] = "MXNetError"
    z = np.array([[0.0, 1e-3, 3e-3]])
    ln = nn.LayerNorm(epsilon=1e-5, in_channels=3)
    ln.initialize()
    ln.cast("float64")
    y = ln(nd.array(z, dtype="float64")).asnumpy()
    c = z - z.mean()
    out["ln_eps_err"] = [float(abs(y - c / np.sqrt((c ** 2).mean() + e)).max()) for e in (1e-5, float(np.float32(1e-5)))]
    print(json.dumps(out))
""").replace("TASK", repr(TASK)).replace("TANH", repr(TANH))


@pytest.fixture(scope="module")
def probe():
    python = mxnet_setup.venv_python(mxnet_setup.default_venv())
    if not python.exists():
        pytest.skip(f"no MXNet venv at {python.parent.parent}: run `wdparity setup mxnet`")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'backends'}", "MXNET_ENGINE_TYPE": "NaiveEngine"}
    proc = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_mxnet_parameter_names_are_the_prefixed_gluon_names(probe):
    assert probe["names"] == NAMES
    assert probe["unprefixed"][0].startswith("hybridsequential") and probe["unprefixed"][0] != "hybridsequential0_dense0_weight"
    assert probe["shape"] == [5, 6]          # Dense stores (out, in): the neutral (6, 5) transposed
    assert probe["bit_identical"]


def test_mxnet_collect_params_is_re_match_anchored_at_the_start(probe):
    assert probe["select"][".*bias"] == ["mlp_dense0_bias", "mlp_dense1_bias", "mlp_dense2_bias"]
    assert probe["select"]["bias"] == []
    assert probe["select"]["mlp_dense1"] == ["mlp_dense1_weight", "mlp_dense1_bias"]
    assert probe["wd_mult"] == {name: 0.0 if name.endswith("_bias") else 1.0 for name in NAMES}
    defaults = probe["default_params"]        # a LayerNorm's gamma and beta: wd_mult and lr_mult 1.0, as a Dense's
    assert [k.split("_")[-1] for k in defaults] == ["gamma", "beta"] and all(v == [1.0, 1.0] for v in defaults.values())


def test_mxnet_layernorm_epsilon_is_set_and_its_default_is_1e_5_a_c_float(probe):
    assert probe["layernorm_default_eps"] == 1e-5
    assert probe["eps"] == [1e-5, 1e-5]       # the task's norm_eps, set explicitly
    plain, as_float32 = probe["ln_eps_err"]
    assert as_float32 < 1e-15 < plain         # float64 LayerNorm adds float32(eps)


def test_mxnet_gelu_is_the_erf_form_in_c_float_and_has_no_tanh_form(probe):
    assert probe["acts"] == ["tanh", "tanh"]
    erf32, tanh32 = probe["gelu_float32"]
    erf64, tanh64 = probe["gelu_float64"]
    assert erf32 < 1e-6 and tanh32 > 1e-4
    assert 1e-9 < erf64 < 1e-6 and tanh64 > 1e-4     # float64 weights, float32 arithmetic
    assert probe["gelu_tanh"] == "MXNetError"
