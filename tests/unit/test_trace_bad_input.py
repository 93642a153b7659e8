"""Bad trace and rate-curve input: one error naming the file and line, or counted skips (heteroscale.sim.traces)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from heteroscale.errors import ConfigError, TraceError
from heteroscale.sim.traces import (
    read_azure,
    read_rate_curve,
    read_trace,
)
from tests.unit.trace_builders import (
    AZURE_HEADER,
    BURST_HEADER,
    CURVE_HEADER,
    azure_text,
    burst_row,
    mc,
    mooncake_text,
    write,
)

# ---------------------------------------------------------------- bad rows


GOOD_AZURE = "2023-11-16 18:17:03.9799600,4808,10"
BAD_ROWS = [
    # (id, file name, text, line, problem)
    (
        "azure-columns",
        "a.csv",
        azure_text(GOOD_AZURE, "2023-11-16 18:17:04.0,1,2,3"),
        3,
        "expected 3 columns, got 4",
    ),
    (
        "azure-nonnumeric",
        "a.csv",
        azure_text(GOOD_AZURE, "2023-11-16 18:17:04.0,abc,2"),
        3,
        "ContextTokens: not an",
    ),
    (
        "azure-negative",
        "a.csv",
        azure_text(GOOD_AZURE, "2023-11-16 18:17:04.0,-5,2"),
        3,
        "ContextTokens must be ≥ 1",
    ),
    (
        "azure-zero-out",
        "a.csv",
        azure_text(GOOD_AZURE, "2023-11-16 18:17:04.0,5,0"),
        3,
        "GeneratedTokens must be",
    ),
    (
        "azure-float-tokens",
        "a.csv",
        azure_text("2023-11-16 18:17:04.0,5.5,2"),
        2,
        "ContextTokens: not an integer",
    ),
    (
        "azure-bad-time",
        "a.csv",
        azure_text(GOOD_AZURE, "2023-11-16 25:17:04.0,5,2"),
        3,
        "TIMESTAMP: time out of",
    ),
    (
        "azure-bad-date",
        "a.csv",
        azure_text(GOOD_AZURE, "2023-02-30 10:17:04.0,5,2"),
        3,
        "TIMESTAMP: bad date",
    ),
    ("azure-garbage-time", "a.csv", azure_text(GOOD_AZURE, "yesterday,5,2"), 3, "TIMESTAMP: cannot parse"),
    (
        "azure-10-digits",
        "a.csv",
        azure_text("2023-11-16 18:17:04.0123456789,5,2"),
        2,
        "TIMESTAMP: cannot parse",
    ),
    ("azure-after-blank", "a.csv", azure_text(GOOD_AZURE, "", "x,1,1"), 4, "TIMESTAMP: cannot parse"),
    (
        "azure-crlf",
        "a.csv",
        azure_text(GOOD_AZURE, "2023-11-16 18:17:04.0,0,2", newline="\r\n"),
        3,
        "must be ≥ 1",
    ),
    ("mooncake-json", "m.jsonl", mooncake_text(mc(0)) + "{not json}\n", 2, "invalid JSON"),
    (
        "mooncake-missing",
        "m.jsonl",
        mooncake_text(mc(0), {"timestamp": 1, "input_length": 5}),
        2,
        "'output_length'",
    ),
    ("mooncake-zero-in", "m.jsonl", mooncake_text(mc(0), mc(1, inp=0)), 2, "input_length must be ≥ 1, got 0"),
    (
        "mooncake-str-len",
        "m.jsonl",
        mooncake_text({"timestamp": 0, "input_length": "5", "output_length": 1}),
        1,
        "not",
    ),
    (
        "mooncake-neg-time",
        "m.jsonl",
        mooncake_text(mc(0), mc(-5)),
        2,
        "timestamp must be a finite number ≥ 0",
    ),
    (
        "mooncake-ids",
        "m.jsonl",
        mooncake_text(mc(0, ids=[1, "x"])),
        1,
        "hash_ids: expected a list of integers",
    ),
    ("mooncake-array", "m.jsonl", mooncake_text(mc(0)) + "[1, 2]\n", 2, "expected a JSON object"),
    (
        "burst-columns",
        "b.csv",
        f"{BURST_HEADER}\n{burst_row(1, 5, 5)}\n1,ChatGPT,5\n",
        3,
        "expected 6 columns, got 3",
    ),
    ("burst-time", "b.csv", f"{BURST_HEADER}\nsoon,ChatGPT,5,5,10,API log\n", 2, "Timestamp: not a number"),
    ("burst-nan", "b.csv", f"{BURST_HEADER}\nnan,ChatGPT,5,5,10,API log\n", 2, "Timestamp: not a finite"),
    ("burst-neg-resp", "b.csv", f"{BURST_HEADER}\n{burst_row(1, 5, -1)}\n", 2, "Response tokens must be ≥ 0"),
    ("burst-neg-req", "b.csv", f"{BURST_HEADER}\n{burst_row(1, -3, 4)}\n", 2, "Request tokens must be ≥ 1"),
]


@pytest.mark.parametrize(
    ("filename", "text", "line", "problem"), [r[1:] for r in BAD_ROWS], ids=[r[0] for r in BAD_ROWS]
)
def test_bad_row_raises_trace_error_naming_file_and_line(
    tmp_path: Path, filename: str, text: str, line: int, problem: str
) -> None:
    path = write(tmp_path, filename, text)
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("filename", "text", "line", "problem"), [r[1:] for r in BAD_ROWS], ids=[r[0] for r in BAD_ROWS]
)
def test_skip_bad_rows_counts_them(tmp_path: Path, filename: str, text: str, line: int, problem: str) -> None:
    good = {
        "a.csv": azure_text(GOOD_AZURE),
        "m.jsonl": mooncake_text(mc(0)),
        "b.csv": f"{BURST_HEADER}\n{burst_row(0, 5, 5)}\n",
    }
    # append one good row after the bad one so there is always something left to read
    text = text.rstrip("\r\n") + "\n" + good[filename].splitlines()[-1] + "\n"
    path = write(tmp_path, filename, text)
    trace = read_trace(path, skip_bad_rows=True)
    assert trace.skipped_rows == 1
    expected_rows = len([ln for ln in text.splitlines()[(0 if filename.endswith(".jsonl") else 1) :] if ln.strip()]) - 1
    assert len(trace) == expected_rows


def test_skip_bad_rows_counts_several(tmp_path: Path) -> None:
    rows = [
        GOOD_AZURE,
        "x,1,1",
        "2023-11-16 18:17:05.0,0,1",
        "2023-11-16 18:17:06.0,1",
        "2023-11-16 18:17:07.0,7,7",
    ]
    path = write(tmp_path, "a.csv", azure_text(*rows))
    trace = read_azure(path, skip_bad_rows=True)
    assert trace.skipped_rows == 3
    assert trace.input_tokens.tolist() == [4808, 7]
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 3.02004], abs=1e-9)


def test_invalid_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(azure_text(GOOD_AZURE).encode() + b"2023-11-16 18:17:05.0,\xff\xfe,1\n" + GOOD_AZURE.encode())
    with pytest.raises(TraceError, match=re.escape(f"{path}:3: not valid UTF-8")):
        read_trace(path)
    assert read_trace(path, skip_bad_rows=True).skipped_rows == 1


@pytest.mark.parametrize(
    ("filename", "text", "fmt", "problem"),
    [
        ("a.csv", "", "auto", "empty file"),
        ("a.csv", "\n  \n", "azure", "empty file"),
        ("a.csv", f"{GOOD_AZURE}\n", "azure", ":1: missing header"),
        ("a.csv", f"{GOOD_AZURE}\n", "auto", ":1: unknown trace format"),
        ("b.csv", f"{AZURE_HEADER}\n{GOOD_AZURE}\n", "burstgpt", ":1: missing header"),
        ("a.csv", f"{AZURE_HEADER}\n", "auto", "no requests"),
        ("a.csv", f"{AZURE_HEADER}\r\n\r\n", "azure", "no requests"),
        ("r.csv", f"{CURVE_HEADER}\n0,1.0,1\n", "auto", "rate curve, not a request trace"),
        ("m.jsonl", "\n\n", "auto", "empty file"),
    ],
)
def test_whole_file_problems_name_the_file(tmp_path: Path, filename: str, text: str, fmt: str, problem: str) -> None:
    path = write(tmp_path, filename, text)
    with pytest.raises(TraceError) as caught:
        read_trace(path, fmt)
    assert str(caught.value).startswith(str(path))
    assert problem in str(caught.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=re.escape(f"{tmp_path / 'nope.csv'}: no such file")):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match=re.escape(f"{tmp_path}: cannot read")):
        read_trace(tmp_path)
    with pytest.raises(TraceError, match="no such file"):
        read_rate_curve(tmp_path / "nope.csv")


def test_unknown_format_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown trace format 'splitwise'"):
        read_trace(tmp_path / "x.csv", "splitwise")


@pytest.mark.parametrize(
    ("filename", "text", "expected_inputs"),
    [
        ("trace.csv", azure_text(GOOD_AZURE), [4808]),
        ("trace.txt", azure_text(GOOD_AZURE), [4808]),
        ("trace.jsonl", mooncake_text(mc(0, 7)), [7]),
        ("trace.log", mooncake_text(mc(0, 8)), [8]),
        ("BurstGPT.csv", f"{BURST_HEADER}\n{burst_row(0, 9, 1)}\n", [9]),
        ("lower.csv", f"{BURST_HEADER.lower()}\n{burst_row(0, 10, 1)}\n", [10]),
        ("bom.csv", "\ufeff" + azure_text(GOOD_AZURE), [4808]),
    ],
)
def test_auto_detection(tmp_path: Path, filename: str, text: str, expected_inputs: list[int]) -> None:
    assert read_trace(write(tmp_path, filename, text)).input_tokens.tolist() == expected_inputs


def test_gzip_files(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl.gz"
    path.write_bytes(gzip.compress(mooncake_text(mc(0, 3), mc(10, 4)).encode()))
    trace = read_trace(path)
    assert trace.name == "m"
    assert trace.input_tokens.tolist() == [3, 4]
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(TraceError, match=re.escape(f"{broken}: cannot read")):
        read_trace(broken)
