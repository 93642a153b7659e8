"""``heteroscale controller --config FILE [--once] [--dry-run]``: the live controller command.

The configuration is ``config.controller``; ``--kubeconfig``, ``--context`` and ``--namespace`` (or
``HETEROSCALE_KUBECONFIG`` / ``_CONTEXT`` / ``_NAMESPACE``) override the file (``config.access``); the
parts are joined in ``cli.wiring.build_live``. A dry run prints one line per decision on stdout.

``--check`` validates the file offline (``--json``: one object); ``--check --probe [--json]`` then
reports what the cluster and Prometheus hold for each service and role (:mod:`heteroscale.cli.probe`:
exit 0 all found, 1 something missing, 2 unreachable).

Exit codes (the README's table): 0 a clean stop; 2 a configuration or start-up error; 3 ``--once`` ran
but made no decision; 4 the run ended without ever reaching the Kubernetes API (an unbounded run keeps
retrying meanwhile, and ``/healthz`` says so in ``api_reached`` / ``api_error``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from heteroscale.cli.wiring import build_live
from heteroscale.config.access import apply_overrides, describe, overrides
from heteroscale.config.controller import load_controller_config, prometheus_credentials, relative_path
from heteroscale.controller.journal import to_plain
from heteroscale.domain.decision import DecisionRecord
from heteroscale.errors import HeteroScaleError
from heteroscale.metrics.auth import redact_url
from heteroscale.reports.decisions import decision_text

EXIT_OK = 0
EXIT_NO_DECISION = 3  # ran, but incomplete
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 4  # a required service (the Kubernetes API) was never reached

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
    parser.add_argument(
        "--json", action="store_true", help="with --check (and --probe): print exactly one JSON object on stdout"
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="with --check: per service and role, the targets, pods and series found in the cluster and Prometheus",
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (else $HETEROSCALE_KUBECONFIG, else the config's kubernetes.kubeconfig)"
    )
    parser.add_argument("--context", help="kubeconfig context (else $HETEROSCALE_CONTEXT, else the config's)")
    parser.add_argument("--namespace", help="namespace to manage (else $HETEROSCALE_NAMESPACE, else the config's)")
    return parser


def print_decision(record: DecisionRecord) -> None:
    """A dry run's line for one decision, on stdout as it is made."""
    print(decision_text(to_plain(record)), flush=True)


def cmd_controller(args: argparse.Namespace) -> int:
    """The exit codes of the module doc."""
    try:
        config, doc = load_controller_config(args.config)
        flags = {"kubeconfig": args.kubeconfig, "context": args.context, "namespace": args.namespace}
        given = overrides(flags, os.environ)
        config = apply_overrides(config, given, Path.cwd())
        if given:
            log.info("kubernetes: %s (over %s)", describe(given), args.config)
        if args.check:
            credentials = prometheus_credentials(config.prometheus, doc)  # the files are read: a bad one fails here
            where = f"prometheus {redact_url(config.prometheus.url)} ({credentials.describe()})"
            if args.probe:
                from heteroscale.cli.probe import run_probe

                report, code = run_probe(config, doc, as_json_output=args.json)
                print(report)
                return code
            if args.json:
                plain = {
                    "file": str(args.config),
                    "valid": True,
                    "name": config.name,
                    "services": [s.name for s in config.services],
                    "prometheus": redact_url(config.prometheus.url),
                    "credentials": credentials.describe(),
                }
                print(json.dumps(plain, sort_keys=True))
            else:
                print(f"{args.config}: valid controller config ({len(config.services)} service(s)); {where}")
            return EXIT_OK
        if args.probe or args.json:
            raise HeteroScaleError("--probe and --json go with --check")
        if args.cycles is not None and args.cycles < 1:
            raise HeteroScaleError(f"--cycles must be ≥ 1, got {args.cycles}")
        if args.duration_s is not None and args.duration_s <= 0:
            raise HeteroScaleError(f"--duration-s must be > 0, got {args.duration_s}")
        live = build_live(
            config, doc, dry_run=args.dry_run, once=args.once, cycles=args.cycles, duration_s=args.duration_s
        )
    except HeteroScaleError as exc:
        print(f"heteroscale controller: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.dry_run:
        live.on_record = print_decision
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
            return EXIT_CONFIG

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
    if not live.api_reached:
        why = live.api_error or "no attempt was answered"
        print(
            f"heteroscale controller: error: the Kubernetes API was never reached in {cycles} cycle(s): {why}",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    if args.once and live.last_error is not None:
        print(f"heteroscale controller: error: the cycle made no decision: {live.last_error}", file=sys.stderr)
        return EXIT_NO_DECISION
    return EXIT_OK


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
