"""Render README.md's benchmark blocks from the recorded outputs in ``results/benchmarks/``.

Each block between ``<!-- benchmark:NAME -->`` and ``<!-- /benchmark:NAME -->`` (or ``NAME:VIEW``, a
table) is rewritten from ``results/benchmarks/NAME.txt``, which ``benchmarks/record.py`` writes; the
rest of the README is left as it is (``heteroscale.reports.benchmark_readme`` says how each block is
built). A missing block, record or end marker stops it with one line naming it (exit code 2).

    python benchmarks/readme.py            # rewrite README.md
    python benchmarks/readme.py --check    # exit 1 if README.md differs from what the records give
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from heteroscale.errors import BenchmarkRecordError
from heteroscale.reports.benchmark_readme import read_records, render_readme

ROOT = Path(__file__).resolve().parents[1]
RECORDS = "results/benchmarks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="(default: README.md)")
    parser.add_argument("--records", type=Path, default=ROOT / RECORDS, help=f"(default: {RECORDS})")
    parser.add_argument("--check", action="store_true", help="only say whether the README is up to date")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text(encoding="utf-8")
        shown = os.path.relpath(args.records, args.readme.parent)  # links resolve from the README
        new = render_readme(text, read_records(args.records, shown), args.readme.name, shown)
    except (BenchmarkRecordError, OSError) as exc:
        print(f"readme.py: {exc}", file=sys.stderr)
        return 2
    if new == text:
        print(f"{args.readme.name}: benchmark blocks already up to date")
        return 0
    if args.check:
        print(f"{args.readme.name}: benchmark blocks are stale: run `python benchmarks/readme.py`", file=sys.stderr)
        return 1
    args.readme.write_text(new, encoding="utf-8")
    print(f"{args.readme.name}: benchmark blocks rewritten from {shown}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
