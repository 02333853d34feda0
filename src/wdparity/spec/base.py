"""The spec's building blocks: strict frozen models, the value types, and the error that names a key.

Shared by models.py (task, decay, semantics) and optimizers.py (the neutral optimizer families).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from wdparity.spec import scope
from wdparity.spec.errors import CUSTOM

TENSORS = ("weight", "bias")
Tensor = Literal["weight", "bias"]
CAUSES = (
    "coupling", "coefficient", "mask", "norm", "l1-at-zero", "lr-scaling", "epsilon",
    "momentum", "optimizer", "second-moment", "bias-correction", "clipping", "loss-scale", "schedule", "precision", "frozen",
    "unstable", "unexplained",
)
Cause = Literal[
    "coupling", "coefficient", "mask", "norm", "l1-at-zero", "lr-scaling", "epsilon",
    "momentum", "optimizer", "second-moment", "bias-correction", "clipping", "loss-scale", "schedule", "precision", "frozen",
    "unstable", "unexplained",
]
Loss = Literal["half_mse", "mse"]
DType = Literal["float32", "float64"]
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


def fail(key: str, value: Any, expected: str) -> PydanticCustomError:
    """A validation error naming `key` (relative to the model raising it), its value and the rule."""
    return PydanticCustomError(CUSTOM, "{expected}", {"key": key, "value": value, "expected": expected})


class Strict(BaseModel):
    """Base of every spec model: frozen, strict types, NaN/inf rejected, unknown keys named."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _no_unknown_keys(self):
        extra = self.model_extra or {}
        if extra:
            key = sorted(extra)[0]
            valid = sorted(self.__class__.model_fields)
            raise fail(key, extra[key], f"is not a known key; valid keys: {valid}")
        return self


def check_tensors(key: str, names: list[str]) -> None:
    """A mask/param list must name at least one real tensor and nothing else (never a silent no-op): the tensors of
    the model in scope (spec/network.py: the linear model's `weight` and `bias` unless a network is described)."""
    have = list(scope.in_scope())
    if not names:
        raise fail(key, names, f"must name at least one tensor of {have}")
    for name in names:
        if not isinstance(name, str) or scope.unknown(name):
            raise fail(key, names, f"must name tensors among {have} (\"{name}\" names no tensor)")
    if len(set(names)) != len(names):
        raise fail(key, names, "must not name a tensor twice")
