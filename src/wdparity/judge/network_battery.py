"""The network battery: the fidelity battery's neutral cases on multi-layer perceptrons (issue 19).

Every backend that trains networks (Backend.models_networks) gets it by registering, as the linear battery:
each case is realized in the backend's vocabulary inside the task's tensor scope (refused with the reason
where the framework cannot express it), trained natively, and compared tensor by tensor with the float64
reference of its own describe() (engine/network.py's hand-written gradients). The models cycle through
every activation, LayerNorm on and off, one and two hidden layers; a decay form's `weight` becomes every
weight matrix and its `bias` every other tensor (biases, LayerNorm scales and offsets), so "weights only"
masks and two-group settings are the ones people write for networks.
"""

from __future__ import annotations

import itertools

from wdparity.judge.fidelity import CORE_DECAYS, DECAYS, OPTIMIZERS, SCHEDULES, realized_cases
from wdparity.judge.fidelity import round_trip as fidelity_round_trip
from wdparity.run import registry
from wdparity.spec.models import Semantics, Task
from wdparity.spec.network import kernels, tensor_scope

NETWORK_TASK = {"num_inputs": 6, "n_train": 16, "n_test": 8, "batch_size": 4, "epochs": 3, "seed": 5}
MODELS = [
    {"hidden": [5, 4], "activation": "tanh", "norm": "layer", "norm_eps": 1e-5},
    {"hidden": [6], "activation": "relu", "norm": "none"},
    {"hidden": [4, 3], "activation": "gelu", "norm": "layer", "norm_eps": 1e-3},
    {"hidden": [5], "activation": "gelu_tanh", "norm": "layer", "norm_eps": 1e-6},
]
NETWORK_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad", "lamb", "lion")
NETWORK_DECAYS = CORE_DECAYS + ("l1",)


def on_network(rules: list[dict], tensors: tuple[str, ...]) -> list[dict]:
    """A decay form of the linear battery on a network: `weight` -> its weight matrices, `bias` -> the rest."""
    weights = kernels(tensors)
    rest = [t for t in tensors if t not in weights]
    out = []
    for rule in rules:
        if "params" in rule:
            named = [t for p in rule["params"] for t in (weights if p == "weight" else rest)]
            rule = {**rule, "params": named}
        out.append(rule)
    return out


def network_cases(hyper_dtype: str = "float64") -> dict[str, tuple[dict, Semantics]]:
    """name -> (task dict, semantics): NETWORK_OPTIMIZERS x NETWORK_DECAYS, models and schedules cycling."""
    out = {}
    for i, (oname, dname) in enumerate(itertools.product(NETWORK_OPTIMIZERS, NETWORK_DECAYS)):
        model = MODELS[i % len(MODELS)]
        schedule = SCHEDULES[(i // len(MODELS)) % len(SCHEDULES)]
        init = "normal_all" if i % 3 == 1 else "normal"
        task = {**NETWORK_TASK, "model": model, "init": init, "schedule": schedule}
        tensors = Task.model_validate(task).tensors
        with tensor_scope(tensors):
            sem = Semantics.model_validate({"optimizer": OPTIMIZERS[oname], "decay": on_network(DECAYS[dname], tensors),
                                            "schedule": schedule, "hyper_dtype": hyper_dtype})
        label = f"{model['activation']}{''.join('-' + str(w) for w in model['hidden'])}-{model['norm']}"
        out[f"net-{oname}-{dname}-{label}-{schedule['kind']}-{init}"] = (task, sem)
    return out


def network_battery(name: str) -> tuple[dict[str, tuple[dict, dict]], dict[str, str]]:
    """(case -> (task, native run table), case -> why it is not expressible) for backend `name`; the adapter's
    native network extras (batteries/NAME.toml cases whose task has a `model`) are the linear battery's."""
    if not registry.get(name).models_networks:
        raise ValueError(f"backend {name!r} trains the linear model only")
    return realized_cases(name, network_cases())


def round_trip(name: str) -> tuple[dict[str, dict], dict[str, str]]:
    """realize() inverts describe() on the network cases (the linear battery's named check, on networks)."""
    return fidelity_round_trip(name, battery=network_cases())
