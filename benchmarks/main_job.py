"""`make run`'s job, recorded: the embedded `default` scenario under heteroscale beside static-peak.

Runs ``heteroscale compare --scenario default --policies heteroscale,static-peak`` (what ``make run``
runs once its venv exists) in a child process, prints its output as it is, then the job's wall time.
The README's sample output and its timing are rendered from this record, not typed.

    python benchmarks/main_job.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

COMMAND = ("compare", "--scenario", "default", "--policies", "heteroscale,static-peak")
TIMEOUT_S = 900.0


def main() -> int:
    cli = Path(sys.executable).with_name("heteroscale")
    if not cli.exists():
        print(f"{cli}: not found; install the package into this interpreter's venv (make run)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    done = subprocess.run([str(cli), *COMMAND], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    wall_s = time.perf_counter() - started
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
    print(f"wall_s={wall_s:.1f} for `heteroscale {' '.join(COMMAND)}` (exit {done.returncode})")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
