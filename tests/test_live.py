"""wdparity.describe() on live torch, Keras and optax optimizers: the same neutral semantics as the same setting
written as a TOML [runs.…] table (the adapter's describe() of each), and what cannot be read listed with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

import wdparity
from wdparity.run.cases import load_run
from wdparity.spec.models import Task


def toml_semantics(text: str):
    return load_run("x", tomllib.loads(text)["runs"]["x"], Task(), "test", {}).semantics


# ---------------------------------------------------------------- torch
def test_torch_sgd_momentum_weight_only_group():
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD([{"params": [model.weight]}], lr=0.1, momentum=0.9, weight_decay=0.01)
    d = wdparity.describe(opt, model=model)
    assert d.run["param_groups"] == [{"params": ["weight"]}]
    assert d.semantics == toml_semantics("""[runs.x]
backend = "torch"
optimizer = "SGD"
lr = 0.1
momentum = 0.9
weight_decay = 0.01
param_groups = [{params = ["weight"]}]
""")
    assert d.semantics.frozen == ["bias"] and "bias is frozen" in d.text
    assert d.unsupported == []


def test_torch_groups_with_their_own_weight_decay():
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam([{"params": [model.weight], "weight_decay": 0.1}, {"params": [model.bias]}], lr=0.01)
    d = wdparity.describe(opt, model=model)
    assert d.semantics == toml_semantics("""[runs.x]
backend = "torch"
optimizer = "Adam"
lr = 0.01
param_groups = [{params = ["weight"], weight_decay = 0.1}, {params = ["bias"], weight_decay = 0.0}]
""")


def test_torch_adamw_defaults():
    torch = pytest.importorskip("torch")
    opt = torch.optim.AdamW(torch.nn.Linear(3, 1).parameters())
    d = wdparity.describe(opt)
    assert d.semantics == toml_semantics('[runs.x]\nbackend = "torch"\noptimizer = "AdamW"\n')
    assert d.unsupported == [] and "decoupled" in d.text


def test_torch_maximize_is_listed_not_dropped():
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD(torch.nn.Linear(3, 1).parameters(), lr=0.1, maximize=True)
    d = wdparity.describe(opt)
    assert [(u.key, u.value) for u in d.unsupported] == [("maximize", True)]
    assert "gradient ascent" in d.unsupported[0].reason and "maximize" not in d.run


def test_torch_other_models_and_groups_without_a_model_are_refused():
    torch = pytest.importorskip("torch")
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    with pytest.raises(ValueError, match="one-Linear task"):
        wdparity.describe(torch.optim.SGD(mlp.parameters(), lr=0.1), model=mlp)
    lin = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match="pass model="):
        wdparity.describe(torch.optim.SGD([{"params": [lin.weight]}, {"params": [lin.bias]}], lr=0.1))


# ---------------------------------------------------------------- keras
def _keras_model(keras, **kw):
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, **kw)])


def test_keras_adamw_exclude_and_kernel_regularizer():
    keras = pytest.importorskip("keras")
    model = _keras_model(keras, kernel_regularizer=keras.regularizers.L2(0.01))
    opt = keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    d = wdparity.describe(opt, model=model)
    assert d.semantics == toml_semantics(f"""[runs.x]
backend = "keras"
keras_backend = "{keras.config.backend()}"
optimizer = "AdamW"
learning_rate = 0.01
weight_decay = 0.1
exclude_from_weight_decay = ["bias"]
kernel_regularizer = {{l2 = 0.01}}
""")
    assert d.unsupported == []


def test_keras_use_ema_is_listed():
    keras = pytest.importorskip("keras")
    d = wdparity.describe(keras.optimizers.SGD(learning_rate=0.1, use_ema=True), model=_keras_model(keras))
    assert "use_ema" in {u.key for u in d.unsupported}
    assert "moving average" in next(u.reason for u in d.unsupported if u.key == "use_ema")


# ---------------------------------------------------------------- optax
def test_optax_inject_hyperparams_adamw():
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    tx = optax.inject_hyperparams(optax.adamw)(learning_rate=0.01, weight_decay=0.1)
    d = wdparity.describe(tx, params={"weight": jnp.zeros(3), "bias": jnp.zeros(())})
    assert d.semantics == toml_semantics('[runs.x]\nbackend = "optax"\noptimizer = "adamw"\nlearning_rate = 0.01\n'
                                         'weight_decay = 0.1\n')
    assert d.unsupported == []


def test_optax_opaque_closure_says_what_to_do():
    optax = pytest.importorskip("optax")
    with pytest.raises(TypeError, match="inject_hyperparams"):
        wdparity.describe(optax.adamw(0.01))


# ---------------------------------------------------------------- the README example, and the core stays framework-free
def test_readme_example():
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    d = wdparity.describe(opt, model=model)
    assert d.run == {"backend": "torch", "optimizer": "AdamW", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08,
                     "weight_decay": 0.01, "amsgrad": False}
    assert d.text.startswith("Optimizer: Adam, lr 0.001") and d.unsupported == []


def test_import_wdparity_imports_no_framework():
    probe = ("import json, sys; import wdparity; wdparity.__version__; "
             "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    roots = {m.split(".")[0] for m in loaded}
    assert not roots & {"torch", "keras", "tensorflow", "jax", "optax", "mlx", "paddle", "wdparity_backends"}
    assert not {m for m in loaded if m.startswith("wdparity.")}, "import wdparity loaded a submodule"


def test_unknown_objects_are_refused():
    with pytest.raises(TypeError, match="torch.optim, keras.optimizers, optax, paddle.optimizer and mlx.optimizers"):
        wdparity.describe(object())
