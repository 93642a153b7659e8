"""Reading trace files row by row: lines (UTF-8, ``.gz``), headers, bounded fields, bad-row tallies,
and the last step every reader shares (sort stably by arrival, build the :class:`RequestTrace`).

Shared by the trace readers (:mod:`heteroscale.sim.trace_formats`) and the rate-curve reader
(:mod:`heteroscale.sim.loadgen`). A bad row raises :class:`RowProblem` inside a reader, which turns it
into a :class:`~heteroscale.errors.TraceError` naming ``<file>:<line>`` or, when skipping, a count.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np

from heteroscale.errors import TraceError
from heteroscale.sim.request_trace import FloatArray, IntArray, RequestTrace

logger = logging.getLogger(__name__)
Row = TypeVar("Row")

# Sanity bounds on one row: anything beyond them is a corrupt row, not a request (the longest context
# windows hold a few million tokens; 10^11 s is over 3,000 years, so epoch seconds still fit).
MAX_TOKENS = 10_000_000
MAX_SECONDS = 1e11
_MAX_DIGITS = 20  # more digits than any bound above; int() of a longer string can be slow or refused
_SHOWN_CHARS = 40
# a header that does not match is not echoed: the file may be anything readable (a scenario's trace:
# can point at any path), and its first line is none of our business
NOT_HEADER = "the first non-blank line is something else (not shown)"


class RowProblem(Exception):
    """One row is malformed. Internal: readers turn it into a TraceError or a skipped row."""


class BadRowTally:
    """Raise on a bad row, or count it when skipping (shared with ``loadgen``)."""

    __slots__ = ("file", "skip", "skipped")

    def __init__(self, file: str, skip: bool) -> None:
        self.file = file
        self.skip = skip
        self.skipped = 0

    def reject(self, line_no: int, problem: str) -> None:
        if not self.skip:
            raise TraceError(f"{self.file}:{line_no}: {problem}")
        self.skipped += 1

    def report(self) -> None:
        if self.skipped:
            logger.warning("%s: skipped %d bad rows", self.file, self.skipped)


def read_lines(path: str | os.PathLike[str], skip_bad_rows: bool) -> list[str | None]:
    """The file's lines (``\\n``-split; ``\\r`` is left for field parsing to strip).

    ``None`` marks a line that is not valid UTF-8 (only when skipping; otherwise it raises).
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as handle:
            data = handle.read()
        if file.endswith(".gz"):
            data = gzip.decompress(data)
    except FileNotFoundError as exc:
        raise TraceError(f"{file}: no such file") from exc
    except (OSError, EOFError) as exc:  # directories, permissions, corrupt gzip
        raise TraceError(f"{file}: cannot read: {exc}") from exc
    if not data.strip():
        raise TraceError(f"{file}: empty file")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not skip_bad_rows:
            line_no = data.count(b"\n", 0, exc.start) + 1
            raise TraceError(f"{file}:{line_no}: not valid UTF-8") from exc
    else:
        whole: list[str | None] = list(text.split("\n"))
        return whole
    lines: list[str | None] = []
    for raw in data.split(b"\n"):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(None)
    return lines


def first_content_line(lines: list[str | None]) -> int:
    """Index of the first non-blank line (the header of a CSV)."""
    for index, line in enumerate(lines):
        if line is None or line.strip():
            return index
    return len(lines)


def header_matches(line: str | None, columns: tuple[str, ...]) -> bool:
    if line is None:
        return False
    cells = [cell.strip().lower() for cell in line.split(",")]
    return cells == [column.lower() for column in columns]


def parse_rows(
    lines: list[str | None], first: int, tally: BadRowTally, parse_row: Callable[[str], Row]
) -> Iterator[Row]:
    """``parse_row`` of each line from index ``first`` on, skipping blank lines; a line that is not
    UTF-8 or whose ``parse_row`` raises :class:`RowProblem` goes to ``tally`` with its line number.

    Lazy: a row is parsed when the caller asks for it, so ``parse_row`` may look at the rows kept so far.
    """
    for index in range(first, len(lines)):
        line = lines[index]
        if line is None:
            tally.reject(index + 1, "not valid UTF-8")
            continue
        if not line or line.isspace():
            continue
        try:
            row = parse_row(line)
        except RowProblem as problem:
            tally.reject(index + 1, str(problem))
            continue
        yield row


def split_cells(line: str, columns: int) -> list[str]:
    """The comma-separated cells of a CSV row that must have ``columns`` of them."""
    cells = line.split(",")
    if len(cells) != columns:
        raise RowProblem(f"expected {columns} columns, got {len(cells)}")
    return cells


def after_header(file: str, lines: list[str | None], columns: tuple[str, ...]) -> int:
    """The index of the line after the CSV header ``columns`` (the first non-blank line), or a TraceError."""
    start = first_content_line(lines)
    if start == len(lines) or not header_matches(lines[start], columns):
        raise TraceError(f"{file}:{start + 1}: missing header {','.join(columns)!r}; {NOT_HEADER}")
    return start + 1


def shown(value: object) -> str:
    """``repr(value)``, cut to a few dozen characters: a message names a bad cell without echoing a
    whole line of whatever file it came from."""
    if isinstance(value, int) and value.bit_length() > 64:  # repr of a huge int is slow, or refused
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 5]}… ({len(text)} chars)"


def parse_count(text: str, column: str, minimum: int = 1) -> int:
    """A decimal integer ≥ ``minimum`` (ASCII digits only: no signs, spaces inside, or ``_``)."""
    value = text.strip()
    digits = value[1:] if value[:1] == "-" else value
    if not (digits.isascii() and digits.isdigit()):
        raise RowProblem(f"{column}: not an integer: {shown(value)}")
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise RowProblem(f"{column}: not a plausible count: an integer of {len(digits.lstrip('0'))} digits")
    number = -int(digits) if value[:1] == "-" else int(digits)
    if number < minimum:
        raise RowProblem(f"{column} must be ≥ {minimum}, got {number}")
    if number > MAX_TOKENS:
        raise RowProblem(f"{column}: implausibly large: {number} (limit {MAX_TOKENS})")
    return number


def parse_number(text: str, column: str, minimum: float = 0.0, maximum: float = MAX_SECONDS) -> float:
    """A finite decimal number in [``minimum``, ``maximum``]."""
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        raise RowProblem(f"{column}: not a number: {shown(value)}") from None
    if "_" in value or not math.isfinite(number):
        raise RowProblem(f"{column}: not a finite number: {shown(value)}")
    if number < minimum:
        raise RowProblem(f"{column} must be ≥ {minimum:g}, got {number:g}")
    if number > maximum:
        raise RowProblem(f"{column}: implausibly large: {number:g} (limit {maximum:g})")
    return number


def note_disorder(file: str, arrival: FloatArray) -> None:
    if arrival.shape[0] > 1:
        backwards = int((arrival[1:] < arrival[:-1]).sum())
        if backwards:
            logger.warning("%s: %d rows arrive before the row above them; sorted by time", file, backwards)


def trace_name(file: str) -> str:
    base = os.path.basename(file)
    if base.endswith(".gz"):
        base = base[:-3]
    return os.path.splitext(base)[0] or base


def finish_trace(
    file: str,
    name: str | None,
    arrival: FloatArray,
    inp: list[int],
    out: list[int],
    cached: IntArray | None,
    tally: BadRowTally,
    failed_rows_excluded: int = 0,
    presorted: bool = False,
) -> RequestTrace:
    """Sort stably by arrival and build the trace."""
    if arrival.shape[0] == 0:
        raise TraceError(f"{file}: no requests (bad rows skipped: {tally.skipped})")
    tally.report()
    inp_arr = np.asarray(inp, dtype=np.int64)
    out_arr = np.asarray(out, dtype=np.int64)
    if not presorted:
        note_disorder(file, arrival)
        order = np.argsort(arrival, kind="stable")
        arrival, inp_arr, out_arr = arrival[order], inp_arr[order], out_arr[order]
    return RequestTrace(
        name=name if name is not None else trace_name(file),
        arrival_s=arrival,
        input_tokens=inp_arr,
        output_tokens=out_arr,
        cached_tokens=cached,
        skipped_rows=tally.skipped,
        failed_rows_excluded=failed_rows_excluded,
    )
