"""`heteroscale` command line: simulate, compare, scenarios, validate, calibrate, gen-trace and the rest.

Exit codes (the README's table): 0 done; 1 an internal error (a bug: one line, the traceback with
``-v``); 2 bad input (a file, a flag, a name); 3 ran but incomplete (``schedule`` left pods unplaced;
``controller --once`` made no decision); 4 a required service was unreachable (the controller never
reached the Kubernetes API). Output cut short by a closed pipe (``| head``) ends quietly with 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from heteroscale.cli.parser import DEFAULT_SCENARIO, STUDY_SCENARIO, build_parser
from heteroscale.errors import HeteroScaleError

if TYPE_CHECKING:
    from heteroscale.cli.progress import StepPrinter

EXIT_OK = 0
EXIT_FAILED = 1  # an internal error
EXIT_USAGE = 2  # bad input
EXIT_INCOMPLETE = 3  # ran, but did not finish the job (pods unplaced)
EXIT_UNREACHABLE = 4  # a required service was never reached

log = logging.getLogger(__name__)


def _scenario(args: argparse.Namespace, default: str = DEFAULT_SCENARIO) -> str:
    """The scenario asked for, else the command's default, said on stderr (stdout stays the result)."""
    if args.scenario is not None:
        return str(args.scenario)
    if not getattr(args, "json", False):
        print(f"heteroscale {args.command}: scenario {default} (the default; --scenario to choose)", file=sys.stderr)
    return default


def _out_dir(path: Path | None) -> Path | None:
    """``--out``, checked before any simulation: a folder (made if missing) that can be written."""
    if path is None:
        return None
    if path.exists() and not path.is_dir():
        raise HeteroScaleError(f"--out {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HeteroScaleError(f"--out {path}: cannot make the folder: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK):
        raise HeteroScaleError(f"--out {path}: not writable")
    return path


def _write_json(out: Path | None, result: dict[str, object]) -> None:
    from heteroscale.controller.journal import to_plain

    if out is not None:
        text = json.dumps(to_plain(result), indent=2, sort_keys=True) + "\n"
        (out / "summary.json").write_text(text, encoding="utf-8")


def _jobs(args: argparse.Namespace) -> int:
    from heteroscale.experiments.parallel import default_jobs

    if args.jobs is None:
        return default_jobs()
    if args.jobs < 1:
        raise HeteroScaleError(f"--jobs must be ≥ 1, got {args.jobs}")
    return int(args.jobs)


def _progress(command: str, enabled: bool) -> StepPrinter:
    from heteroscale.cli.progress import StepPrinter

    return StepPrinter(command, enabled)


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
    if args.requests_csv and args.out is None:
        raise HeteroScaleError("--requests-csv needs --out (the folder it writes to)")
    jobs = _jobs(args)
    result = run_compare(
        _scenario(args),
        policies,
        seeds=args.seeds,
        out_dir=_out_dir(args.out),
        progress=_progress("compare", not args.json),
        jobs=jobs,
        backend=args.backend,
        requests_csv=args.requests_csv,
    )
    _emit(result, args.json, compare_table)
    return EXIT_OK


def _cmd_study(args: argparse.Namespace) -> int:
    from heteroscale.cli.experiments import run_study
    from heteroscale.reports.table import study_table

    scenario = _scenario(args, STUDY_SCENARIO)
    result = run_study(scenario, out_dir=_out_dir(args.out), progress=_progress("study-metrics", not args.json))
    _emit(result, args.json, study_table)
    return EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    from heteroscale.cli.experiments import run_sweep
    from heteroscale.reports.table import sweep_table

    if args.instances < 2:
        raise HeteroScaleError(f"--instances must be ≥ 2, got {args.instances}")
    out = _out_dir(args.out)
    result = run_sweep(
        _scenario(args),
        instances=args.instances,
        service=args.service,
        progress=_progress("sweep-ratio", not args.json),
        jobs=_jobs(args),
        backend=args.backend,
    )
    _write_json(out, result)
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

    out = _out_dir(args.out)
    result = cmd_schedule(args.topology, args.demands)
    _write_json(out, result)
    if args.json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        print(schedule_text(result))
    unplaced = result["totals"]["unplaced_pods"]
    if unplaced:  # the cycle ran, but not every pod found a place: a script must not read this as success
        print(f"heteroscale schedule: {unplaced} pod(s) not placed (exit {EXIT_INCOMPLETE})", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK


def _cmd_controller(args: argparse.Namespace) -> int:
    from heteroscale.cli.live import cmd_controller

    return cmd_controller(args)


def _cmd_tune(args: argparse.Namespace) -> int:
    from heteroscale.cli.experiments import run_tune
    from heteroscale.reports.table import tune_table

    out = _out_dir(args.out)
    result = run_tune(
        _scenario(args),
        instances=args.instances,
        progress=_progress("tune", not args.json),
        jobs=_jobs(args),
        backend=args.backend,
    )
    _write_json(out, result)
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
    scenario = _scenario(args)
    out = _out_dir(args.out)
    bar = ProgressBar("simulating", enabled=not args.json)
    try:
        summary = simulate(
            scenario,
            fidelity=args.fidelity,
            duration_s=args.duration_s,
            seed=args.seed,
            out_dir=out,
            skip_bad_rows=args.skip_bad_rows,
            progress=bar,
            requests_csv=args.requests_csv,
            steps=_progress("simulate", not args.json),
        )
    finally:
        bar.close()
    if args.json:
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    else:
        print(summary_table(summary))
        if summary.get("instances_gated"):
            print(
                f"  note: discovery gating held {summary['instances_gated']} Ready instance(s) out of service "
                "(billed, serving nothing); the journal says when and why"
            )
        if summary.get("trace_rows_skipped"):
            print(f"  note: {summary['trace_rows_skipped']} malformed trace row(s) skipped")
        if args.out is not None:
            print(f"  outputs written to {args.out}")
    return EXIT_OK


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from heteroscale.config.loader import list_embedded_scenarios

    entries = list_embedded_scenarios()
    if args.json:
        scenarios = [{"name": n, "description": d, "default": n == DEFAULT_SCENARIO} for n, d in entries]
        sys.stdout.write(json.dumps({"scenarios": scenarios, "default": DEFAULT_SCENARIO}, sort_keys=True) + "\n")
        return EXIT_OK
    width = max((len(n) for n, _ in entries), default=0)
    for name, description in entries:
        print(f"{name.ljust(width)}  {description}")
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from heteroscale.config.loader import validate_file

    report = validate_file(str(args.file))
    status = "valid" if report.ok else "INVALID"
    if args.json:
        plain = {"file": str(args.file), "kind": report.kind, "valid": report.ok, "message": report.message}
        sys.stdout.write(json.dumps(plain, sort_keys=True) + "\n")
    elif report.ok:
        print(report.message or f"{args.file}: valid {report.kind}")
    else:
        print(f"{report.kind or 'unknown kind'} file is {status}: {report.message}")
    return EXIT_OK if report.ok else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per PromQL query is noise
    try:
        code = _run(parser, args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at the interpreter's exit
        return code
    except BrokenPipeError:
        # the reader went away (``| head``): what it wanted it has; say nothing more, and do not let the
        # interpreter complain about flushing stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
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
        "completion": _cmd_completion,
    }
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handlers[args.command](args)
    except HeteroScaleError as exc:
        print(f"heteroscale {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise
    except OSError as exc:
        print(f"heteroscale {args.command}: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"heteroscale {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, the traceback only with -v
        log.info("internal error", exc_info=True)
        print(
            f"heteroscale {args.command}: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED


def _cmd_completion(args: argparse.Namespace) -> int:
    from heteroscale.cli.completion import completion_script

    print(completion_script(build_parser(), args.shell))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
