"""Reading the journal back: start-up from the last checkpoint, and every record for tools and tests.

Start-up (:func:`read_state`) never reads a whole file into memory: it looks for the last checkpoint
from the end of the newest file backwards in blocks (then in older rotated files), and streams only the
lines after it, folding each into a :class:`~.fold.MemoryFold`. A journal without a checkpoint (schema
1, or one cut before its first) is streamed from the start of its oldest file.

A damaged line — not UTF-8, not JSON, ``NaN`` or ``Infinity``, not an object, a field that is null or
of the wrong type — is skipped with a warning (the first ``WARN_LINES`` per read one line each, then
one summary line); a torn last line (no newline) is skipped too. Reading never raises on content.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heteroscale.controller.journal.fold import MemoryFold
from heteroscale.controller.journal.records import CHECKPOINT_MARK, Damaged, Phase, decode, phase_of
from heteroscale.controller.journal.writer import TAIL_BLOCK_BYTES, rotated

log = logging.getLogger(__name__)

WARN_LINES = 10


def journal_files(path: Path) -> list[Path]:
    """The journal's files, oldest first: ``<name>.N`` … ``<name>.1``, then ``<name>`` itself."""
    older: list[Path] = []
    n = 1
    while rotated(path, n).exists():
        older.append(rotated(path, n))
        n += 1
    current = [path] if path.exists() else []
    return [*reversed(older), *current]


@dataclass(slots=True)
class Skipped:
    """Damaged lines met by one read, warned about up to ``WARN_LINES`` times."""

    count: int = 0
    torn: int = 0

    def damaged(self, path: Path, where: str, why: str) -> None:
        self.count += 1
        if self.count <= WARN_LINES:
            log.warning("journal %s: %s skipped: %s", path, where, why)

    def summarise(self, what: str) -> None:
        if self.count > WARN_LINES:
            log.warning("journal: %d more damaged records skipped while %s", self.count - WARN_LINES, what)


def _lines(path: Path, start: int, skipped: Skipped) -> Iterator[tuple[int, bytes]]:
    """(offset, complete line) from ``start``; a torn last line is dropped."""
    with path.open("rb") as fh:
        fh.seek(start)
        offset = start
        for raw in fh:
            if not raw.endswith(b"\n"):
                skipped.torn += 1
                log.warning("journal %s: torn last record at byte %d (%d bytes) skipped", path, offset, len(raw))
                break
            yield offset, raw
            offset += len(raw)


def records(path: Path, start: int = 0, skipped: Skipped | None = None) -> Iterator[dict[str, Any]]:
    """The usable records of one file from byte ``start`` (damaged ones skipped with a warning)."""
    skipped = skipped if skipped is not None else Skipped()
    for offset, raw in _lines(path, start, skipped):
        try:
            yield decode(raw)
        except Damaged as exc:
            skipped.damaged(path, f"the line at byte {offset}", str(exc))


def read_all(path: Path) -> Iterator[dict[str, Any]]:
    """Every usable record of the journal, oldest file first (for tools and tests; streams)."""
    skipped = Skipped()
    for file in journal_files(path):
        yield from records(file, 0, skipped)
    skipped.summarise(f"reading {path}")


def reverse_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of the complete lines of one file, the last first, read backwards in blocks
    (a torn tail after the last newline is not a line); memory stays within a block and one line."""
    with path.open("rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        tail = b""  # bytes [pos, pos + len(tail)): whole lines, the first perhaps begun before pos
        torn_dropped = False
        while pos > 0:
            start = max(0, pos - TAIL_BLOCK_BYTES)
            fh.seek(start)
            tail = fh.read(pos - start) + tail
            pos = start
            if not torn_dropped:
                cut = tail.rfind(b"\n") + 1
                if cut == 0:
                    continue  # no newline yet: all of it may be one torn line
                tail, torn_dropped = tail[:cut], True
            while True:
                j = tail.rfind(b"\n", 0, len(tail) - 1)  # the newline that ends the line before the last
                if j < 0:
                    break
                yield pos + j + 1, tail[j + 1 :]
                tail = tail[: j + 1]
            if pos == 0 and tail and torn_dropped:
                yield 0, tail


def last_checkpoint(path: Path) -> tuple[int, int, dict[str, Any]] | None:
    """(offset, length, record) of the last usable checkpoint line of one file."""
    for offset, line in reverse_lines(path):
        if CHECKPOINT_MARK not in line:
            continue
        try:
            record = decode(line)
        except Damaged:
            continue
        if phase_of(record) is Phase.CHECKPOINT:
            return offset, len(line), record
    return None


@dataclass(slots=True)
class JournalState:
    """What start-up read: the folded memory and how much it had to read."""

    fold: MemoryFold
    checkpoint: tuple[Path, int] | None  # where the checkpoint it started from lies
    records_read: int = 0
    bytes_read: int = 0
    skipped: int = 0
    files: list[Path] = field(default_factory=list)


def read_state(path: Path, window_s: float) -> JournalState:
    """The memory a controller restarts with: the last checkpoint and every record after it."""
    files = journal_files(path)
    fold = MemoryFold(window_s)
    state = JournalState(fold, None, files=files)
    begin, start = 0, 0  # the first file to stream, and from which byte
    for i in range(len(files) - 1, -1, -1):
        found = last_checkpoint(files[i])
        if found is None:
            continue
        offset, length, record = found
        try:
            fold.restore_checkpoint(record)
        except Damaged as exc:
            log.warning("journal %s: checkpoint at byte %d unusable (%s); reading it all", files[i], offset, exc)
            break
        state.checkpoint = (files[i], offset)
        begin, start = i, offset + length
        break
    skipped = Skipped()
    for i in range(begin, len(files)):
        first = start if i == begin else 0
        state.bytes_read += max(0, files[i].stat().st_size - first)
        for record in records(files[i], first, skipped):
            state.records_read += 1
            try:
                fold.add(record)
            except Damaged as exc:
                skipped.damaged(files[i], f"the record at_s={record.get('at_s')!r}", str(exc))
    skipped.summarise(f"reading {path} at start-up")
    state.skipped = skipped.count
    fold.settle()
    return state
