"""``heteroscale demo [--duration-s S] [--speedup N] [--out DIR]``: the live controller on one machine.

Exit codes: 0 the demo ran to its end and everything stopped cleanly; 1 it failed on the way (the line
says what; everything started is stopped all the same); 2 something it needs is missing (one line
says how to install it) or an argument is out of range; 130 interrupted (Ctrl-C or SIGTERM: the run
still stops everything and writes what it has).
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from heteroscale.clock import WallClock
from heteroscale.errors import HeteroScaleError

DEFAULT_OUT = Path("heteroscale-demo")


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="the live controller against a simulated P/D cluster, a real Prometheus and a Kubernetes API fake",
    )
    parser.add_argument("--duration-s", type=float, default=210.0, help="wall seconds of load (default 210)")
    parser.add_argument("--speedup", type=float, default=10.0, help="simulated seconds per wall second (default 10)")
    parser.add_argument("--peak-rps", type=float, default=30.0, help="requests per simulated second at the peak")
    parser.add_argument("--base-rps", type=float, default=3.0, help="requests per simulated second off the peak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="each run writes a new directory under this (default ./heteroscale-demo)",
    )
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    from heteroscale.demo.run import Demo, DemoUnavailable, check_prerequisites
    from heteroscale.demo.setup import DemoSettings

    try:
        settings = DemoSettings(
            duration_s=args.duration_s,
            speedup=args.speedup,
            base_rps=args.base_rps,
            peak_rps=args.peak_rps,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"heteroscale demo: error: {exc}", file=sys.stderr)
        return 2
    try:
        check_prerequisites()
    except DemoUnavailable as exc:
        print(f"heteroscale demo: {exc}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.fromtimestamp(WallClock().now_s(), tz=datetime.UTC).strftime("%Y%m%d-%H%M%S")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            print("heteroscale demo: stopping everything …", file=sys.stderr, flush=True)
        stop.set()  # the run checks it every half second and stops what it started

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        outcome = Demo(settings, args.out / stamp, lambda line: print(line, flush=True), stop).run()
    except HeteroScaleError as exc:
        print(f"heteroscale demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if outcome.problem is not None:
        print(f"heteroscale demo: error: {outcome.problem}", file=sys.stderr)
    return outcome.exit_code
