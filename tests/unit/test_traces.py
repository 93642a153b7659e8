"""Request traces, rate curves and synthetic load (heteroscale.sim.traces / heteroscale.sim.loadgen)."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest

from heteroscale.errors import ConfigError, TraceError
from heteroscale.sim.traces import (
    bundled_trace_path,
    read_azure,
    read_burstgpt,
    read_mooncake,
    read_trace,
    superpose,
)
from tests.unit.trace_builders import (
    BURST_HEADER,
    azure_text,
    burst_row,
    make_trace,
    mc,
    mooncake_text,
    write,
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
