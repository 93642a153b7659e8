"""Mixed loads: a load made of parts (Poisson or trace replays) merged in arrival order (heteroscale.sim)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from heteroscale.config import load_scenario
from heteroscale.errors import ConfigError
from heteroscale.sim.runner import build_trace
from heteroscale.sim.traces import RequestTrace, merge
from tests.unit.config_builders import one_line_error
from tests.unit.variant_builders import scenario_dict, trace, write

# --- mixed loads ----------------------------------------------------------------------------------


def test_a_load_mix_loads_as_parts(tmp_path: Path) -> None:
    part = {"kind": "trace", "trace": "azure-conv", "start_s": 30, "time_compression": 4.0}
    scenario = load_scenario(str(write(tmp_path, scenario_dict(**{"services.0.load.mix": [part, part]}))))
    load = scenario.services[0].load
    assert len(load.mixed_with) == 2
    assert load.trace_path.endswith("AzureLLMInferenceTrace_code.csv")
    first = load.mixed_with[0]
    assert first.trace_path.endswith("AzureLLMInferenceTrace_conv.csv")
    assert (first.start_s, first.time_compression, first.mixed_with) == (30.0, 4.0, ())


@pytest.mark.parametrize(
    ("mix", "where", "problem"),
    [
        (
            [{"kind": "trace", "trace": "azure-conv", "mix": [{"kind": "trace", "trace": "azure-code"}]}],
            "services[0].load",
            "a part of a load mix cannot have a mix of its own",
        ),
        ([{"kind": "trace", "trace": "nosuch"}], "services[0].load.mix[0].trace", "request trace 'nosuch'"),
        ([{"kind": "trace", "trace": "azure-conv", "copies": 0}], "services[0].load.mix[0].copies", "greater"),
        (
            [{"kind": "trace", "trace": "azure-conv", "rate_curve": "servegen-m-large"}],
            "services[0].load.mix[0]",
            "rate_curve is only used by kind 'poisson'",
        ),
    ],
)
def test_a_bad_load_mix_is_one_line_naming_it(
    tmp_path: Path, mix: list[dict[str, Any]], where: str, problem: str
) -> None:
    message = one_line_error(write(tmp_path, scenario_dict(**{"services.0.load.mix": mix})))
    assert f": {where}" in message, message
    assert problem in message, message


def mix_shift_load() -> Any:
    (run,) = load_scenario("mix-shift").services
    assert len(run.load.mixed_with) == 1 and run.load.mixed_with[0].mixed_with == ()
    return run.load


def columns(t: RequestTrace) -> tuple[np.ndarray, ...]:
    cached = np.zeros(0) if t.cached_tokens is None else t.cached_tokens
    return t.arrival_s, t.input_tokens, t.output_tokens, cached


def test_a_mixed_poisson_trace_is_its_parts_merged_deterministically() -> None:
    load = mix_shift_load()
    mixed = build_trace(load, np.random.default_rng([7, 0]), "assist", 300.0)
    # the parts are drawn one after the other from the same generator
    rng = np.random.default_rng([7, 0])
    alone = build_trace(dataclasses.replace(load, mixed_with=()), rng, "assist", 300.0)
    part = build_trace(load.mixed_with[0], rng, "assist", 300.0)
    assert len(alone) > 0 and len(part) > 0
    assert len(mixed) == len(alone) + len(part)
    assert mixed.name == "assist"
    assert bool((np.diff(mixed.arrival_s) >= 0).all())
    assert float(mixed.arrival_s[0]) >= 0.0 and float(mixed.arrival_s[-1]) <= 300.0
    assert np.array_equal(np.sort(mixed.arrival_s), np.sort(np.concatenate([alone.arrival_s, part.arrival_s])))
    assert np.array_equal(np.sort(mixed.input_tokens), np.sort(np.concatenate([alone.input_tokens, part.input_tokens])))
    again = build_trace(load, np.random.default_rng([7, 0]), "assist", 300.0)
    assert all(np.array_equal(a, b) for a, b in zip(columns(mixed), columns(again), strict=True))
    other = build_trace(load, np.random.default_rng([8, 0]), "assist", 300.0)
    assert not np.array_equal(mixed.arrival_s[:50], other.arrival_s[:50])


def test_a_mixed_trace_replay_is_both_traces_in_arrival_order(tmp_path: Path) -> None:
    part = {"kind": "trace", "trace": "azure-conv", "start_s": 600, "time_compression": 4.0}
    (run,) = load_scenario(str(write(tmp_path, scenario_dict(**{"services.0.load.mix": [part]})))).services
    rng = np.random.default_rng(0)
    mixed = build_trace(run.load, rng, "code-32b")
    code = build_trace(dataclasses.replace(run.load, mixed_with=()), rng, "code-32b")
    conv = build_trace(run.load.mixed_with[0], rng, "code-32b")
    assert len(mixed) == len(code) + len(conv)
    assert bool((np.diff(mixed.arrival_s) >= 0).all())
    assert float(conv.arrival_s[0]) >= 0.0  # the part's start_s is rebased to 0 like any load
    assert np.array_equal(
        np.sort(mixed.output_tokens), np.sort(np.concatenate([code.output_tokens, conv.output_tokens]))
    )


def test_merge_interleaves_by_arrival_and_keeps_source_order_on_ties() -> None:
    merged = merge([trace([0.0, 1.0, 2.0], tag=1), trace([1.0, 2.0, 5.0], tag=2)], "svc")
    assert merged.name == "svc"
    assert merged.arrival_s.tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 5.0]
    assert merged.input_tokens.tolist() == [1, 1, 2, 1, 2, 2]  # on a tie the earlier source first
    assert merged.output_tokens.tolist() == [1, 2, 1, 3, 2, 3]  # each source's own order kept
    assert merged.cached_tokens is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_is_stable_on_many_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sources = [sorted(rng.integers(0, 5, size=40).astype(float).tolist()) for _ in range(3)]
    merged = merge([trace(arrivals, tag=k + 1) for k, arrivals in enumerate(sources)], "svc")
    # oracle: by arrival, then source, then position within the source
    expected = sorted((t, k + 1, i + 1) for k, arrivals in enumerate(sources) for i, t in enumerate(arrivals))
    got = list(zip(merged.arrival_s.tolist(), merged.input_tokens.tolist(), merged.output_tokens.tolist(), strict=True))
    assert got == expected


@pytest.mark.parametrize(
    ("cached_a", "cached_b", "expected"),
    [
        ([0, 0], None, [0, 0, 0, 0]),
        (None, [1, 2], [0, 1, 2, 0]),  # a source without cache hits counts 0 cached tokens
        ([5, 6], [1, 2], [5, 1, 2, 6]),
        (None, None, None),
    ],
)
def test_merge_keeps_cached_tokens_per_request(
    cached_a: list[int] | None, cached_b: list[int] | None, expected: list[int] | None
) -> None:
    a = trace([0.0, 3.0], tag=10, cached=cached_a)
    b = trace([1.0, 2.0], tag=10, cached=cached_b)
    merged = merge([a, b], "svc")
    got = None if merged.cached_tokens is None else merged.cached_tokens.tolist()
    assert got == expected


def test_merge_sums_the_row_counts_and_needs_a_source() -> None:
    merged = merge([trace([0.0], 1, skipped_rows=2), trace([], 2), trace([1.0], 3, failed_rows_excluded=4)], "svc")
    assert (len(merged), merged.skipped_rows, merged.failed_rows_excluded) == (2, 2, 4)
    single = trace([0.0, 1.0], 1)
    assert merge([single], "svc") is single
    with pytest.raises(ConfigError, match="svc: nothing to merge"):
        merge([], "svc")
