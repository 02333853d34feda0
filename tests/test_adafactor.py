"""The reference's Adafactor (spec AdafactorSpec, engine/adafactor.py) against the update written out by hand.

`hand` below is Shazeer & Stern's Adafactor as Keras 3, optax and MLX write it, per tensor (weight, bias) on the
task's two tensors, independently of engine/adafactor.py; the reference must reproduce it to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_adaptive import close, data_for, grad, sem, trained

from wdparity.engine import reference
from wdparity.judge import diagnose

BASE = {"name": "adafactor", "lr": 0.05, "decay_rate": 0.8, "eps": 1e-30, "clip_threshold": 1.0,
        "relative_step": False, "parameter_scale": 1e-3, "momentum": None, "decay_placement": "after",
        "decay_rate_dtype": None}


def rms(x):
    return np.sqrt(np.mean(np.square(x)))


def hand(data, opt: dict, steps: int, lam: float = 0.0):
    """theta_k by hand; lam: a decoupled decay lr*lam*w on the weight only."""
    o = {**BASE, **opt}
    w, b = data["w0"].astype(np.float64).copy(), 0.0
    parts = {"weight": np.zeros_like(w), "bias": np.zeros(1)}
    mom = {"weight": np.zeros_like(w), "bias": np.zeros(1)}
    path = [np.append(w, b)]
    for k in range(1, steps + 1):
        g = grad(data, np.append(w, b))
        gs = {"weight": g[:-1], "bias": g[-1:]}
        params = {"weight": w, "bias": np.array([b])}
        if o["decay_rate_dtype"] == "float32":
            b2 = float(np.float32(1) - np.float32(k) ** np.float32(-o["decay_rate"]))
        else:
            b2 = 1.0 - k ** (-o["decay_rate"])
        new = {}
        for name in ("weight", "bias"):
            x = gs[name]
            parts[name] = b2 * parts[name] + (1 - b2) * (x * x + o["eps"])
            u = x / np.sqrt(parts[name])
            if o["clip_threshold"] is not None:
                u = u / max(1.0, rms(u) / o["clip_threshold"])
            rho = min(o["lr"], 1 / np.sqrt(k)) if o["relative_step"] else o["lr"]
            step = rho * u
            if o["parameter_scale"] is not None:
                ref = params[name]
                if o["decay_placement"] == "before" and name == "weight":
                    ref = ref - o["lr"] * lam * ref
                step = step * max(o["parameter_scale"], rms(ref))
            if o["momentum"] is not None:
                mom[name] = o["momentum"] * mom[name] + (1 - o["momentum"]) * step
                step = mom[name]
            new[name] = params[name] - step - (o["lr"] * lam * params[name] if name == "weight" else 0.0)
        w, b = new["weight"], float(new["bias"][0])
        path.append(np.append(w, b))
    return np.array(path)


@pytest.mark.parametrize("opt, lam", [
    ({}, 0.0),
    ({"relative_step": True, "lr": 0.5}, 0.0),                       # min(lr, 1/sqrt(k)) binds from step 5
    ({"clip_threshold": 0.5, "momentum": 0.9}, 0.0),                 # the clip binds at step 1 (rms(u) ~ 1)
    ({"clip_threshold": None, "parameter_scale": None, "lr": 0.01}, 0.0),
    ({}, 0.3), ({"decay_placement": "before"}, 0.3),
    ({"decay_rate_dtype": "float32", "decay_rate": 0.7}, 0.0),
], ids=["defaults", "relative", "clip_momentum", "plain", "decay_after", "decay_before", "float32_decay_rate"])
def test_adafactor_by_hand(opt, lam):
    steps = 8
    decay = [{"coupling": "decoupled", "coefficient": lam, "scale": "lr", "params": ["weight"]}] if lam else []
    data, got = trained({**BASE, **opt}, steps, decay)
    close(got, hand(data, opt, steps, lam), rtol=1e-11)


def test_the_relative_step_and_the_clip_bind_where_the_cases_say():
    """The parametrized cases test something: each knob, off and on, changes these trajectories."""
    for on, off in (({"relative_step": True, "lr": 0.5}, {"lr": 0.5}), ({"clip_threshold": 0.5}, {"clip_threshold": None}),
                    ({"momentum": 0.9}, {}), ({"decay_rate_dtype": "float32", "decay_rate": 0.7}, {"decay_rate": 0.7})):
        _, a = trained({**BASE, **on}, 8)
        _, b = trained({**BASE, **off}, 8)
        assert np.max(np.abs(a - b)) > 1e-12, on


def test_decay_placement_matters_only_with_a_decoupled_rule_and_a_parameter_scale():
    decay = [{"coupling": "decoupled", "coefficient": 0.3, "scale": "lr", "params": ["weight"]}]
    _, after = trained(BASE, 8, decay)
    _, before = trained({**BASE, "decay_placement": "before"}, 8, decay)
    assert np.max(np.abs(after - before)) > 1e-8
    _, a0 = trained(BASE, 8)
    _, b0 = trained({**BASE, "decay_placement": "before"}, 8)
    assert np.array_equal(a0, b0)
    _, a1 = trained({**BASE, "parameter_scale": None}, 8, decay)
    _, b1 = trained({**BASE, "parameter_scale": None, "decay_placement": "before"}, 8, decay)
    assert np.array_equal(a1, b1)


def test_a_grid_of_adafactor_configs_is_its_single_runs():
    task, data = data_for(epochs=3, batch_size=5)
    for opt in (BASE, {**BASE, "relative_step": True, "momentum": 0.9, "decay_placement": "before"}):
        group = [sem({**opt, "lr": opt["lr"] * f}, [{"coupling": "decoupled", "coefficient": c, "scale": "lr"}])
                 for f in (1.0, 0.3) for c in (0.1, 0.5)]
        for dtype in ("float64", "float32"):
            for s, got in zip(group, reference.run(group, data, task.batch_size, dtype)):
                alone = reference.run(s, data, task.batch_size, dtype)
                assert all(np.array_equal(got[k], alone[k]) for k in alone)


@pytest.mark.parametrize("field, value, label", [
    ("relative_step", True, "schedule"), ("parameter_scale", None, "lr-scaling"), ("clip_threshold", None, "clipping"),
    ("decay_rate", 0.7, "second-moment"), ("decay_rate_dtype", "float32", "precision"), ("momentum", 0.9, "momentum"),
])
def test_each_adafactor_field_is_an_edit_with_its_cause_label(field, value, label):
    sa, sb = sem(BASE), sem({**BASE, field: value})
    edits = diagnose.semantic_edits(sa, sb)
    assert {lab for lab, _ in edits} == {label}
    assert diagnose.apply(sa, edits) == sb
