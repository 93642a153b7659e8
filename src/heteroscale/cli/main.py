"""`heteroscale` command line: simulate, scenarios, validate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from heteroscale import __version__
from heteroscale.errors import HeteroScaleError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heteroscale",
        description="Coordinated P/D autoscaling for heterogeneous LLM serving, and its cluster simulator.",
    )
    parser.add_argument("--version", action="version", version=f"heteroscale {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sim = sub.add_parser("simulate", help="simulate a scenario and print its summary")
    sim.add_argument("--scenario", default="default", help="embedded scenario name or YAML file (default: default)")
    sim.add_argument("--fidelity", choices=["request", "fluid"], help="override the scenario's fidelity")
    sim.add_argument("--duration-s", type=float, help="simulate this many seconds (default: until the load ends)")
    sim.add_argument("--seed", type=int, help="override the scenario's seed")
    sim.add_argument(
        "--out",
        type=Path,
        help="write summary.json, requests.csv, timeseries.csv, journal.jsonl, resolved.yaml here",
    )
    sim.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    sim.add_argument("--skip-bad-rows", action="store_true", help="skip malformed trace rows (counted and reported)")

    sub.add_parser("scenarios", help="list the embedded scenarios, one line each")

    val = sub.add_parser("validate", help="validate a scenario, topology or catalog file")
    val.add_argument("file", type=Path)
    return parser


def _cmd_simulate(args: argparse.Namespace) -> int:
    from heteroscale.cli.progress import ProgressBar
    from heteroscale.cli.wiring import simulate
    from heteroscale.reports.table import summary_table

    if args.duration_s is not None and args.duration_s <= 0:
        raise HeteroScaleError(f"--duration-s must be > 0, got {args.duration_s}")
    bar = ProgressBar("simulating", enabled=not args.json)
    try:
        summary = simulate(
            args.scenario,
            fidelity=args.fidelity,
            duration_s=args.duration_s,
            seed=args.seed,
            out_dir=args.out,
            skip_bad_rows=args.skip_bad_rows,
            progress=bar,
        )
    finally:
        bar.close()
    if args.json:
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    else:
        print(summary_table(summary))
        if summary.get("trace_rows_skipped"):
            print(f"  note: {summary['trace_rows_skipped']} malformed trace row(s) skipped")
        if args.out is not None:
            print(f"  outputs written to {args.out}")
    return EXIT_OK


def _cmd_scenarios(_: argparse.Namespace) -> int:
    from heteroscale.config.loader import list_embedded_scenarios

    entries = list_embedded_scenarios()
    width = max((len(n) for n, _ in entries), default=0)
    for name, description in entries:
        print(f"{name.ljust(width)}  {description}")
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from heteroscale.config.loader import validate_file

    report = validate_file(str(args.file))
    status = "valid" if report.ok else "INVALID"
    if report.ok:
        print(report.message or f"{args.file}: valid {report.kind}")
    else:
        print(f"{report.kind or 'unknown kind'} file is {status}: {report.message}")
    return EXIT_OK if report.ok else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    handlers = {"simulate": _cmd_simulate, "scenarios": _cmd_scenarios, "validate": _cmd_validate}
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handlers[args.command](args)
    except HeteroScaleError as exc:
        print(f"heteroscale {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"heteroscale {args.command}: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"heteroscale {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
