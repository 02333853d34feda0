"""What a person sees in the terminal: a table per case, a progress bar on long runs, a summary."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

VERDICT_STYLE = {"equivalent": "green", "diverges": "yellow", "undecidable": "cyan", "unknown": "magenta"}
STATUS_STYLE = {"ok": "green", "skipped": "dim", "error": "bold red", "unstable": "magenta"}


def _num(x, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def _decay_words(sem: dict) -> str:
    parts = []
    for r in sem["decay"]:
        where = "+".join(r["params"])
        if r["coupling"] == "gradient":
            parts.append(f"{r['norm']} coupled λ={r['coefficient']:g} on {where}")
        else:
            parts.append(f"{r['norm']} decoupled λ={r['coefficient']:g}×{r['scale']} on {where}")
    return "; ".join(parts) or "no decay"


def print_case(result: dict, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{result['title']}[/bold]  ({result['case']})", highlight=False)
    runs = Table(title="runs", title_justify="left")
    for col in ("run", "backend", "dtype", "status", "optimizer", "decay", "fidelity", "test loss"):
        runs.add_column(col)
    for name, r in result["runs"].items():
        opt = r["semantics"]["optimizer"]
        fid = r["fidelity"] or {}
        fid_text = "—" if not fid else f"{'✓' if fid['holds'] else '✗'} {_num(fid['max_rel_err'], '.2e')}"
        runs.add_row(name, r["backend"], r["dtype"], f"[{STATUS_STYLE.get(r['status'], '')}]{r['status']}[/]",
                     f"{opt['name']} lr={opt['lr']:g}", _decay_words(r["semantics"]), fid_text,
                     _num((r["final"] or {}).get("test_loss")))
    console.print(runs)
    for name, r in result["runs"].items():
        if r["reason"]:
            console.print(f"  {name}: {r['reason']}", highlight=False)
    pairs = Table(title="pairs", title_justify="left")
    for col in ("a", "b", "verdict", "max rel err", "tolerance", "first step", "decidable", "tensor", "causes"):
        pairs.add_column(col)
    for p in result["pairs"]:
        causes = ", ".join(p["causes"])
        if "unexplained" in p["causes"]:
            causes = f"[bold red]{causes}[/]"
        verdict = p["verdict"] + (" (float64)" if p.get("judged_in") == "float64" else "")
        decidable = "—" if p.get("decidable_steps") is None else f"{p['decidable_steps']}/{p['compared_steps']}"
        pairs.add_row(p["a"], p["b"], f"[{VERDICT_STYLE[p['verdict']]}]{verdict}[/]", _num(p["max_rel_err"], ".2e"),
                      _num(p.get("tol"), ".2e"), _num(p["first_divergent_step"], "d"), decidable, p["tensor"] or "—",
                      causes or "—")
    console.print(pairs)
    for p in result["pairs"]:
        if p.get("reason") and p["verdict"] != "unknown":
            console.print(f"  {p['a']} vs {p['b']}: {p['reason']}", highlight=False)
    for name, r in result["runs"].items():
        for f in r.get("findings") or []:
            console.print(f"  [dim]{name}: finding {f['id']} ({'modelled' if f['modelled'] else 'not modelled'}): "
                          f"{f['text']} [{f['source']}][/dim]", highlight=False)
    claim = result["claim"]
    if claim["expected"]:
        mark = {True: "[green]holds[/]", False: "[bold red]FAILS[/]", None: "[dim]not verified[/]"}[claim["holds"]]
        causes = f" ({', '.join(claim['causes'])})" if claim["causes"] else ""
        console.print(f"claim: {claim['expected']}{causes} — {mark}" + (f": {claim['reason']}" if claim["reason"] else ""),
                      highlight=False)
    tol = result["tolerance"]
    console.print(f"[dim]tolerance: {tol['factor']:g} x each pair's measured envelope per step, undecidable above "
                  f"{tol['ceiling']:g} (float32 reference vs float64 gap {tol['float32_noise_floor']:.2e}); versions: "
                  + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + "[/dim]", highlight=False)


class _Bar:
    def __init__(self, progress, total_cases: int):
        self.progress, self.task = progress, None
        self.total_cases = total_cases

    def start(self, n_runs: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task(f"{self.total_cases} cases, {n_runs} runs", total=n_runs)

    def advance(self, ident: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)


@contextmanager
def progress(total_cases: int):
    """A rich progress bar on stderr (only when stderr is a terminal)."""
    if not sys.stderr.isatty():
        yield _Bar(None, total_cases)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as prog:
        yield _Bar(prog, total_cases)


def print_summary(results, written: list) -> None:
    console = Console()
    table = Table(title="wdparity catalogue", title_justify="left")
    for col in ("case", "claim", "verdicts", "causes found", "holds"):
        table.add_column(col)
    for res in results:
        j = res.json
        verdicts = ", ".join(sorted({p["verdict"] for p in j["pairs"]}))
        holds = {True: "[green]yes[/]", False: "[bold red]NO[/]", None: "[dim]—[/]"}[j["claim"]["holds"]]
        table.add_row(j["title"], j["claim"]["expected"] or "—", verdicts, ", ".join(j["claim"]["found_causes"]) or "—", holds)
    console.print(table)
    n_hold = sum(1 for r in results if r.json["claim"]["holds"] is True)
    n_fail = sum(1 for r in results if r.json["claim"]["holds"] is False)
    console.print(f"{n_hold} claims hold, {n_fail} fail, {len(results) - n_hold - n_fail} not verified; "
                  f"reports: {', '.join(str(w) for w in written)}", highlight=False)
