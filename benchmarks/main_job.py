"""`make run`'s job, recorded: the embedded `default` scenario under heteroscale beside static-peak.

Runs ``heteroscale compare --scenario default --policies heteroscale,static-peak`` (what ``make run``
runs once its venv exists) in a child process, prints its output as it is, then the job's wall time.
The README's sample output and its timing are rendered from this record, not typed
(``benchmarks/demo_run.py`` runs the demo the same way, with :func:`run_cli`).

    python benchmarks/main_job.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

COMMAND = ("compare", "--scenario", "default", "--policies", "heteroscale,static-peak")
TIMEOUT_S = 900.0


def run_cli(args: list[str], needs: str) -> tuple[subprocess.CompletedProcess[str], float] | None:
    """Run this venv's ``heteroscale`` with ``args``: (the finished child, its wall seconds); None, said
    on stderr, when the CLI is not installed next to this interpreter (``needs``: the make target)."""
    cli = Path(sys.executable).with_name("heteroscale")
    if not cli.exists():
        print(f"{cli}: not found; install the package into this interpreter's venv ({needs})", file=sys.stderr)
        return None
    started = time.perf_counter()
    done = subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    return done, time.perf_counter() - started


def echo(done: subprocess.CompletedProcess[str], stdout: str, figures: str, what: str) -> int:
    """Print the child's ``stdout`` (its standard error too if it failed), then ``figures`` for ``what``;
    return its exit status."""
    sys.stdout.write(stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
    print(f"{figures} for `heteroscale {what}` (exit {done.returncode})")
    return done.returncode


def main() -> int:
    ran = run_cli(list(COMMAND), "make run")
    if ran is None:
        return 2
    done, wall_s = ran
    return echo(done, done.stdout, f"wall_s={wall_s:.1f}", " ".join(COMMAND))


if __name__ == "__main__":
    sys.exit(main())
