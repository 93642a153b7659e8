"""Request traces: a columnar value type and readers for the public trace formats.

A :class:`RequestTrace` holds one numpy array per column (arrival time, input tokens, output tokens,
optionally prefix-cache hit tokens), so the simulator can replay hundreds of thousands of requests
without a Python object per request. Arrays are shared, not copied, between derived traces: treat
them as read-only.

Formats (``read_trace`` picks one from the extension, then the header):

* Azure LLM inference 2023/2024 CSV, ``TIMESTAMP,ContextTokens,GeneratedTokens``; TIMESTAMP is a
  wall-clock string such as ``2023-11-16 18:17:03.9799600``. It is parsed exactly (integer
  nanoseconds; up to 9 fractional digits; an optional ``Z`` / ``±HH:MM`` suffix is honoured), and
  the arrival is the time since the earliest row (the first row of a sorted file).
* Mooncake JSONL, ``{"timestamp": ms, "input_length", "output_length", "hash_ids": [...]}``.
  Arrival = timestamp / 1000 (not rebased). ``cached_tokens`` comes from the prefix blocks, see
  :func:`read_mooncake`.
* BurstGPT CSV, ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``; seconds
  from the start (not rebased). Failed requests (0 response tokens) are left out and counted in
  ``failed_rows_excluded``, see :func:`read_burstgpt`.

Rows are sorted by arrival with a stable sort (repeated timestamps replay in file order); rows that
were out of order in the file are reported in the log. Plain CSV without quoted fields; ``.gz``
files are decompressed. Blank lines are ignored.

Rate curves and synthetic load (``RateCurve``, ``read_rate_curve``, ``generate_poisson``,
``superpose``, ``merge``) live in :mod:`heteroscale.sim.loadgen` and are re-exported here.

Errors: bad data raises :class:`~heteroscale.errors.TraceError` with ``"<file>:<line>: <problem>"``
(1-based line numbers, as an editor shows them) or ``"<file>: <problem>"`` for the whole file; with
``skip_bad_rows=True`` bad rows are skipped and counted in ``skipped_rows`` instead. Bad arguments
(a non-positive compression, an unknown format name) raise :class:`~heteroscale.errors.ConfigError`.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from heteroscale.errors import ConfigError, TraceError
from heteroscale.sim.loadgen import RateCurve, generate_poisson, merge, read_rate_curve, superpose

__all__ = [  # the trace layer's public API; rate curves and synthetic load live in loadgen
    "FORMATS",
    "RateCurve",
    "RequestTrace",
    "bundled_trace_path",
    "generate_poisson",
    "merge",
    "read_azure",
    "read_burstgpt",
    "read_mooncake",
    "read_rate_curve",
    "read_trace",
    "superpose",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FORMATS = ("auto", "azure", "mooncake", "burstgpt")
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
BURSTGPT_COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
_JSONL_EXTENSIONS = (".jsonl", ".json", ".ndjson")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NS_PER_DAY = 86_400 * 10**9
# Sanity bounds on one row: anything beyond them is a corrupt row, not a request (the longest context
# windows hold a few million tokens; 10^11 s is over 3,000 years, so epoch seconds still fit).
MAX_TOKENS = 10_000_000
MAX_SECONDS = 1e11
_MAX_DIGITS = 20  # more digits than any bound above; int() of a longer string can be slow or refused
MAX_JSON_DEPTH = 32  # a Mooncake row nests 2 levels; Python's json recurses once per level
_SHOWN_CHARS = 40
# a header that does not match is not echoed: the file may be anything readable (a scenario's trace:
# can point at any path), and its first line is none of our business
NOT_HEADER = "the first non-blank line is something else (not shown)"


@dataclass(frozen=True, slots=True, eq=False)
class RequestTrace:
    """Requests as parallel columns, sorted by arrival (stable).

    ``eq=False``: equality is identity (comparing arrays element-wise has no single truth value);
    compare the columns with ``numpy.array_equal``.
    """

    name: str
    arrival_s: FloatArray  # float64, ascending, relative seconds
    input_tokens: IntArray  # int64 ≥ 1
    output_tokens: IntArray  # int64 ≥ 1
    cached_tokens: IntArray | None  # int64 in [0, input_tokens − 1]: prefix-cache hits; None = unknown
    skipped_rows: int = 0  # bad rows skipped under skip_bad_rows
    failed_rows_excluded: int = 0  # BurstGPT failed requests (0 response tokens) left out

    def __post_init__(self) -> None:
        arrival = np.ascontiguousarray(self.arrival_s, dtype=np.float64)
        inp = np.ascontiguousarray(self.input_tokens, dtype=np.int64)
        out = np.ascontiguousarray(self.output_tokens, dtype=np.int64)
        object.__setattr__(self, "arrival_s", arrival)
        object.__setattr__(self, "input_tokens", inp)
        object.__setattr__(self, "output_tokens", out)
        n = arrival.shape[0]
        if arrival.ndim != 1 or inp.shape != (n,) or out.shape != (n,):
            raise TraceError(f"{self.name}: columns must be 1-D and of equal length")
        if n and not bool(np.isfinite(arrival).all()):
            raise TraceError(f"{self.name}: arrival_s holds a non-finite value")
        if n > 1 and not bool((arrival[1:] >= arrival[:-1]).all()):
            raise TraceError(f"{self.name}: arrival_s is not sorted ascending")
        if n and (int(inp.min()) < 1 or int(out.min()) < 1):
            raise TraceError(f"{self.name}: token counts must be ≥ 1")
        if self.cached_tokens is not None:
            cached = np.ascontiguousarray(self.cached_tokens, dtype=np.int64)
            object.__setattr__(self, "cached_tokens", cached)
            if cached.shape != (n,):
                raise TraceError(f"{self.name}: cached_tokens must match the other columns")
            if n and (int(cached.min()) < 0 or bool((cached >= inp).any())):
                raise TraceError(f"{self.name}: cached_tokens must lie in [0, input_tokens - 1]")

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def duration_s(self) -> float:
        """Last arrival minus first arrival (0.0 for fewer than two requests)."""
        if self.arrival_s.shape[0] < 2:
            return 0.0
        return float(self.arrival_s[-1] - self.arrival_s[0])

    @property
    def mean_rps(self) -> float:
        """Requests per second over ``duration_s`` (0.0 when the span is zero)."""
        span_s = self.duration_s
        return len(self) / span_s if span_s > 0 else 0.0

    def slice_time(self, start_s: float, end_s: float, rebase: bool = True) -> RequestTrace:
        """Requests with ``start_s <= arrival < end_s``; ``rebase`` subtracts ``start_s``."""
        if not (math.isfinite(start_s) and not math.isnan(end_s) and end_s >= start_s):
            raise ConfigError(f"{self.name}: bad time slice [{start_s}, {end_s})")
        lo = int(np.searchsorted(self.arrival_s, start_s, side="left"))
        hi = int(np.searchsorted(self.arrival_s, end_s, side="left"))
        arrival = self.arrival_s[lo:hi]
        return RequestTrace(
            name=f"{self.name}[{start_s:g}:{end_s:g}]",
            arrival_s=arrival - start_s if rebase else arrival,
            input_tokens=self.input_tokens[lo:hi],
            output_tokens=self.output_tokens[lo:hi],
            cached_tokens=None if self.cached_tokens is None else self.cached_tokens[lo:hi],
            skipped_rows=self.skipped_rows,
            failed_rows_excluded=self.failed_rows_excluded,
        )

    def scale_time(self, compression: float) -> RequestTrace:
        """Divide every arrival by ``compression`` (> 1 plays the trace faster)."""
        if not (math.isfinite(compression) and compression > 0):
            raise ConfigError(f"{self.name}: time compression must be a positive number, got {compression}")
        return RequestTrace(
            name=self.name if compression == 1 else f"{self.name}/{compression:g}",
            arrival_s=self.arrival_s / compression,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_tokens=self.cached_tokens,
            skipped_rows=self.skipped_rows,
            failed_rows_excluded=self.failed_rows_excluded,
        )


# ---------------------------------------------------------------- reading files, rows and fields


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


def _note_disorder(file: str, arrival: FloatArray) -> None:
    if arrival.shape[0] > 1:
        backwards = int((arrival[1:] < arrival[:-1]).sum())
        if backwards:
            logger.warning("%s: %d rows arrive before the row above them; sorted by time", file, backwards)


def _trace_name(file: str) -> str:
    base = os.path.basename(file)
    if base.endswith(".gz"):
        base = base[:-3]
    return os.path.splitext(base)[0] or base


def _finish(
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
        _note_disorder(file, arrival)
        order = np.argsort(arrival, kind="stable")
        arrival, inp_arr, out_arr = arrival[order], inp_arr[order], out_arr[order]
    return RequestTrace(
        name=name if name is not None else _trace_name(file),
        arrival_s=arrival,
        input_tokens=inp_arr,
        output_tokens=out_arr,
        cached_tokens=cached,
        skipped_rows=tally.skipped,
        failed_rows_excluded=failed_rows_excluded,
    )


# ---------------------------------------------------------------- Azure


def _wallclock_ns(text: str, day_cache: dict[str, int]) -> int:
    """``YYYY-MM-DD[ T]hh:mm:ss[.f{1,9}][Z|±hh:mm]`` → integer ns since 1970 (exact)."""
    value = text.strip()
    date_part, time_part = value[:10], value[11:]
    if len(value) < 19 or value[10] not in " T":
        raise RowProblem(f"TIMESTAMP: cannot parse {value!r}")
    offset_ns = 0
    if time_part.endswith("Z"):
        time_part = time_part[:-1]
    elif len(time_part) > 8 and time_part[-6] in "+-" and time_part[-3] == ":":
        hours, minutes = time_part[-5:-3], time_part[-2:]
        if not (hours.isascii() and hours.isdigit() and minutes.isascii() and minutes.isdigit()):
            raise RowProblem(f"TIMESTAMP: cannot parse {value!r}")
        offset_ns = (int(hours) * 3600 + int(minutes) * 60) * 10**9 * (1 if time_part[-6] == "+" else -1)
        time_part = time_part[:-6]
    day = day_cache.get(date_part)
    if day is None:
        fields = date_part.split("-")
        try:
            if len(fields) != 3 or not all(f.isascii() and f.isdigit() for f in fields):
                raise ValueError(date_part)
            day = date(int(fields[0]), int(fields[1]), int(fields[2])).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            raise RowProblem(f"TIMESTAMP: bad date in {value!r}") from None
        day_cache[date_part] = day
    clock = time_part.split(":")
    seconds, _, fraction = clock[-1].partition(".")
    if (
        len(clock) != 3
        or len(clock[0]) != 2
        or len(clock[1]) != 2
        or len(seconds) != 2
        or not (clock[0] + clock[1] + seconds + fraction).isdigit()
        or not (clock[0] + clock[1] + seconds + fraction).isascii()
        or len(fraction) > 9
        or (not fraction and "." in clock[-1])
    ):
        raise RowProblem(f"TIMESTAMP: cannot parse {value!r}")
    hour, minute, second = int(clock[0]), int(clock[1]), int(seconds)
    if hour > 23 or minute > 59 or second > 60:
        raise RowProblem(f"TIMESTAMP: time out of range in {value!r}")
    frac_ns = int(fraction.ljust(9, "0")) if fraction else 0
    return day * _NS_PER_DAY + (hour * 3600 + minute * 60 + second) * 10**9 + frac_ns - offset_ns


def _parse_azure(file: str, lines: list[str | None], tally: BadRowTally, name: str | None) -> RequestTrace:
    start = first_content_line(lines)
    if start == len(lines) or not header_matches(lines[start], AZURE_COLUMNS):
        raise TraceError(f"{file}:{start + 1}: missing header {','.join(AZURE_COLUMNS)!r}; {NOT_HEADER}")
    stamps_ns: list[int] = []
    inp: list[int] = []
    out: list[int] = []
    day_cache: dict[str, int] = {}
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if line is None:
            tally.reject(index + 1, "not valid UTF-8")
            continue
        if not line or line.isspace():
            continue
        cells = line.split(",")
        try:
            if len(cells) != 3:
                raise RowProblem(f"expected 3 columns, got {len(cells)}")
            stamp = _wallclock_ns(cells[0], day_cache)
            n_in = parse_count(cells[1], "ContextTokens")
            n_out = parse_count(cells[2], "GeneratedTokens")
        except RowProblem as problem:
            tally.reject(index + 1, str(problem))
            continue
        stamps_ns.append(stamp)
        inp.append(n_in)
        out.append(n_out)
    first_ns = min(stamps_ns, default=0)  # exact integer arithmetic, then one correct rounding
    arrival = np.asarray([(stamp - first_ns) / 10**9 for stamp in stamps_ns], dtype=np.float64)
    return _finish(file, name, arrival, inp, out, None, tally)


def read_azure(path: str | os.PathLike[str], *, skip_bad_rows: bool = False, name: str | None = None) -> RequestTrace:
    """Azure LLM inference trace (2023 or 2024 CSV); arrival = seconds since the earliest row."""
    file = os.fspath(path)
    tally = BadRowTally(file, skip_bad_rows)
    return _parse_azure(file, read_lines(file, skip_bad_rows), tally, name)


# ---------------------------------------------------------------- Mooncake


def _json_int(record: dict[str, Any], key: str, minimum: int) -> int:
    if key not in record:
        raise RowProblem(f"missing {key!r}")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowProblem(f"{key}: not an integer: {shown(value)}")
    if value < minimum:
        raise RowProblem(f"{key} must be ≥ {minimum}, got {shown(value)}")
    if value > MAX_TOKENS:
        raise RowProblem(f"{key}: implausibly large: {shown(value)} (limit {MAX_TOKENS})")
    return value


def _json_row(line: str) -> Any:
    """One JSONL row parsed, or a RowProblem (bad syntax, nesting too deep, a number too long)."""
    if line.count("[") + line.count("{") > MAX_JSON_DEPTH and _json_depth(line) > MAX_JSON_DEPTH:
        raise RowProblem(f"invalid JSON: nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise RowProblem(f"invalid JSON: {exc.msg}") from None
    except ValueError:  # an integer of thousands of digits, refused by int()
        raise RowProblem("invalid JSON: a number with too many digits") from None


def _json_depth(line: str) -> int:
    """The deepest nesting of ``[`` / ``{`` outside strings (only run on lines with many brackets)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in line:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _parse_mooncake(
    file: str, lines: list[str | None], tally: BadRowTally, name: str | None, block_tokens: int
) -> RequestTrace:
    stamps_ms: list[float] = []
    inp: list[int] = []
    out: list[int] = []
    blocks: list[list[int] | None] = []
    for index, line in enumerate(lines):
        if line is None:
            tally.reject(index + 1, "not valid UTF-8")
            continue
        if not line or line.isspace():
            continue
        try:
            record = _json_row(line)
            if not isinstance(record, dict):
                raise RowProblem("expected a JSON object")
            if "timestamp" not in record:
                raise RowProblem("missing 'timestamp'")
            stamp = record["timestamp"]
            if isinstance(stamp, bool) or not isinstance(stamp, int | float):
                raise RowProblem(f"timestamp: not a number: {shown(stamp)}")
            try:
                stamp_ms = float(stamp)
            except OverflowError:
                raise RowProblem(f"timestamp: too large: {shown(stamp)}") from None
            if not math.isfinite(stamp_ms) or stamp_ms < 0:
                raise RowProblem(f"timestamp must be a finite number ≥ 0, got {shown(stamp)}")
            if stamp_ms > MAX_SECONDS * 1000.0:
                raise RowProblem(f"timestamp: implausibly large: {stamp_ms:g} ms (limit {MAX_SECONDS * 1000.0:g})")
            n_in = _json_int(record, "input_length", 1)
            n_out = _json_int(record, "output_length", 1)
            ids = record.get("hash_ids")
            if ids is not None and (
                not isinstance(ids, list) or not all(type(i) is int for i in ids)  # bools are not ids
            ):
                raise RowProblem("hash_ids: expected a list of integers")
        except RowProblem as problem:
            tally.reject(index + 1, str(problem))
            continue
        stamps_ms.append(stamp_ms)
        inp.append(n_in)
        out.append(n_out)
        blocks.append(ids)
    arrival = np.asarray(stamps_ms, dtype=np.float64) / 1000.0
    _note_disorder(file, arrival)
    order = np.argsort(arrival, kind="stable")
    cached: IntArray | None = None
    if any(ids is not None for ids in blocks):
        seen: set[int] = set()
        hits = np.zeros(len(blocks), dtype=np.int64)
        for position, row in enumerate(order.tolist()):
            ids = blocks[row]
            if not ids:
                continue
            reused = 0
            while reused < len(ids) and ids[reused] in seen:
                reused += 1
            seen.update(ids)
            hits[position] = min(reused * block_tokens, inp[row] - 1)
        cached = hits
    sorted_inp = [inp[row] for row in order.tolist()]
    sorted_out = [out[row] for row in order.tolist()]
    return _finish(file, name, arrival[order], sorted_inp, sorted_out, cached, tally, presorted=True)


def read_mooncake(
    path: str | os.PathLike[str],
    *,
    skip_bad_rows: bool = False,
    name: str | None = None,
    block_tokens: int = 512,
) -> RequestTrace:
    """Mooncake JSONL trace; arrival = ``timestamp`` ms / 1000, replayed stably in file order.

    ``cached_tokens`` models an infinite prefix cache shared by the whole service: walking the
    requests in arrival order, a request hits the longest prefix of its ``hash_ids`` whose blocks all
    appeared in earlier requests (any earlier request, never evicted); hits = blocks × ``block_tokens``,
    capped at ``input_length − 1`` (at least one token is computed). A row without ``hash_ids`` hits
    nothing and adds nothing; when no row has ``hash_ids``, ``cached_tokens`` is None.
    """
    if isinstance(block_tokens, bool) or not isinstance(block_tokens, int) or block_tokens < 1:
        raise ConfigError(f"block_tokens must be a positive integer, got {block_tokens!r}")
    file = os.fspath(path)
    tally = BadRowTally(file, skip_bad_rows)
    return _parse_mooncake(file, read_lines(file, skip_bad_rows), tally, name, block_tokens)


# ---------------------------------------------------------------- BurstGPT


def _parse_burstgpt(
    file: str, lines: list[str | None], tally: BadRowTally, name: str | None, include_failed: bool
) -> RequestTrace:
    start = first_content_line(lines)
    if start == len(lines) or not header_matches(lines[start], BURSTGPT_COLUMNS):
        raise TraceError(f"{file}:{start + 1}: missing header {','.join(BURSTGPT_COLUMNS)!r}; {NOT_HEADER}")
    stamps: list[float] = []
    inp: list[int] = []
    out: list[int] = []
    failed = 0
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if line is None:
            tally.reject(index + 1, "not valid UTF-8")
            continue
        if not line or line.isspace():
            continue
        cells = line.split(",")
        try:
            if len(cells) != 6:
                raise RowProblem(f"expected 6 columns, got {len(cells)}")
            stamp = parse_number(cells[0], "Timestamp")
            n_out = parse_count(cells[3], "Response tokens", minimum=0)
            is_failed = n_out == 0
            n_in = parse_count(cells[2], "Request tokens", minimum=0 if is_failed and not include_failed else 1)
        except RowProblem as problem:
            tally.reject(index + 1, str(problem))
            continue
        if is_failed:
            if not include_failed:
                failed += 1
                continue
            n_out = 1  # a failed request still costs its prefill: it stops after the first token
        stamps.append(stamp)
        inp.append(n_in)
        out.append(n_out)
    if failed:
        logger.info("%s: left out %d failed requests (0 response tokens)", file, failed)
    arrival = np.asarray(stamps, dtype=np.float64)
    return _finish(file, name, arrival, inp, out, None, tally, failed_rows_excluded=failed)


def read_burstgpt(
    path: str | os.PathLike[str],
    *,
    skip_bad_rows: bool = False,
    name: str | None = None,
    include_failed: bool = False,
) -> RequestTrace:
    """BurstGPT CSV; arrival = ``Timestamp`` seconds (not rebased).

    Failed requests (``Response tokens`` = 0) are not malformed: by default they are left out and
    counted in ``failed_rows_excluded`` (not in ``skipped_rows``). With ``include_failed=True`` they
    are replayed with ``output_tokens = 1`` (the columns keep the ≥ 1 invariant; the request costs
    its prefill and stops), and ``failed_rows_excluded`` is 0.
    """
    file = os.fspath(path)
    tally = BadRowTally(file, skip_bad_rows)
    return _parse_burstgpt(file, read_lines(file, skip_bad_rows), tally, name, include_failed)


# ---------------------------------------------------------------- dispatch and bundled data


def _detect(file: str, lines: list[str | None]) -> str:
    stem = file[:-3] if file.endswith(".gz") else file
    if stem.lower().endswith(_JSONL_EXTENSIONS):
        return "mooncake"
    start = first_content_line(lines)
    head = lines[start] if start < len(lines) else None
    if head is None:
        raise TraceError(f"{file}:{start + 1}: cannot detect the trace format")
    if head.lstrip().startswith("{"):
        return "mooncake"
    if header_matches(head, AZURE_COLUMNS):
        return "azure"
    if header_matches(head, BURSTGPT_COLUMNS):
        return "burstgpt"
    if head.strip().lower().startswith("window_start_s,"):
        raise TraceError(f"{file}: this is a rate curve, not a request trace (read it with read_rate_curve)")
    raise TraceError(
        f"{file}:{start + 1}: unknown trace format: this line is not an Azure "
        f"{','.join(AZURE_COLUMNS)!r} or BurstGPT {','.join(BURSTGPT_COLUMNS)!r} header, nor a Mooncake JSONL row"
    )


def read_trace(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    skip_bad_rows: bool = False,
    name: str | None = None,
) -> RequestTrace:
    """Read a request trace; ``fmt`` is ``auto`` (extension, then header), azure, mooncake or burstgpt.

    Mooncake uses 512-token blocks and BurstGPT leaves failed requests out; call the format's
    reader for other choices.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown trace format {fmt!r}; expected one of {', '.join(FORMATS)}")
    file = os.fspath(path)
    lines = read_lines(file, skip_bad_rows)
    kind = _detect(file, lines) if fmt == "auto" else fmt
    tally = BadRowTally(file, skip_bad_rows)
    if kind == "azure":
        return _parse_azure(file, lines, tally, name)
    if kind == "mooncake":
        return _parse_mooncake(file, lines, tally, name, block_tokens=512)
    return _parse_burstgpt(file, lines, tally, name, include_failed=False)


def bundled_trace_path(filename: str) -> str:
    """Filesystem path of a file shipped in ``heteroscale/data/traces`` (see LICENSES.md there).

    Uses ``importlib.resources``, so it works from a source tree and from an installed wheel (wheels
    install unzipped; a zip-imported package has no filesystem path).
    """
    if not filename or filename in (".", "..") or "/" in filename or "\\" in filename:
        raise ConfigError(f"bundled trace name must be a plain file name, got {filename!r}")
    folder = resources.files("heteroscale") / "data" / "traces"
    entry = folder / filename
    if not entry.is_file():
        available = sorted(item.name for item in folder.iterdir() if item.is_file()) if folder.is_dir() else []
        raise TraceError(f"{filename}: no such bundled trace; available: {', '.join(available) or 'none'}")
    return str(entry)
