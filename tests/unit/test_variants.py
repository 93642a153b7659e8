"""Scenario variants (a named policy + options + shapes that `compare` runs) and the `compare` list:
loading, errors, the resolved config and the `compare` command (mixed loads: test_mixed_loads.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.cli.main import main
from heteroscale.config import load_scenario, resolved_config_dict, write_resolved_config
from heteroscale.controller.journal import decision_records, read_all
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.experiments.compare import DEFAULT_POLICIES, default_policies
from tests.unit.config_builders import DELETE, one_line_error
from tests.unit.variant_builders import line_of, scenario_dict, write

# --- builders -------------------------------------------------------------------------------------


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
