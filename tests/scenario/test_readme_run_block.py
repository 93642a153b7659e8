"""The README's `make run` output is what `make run` prints: every line of its block, in order.

`make run` is `heteroscale compare --scenario default --policies heteroscale,static-peak` (Makefile); the
block is the `main_job` record rendered into the README (benchmarks/main_job.py runs the same command and
adds its wall time, left out here): a record older than the code's output fails this test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COMMAND = ("compare", "--scenario", "default", "--policies", "heteroscale,static-peak")


def readme_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text.split("`make run` runs the embedded `default` scenario", 1)[1]
    rendered = after.split("<!-- benchmark:main_job -->", 1)[1].split("<!-- /benchmark:main_job -->", 1)[0]
    block = rendered.split("```text\n", 1)[1].split("\n```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("wall_s=")]


def test_the_readme_shows_what_make_run_prints() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "heteroscale " + " ".join(COMMAND) in makefile  # the block documents this very command
    done = subprocess.run(
        [sys.executable, "-m", "heteroscale.cli.main", *COMMAND],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = [line for line in done.stdout.splitlines() if line.strip()]
    block = readme_block()
    assert block, "no output block after the make run paragraph"
    assert block == printed, "README's make run block differs from the output:\n" + "\n".join(printed)
