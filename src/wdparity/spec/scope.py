"""The tensors in scope while a run is described: what "every tensor" means and what a mask may name.

A decay rule's `params`, a penalty's, a run's `frozen` list and every adapter's masks name tensors of the
task's model (spec/network.py). The case loader describes each run inside `tensor_scope(task.tensors)`;
outside one (a worker re-reading semantics it was sent, a test) the linear model's `weight` and `bias` are
the default and any name of the network convention is accepted. Standard library only (spec/base.py and
spec/network.py both read it).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Optional

LINEAR = ("weight", "bias")
NAME = re.compile(r"(dense_(0|[1-9][0-9]*)\.(weight|bias)|norm_(0|[1-9][0-9]*)\.(scale|offset)|out\.(weight|bias))")

_SCOPE: ContextVar[Optional[tuple[str, ...]]] = ContextVar("wdparity_tensors", default=None)


@contextmanager
def tensor_scope(tensors: tuple[str, ...]) -> Iterator[None]:
    """Within this block, masks and params lists are checked against these tensors and "every tensor" means them."""
    token = _SCOPE.set(tuple(tensors))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def in_scope() -> tuple[str, ...]:
    """The tensors of the model being described (the linear model's outside any tensor_scope)."""
    return _SCOPE.get() or LINEAR


def scoped() -> bool:
    return _SCOPE.get() is not None


def unknown(name: str) -> bool:
    """A name no model has: outside a scope any name of the convention is accepted (a worker re-reading
    semantics), inside one only the model's."""
    scope = _SCOPE.get()
    if scope is not None:
        return name not in scope
    return name not in LINEAR and not NAME.fullmatch(name)
