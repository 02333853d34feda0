"""The optax grid probe shared by the optax test files: a grid of each run (lr x (1+k), weight_decay and a
schedule's init_value x k) trained batched and serially in a fresh interpreter; it prints, per run, the number
of batch keys, whether every job batched, and the largest difference between the two."""

from __future__ import annotations

import textwrap


def grid_probe(runs: str) -> str:
    """The probe's code with `runs` (Python source defining RUNS, a list of run tables) inserted."""
    return textwrap.dedent(TEMPLATE.replace("    {runs}\n", textwrap.indent(textwrap.dedent(runs).strip("\n") + "\n", "    ")))


TEMPLATE = """
    import json, jax, numpy as np
    from wdparity.judge import fidelity
    from wdparity.engine.data import make_data
    from wdparity.spec.models import Task
    from wdparity_backends import optax_backend, optax_batch
    dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    task = Task.model_validate({**fidelity.BATTERY_TASK, "schedule": {"kind": "step", "every": 4, "factor": 0.5},
                                "dtype": dtype}).model_dump()
    data = make_data(task)
    {runs}
    def vary(node, k):
        if isinstance(node, list):
            return [vary(x, k) for x in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, v in node.items():
            if key == "learning_rate":
                v = v * (1 + k)
            elif key in ("weight_decay", "init_value") and isinstance(v, float):
                v = v * k
            out[key] = vary(v, k)
        return out
    out = {}
    for run in RUNS:
        jobs = [{"task": task, "dtype": dtype, "run": vary(run, k)} for k in range(3)]
        keys = {optax_batch.batch_key(j) for j in jobs}
        grid = optax_batch.train(jobs, data)
        serial = [optax_backend.backend.train(j, data) for j in jobs]
        out[json.dumps(run)] = [len(keys), None not in keys, max(
            float(np.max(np.abs(np.asarray(g[t], np.float64) - np.asarray(s[t], np.float64))))
            for g, s in zip(grid, serial) for t in ("weight", "bias"))]
    print(json.dumps(out))
"""
