"""The journal audit of the fault benchmark (tests/support/journal_audit.py) counts what it says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.journal_audit import decisions, journal_lines, lost_records, unjournaled


def rec(n: int, phase: str, applied: bool = False, run: str = "chat@0") -> dict[str, Any]:
    return {"decision_id": f"{run}#{n}", "phase": phase, "applied": applied}


def test_a_complete_journal_loses_nothing() -> None:
    lines = [rec(1, "intent"), rec(1, "outcome", True), rec(2, "outcome"), {"phase": "checkpoint"}, rec(3, "outcome")]
    assert lost_records(lines) == 0 and unjournaled(lines) == 0
    assert [r["decision_id"] for r in decisions(lines)] == ["chat@0#1", "chat@0#2", "chat@0#3"]


def test_a_gap_in_the_counter_and_an_intent_without_outcome_are_lost() -> None:
    assert lost_records([rec(1, "outcome"), rec(4, "outcome")]) == 2  # #2 and #3 are missing
    assert lost_records([rec(1, "outcome"), rec(2, "intent")]) == 1


def test_a_restart_starts_a_new_counter_and_loses_nothing() -> None:
    assert lost_records([rec(1, "outcome"), rec(2, "outcome"), rec(1, "outcome", run="chat@9"), rec(2, "outcome")]) == 0


def test_an_applied_outcome_without_an_earlier_intent_is_unjournaled() -> None:
    assert unjournaled([rec(1, "outcome", True), rec(1, "intent")]) == 1  # the intent came after the write
    assert unjournaled([rec(1, "outcome", False)]) == 0  # nothing was written


def test_lines_that_do_not_parse_are_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"phase": "outcome"}\nnot json\n[1, 2]\n{"x": NaN}\n')
    lines, bad = journal_lines(path)
    assert bad == 2 and len(lines) == 2 and lines[1]["x"] != lines[1]["x"]  # NaN kept as a float
    assert journal_lines(tmp_path / "missing.jsonl") == ([], 0)
