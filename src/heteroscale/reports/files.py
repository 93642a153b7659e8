"""Run outputs on disk: summary.json, the time series, the resolved config."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from heteroscale.sim.telemetry import WindowRow


def write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def write_timeseries(out_dir: Path, rows: list[WindowRow]) -> Path:
    path = out_dir / "timeseries.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        if rows:
            flat = [r.flat() for r in rows]
            writer = csv.DictWriter(fh, fieldnames=list(flat[0].keys()))
            writer.writeheader()
            writer.writerows(flat)
    return path
