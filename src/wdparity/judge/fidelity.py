"""The fidelity battery: named, generated cases that prove an adapter's model of its framework.

In the style of scikit-learn's `estimator_checks`: a backend gets the whole battery by registering.
The neutral battery crosses optimizers x decay forms x masks, cycling schedules and inits; each
neutral case is realized in the backend's own vocabulary (skipped, with the reason, where the
framework cannot express it), and the backend adds native extras for knobs realize() never emits
(penalties, regularizers, exclusion lists, ...). Every native run is then trained in a worker and
compared with the float64 reference run of its own describe(), under the measured envelope of both
(compare.py): the run's own dtype and the reference's.
"""

from __future__ import annotations

import itertools
from typing import Optional

from wdparity.engine import recording, reference
from wdparity.engine.data import make_data
from wdparity.judge import compare, envelope
from wdparity.run import harness, registry
from wdparity.run.backend import Inexpressible
from wdparity.run.cases import load_run
from wdparity.spec.models import Semantics, Task
from wdparity.spec.network import tensor_scope

BATTERY_TASK = {"num_inputs": 12, "n_train": 16, "n_test": 8, "batch_size": 4, "epochs": 3, "seed": 3}
SCHEDULES = [{"kind": "constant"}, {"kind": "step", "every": 4, "factor": 0.5}, {"kind": "cosine", "total": 10, "floor": 0.1}]
OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.05},
    "momentum": {"name": "sgd", "lr": 0.03, "momentum": 0.9},
    "dampened": {"name": "sgd", "lr": 0.03, "momentum": 0.8, "dampening": 0.3},
    "nesterov": {"name": "sgd", "lr": 0.03, "momentum": 0.9, "nesterov": True},
    "velocity": {"name": "sgd", "lr": 0.03, "momentum": 0.9, "momentum_form": "velocity"},
    "adam": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8},
    "adam_eps": {"name": "adam", "lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-3},
    "adam_uncorrected": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-3, "eps_placement": "uncorrected"},
    "rmsprop": {"name": "rmsprop", "lr": 0.01, "rho": 0.99, "eps": 1e-8},
    "rmsprop_centered": {"name": "rmsprop", "lr": 0.005, "rho": 0.9, "eps": 1e-3, "centered": True, "momentum": 0.5},
    "rmsprop_in_sqrt": {"name": "rmsprop", "lr": 0.01, "rho": 0.9, "eps": 1e-6, "eps_in_sqrt": True},
    # the families of spec/optimizers.py beyond SGD, Adam and RMSprop, each variant a framework has (issue 17)
    "amsgrad": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-8, "amsgrad": "v"},
    "amsgrad_uncorrected": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-3, "eps_placement": "uncorrected",
                            "amsgrad": "v"},
    "amsgrad_v_hat": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-8, "amsgrad": "v_hat"},
    "rmsprop_velocity": {"name": "rmsprop", "lr": 0.005, "rho": 0.9, "eps": 1e-7, "eps_in_sqrt": True, "momentum": 0.9,
                         "momentum_form": "velocity"},
    "rmsprop_velocity_centered": {"name": "rmsprop", "lr": 0.005, "rho": 0.9, "eps": 1e-4, "eps_in_sqrt": True,
                                  "centered": True, "momentum": 0.5, "momentum_form": "velocity"},
    "rmsprop_initial_scale": {"name": "rmsprop", "lr": 0.01, "rho": 0.9, "eps": 1e-8, "eps_in_sqrt": True,
                              "initial_scale": 0.1},
    "rmsprop_bias_corrected": {"name": "rmsprop", "lr": 0.01, "rho": 0.9, "eps": 1e-8, "eps_in_sqrt": True,
                               "bias_correction": True},
    "adagrad": {"name": "adagrad", "lr": 0.1, "initial_accumulator": 0.0, "eps": 1e-10},
    "adagrad_in_sqrt": {"name": "adagrad", "lr": 0.1, "initial_accumulator": 0.1, "eps": 1e-7, "eps_in_sqrt": True},
    "adagrad_lr_decay": {"name": "adagrad", "lr": 0.1, "initial_accumulator": 0.05, "eps": 1e-10, "lr_decay": 0.05},
    "adadelta": {"name": "adadelta", "lr": 1.0, "rho": 0.9, "eps": 1e-6},
    "adadelta_small_eps": {"name": "adadelta", "lr": 0.5, "rho": 0.95, "eps": 1e-7},
    "adamax": {"name": "adamax", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8},
    "adamax_outside": {"name": "adamax", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-7, "eps_placement": "outside"},
    "nadam": {"name": "nadam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "momentum_decay": 0.004},
    "nadam_keras": {"name": "nadam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-7, "momentum_decay": 1.0},
    "nadam_constant": {"name": "nadam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "momentum_decay": None},
    "radam": {"name": "radam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8},
    "radam_corrected": {"name": "radam", "lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-8, "eps_placement": "corrected",
                        "threshold_inclusive": True},
    "lion": {"name": "lion", "lr": 0.001, "betas": [0.9, 0.99]},
    # MLX's Adam/AdamW (bias_correction=False by default) and Adamax: moments without bias correction (issue 18)
    "adam_no_bias_correction": {"name": "adam", "lr": 0.003, "betas": [0.9, 0.999], "eps": 1e-8, "bias_correction": False},
    "adamax_no_bias_correction": {"name": "adamax", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
                                  "eps_placement": "outside", "bias_correction": False},
    "lamb": {"name": "lamb", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-6},
    "lamb_before": {"name": "lamb", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-7, "decay_placement": "before"},
    "lamb_after": {"name": "lamb", "lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-6, "decay_placement": "after"},
    # appended last, 6 rows x 6 decay forms: the clip cases after them keep their schedules and inits (36 % 6 == 0)
    "adamax_decayed_eps": {"name": "adamax", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-3,
                           "eps_placement": "in_max_decayed"},                               # Paddle
    "lamb_capped": {"name": "lamb", "lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-5, "decay_placement": "before",
                    "max_trust_ratio": 10.0},                                                # fastai
    "adafactor": {"name": "adafactor", "lr": 0.05, "decay_rate_dtype": "float32"},           # optax
    "adafactor_relative": {"name": "adafactor", "lr": 0.01, "relative_step": True},          # Keras, MLX
    "adafactor_before": {"name": "adafactor", "lr": 0.01, "relative_step": True, "decay_placement": "before"},  # Keras
    "adafactor_momentum": {"name": "adafactor", "lr": 0.02, "decay_rate": 0.7, "clip_threshold": None, "momentum": 0.9,
                           "decay_rate_dtype": "float32"},                                   # optax
}
# The optimizers of issue 17 cross a core of the decay forms (every coupling, mask and group form once); the
# first three families cross all of DECAYS.
CORE_DECAYS = ("none", "coupled", "coupled_groups", "decoupled", "decoupled_weight", "coupled_and_decoupled")
FULL_CROSS = ("sgd", "momentum", "dampened", "nesterov", "velocity", "adam", "adam_eps", "adam_uncorrected", "rmsprop",
              "rmsprop_centered", "rmsprop_in_sqrt")
DECAYS = {
    "none": [],
    "coupled": [{"coupling": "gradient", "coefficient": 0.3}],
    "coupled_weight": [{"coupling": "gradient", "coefficient": 0.3, "params": ["weight"]}],
    "coupled_groups": [{"coupling": "gradient", "coefficient": 0.3, "params": ["weight"]},
                       {"coupling": "gradient", "coefficient": 0.05, "params": ["bias"]}],
    "decoupled": [{"coupling": "decoupled", "coefficient": 0.4, "scale": "lr"}],
    "decoupled_weight": [{"coupling": "decoupled", "coefficient": 0.4, "scale": "lr", "params": ["weight"]}],
    "decoupled_schedule": [{"coupling": "decoupled", "coefficient": 0.01, "scale": "schedule"}],
    "decoupled_none": [{"coupling": "decoupled", "coefficient": 0.004, "scale": "none"}],
    "l1": [{"norm": "l1", "coupling": "gradient", "coefficient": 0.05, "params": ["weight"], "l1_at_zero": 0.0,
            "via_loss": True}],  # L1 is a loss penalty in every framework
    "coupled_and_decoupled": [{"coupling": "gradient", "coefficient": 0.2, "params": ["weight"]},
                              {"coupling": "decoupled", "coefficient": 0.3, "scale": "lr"}],
}


# Gradient clipping (spec Clip) crosses a few optimizers and the three places a decay term can stand: a loss
# penalty (clipped with the loss), the optimizer's coupled term (added after clipping, or before it), decoupled.
# Thresholds bind on every case (tests/test_adaptive.py checks that each clip case moves the reference).
CLIPS = {
    "clip_global": {"kind": "global_norm", "threshold": 0.1, "eps": 1e-6},
    "clip_global_exact": {"kind": "global_norm", "threshold": 0.1},
    "clip_tensor": {"kind": "tensor_norm", "threshold": 0.03},
    "clip_value": {"kind": "value", "threshold": 0.01},
    "clip_after_decay": {"kind": "global_norm", "threshold": 0.1, "position": "after_coupled_decay"},
}
CLIP_OPTIMIZERS = ("sgd", "momentum", "adam")
CLIP_DECAYS = {
    "coupled": DECAYS["coupled"],
    "penalty": [{"coupling": "gradient", "coefficient": 0.3, "params": ["weight"], "via_loss": True}],
    "decoupled": DECAYS["decoupled"],
}


def neutral_battery(hyper_dtype: str = "float64") -> dict[str, tuple[dict, Semantics]]:
    """name -> (task dict, semantics), every optimizer x decay form; schedules, inits and losses cycle.

    `hyper_dtype`: the precision of hyperparameters a backend's update works in (MXNet: float32)."""
    out = {}
    cycle = itertools.count()
    for (oname, opt), (dname, decay) in itertools.product(OPTIMIZERS.items(), DECAYS.items()):
        if oname not in FULL_CROSS and dname not in CORE_DECAYS:
            continue
        i = next(cycle)
        schedule = SCHEDULES[i % len(SCHEDULES)]
        init = "zeros" if dname == "l1" or i % 2 else "normal"
        loss = "mse" if i % 4 == 3 else "half_mse"
        task = {**BATTERY_TASK, "init": init, "loss": loss, "schedule": schedule}
        sem = Semantics.model_validate({"optimizer": opt, "decay": decay, "loss": loss, "schedule": schedule,
                                        "hyper_dtype": hyper_dtype})
        out[f"{oname}-{dname}-{schedule['kind']}-{init}-{loss}"] = (task, sem)
    for oname, (cname, clip), (dname, decay) in itertools.product(CLIP_OPTIMIZERS, CLIPS.items(), CLIP_DECAYS.items()):
        i = next(cycle)
        schedule = SCHEDULES[i % len(SCHEDULES)]
        init = "zeros" if i % 2 else "normal"
        task = {**BATTERY_TASK, "init": init, "schedule": schedule}
        sem = Semantics.model_validate({"optimizer": OPTIMIZERS[oname], "decay": decay, "schedule": schedule,
                                        "hyper_dtype": hyper_dtype, "clip": clip})
        out[f"{oname}-{dname}-{cname}-{schedule['kind']}-{init}-half_mse"] = (task, sem)
    return out


def round_trip(name: str, dtype: Optional[str] = None, battery: Optional[dict] = None) -> tuple[dict[str, dict], dict[str, str]]:
    """The named check every adapter gets: realize() inverts describe() on the neutral battery (or `battery`:
    the network cases), each inside its task's tensor scope.

    Returns (case -> realized table, case -> why inexpressible). Each realized table must describe
    back to exactly the semantics asked for (after the framework's inherent precision); an
    AssertionError names the first case that does not.
    """
    backend = registry.get(name)
    expressed, reasons = {}, {}
    for case, (task, sem) in (neutral_battery() if battery is None else battery).items():
        t = Task.model_validate({**task, **({"dtype": dtype} if dtype else {})})
        with tensor_scope(t.tensors):
            native = backend.inherent(sem, t)
            try:
                run = backend.realize(native, t)
            except Inexpressible as exc:
                reasons[case] = str(exc)
                continue
            back = backend.describe(backend.parse(run), t).neutral()
        assert back == native.neutral(), f"{name}: describe(realize(s)) != s for {case}: {run} means {back}"
        expressed[case] = run
    return expressed, reasons


def realized_cases(name: str, battery: dict[str, tuple[dict, Semantics]]) -> tuple[dict, dict[str, str]]:
    """Each (task, semantics) realized in backend `name`'s vocabulary inside the task's tensor scope: ("realized-"
    case -> (task, native run table), case -> why it is not expressible)."""
    backend = registry.get(name)
    cases, inexpressible = {}, {}
    for case, (task, sem) in battery.items():
        t = Task.model_validate(task)
        with tensor_scope(t.tensors):
            try:
                run = backend.realize(backend.inherent(sem, t), t)
            except Inexpressible as exc:
                inexpressible[case] = str(exc)
                continue
        cases[f"realized-{case}"] = (task, {"backend": name, **{k: v for k, v in run.items() if k != "backend"}})
    return cases, inexpressible


def native_battery(name: str) -> tuple[dict[str, tuple[dict, dict]], dict[str, str]]:
    """(name -> (task, native run table), name -> why a neutral case is not expressible)."""
    backend = registry.get(name)
    cases, inexpressible = realized_cases(name, neutral_battery())
    extras = getattr(backend, "battery_extras", None)
    for case, (task, run) in (extras() if extras else {}).items():
        cases[f"native-{case}"] = ({**BATTERY_TASK, **task}, {"backend": name, **run})
    return cases, inexpressible


def run_native(cases: dict[str, tuple[dict, dict]], dtype: str = "float64",
               timeout: float = harness.DEFAULT_TIMEOUT) -> dict[str, tuple]:
    """Train every case natively (one worker per backend): name -> (run, data, harness result)."""
    loaded, items, data = {}, [], {}
    for i, (name, (task_dict, run_dict)) in enumerate(sorted(cases.items())):
        task = Task.model_validate({**task_dict, "dtype": dtype})
        run = load_run("battery", dict(run_dict), task, f"battery:{name}", {})
        key = f"t{i}"
        data[key] = make_data(task.model_dump())
        loaded[name] = (run, key)
        items.append(run.work_item(name, key))
    results = harness.run_items(items, data, timeout=timeout)
    return {name: (run, data[key], results[name]) for name, (run, key) in loaded.items()}


def run_battery(cases: dict[str, tuple[dict, dict]], dtype: str = "float64",
                timeout: float = harness.DEFAULT_TIMEOUT) -> dict[str, dict]:
    """Train every case natively and compare with the reference of its own describe()."""
    report = {}
    for name, (run, data, res) in run_native(cases, dtype, timeout).items():
        entry = {"status": res.status, "reason": res.reason, "semantics": run.semantics.neutral(), "versions": res.versions}
        if res.status == "ok":
            entry.update(fidelity(run.semantics.neutral(), res.arrays, data, run.task.batch_size, run.dtype))
        report[name] = entry
    return report


def fidelity(semantics: dict, native: dict, data: dict, batch_size: int, dtype: str) -> dict:
    """A native trajectory against the float64 reference of its own semantics, under the envelope of
    both (the native run's own dtype, and the float64 reference's): holds unless it leaves it on a
    decidable step."""
    ref = reference.run_cached(semantics, data, batch_size, "float64")
    names = recording.tensor_names(ref)
    expected = len(ref[names[0]])
    got = {name: len(native.get(name, ())) for name in names}
    if set(got.values()) != {expected}:
        return {"max_rel_err": None, "tol": None, "holds": False,
                "reason": f"trajectory has {got} steps, expected {expected}"}
    envs = [envelope.envelope(semantics, data, batch_size, dtype),
            envelope.envelope(semantics, data, batch_size, "float64")]
    out = compare.judge(native, ref, envs, compare.pair_dtype((dtype,)))
    result = {"max_rel_err": out["max_rel_err"], "tol": out["tol"], "holds": out["verdict"] != "diverges",
              "compared_steps": out["compared_steps"], "decidable_steps": out["decidable_steps"]}
    if out["verdict"] == "diverges":
        result["reason"] = (f"off its own described semantics from step {out['first_divergent_step']} "
                            f"({out['tensor']}: rel err beyond the tolerance {out['tol_at_first']:.3g} there)")
        result["first_divergent_step"] = out["first_divergent_step"]
    elif out["verdict"] == "undecidable":
        result["reason"] = (f"agrees on the {out['decidable_steps']} decidable steps; beyond them rounding alone "
                            f"moves the reference more than {compare.CEILING:g}")
    return result
