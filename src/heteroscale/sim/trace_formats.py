"""Readers of the public trace formats: Azure LLM inference CSV, Mooncake JSONL, BurstGPT CSV.

See :mod:`heteroscale.sim.traces` for what each format holds and how arrivals are derived;
:func:`heteroscale.sim.traces.read_trace` picks a reader from the extension, then the header.
"""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import date
from typing import Any

import numpy as np

from heteroscale.errors import ConfigError
from heteroscale.sim.request_trace import IntArray, RequestTrace
from heteroscale.sim.trace_rows import (
    MAX_SECONDS,
    MAX_TOKENS,
    BadRowTally,
    RowProblem,
    after_header,
    finish_trace,
    note_disorder,
    parse_count,
    parse_number,
    parse_rows,
    read_lines,
    shown,
    split_cells,
)

logger = logging.getLogger(__name__)

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
BURSTGPT_COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NS_PER_DAY = 86_400 * 10**9
MAX_JSON_DEPTH = 32  # a Mooncake row nests 2 levels; Python's json recurses once per level


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


def parse_azure(file: str, lines: list[str | None], tally: BadRowTally, name: str | None) -> RequestTrace:
    first = after_header(file, lines, AZURE_COLUMNS)
    stamps_ns: list[int] = []
    inp: list[int] = []
    out: list[int] = []
    day_cache: dict[str, int] = {}

    def parse_row(line: str) -> tuple[int, int, int]:
        cells = split_cells(line, 3)
        stamp = _wallclock_ns(cells[0], day_cache)
        return stamp, parse_count(cells[1], "ContextTokens"), parse_count(cells[2], "GeneratedTokens")

    for stamp, n_in, n_out in parse_rows(lines, first, tally, parse_row):
        stamps_ns.append(stamp)
        inp.append(n_in)
        out.append(n_out)
    first_ns = min(stamps_ns, default=0)  # exact integer arithmetic, then one correct rounding
    arrival = np.asarray([(stamp - first_ns) / 10**9 for stamp in stamps_ns], dtype=np.float64)
    return finish_trace(file, name, arrival, inp, out, None, tally)


def read_azure(path: str | os.PathLike[str], *, skip_bad_rows: bool = False, name: str | None = None) -> RequestTrace:
    """Azure LLM inference trace (2023 or 2024 CSV); arrival = seconds since the earliest row."""
    file = os.fspath(path)
    tally = BadRowTally(file, skip_bad_rows)
    return parse_azure(file, read_lines(file, skip_bad_rows), tally, name)


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


def _mooncake_row(line: str) -> tuple[float, int, int, list[int] | None]:
    """One Mooncake row: (timestamp ms, input length, output length, hash_ids or None)."""
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
    if ids is not None and (not isinstance(ids, list) or not all(type(i) is int for i in ids)):  # bools are not ids
        raise RowProblem("hash_ids: expected a list of integers")
    return stamp_ms, n_in, n_out, ids


def parse_mooncake(
    file: str, lines: list[str | None], tally: BadRowTally, name: str | None, block_tokens: int
) -> RequestTrace:
    stamps_ms: list[float] = []
    inp: list[int] = []
    out: list[int] = []
    blocks: list[list[int] | None] = []
    for stamp_ms, n_in, n_out, ids in parse_rows(lines, 0, tally, _mooncake_row):
        stamps_ms.append(stamp_ms)
        inp.append(n_in)
        out.append(n_out)
        blocks.append(ids)
    arrival = np.asarray(stamps_ms, dtype=np.float64) / 1000.0
    note_disorder(file, arrival)
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
    return finish_trace(file, name, arrival[order], sorted_inp, sorted_out, cached, tally, presorted=True)


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
    return parse_mooncake(file, read_lines(file, skip_bad_rows), tally, name, block_tokens)


def parse_burstgpt(
    file: str, lines: list[str | None], tally: BadRowTally, name: str | None, include_failed: bool
) -> RequestTrace:
    first = after_header(file, lines, BURSTGPT_COLUMNS)
    stamps: list[float] = []
    inp: list[int] = []
    out: list[int] = []
    failed = 0

    def parse_row(line: str) -> tuple[float, int, int]:
        cells = split_cells(line, 6)
        stamp = parse_number(cells[0], "Timestamp")
        n_out = parse_count(cells[3], "Response tokens", minimum=0)
        # a failed request (0 response tokens) may also have 0 request tokens when it is left out
        n_in = parse_count(cells[2], "Request tokens", minimum=0 if n_out == 0 and not include_failed else 1)
        return stamp, n_in, n_out

    for stamp, n_in, n_out in parse_rows(lines, first, tally, parse_row):
        if n_out == 0:
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
    return finish_trace(file, name, arrival, inp, out, None, tally, failed_rows_excluded=failed)


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
    return parse_burstgpt(file, read_lines(file, skip_bad_rows), tally, name, include_failed)
