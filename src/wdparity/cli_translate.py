"""The `explain`, `describe` and `translate` subcommands (cli.py holds the others and the exit-code contract).

explain BACKEND KEY=VALUE...        a setting in words and as neutral semantics
explain --from FILE.py:NAME         the same for the optimizer a script builds (= `describe FILE.py:NAME`)
translate CASE --run R --to B|all   the run's setting in another framework, or in every one side by side
translate --from FILE.py:NAME --to  the same, starting from the optimizer a script builds
"""

from __future__ import annotations

import json
import sys

from wdparity.spec.errors import InputError

FROM_HELP = "a Python file and the attribute holding (or a function building) the optimizer, e.g. train.py:optimizer"


def add_commands(add) -> None:
    explain = add("explain", help="what a framework setting means, in words and as neutral semantics")
    explain.add_argument("backend", nargs="?", help="a registered backend: numpy, torch, keras, optax, mxnet, paddle, "
                         "mlx, tf_keras, fastai (not with --from)")
    explain.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="values are TOML literals, e.g. weight_decay=0.01")
    _from(explain)
    explain.add_argument("--json", action="store_true", help="print the neutral semantics as JSON")

    describe = add("describe", help="what the optimizer a script builds means (= explain --from FILE.py:NAME)")
    describe.add_argument("source", metavar="FILE.py:NAME", help=FROM_HELP)
    describe.add_argument("--model", metavar="NAME", help="the module attribute holding the model (default `model`)")
    describe.add_argument("--params", metavar="NAME", help="the attribute holding optax params (default `params`)")
    describe.add_argument("--json", action="store_true", help="print the run table, semantics and what was not read")

    translate = add("translate", help="the run table that realizes a run's semantics in another framework, or in "
                    "every framework side by side (--to all)")
    translate.add_argument("case", nargs="?", help="the case file (TOML); not with --from")
    translate.add_argument("--run", help="the run to translate (required with a case file)")
    _from(translate)
    translate.add_argument("--to", required=True, help="the target backend, or `all` for every framework, each "
                           "trained natively beside the source")
    translate.add_argument("--python", action="store_true", help="also print the target setting as Python to paste")
    translate.add_argument("--json", action="store_true", help="print the table, exactness, residual, differences, "
                           "notes and the Python as JSON")


def _from(cmd) -> None:
    cmd.add_argument("--from", dest="source", metavar="FILE.py:NAME", help=FROM_HELP)
    cmd.add_argument("--model", metavar="NAME", help="with --from: the attribute holding the model (default `model`)")
    cmd.add_argument("--params", metavar="NAME", help="with --from: the attribute holding optax params (default `params`)")


def _description(args):
    from wdparity.tools.live_source import describe_from

    return describe_from(args.source, args.model, args.params, "FILE.py:NAME" if args.command == "describe" else "--from")


def _print_description(d, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"run": d.run, "semantics": d.semantics.neutral(), "text": d.text,
                          "unsupported": [{"key": u.key, "value": repr(u.value), "reason": u.reason}
                                          for u in d.unsupported], "notes": d.notes}, indent=2))
        return
    from wdparity.tools.translate import toml_value

    print(d.text)
    print("\n[runs.live]")
    for key, value in d.run.items():
        print(f"{key} = {toml_value(value)}")
    for u in d.unsupported:
        print(f"# not read: {u.key} = {u.value!r}: {u.reason}")
    for note in d.notes:
        print(f"# note: {note}")


def cmd_describe(args) -> int:
    _print_description(_description(args), args.json)
    return 0


def cmd_explain(args) -> int:
    if args.source:
        if args.backend or args.settings:
            raise InputError("", "--from", "takes no BACKEND KEY=VALUE (the script's optimizer is the setting)",
                             " ".join(filter(None, [args.backend, *args.settings])))
        return cmd_describe(args)
    if not args.backend:
        raise InputError("", "BACKEND", "is required (or --from FILE.py:NAME)", None, has_value=False)
    from wdparity.tools.translate import explain

    semantics, text = explain(args.backend, args.settings)
    print(json.dumps(semantics.neutral(), indent=2) if args.json else text)
    return 0


def cmd_translate(args) -> int:
    from wdparity.run.backend import Inexpressible
    from wdparity.tools import translate_all as every
    from wdparity.tools.translate import to_json, to_toml

    if args.source and args.case:
        raise InputError("", "--from", "and a case file cannot both be the source", args.case)
    if args.source:
        source, run = _description(args), None
    elif not args.case:
        raise InputError("", "CASE", "is required (or --from FILE.py:NAME)", None, has_value=False)
    elif not args.run:
        raise InputError(args.case, "--run", "is required with a case file", None, has_value=False)
    else:
        source, run = args.case, args.run
    if args.to == "all":
        sbs = every.translate(source, "all", run)
        print(json.dumps(every.to_json(sbs), indent=2) if args.json else every.to_text(sbs), end="" if not args.json
              else "\n")
        return 1 if any(r.status == "error" for r in sbs.rows) else 0
    try:
        result = every.translate(source, args.to, run)
    except Inexpressible as exc:
        print(f"wdparity: {exc}", file=sys.stderr)
        return 1
    name = run or every.SOURCE
    if args.json:
        print(json.dumps({**to_json(result, name, args.to), "python": result.python,
                          "python_reason": result.python_reason}, indent=2))
    else:
        print(to_toml(result), end="")
        if args.python:
            print(f"\n{result.python}" if result.python else f"# no Python snippet: {result.python_reason}")
    if not result.exact and result.residual is not None and result.residual > result.tolerance:
        print(f"wdparity: {args.to} cannot express run {name!r} exactly; the nearest setting above differs in "
              f"{', '.join(result.differences)} (max rel err {result.residual:.3e} > tolerance {result.tolerance:.3e})",
              file=sys.stderr)
        return 1
    return 0
