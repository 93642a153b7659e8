"""Auditing decision journals: the tolerant reader and the checks of the fault benchmark
(benchmarks/faults.py) — gaps in a run's decision counter, intents without their outcome, and
applied outcomes without an earlier intent."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def journal_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(parsed lines, lines that do not parse)."""
    out: list[dict[str, Any]] = []
    bad = 0
    if not path.exists():
        return out, bad
    for raw in path.read_bytes().splitlines():
        try:
            record = json.loads(raw.decode("utf-8"), parse_constant=lambda c: float("nan"))
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict):
            out.append(record)
        else:
            bad += 1
    return out, bad


def decisions(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in lines if r.get("phase", "outcome") == "outcome"]


def lost_records(lines: list[dict[str, Any]]) -> int:
    """Gaps in each run's decision counter, and intents that never got their outcome."""
    lost = 0
    previous = 0
    outcomes = {r["decision_id"] for r in lines if r.get("phase") == "outcome"}
    for r in lines:
        if r.get("phase") == "checkpoint":
            continue
        m = re.search(r"#(\d+)$", str(r.get("decision_id") or ""))
        if m is None:
            continue
        n = int(m.group(1))
        if r.get("phase") == "intent" and r["decision_id"] not in outcomes:
            lost += 1
        if n == previous:  # the outcome of the intent just read
            continue
        if n < previous or n == 1:  # a new run
            previous = n
            continue
        lost += n - previous - 1
        previous = n
    return lost


def unjournaled(lines: list[dict[str, Any]]) -> int:
    """Applied outcomes without an earlier intent record of the same decision."""
    intents: set[str] = set()
    missing = 0
    for r in lines:
        if r.get("phase") == "intent":
            intents.add(str(r.get("decision_id")))
        elif r.get("phase", "outcome") == "outcome" and r.get("applied") and str(r.get("decision_id")) not in intents:
            missing += 1
    return missing
