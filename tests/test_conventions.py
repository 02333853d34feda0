"""docs/conventions.md, the "choose a convention" table: its columns from the neutral semantics, and the
checked-in table being what `wdparity conventions` measures now (every row trained natively and holding)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wdparity.spec.models import Semantics
from wdparity.tools import conventions

ROOT = Path(__file__).resolve().parents[1]


def meaning(optimizer: dict, decay=(), schedule=None) -> dict:
    sem = Semantics.model_validate({"optimizer": optimizer, "decay": list(decay),
                                    "schedule": schedule or {"kind": "constant"}}).neutral()
    return conventions.meaning(sem, 0.01)


def test_the_columns_say_coupling_factor_scale_and_tensors():
    m = meaning({"name": "sgd", "lr": 0.1}, [{"coefficient": 0.02, "params": ["weight"]}])
    assert (m["decay"], m["gradient term"], m["step on w"], m["tensors"]) == ("coupled L2", "+2λ·w", "—", "weight")
    m = meaning({"name": "adam", "lr": 0.1}, [{"coupling": "decoupled", "coefficient": 0.01, "scale": "lr"}])
    assert (m["decay"], m["step on w"], m["tensors"]) == ("decoupled L2", "−lr_t·λ·w", "weight + bias")


def test_a_setting_that_is_a_learning_rate_schedule_says_so():
    """Keras 2's legacy decay=λ: no weight decay at all, an inverse-time schedule of lr."""
    m = meaning({"name": "sgd", "lr": 0.1}, schedule={"kind": "inverse_time", "rate": 0.01})
    assert m["decay"] == "none" and m["optimizer"] == "SGD; lr_t = lr/(1 + λ·t): a schedule"


def _rows(text: str) -> list[str]:
    """The table's rows without the fidelity column's measured figure (its last digit is rounding)."""
    return [line.rsplit("|", 2)[0] for line in text.splitlines() if line.startswith("| ") and "---" not in line]


@pytest.mark.slow
def test_the_checked_in_table_is_what_every_framework_measures_now():
    built = conventions.build(str(ROOT / "docs" / "conventions.toml"))
    fidelity = [line.rsplit("|", 2)[1].strip() for line in built.splitlines()[1:] if line.startswith("| ")][1:]
    assert fidelity and all(cell.startswith("✓") for cell in fidelity), [c for c in fidelity if not c.startswith("✓")]
    assert _rows(built) == _rows((ROOT / "docs" / "conventions.md").read_text(encoding="utf-8")), \
        "docs/conventions.md is stale: run `wdparity conventions`"
