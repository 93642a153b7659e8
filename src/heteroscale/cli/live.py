"""``heteroscale controller --config FILE [--once] [--dry-run]``: the live controller command.

The configuration is ``config.controller``; the parts are joined in ``cli.wiring.build_live``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from heteroscale.cli.wiring import build_live
from heteroscale.config.controller import load_controller_config, prometheus_credentials, relative_path
from heteroscale.errors import HeteroScaleError
from heteroscale.metrics.auth import redact_url

log = logging.getLogger(__name__)


# --- the command ----------------------------------------------------------------------------------


def add_controller_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "controller", help="run the live controller against Prometheus and Kubernetes"
    )
    parser.add_argument("--config", type=Path, required=True, help="a kind: controller YAML file")
    parser.add_argument("--once", action="store_true", help="run one reconcile cycle and exit")
    parser.add_argument("--dry-run", action="store_true", help="decide and journal, apply nothing (advisory)")
    parser.add_argument("--cycles", type=int, help="stop after this many cycles (default: until SIGTERM)")
    parser.add_argument("--duration-s", type=float, help="stop after this many seconds (default: until SIGTERM)")
    parser.add_argument("--check", action="store_true", help="validate the config file and exit")
    return parser


def cmd_controller(args: argparse.Namespace) -> int:
    """0 on a clean stop; 1 when ``--once`` could make no decision; 2 on a configuration or start-up error."""
    try:
        config, doc = load_controller_config(args.config)
        if args.check:
            credentials = prometheus_credentials(config.prometheus, doc)  # the files are read: a bad one fails here
            where = f"prometheus {redact_url(config.prometheus.url)} ({credentials.describe()})"
            print(f"{args.config}: valid controller config ({len(config.services)} service(s)); {where}")
            return 0
        if args.cycles is not None and args.cycles < 1:
            raise HeteroScaleError(f"--cycles must be ≥ 1, got {args.cycles}")
        if args.duration_s is not None and args.duration_s <= 0:
            raise HeteroScaleError(f"--duration-s must be > 0, got {args.duration_s}")
        live = build_live(
            config, doc, dry_run=args.dry_run, once=args.once, cycles=args.cycles, duration_s=args.duration_s
        )
    except HeteroScaleError as exc:
        print(f"heteroscale controller: error: {exc}", file=sys.stderr)
        return 2
    from heteroscale.controller.http import HealthServer

    server = None
    if config.http.enabled:
        try:
            http = config.http
            server = HealthServer(
                live.metrics, http.address, http.port, live.healthy, http.limits(), describe=live.health
            ).start()
        except OSError as exc:
            live.shutdown()
            print(
                f"heteroscale controller: error: http {config.http.address}:{config.http.port}: {exc}", file=sys.stderr
            )
            return 2

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("received signal %d: stopping after the current cycle", signum)
        live.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    mode = "dry run" if args.dry_run else "acting"
    log.warning(
        "controller %s: %s, %d service(s), every %g s",
        config.name,
        mode,
        len(config.services),
        config.controller.interval_s,
    )
    try:
        cycles = live.run()
    finally:
        live.shutdown()
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    journal = relative_path(config.controller.journal, doc)
    print(f"heteroscale controller: stopped after {cycles} cycle(s); journal {journal}")
    if args.once and live.last_error is not None:
        print(f"heteroscale controller: error: the cycle made no decision: {live.last_error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m heteroscale.cli.live controller …``: the command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="heteroscale")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_controller_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per PromQL query is noise
    return cmd_controller(args)


if __name__ == "__main__":
    sys.exit(main())
