"""Which runs of a grid train together, and how: G semantics of one structure through the one reference.

A lambda x lr grid (`wdparity sweep`) trains the same chain G times with other numbers in it; the
reference trains them as one run with a leading config axis (reference.run with a list). Only lr
(optimizer.lr) and the decay coefficients may differ between the configs of a group; every other field
is structure (`structure_key`). A config without a rule the others have (lambda = 0 drops a penalty's
rule) joins them with that rule at coefficient 0 (`align`), which changes no number. `train_grouped` is
the adapters' train_batch loop. NumPy + stdlib only: workers import it.
"""

from __future__ import annotations

import json
from typing import Callable, Optional


def structure_key(semantics: dict) -> str:
    """What must be equal for two semantics to train in one batch: all but lr and the coefficients."""
    sem = json.loads(json.dumps(semantics))
    sem["optimizer"]["lr"] = None
    for rule in sem.get("decay", []):
        rule["coefficient"] = None
    return json.dumps(sem, sort_keys=True)


def _signature(rule: dict) -> str:
    return json.dumps({k: v for k, v in rule.items() if k != "coefficient"}, sort_keys=True)


def loose_key(semantics: dict) -> str:
    """structure_key without the decay rules: semantics that differ in which rules they have (lambda = 0
    drops a penalty's rule) may still train together once `align` gives them the same rules."""
    return structure_key({**semantics, "decay": []})


def align(semantics: list[dict]) -> Optional[list[dict]]:
    """The semantics with one list of decay rules: a rule a config lacks is added with coefficient 0.0.
    Exact: g + 0*dir(w) == g and step - 0*dir(w) == step for finite w (a non-finite run is stopped).
    None when the configs' own rules do not all fit in that order (an addition order would change)."""
    longest = [_signature(r) for r in max(semantics, key=lambda s: len(s.get("decay", [])))["decay"]]
    if len(set(longest)) != len(longest):
        return None
    out = []
    for sem in semantics:
        own = {_signature(r): r for r in sem.get("decay", [])}
        position = iter(longest)
        if len(own) != len(sem.get("decay", [])) or not all(sig in position for sig in own):
            return None
        decay = [own.get(sig) or {**json.loads(sig), "coefficient": 0.0} for sig in longest]
        out.append({**sem, "decay": decay})
    return out


def groups(semantics: list[dict], extra: list[str]) -> list[list[int]]:
    """Which configs the batched reference trains together: equal `extra` (task, dtype) and loose_key,
    and rules that `align`; a set that does not align falls back to equal structure_key."""
    out = []
    for loose in partition([f"{e}|{loose_key(s)}" for e, s in zip(extra, semantics)]):
        if len(loose) == 1 or align([semantics[i] for i in loose]) is not None:
            out.append(loose)
        else:
            out += [[loose[i] for i in strict] for strict in partition([structure_key(semantics[i]) for i in loose])]
    return out


def partition(keys: list[Optional[str]]) -> list[list[int]]:
    """Indices grouped by equal key, in first-seen order; a None key always stands alone."""
    groups: dict[str, list[int]] = {}
    out: list[list[int]] = []
    for i, key in enumerate(keys):
        if key is None:
            out.append([i])
        elif key in groups:
            groups[key].append(i)
        else:
            groups[key] = [i]
            out.append(groups[key])
    return out


def train_grouped(groups: list[list[int]], jobs: list[dict], data: dict, train: Callable,
                  vectorized: Callable) -> list[dict]:
    """An adapter's train_batch: each group of two or more jobs through `vectorized(jobs, data)`, a job
    alone through `train(job, data)`; trajectories returned in the jobs' order."""
    out: list = [None] * len(jobs)
    for group in groups:
        if len(group) == 1:
            out[group[0]] = train(jobs[group[0]], data)
            continue
        for i, traj in zip(group, vectorized([jobs[i] for i in group], data)):
            out[i] = traj
    return out
