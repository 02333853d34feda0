"""optax on networks (issue 19): the Flax-style params tree and its paths, each mask form optax takes (a list of
paths, a boolean tree or a prefix of one, {patterns}, {ndim_gt} / {ndim_ne}) read into neutral tensors and
measured against what optax itself decays, the refusals, and the facts docs/adapters/optax.toml states (JAX's
gelu default, optax's unmasked adamw, its structure check). JAX runs in fresh interpreters (the x64 flag)."""

import importlib.util
import json
import textwrap

import pytest
from conftest import assert_network_battery_green, run_probe
from pydantic import ValidationError

from wdparity.run import registry
from wdparity.run.backend import Inexpressible
from wdparity.spec.errors import InputError, from_validation_error
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope

HAVE_JAX = all(importlib.util.find_spec(m) is not None for m in ("jax", "optax"))
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax/optax not installed")
TASK = {"num_inputs": 3, "n_train": 12, "n_test": 4, "batch_size": 4, "epochs": 2, "seed": 3,
        "model": {"hidden": [4, 2], "activation": "gelu", "norm": "layer", "norm_eps": 1e-3}}
PATHS = {"dense_0.weight": "Dense_0/kernel", "dense_0.bias": "Dense_0/bias", "norm_0.scale": "LayerNorm_0/scale",
         "norm_0.offset": "LayerNorm_0/bias", "dense_1.weight": "Dense_1/kernel", "dense_1.bias": "Dense_1/bias",
         "norm_1.scale": "LayerNorm_1/scale", "norm_1.offset": "LayerNorm_1/bias", "out.weight": "Dense_2/kernel",
         "out.bias": "Dense_2/bias"}
KERNELS = ["dense_0.weight", "dense_1.weight", "out.weight"]


def decays(mask, task=TASK, key="mask"):
    """The neutral tensors optax.adamw(mask=...) decays, as describe() reads it."""
    backend, t = registry.get("optax"), Task.model_validate(task)
    table = {"optimizer": "adamw", "learning_rate": 0.1, "weight_decay": 0.5, key: mask}
    with tensor_scope(t.tensors):
        try:
            run = backend.parse(table)
        except ValidationError as exc:   # as the case loader reports it: key, expectation, value
            raise from_validation_error(exc, "", table) from None
        sem = backend.describe(run, t)
    (rule,) = sem.decay
    return rule.params


# ---------------------------------------------------------------- the battery and its round trip
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_network_battery(dtype):
    assert_network_battery_green("optax", dtype, realized=42, inexpressible=14)


def test_network_round_trip():
    from wdparity.judge import network_battery

    expressed, reasons = network_battery.round_trip("optax")
    assert (len(expressed), len(reasons)) == (42, 14)
    l1 = {k for k, v in reasons.items() if "d|w|/dw = 1.0 at w = 0" in v}
    adagrad = {k for k, v in reasons.items() if "scale_by_rss adds eps inside the root" in v}
    assert len(l1) == 7 and all("-l1-" in k for k in l1)
    assert len(adagrad) == 7 and all(k.startswith("net-adagrad-") for k in adagrad)
    masks = [t.get("mask") for run in expressed.values() for t in run.get("chain", [run])]
    assert {"ndim_gt": 1} in masks   # the weight matrices: the ndim idiom
    trees = [m for m in masks if isinstance(m, dict) and "ndim_gt" not in m]
    assert trees and all(m["LayerNorm_0"] is True for m in trees if "LayerNorm_0" in m)   # a prefix tree


# ---------------------------------------------------------------- names and mask forms (describe)
def test_native_names_are_the_flax_paths():
    from wdparity_backends.optax_network import native_names

    assert native_names(Task.model_validate(TASK).tensors) == PATHS
    one = {**TASK, "model": {"hidden": [5], "activation": "relu"}}
    assert native_names(Task.model_validate(one).tensors) == {
        "dense_0.weight": "Dense_0/kernel", "dense_0.bias": "Dense_0/bias", "out.weight": "Dense_1/kernel",
        "out.bias": "Dense_1/bias"}
    assert native_names(("weight", "bias")) == {"weight": "weight", "bias": "bias"}


def test_each_mask_form_reads_into_neutral_tensors():
    assert decays(["Dense_0/kernel", "Dense_2/bias"]) == ["dense_0.weight", "out.bias"]
    assert decays({"ndim_gt": 1}) == KERNELS
    assert decays({"ndim_ne": 1}) == KERNELS
    assert decays({"patterns": ["*/kernel"]}) == KERNELS
    assert decays({"patterns": ["Dense_*"]}) == [n for n in PATHS if PATHS[n].startswith("Dense_")]  # * crosses "/"
    assert decays({"patterns": ["LayerNorm_?/scale", "Dense_2/*"]}) == ["norm_0.scale", "norm_1.scale", "out.weight",
                                                                     "out.bias"]
    tree = {"Dense_0": {"kernel": True, "bias": False}, "LayerNorm_0": False, "Dense_1": True, "LayerNorm_1": False,
            "Dense_2": {"kernel": True, "bias": False}}
    assert decays(tree) == ["dense_0.weight", "dense_1.weight", "dense_1.bias", "out.weight"]
    assert decays(None) == list(PATHS)   # no mask: every tensor, LayerNorm scales and offsets included
    assert decays(["weight"], task={**TASK, "model": {}}) == ["weight"]   # the linear model's list, unchanged


@pytest.mark.parametrize("mask, key, says", [
    (["Dense_0/kernel", "Dense_9/kernel"], "mask", "'Dense_9/kernel' names no parameter"),
    (["dense_0.weight"], "mask", "names no parameter"),                       # neutral names are not optax's paths
    ([], "mask", "at least one parameter"),
    ({"patterns": ["*/weight"]}, "mask.patterns", "pattern '*/weight' matches no parameter"),
    ({"patterns": ["*/kernel", "BatchNorm_*"]}, "mask.patterns", "pattern 'BatchNorm_*' matches no parameter"),
    ({"ndim_gt": 2}, "mask.ndim_gt", "matches no parameter"),
    ({"Dense_0": True, "LayerNorm_0": False}, "mask", "must mirror the params tree"),
    ({"Dense_0": {"kernel": True}, "LayerNorm_0": False, "Dense_1": True, "LayerNorm_1": False, "Dense_2": True},
     "mask", "at Dense_0"),
    ({"Dense_0": "yes", "LayerNorm_0": False, "Dense_1": True, "LayerNorm_1": False, "Dense_2": True},
     "mask", "must hold booleans"),
    ({"Dense_0": False, "LayerNorm_0": False, "Dense_1": False, "LayerNorm_1": False, "Dense_2": False},
     "mask", "decays no parameter"),
])
def test_a_mask_that_matches_nothing_is_an_error_listing_the_parameters(mask, key, says):
    with pytest.raises(InputError) as err:
        decays(mask)
    text = str(err.value)
    assert says in text and key in text, text
    if "at least one" not in says and "mirror" not in says:
        assert "Dense_0/kernel (ndim 2)" in text and "LayerNorm_1/bias (ndim 1)" in text, text


def test_adafactor_on_a_network_is_refused():
    backend, t = registry.get("optax"), Task.model_validate(TASK)
    linear = Task.model_validate({**TASK, "model": {}})
    ada = backend.describe(backend.parse({"optimizer": "adafactor", "learning_rate": 0.1}), linear)
    with tensor_scope(t.tensors):
        with pytest.raises(InputError, match="not modelled by this adapter"):
            backend.describe(backend.parse({"optimizer": "adafactor", "learning_rate": 0.1}), t)
        with pytest.raises(Inexpressible, match="adafactor on a network"):
            backend.realize(ada, t)


# ---------------------------------------------------------------- measured natively
PROBE = textwrap.dedent("""
    import json
    import numpy as np
    import jax, jax.numpy as jnp, optax
    from wdparity.engine import network as net_mod
    from wdparity.engine.data import make_data
    from wdparity.spec.models import Task
    from wdparity.spec.network import tensor_scope
    from wdparity_backends import optax_network as onet
    task = Task.model_validate(json.loads(TASK_JSON))
    data = make_data(task.model_dump())
    tensors = task.tensors
    out = {"x64": bool(jax.config.jax_enable_x64), "flax": __import__("importlib").util.find_spec("flax") is not None}
    params = onet.init_params(jnp, data, np.float64)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    out["paths"] = {jax.tree_util.keystr(k, simple=True, separator="/"): list(v.shape) for k, v in flat}
    start = net_mod.start(data)
    X = np.asarray(data["X_train"])
    model = net_mod.model_of(data)
    ref = net_mod.forward(start, X, model)[0]
    got = np.asarray(onet.apply_fn(jax, jnp, model)(params, jnp.asarray(X)))[:, 0]
    out["forward_err"] = float(np.max(np.abs(got - ref)))
    out["read_equal"] = all(np.array_equal(v, start[k]) for k, v in onet.read(params, tensors).items())
    # which leaves optax decays, per mask form: add_decayed_weights(1.0) on zero updates
    ones = jax.tree.map(jnp.ones_like, params)   # every leaf nonzero, so each decayed one shows

    def decayed(mask):
        tx = optax.add_decayed_weights(1.0, mask=mask)
        u, _ = tx.update(jax.tree.map(jnp.zeros_like, ones), tx.init(ones), ones)
        got = onet.read(u, tensors)
        return [k for k in tensors if np.any(got[k] != 0)]
    out["native"] = {}
    for name, mask in json.loads(MASKS_JSON).items():
        out["native"][name] = decayed(onet.optax_mask(mask, tensors))
    out["no_mask"] = decayed(None)
    tx = optax.adamw(1.0, weight_decay=0.5)   # no mask: every leaf, LayerNorm scale and bias included
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, ones), tx.init(ones), ones)
    out["adamw_unmasked"] = {k: float(np.max(np.abs(v + 0.5))) for k, v in onet.read(u, tensors).items()}
    mism = {}
    for name, mask in {"missing": {"Dense_0": True}, "wrapped": {"params": True},
                       "inner": {**{k: True for k in params}, "Dense_0": {"kernel": True}}}.items():
        try:
            optax.adamw(1.0, mask=mask).init(params)
            mism[name] = "accepted"
        except ValueError as exc:
            mism[name] = "ValueError: " + str(exc).splitlines()[0]
    truthy = {k: ("yes" if k.startswith("Dense") else "") for k in params}
    mism["truthy_leaves"] = decayed(truthy)
    out["mismatch"] = mism
    x = jnp.asarray(1.0)
    out["gelu"] = {"default": float(jax.nn.gelu(x)), "true": float(jax.nn.gelu(x, approximate=True)),
                   "false": float(jax.nn.gelu(x, approximate=False))}
    print(json.dumps(out))
""")
MASKS = {"list": ["Dense_0/kernel", "LayerNorm_1/bias"], "ndim_gt": {"ndim_gt": 1}, "ndim_ne": {"ndim_ne": 1},
         "patterns": {"patterns": ["*/bias", "LayerNorm_*/scale"]}, "patterns_dense": {"patterns": ["Dense_*"]},
         "tree": {"Dense_0": {"kernel": True, "bias": False}, "LayerNorm_0": True, "Dense_1": False,
                  "LayerNorm_1": {"scale": False, "bias": True}, "Dense_2": True}}


@pytest.fixture(scope="module")
def probe():
    if not HAVE_JAX:
        pytest.skip("jax/optax not installed")
    code = PROBE.replace("TASK_JSON", repr(json.dumps(TASK))).replace("MASKS_JSON", repr(json.dumps(MASKS)))
    return run_probe(code, env={"JAX_ENABLE_X64": "1"})


def test_params_tree_paths_and_forward_measured(probe):
    assert probe["x64"] and not probe["flax"]   # Flax is not installed: the tree is written as data
    assert set(probe["paths"]) == set(PATHS.values())
    assert probe["paths"]["Dense_0/kernel"] == [3, 4] and probe["paths"]["Dense_2/kernel"] == [2, 1]
    assert probe["paths"]["LayerNorm_1/scale"] == [2]
    assert probe["forward_err"] < 1e-14 and probe["read_equal"]   # the reference's forward, bit-identical start


def test_each_mask_form_decays_in_optax_what_describe_reads(probe):
    for name, mask in MASKS.items():
        assert probe["native"][name] == decays(mask), name
    assert probe["no_mask"] == list(PATHS)


def test_optax_adamw_without_a_mask_decays_every_parameter(probe):
    """optax.adamw's mask defaults to None: add_decayed_weights on every leaf, LayerNorm scales and biases too."""
    assert set(probe["adamw_unmasked"]) == set(PATHS)
    assert max(probe["adamw_unmasked"].values()) == 0.0   # u = -lr*wd*w = -0.5 on w = 1 (zero gradient and Adam step)


def test_optax_mask_structure_mismatch_raises_but_truthy_leaves_pass(probe):
    """optax checks a mask tree's structure at init (ValueError), not its leaves' type (truthiness)."""
    for name in ("missing", "wrapped", "inner"):
        assert probe["mismatch"][name].startswith("ValueError: pytree structure error"), probe["mismatch"][name]
    assert probe["mismatch"]["truthy_leaves"] == [n for n in PATHS if PATHS[n].startswith("Dense_")]


def test_jax_gelu_default_is_the_tanh_approximation(probe):
    g = probe["gelu"]
    assert g["default"] == g["true"] != g["false"]
    assert abs(g["false"] - 0.8413447460685429) < 1e-15 and abs(g["true"] - 0.8411919906082768) < 1e-15


@needs_jax
@pytest.mark.parametrize("dtype", ["float64"])
def test_masks_written_by_a_user_train_as_described(dtype):
    """The list, {patterns} and {ndim_ne} forms, and a prefix tree, trained natively (the battery writes only
    {ndim_gt} and boolean trees) meet the reference of their own describe()."""
    from wdparity.judge import fidelity

    task = {**TASK, "model": {"hidden": [4, 3], "activation": "gelu_tanh", "norm": "layer", "norm_eps": 1e-6}}
    runs = {"list": {"optimizer": "adamw", "learning_rate": 0.05, "weight_decay": 0.3,
                     "mask": ["Dense_0/kernel", "Dense_1/kernel", "LayerNorm_0/scale"]},
            "patterns": {"chain": [{"transform": "add_decayed_weights", "weight_decay": 0.2,
                                    "mask": {"patterns": ["*/kernel"]}},
                                   {"transform": "trace", "decay": 0.9},
                                   {"transform": "scale_by_learning_rate", "learning_rate": 0.05}]},
            "ndim_ne": {"optimizer": "lion", "learning_rate": 0.01, "weight_decay": 0.5, "mask": {"ndim_ne": 1}},
            "prefix": {"optimizer": "adamw", "learning_rate": 0.05, "weight_decay": 0.4,
                       "mask": {"Dense_0": True, "LayerNorm_0": False, "Dense_1": {"kernel": True, "bias": False},
                                "LayerNorm_1": False, "Dense_2": True}}}
    cases = {k: (task, {"backend": "optax", **run}) for k, run in runs.items()}
    report = fidelity.run_battery(cases, dtype)
    for name, entry in report.items():
        assert entry["status"] == "ok" and entry["holds"], (name, entry.get("reason"))
        assert entry["max_rel_err"] <= 1e-9, name
