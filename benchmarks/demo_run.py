"""`make demo`, recorded: the live controller against the simulated cluster, as a user runs it.

Runs ``heteroscale demo`` with its defaults (``--out`` in a temporary directory, removed afterwards)
in a child process and prints its output as it is, then the run's wall time and the child's peak
RSS. The README's sample of the demo and its timing are rendered from this record, not typed. Needs a
``prometheus`` binary on PATH (``make system-deps``), like the demo itself; minutes of wall time.

    python benchmarks/demo_run.py
"""

from __future__ import annotations

import resource
import sys
import tempfile

from main_job import echo, run_cli  # a sibling script: benchmarks/ is the script's own folder on sys.path


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="heteroscale-demo-") as out:
        ran = run_cli(["demo", "--out", out], "make demo")
        if ran is None:
            return 2
        done, wall_s = ran
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    # the run's own folder is temporary: print it as the user would see it
    return echo(
        done, done.stdout.replace(out, "heteroscale-demo"), f"wall_s={wall_s:.1f} peak_rss_mb={rss_mb:.0f}", "demo"
    )


if __name__ == "__main__":
    sys.exit(main())
