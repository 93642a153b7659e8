"""Request traces, rate curves and synthetic load (heteroscale.sim.traces / heteroscale.sim.loadgen)."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from heteroscale.errors import ConfigError, TraceError
from heteroscale.sim.traces import (
    RateCurve,
    RequestTrace,
    bundled_trace_path,
    generate_poisson,
    read_azure,
    read_burstgpt,
    read_mooncake,
    read_rate_curve,
    read_trace,
    superpose,
)

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
CURVE_HEADER = "window_start_s,total_rate_rps,active_clients"


# ---------------------------------------------------------------- builders


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def azure_text(*rows: str, header: str = AZURE_HEADER, newline: str = "\n") -> str:
    return newline.join([header, *rows]) + newline


def mooncake_text(*records: dict[str, object]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def mc(timestamp: float, inp: int = 1000, out: int = 10, ids: list[int] | None = None) -> dict[str, object]:
    record: dict[str, object] = {"timestamp": timestamp, "input_length": inp, "output_length": out}
    if ids is not None:
        record["hash_ids"] = ids
    return record


def burst_row(t: float, req: int, resp: int, model: str = "ChatGPT", log: str = "Conversation log") -> str:
    return f"{t},{model},{req},{resp},{req + resp},{log}"


def make_trace(
    arrival_s: list[float],
    input_tokens: list[int] | None = None,
    output_tokens: list[int] | None = None,
    cached_tokens: list[int] | None = None,
    name: str = "t",
) -> RequestTrace:
    n = len(arrival_s)
    return RequestTrace(
        name=name,
        arrival_s=np.asarray(arrival_s, dtype=np.float64),
        input_tokens=np.asarray(input_tokens or [100] * n, dtype=np.int64),
        output_tokens=np.asarray(output_tokens or [10] * n, dtype=np.int64),
        cached_tokens=None if cached_tokens is None else np.asarray(cached_tokens, dtype=np.int64),
    )


def make_curve(rates: list[float], window_s: float = 600.0, start_s: float = 0.0) -> RateCurve:
    starts = start_s + window_s * np.arange(len(rates), dtype=np.float64)
    return RateCurve(name="c", window_start_s=starts, rate_rps=np.asarray(rates, dtype=np.float64), window_s=window_s)


def lengths_table(n: int = 50) -> RequestTrace:
    """Rows whose columns are tied (output = 2·input, cached = input − 1) to check joint resampling."""
    inp = list(range(1, n + 1))
    return make_trace(
        [0.0] * n, input_tokens=inp, output_tokens=[2 * i for i in inp], cached_tokens=[i - 1 for i in inp]
    )


# ---------------------------------------------------------------- Azure


@pytest.mark.parametrize(
    ("stamps", "expected_s"),
    [
        (["2023-11-16 18:17:03.9799600", "2023-11-16 18:17:04.0319600"], [0.0, 0.052]),
        (["2023-11-16 18:17:03.0000001", "2023-11-16 18:17:03.0000002"], [0.0, 1e-7]),
        (["2023-11-16 18:17:03.9999999", "2023-11-16 18:17:04.0000000"], [0.0, 1e-7]),
        (["2023-11-16 23:59:59.9999999", "2023-11-17 00:00:00.0000001"], [0.0, 2e-7]),
        (["2023-12-31 23:59:59.5000000", "2024-01-01 00:00:00.2500000"], [0.0, 0.75]),
        (["2024-02-28 12:00:00.0000000", "2024-03-01 12:00:00.0000000"], [0.0, 2 * 86_400.0]),
        (["2023-11-16 18:15:46.6805900", "2023-11-16 19:14:08.4025270"], [0.0, 3501.7219370]),
        (
            ["2023-11-16 18:00:00", "2023-11-16 18:00:01.5", "2023-11-16 18:00:02.123456789"],
            [0.0, 1.5, 2.123456789],
        ),
        (["2024-05-10 00:00:00.0000000+00:00", "2024-05-10 02:00:01.0000000+02:00"], [0.0, 1.0]),
        (["2024-05-10T00:00:00.1234567Z", "2024-05-10T00:00:10.1234568Z"], [0.0, 10.0000001]),
    ],
)
def test_azure_timestamps_are_exact(tmp_path: Path, stamps: list[str], expected_s: list[float]) -> None:
    path = write(tmp_path, "a.csv", azure_text(*(f"{s},100,10" for s in stamps)))
    trace = read_azure(path)
    np.testing.assert_allclose(trace.arrival_s, expected_s, rtol=0, atol=1e-9)


def test_azure_crlf_and_first_row_is_time_zero(tmp_path: Path) -> None:
    text = azure_text("2023-11-16 18:17:03.9799600,4808,10", "2023-11-16 18:17:05.0000000,3180,8", newline="\r\n")
    trace = read_trace(write(tmp_path, "AzureLLMInferenceTrace_x.csv", text))
    assert trace.name == "AzureLLMInferenceTrace_x"
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 1.02004], abs=1e-9)
    assert trace.input_tokens.tolist() == [4808, 3180]
    assert trace.output_tokens.tolist() == [10, 8]
    assert trace.cached_tokens is None
    assert trace.skipped_rows == 0


def test_azure_out_of_order_rows_are_sorted_stably(tmp_path: Path) -> None:
    rows = ["2023-11-16 18:00:05.0,1,1", "2023-11-16 18:00:01.0,2,1", "2023-11-16 18:00:05.0,3,1"]
    trace = read_azure(write(tmp_path, "a.csv", azure_text(*rows)))
    assert trace.arrival_s.tolist() == [0.0, 4.0, 4.0]
    assert trace.input_tokens.tolist() == [2, 1, 3]


@pytest.mark.parametrize(
    ("filename", "rows", "duration_s", "mean_in", "mean_out", "mean_rps"),
    [
        ("AzureLLMInferenceTrace_conv.csv", 19_366, 3_502, 1_155, 211, 5.53),
        ("AzureLLMInferenceTrace_code.csv", 8_819, 3_436, 2_048, 27.9, 2.57),
    ],
)
def test_bundled_azure_traces_match_readme_statistics(
    filename: str, rows: int, duration_s: float, mean_in: float, mean_out: float, mean_rps: float
) -> None:
    trace = read_trace(bundled_trace_path(filename))
    assert len(trace) == rows
    assert trace.duration_s == pytest.approx(duration_s, abs=1.0)
    assert trace.arrival_s[0] == 0.0
    assert float(trace.input_tokens.mean()) == pytest.approx(mean_in, rel=1e-3)
    assert float(trace.output_tokens.mean()) == pytest.approx(mean_out, rel=2e-3)
    assert trace.mean_rps == pytest.approx(mean_rps, abs=0.01)
    assert bool(np.all(np.diff(trace.arrival_s) >= 0))
    assert trace.skipped_rows == 0


def test_bundled_files_match_the_sha256_in_licenses() -> None:
    licenses = Path(bundled_trace_path("LICENSES.md")).read_text(encoding="utf-8")
    listed = dict(re.findall(r"\| `([\w.-]+\.csv)` \|.*`([0-9a-f]{64})` \|", licenses))
    assert len(listed) == 5
    for filename, digest in listed.items():
        assert hashlib.sha256(Path(bundled_trace_path(filename)).read_bytes()).hexdigest() == digest


def test_bundled_trace_path_unknown_name() -> None:
    with pytest.raises(TraceError, match=r"nope\.csv: no such bundled trace; available: .*conv\.csv"):
        bundled_trace_path("nope.csv")
    with pytest.raises(ConfigError):
        bundled_trace_path("../traces.py")


# ---------------------------------------------------------------- Mooncake


@pytest.mark.parametrize(
    ("records", "block_tokens", "expected_cached"),
    [
        # first sight of every block: nothing cached; a full repeat hits all but the last token
        ([mc(0, 1024, ids=[1, 2]), mc(1, 1024, ids=[1, 2])], 512, [0, 1023]),
        # longest seen prefix only: block 9 is new, so block 2 after it does not count
        ([mc(0, 2000, ids=[1, 2, 3]), mc(1, 2000, ids=[1, 9, 2])], 512, [0, 512]),
        # a seen block that is not leading gives no hit
        ([mc(0, 2000, ids=[1, 2]), mc(1, 2000, ids=[7, 2])], 512, [0, 0]),
        # prefix seen across two earlier requests (any earlier request fills the cache)
        ([mc(0, 600, ids=[1]), mc(1, 900, ids=[1, 2]), mc(2, 5000, ids=[1, 2, 3])], 512, [0, 512, 1024]),
        # cap at input_length − 1 when the last, partial block matches too
        ([mc(0, 700, ids=[1, 2]), mc(1, 700, ids=[1, 2])], 512, [0, 699]),
        # block size is a parameter
        ([mc(0, 100, ids=[1, 2]), mc(1, 100, ids=[1, 2, 3])], 16, [0, 32]),
        # a row without hash_ids hits nothing and adds nothing
        ([mc(0, 1000), mc(1, 1000, ids=[4]), mc(2, 1000, ids=[4])], 512, [0, 0, 512]),
        # empty hash_ids
        ([mc(0, 1000, ids=[]), mc(1, 1000, ids=[5])], 512, [0, 0]),
    ],
)
def test_mooncake_prefix_reuse(
    tmp_path: Path, records: list[dict[str, object]], block_tokens: int, expected_cached: list[int]
) -> None:
    trace = read_mooncake(write(tmp_path, "m.jsonl", mooncake_text(*records)), block_tokens=block_tokens)
    assert trace.cached_tokens is not None
    assert trace.cached_tokens.tolist() == expected_cached


def test_mooncake_without_hash_ids_has_unknown_cache(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "m.jsonl", mooncake_text(mc(0), mc(5))))
    assert trace.cached_tokens is None
    assert trace.arrival_s.tolist() == [0.0, 0.005]


def test_mooncake_repeated_timestamps_replay_in_file_order(tmp_path: Path) -> None:
    records = [mc(3000, 1, ids=[]), mc(1000, 2), mc(1000, 3), mc(1000, 4), mc(0, 5), mc(1000, 6)]
    trace = read_trace(write(tmp_path, "m.jsonl", mooncake_text(*records)))
    assert trace.arrival_s.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 3.0]
    assert trace.input_tokens.tolist() == [5, 2, 3, 4, 6, 1]


def test_mooncake_cache_follows_arrival_order_not_file_order(tmp_path: Path) -> None:
    # the later row in the file arrives first, so it is the one that fills the cache
    records = [mc(2000, 1024, ids=[1, 2]), mc(1000, 1024, ids=[1, 2])]
    trace = read_mooncake(write(tmp_path, "m.jsonl", mooncake_text(*records)))
    assert trace.arrival_s.tolist() == [1.0, 2.0]
    assert trace.cached_tokens is not None
    assert trace.cached_tokens.tolist() == [0, 1023]


def test_mooncake_bad_block_tokens() -> None:
    with pytest.raises(ConfigError, match="block_tokens"):
        read_mooncake("unused.jsonl", block_tokens=0)


# ---------------------------------------------------------------- BurstGPT


BURST_ROWS = [
    burst_row(5, 472, 18),
    burst_row(45, 1087, 0, log="API log"),  # failed
    burst_row(118, 417, 85, model="GPT-4"),
    burst_row(131, 0, 0),  # failed, no prompt recorded either
    burst_row(200, 1000, 250),
]


def test_burstgpt_leaves_failed_requests_out_by_default(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "BurstGPT_1.csv", "\n".join([BURST_HEADER, *BURST_ROWS]) + "\n"))
    assert trace.arrival_s.tolist() == [5.0, 118.0, 200.0]
    assert trace.input_tokens.tolist() == [472, 417, 1000]
    assert trace.output_tokens.tolist() == [18, 85, 250]
    assert trace.failed_rows_excluded == 2
    assert trace.skipped_rows == 0


def test_burstgpt_include_failed(tmp_path: Path) -> None:
    rows = [r for r in BURST_ROWS if not r.startswith("131,")]
    trace = read_burstgpt(write(tmp_path, "b.csv", "\n".join([BURST_HEADER, *rows])), include_failed=True)
    assert trace.arrival_s.tolist() == [5.0, 45.0, 118.0, 200.0]
    assert trace.output_tokens.tolist() == [18, 1, 85, 250]
    assert trace.failed_rows_excluded == 0


def test_burstgpt_include_failed_still_needs_a_prompt(tmp_path: Path) -> None:
    path = write(tmp_path, "b.csv", "\n".join([BURST_HEADER, *BURST_ROWS]))
    with pytest.raises(TraceError, match=re.escape(f"{path}:5: Request tokens must be ≥ 1, got 0")):
        read_burstgpt(path, include_failed=True)


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


# ---------------------------------------------------------------- RequestTrace


def test_trace_properties_and_time_operations() -> None:
    trace = make_trace([10.0, 11.0, 12.0, 15.0, 20.0], input_tokens=[1, 2, 3, 4, 5], cached_tokens=[0, 1, 2, 3, 4])
    assert len(trace) == 5
    assert trace.duration_s == 10.0
    assert trace.mean_rps == 0.5
    part = trace.slice_time(11.0, 15.0)
    assert part.arrival_s.tolist() == [0.0, 1.0]
    assert part.input_tokens.tolist() == [2, 3]
    assert part.cached_tokens is not None
    assert part.cached_tokens.tolist() == [1, 2]
    assert trace.slice_time(11.0, 15.0, rebase=False).arrival_s.tolist() == [11.0, 12.0]
    assert len(trace.slice_time(100.0, math.inf)) == 0
    fast = trace.scale_time(2.0)
    assert fast.arrival_s.tolist() == [5.0, 5.5, 6.0, 7.5, 10.0]
    assert fast.input_tokens is trace.input_tokens
    assert make_trace([3.0]).mean_rps == 0.0
    with pytest.raises(ConfigError):
        trace.scale_time(0.0)
    with pytest.raises(ConfigError):
        trace.slice_time(5.0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"arrival_s": [2.0, 1.0]}, "not sorted"),
        ({"arrival_s": [0.0, math.nan]}, "non-finite"),
        ({"arrival_s": [0.0, 1.0], "input_tokens": [1, 0]}, "≥ 1"),
        ({"arrival_s": [0.0, 1.0], "output_tokens": [1, 0]}, "≥ 1"),
        ({"arrival_s": [0.0, 1.0], "input_tokens": [5, 5], "cached_tokens": [0, 5]}, "cached_tokens"),
        ({"arrival_s": [0.0, 1.0], "cached_tokens": [0]}, "cached_tokens"),
    ],
)
def test_request_trace_checks_its_columns(kwargs: dict[str, list[float]], problem: str) -> None:
    with pytest.raises(TraceError, match=problem):
        make_trace(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- superpose


def test_superpose_ten_copies_of_conv() -> None:
    conv = read_trace(bundled_trace_path("AzureLLMInferenceTrace_conv.csv"))
    merged = superpose(conv, 10, 360.0)
    assert len(merged) == 193_660
    assert bool(np.all(np.diff(merged.arrival_s) >= 0))
    assert merged.arrival_s[-1] == pytest.approx(conv.arrival_s[-1] + 9 * 360.0)
    assert int(merged.input_tokens.sum()) == 10 * int(conv.input_tokens.sum())
    assert merged.mean_rps == pytest.approx(193_660 / (conv.duration_s + 3240.0))


def test_superpose_is_stable_across_copies() -> None:
    trace = make_trace([0.0, 1.0, 2.0], input_tokens=[1, 2, 3])
    merged = superpose(trace, 3, 1.0, name="x3")
    assert merged.name == "x3"
    assert merged.arrival_s.tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 4.0]
    assert merged.input_tokens.tolist() == [1, 2, 1, 3, 2, 1, 3, 2, 3]
    assert superpose(trace, 1, 99.0).arrival_s.tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ConfigError):
        superpose(trace, 0, 1.0)


# ---------------------------------------------------------------- rate curves


def test_m_large_day_zero() -> None:
    curve = read_rate_curve(bundled_trace_path("servegen_language_m-large_rate.csv"))
    assert curve.window_s == 600.0
    assert len(curve) == 14 * 144
    day = curve.day(0)
    assert len(day) == 144
    assert day.window_start_s[0] == 0.0
    assert day.peak_rps == pytest.approx(583.0, abs=0.5)
    assert day.peak_to_trough() == pytest.approx(3.86, abs=0.005)
    assert float(day.rate_rps.mean()) / day.peak_rps == pytest.approx(0.48, abs=0.005)
    assert curve.day(13).window_start_s[-1] == 86_400.0 - 600.0
    with pytest.raises(ConfigError, match=r"day 14 is outside"):
        curve.day(14)


def test_m_small_zero_windows_are_dropped_for_the_trough() -> None:
    curve = read_rate_curve(bundled_trace_path("servegen_language_m-small_rate.csv"))
    assert int((curve.rate_rps == 0).sum()) == 37
    assert curve.peak_to_trough(drop_zero=False) == math.inf
    assert math.isfinite(curve.peak_to_trough())


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (f"{CURVE_HEADER}\n0,1.0,2\n600,-1.0,2\n", 3, "total_rate_rps must be ≥ 0"),
        (f"{CURVE_HEADER}\n0,1.0,2\n600,fast,2\n", 3, "total_rate_rps: not a number"),
        (f"{CURVE_HEADER}\n0,1.0,2\n600,1.0\n", 3, "expected 3 columns, got 2"),
        (f"{CURVE_HEADER}\n600,1.0,2\n0,1.0,2\n", 3, "window_start_s 0 is not after the previous 600"),
        (f"{CURVE_HEADER}\n0,1.0,2\n600,1.0,2.5\n", 3, "active_clients: not an integer"),
        ("start,rate\n0,1.0\n", 1, "missing header"),
    ],
)
def test_rate_curve_bad_rows(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = write(tmp_path, "r.csv", text)
    with pytest.raises(TraceError) as caught:
        read_rate_curve(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert problem in str(caught.value)


def test_rate_curve_skip_and_window_inference(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", f"{CURVE_HEADER}\n0,1.0,2\nbad,1,1\n600,3.0,2\n1800,2.0,1\n")
    curve = read_rate_curve(path, skip_bad_rows=True)
    assert curve.window_s == 600.0
    assert curve.window_start_s.tolist() == [0.0, 600.0, 1800.0]
    one = write(tmp_path, "one.csv", "window_start_s,total_rate_rps\n0,4.0\n")
    with pytest.raises(TraceError, match="one window only"):
        read_rate_curve(one)
    assert read_rate_curve(one, window_s=60.0).expected_requests == 240.0


# ---------------------------------------------------------------- generate_poisson


def test_generate_poisson_is_deterministic_per_seed() -> None:
    curve, lengths = make_curve([5.0, 0.0, 20.0, 1.0]), lengths_table()
    first = generate_poisson(curve, lengths, np.random.default_rng(42))
    again = generate_poisson(curve, lengths, np.random.default_rng(42))
    other = generate_poisson(curve, lengths, np.random.default_rng(43))
    for column in ("arrival_s", "input_tokens", "output_tokens", "cached_tokens"):
        assert np.array_equal(getattr(first, column), getattr(again, column))
    assert not np.array_equal(first.arrival_s, other.arrival_s)


@pytest.mark.parametrize(
    ("rates", "rate_scale", "start_s", "duration_s", "expected"),
    [
        ([5.0, 0.0, 20.0, 1.0], 1.0, 0.0, None, 600.0 * 26.0),
        ([5.0, 0.0, 20.0, 1.0], 2.5, 0.0, None, 2.5 * 600.0 * 26.0),
        ([5.0, 0.0, 20.0, 1.0], 0.1, 0.0, None, 0.1 * 600.0 * 26.0),
        ([5.0, 0.0, 20.0, 1.0], 1.0, 300.0, 1500.0, 300.0 * 5.0 + 600.0 * 20.0),
        ([10.0] * 144, 1.0, 0.0, None, 10.0 * 86_400.0),
    ],
)
def test_generate_poisson_count_matches_integral_of_rate(
    rates: list[float], rate_scale: float, start_s: float, duration_s: float | None, expected: float
) -> None:
    lengths = lengths_table()
    for seed in range(5):
        trace = generate_poisson(
            make_curve(rates), lengths, np.random.default_rng(seed),
            rate_scale=rate_scale, start_s=start_s, duration_s=duration_s,
        )  # fmt: skip
        assert abs(len(trace) - expected) < 5.0 * math.sqrt(expected)
        assert bool(np.all(np.diff(trace.arrival_s) >= 0))
        assert trace.arrival_s.min() >= 0.0
        if duration_s is not None:
            assert trace.arrival_s.max() < duration_s


def test_generate_poisson_follows_the_windows() -> None:
    curve = make_curve([50.0, 0.0, 200.0])
    trace = generate_poisson(curve, lengths_table(), np.random.default_rng(7))
    per_window = np.histogram(trace.arrival_s, bins=[0.0, 600.0, 1200.0, 1800.0])[0]
    assert per_window[1] == 0
    for count, expected in ((per_window[0], 30_000.0), (per_window[2], 120_000.0)):
        assert abs(count - expected) < 5.0 * math.sqrt(expected)
    # uniform inside a window: each half of the busy window holds half the requests
    first_half = int(((trace.arrival_s >= 1200.0) & (trace.arrival_s < 1500.0)).sum())
    assert abs(first_half - per_window[2] / 2) < 5.0 * math.sqrt(per_window[2] / 4)


def test_generate_poisson_time_compression_squeezes_the_same_draws() -> None:
    curve, lengths = make_curve([5.0, 20.0]), lengths_table()
    slow = generate_poisson(curve, lengths, np.random.default_rng(3))
    fast = generate_poisson(curve, lengths, np.random.default_rng(3), time_compression=4.0)
    assert len(fast) == len(slow)
    np.testing.assert_allclose(fast.arrival_s, slow.arrival_s / 4.0, rtol=1e-12, atol=1e-9)
    assert fast.arrival_s.max() < 1200.0 / 4.0
    assert fast.mean_rps == pytest.approx(4.0 * slow.mean_rps)
    late = generate_poisson(curve, lengths, np.random.default_rng(3), time_compression=4.0, start_s=150.0)
    assert late.arrival_s.max() < 150.0
    assert abs(len(late) - 20.0 * 600.0) < 5.0 * math.sqrt(20.0 * 600.0)


def test_generate_poisson_resamples_whole_rows() -> None:
    trace = generate_poisson(make_curve([30.0]), lengths_table(), np.random.default_rng(11))
    assert trace.cached_tokens is not None
    assert np.array_equal(trace.output_tokens, 2 * trace.input_tokens)
    assert np.array_equal(trace.cached_tokens, trace.input_tokens - 1)
    assert set(trace.input_tokens.tolist()) == set(range(1, 51))
    unknown = generate_poisson(make_curve([1.0]), make_trace([0.0]), np.random.default_rng(1))
    assert unknown.cached_tokens is None


@pytest.mark.parametrize(
    "kwargs",
    [{"rate_scale": -1.0}, {"time_compression": 0.0}, {"time_compression": math.inf}, {"duration_s": -5.0}],
)
def test_generate_poisson_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        generate_poisson(make_curve([1.0]), lengths_table(), np.random.default_rng(0), **kwargs)  # type: ignore[arg-type]


def test_generate_poisson_on_a_day_of_m_large() -> None:
    day = read_rate_curve(bundled_trace_path("servegen_language_m-large_rate.csv")).day(0)
    conv = read_trace(bundled_trace_path("AzureLLMInferenceTrace_conv.csv"))
    hour = generate_poisson(day, conv, np.random.default_rng(0), duration_s=3600.0, start_s=12 * 3600.0)
    expected = float(day.rate_rps[72:78].sum()) * 600.0
    assert abs(len(hour) - expected) < 5.0 * math.sqrt(expected)
