"""Summarise the margins that `make test-margins` logged: per learned check, the worst rhs/lhs over runs."""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> int:
    """Print one row per check (runs, worst margin and where); exit 1 if any check failed."""
    runs: dict[str, list[dict]] = defaultdict(list)
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            runs[row["what"]].append(row)
    failed = 0
    print(f"{'check':<62} {'runs':>4} {'worst rhs/lhs':>13}  at")
    for what, rows in sorted(runs.items()):
        # lhs < rhs is the property; the ratio says how far from failing it held (1 = on the edge)
        ratio = lambda r: r["rhs"] / r["lhs"] if r["lhs"] > 0 else float("inf")
        worst = min(rows, key=ratio)
        failed += sum(r["lhs"] >= r["rhs"] for r in rows)
        print(f"{what:<62} {len(rows):>4} {ratio(worst):>13.3g}  seed {worst['seed']}, {worst['cpu']}")
    print(f"{sum(map(len, runs.values()))} checks, {failed} below margin")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
