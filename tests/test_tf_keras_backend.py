"""The tf_keras adapter: the round trip over the neutral battery, its refusals, and the fidelity battery per dtype
(every realized neutral case and the native extras of batteries/tf_keras.toml against the reference of their own
describe(), 1e-9 relative in float64)."""

from __future__ import annotations

import pytest
from conftest import assert_battery_green

from wdparity.judge import fidelity
from wdparity.spec.models import Task
from wdparity_backends.tf_keras_backend import backend

REALIZED, INEXPRESSIBLE = 115, 226
TASK = Task.model_validate(fidelity.BATTERY_TASK)


def test_round_trip_over_the_neutral_battery():
    expressed, reasons = fidelity.round_trip("tf_keras")
    assert (len(expressed), len(reasons)) == (REALIZED, INEXPRESSIBLE)
    assert {r["optimizer"] for r in expressed.values()} >= {"SGD", "Adam", "AdamW", "RMSprop", "legacy.RMSprop",
                                                            "Adagrad", "legacy.Adagrad", "Adadelta", "legacy.Adamax",
                                                            "legacy.Nadam", "Lion"}
    assert "no global_norm clipping at position 'after_coupled_decay'" in reasons[
        "sgd-coupled-clip_after_decay-cosine-normal-half_mse"]
    assert "adds no eps" in reasons["adam-coupled-clip_global-cosine-normal-half_mse"]


def test_legacy_decay_is_the_inverse_time_schedule_and_refused_under_another():
    sem = backend.describe(backend.parse({"optimizer": "legacy.SGD", "learning_rate": 0.1, "decay": 0.01}), TASK)
    assert sem.schedule.model_dump() == {"kind": "inverse_time", "rate": 0.01} and sem.decay == []
    step = Task.model_validate({**TASK.model_dump(), "schedule": {"kind": "step", "every": 4, "factor": 0.5}})
    with pytest.raises(ValueError, match="decay"):
        backend.describe(backend.parse({"optimizer": "legacy.SGD", "learning_rate": 0.1, "decay": 0.01}), step)


def test_new_optimizers_reject_decay_with_tf_keras_words():
    with pytest.raises(ValueError, match="decay is deprecated in the new TF-Keras optimizer"):
        backend.parse({"optimizer": "SGD", "decay": 0.01})
    with pytest.raises(ValueError, match="schedule_decay"):
        backend.parse({"optimizer": "legacy.Nadam", "decay": 0.01})
    for key in ("use_ema", "lr", "name"):
        with pytest.raises(ValueError, match=key):
            backend.parse({"optimizer": "Adam", key: 1})
    with pytest.raises(ValueError, match="weight_decay"):
        backend.parse({"optimizer": "legacy.Adam", "weight_decay": 0.1})


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_battery(dtype):
    assert_battery_green("tf_keras", dtype, realized=REALIZED, inexpressible=INEXPRESSIBLE)
