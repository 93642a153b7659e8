"""`heteroscale bench`: the policy benchmark (suite × contenders, as shipped and tuned) and its files.

    heteroscale bench --jobs 2             # score from results/tuned.yaml; write results/
    heteroscale bench --retune --jobs 2    # tune every contender on the tune parts, then score
    heteroscale bench --readme             # rewrite README.md's results block from results/bench.json
    heteroscale bench --retune-only        # tune and write results/tuned.yaml, no scoring

Both wall times are printed (retuning and scoring). ``--scenarios`` runs some scenarios of the suite
and keeps the others' results and tuned parameters as they are in the files.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import yaml

from heteroscale.cli.progress import StepPrinter
from heteroscale.errors import ConfigError, HeteroScaleError


def add_bench_parser(sub: Any, add_parallel: Any) -> None:
    bench = sub.add_parser(
        "bench", help="the policy benchmark: a suite × every contender, as shipped and tuned; writes results/"
    )
    bench.add_argument(
        "--suite", default="policies", help="embedded suite name or kind: suite file (default: policies)"
    )
    bench.add_argument("--contenders", help="comma-separated contenders (default: every peer and ablation)")
    bench.add_argument("--scenarios", help="comma-separated scenario names of the suite (default: all)")
    bench.add_argument("--retune", action="store_true", help="tune every contender on the tune parts first")
    bench.add_argument("--retune-only", action="store_true", help="tune and write the tuned parameters; no scoring")
    bench.add_argument("--readme", action="store_true", help="only rewrite the README's results block")
    bench.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results)")
    bench.add_argument("--tuned", type=Path, help="tuned parameters (default: OUT/tuned.yaml)")
    bench.add_argument("--readme-file", type=Path, default=Path("README.md"), help="(default: README.md)")
    add_parallel(bench)


def _names(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise HeteroScaleError(f"--{what}: give at least one name")
    return names


def read_tuned(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no tuned parameters; run `heteroscale bench --retune` to make them")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict):
        raise ConfigError(f"{path}: not a tuned-parameters file (no 'scenarios' mapping)")
    return data


def write_tuned(path: Path, tuned: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Tuned parameters of every contender per scenario: `heteroscale bench --retune` writes this file.\n"
    path.write_text(header + yaml.safe_dump(tuned, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")


def rewrite_readme(results: Path, readme: Path) -> bool:
    """Rewrite ``readme``'s results block from ``results``/bench.json; whether it changed."""
    from heteroscale.reports.bench import read_results, readme_block, replace_block

    source = results / "bench.json"
    if not source.is_file():
        raise ConfigError(f"{source}: no results; run `heteroscale bench` first")
    try:
        result = read_results(source)
        text = readme.read_text(encoding="utf-8")
        new = replace_block(text, readme_block(result), str(readme))
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


def cmd_bench(args: argparse.Namespace, jobs: int) -> int:
    from heteroscale.config.catalog import calibration_for
    from heteroscale.config.loader import load_suite
    from heteroscale.experiments import bench
    from heteroscale.reports.bench import add_verdicts, read_results, readme_block, write_results

    if args.readme:
        changed = rewrite_readme(args.out, args.readme_file)
        print(f"{args.readme_file}: results block {'rewritten' if changed else 'already up to date'}")
        return 0
    suite = load_suite(args.suite)
    contenders = _names(args.contenders, "contenders") or list(bench.CONTENDERS)
    scenarios = _names(args.scenarios, "scenarios")
    tuned_path = args.tuned or args.out / "tuned.yaml"
    bench.check_contenders(contenders)
    bench.select_entries(suite, scenarios)  # an unknown name stops here, before any run

    progress = StepPrinter("bench", True)  # count, total and ETA on a terminal's stderr

    retune_s = None
    if args.retune or args.retune_only:
        start = time.perf_counter()
        tuned = bench.retune(suite, calibration_for, contenders=contenders, scenarios=scenarios, jobs=jobs,
                             backend=args.backend, progress=progress)  # fmt: skip
        old = read_tuned(tuned_path) if tuned_path.is_file() else None
        write_tuned(tuned_path, bench.merged(old, tuned, suite))
        retune_s = time.perf_counter() - start
        print(f"tuned parameters written to {tuned_path} (retune wall {retune_s:.1f} s, {jobs} job(s))", flush=True)
        if args.retune_only:
            return 0
    load_avg = os.getloadavg()[0]
    start = time.perf_counter()
    result = bench.score(suite, calibration_for, read_tuned(tuned_path), tuned_source=str(tuned_path),
                         contenders=contenders, scenarios=scenarios, jobs=jobs, backend=args.backend,
                         progress=progress)  # fmt: skip
    score_s = time.perf_counter() - start
    old_result = read_results(args.out / "bench.json") if (args.out / "bench.json").is_file() else None
    result = add_verdicts(bench.merged(old_result, result, suite))
    if scenarios is None:  # the whole suite's wall times; a partial run keeps the last full run's
        result["wall"] = bench.wall_record(score_s, retune_s, jobs, load_avg, old_result)
    for path in write_results(result, args.out):
        print(f"wrote {path}")
    print(readme_block(result))
    print(f"scoring wall {score_s:.1f} s ({jobs} job(s))" + (f"; retune wall {retune_s:.1f} s" if retune_s else ""))
    return 0
