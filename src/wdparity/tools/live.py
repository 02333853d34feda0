"""describe(obj): a live optimizer the user already has, as our `[runs.…]` table, its neutral semantics and words.

The table is read from the object (torch `defaults`/`param_groups`, Keras `get_config()`, optax
`inject_hyperparams` closures); the semantics are the adapter's own describe() of that table (`load_run`), never a
second model. What cannot be read or what the adapter refuses is listed in `.unsupported` with the reason. The
framework's reader is its adapter's (`Backend.read_live`, e.g. torch_live.py): the core imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wdparity.run import registry
from wdparity.run.cases import load_run
from wdparity.spec.errors import InputError
from wdparity.spec.models import Semantics, Task
from wdparity.tools.translate import words


@dataclass
class Unsupported:
    key: str
    value: Any
    reason: str


@dataclass
class Description:
    run: dict                           # the [runs.…] table, backend included
    semantics: Semantics                # the adapter's describe() of `run`
    text: str                           # explain()'s words
    unsupported: list[Unsupported] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def describe(obj: Any, model: Any = None, params: Any = None) -> Description:
    """The neutral semantics of a live optimizer, read by the adapter of its framework (`Backend.read_live`)."""
    order = list(registry.BUILTIN)   # the built-in order (torch, keras, optax, ...), then any others
    readers = [registry.get(n) for n in sorted(registry.targets(), key=lambda n: (n not in order, order.index(n)
                                                                                    if n in order else 0, n))]
    backend = next((b for b in readers if b.reads_live(obj)), None)
    if backend is None:
        labels = [b.live_label for b in readers if b.live_roots]
        raise TypeError(f"describe() reads {', '.join(labels[:-1])} and {labels[-1]} optimizers; got "
                        f"{type(obj).__module__}.{type(obj).__name__}")
    table, unread, notes = backend.read_live(obj, model, params)
    skipped = [Unsupported(*u) for u in unread]
    while True:   # a keyword the adapter refuses leaves the table, with the adapter's own reason
        try:
            run = load_run("live", table, Task(), "describe", {})
            break
        except InputError as exc:
            key = exc.key.removeprefix("runs.live.")
            if key in ("optimizer", "backend") or key not in table:
                raise
            skipped.append(Unsupported(key, table.pop(key), f"{exc.expected} (left out of .run: .semantics describe "
                                                            "the optimizer without it)"))
    return Description(table, run.semantics, words(run.semantics.neutral(), table["backend"]), skipped, notes)
