"""Scenario variants (a named policy + options + shapes that `compare` runs), the `compare` list, and
mixed loads (several sources superposed for one service): loading, errors, traces, the resolved
config and the `compare` command."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from heteroscale.cli.main import main
from heteroscale.config import load_scenario, resolved_config_dict, write_resolved_config
from heteroscale.controller.journal import decision_records, read_all
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.errors import ConfigError
from heteroscale.experiments.compare import DEFAULT_POLICIES, default_policies
from heteroscale.sim.runner import build_trace
from heteroscale.sim.traces import RequestTrace, merge

# --- builders -------------------------------------------------------------------------------------

DELETE = object()


def scenario_dict(**changes: Any) -> dict[str, Any]:
    """One small service (Qwen3-32B on H100 TP2, both roles, on `small-mixed`), a minute of the Azure
    code trace, HeteroScale with theta_out 0.2, and two variants that `compare` runs by default.
    ``changes`` maps dotted paths (``variants.adaptive.options``) to values (or DELETE)."""
    base: dict[str, Any] = {
        "kind": "scenario",
        "name": "tiny-variants",
        "topology": "small-mixed",
        "simulation": {"fidelity": "request", "duration_s": 60, "seed": 0},
        "services": [
            {
                "name": "code-32b",
                "model": "qwen3-32b",
                "roles": {
                    "prefill": {"shapes": [{"sku": "h100-sxm", "tp": 2}], "min": 1, "max": 4},
                    "decode": {"shapes": [{"sku": "h100-sxm", "tp": 2}], "min": 1, "max": 4},
                },
                "pd_ratio": 1.0,
                "slo": {"ttft_s": 2.0, "tbt_s": 0.1},
                "affinity": "s2",
                "load": {"kind": "trace", "trace": "azure-code", "time_compression": 2.0},
                "policy": {"name": "heteroscale", "prefill": 1, "decode": 1, "options": {"theta_out": 0.2}},
            }
        ],
        "variants": {
            "adaptive": {
                "policy": "heteroscale",
                "description": "adaptive P/D ratio",
                "options": {"adaptive_ratio": {"min_ratio": 0.5, "max_ratio": 4.0}},
            },
            "fixed-r2": {"policy": "heteroscale", "options": {"pd_ratio": 2.0}},
        },
        "compare": ["adaptive", "fixed-r2"],
    }
    out = copy.deepcopy(base)
    for dotted, value in changes.items():
        keys: list[Any] = [int(k) if k.isdigit() else k for k in dotted.split(".")]
        target: Any = out
        for key in keys[:-1]:
            target = target[key]
        if value is DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return out


def write(folder: Path, content: dict[str, Any], name: str = "scenario.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def one_line_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    return message


def lines_of(path: Path, needle: str) -> list[int]:
    """1-based lines of ``path`` containing ``needle``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [i for i, line in enumerate(lines, 1) if needle in line]


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line of ``path`` containing ``needle``."""
    return lines_of(path, needle)[0]


def trace(arrivals: list[float], tag: int, cached: list[int] | None = None, **kw: Any) -> RequestTrace:
    """A request list whose input tokens are ``tag`` (to tell the sources apart after a merge)."""
    n = len(arrivals)
    return RequestTrace(
        name=kw.pop("name", f"t{tag}"),
        arrival_s=np.array(arrivals, dtype=np.float64),
        input_tokens=np.full(n, tag, dtype=np.int64),
        output_tokens=np.arange(1, n + 1, dtype=np.int64),
        cached_tokens=None if cached is None else np.array(cached, dtype=np.int64),
        **kw,
    )


# --- variants and the compare list --------------------------------------------------------------


def test_variants_and_the_compare_list_load(tmp_path: Path) -> None:
    scenario = load_scenario(str(write(tmp_path, scenario_dict(**{"variants.hpa-plain": {"policy": "hpa"}}))))
    assert list(scenario.variants) == ["adaptive", "fixed-r2", "hpa-plain"]
    assert scenario.compare_policies == ("adaptive", "fixed-r2")
    assert default_policies(scenario) == ("adaptive", "fixed-r2")
    adaptive = scenario.variants["adaptive"]
    assert (adaptive.policy, adaptive.description, adaptive.shapes) == ("heteroscale", "adaptive P/D ratio", ())
    assert dict(adaptive.options) == {"adaptive_ratio": {"min_ratio": 0.5, "max_ratio": 4.0}}


def test_without_a_compare_list_compare_runs_the_built_in_contenders(tmp_path: Path) -> None:
    scenario = load_scenario(str(write(tmp_path, scenario_dict(compare=DELETE))))
    assert scenario.compare_policies == ()
    # the service gives heteroscale options (theta_out): they run only in the marked row, beside the plain one
    expected = list(DEFAULT_POLICIES)
    expected.insert(expected.index("heteroscale") + 1, "heteroscale[scenario-options]")
    assert default_policies(scenario) == tuple(expected)
    plain = load_scenario(str(write(tmp_path, scenario_dict(compare=DELETE, **{"services.0.policy.options": DELETE}))))
    assert default_policies(plain) == DEFAULT_POLICIES


@pytest.mark.parametrize(
    ("variant", "service_options", "expected"),
    [
        # same policy as the service's: the service's options underneath, the variant's win
        ("adaptive", {"theta_out": 0.2}, {"theta_out": 0.2, "adaptive_ratio": {"min_ratio": 0.5, "max_ratio": 4.0}}),
        ("fixed-r2", {"theta_out": 0.2, "pd_ratio": 1.5}, {"theta_out": 0.2, "pd_ratio": 2.0}),
        ("fixed-r2", {}, {"pd_ratio": 2.0}),
        # another policy: only the variant's own
        ("hpa-plain", {"theta_out": 0.2}, {}),
        ("hpa-tight", {"theta_out": 0.2}, {"tolerance": 0.05}),
    ],
)
def test_variant_options_merge_over_the_services_own(
    tmp_path: Path, variant: str, service_options: dict[str, object], expected: dict[str, object]
) -> None:
    data = scenario_dict(
        **{
            "services.0.policy.options": service_options,
            "variants.hpa-plain": {"policy": "hpa"},
            "variants.hpa-tight": {"policy": "hpa", "options": {"tolerance": 0.05}},
        }
    )
    scenario = load_scenario(str(write(tmp_path, data)))
    (run,) = scenario.services
    assert scenario.variants[variant].service_options(run) == expected


# The service itself may run decode on H100 or A100 (`small-mixed` has both, in different big pods,
# hence affinity `cluster`): a variant picks among these shapes, whose targets its pressure test gives.
TWO_DECODE_SHAPES: dict[str, Any] = {
    "services.0.affinity": "cluster",
    "services.0.roles.decode.shapes": [{"sku": "h100-sxm", "tp": 2}, {"sku": "a100-80g", "tp": 2}],
}


def test_variant_shapes_replace_only_the_roles_they_name(tmp_path: Path) -> None:
    data = scenario_dict(
        **TWO_DECODE_SHAPES,
        **{"variants.adaptive.shapes": {"code-32b": {"decode": [{"sku": "A100-80GB", "tp": 2}]}}},
    )
    scenario = load_scenario(str(write(tmp_path, data)))
    (run,) = scenario.services
    variant = scenario.variants["adaptive"]
    h100 = InstanceShape(Role.PREFILL, "h100-sxm", 2)
    a100 = InstanceShape(Role.DECODE, "a100-80g", 2)  # the alias resolved
    assert run.spec.decode_shapes == (InstanceShape(Role.DECODE, "h100-sxm", 2), a100)
    assert variant.shapes == (("code-32b", (h100,), (a100,)),)
    changed = variant.service_spec(run.spec)
    assert (changed.prefill_shapes, changed.decode_shapes) == ((h100,), (a100,))
    assert dataclasses.replace(changed, decode_shapes=run.spec.decode_shapes) == run.spec
    assert scenario.variants["fixed-r2"].service_spec(run.spec) == run.spec
    assert variant.service_spec(dataclasses.replace(run.spec, name="other")).name == "other"  # no shapes for it


def test_variant_shapes_keep_their_own_order_so_may_change_the_preferred_shape(tmp_path: Path) -> None:
    picked = [{"sku": "a100-80g", "tp": 2}, {"sku": "h100-sxm", "tp": 2}]
    data = scenario_dict(**TWO_DECODE_SHAPES, **{"variants.adaptive.shapes": {"code-32b": {"decode": picked}}})
    scenario = load_scenario(str(write(tmp_path, data)))
    (run,) = scenario.services
    changed = scenario.variants["adaptive"].service_spec(run.spec)
    assert run.spec.preferred_shape(Role.DECODE) == InstanceShape(Role.DECODE, "h100-sxm", 2)
    assert changed.decode_shapes == tuple(reversed(run.spec.decode_shapes))
    assert changed.preferred_shape(Role.DECODE) == InstanceShape(Role.DECODE, "a100-80g", 2)
    assert changed.prefill_shapes == run.spec.prefill_shapes


VARIANT_SHAPES = "variants.adaptive.shapes"


@pytest.mark.parametrize(
    ("changes", "where", "problem"),
    [
        (
            {VARIANT_SHAPES: {"code-32b": {"decode": [{"sku": "h999", "tp": 2}]}}},
            "variants.adaptive.shapes.code-32b.decode[0].sku",
            "unknown GPU SKU 'h999'",
        ),
        # a known SKU, even one the topology lacks, or a TP that does not divide: not the service's
        (
            {VARIANT_SHAPES: {"code-32b": {"prefill": [{"sku": "h800", "tp": 2}]}}},
            "variants.adaptive.shapes.code-32b.prefill[0]",
            "h800 tp2 is not among service 'code-32b''s prefill shapes (h100-sxm tp2)",
        ),
        (
            {VARIANT_SHAPES: {"code-32b": {"decode": [{"sku": "h100-sxm", "tp": 3}]}}},
            "variants.adaptive.shapes.code-32b.decode[0]",
            "h100-sxm tp3 is not among service 'code-32b''s decode shapes (h100-sxm tp2)",
        ),
        (
            {VARIANT_SHAPES: {"code-32b": {"decode": [{"sku": "h100-sxm", "tp": 2}, {"sku": "h100-sxm", "tp": 2}]}}},
            "variants.adaptive.shapes.code-32b.decode[1]",
            "h100-sxm tp2 is listed twice",
        ),
        (
            {VARIANT_SHAPES: {"chat-8b": {"decode": [{"sku": "h100-sxm", "tp": 2}]}}},
            "variants.adaptive.shapes.chat-8b",
            "no service 'chat-8b' in this scenario",
        ),
        ({VARIANT_SHAPES: {"code-32b": {"decode": []}}}, "variants.adaptive.shapes.code-32b.decode", "at least 1"),
        ({VARIANT_SHAPES: {"code-32b": {"gpu": []}}}, "variants.adaptive.shapes.code-32b.gpu", "unknown field"),
        ({"variants.hpa": {"policy": "heteroscale"}}, "variants.hpa", "variant 'hpa' shadows a policy"),
        ({"variants.static-peak": {"policy": "hpa"}}, "variants.static-peak", "shadows a policy"),
        ({"variants.signal:tbt": {"policy": "hpa"}}, "variants.signal:tbt", "should match pattern"),
        ({"compare": ["adaptive", "magic"]}, "compare[1]", "'magic' is neither a policy nor a variant"),
        ({"variants.adaptive.options.bogus": 1}, "variants.adaptive.options", "heteroscale: unknown option 'bogus'"),
        (
            {"variants.adaptive.options.adaptive_ratio": {"min_ratio": 5.0, "max_ratio": 1.0}},
            "variants.adaptive.options",
            "heteroscale.adaptive_ratio: adaptive ratio needs 0 < min_ratio ≤ max_ratio",
        ),
        (
            {"variants.adaptive.options.adaptive_ratio": {"smoothing": 60}},
            "variants.adaptive.options",
            "heteroscale.adaptive_ratio: unknown option 'smoothing'",
        ),
        ({"variants.fixed-r2.policy": "nope"}, "variants.fixed-r2.policy", "unknown policy 'nope'"),
        ({"variants.fixed-r2.policy": ""}, "variants.fixed-r2.policy", "at least 1"),
        ({"variants.fixed-r2.tuning": 1}, "variants.fixed-r2.tuning", "unknown field"),
    ],
)
def test_a_bad_variant_or_compare_list_is_one_line_naming_it(
    tmp_path: Path, changes: dict[str, Any], where: str, problem: str
) -> None:
    message = one_line_error(write(tmp_path, scenario_dict(**changes)))
    assert f": {where}" in message, message
    assert problem in message, message
    assert re.search(r"\(line \d+\)$", message), message


def test_compare_may_name_policies_and_static_peak_too(tmp_path: Path) -> None:
    scenario = load_scenario(str(write(tmp_path, scenario_dict(compare=["adaptive", "hpa", "static-peak"]))))
    assert scenario.compare_policies == ("adaptive", "hpa", "static-peak")


def test_a_bad_variant_shape_names_its_own_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, scenario_dict(**{VARIANT_SHAPES: {"code-32b": {"decode": [{"sku": "h999", "tp": 2}]}}}))
    message = one_line_error(path)
    assert ": variants.adaptive.shapes.code-32b.decode[0].sku: unknown GPU SKU 'h999'" in message, message
    assert message.endswith(f"(line {line_of(path, 'h999')})"), message


def test_a_variant_shape_not_among_the_services_names_its_entry_and_line(tmp_path: Path) -> None:
    # the service runs decode on H100 only: an A100 decode shape has no target from its pressure test
    picked = [{"sku": "h100-sxm", "tp": 2}, {"sku": "a100-80g", "tp": 2}]
    path = write(
        tmp_path, scenario_dict(**{"services.0.affinity": "cluster", VARIANT_SHAPES: {"code-32b": {"decode": picked}}})
    )
    message = one_line_error(path)
    assert (
        ": variants.adaptive.shapes.code-32b.decode[1]: a100-80g tp2 is not among service 'code-32b''s decode "
        "shapes (h100-sxm tp2); a variant picks from them" in message
    ), message
    assert message.endswith(f"(line {line_of(path, 'a100-80g')})"), message
    # listed in the service itself, the same variant loads
    fixed = scenario_dict(**TWO_DECODE_SHAPES, **{VARIANT_SHAPES: {"code-32b": {"decode": picked}}})
    (run,) = load_scenario(str(write(tmp_path, fixed))).services
    assert len(run.spec.decode_shapes) == 2


def test_a_variant_shape_listed_twice_names_the_second_entry_and_line(tmp_path: Path) -> None:
    twice = [{"sku": "a100-80g", "tp": 2}, {"sku": "h100-sxm", "tp": 2}, {"sku": "A100-80GB", "tp": 2}]
    path = write(tmp_path, scenario_dict(**TWO_DECODE_SHAPES, **{VARIANT_SHAPES: {"code-32b": {"decode": twice}}}))
    message = one_line_error(path)
    assert ": variants.adaptive.shapes.code-32b.decode[2]: a100-80g tp2 is listed twice" in message, message
    assert message.endswith(f"(line {line_of(path, 'A100-80GB')})"), message


def test_an_unknown_variant_policy_names_the_policy_field(tmp_path: Path) -> None:
    path = write(tmp_path, scenario_dict(**{"variants.fixed-r2.policy": "nope"}))
    message = one_line_error(path)
    assert ": variants.fixed-r2.policy: unknown policy 'nope'" in message, message
    assert message.endswith(f"(line {line_of(path, 'policy: nope')})"), message


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


# --- resolved config ------------------------------------------------------------------------------


def test_resolved_config_round_trips_variants_compare_and_mix(tmp_path: Path) -> None:
    data = scenario_dict(
        **{
            **TWO_DECODE_SHAPES,
            "services.0.load.mix": [{"kind": "trace", "trace": "azure-conv", "start_s": 30, "time_compression": 4.0}],
            "variants.adaptive.shapes": {"code-32b": {"decode": [{"sku": "a100-80g", "tp": 2}]}},
            "variants.hpa-plain": {"policy": "hpa"},
            "compare": ["adaptive", "fixed-r2", "hpa-plain", "static-peak"],
        }
    )
    scenario = load_scenario(str(write(tmp_path, data)))
    plain = resolved_config_dict(scenario)
    yaml.safe_dump(plain)  # plain data only
    assert plain["compare"] == ["adaptive", "fixed-r2", "hpa-plain", "static-peak"]
    assert plain["variants"]["adaptive"]["shapes"]["code-32b"]["decode"] == [{"sku": "a100-80g", "tp": 2}]
    assert len(plain["services"][0]["load"]["mix"]) == 1
    again = load_scenario(str(write_resolved_config(scenario, tmp_path / "resolved" / "config.yaml")))
    assert again.variants == scenario.variants
    assert again.compare_policies == scenario.compare_policies
    assert again.services[0].load == scenario.services[0].load
    assert dataclasses.replace(again, source=scenario.source) == scenario


def test_the_mix_shift_scenario_round_trips(tmp_path: Path) -> None:
    scenario = load_scenario("mix-shift")
    assert scenario.compare_policies[0] == "adaptive" and "static-peak" in scenario.compare_policies
    again = load_scenario(str(write_resolved_config(scenario, tmp_path / "config.yaml")))
    assert dataclasses.replace(again, source=scenario.source) == scenario


# --- the compare command --------------------------------------------------------------------------


def steps_of(journal: Path, name: str) -> list[dict[str, Any]]:
    records = list(decision_records(read_all(journal)))  # one record per decision (not the intents)
    assert records, journal
    return [s for r in records for s in r["decision"]["steps"] if s["name"] == name]


def test_compare_runs_the_scenarios_compare_list_of_variants(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, scenario_dict())
    rc = main(["compare", "--scenario", str(path), "--json", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0
    result = json.loads(out)
    assert list(result["policies"]) == ["adaptive", "fixed-r2"]
    assert {name: s["policy"] for name, s in result["policies"].items()} == {
        "adaptive": "adaptive",
        "fixed-r2": "fixed-r2",
    }
    assert result["policies"]["adaptive"]["pd_ratio_deviation"] is None  # the adaptive ratio has no fixed target
    assert all(s["requests_total"]["mean"] > 0 for s in result["policies"].values())
    # each variant ran its own options over the service's (theta_out 0.2 → hysteresis band up to 1.2)
    adaptive = tmp_path / "out" / "adaptive" / "journal.jsonl"
    fixed = tmp_path / "out" / "fixed-r2" / "journal.jsonl"
    assert steps_of(adaptive, "ratio") and not steps_of(fixed, "ratio")
    assert all(s["detail"].endswith("at r=2") for s in steps_of(fixed, "pd-ratio"))
    for journal in (adaptive, fixed):
        assert all("1.2]" in s["detail"] for s in steps_of(journal, "hysteresis"))


def test_compare_with_an_unknown_name_lists_the_variants(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, scenario_dict())
    rc = main(["compare", "--scenario", str(path), "--policies", "adaptive,nope", "--json"])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    err = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert len(err) == 1, captured.err
    assert "unknown policy 'nope'" in err[0]
    assert "variants of tiny-variants: adaptive, fixed-r2" in err[0]
    assert "Traceback" not in captured.err


def test_a_variant_picking_one_of_the_services_shapes_runs_on_it_in_compare(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the pressure test gives targets for both decode shapes; the adaptive variant decodes on A100 only
    a100 = {"code-32b": {"decode": [{"sku": "a100-80g", "tp": 2}]}}
    data = scenario_dict(**TWO_DECODE_SHAPES, **{"variants.adaptive.shapes": a100})
    out = tmp_path / "out"
    rc = main(["compare", "--scenario", str(write(tmp_path, data)), "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads(captured.out)
    targets = dict(result["targets"]["code-32b"]["decode_tps_per_instance"])
    assert set(targets) == {"decode:h100-sxm:tp2", "decode:a100-80g:tp2"}
    adaptive = result["policies"]["adaptive"]
    assert adaptive["requests_total"]["mean"] > 0
    assert adaptive["gpu_hours_by_sku"]["a100-80g"]["mean"] == adaptive["gpu_hours_by_role"]["decode"]["mean"] > 0
    records = list(decision_records(read_all(out / "adaptive" / "journal.jsonl")))
    launched = [launch["shape"] for r in records for launch in r["plan"]["launches"] if launch["role"] == "decode"]
    assert launched and all(shape["sku"] == "a100-80g" for shape in launched)
    # sized with the A100 target, and the adaptive ratio estimated with it
    a100_target = f"{targets['decode:a100-80g:tp2']:.2f}"
    assert any(a100_target in r["recommendation"]["detail"] for r in records), records[0]["recommendation"]
    assert steps_of(out / "adaptive" / "journal.jsonl", "ratio")


def test_compare_rejects_a_variant_shape_outside_the_services_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = scenario_dict(
        **{
            "services.0.affinity": "cluster",
            "variants.fixed-r2.shapes": {"code-32b": {"decode": [{"sku": "a100-80g", "tp": 2}]}},
        }
    )
    rc = main(["compare", "--scenario", str(write(tmp_path, data)), "--policies", "fixed-r2", "--json"])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    err = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert len(err) == 1, captured.err
    assert "variants.fixed-r2.shapes.code-32b.decode[0]: a100-80g tp2 is not among service 'code-32b''s" in err[0]
    assert "Traceback" not in captured.err
