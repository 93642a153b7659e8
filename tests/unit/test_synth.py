"""The generator of Mooncake-format traces with shared prefixes (heteroscale.sim.synth, `gen-trace`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from heteroscale.cli.main import main
from heteroscale.config.bundled import TRACES, data_path
from heteroscale.errors import ConfigError
from heteroscale.sim.synth import PrefixReuseSpec, expected_hit_ratio, generate_prefix_trace, zipf_weights
from heteroscale.sim.traces import RequestTrace, read_mooncake, read_trace

AZURE_CODE = data_path("traces", TRACES["azure-code"])
BUNDLED = data_path("traces", TRACES["prefix-reuse-code"])


@pytest.fixture(scope="module")
def code() -> RequestTrace:
    return read_trace(AZURE_CODE)


def source(n: int, own_tokens: int = 700, gap_s: float = 0.5) -> RequestTrace:
    return RequestTrace(
        name="src",
        arrival_s=np.arange(n, dtype=np.float64) * gap_s,
        input_tokens=np.full(n, own_tokens, dtype=np.int64),
        output_tokens=np.arange(1, n + 1, dtype=np.int64),
        cached_tokens=None,
    )


def text(trace_source: RequestTrace, spec: PrefixReuseSpec) -> str:
    return "".join(generate_prefix_trace(trace_source, spec).jsonl_lines())


def written(tmp_path: Path, body: str, name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def measured_hit_ratio(path: Path, block_tokens: int = 512) -> float:
    back = read_mooncake(path, block_tokens=block_tokens)
    assert back.cached_tokens is not None
    return float(back.cached_tokens.sum() / back.input_tokens.sum())


def test_the_bundled_trace_is_what_the_generator_writes_with_its_defaults(tmp_path: Path) -> None:
    out = tmp_path / "regen.jsonl"
    assert main(["gen-trace", "--arrivals", "azure-code", "--out", str(out), "--json"]) == 0
    assert out.read_bytes() == BUNDLED.read_bytes()
    assert BUNDLED.stat().st_size < 2_000_000


def test_same_seed_same_bytes_other_seed_other_prefixes(code: RequestTrace) -> None:
    first = text(code, PrefixReuseSpec(seed=3))
    assert text(code, PrefixReuseSpec(seed=3)) == first
    assert text(code, PrefixReuseSpec(seed=4)) != first


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_the_measured_hit_ratio_is_the_configured_one(tmp_path: Path, code: RequestTrace, target: float) -> None:
    # what the simulator derives from hash_ids (an unbounded cache) is within ±0.02 of the target; the
    # targets are 0.2 apart, so the tolerance is a tenth of the effect
    generated = generate_prefix_trace(code, PrefixReuseSpec(hit_ratio=target))
    path = written(tmp_path, "".join(generated.jsonl_lines()))
    measured = measured_hit_ratio(path)
    assert measured == pytest.approx(target, abs=0.02)
    assert generated.hit_ratio == pytest.approx(measured, abs=1e-12)  # the generator's own count agrees
    assert generated.expected_hit_ratio == pytest.approx(target, abs=0.005)  # solved up to block rounding


def test_the_bundled_trace_measures_half_its_prompt_tokens_cached() -> None:
    back = read_mooncake(BUNDLED)
    code = read_trace(AZURE_CODE)
    assert len(back) == len(code)
    assert np.array_equal(back.output_tokens, code.output_tokens)
    assert np.allclose(back.arrival_s, code.arrival_s, atol=5e-4)  # ms timestamps
    assert bool((back.input_tokens >= code.input_tokens).all())  # the own part plus a prefix
    assert measured_hit_ratio(BUNDLED) == pytest.approx(0.5, abs=0.02)


def test_rows_are_prefix_blocks_then_fresh_blocks_of_the_own_part(tmp_path: Path) -> None:
    spec = PrefixReuseSpec(prefixes=3, shared_fraction=1.0, hit_ratio=0.6, length_sigma=0.0, block_tokens=100)
    generated = generate_prefix_trace(source(200, own_tokens=250), spec)
    rows = [json.loads(line) for line in generated.jsonl_lines()]
    assert list(rows[0]) == ["timestamp", "input_length", "output_length", "hash_ids"]
    seen: list[int] = []
    heads: set[tuple[int, ...]] = set()
    for k, row in enumerate(rows):
        ids = row["hash_ids"]
        assert row["timestamp"] == k * 500 and row["output_length"] == k + 1
        head, own = tuple(ids[:-3]), ids[-3:]  # 250 own tokens: 3 fresh blocks of 100
        assert row["input_length"] == 100 * len(head) + 250
        assert not set(own) & set(seen)  # the own part is never shared
        assert head in heads or not set(head) & set(seen)  # a prefix is all known or all new
        heads.add(head)
        for block in ids:
            if block not in seen:
                assert block == len(seen)  # ids numbered in order of first use
                seen.append(block)
    # σ = 0: the three prefixes are equally long, as solved
    assert {len(h) for h in heads} == set(generated.prefix_blocks.tolist()) and len(heads) == 3
    measured = measured_hit_ratio(written(tmp_path, "".join(generated.jsonl_lines())), block_tokens=100)
    assert measured == pytest.approx(generated.hit_ratio)


def test_expected_hit_ratio_counts_every_use_but_the_first() -> None:
    # one prefix of 2 blocks used by all of 4 requests: 3 hits of 2 blocks over 4 · (2 blocks + 50)
    ratio = expected_hit_ratio(np.array([2]), np.array([1.0]), 1.0, np.full(4, 50, dtype=np.int64), 100)
    assert ratio == pytest.approx(3 * 200 / (4 * 250))
    assert zipf_weights(3, 1.0).tolist() == pytest.approx([6 / 11, 3 / 11, 2 / 11])
    assert zipf_weights(4, 0.0).tolist() == pytest.approx([0.25] * 4)


def test_hit_ratio_zero_shares_nothing(tmp_path: Path) -> None:
    generated = generate_prefix_trace(source(50), PrefixReuseSpec(hit_ratio=0.0))
    assert generated.hit_ratio == 0.0
    assert measured_hit_ratio(written(tmp_path, "".join(generated.jsonl_lines()))) == 0.0


def test_an_unreachable_hit_ratio_says_why() -> None:
    # 200 prefixes over 20 requests: nearly every use is a first use, which misses
    with pytest.raises(ConfigError, match=r"^hit_ratio 0\.9 is out of reach: at most about 0\.\d+ with 200 prefixes"):
        generate_prefix_trace(source(20), PrefixReuseSpec(hit_ratio=0.9))


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("hit_ratio", 1.0, "hit_ratio must be in [0, 1)"),
        ("hit_ratio", float("nan"), "hit_ratio must be in [0, 1)"),
        ("prefixes", 0, "prefixes must be a positive integer"),
        ("zipf_s", -1.0, "zipf_s must be a number ≥ 0"),
        ("shared_fraction", 0.0, "shared_fraction must be in (0, 1]"),
        ("length_sigma", 5.0, "length_sigma must be in [0, 3]"),
        ("block_tokens", 0, "block_tokens must be a positive integer"),
        ("seed", -1, "seed must be an integer ≥ 0"),
    ],
)
def test_bad_parameters_are_one_line_naming_them(field: str, value: float, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        PrefixReuseSpec(**{field: value})  # type: ignore[arg-type]
    assert str(info.value).startswith(problem)


def test_gen_trace_prints_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arrivals = tmp_path / "src.csv"
    rows = [f"2023-11-16 18:17:{s:02d}.0000000,{600 + s},{5 + s}" for s in range(40)]
    arrivals.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["gen-trace", "--arrivals", str(arrivals), "--out", str(out), "--prefixes", "2", "--hit-ratio", "0.4"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["requests"] == 40 and result["hit_ratio_target"] == 0.4
    assert result["hit_ratio"] == pytest.approx(measured_hit_ratio(out), abs=1e-4)
    assert result["bytes"] == out.stat().st_size
    assert main(args) == 0
    assert "token hit ratio (unbounded cache)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--hit-ratio", "1.5"], "hit_ratio must be in [0, 1)"),
        (["--out", "/no/such/dir/x.jsonl"], "--out /no/such/dir/x.jsonl: no such directory"),
        (["--arrivals", "/no/such/trace.csv"], "/no/such/trace.csv: no such file"),
    ],
)
def test_gen_trace_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    base = ["gen-trace", "--out", str(tmp_path / "x.jsonl")]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err, err
