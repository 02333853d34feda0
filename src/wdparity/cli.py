"""The `wdparity` command (contract): run, check, sweep, explain, describe, translate, setup (cli_translate.py has
explain/describe/translate). Exit 0 all good, 1 a claim failed or a run
errored, 2 bad input or usage — one line on stderr naming the file, the key and the value. An internal error (a bug) is
one line too, naming the case being processed, exit 1; `--debug` adds the traceback.

Imports are lazy so `wdparity --help` stays fast: nothing heavy loads before a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from wdparity.spec.errors import InputError

DEFAULT_CATALOGUE = "comparisons"
DEFAULT_SWEEPS = "sweeps"
DEFAULT_OUT = "wdparity-report"


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (exit 2), never the multi-line usage dump."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(message)


def _python_overrides(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise InputError("", "--python", "must be BACKEND=PATH (e.g. mxnet=/path/to/venv/bin/python)", value)
        out[name] = path
    return out


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise InputError("", "--timeout", "must be a number of seconds > 0", value)
    if not (seconds > 0 and seconds != float("inf")):
        raise InputError("", "--timeout", "must be a number of seconds > 0", value)
    return seconds


DEBUG_HELP = "on an internal error, print the traceback (default: one line)"


def build_parser() -> Parser:
    p = Parser(prog="wdparity", description="What does 'weight decay = lambda' do in each framework? Measured.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    # Every subcommand accepts --debug too; SUPPRESS keeps a subcommand from resetting the top-level flag.
    debug = Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", parser_class=Parser)

    def add(name: str, parents: tuple = (), **kwargs) -> Parser:
        return sub.add_parser(name, parents=[*parents, debug], **kwargs)

    common = Parser(add_help=False)
    common.add_argument("--python", action="append", metavar="BACKEND=PATH",
                        help="run BACKEND's worker with this interpreter (e.g. another venv or release)")
    common.add_argument("--timeout", default="900", help="seconds each backend's worker may take (default 900)")
    common.add_argument("--executor", default="local", metavar="{local,ray}",
                        help="where workers run: local processes (default) or Ray tasks, one per worker (pip install "
                        "\"wdparity[ray]\")")
    common.add_argument("--ray-address", metavar="ADDRESS", help="with --executor ray: the cluster (default $RAY_ADDRESS, "
                        "else a local Ray started for this command)")

    def machine(cmd: Parser) -> None:
        cmd.add_argument("--junit", metavar="FILE", help="also write JUnit XML: one testcase per case file")
        cmd.add_argument("--trajectories", metavar="DIR", help="also write every run's per-step parameters as "
                         "DIR/<case stem>__<run name>.npz")

    run = add("run", (common,), help="run the catalogue, verify every claim, write reports")
    run.add_argument("paths", nargs="*", help=f"case files or folders (default {DEFAULT_CATALOGUE}/)")
    run.add_argument("--out", default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT}/)")
    run.add_argument("--no-plots", action="store_true", help="skip the HTML plots (faster)")
    run.add_argument("--releases", nargs="+", metavar="FRAMEWORK=VERSION[,VERSION...]",
                     help="run the catalogue once per release of each framework (each in its release venv, set up "
                     "first when absent; every other framework at its default) and write releases.json and releases.md")
    run.add_argument("--no-setup", action="store_true", help="with --releases: exit 2 naming `wdparity setup` for a "
                     "release not set up, instead of setting it up")
    machine(run)

    sweep = add("sweep", (common,), help="train a lambda x lr grid per convention (vectorized) "
                "and draw final test loss against lambda")
    sweep.add_argument("paths", nargs="+", metavar="FILE", help="sweep or grid files (TOML with [sweep]), or folders")
    sweep.add_argument("--out", default=DEFAULT_OUT, help=f"where sweep.json and sweep.html go (default {DEFAULT_OUT}/)")
    sweep.add_argument("--serial", action="store_true", help="train every config as its own run (no batching)")
    sweep.add_argument("--no-plots", action="store_true", help="write sweep.html without the figure")
    sweep.add_argument("--csv", metavar="FILE", help="also write one row per config (convention, lambda, lr, status, "
                       "final train/test loss) as CSV")

    check = add("check", (common,), help="check one case file")
    check.add_argument("case", help="the case file (TOML)")
    check.add_argument("--json", action="store_true", help="print the contract JSON instead of a table")
    machine(check)

    from wdparity.cli_translate import add_commands

    add_commands(add)   # explain, describe, translate

    conv = add("conventions", help="regenerate the table of what weight_decay = lambda means, measured")
    conv.add_argument("--settings", default="docs/conventions.toml", help="the settings (default docs/conventions.toml)")
    conv.add_argument("--out", default="docs/conventions.md", help="where to write the table (default docs/conventions.md)")

    setup = add("setup", help="create the separate environment a backend needs (mxnet) or a framework release needs "
                "(FRAMEWORK==VERSION: one venv per release, cached)")
    setup.add_argument("targets", nargs="+", metavar="TARGET",
                       help="mxnet, or FRAMEWORK==VERSION ... (optax, jax, keras, tf_keras, mlx, paddle; torch==2.13.0)")
    setup.add_argument("--path", help="mxnet only: where to create the venv (default: $WDPARITY_MXNET_VENV or "
                       "~/.cache/wdparity/mxnet-venv); releases go to $WDPARITY_RELEASES_DIR or ~/.cache/wdparity/releases")
    setup.add_argument("--force", action="store_true", help="releases: build the venv again even when it is cached")
    return p


def _out_dir(value: str) -> Path:
    out = Path(value)
    if out.exists() and not out.is_dir():
        raise InputError("", "--out", "must be a folder (a file of that name exists)", value)
    return out


def case_files(paths: list[str]) -> list[str]:
    """Expand folders into their *.toml files (sorted); every path must exist."""
    out = []
    defaults = [DEFAULT_CATALOGUE] + ([DEFAULT_SWEEPS] if Path(DEFAULT_SWEEPS).is_dir() else [])
    for raw in paths or defaults:
        path = Path(raw)
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.toml"))
            if not found:
                raise InputError("", "PATH", "must be a case file or a folder holding *.toml case files", raw)
            out += found
        elif path.is_file():
            out.append(str(path))
        else:
            raise InputError("", "PATH", "must be an existing case file or folder", raw)
    return out


def cmd_check(args) -> int:
    from wdparity.judge.check import check_cases, exit_code
    from wdparity.report.machine import machine_outputs, write_machine_outputs

    junit, trajectories = machine_outputs(args)
    results = check_cases([args.case], overrides=_python_overrides(args.python), timeout=_timeout(args.timeout))
    write_machine_outputs(results, junit, trajectories)
    if args.json:
        print(json.dumps(results[0].json, indent=2, sort_keys=False))
    else:
        from wdparity.report.console import print_case

        print_case(results[0].json)
    return exit_code(results)


def cmd_run(args) -> int:
    from wdparity.judge.check import check_cases, exit_code
    from wdparity.report.console import progress
    from wdparity.report.machine import machine_outputs, write_machine_outputs
    from wdparity.report.writer import write_reports
    from wdparity.run.cases import load_case
    from wdparity.spec.sweepfile import is_sweep
    from wdparity.tools.grid import finish_shared, shared_work
    from wdparity.tools.sweep import from_grid, load_sweep

    junit, trajectories = machine_outputs(args)
    files = case_files(args.paths)
    sweeps = [f for f in files if is_sweep(f)]
    files = [f for f in files if f not in sweeps]
    out = _out_dir(args.out)
    timeout, overrides = _timeout(args.timeout), _python_overrides(args.python)
    if args.releases:
        from wdparity.cli_setup import run_releases

        return run_releases(args, files, sweeps, out, timeout, overrides)
    for path in files:    # every file validated (and its memory estimated) before any data is made
        load_case(path, overrides)
    for path in sweeps:
        load_sweep(path)
    plans, sweep_items, sweep_data, sweep_results = shared_work(sweeps, overrides)
    with progress(len(files)) as bar:
        results = check_cases(files, overrides=overrides, timeout=timeout, on_loaded=bar.start, on_done=bar.advance,
                              extra=(sweep_items, sweep_data, sweep_results))
    swept = [from_grid(finish_shared(plan, sweep_results)) for plan in plans]
    written = write_reports(results, out, plots=not args.no_plots, sweeps=swept)
    written += write_machine_outputs(results, junit, trajectories)
    from wdparity.report.console import print_summary

    print_summary(results, written)
    return exit_code(results)


def cmd_sweep(args) -> int:
    from wdparity.report.grid import print_grid, write
    from wdparity.report.machine import out_file
    from wdparity.spec.sweepfile import is_sweep
    from wdparity.tools.grid import load_grid, run_grid

    csv_path = out_file(args.csv, "--csv")
    files = case_files(args.paths)
    out = _out_dir(args.out)
    for path in files:
        if not is_sweep(path):
            raise InputError(path, "sweep", "is required: `wdparity sweep` takes sweep files ([sweep] values = [...])",
                             None, has_value=False)
    overrides, timeout = _python_overrides(args.python), _timeout(args.timeout)
    grids = [load_grid(path, overrides) for path in files]   # every file validated before anything runs
    results = [run_grid(grid, serial=args.serial, timeout=timeout) for grid in grids]
    for result in results:
        print_grid(result)
    written = write(results, out, "serial" if args.serial else "vectorized", plots=not args.no_plots)
    if csv_path is not None:
        from wdparity.report.writer import atomic_write
        from wdparity.tools.sweep import grid_csv

        atomic_write(csv_path, grid_csv(results))
        written.append(csv_path)
    print(f"wrote {', '.join(str(w) for w in written)}")
    return 1 if any(r.errored for r in results) else 0


def cmd_conventions(args) -> int:
    from wdparity.report.writer import atomic_write
    from wdparity.tools.conventions import build

    if not Path(args.settings).is_file():
        raise InputError("", "--settings", "must be an existing settings file", args.settings)
    text = build(args.settings)
    atomic_write(Path(args.out), text)
    print(f"wrote {args.out}")
    return 1 if "✗" in text or "| error:" in text else 0


VERBS = {"check": "checking", "run": "running", "sweep": "sweeping", "explain": "explaining",
         "translate": "translating", "conventions": "building the conventions table from", "setup": "setting up"}


def _subject(exc: BaseException, args) -> str:
    """What was being processed: the case (or grid) innermost in the traceback, else the command's arguments."""
    command = getattr(args, "command", None)
    tb, frames = exc.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in ("case", "grid"):
            try:
                path = getattr(frame.f_locals.get(name), "path", None)
            except Exception:   # noqa: BLE001 - a local whose attribute access fails names nothing
                path = None
            if isinstance(path, str) and path:
                verb = ("checking" if name == "case" else "sweeping") if command in ("run", None) else VERBS[command]
                return f"{verb} {path}"
    if command is None:
        return "starting"
    named = {"check": [getattr(args, "case", "")], "translate": [getattr(args, "case", "")],
             "run": getattr(args, "paths", None) or [DEFAULT_CATALOGUE], "sweep": getattr(args, "paths", []),
             "explain": [getattr(args, "backend", "")], "conventions": [getattr(args, "settings", "")],
             "setup": getattr(args, "targets", None) or []}.get(command, [])
    return " ".join([VERBS.get(command, command), *[str(n) for n in named if n]])


def internal_error(exc: BaseException, args, debug: bool = False) -> str:
    """The one line an unexpected exception is reported as (the traceback needs --debug)."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    hint = "" if debug else "; rerun with --debug for the traceback"
    return f"wdparity: internal error while {_subject(exc, args)}: {what}{hint}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        if args.version:
            from wdparity import __version__

            print(f"wdparity {__version__}")
            return 0
        if args.command is None:
            parser.print_help()
            return 2
        from wdparity.cli_setup import cmd_setup
        from wdparity.cli_translate import cmd_describe, cmd_explain, cmd_translate

        commands = {"check": cmd_check, "run": cmd_run, "sweep": cmd_sweep, "explain": cmd_explain,
                    "describe": cmd_describe, "translate": cmd_translate, "conventions": cmd_conventions,
                    "setup": cmd_setup}
        if args.command not in ("run", "check", "sweep"):
            return commands[args.command](args)
        from wdparity.run import executors

        executor = executors.make(args.executor, args.ray_address)
        if executor.remote:
            print(f"wdparity: workers run on {executor.describe()}", file=sys.stderr)
        with executors.using(executor):
            return commands[args.command](args)
    except UsageError as exc:
        print(f"wdparity: error: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"wdparity: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # the reader went away (`| head`): nothing left to say
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("wdparity: interrupted; reports already written are intact", file=sys.stderr)
        return 130
    except Exception as exc:   # a bug, not bad input: one line naming what was processed, exit 1
        debug = getattr(args, "debug", None)
        if debug is None:   # the parser itself failed: look at the raw arguments
            debug = "--debug" in (sys.argv[1:] if argv is None else argv)
        if debug:
            import traceback

            traceback.print_exc()
        print(internal_error(exc, args, debug), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
