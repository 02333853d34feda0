"""A `[runs.…]` table as Python a user pastes: the optimizer built natively, in the framework's own calls.

`python_snippet(table, task)` hands the table to its adapter (`Backend.snippet`, written in the adapter's
`*_snippet.py`); the core only frames the code. Every snippet is self-contained: it imports the framework,
builds the task's model as `model` (marked: replace with yours) and the optimizer as `optimizer` (and
`scheduler`, `penalty`, ... where the table needs them), so a test can run it and describe() what it built.
A key the adapter cannot write as code is an error naming it (`Inexpressible`), never dropped.
"""

from __future__ import annotations

from typing import Optional

from wdparity.run import registry
from wdparity.spec.models import Task
from wdparity.spec.network import tensor_scope

RUN_LEVEL = ("dtype", "loss", "schedule")   # keys a run table may hold that belong to its task (cases.py)


def python_snippet(table: dict, task: Optional[Task] = None) -> str:
    """Python code that builds `table`'s optimizer natively for `task` (default Task())."""
    name = table.get("backend")
    backend = registry.get(name, "", "backend")
    task = task or Task()
    own = {k: v for k, v in table.items() if k != "backend" and k not in RUN_LEVEL}
    run_task = Task.model_validate({**task.model_dump(), **{k: table[k] for k in RUN_LEVEL if k in table}})
    with tensor_scope(run_task.tensors):   # a network's groups and masks name its tensors
        config = backend.parse(own)
        body = backend.snippet(config, run_task)
    return f"# {name}: built by wdparity from the [runs.…] table; `model` is the task's, replace it with yours\n" + body
