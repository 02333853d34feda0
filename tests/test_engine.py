"""The one reference (engine/) reproduces, bit for bit, the trajectories the two reference paths gave before
they became one (saved at commit 2594c73 from reference.run and batched.run: tests/data/reference_trajectories.*):
single runs in float64 and float32, with and without random rounding, in checkpoint recording, and grids."""

import json
from pathlib import Path

import numpy as np
import pytest

from wdparity.engine import reference
from wdparity.engine.data import make_data

DATA = Path(__file__).parent / "data" / "reference_trajectories"
META = json.loads(DATA.with_suffix(".json").read_text())
SAVED = np.load(DATA.with_suffix(".npz"))


def _same(got: dict, prefix: str) -> None:
    names = sorted(k.rsplit("|", 1)[1] for k in SAVED.files if k.rsplit("|", 1)[0] == prefix)
    assert sorted(got) == names
    for name in names:
        want = SAVED[f"{prefix}|{name}"]
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, (prefix, name)
        assert np.array_equal(got[name], want, equal_nan=True), (prefix, name)   # bit for bit, NaN rows included


@pytest.mark.parametrize("run", [r for r in META["runs"] if "case" in r], ids=lambda r: r["key"])
def test_single_runs_are_bit_identical_to_the_saved_ones(run):
    task = dict(META["task"])
    if run.get("checkpoints"):
        task.update(epochs=4, batch_size=2, record="checkpoints", checkpoint_every=5)
    got = reference.run(META["cases"][run["case"]], make_data(task), run["batch_size"], run["dtype"],
                        tuple(run["noise"]) if run["noise"] else None)
    _same(got, run["key"])


@pytest.mark.parametrize("run", [r for r in META["runs"] if "batch" in r], ids=lambda r: f"{r['batch']}|{r['dtype']}")
def test_grids_are_bit_identical_to_the_saved_ones(run):
    trajectories = reference.run(META["batches"][run["batch"]], make_data(META["task"]), run["batch_size"], run["dtype"])
    assert len(trajectories) == run["size"]
    for g, got in enumerate(trajectories):
        _same(got, f"{run['batch']}|{run['dtype']}|{g}")


def test_a_grid_config_equals_its_single_run():
    """The same chain serves both: each config of a grid gives what it gives alone (here checked directly)."""
    data = make_data(META["task"])
    group = META["batches"]["b-adamw"]
    for sem, got in zip(group, reference.run(group, data, 2, "float32")):
        alone = reference.run(sem, data, 2, "float32")
        assert all(np.array_equal(got[k], alone[k], equal_nan=True) for k in alone)


def test_the_saved_trajectories_can_fail():
    """A changed coefficient changes the numbers (the comparison above is not vacuous)."""
    sem = json.loads(json.dumps(META["cases"]["sgd-coupled"]))
    sem["decay"][0]["coefficient"] *= 1 + 2 ** -40
    got = reference.run(sem, make_data(META["task"]), 1, "float64")
    with pytest.raises(AssertionError):
        _same(got, "sgd-coupled|float64|exact")
