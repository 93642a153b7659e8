"""HeteroScale: coordinated P/D autoscaling for heterogeneous LLM serving, and its simulator."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# numpy's OpenBLAS threads only contend here: the simulator is single-threaded and the calibration
# fits are tiny least-squares problems that took seconds with two threads on a busy two-core machine
# (0.4 s with one; the fitted values are identical). Set before numpy loads; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
