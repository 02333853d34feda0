"""Checking cases: run every run of every case in the workers, then judge each case.

`check_cases` is the single pipeline behind `wdparity check` and `wdparity run`: load and validate
all cases first (bad input fails before anything runs), start one worker per backend for all
cases together, then per case: stability, fidelity of each run against the reference of its own
semantics, every pair compared under the calibrated tolerance, causes diagnosed, claim verified.
"""

from __future__ import annotations

import itertools
import platform
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from wdparity import __version__
from wdparity.engine import recording
from wdparity.engine.data import losses, make_data, network_losses
from wdparity.judge import compare, diagnose, envelope, fidelity, replay, stability
from wdparity.judge.compare import finite, finite_fields
from wdparity.judge.rejudge import rejudge
from wdparity.run import harness, registry
from wdparity.run.cases import Case, Run, load_case
from wdparity.spec.network import layout, tensor_scope

TIMING_FIELDS = ("seconds", "peak_rss_mb")  # the only fields of the JSON that vary between identical invocations


def without_timing(doc):
    """A report (or any part of one) less its TIMING_FIELDS wherever they sit: what two executors must agree on."""
    if isinstance(doc, dict):
        return {k: without_timing(v) for k, v in doc.items() if k not in TIMING_FIELDS}
    if isinstance(doc, list):
        return [without_timing(v) for v in doc]
    return doc


@dataclass
class CaseResult:
    case: Case
    json: dict
    trajectories: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    curves: dict[tuple[str, str], dict] = field(default_factory=dict)
    data: dict = field(default_factory=dict)


def core_versions() -> dict[str, str]:
    return {"wdparity": __version__, "python": platform.python_version(), "numpy": np.__version__}


def check_cases(paths: list[str], *, overrides: Optional[dict[str, str]] = None, timeout: float = harness.DEFAULT_TIMEOUT,
                on_loaded: Optional[Callable[[int], None]] = None,
                on_done: Optional[Callable[[str], None]] = None,
                extra: Optional[tuple[list, dict, dict]] = None) -> list[CaseResult]:
    """`extra` = (items, data, results): more work (a sweep's) for the same workers, so each backend still
    starts once per invocation; their results land in the `results` dict."""
    cases = [load_case(p, overrides) for p in paths]      # every InputError surfaces before any run
    items, data = [], {}
    for ci, case in enumerate(cases):
        data[f"c{ci}"] = make_data(case.task.model_dump())
        for name in sorted(case.runs):
            items.append(case.runs[name].work_item(f"c{ci}-{name}", f"c{ci}"))
    extra_items, extra_data, extra_results = extra or ([], {}, {})
    extra_ids = {it.id for it in extra_items}
    if on_loaded:
        on_loaded(len(items) + len(extra_items))
    skipped = {}
    for item in items:
        if item.python is None:
            backend = registry.get(item.backend)
            missing = registry.missing_modules(backend)
            if missing:
                hint = f"; {backend.install_hint}" if backend.install_hint else ""
                skipped[item.id] = harness.Result("skipped", f"{', '.join(missing)} not installed in {sys.executable}{hint}")
    if on_done:
        for ident in skipped:
            on_done(ident)
    judged = _JudgeAsTheyFinish(cases, data, skipped)

    def arrived(ident: str, result: harness.Result) -> None:
        if ident in extra_ids:
            extra_results[ident] = result
        else:
            judged.arrived(ident, result)

    harness.run_items([it for it in items if it.id not in skipped] + extra_items, {**data, **extra_data},
                      timeout=timeout, on_done=(lambda it: on_done(it.id)) if on_done else None, on_result=arrived)
    results = judged.wait()
    for res in rejudge(results, timeout=timeout):   # float32 pairs that float32 cannot decide, again in float64
        res.json["claim"] = judge_claim(res.case, res.json["runs"], res.json["pairs"], res.json["versions"])
    replay.localize(results, timeout=timeout)   # checkpoint mode: the exact first divergent step
    return results


class _JudgeAsTheyFinish:
    """Judges each case in a background thread as soon as its last run arrives, while the other
    workers still train (the main thread keeps the harness, so Ctrl-C still stops every worker)."""

    def __init__(self, cases: list[Case], data: dict, results: dict):
        self.cases, self.data, self.results = cases, data, dict(results)
        self.waiting = {ci: {f"c{ci}-{n}" for n in case.runs} - set(results) for ci, case in enumerate(cases)}
        self.done: list[Optional[CaseResult]] = [None] * len(cases)
        self.ready: queue.Queue = queue.Queue()
        self.error: Optional[BaseException] = None
        self.lock = threading.Lock()
        for ci, left in self.waiting.items():
            if not left:
                self.ready.put(ci)
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def arrived(self, ident: str, result: harness.Result) -> None:
        ci = int(ident.split("-", 1)[0][1:])
        with self.lock:   # reader threads of several workers call this
            self.results[ident] = result
            last = ident in self.waiting[ci] and len(self.waiting[ci]) == 1
            self.waiting[ci].discard(ident)
        if last:
            self.ready.put(ci)

    def _work(self) -> None:
        while (ci := self.ready.get()) is not None:
            try:
                self.done[ci] = self._judge(ci)
            except BaseException as exc:   # re-raised in the caller's thread
                self.error = exc
                return

    def wait(self) -> list[CaseResult]:
        self.ready.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return [res or self._judge(ci) for ci, res in enumerate(self.done)]

    def _judge(self, ci: int) -> CaseResult:
        case = self.cases[ci]
        return judge(case, self.data[f"c{ci}"], {n: self.results[f"c{ci}-{n}"] for n in case.runs})


def _trajectory_problem(arrays: dict, run: Run, data: dict) -> Optional[str]:
    steps = len(data["record_steps"]) if "record_steps" in data else run.task.steps + 1
    d = run.task.num_inputs
    if not run.task.model.linear:
        return _network_problem(arrays, run, steps)
    if set(arrays) < {"weight", "bias"}:
        return f"trajectory lacks {sorted({'weight', 'bias'} - set(arrays))}"
    w, b = np.asarray(arrays["weight"]), np.asarray(arrays["bias"])
    if w.reshape(len(w), -1).shape != (steps, d) or b.reshape(len(b), -1).shape != (steps, 1):
        return f"trajectory shapes weight {w.shape}, bias {b.shape}; expected ({steps}, {d}) and ({steps},)"
    if not (np.issubdtype(w.dtype, np.floating) and np.issubdtype(b.dtype, np.floating)):
        return f"trajectory dtype {w.dtype} is not floating point"
    return None


def _findings(run: Run) -> list[dict]:
    with tensor_scope(run.task.tensors):
        return registry.get(run.backend).findings(run.config, run.task)


def _network_problem(arrays: dict, run: Run, steps: int) -> Optional[str]:
    expected = layout(run.task.model, run.task.num_inputs)
    missing = [name for name, _ in expected if name not in arrays]
    if missing:
        return f"trajectory lacks {missing}"
    for name, shape in expected:
        x = np.asarray(arrays[name])
        size = int(np.prod(shape, dtype=np.int64))
        if x.reshape(len(x), -1).shape != (steps, size):
            return f"trajectory shape {name} {x.shape}; expected ({steps}, {size})"
        if not np.issubdtype(x.dtype, np.floating):
            return f"trajectory dtype {x.dtype} of {name} is not floating point"
    return None


def final_state(traj: dict, data: dict, loss: str) -> dict:
    """Losses, ||weights|| and the (output) bias at the last finite recorded row."""
    n = compare.stable_length(traj) - 1
    if "weight" in traj:
        tr, te = losses(data, traj["weight"][n:n + 1], traj["bias"][n:n + 1], loss)
        weight, bias = traj["weight"][n].astype(np.float64), traj["bias"][n]
    else:
        tr, te = network_losses(data, {k: traj[k][n:n + 1] for k in recording.tensor_names(traj)}, loss)
        weight = np.concatenate([np.asarray(traj[k][n], dtype=np.float64).reshape(-1)
                                 for k in recording.tensor_names(traj) if k.endswith(".weight")])
        bias = np.asarray(traj["out.bias"][n]).reshape(-1)[0]
    return {"train_loss": finite(tr[0]), "test_loss": finite(te[0]), "weight_l2": finite(np.linalg.norm(weight)),
            "bias": finite(bias), "step": int(recording.steps_of(traj)[n])}


def judge(case: Case, data: dict, results: dict[str, harness.Result]) -> CaseResult:
    names = sorted(case.runs)
    bs = case.task.batch_size
    runs_json, trajs, versions = {}, {}, core_versions()
    for name in names:
        run, res = case.runs[name], results[name]
        sem = run.semantics.neutral()
        status, reason = res.status, res.reason
        entry = {"backend": run.backend, "status": status, "reason": reason, "semantics": sem,
                 "fidelity": None, "final": None, "dtype": run.dtype,
                 "findings": _findings(run)}
        if status == "ok" and (problem := _trajectory_problem(res.arrays, run, data)):
            status, reason = "error", f"{run.backend} returned a bad trajectory: {problem}"
        if status == "ok":
            traj = recording.as_trajectory(res.arrays)
            trajs[name] = traj
            status, reason = _stability(entry, sem, traj, data, bs)
            entry["fidelity"] = finite_fields(fidelity.fidelity(sem, traj, data, bs, run.dtype))
            entry["final"] = final_state(traj, data, run.task.loss)
        entry["status"], entry["reason"] = status, reason
        entry["versions"] = {k: v for k, v in res.versions.items() if k != "executable"}
        entry["seconds"] = round(res.seconds, 3)
        entry["peak_rss_mb"] = res.peak_rss_mb
        for mod in registry.get(run.backend).modules if res.status == "ok" else ():
            if mod in res.versions:
                key = mod if versions.get(mod, res.versions[mod]) == res.versions[mod] else f"{mod} ({name})"
                versions[key] = res.versions[mod]
        runs_json[name] = entry
    pairs, curves = [], {}
    for a, b in itertools.combinations(names, 2):
        pair, curve = judge_pair(case, data, runs_json, trajs, a, b)
        pairs.append(pair)
        if curve is not None:
            curves[(a, b)] = curve
    gap = max([envelope.dtype_gap(case.runs[n].semantics.neutral(), data, bs) for n in names
               if case.runs[n].dtype == "float32"] or [0.0])
    tols = {dt: [p["tol"] for p in pairs if p.get("tol") is not None and p.get("dtype") == dt]
            for dt in ("float32", "float64")}
    out = {"case": case.path, "title": case.title, "versions": dict(sorted(versions.items())), "runs": runs_json,
           "tensors": list(case.task.tensors),
           "pairs": pairs, "claim": judge_claim(case, runs_json, pairs, versions),
           "recording": recording.describe(data, recording.plan(case.task.model_dump())),
           "tolerance": {"rule": compare.RULE, "factor": compare.FACTOR, "ceiling": compare.CEILING,
                         "floor": dict(compare.FLOOR), **envelope.describe(),
                         "float32_noise_floor": gap,
                         "float32": max(tols["float32"], default=None), "float64": max(tols["float64"], default=None)}}
    return CaseResult(case, out, trajs, curves, data)


def _stability(entry: dict, sem: dict, traj: dict, data: dict, batch_size: int) -> tuple[str, Optional[str]]:
    """The run's status by the one stop rule and its measured growth (beside the SGD bound, when there is one)."""
    if "weight" in traj:
        limit = recording.stop_limit(np.asarray(traj["weight"][0], dtype=np.float64), float(traj["bias"][0]))
    else:
        limit = recording.stop_limit(recording.packed(traj)[0], 0.0)
    stopped = recording.first_break(*recording.per_step(traj), limit)   # the Recorder's own rule, per step
    bound = stability.sgd_bound(sem, data, batch_size)
    growth = stability.measured_growth(traj)
    info = {}
    if bound is not None:
        info.update({k: finite(v) if k not in ("formula", "exceeds") else v for k, v in bound.items()})
    if growth is not None:
        info["growth"] = {k: finite(v) if k != "geometric" else v for k, v in growth.items()}
    if stopped is not None:
        info["stopped_at"] = stopped
    if info:
        entry["stability"] = info
    why = stability.describe_instability(bound, stopped, growth)
    return ("unstable", why) if why else ("ok", None)


def pair_envelopes(case: Case, data: dict, a: str, b: str) -> list[dict]:
    bs = case.task.batch_size
    return [envelope.envelope(case.runs[n].semantics.neutral(), data, bs, case.runs[n].dtype) for n in (a, b)]


def judge_pair(case: Case, data: dict, runs_json: dict, trajs: dict, a: str, b: str):
    ra, rb = case.runs[a], case.runs[b]
    sem_a, sem_b = ra.semantics.neutral(), rb.semantics.neutral()
    differences = sorted({label for label, _ in diagnose.semantic_edits(sem_a, sem_b)})
    pair = {"a": a, "b": b, "verdict": "unknown", "max_abs_err": None, "max_rel_err": None,
            "first_divergent_step": None, "tensor": None, "causes": [], "semantic_differences": differences}
    status = (runs_json[a]["status"], runs_json[b]["status"])
    if not set(status) <= {"ok", "unstable"}:
        pair["reason"] = "; ".join(f"{n} is {s}" for n, s in zip((a, b), status) if s != "ok")
        return pair, None
    dtype = compare.pair_dtype((ra.dtype, rb.dtype))
    summary = compare.judge(trajs[a], trajs[b], pair_envelopes(case, data, a, b), dtype)
    curve, tol_curve = summary.pop("curve"), summary.pop("tol_curve")
    steps = recording.steps_of(trajs[a])
    row = summary.pop("first_divergent_row")
    if row is not None and row > 0 and steps[row] - steps[row - 1] > 1:   # somewhere in (previous checkpoint, this one]
        pair["localize"] = [int(steps[row - 1]) + 1, int(steps[row])]
    pair.update(summary)
    pair["dtype"] = dtype
    unstable = [n for n, s in zip((a, b), status) if s == "unstable"]
    if unstable:
        pair["reason"] = "; ".join(f"{n} is unstable" for n in unstable) + (
            f": compared over the {summary['compared_steps']} steps where both are finite")
    if summary["verdict"] == "undecidable":
        pair["reason"] = "; ".join(filter(None, [pair.get("reason"), (
            f"agrees on the {summary['decidable_steps']} decidable steps; beyond step {summary['decidable_steps']} "
            f"the envelope of rounding alone exceeds {compare.CEILING:g}")]))
    if summary["verdict"] == "diverges":
        found = diagnose.diagnose(sem_a, trajs[b], sem_b, data, case.task.batch_size, rb.dtype)
        causes = list(found["causes"])
        infidel = [n for n in (a, b) if (runs_json[n]["fidelity"] or {}).get("holds") is False]
        if infidel and "unexplained" not in causes:
            causes.append("unexplained")
        if len(unstable) == 1:   # one side blew up (or grows geometrically), the other did not
            causes.append("unstable")
        pair["causes"] = causes
        pair["diagnosis"] = {"checks": found["checks"], "inert": found["inert"], "explained": found["explained"],
                             "residual_after_all": finite(found["residual_after_all"]),
                             "residual_leaves_envelope_at_step": found["residual_leaves_envelope_at_step"],
                             "runs_off_their_own_semantics": infidel}
    return pair, {"curve": curve, "x": steps[:len(next(iter(curve.values())))], "tol": tol_curve,
                  "first": summary["first_divergent_step"]}


def judge_claim(case: Case, runs_json: dict, pairs: list[dict], versions: Optional[dict] = None) -> dict:
    claim = {"expected": case.claim, "causes": list(case.causes), "holds": None, "found_causes": [], "reason": None}
    found = sorted({c for p in pairs if p["verdict"] == "diverges" for c in p["causes"]})
    claim["found_causes"] = found
    statuses = {r["status"] for r in runs_json.values()}
    infidel = [n for n, r in runs_json.items() if (r["fidelity"] or {}).get("holds") is False]
    undecided = [p for p in pairs if p["verdict"] == "undecidable"]
    if case.claim is None:
        claim["reason"] = "the case makes no claim"
    elif "error" in statuses:
        claim["holds"] = False
        claim["reason"] = "a run errored: " + "; ".join(f"{n}: {r['reason']}" for n, r in runs_json.items() if r["status"] == "error")
    elif "skipped" in statuses:
        claim["reason"] = "not verified: " + "; ".join(f"{n}: {r['reason']}" for n, r in runs_json.items() if r["status"] == "skipped")
    elif infidel:
        claim["holds"] = False
        claim["reason"] = "fidelity fails: " + "; ".join(
            f"{n} is {runs_json[n]['fidelity'].get('reason', 'off its own semantics')}" for n in infidel)
    elif case.claim == "equivalent":
        if all(p["verdict"] == "equivalent" for p in pairs):
            claim["holds"] = True
        elif not any(p["verdict"] == "diverges" for p in pairs) and undecided:
            claim["reason"] = "not verified: " + "; ".join(
                f"{p['a']} vs {p['b']} agree on {p['decidable_steps']} of {p['compared_steps']} steps, the rest is "
                "undecidable" for p in undecided)
        else:
            claim["holds"] = False
    else:
        diverging = any(p["verdict"] == "diverges" for p in pairs)
        claim["holds"] = bool(diverging and set(found) == set(case.causes))
    if claim["holds"] is False and claim["reason"] is None:
        claim["reason"] = (f"expected {case.claim}" + (f" with causes {case.causes}" if case.causes else "")
                           + "; measured " + ("equivalent" if not found and all(p["verdict"] == "equivalent" for p in pairs)
                                              else f"causes {found}" + (" (some pairs undecidable)" if undecided else "")))
    if claim["holds"] is False:
        frameworks = {k: v for k, v in (versions or {}).items() if k not in ("wdparity", "python", "numpy")}
        if frameworks:   # the release on which the claim stopped holding
            claim["reason"] += " on " + ", ".join(f"{k} {v}" for k, v in sorted(frameworks.items()))
    return claim


def exit_code(results: list[CaseResult]) -> int:
    """0 all good; 1 a claim failed or cannot be verified on decidable steps, a run errored or a run fails its
    fidelity. (A claim left unverified because a framework is not installed is not a failure.)"""
    for res in results:
        claim = res.json["claim"]
        if claim["holds"] is False:
            return 1
        if claim["expected"] and claim["holds"] is None and any(p["verdict"] == "undecidable" for p in res.json["pairs"]):
            return 1
        if any(r["status"] == "error" or (r["fidelity"] or {}).get("holds") is False for r in res.json["runs"].values()):
            return 1
    return 0
