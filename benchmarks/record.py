"""Run the benchmarks of ``make bench`` and record what each prints under ``results/benchmarks/``.

Each script runs in its own process from the repository root; its standard output goes to
``results/benchmarks/<name>.txt`` after one header line saying where and how it ran::

    #record script=benchmarks/sim_speed.py date=2026-12-04T22:30:01Z machine=x86_64 cpus=2 load_avg=0.70
            python=3.11.9 wall_s=95.3 exit=0          (one line)

(``load_avg``: the 1-minute load average when the script started; ``wall_s``: the script's whole
run, start-up included). A script that exits non-zero — a missed target or a crash — is recorded all
the same, with its exit status in the header and the last lines of its standard error after its
output; the others still run, and this command exits 1 at the end naming them. A script that runs
past ``--timeout-s`` is stopped with its process group and recorded with ``exit=timeout``.

``benchmarks/readme.py`` renders README.md's benchmark blocks from these files; ``--readme`` runs it
afterwards (whatever the scripts' exit statuses), which is what ``make bench`` does.

    python benchmarks/record.py                        # every script of `make bench`
    python benchmarks/record.py --readme calibration_scorecard sim_speed   # re-record two, re-render
    python benchmarks/record.py sim_speed splitwise_mirror   # some, by name
    python benchmarks/record.py faults suite_workloads       # not in `make bench`: minutes each
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"

# `make bench`, in this order (the policy benchmark itself is `make bench-policies`)
SCRIPTS = (
    "main_job",
    "perf_model_fidelity",
    "calibration_scorecard",
    "splitwise_mirror",
    "fluid_fidelity",
    "sim_speed",
    "schedule_scale",
    "controller_scale",
    "scale_mode_requests",
    "topology_value",
    "mix_solver",
    "forecast_accuracy",
    "journal_startup",
    "http_server",
    "policy_targets",
)
# recorded only when named: minutes each (the suite's every part; a real Prometheus per fault; the demo)
ON_REQUEST = ("faults", "suite_workloads", "demo_run")
STDERR_TAIL_LINES = 20
TIMEOUT_S = 1800.0


def header(script: str, started: datetime.datetime, load_avg: float, wall_s: float, status: str) -> str:
    fields = {
        "script": script,
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": platform.machine(),
        "cpus": str(os.cpu_count()),
        "load_avg": f"{load_avg:.2f}",
        "python": platform.python_version(),
        "wall_s": f"{wall_s:.1f}",
        "exit": status,
    }
    return "#record " + " ".join(f"{k}={v}" for k, v in fields.items())


def record(name: str, out_dir: Path, timeout_s: float, root: Path | None = None) -> str:
    """Run ``<root>/benchmarks/<name>.py`` (root: the repository's), write its record, return its exit
    status (``"0"``: passed)."""
    script = f"benchmarks/{name}.py"
    started = datetime.datetime.now(datetime.UTC)
    load_avg = os.getloadavg()[0]
    t0 = time.perf_counter()
    # its own process group, so a time-out stops the processes it started too
    proc = subprocess.Popen(
        [sys.executable, script],
        cwd=root or ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
        status = str(proc.returncode)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        status = "timeout"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)  # Ctrl-C reaches only us (its own session): stop it too
        raise
    wall_s = time.perf_counter() - t0
    lines = [header(script, started, load_avg, wall_s, status), *stdout.splitlines()]
    tail = stderr.splitlines()[-STDERR_TAIL_LINES:]
    if status != "0" and tail:
        lines += [f"#record stderr, last {len(tail)} lines:", *(f"#record | {line}" for line in tail)]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"scripts to record (default: all of {SCRIPTS})")
    parser.add_argument("--out", type=Path, default=OUT, help="(default: results/benchmarks)")
    parser.add_argument("--timeout-s", type=float, default=TIMEOUT_S, help="per script (default: 1800)")
    parser.add_argument("--readme", action="store_true", help="then render README.md's blocks (benchmarks/readme.py)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SCRIPTS + ON_REQUEST]
    if unknown:
        known = ", ".join(SCRIPTS + ON_REQUEST)
        print(f"record.py: unknown benchmark {', '.join(unknown)}; known: {known}", file=sys.stderr)
        return 2
    failed: list[str] = []
    for name in args.names or SCRIPTS:
        print(f"{name} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        status = record(name, args.out, args.timeout_s)
        print(f"exit {status}, {time.perf_counter() - t0:.1f} s -> {args.out / (name + '.txt')}", flush=True)
        if status != "0":
            failed.append(f"{name} (exit {status})")
    rendered = 0
    if args.readme:
        render = [sys.executable, "benchmarks/readme.py", "--records", str(args.out)]
        rendered = subprocess.run(render, cwd=ROOT, check=False).returncode
    if failed:
        print(f"not passed: {', '.join(failed)} (their records say why)", file=sys.stderr)
        return 1
    return rendered


if __name__ == "__main__":
    sys.exit(main())
