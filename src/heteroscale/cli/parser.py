"""The ``heteroscale`` argument parser: every command, its options and their defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

from heteroscale import __version__

# one default scenario for every command that simulates; study-metrics is the paper's diurnal study
DEFAULT_SCENARIO = "default"
STUDY_SCENARIO = "diurnal"


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


def build_parser() -> argparse.ArgumentParser:
    """Every command and its options (the completion script is made from this too)."""
    parser = argparse.ArgumentParser(
        prog="heteroscale",
        description="Coordinated P/D autoscaling for heterogeneous LLM serving, and its cluster simulator.",
    )
    parser.add_argument("--version", action="version", version=f"heteroscale {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sim = sub.add_parser("simulate", help="simulate a scenario and print its summary")
    sim.add_argument("--scenario", help=f"embedded scenario name or YAML file (default: {DEFAULT_SCENARIO})")
    sim.add_argument("--fidelity", choices=["request", "fluid"], help="override the scenario's fidelity")
    sim.add_argument("--duration-s", type=float, help="simulate this many seconds (default: until the load ends)")
    sim.add_argument("--seed", type=int, help="override the scenario's seed")
    sim.add_argument(
        "--out",
        type=Path,
        help="write summary.json, requests.csv, timeseries.csv, journal.jsonl, resolved.yaml here",
    )
    sim.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    sim.add_argument(
        "--requests-csv",
        choices=["plain", "gzip", "off"],
        default="plain",
        help="with --out: requests.csv as is (default), gzipped (requests.csv.gz), or not at all",
    )
    sim.add_argument(
        "--no-requests-csv",
        dest="requests_csv",
        action="store_const",
        const="off",
        help="with --out: write no requests.csv (large runs); the same as --requests-csv off",
    )
    sim.add_argument("--skip-bad-rows", action="store_true", help="skip malformed trace rows (counted and reported)")

    scen = sub.add_parser("scenarios", help="list the embedded scenarios, one line each")
    scen.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    val = sub.add_parser(
        "validate",
        help="validate a scenario, topology, demands, controller, catalog or suite file and the data files it names",
    )
    val.add_argument("file", type=Path)
    val.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    cmp_ = sub.add_parser("compare", help="run several policies on one scenario and compare them")
    cmp_.add_argument("--scenario", help=f"embedded scenario name or YAML file (default: {DEFAULT_SCENARIO})")
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
    cmp_.add_argument(
        "--out", type=Path, help="write summary.json, per-policy time series and journals, plots and report.html"
    )
    cmp_.add_argument(
        "--requests-csv",
        action="store_true",
        help="with --out, also each policy's per-request records (requests.csv.gz; ≈15 MB a policy on default)",
    )
    cmp_.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    _add_parallel(cmp_)

    study = sub.add_parser("study-metrics", help="the paper's Fig. 6: one run per driving signal on the diurnal load")
    study.add_argument("--scenario", help=f"embedded scenario name or YAML file (default: {STUDY_SCENARIO})")
    study.add_argument("--out", type=Path, help="write summary.json, per-signal time series, plots and report.html")
    study.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    sweep = sub.add_parser("sweep-ratio", help="the paper's Fig. 4: sustainable throughput of every P/D split")
    sweep.add_argument("--scenario", help=f"embedded scenario name or YAML file (default: {DEFAULT_SCENARIO})")
    sweep.add_argument("--service", help="service name (default: the first)")
    sweep.add_argument("--instances", type=int, default=16)
    sweep.add_argument("--out", type=Path, help="write summary.json here")
    sweep.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    _add_parallel(sweep)

    topo = sub.add_parser("topology", help="a topology's GPUs per SKU per domain and its RDMA subgroups")
    topo.add_argument("file", help="topology YAML (or an embedded topology name)")
    topo.add_argument("--json", action="store_true")

    sched = sub.add_parser("schedule", help="one scheduling cycle: place every service's desired P and D counts")
    sched.add_argument("--topology", required=True, help="topology YAML")
    sched.add_argument("--demands", required=True, help="demands YAML (services, desired counts)")
    sched.add_argument("--json", action="store_true")
    sched.add_argument("--out", type=Path, help="write summary.json here")

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
    tun.add_argument("--scenario", help=f"embedded scenario name or YAML file (default: {DEFAULT_SCENARIO})")
    tun.add_argument("--instances", type=int, default=8, help="cluster size of the ratio sweep")
    tun.add_argument("--out", type=Path, help="write summary.json here")
    tun.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    _add_parallel(tun)

    comp = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    comp.add_argument("shell", choices=["bash", "zsh"])
    return parser


def _default_policies() -> tuple[str, ...]:
    from heteroscale.experiments.compare import DEFAULT_POLICIES

    return DEFAULT_POLICIES
