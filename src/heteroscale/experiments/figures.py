"""One JSON schema for ``compare`` with or without ``--seeds``: every figure is ``{mean, ci95, n}``.

``n`` is the number of runs behind the figure; ``ci95`` is the half-width of a Student-t 95 %
confidence interval of the mean, and ``None`` when there is only one run (one run gives no interval —
never a 0-width one). Fields that describe the run rather than measure it (its scenario, policy,
fidelity, SLO, GPU budget, the bound's basis) are kept as they are; ``seed`` becomes ``seeds``, the
list of seeds behind the figures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SCHEMA_VERSION = 2
DESCRIPTIVE = frozenset(
    {"scenario", "policy", "fidelity", "latency_estimated", "slo", "gpu_budget", "basis", "engine_settings"}
)
# Student t, two-sided 95 %, by sample size n (n − 1 degrees of freedom)
_T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def mean_ci(values: list[float] | list[int]) -> dict[str, Any]:
    """``{mean, ci95, n}`` of ``values`` (``ci95`` None for a single value; a whole mean of counts stays
    a whole number)."""
    arr = np.array(values, dtype=np.float64)
    n = len(arr)
    mean: float | int = float(arr.mean())
    if all(isinstance(v, int) for v in values) and float(mean).is_integer():
        mean = int(mean)
    if n < 2:
        return {"mean": mean, "ci95": None, "n": n}
    t = _T95.get(n, 1.96)
    return {"mean": mean, "ci95": float(t * arr.std(ddof=1) / math.sqrt(n)), "n": n}


def aggregate(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Every numeric field of the summaries (nested dicts too) as ``{mean, ci95, n}``; descriptive
    fields as they are; ``seed`` → ``seeds``. A field missing (None) in some run is ``None``."""
    first = summaries[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        values = [s.get(key) for s in summaries]
        if key == "seed":
            out["seeds"] = values
        elif key in DESCRIPTIVE or isinstance(value, bool | str):
            out[key] = value
        elif isinstance(value, dict):
            both = all(isinstance(v, dict) for v in values)
            out[key] = aggregate([v for v in values if isinstance(v, dict)]) if both else value
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out[key] = mean_ci([v for v in values if isinstance(v, int | float)])
        else:
            out[key] = None
    return out


def figure(value: Any) -> Any:
    """A figure's mean (or the value itself when it is not an aggregate)."""
    if isinstance(value, dict) and "mean" in value:
        return value["mean"]
    return value


def means(value: Any) -> Any:
    """``value`` with every ``{mean, ci95, n}`` replaced by its mean, at any depth (a plain summary)."""
    if isinstance(value, dict):
        if set(value) == {"mean", "ci95", "n"}:
            return value["mean"]
        return {k: means(v) for k, v in value.items()}
    return value
