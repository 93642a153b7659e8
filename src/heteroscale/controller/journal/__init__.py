"""The decision journal: JSONL records of every decision, written before and after acting.

:mod:`.records` (the schema and its phases), :mod:`.fold` (what a restarted controller remembers),
:mod:`.writer` (the simulator's and the live, durable journal), :mod:`.reader` (start-up from the last
checkpoint; every record for tools). :func:`open_journal` is the live controller's start-up.
"""

from __future__ import annotations

import logging
from pathlib import Path

from heteroscale.controller.journal.fold import MemoryFold, restore_memory
from heteroscale.controller.journal.reader import JournalState, journal_files, read_all, read_state
from heteroscale.controller.journal.records import (
    SCHEMA_VERSION,
    Damaged,
    Phase,
    applied_of,
    decision_records,
    is_decision,
    to_plain,
)
from heteroscale.controller.journal.writer import DurableJournal, Journal, JournalSettings
from heteroscale.errors import JournalUnwritable

log = logging.getLogger(__name__)


def open_journal(path: Path, settings: JournalSettings, now_s: float) -> tuple[DurableJournal, JournalState]:
    """Read the journal's memory from its last checkpoint, open it for appending and write a checkpoint
    (so the next start-up reads from here). A checkpoint that cannot be written is logged: the first
    decision then finds the journal unwritable and holds."""
    state = read_state(path, settings.window_s)
    journal = DurableJournal(path, settings, state.fold)
    try:
        journal.checkpoint(now_s)
    except JournalUnwritable as exc:
        log.warning("journal %s: start-up checkpoint not written: %s", path, exc)
    return journal, state


__all__ = [
    "SCHEMA_VERSION",
    "Damaged",
    "DurableJournal",
    "Journal",
    "JournalSettings",
    "JournalState",
    "MemoryFold",
    "Phase",
    "applied_of",
    "decision_records",
    "is_decision",
    "journal_files",
    "open_journal",
    "read_all",
    "read_state",
    "restore_memory",
    "to_plain",
]
