"""`make demo`, recorded: the live controller against the simulated cluster, as a user runs it.

Runs ``heteroscale demo`` with its defaults (``--out`` in a temporary directory, removed afterwards)
in a child process and prints its output as it is, then the run's wall time and the child's peak
RSS. The README's sample of the demo and its timing are rendered from this record, not typed. Needs a
``prometheus`` binary on PATH (``make system-deps``), like the demo itself; minutes of wall time.

    python benchmarks/demo_run.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMEOUT_S = 900.0


def main() -> int:
    cli = Path(sys.executable).with_name("heteroscale")
    if not cli.exists():
        print(f"{cli}: not found; install the package into this interpreter's venv (make demo)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="heteroscale-demo-") as out:
        started = time.perf_counter()
        argv = [str(cli), "demo", "--out", out]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        wall_s = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    # the run's own folder is temporary: print it as the user would see it
    sys.stdout.write(done.stdout.replace(out, "heteroscale-demo"))
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
    print(f"wall_s={wall_s:.1f} peak_rss_mb={rss_mb:.0f} for `heteroscale demo` (exit {done.returncode})")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
