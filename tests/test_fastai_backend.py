"""The fastai adapter: describe/realize round trip, parameter groups and the Learner, validation, battery
(facts: test_fastai_facts.py)."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import assert_battery_green, detects_a_wrong_model

from wdparity.judge import fidelity
from wdparity.run.backend import Inexpressible
from wdparity.spec.models import Semantics, Task
from wdparity_backends.fastai_backend import backend

NEEDS_FASTAI = pytest.mark.skipif(importlib.util.find_spec("fastai") is None, reason="fastai not installed")
TASK = Task.model_validate(fidelity.BATTERY_TASK)
BOTH = ["weight", "bias"]
REALIZED, INEXPRESSIBLE = 61, 280   # the uncapped neutral LAMB rows refused (fastai caps its ratio at 10), lamb_capped realized


def describe(run: dict, **task) -> dict:
    return backend.describe(backend.parse(run), Task.model_validate({**fidelity.BATTERY_TASK, **task})).neutral()


def rules(run: dict) -> list[tuple]:
    return [(r["norm"], r["coupling"], r["coefficient"], r["scale"], r["params"]) for r in describe(run)["decay"]]


# ---------------------------------------------------------------- realize / describe
REASON = {"dampened": "no dampening", "nesterov": "no nesterov", "velocity": 'momentum_form = "buffer"',
          "adam_uncorrected": 'eps_placement = "corrected"', "amsgrad": "no AMSGrad", "amsgrad_uncorrected": 'eps_placement = "corrected"',
          "amsgrad_v_hat": "no AMSGrad", "rmsprop_centered": "centered = false", "rmsprop_in_sqrt": "eps_in_sqrt = false",
          "rmsprop_velocity": "momentum = 0", "rmsprop_velocity_centered": "centered = false",
          "rmsprop_initial_scale": "initial_scale = 0", "rmsprop_bias_corrected": "eps_in_sqrt = false",
          "radam": 'eps_placement = "corrected"', "radam_corrected": "threshold = 5",
          "lamb": 'decay_placement = "before"',
          "lamb_after": 'decay_placement = "before"', "lamb_before": "max_trust_ratio = 10"}
CLIP_REASON = {"clip_global_exact": "eps hard-coded", "clip_tensor": "one norm over every parameter",
               "clip_value": "no value-clipping callback", "clip_after_decay": "so wd is never clipped"}
MISSING = {"adagrad", "adagrad_in_sqrt", "adagrad_lr_decay", "adadelta", "adadelta_small_eps", "adamax", "adamax_outside",
           "adamax_no_bias_correction", "adamax_decayed_eps", "nadam", "nadam_keras", "nadam_constant", "lion",
           "adafactor", "adafactor_relative", "adafactor_before", "adafactor_momentum"}


def test_round_trip_over_the_neutral_battery():
    expressed, reasons = fidelity.round_trip("fastai")
    assert (len(expressed), len(reasons)) == (REALIZED, INEXPRESSIBLE)
    rows = [n.split("-")[0] for n in expressed]
    assert {row: rows.count(row) for row in set(rows)} == {"sgd": 11, "momentum": 11, "adam": 11, "adam_eps": 8,
                                                             "rmsprop": 8, "adam_no_bias_correction": 6,
                                                             "lamb_capped": 6}
    assert {n for n in expressed if "-clip_" in n} == {f"{o}-{d}-clip_global-{rest}-half_mse" for o, d, rest in [
        ("sgd", "coupled", "cosine-normal"), ("sgd", "penalty", "constant-zeros"), ("sgd", "decoupled", "step-normal"),
        ("momentum", "coupled", "cosine-zeros"), ("momentum", "penalty", "constant-normal"),
        ("momentum", "decoupled", "step-zeros"), ("adam", "coupled", "cosine-normal"),
        ("adam", "penalty", "constant-zeros"), ("adam", "decoupled", "step-normal")]} and all(
        expressed[n]["learner"] and expressed[n]["gradient_clip"] == 0.1 for n in expressed if "-clip_" in n)
    assert all("nearest" in r for r in reasons.values())
    for n, r in reasons.items():
        row, clip = n.split("-")[0], next((part for part in n.split("-") if part.startswith("clip_")), None)
        if clip:
            assert CLIP_REASON[clip] in r, (n, r)
        elif row in MISSING:
            assert "fastai.optimizer has no" in r, (n, r)
        elif row in REASON:
            assert REASON[row] in r, (n, r)
        else:   # sgd, momentum, adam, adam_eps, rmsprop: only the decoupled forms not scaled by lr
            assert "decoupled_schedule" in n or "decoupled_none" in n, (n, r)
            assert "p *= 1 - lr_t*wd with the scheduled lr" in r and "(wd=" in r, (n, r)


def test_realize_writes_fastai_idioms():
    seed = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.003},
                                     "decay": [{"coefficient": 3.0, "params": ["weight"]}]})
    assert backend.realize(seed, TASK) == {"optimizer": "SGD", "lr": 0.003, "param_groups": [["weight"], ["bias"]],
                                           "wd": [3.0, 0.0], "decouple_wd": False}
    adamw = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-5},
                                      "decay": [{"coefficient": 0.2, "params": ["weight"]},
                                                {"coupling": "decoupled", "coefficient": 0.3}]})
    assert backend.realize(adamw, TASK) == {"optimizer": "Adam", "lr": 0.01, "mom": 0.9, "sqr_mom": 0.99, "eps": 1e-5,
                                            "wd": 0.3, "penalty": {"l2": 0.1, "params": ["weight"]}}
    plain = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.01}})
    assert backend.realize(plain, TASK)["wd"] == 0.0   # written: fastai's Adam would decay by 0.01 otherwise
    frozen = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "frozen": ["bias"],
                                       "decay": [{"coupling": "decoupled", "coefficient": 0.1, "params": ["weight"]}]})
    assert backend.realize(frozen, TASK) == {"optimizer": "SGD", "lr": 0.1, "mom": 0.9, "param_groups": [["weight"]],
                                             "wd": 0.1}
    corrected = Semantics.model_validate({"optimizer": {"name": "rmsprop", "lr": 0.01, "rho": 0.9, "eps": 1e-6,
                                                        "bias_correction": True}})
    assert backend.realize(corrected, TASK) == {"optimizer": "QHAdam", "lr": 0.01, "sqr_mom": 0.9, "eps": 1e-6,
                                                "nu_1": 0.0, "nu_2": 1.0, "wd": 0.0}
    clipped = Semantics.model_validate({"optimizer": {"name": "sgd", "lr": 0.1}, "decay": [
        {"coefficient": 0.3}, {"coefficient": 0.2, "params": ["weight"], "via_loss": True}],
        "clip": {"kind": "global_norm", "threshold": 0.5, "eps": 1e-6}})
    assert backend.realize(clipped, TASK) == {"optimizer": "SGD", "lr": 0.1, "wd": 0.3, "decouple_wd": False,
                                              "penalty": {"l2": 0.1, "params": ["weight"]}, "learner": True,
                                              "gradient_clip": 0.5, "wd_bn_bias": True}
    uncorrected = Semantics.model_validate({"optimizer": {"name": "adam", "lr": 0.003, "betas": [0.9, 0.999],
                                                          "bias_correction": False},
                                            "decay": [{"coupling": "decoupled", "coefficient": 0.4}]})
    assert backend.realize(uncorrected, TASK) == {"optimizer": "RMSProp", "lr": 0.0002999999999999999, "mom": 0.9,
                                                  "sqr_mom": 0.999, "wd": 4.000000000000001}
    for sem in (seed, adamw, plain, frozen, corrected, clipped, uncorrected):
        assert backend.describe(backend.parse(backend.realize(sem, TASK)), TASK).neutral() == sem.neutral()


def test_realize_refuses_what_fastai_cannot_do():
    cases = [
        ({"name": "rmsprop", "lr": 0.01, "eps": 1e-3}, [], "never reaches the step"),
        ({"name": "adam", "lr": 0.1}, [{"coupling": "decoupled", "coefficient": 0.1},
                                       {"coupling": "decoupled", "coefficient": 0.2, "params": ["weight"]}],
         "one wd per parameter group"),
        ({"name": "sgd", "lr": 0.1}, [{"norm": "l1", "coefficient": 0.1, "l1_at_zero": 1.0}], "l1_at_zero = 0.0"),
        ({"name": "radam", "lr": 0.1, "eps_placement": "corrected", "threshold": 6.0}, [], "between 5 and 6"),
        ({"name": "adam", "lr": 0.02}, [{"coupling": "decoupled", "coefficient": 0.01, "scale": "schedule"}],
         "Adam(wd=0.01/lr = 0.5)"),
    ]
    uncorrected = {"name": "adam", "lr": 0.01, "bias_correction": False}
    cases += [({**uncorrected, "eps": 1e-7}, [], "eps = 1e-8 (RMSProp drops its eps"),
              ({**uncorrected, "betas": [0.0, 0.99]}, [], "betas[0] > 0"),
              ({"name": "sgd", "lr": 0.1}, [{"coefficient": 0.1}, {"coefficient": 0.2, "params": ["weight"]}],
               "a second coupled term that the clipping does not see"),
              ({"name": "sgd", "lr": 0.1}, [{"coefficient": 0.1}, {"coupling": "decoupled", "coefficient": 0.2}],
               "decouple_wd is one flag per optimizer")]
    clip = {"kind": "global_norm", "threshold": 0.5, "eps": 1e-6}
    for opt, decay, words in cases:
        with pytest.raises(Inexpressible) as err:
            backend.realize(Semantics.model_validate({"optimizer": opt, "decay": decay, **(
                {"clip": clip} if "clipping" in words or "one flag" in words else {})}), TASK)
        assert words in str(err.value), str(err.value)


@pytest.mark.parametrize("run, optimizer", [
    ({"optimizer": "SGD", "lr": 0.1}, {"name": "sgd", "lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
                                       "momentum_form": "buffer"}),
    ({"optimizer": "Adam", "lr": 0.1}, {"name": "adam", "lr": 0.1, "betas": [0.9, 0.99], "eps": 1e-5,
                                        "eps_placement": "corrected", "bias_correction": True}),
    ({"optimizer": "RMSProp", "lr": 0.1, "eps": 0.5}, {"name": "rmsprop", "lr": 0.1, "rho": 0.99, "eps": 1e-8,
                                                       "eps_in_sqrt": False, "centered": False, "momentum": 0.0,
                                                       "momentum_form": "buffer", "initial_scale": 0.0,
                                                       "bias_correction": False}),
    ({"optimizer": "RAdam", "lr": 0.1}, {"name": "radam", "lr": 0.1, "betas": [0.9, 0.99], "eps": 1e-5,
                                         "eps_placement": "corrected", "threshold": 5.0, "threshold_inclusive": False}),
    ({"optimizer": "Lamb", "lr": 0.1}, {"name": "lamb", "lr": 0.1, "betas": [0.9, 0.99], "eps": 1e-5,
                                        "decay_placement": "before", "max_trust_ratio": 10.0}),
    ({"optimizer": "QHAdam", "lr": 0.1, "nu_1": 1.0}, {"name": "adam", "lr": 0.1, "betas": [0.999, 0.999], "eps": 1e-8,
                                                       "eps_placement": "corrected", "bias_correction": True}),
    ({"optimizer": "RMSProp", "lr": 0.01, "mom": 0.75, "eps": 0.5}, {"name": "adam", "lr": 0.04, "betas": [0.75, 0.99],
                                                                   "eps": 1e-8, "eps_placement": "corrected",
                                                                   "bias_correction": False}),
    ({"optimizer": "Adam", "learner": True}, {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.99], "eps": 1e-5,
                                              "eps_placement": "corrected", "bias_correction": True}),
])
def test_each_fastai_function_describes_as_its_family_at_its_defaults(run, optimizer):
    assert describe(run)["optimizer"] == optimizer


def test_wd_couplings_groups_and_the_learner():
    assert rules({"optimizer": "Adam", "lr": 0.01}) == [("l2", "decoupled", 0.01, "lr", BOTH)]
    assert rules({"optimizer": "Adam", "lr": 0.01, "decouple_wd": False}) == [("l2", "gradient", 0.01, None, BOTH)]
    assert rules({"optimizer": "SGD", "lr": 0.01}) == [] and rules({"optimizer": "RAdam", "lr": 0.01}) == []
    # the Learner excludes the bias (wd_bn_bias=False, its default); wd_bn_bias=True decays it
    assert rules({"optimizer": "Adam", "learner": True}) == [("l2", "decoupled", 0.01, "lr", ["weight"])]
    assert rules({"optimizer": "Adam", "learner": True, "wd_bn_bias": True}) == [("l2", "decoupled", 0.01, "lr", BOTH)]
    assert rules({"optimizer": "SGD", "lr": 0.1, "wd": 0.3, "decouple_wd": False, "learner": True}) == [
        ("l2", "gradient", 0.3, None, ["weight"])]
    groups = {"optimizer": "SGD", "lr": 0.1, "param_groups": [["weight"], ["bias"]], "wd": [0.3, 0.05]}
    assert rules(groups) == [("l2", "decoupled", 0.3, "lr", ["weight"]), ("l2", "decoupled", 0.05, "lr", ["bias"])]
    only_weight = {"optimizer": "Adam", "lr": 0.1, "param_groups": [["weight"]]}
    assert rules(only_weight) == [("l2", "decoupled", 0.01, "lr", ["weight"])]
    assert describe(only_weight)["frozen"] == ["bias"]
    # RMSProp(mom): the neutral lr is lr/(1-mom), so true weight decay lr*wd is lr'*(wd*(1-mom)); l2_reg is unscaled
    assert rules({"optimizer": "RMSProp", "lr": 0.01, "mom": 0.75, "wd": 0.2}) == [("l2", "decoupled", 0.05, "lr", BOTH)]
    assert rules({"optimizer": "RMSProp", "lr": 0.01, "mom": 0.75, "wd": 0.2, "decouple_wd": False}) == [
        ("l2", "gradient", 0.2, None, BOTH)]
    clipped = describe({"optimizer": "SGD", "lr": 0.1, "learner": True, "gradient_clip": 0.5})
    assert clipped["clip"] == {"kind": "global_norm", "threshold": 0.5, "eps": 1e-6, "position": "loss_gradient"}


@pytest.mark.parametrize("run, key, words", [
    ({"optimizer": "Larc", "lr": 0.1}, "optimizer", "no LARS/LARC family"),
    ({"optimizer": "ranger", "lr": 0.1}, "optimizer", "no lookahead"),
    ({"optimizer": "Lookahead", "lr": 0.1}, "optimizer", "no lookahead"),
    ({"optimizer": "SGD"}, "lr", "has no default lr"),
    ({"optimizer": "SGD", "lr": 0.1, "eps": 1e-3}, "eps", "not a keyword of fastai.optimizer.SGD"),
    ({"optimizer": "Adam", "lr": 0.1, "nu_1": 0.5}, "nu_1", "belongs to fastai.optimizer.QHAdam"),
    ({"optimizer": "SGD", "lr": 0.1, "gradient_clip": 1.0}, "gradient_clip", "needs learner = true"),
    ({"optimizer": "SGD", "lr": 0.1, "learner": True, "norm_type": 2.0}, "norm_type", "belongs to gradient_clip"),
    ({"optimizer": "SGD", "lr": 0.1, "learner": True, "gradient_clip": 1.0, "norm_type": 1.0}, "norm_type",
     "must be 2.0"),
    ({"optimizer": "SGD", "lr": 0.1, "learner": True, "gradient_clip": 1.0, "norm_type": float("inf")}, "norm_type",
     "the largest |g|"),
    ({"optimizer": "SGD", "lr": 0.1, "learner": True, "gradient_clip": 1.0, "param_groups": [["weight"]]},
     "gradient_clip", "accumulates"),
    ({"optimizer": "RAdam", "lr": 0.1, "beta": 1.0}, "beta", "SAdam"),
    ({"optimizer": "QHAdam", "lr": 0.1}, "nu_1", "is not modelled"),
    ({"optimizer": "Adam", "lr": 0.1, "wd_bn_bias": True}, "wd_bn_bias", "needs learner = true"),
    ({"optimizer": "SGD", "lr": 0.1, "wd": [0.1, 0.2]}, "wd", "one value per parameter group"),
    ({"optimizer": "SGD", "lr": 0.1, "param_groups": [["weight"], ["weight", "bias"]]}, "param_groups[1]", "again"),
    ({"optimizer": "SGD", "lr": 0.1, "param_groups": [["kernel"]]}, "param_groups[0]", "names no tensor"),
    ({"optimizer": "SGD", "lr": 0.1, "param_groups": [["weight"]], "penalty": {"l2": 0.1, "params": ["bias"]}},
     "penalty.params", "frozen"),
    ({"optimizer": "SGD", "lr": 0.1, "weight_decay": 0.1}, "weight_decay", "not a known key"),
])
def test_bad_runs_name_the_key(bad_run, run, key, words):
    err = bad_run("fastai", run)
    assert err.key == f"runs.a.{key}", str(err)
    assert words in str(err)


def test_every_battery_extra_describes_and_findings_name_their_source():
    for case, (task, run) in backend.battery_extras().items():
        t = Task.model_validate({**fidelity.BATTERY_TASK, **task})
        backend.describe(backend.parse(run), t)
        assert all(f["source"].startswith("fastai/") for f in backend.findings(backend.parse(run), t)), case
    ids = {f["id"] for f in backend.findings(backend.parse({"optimizer": "Adam", "learner": True}), TASK)}
    assert ids == {"adam-default-true-weight-decay", "learner-excludes-bias"}


# ---------------------------------------------------------------- the battery
@NEEDS_FASTAI
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_battery(dtype):
    assert_battery_green("fastai", dtype, realized=REALIZED, inexpressible=INEXPRESSIBLE)


def _decays_bias(sem):
    sem["decay"] = [{**r, "params": ["weight", "bias"]} for r in sem["decay"]]


def _normalised_momentum(sem):
    """The neutral RMSprop's momentum (on g/(sqrt(v) + eps)) at fastai's own lr and wd."""
    from wdparity.spec.optimizers import RmspropSpec

    (b1, b2), f = sem["optimizer"]["betas"], 1 - sem["optimizer"]["betas"][0]
    sem["optimizer"] = RmspropSpec(name="rmsprop", lr=sem["optimizer"]["lr"] * f, rho=b2, momentum=b1).model_dump()
    sem["decay"] = [{**r, "coefficient": r["coefficient"] / f} for r in sem["decay"]]


@NEEDS_FASTAI
@pytest.mark.parametrize("case, mutate", [
    ("learner-adam-defaults", _decays_bias),                                    # the Learner's excluded bias
    ("rmsprop-eps-dropped", lambda s: s["optimizer"].update(eps=1e-3)),         # the eps RMSProp drops
    ("adam-defaults", lambda s: s["optimizer"].update(eps_placement="uncorrected")),
    ("sgd-momentum-true-wd", lambda s: s["decay"][0].update(coupling="gradient", scale=None)),
    ("radam-defaults", lambda s: s["optimizer"].update(threshold=6.0)),
    ("lamb-true-wd", lambda s: s["optimizer"].update(decay_placement="after")),
    ("lamb-capped-trust-ratio", lambda s: s["optimizer"].update(max_trust_ratio=None)),   # the cap binds
    ("qhadam-as-bias-corrected-rmsprop", lambda s: s["optimizer"].update(bias_correction=False)),
    ("learner-clip-sgd-l2-reg", lambda s: s["clip"].update(position="after_coupled_decay")),   # wd*p unclipped
    ("learner-clip-penalty", lambda s: s.update(clip=None)),                                   # the clip binds
    ("learner-clip-adam-defaults", lambda s: s["clip"].update(eps=0.0, threshold=0.049)),
    ("rmsprop-momentum-true-wd", _normalised_momentum),   # not momentum on g/(sqrt(v) + eps)
    ("rmsprop-momentum-l2-reg", lambda s: s["optimizer"].update(lr=0.002)),                  # lr/(1 - mom) it is
])
def test_battery_detects_a_wrong_model(case, mutate):
    detects_a_wrong_model(backend, case, mutate)
