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

This module is the trace layer's one import: the value type lives in
:mod:`heteroscale.sim.request_trace`, row parsing in :mod:`heteroscale.sim.trace_rows`, the format
readers in :mod:`heteroscale.sim.trace_formats`, rate curves and synthetic load (``RateCurve``,
``read_rate_curve``, ``generate_poisson``, ``superpose``, ``merge``) in :mod:`heteroscale.sim.loadgen`;
all are re-exported here. None of them imports this module.

Errors: bad data raises :class:`~heteroscale.errors.TraceError` with ``"<file>:<line>: <problem>"``
(1-based line numbers, as an editor shows them) or ``"<file>: <problem>"`` for the whole file; with
``skip_bad_rows=True`` bad rows are skipped and counted in ``skipped_rows`` instead. Bad arguments
(a non-positive compression, an unknown format name) raise :class:`~heteroscale.errors.ConfigError`.
"""

from __future__ import annotations

import os
from importlib import resources

from heteroscale.errors import ConfigError, TraceError
from heteroscale.sim.loadgen import RateCurve, generate_poisson, merge, read_rate_curve, superpose
from heteroscale.sim.request_trace import RequestTrace
from heteroscale.sim.trace_formats import (
    AZURE_COLUMNS,
    BURSTGPT_COLUMNS,
    parse_azure,
    parse_burstgpt,
    parse_mooncake,
    read_azure,
    read_burstgpt,
    read_mooncake,
)
from heteroscale.sim.trace_rows import BadRowTally, first_content_line, header_matches, read_lines

__all__ = [  # the trace layer's public API
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

FORMATS = ("auto", "azure", "mooncake", "burstgpt")
_JSONL_EXTENSIONS = (".jsonl", ".json", ".ndjson")


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
        return parse_azure(file, lines, tally, name)
    if kind == "mooncake":
        return parse_mooncake(file, lines, tally, name, block_tokens=512)
    return parse_burstgpt(file, lines, tally, name, include_failed=False)


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
