"""The `setup` subcommand (MXNet's own venv, a cached venv per framework release) and `run --releases` (the
catalogue once per release, the release report); cli.py holds the parser and the exit-code contract.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from wdparity.spec.errors import InputError


def run_releases(args, files: list[str], sweeps: list[str], out: Path, timeout: float, overrides: dict) -> int:
    """`run --releases`: the case files (sweeps are not run per release) once per release; releases.json/.md.
    Exit 0 when the matrix ran (a claim failing on an older release is a finding, not an error), 1 when a release
    cannot be set up, 2 for bad input."""
    from wdparity.report.writer import atomic_write
    from wdparity.run.cases import load_case
    from wdparity.tools import release_report, releases

    requested = releases.parse_releases(args.releases)
    if args.junit or args.trajectories:
        raise InputError("", "--releases", "writes releases.json and releases.md only (drop --junit/--trajectories)",
                         None, has_value=False)
    for path in files:    # every file validated before anything is set up or run
        load_case(path, overrides)
    if sweeps:
        print(f"wdparity: {len(sweeps)} sweep files are not run per release")
    try:
        plans = releases.plan(requested, files, setup=not args.no_setup)
    except RuntimeError as exc:
        print(f"wdparity: setting up a release failed: {exc}", file=sys.stderr)
        return 1
    results = releases.run_matrix(plans, overrides, timeout)
    doc = release_report.build(plans, results)
    atomic_write(out / "releases.json", json.dumps(doc, indent=2))
    atomic_write(out / "releases.md", release_report.render(doc))
    for name, fw in doc["frameworks"].items():
        counts = "; ".join(f"{r['version']}: " + ", ".join(f"{n} {o}" for o, n in r["outcomes"].items() if n)
                           for r in fw["releases"])
        print(f"{name}: {fw['cases']} case files ({fw['skipped_cases']} skipped), {fw['changed_claims']} changed "
              f"between releases — {counts}")
    print(f"wrote {out / 'releases.json'}, {out / 'releases.md'}")
    return 0


def cmd_setup(args) -> int:
    """`setup mxnet` (MXNet's own venv) or `setup FRAMEWORK==VERSION ...` (a cached venv per release). Every spec
    is checked before anything is installed (exit 2, one line); a failed install is exit 1 naming the release."""
    import subprocess

    if args.targets == ["mxnet"]:
        return _setup_mxnet(args)
    from wdparity_backends import release_setup as rs

    if "mxnet" in args.targets:
        raise InputError("", "setup TARGET", "mxnet is set up alone (`wdparity setup mxnet`)", args.targets)
    if args.path:
        raise InputError("", "--path", "is for mxnet only: releases go to $WDPARITY_RELEASES_DIR or "
                         "~/.cache/wdparity/releases", args.path)
    try:
        specs = [rs.parse_spec(target, "setup TARGET") for target in args.targets]
    except rs.SpecError as exc:
        print(f"wdparity: error: {exc} (or `mxnet` alone, for MXNet's venv)", file=sys.stderr)
        return 2
    installer = rs.find_uv()
    print(f"installer: {'uv (' + installer + ')' if installer else 'python -m venv + pip (uv not found)'}; "
          f"releases in {rs.releases_root()}")
    status = 0
    for fw, version in specs:
        try:
            made = rs.create(fw, version, force=args.force)
        except rs.SpecError as exc:
            print(f"wdparity: error: {exc}", file=sys.stderr)
            return 2
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            print(f"wdparity: setting up {fw.name}=={version} failed: {' '.join(str(exc).split())[:500]}", file=sys.stderr)
            status = 1
            continue
        from wdparity.tools.releases import describe_manifest

        print(f"{fw.name}=={version} ready: {made['python']}")
        print(f"  {describe_manifest(made)}; {rs.release_dir(fw.name, version) / 'freeze.txt'}")
    return status


def _setup_mxnet(args) -> int:
    import subprocess

    from wdparity_backends import mxnet_setup

    path = Path(args.path) if args.path else mxnet_setup.default_venv()
    try:
        python = mxnet_setup.create_venv(path)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"wdparity: creating the mxnet venv at {path} failed: {exc}", file=sys.stderr)
        return 1
    print(f"mxnet venv ready: {python}")
    if path != mxnet_setup.default_venv():
        print(f"the mxnet backend looks in {mxnet_setup.default_venv()}: export {mxnet_setup.ENV_VAR}={path} "
              f"or pass --python mxnet={python}")
    return 0
