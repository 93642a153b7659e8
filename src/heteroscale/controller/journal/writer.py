"""Writing the journal: :class:`Journal` (simulator, tests) and :class:`DurableJournal` (live).

The Controller calls ``new_id``, then ``intend`` before it asks the actuator to act, then ``conclude``
with the outcome (:mod:`.records` has the line shapes). A write that fails raises
:class:`~heteroscale.errors.JournalUnwritable` from the ``OSError``; the Controller then does not act
(a failed intent) or logs and carries on (a failed outcome: the action already happened).

:class:`DurableJournal` makes every line durable (``write`` + ``fsync``) before returning; a write cut
short (disk full, ``EFBIG``) is truncated away so the file never holds a torn line, and opening it
drops a torn last line left by a kill. It writes a checkpoint (:mod:`.fold`) when opened, every
``checkpoint_every`` records or ``checkpoint_interval_s`` of record time, and at the head of every new
file: when the file reaches ``max_bytes`` it becomes ``<name>.1`` (older ones shift to ``.2`` …, at
most ``keep_files`` kept) and a new file starts. Checkpoints and rotation happen only after an
outcome, never between an intent and its outcome.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from heteroscale.controller.journal.fold import MemoryFold
from heteroscale.controller.journal.records import Phase, checkpoint_line, decision_line, encode
from heteroscale.domain.decision import DecisionRecord
from heteroscale.errors import JournalUnwritable

log = logging.getLogger(__name__)

TAIL_BLOCK_BYTES = 64 * 1024


class Journal:
    """Writes the journal's lines to ``path`` (if given, unsynced); keeps the DecisionRecords in memory
    if asked. ``count`` is the number of decisions concluded."""

    def __init__(self, path: Path | None = None, keep: bool = False) -> None:
        self._stream: IO[bytes] | None = path.open("ab") if path is not None else None
        self.keep = keep
        self.records: list[DecisionRecord] = []
        self.count = 0
        self._seq = 0
        self.writable = True  # the last write succeeded
        self.errors = 0  # writes that failed
        self.last_error: str | None = None

    def new_id(self, service: str, at_s: float) -> str:
        """The next decision's id: ``<service>@<at_s>#<n>``, ``n`` counted from 1 by this writer."""
        self._seq += 1
        return f"{service}@{at_s:.3f}#{self._seq}"

    def intend(self, record: DecisionRecord, decision_id: str) -> None:
        """Record the decision before acting on it; :class:`JournalUnwritable` means: do not act."""
        if self._lines_wanted():
            line = decision_line(record, decision_id, Phase.INTENT, applied=False)
            self._write(line)
            self._folded(line)

    def conclude(self, record: DecisionRecord, decision_id: str, applied: bool) -> None:
        """Record the decision's outcome (``applied``: whether anything reached the cluster)."""
        self.count += 1
        if self.keep:
            self.records.append(record)
        if not self._lines_wanted():
            return
        line = decision_line(record, decision_id, Phase.OUTCOME, applied=applied)
        try:
            self._write(line)
        finally:
            self._folded(line)  # the action happened whether or not its outcome reached the disk
        self._after_outcome(record.at_s)

    @property
    def reads_records(self) -> bool:
        """Whether anything reads the records' contents (a file, the kept list, a durable journal)."""
        return self.keep or self._lines_wanted()

    def _lines_wanted(self) -> bool:
        return self._stream is not None

    def _write(self, line: dict[str, Any]) -> None:
        try:
            self._emit(encode(line))
        except OSError as exc:
            self.writable = False
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise JournalUnwritable(f"journal: {self.last_error}") from exc
        self.writable = True
        self.last_error = None

    def _emit(self, data: bytes) -> None:
        if self._stream is not None:
            self._stream.write(data)

    def _folded(self, line: dict[str, Any]) -> None:
        """A line the journal now stands for (the durable journal folds it into its memory)."""

    def _after_outcome(self, at_s: float) -> None:
        """After each outcome (the durable journal checkpoints and rotates here)."""

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


@dataclass(frozen=True, slots=True)
class JournalSettings:
    max_bytes: int = 64 * 1024 * 1024  # rotate when the file reaches this
    keep_files: int = 3  # rotated files kept beside the current one
    checkpoint_every: int = 100  # records between checkpoints
    checkpoint_interval_s: float = 600.0  # record time between checkpoints
    window_s: float = 600.0  # raw recommendations kept for stabilisation windows

    def __post_init__(self) -> None:
        if self.max_bytes < 4096 or self.keep_files < 0 or self.checkpoint_every < 1:
            raise ValueError("journal: max_bytes ≥ 4096, keep_files ≥ 0 and checkpoint_every ≥ 1 are needed")
        if self.checkpoint_interval_s <= 0 or self.window_s < 0:
            raise ValueError("journal: checkpoint_interval_s must be > 0 and window_s ≥ 0")


def rotated(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def drop_torn_tail(path: Path) -> int:
    """Truncate a last line that has no newline (a record cut by a kill mid-write was never complete,
    so it was never acted on as written); returns the bytes dropped. Reads backwards in blocks."""
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - TAIL_BLOCK_BYTES)
            fh.seek(start)
            block = fh.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            fh.truncate(keep)
        return size - keep


class DurableJournal(Journal):
    """The live journal: durable lines, checkpoints and rotation (see the module doc)."""

    def __init__(self, path: Path, settings: JournalSettings, fold: MemoryFold) -> None:
        super().__init__(None)
        self.path = path
        self.settings = settings
        self.fold = fold
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = drop_torn_tail(path) if path.exists() else 0
        if self.repaired_bytes:
            log.warning("journal %s: dropped a torn last record of %d bytes", path, self.repaired_bytes)
        self._closed = False
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._since_checkpoint = 0
        self._checkpoint_at_s: float | None = None
        self.checkpoints = 0
        self.rotations = 0

    def _emit(self, data: bytes) -> None:
        if self._fd < 0 and not self._closed:
            self._reopen()  # a rotation that could not reopen the file: try again
        if self._fd < 0:
            raise OSError(f"{self.path} is not open")
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            self._sync()
        except OSError:
            self._truncate_to_last_line()
            raise
        self._size += len(data)
        self._since_checkpoint += 1

    def _sync(self) -> None:
        os.fsync(self._fd)

    def _truncate_to_last_line(self) -> None:
        """Take a partly written line back out (best effort: a torn tail is also dropped at open)."""
        try:
            if os.fstat(self._fd).st_size > self._size:
                os.ftruncate(self._fd, self._size)
        except OSError as exc:
            log.warning("journal %s: could not truncate a partial line: %s", self.path, exc)

    def _lines_wanted(self) -> bool:
        return True

    def _folded(self, line: dict[str, Any]) -> None:
        self.fold.add(line)

    def _after_outcome(self, at_s: float) -> None:
        s = self.settings
        try:
            if self._size >= s.max_bytes:
                self.rotate(at_s)
            elif self._since_checkpoint >= s.checkpoint_every or (
                self._checkpoint_at_s is not None and at_s - self._checkpoint_at_s >= s.checkpoint_interval_s
            ):
                self.checkpoint(at_s)
        except JournalUnwritable as exc:  # the decision is recorded; the next outcome tries again
            log.warning("journal %s: checkpoint not written: %s", self.path, exc)

    def checkpoint(self, at_s: float) -> None:
        """Write a checkpoint now (:class:`JournalUnwritable` if it cannot be)."""
        self._write(checkpoint_line(at_s, self.fold.checkpoint()))
        self._since_checkpoint = 0
        self._checkpoint_at_s = at_s
        self.checkpoints += 1

    def rotate(self, at_s: float) -> None:
        """Start a new file (module doc); the new one opens with a checkpoint."""
        s = self.settings
        try:
            oldest = rotated(self.path, s.keep_files) if s.keep_files > 0 else self.path
            if s.keep_files > 0 and oldest.exists():
                oldest.unlink()
            for n in range(s.keep_files - 1, 0, -1):
                if rotated(self.path, n).exists():
                    rotated(self.path, n).rename(rotated(self.path, n + 1))
            os.close(self._fd)
            self._fd = -1
            if s.keep_files > 0:
                self.path.rename(rotated(self.path, 1))
            else:
                self.path.unlink()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = 0
            _sync_dir(self.path.parent)
        except OSError as exc:
            self.errors += 1
            self.last_error = f"rotation: {type(exc).__name__}: {exc}"
            log.warning("journal %s: rotation failed (%s); writing on", self.path, exc)
            if self._fd < 0:
                self._reopen()
            return
        self.rotations += 1
        self.checkpoint(at_s)

    def _reopen(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:  # the next write fails and says so (journal-unwritable holds)
            log.warning("journal %s: cannot reopen: %s", self.path, exc)

    def close(self) -> None:
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _sync_dir(directory: Path) -> None:
    """Make a rename durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
