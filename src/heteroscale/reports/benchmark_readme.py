"""README.md's benchmark blocks, rendered from the recorded benchmark outputs (``results/benchmarks/``).

``benchmarks/record.py`` runs each benchmark script and writes ``<name>.txt``: one ``#record`` header
line (date, machine, CPUs, load average, Python, wall seconds, exit status), the script's standard
output, and after a non-zero exit the last lines of its standard error (``#record |`` lines). Here
those files become the text between README markers::

    <!-- benchmark:NAME -->            the script's figures: a fenced block under a line saying
    …                                  where and when they were recorded
    <!-- /benchmark:NAME -->
    <!-- benchmark:NAME:VIEW -->       a table built from the script's figure lines (``VIEWS``)
    …
    <!-- /benchmark:NAME:VIEW -->

A long output is shown by its verdict lines only (``summary_lines``), so a block stays readable and
still shows every target the script judged, met or missed. Every record needs its block and every
block its record: a missing one is an error naming it, never a silently stale README.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from heteroscale.errors import BenchmarkRecordError

HEADER_PREFIX = "#record "
STDERR_PREFIX = "#record | "
HEADER_FIELDS = ("script", "date", "machine", "cpus", "load_avg", "python", "wall_s", "exit")
WHOLE_MAX_LINES = 50
FOLD_OVER_LINES = 20  # a longer block is folded (<details>) so the README stays readable
_BEGIN = re.compile(r"<!-- benchmark:(?P<id>[a-z0-9_]+(?::[a-z0-9_]+)?) -->")
_END = re.compile(r"<!-- /benchmark:(?P<id>[a-z0-9_]+(?::[a-z0-9_]+)?) -->")
_VERDICT = re.compile(r"target|\bMISSED\b|\bPASS\b|\bFAIL(?:ED)?\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Record:
    """One script's recorded run: the header's fields, its standard output, its stderr tail."""

    name: str
    source: str  # the file, for messages and links
    header: Mapping[str, str]
    lines: tuple[str, ...]
    stderr_tail: tuple[str, ...]


def parse_record(name: str, text: str, source: str) -> Record:
    """A record file's text; ``BenchmarkRecordError`` naming ``source`` when it is not one."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith(HEADER_PREFIX):
        raise BenchmarkRecordError(
            f"{source}: line 1 is not a record header ('#record script=… date=…'): "
            f"record it with `python benchmarks/record.py {name}`"
        )
    header = dict(_fields(lines[0][len(HEADER_PREFIX) :]))
    missing = [f for f in HEADER_FIELDS if f not in header]
    if missing:
        raise BenchmarkRecordError(f"{source}: line 1: the record header lacks {', '.join(missing)}")
    body = lines[1:]
    out = tuple(line for line in body if not line.startswith("#record"))
    tail = tuple(line[len(STDERR_PREFIX) :] for line in body if line.startswith(STDERR_PREFIX))
    return Record(name, source, header, out, tail)


def read_records(directory: Path, shown_as: str) -> dict[str, Record]:
    """Every ``*.txt`` record under ``directory``, by name (``shown_as``: the directory in messages)."""
    if not directory.is_dir():
        raise BenchmarkRecordError(f"{shown_as}: no such directory: record with `python benchmarks/record.py`")
    return {
        p.stem: parse_record(p.stem, p.read_text(encoding="utf-8"), f"{shown_as}/{p.name}")
        for p in sorted(directory.glob("*.txt"))
    }


def summary_lines(lines: Sequence[str]) -> tuple[list[str], bool]:
    """The lines a README block shows, and whether that is all of them.

    An output of at most ``WHOLE_MAX_LINES`` lines is shown whole. A longer one is shown by its
    top-level lines (unindented, not a ``#`` comment, not a heading ending in ``:``) that state a
    target or a verdict (``target``, ``MISSED``, ``PASS``, ``FAIL``), which every script with a
    target prints; one with none of those is shown whole.
    """
    if len(lines) <= WHOLE_MAX_LINES:
        return list(lines), True
    picked = [
        ln
        for ln in lines
        if ln and not ln[0].isspace() and not ln.startswith("#") and not ln.endswith(":") and _VERDICT.search(ln)
    ]
    return (picked, False) if picked else (list(lines), True)


# --- blocks ----------------------------------------------------------------------------------------


def provenance(record: Record, link: str) -> str:
    """The line above a block: which command, when, where, how long, and how it ended."""
    h = record.header
    status = h["exit"]
    ended = "stopped at its time-out" if status == "timeout" else f"exit status {status}"
    return (
        f"`python {h['script']}`, recorded {h['date'].replace('T', ' ').replace('Z', ' UTC')} on {h['machine']} "
        f"({h['cpus']} CPUs, load average {h['load_avg']} at the start), Python {h['python']}, "
        f"{h['wall_s']} s, {ended} ([record]({link}))"
    )


def output_block(record: Record, link: str) -> str:
    shown, whole = summary_lines(record.lines)
    note = "" if whole else "; its target lines (every line: the record)"
    fenced = ["```text", *shown, "```"]
    if len(shown) > FOLD_OVER_LINES:
        fenced = [f"<details><summary>{len(shown)} lines</summary>", "", *fenced, "", "</details>"]
    parts = [f"{provenance(record, link)}{note}:", "", *fenced]
    if record.header["exit"] != "0" and record.stderr_tail:
        parts += ["", "The last lines of its standard error:", "", "```text", *record.stderr_tail, "```"]
    return "\n".join(parts)


def _fields(text: str) -> list[tuple[str, str]]:
    return [(key, value) for key, _, value in (tok.partition("=") for tok in text.split() if "=" in tok)]


def _line_starting(record: Record, prefix: str, block_id: str) -> str:
    for line in record.lines:
        if line.startswith(prefix):
            return line
    raise BenchmarkRecordError(f"{record.source}: no line starting {prefix!r}, which README block {block_id} needs")


def _pct(fraction: str, digits: int = 1) -> str:
    """``fraction`` (as printed) in per cent, rounded half up in decimal: 0.1495 is 15.0 %, not 14.9 %."""
    exact = Decimal(fraction) * 100
    return f"{exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)} %"


# SplitwiseSim's cases (benchmarks/splitwise_mirror.py prints only their names)
_SPLITWISE_CASES = {"A": "A: conv 1P+2D", "A'": "A′: conv 1P+1D", "B": "B: code 11P+1D"}
_SPLITWISE_ROW = re.compile(
    r"^\s+(?P<label>\S.*?)\s+(?P<ok>yes|NO)\s+(?P<ttft>[\d.]+ / [\d.]+ / [\d.]+)\s+(?P<tbt>[\d.]+ / [\d.]+ / [\d.]+)"
)
_SCORECARD_NAMES = {
    "splitwise": "Splitwise",
    "h200-kernels": "H200 kernels",
    "distserve": "DistServe",
    "vllm": "vLLM per DistServe",
    "aiconfigurator": "AIConfigurator estimates",
}


def scorecard_table(record: Record, link: str) -> str:
    """Per source: rows, median, p90 and the verdict the script printed, from its ``scorecard`` lines."""
    block_id = "benchmark:calibration_scorecard:table"
    rows = [ln for ln in record.lines if ln.startswith("scorecard source=")]
    if not rows:
        raise BenchmarkRecordError(
            f"{record.source}: no 'scorecard source=…' line, which README block {block_id} needs"
        )
    out = [
        f"{provenance(record, link)}:",
        "",
        "| source (engine profile) | rows | median | p90 | target | leave one model out (information) |",
        "|---|---|---|---|---|---|",
    ]
    for line in rows:
        figures, _, target = line.removeprefix("scorecard ").partition(" target=")
        f = dict(_fields(figures))
        strict = f"{_pct(f['strict_median'])} / {_pct(f['strict_p90'])}" if "strict_median" in f else "—"
        name = _SCORECARD_NAMES.get(f["source"], f["source"])
        out.append(
            f"| {name} (`{f['engine']}`) | {int(f['n']):,} | {_pct(f['median'])} | {_pct(f['p90'])} "
            f"| {target or '—'} | {strict} |"
        )
    return "\n".join(out)


def perf_model_table(record: Record, link: str) -> str:
    """The pooled fit's median and max relative error per row set, and the targets' verdict."""
    block_id = "benchmark:perf_model_fidelity:table"
    measured = dict(_fields(_line_starting(record, "measured_median_rel_err=", block_id)))
    aic = dict(_fields(_line_starting(record, "aiconfigurator_median_rel_err=", block_id)))
    old = dict(_fields(_line_starting(record, "info aiconfigurator_fitted_2023_engine_median_rel_err=", block_id)))
    verdict_line = _line_starting(record, "targets ", block_id)
    targets = {k: v for k, _, v in (tok.rstrip(":").partition("<=") for tok in verdict_line.split() if "<=" in tok)}
    out = [
        f"{provenance(record, link)}:",
        "",
        "| rows | median rel. error | max | target |",
        "|---|---|---|---|",
        f"| measured, fitted ({int(measured['n']):,}) | {_pct(measured['measured_median_rel_err'])} "
        f"| {_pct(measured['measured_max_rel_err'], 0)} | ≤ {_pct(targets['measured_median'], 0)} |",
        f"| AIConfigurator, current-engine overheads ({int(aic['n']):,}) "
        f"| {_pct(aic['aiconfigurator_median_rel_err'])} "
        f"| {_pct(aic['aiconfigurator_max_rel_err'], 0)} | ≤ {_pct(targets['aiconfigurator_median'], 0)} |",
        f"| AIConfigurator, with the 2023 overheads | "
        f"{_pct(old['aiconfigurator_fitted_2023_engine_median_rel_err'])} "
        f"| {_pct(old['aiconfigurator_fitted_2023_engine_max_rel_err'], 0)} | (for information) |",
        "",
        f"Verdict: `{verdict_line}`",
    ]
    return "\n".join(out)


def splitwise_table(record: Record, link: str) -> str:
    """SplitwiseSim's verdict and TTFT / TBT p99 per case beside ours, mixed pool and pure P/D."""
    block_id = "benchmark:splitwise_mirror:table"
    cells: dict[str, dict[str, str]] = {}
    case = ""
    for line in record.lines:
        if line and not line[0].isspace() and not line.startswith("case ") and not line.startswith("startup"):
            case = line.strip()
            continue
        m = _SPLITWISE_ROW.match(line)
        if m and case:
            ttft_p99, tbt_p99 = m["ttft"].split(" / ")[2], m["tbt"].split(" / ")[2]
            verdict = "pass" if m["ok"] == "yes" else "fail"
            if "(verdict differs)" in line:
                verdict = f"**{verdict}** (differs)"
            cells.setdefault(case, {})[m["label"]] = f"{verdict}, {ttft_p99} s / {tbt_p99} ms"
    if not cells:
        raise BenchmarkRecordError(f"{record.source}: no case rows, which README block {block_id} needs")
    columns = ("SplitwiseSim", "ours, mixed pool", "ours, pure P/D")
    out = [
        f"{provenance(record, link)}; TTFT p99 / TBT p99:",
        "",
        "| case | " + " | ".join(columns) + " |",
        "|---|---|---|---|",
    ]
    for case, row in cells.items():
        out.append(f"| {_SPLITWISE_CASES.get(case, case)} | " + " | ".join(row.get(c, "—") for c in columns) + " |")
    return "\n".join(out)


Renderer = Callable[[Record, str], str]
VIEWS: dict[str, Renderer] = {
    "calibration_scorecard:table": scorecard_table,
    "perf_model_fidelity:table": perf_model_table,
    "splitwise_mirror:table": splitwise_table,
}


def render_block(block_id: str, record: Record, link: str) -> str:
    """The text between ``block_id``'s markers (without them)."""
    view = VIEWS.get(block_id)
    return output_block(record, link) if view is None else view(record, link)


def _blocks(readme: str, source: str) -> list[tuple[str, int, int]]:
    """(block id, start of its content, end of its content) for every block, in order."""
    found: list[tuple[str, int, int]] = []
    ends = {m["id"]: m for m in _END.finditer(readme)}
    seen: set[str] = set()
    for m in _BEGIN.finditer(readme):
        block_id = m["id"]
        if block_id in seen:
            raise BenchmarkRecordError(f"{source}: block <!-- benchmark:{block_id} --> appears twice")
        seen.add(block_id)
        end = ends.get(block_id)
        if end is None or end.start() < m.end():
            raise BenchmarkRecordError(
                f"{source}: block <!-- benchmark:{block_id} --> has no end marker "
                f"<!-- /benchmark:{block_id} --> after it"
            )
        found.append((block_id, m.end(), end.start()))
    stray = sorted(set(ends) - seen)
    if stray:
        raise BenchmarkRecordError(f"{source}: end marker <!-- /benchmark:{stray[0]} --> has no begin marker")
    return found


def render_readme(readme: str, records: Mapping[str, Record], source: str, records_dir: str) -> str:
    """``readme`` with every benchmark block rendered from ``records``.

    Every record needs its block (``<!-- benchmark:NAME -->``) and the views of ``VIEWS`` whose
    record is there; every block needs its record and, for ``NAME:VIEW``, a known view.
    """
    blocks = _blocks(readme, source)
    ids = {block_id for block_id, _, _ in blocks}
    required = [*records, *(v for v in VIEWS if v.split(":")[0] in records)]
    for block_id in required:
        if block_id not in ids:
            name = block_id.split(":")[0]
            raise BenchmarkRecordError(
                f"{source}: no block <!-- benchmark:{block_id} --> … <!-- /benchmark:{block_id} --> "
                f"for the record {records_dir}/{name}.txt"
            )
    pieces: list[str] = []
    at = 0
    for block_id, start, end in blocks:
        name, _, view = block_id.partition(":")
        if view and block_id not in VIEWS:
            known = ", ".join(sorted(VIEWS))
            raise BenchmarkRecordError(f"{source}: block benchmark:{block_id}: no such view (known: {known})")
        record = records.get(name)
        if record is None:
            raise BenchmarkRecordError(
                f"{records_dir}/{name}.txt: no such record, which {source}'s block benchmark:{block_id} is "
                f"rendered from: record it with `python benchmarks/record.py {name}`"
            )
        link = f"{records_dir}/{name}.txt"
        pieces += [readme[at:start], "\n", render_block(block_id, record, link), "\n"]
        at = end
    pieces.append(readme[at:])
    return "".join(pieces)
