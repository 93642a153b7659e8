"""`heteroscale` command line: simulate, compare, scenarios, validate, calibrate, gen-trace and the rest."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from heteroscale import __version__
from heteroscale.errors import HeteroScaleError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _add_parallel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs", type=int, help="simulations run at once on this machine (default: every core); results as serial"
    )
    parser.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local processes, or a Ray cluster (RAY_ADDRESS, else a local one; needs heteroscale[ray])",
    )


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

    cmp_ = sub.add_parser("compare", help="run several policies on one scenario and compare them")
    cmp_.add_argument("--scenario", default="diurnal", help="embedded scenario name or YAML file (default: diurnal)")
    cmp_.add_argument(
        "--policies",
        help="comma-separated policy or variant names (default: the scenario's `compare` list, else "
        + ",".join(_default_policies())
        + ")",
    )
    cmp_.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="seeds per policy (means and 95 %% CIs when > 1; a trace replay is one load: run once, said so)",
    )
    cmp_.add_argument("--out", type=Path, help="write summary.json, per-policy time series, plots and report.html")
    cmp_.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    _add_parallel(cmp_)

    study = sub.add_parser("study-metrics", help="the paper's Fig. 6: one run per driving signal on the diurnal load")
    study.add_argument("--scenario", default="diurnal")
    study.add_argument("--out", type=Path)
    study.add_argument("--json", action="store_true")

    sweep = sub.add_parser("sweep-ratio", help="the paper's Fig. 4: sustainable throughput of every P/D split")
    sweep.add_argument("--scenario", default="default")
    sweep.add_argument("--service", help="service name (default: the first)")
    sweep.add_argument("--instances", type=int, default=16)
    sweep.add_argument("--json", action="store_true")
    _add_parallel(sweep)

    topo = sub.add_parser("topology", help="a topology's GPUs per SKU per domain and its RDMA subgroups")
    topo.add_argument("file", help="topology YAML (or an embedded topology name)")
    topo.add_argument("--json", action="store_true")

    sched = sub.add_parser("schedule", help="one scheduling cycle: place every service's desired P and D counts")
    sched.add_argument("--topology", required=True, help="topology YAML")
    sched.add_argument("--demands", required=True, help="demands YAML (services, desired counts)")
    sched.add_argument("--json", action="store_true")

    from heteroscale.cli.live import add_controller_parser

    add_controller_parser(sub)

    cal = sub.add_parser(
        "calibrate", help="the performance model's engine profiles; --report: its scorecard on held-out rows"
    )
    cal.add_argument("--report", action="store_true", help="score the model on every measured profile source")
    cal.add_argument(
        "--profile", type=Path, help="score this file instead (any shipped format: kernel times, Splitwise, DistServe)"
    )
    cal.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    from heteroscale.cli.gentrace import add_gen_trace_parser

    add_gen_trace_parser(sub)

    from heteroscale.cli.demo import add_demo_parser

    add_demo_parser(sub)

    from heteroscale.cli.bench import add_bench_parser

    add_bench_parser(sub, _add_parallel)

    tun = sub.add_parser("tune", help="Algorithm 1: best ratio and target by pressure test, then the best policy")
    tun.add_argument("--scenario", default="diurnal-ramp")
    tun.add_argument("--instances", type=int, default=8, help="cluster size of the ratio sweep")
    tun.add_argument("--json", action="store_true")
    _add_parallel(tun)
    return parser


def _default_policies() -> tuple[str, ...]:
    from heteroscale.experiments.compare import DEFAULT_POLICIES

    return DEFAULT_POLICIES


def _jobs(args: argparse.Namespace) -> int:
    from heteroscale.experiments.parallel import default_jobs

    if args.jobs is None:
        return default_jobs()
    if args.jobs < 1:
        raise HeteroScaleError(f"--jobs must be ≥ 1, got {args.jobs}")
    return int(args.jobs)


def _progress(enabled: bool) -> Callable[[str], None]:
    def report(step: str) -> None:
        if enabled and sys.stderr.isatty():
            sys.stderr.write(f"  … {step}\n")

    return report


def _emit(result: dict[str, object], as_json: bool, table: Callable[[dict[str, object]], str]) -> None:
    from heteroscale.controller.journal import to_plain

    if as_json:
        sys.stdout.write(json.dumps(to_plain(result), sort_keys=True) + "\n")
    else:
        print(table(result))


def _cmd_compare(args: argparse.Namespace) -> int:
    from heteroscale.cli.experiments import run_compare
    from heteroscale.reports.table import compare_table

    policies: list[str] | None = None
    if args.policies is not None:
        policies = [p.strip() for p in args.policies.split(",") if p.strip()]
        if not policies:
            raise HeteroScaleError("--policies: give at least one policy name")
    if args.seeds < 1:
        raise HeteroScaleError(f"--seeds must be ≥ 1, got {args.seeds}")
    result = run_compare(
        args.scenario,
        policies,
        seeds=args.seeds,
        out_dir=args.out,
        progress=_progress(not args.json),
        jobs=_jobs(args),
        backend=args.backend,
    )
    _emit(result, args.json, compare_table)
    return EXIT_OK


def _cmd_study(args: argparse.Namespace) -> int:
    from heteroscale.cli.experiments import run_study
    from heteroscale.reports.table import study_table

    result = run_study(args.scenario, out_dir=args.out, progress=_progress(not args.json))
    _emit(result, args.json, study_table)
    return EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    from heteroscale.cli.experiments import run_sweep
    from heteroscale.reports.table import sweep_table

    if args.instances < 2:
        raise HeteroScaleError(f"--instances must be ≥ 2, got {args.instances}")
    result = run_sweep(
        args.scenario,
        instances=args.instances,
        service=args.service,
        progress=_progress(not args.json),
        jobs=_jobs(args),
        backend=args.backend,
    )
    _emit(result, args.json, sweep_table)
    return EXIT_OK


def _cmd_topology(args: argparse.Namespace) -> int:
    from heteroscale.cli.scheduling import cmd_topology, topology_json

    if args.json:
        sys.stdout.write(json.dumps(topology_json(args.file), sort_keys=True) + "\n")
    else:
        print(cmd_topology(args.file))
    return EXIT_OK


def _cmd_schedule(args: argparse.Namespace) -> int:
    from heteroscale.cli.scheduling import cmd_schedule, schedule_text

    result = cmd_schedule(args.topology, args.demands)
    if args.json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        print(schedule_text(result))
    return EXIT_OK


def _cmd_controller(args: argparse.Namespace) -> int:
    from heteroscale.cli.live import cmd_controller

    return cmd_controller(args)


def _cmd_tune(args: argparse.Namespace) -> int:
    from heteroscale.cli.experiments import run_tune
    from heteroscale.reports.table import tune_table

    result = run_tune(
        args.scenario,
        instances=args.instances,
        progress=_progress(not args.json),
        jobs=_jobs(args),
        backend=args.backend,
    )
    _emit(result, args.json, tune_table)
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from heteroscale.cli.bench import cmd_bench

    return cmd_bench(args, _jobs(args))


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from heteroscale.cli.calibrate import engine_profiles, file_scorecard, packaged_scorecard
    from heteroscale.reports.calibration import scorecard_json, scorecard_text

    if args.profile is not None and not args.report:
        raise HeteroScaleError("--profile needs --report (it scores the file)")
    if not args.report:
        profiles = engine_profiles()
        if args.json:
            sys.stdout.write(json.dumps({"engine_profiles": profiles}, sort_keys=True) + "\n")
        else:
            print("\n".join(f"  {line}" for line in profiles.values()))
        return EXIT_OK
    card = packaged_scorecard() if args.profile is None else file_scorecard(args.profile)
    if args.json:
        sys.stdout.write(json.dumps(scorecard_json(card), sort_keys=True) + "\n")
    else:
        print(scorecard_text(card))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from heteroscale.cli.demo import cmd_demo

    return cmd_demo(args)


def _cmd_gen_trace(args: argparse.Namespace) -> int:
    from heteroscale.cli.gentrace import gen_trace, gen_trace_text

    result = gen_trace(args)
    _emit(result, args.json, gen_trace_text)
    return EXIT_OK


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
    handlers = {
        "simulate": _cmd_simulate,
        "scenarios": _cmd_scenarios,
        "validate": _cmd_validate,
        "compare": _cmd_compare,
        "study-metrics": _cmd_study,
        "sweep-ratio": _cmd_sweep,
        "tune": _cmd_tune,
        "bench": _cmd_bench,
        "calibrate": _cmd_calibrate,
        "topology": _cmd_topology,
        "schedule": _cmd_schedule,
        "controller": _cmd_controller,
        "gen-trace": _cmd_gen_trace,
        "demo": _cmd_demo,
    }
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
