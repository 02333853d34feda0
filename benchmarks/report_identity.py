"""Are two `wdparity run` reports the same apart from timing and memory? (issue 16: before/after the move)

    python benchmarks/report_identity.py A/report.json B/report.json

Prints the number of values compared and every difference outside the timing and memory fields
(check.TIMING_FIELDS), and exits 1 if there is one.
"""

from __future__ import annotations

import json
import sys

from wdparity.judge.check import TIMING_FIELDS


def strip(node, path="$"):
    if isinstance(node, dict):
        return {k: strip(v, f"{path}.{k}") for k, v in node.items() if k not in TIMING_FIELDS}
    if isinstance(node, list):
        return [strip(v, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def diff(a, b, path="$", out=None, count=None):
    out = [] if out is None else out
    count = count if count is not None else [0]
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'B' if k not in a else 'A'}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out, count)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out, count)
    else:
        count[0] += 1
        if a != b and not (a != a and b != b):   # NaN == NaN here
            out.append(f"{path}: {a!r} != {b!r}")
    return out, count[0]


def main(a_path: str, b_path: str) -> int:
    a, b = (strip(json.loads(open(p).read())) for p in (a_path, b_path))
    out, n = diff(a, b)
    print(f"{n} values compared (timing and memory fields {list(TIMING_FIELDS)} left out): {len(out)} differ")
    for line in out[:50]:
        print(" ", line)
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
