"""Builders shared by the variants_and_mixed_loads tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from heteroscale.sim.traces import RequestTrace
from tests.unit.config_builders import with_changes
from tests.unit.config_builders import write as write_file


def scenario_dict(**changes: Any) -> dict[str, Any]:
    """One small service (Qwen3-32B on H100 TP2, both roles, on `small-mixed`), a minute of the Azure
    code trace, HeteroScale with theta_out 0.2, and two variants that `compare` runs by default.
    ``changes`` maps dotted paths (``variants.adaptive.options``) to values (or DELETE)."""
    base: dict[str, Any] = {
        "kind": "scenario",
        "name": "tiny-variants",
        "topology": "small-mixed",
        "simulation": {"fidelity": "request", "duration_s": 60, "seed": 0},
        "services": [
            {
                "name": "code-32b",
                "model": "qwen3-32b",
                "roles": {
                    "prefill": {"shapes": [{"sku": "h100-sxm", "tp": 2}], "min": 1, "max": 4},
                    "decode": {"shapes": [{"sku": "h100-sxm", "tp": 2}], "min": 1, "max": 4},
                },
                "pd_ratio": 1.0,
                "slo": {"ttft_s": 2.0, "tbt_s": 0.1},
                "affinity": "s2",
                "load": {"kind": "trace", "trace": "azure-code", "time_compression": 2.0},
                "policy": {"name": "heteroscale", "prefill": 1, "decode": 1, "options": {"theta_out": 0.2}},
            }
        ],
        "variants": {
            "adaptive": {
                "policy": "heteroscale",
                "description": "adaptive P/D ratio",
                "options": {"adaptive_ratio": {"min_ratio": 0.5, "max_ratio": 4.0}},
            },
            "fixed-r2": {"policy": "heteroscale", "options": {"pd_ratio": 2.0}},
        },
        "compare": ["adaptive", "fixed-r2"],
    }
    return with_changes(base, changes)


def write(folder: Path, content: dict[str, Any], name: str = "scenario.yaml") -> Path:
    return write_file(folder, name, content)


def lines_of(path: Path, needle: str) -> list[int]:
    """1-based lines of ``path`` containing ``needle``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [i for i, line in enumerate(lines, 1) if needle in line]


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line of ``path`` containing ``needle``."""
    return lines_of(path, needle)[0]


def trace(arrivals: list[float], tag: int, cached: list[int] | None = None, **kw: Any) -> RequestTrace:
    """A request list whose input tokens are ``tag`` (to tell the sources apart after a merge)."""
    n = len(arrivals)
    return RequestTrace(
        name=kw.pop("name", f"t{tag}"),
        arrival_s=np.array(arrivals, dtype=np.float64),
        input_tokens=np.full(n, tag, dtype=np.int64),
        output_tokens=np.arange(1, n + 1, dtype=np.int64),
        cached_tokens=None if cached is None else np.array(cached, dtype=np.int64),
        **kw,
    )
