"""Test helper: run generated Python snippets (tools/snippet.py) in one fresh interpreter per call and read back
what each built, so a snippet is checked by running it, never by reading its text.

`run_snippets(codes, probe, python=)` writes each snippet to a file, then one driver process runs each file with
runpy and calls `probe(namespace)` (source of a function body given `ns`, the snippet's globals, returning
something JSON-serializable); returns one {"ok": True, "value": ...} or {"ok": False, "error": "..."} per snippet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

DRIVER = '''
import json, runpy, sys, traceback

def probe(ns):
{probe}

out = []
for path in sys.argv[1:]:
    try:
        ns = runpy.run_path(path, run_name="__snippet__")
        out.append({{"ok": True, "value": probe(ns)}})
    except Exception as exc:
        out.append({{"ok": False, "error": type(exc).__name__ + ": " + str(exc),
                    "traceback": "".join(traceback.format_exc().splitlines(True)[-4:])}})
print("RESULTS " + json.dumps(out))
'''

DESCRIBE = '''import wdparity
d = wdparity.describe(ns["optimizer"], model=ns.get("model"), params=ns.get("params"))
return {"semantics": d.semantics.neutral(), "unsupported": [[u.key, str(u.reason)] for u in d.unsupported]}'''


def run_snippets(codes: list[str], probe: str = DESCRIBE, python: str = sys.executable, env: dict | None = None,
                 timeout: float = 600) -> list[dict]:
    import os

    with tempfile.TemporaryDirectory(prefix="wdparity-snippets-") as tmp:
        paths = []
        for i, code in enumerate(codes):
            path = Path(tmp) / f"snippet_{i}.py"
            path.write_text(code, encoding="utf-8")
            paths.append(str(path))
        driver = Path(tmp) / "driver.py"
        driver.write_text(DRIVER.format(probe=textwrap.indent(probe, "    ")), encoding="utf-8")
        proc = subprocess.run([python, str(driver), *paths], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, cwd=tmp)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"snippet driver failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULTS "):])
