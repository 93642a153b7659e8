"""Catalog overrides, precision, validation and the resolved config's round trip (heteroscale.config)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.config import (
    ValidationReport,
    load_catalog,
    load_scenario,
    resolved_config_dict,
    validate_file,
    write_resolved_config,
)
from heteroscale.sim.scenario import Scenario, SimSettings
from tests.unit.config_builders import (
    EMBEDDED,
    S0_A1,
    one_line_error,
    scenario_dict,
    topology_dict,
    write,
)

# --- catalog overrides and precision ---------------------------------------------------------

NEW_GPU = {
    "id": "x9",
    "name": "Example X9",
    "bf16_tflops": 500,
    "mem_gb": 100,
    "mem_bw_tbps": 5,
    "interconnect_gbps": 400,
    "nic_gbit_per_gpu": 400,
    "tdp_w": 600,
    "cost_per_gpu_hour": 1.5,
    "aliases": ["x9-100gb"],
}


def test_catalog_override_changes_one_field_and_adds_a_sku(tmp_path: Path) -> None:
    inline = topology_dict(**{f"{S0_A1}.nodes.1.sku": "x9-100gb"})
    data = scenario_dict(
        topology=inline,
        catalog={"gpus": [{"id": "H800", "cost_per_gpu_hour": 3.0}, NEW_GPU]},
        **{"services.0.roles.prefill.shapes": [{"sku": "h800", "tp": 4}, {"sku": "x9", "tp": 2}]},
    )
    scenario = load_scenario(str(write(tmp_path, "s.yaml", data)))
    assert scenario.skus["h800"].cost_per_gpu_hour == 3.0
    assert scenario.skus["h800"].bf16_tflops == load_catalog().skus["h800"].bf16_tflops
    assert scenario.skus["x9"].mem_gb == 100
    assert load_catalog().skus["h800"].cost_per_gpu_hour != 3.0  # the packaged catalog is untouched


@pytest.mark.parametrize(
    ("catalog", "field", "problem"),
    [
        (
            {"gpus": [{"id": "x9", "mem_gb": 100}]},
            "catalog.gpus[0]",
            "new GPU SKU 'x9' must give: name, bf16_tflops",
        ),
        (
            {"gpus": [{"id": "h800", "cost_per_gpu_hour": -1}]},
            "catalog.gpus[0].cost_per_gpu_hour",
            "greater than or equal to 0",
        ),
        (
            {"gpus": [{"id": "h800", "aliases": ["h20"]}]},
            "catalog.gpus[0].aliases[0]",
            "alias 'h20' already names GPU SKU 'h20'",
        ),
        (
            {"models": [{"id": "llama-3.1-70b", "kv_heads": 7}]},
            "catalog.models[0]",
            "heads (64) must be a multiple of kv_heads (7)",
        ),
    ],
)
def test_bad_catalog_override(tmp_path: Path, catalog: dict[str, Any], field: str, problem: str) -> None:
    message = one_line_error(write(tmp_path, "bad.yaml", scenario_dict(catalog=catalog)))
    assert message.startswith(f"{tmp_path / 'bad.yaml'}: {field}: "), message
    assert problem in message


def test_fp8_halves_the_weights_and_lets_a_bigger_model_fit(tmp_path: Path) -> None:
    changes = {
        "topology": "small-mixed",
        "services.0.roles.prefill.shapes": [{"sku": "h100-sxm", "tp": 1}],
        "services.0.roles.decode.shapes": [{"sku": "h100-sxm", "tp": 2}],
    }
    path = write(tmp_path, "bf16.yaml", scenario_dict(**changes))
    assert "does not fit h100-sxm tp1" in one_line_error(path)
    path = write(tmp_path, "fp8.yaml", scenario_dict(**changes, **{"services.0.precision": "fp8"}))
    scenario = load_scenario(str(path))
    assert scenario.models["llama-3.1-70b"].bytes_per_param == 1.0


def test_one_model_at_two_precisions_is_rejected(tmp_path: Path) -> None:
    data = scenario_dict()
    second = copy.deepcopy(data["services"][0]) | {"name": "chat-fp8", "precision": "fp8"}
    data["services"].append(second)
    message = one_line_error(write(tmp_path, "bad.yaml", data))
    assert "services[1].precision: model 'llama-3.1-70b' is already served at bf16" in message


def test_duplicate_service_names(tmp_path: Path) -> None:
    data = scenario_dict()
    data["services"].append(copy.deepcopy(data["services"][0]))
    message = one_line_error(write(tmp_path, "bad.yaml", data))
    assert "services[1].name: duplicate service name 'chat'" in message


# --- validate_file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "kind", "ok"),
    [
        ("s.yaml", scenario_dict(), "scenario", True),
        ("s.yaml", scenario_dict(**{"services.0.policy.decode": 99}), "scenario", False),
        ("t.yaml", topology_dict(), "topology", True),
        ("t.yaml", topology_dict(name=""), "topology", False),
        ("c.yaml", {"kind": "catalog", "gpus": [NEW_GPU]}, "catalog", True),
        ("c.yaml", {"kind": "catalog", "gpus": [{"id": "x9"}]}, "catalog", False),
        ("u.yaml", {"kind": "recipe"}, None, False),
        ("y.yaml", "kind: scenario\nname: [\n", None, False),
    ],
)
def test_validate_file_reports_kind_and_validity(
    tmp_path: Path, name: str, content: dict[str, Any] | str, kind: str | None, ok: bool
) -> None:
    path = write(tmp_path, name, content)
    report = validate_file(path)
    assert (report.kind, report.ok) == (kind, ok), report.message
    assert report.message.startswith(f"{path}: ")
    assert "\n" not in report.message
    if ok:
        assert f"valid {kind}" in report.message


def test_validate_file_on_a_missing_file() -> None:
    report = validate_file("/nonexistent/x.yaml")
    assert report == ValidationReport(kind=None, ok=False, message="/nonexistent/x.yaml: file not found")


# --- resolved config ------------------------------------------------------------------------


def _round_trip(scenario: Scenario, folder: Path) -> Scenario:
    path = write_resolved_config(scenario, folder / "resolved" / "config.yaml")
    return load_scenario(str(path))


@pytest.mark.parametrize("name", EMBEDDED)
def test_resolved_config_round_trips_through_yaml(tmp_path: Path, name: str) -> None:
    scenario = load_scenario(name)
    data = resolved_config_dict(scenario)
    yaml.safe_dump(data)  # plain data only: safe_dump refuses anything else
    again = _round_trip(scenario, tmp_path)
    assert dataclasses.replace(again, source=scenario.source) == scenario


def test_resolved_config_is_explicit(tmp_path: Path) -> None:
    data = resolved_config_dict(load_scenario("small-mixed"))
    service = data["services"][0]
    assert service["model"] == "llama-3.1-8b"
    assert Path(service["load"]["trace"]).is_absolute()
    assert service["affinity"] == "s2" and service["precision"] == "bf16"
    assert set(data["simulation"]) == {f.name for f in dataclasses.fields(SimSettings)}
    assert {g["id"] for g in data["catalog"]["gpus"]} == {"l40s", "a100-80g", "h100-sxm"}
    nodes = data["topology"]["vdcs"][0]["physical_clusters"][0]["logical_clusters"][0]["big_pods"][0]
    assert nodes["mini_pods"][0]["s0s"][0]["nodes"][0] == {
        "name": "l40s-1",
        "sku": "l40s",
        "gpus": 8,
        "gpus_free": 8,
        "schedulable": True,
    }


def test_resolved_config_round_trips_overrides_and_fp8(tmp_path: Path) -> None:
    data = scenario_dict(
        catalog={"gpus": [{"id": "h800", "cost_per_gpu_hour": 3.0}]},
        **{"services.0.precision": "fp8", "services.0.load.copies": 2},
    )
    scenario = load_scenario(str(write(tmp_path, "s.yaml", data)))
    again = _round_trip(scenario, tmp_path)
    assert dataclasses.replace(again, source=scenario.source) == scenario
    assert again.skus["h800"].cost_per_gpu_hour == 3.0


# --- upper bounds on counts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"services.0.load.copies": 2**62}, "services[0].load.copies"),
        ({"services.0.roles.prefill.max": 10**9}, "services[0].roles.prefill.max"),
        ({"services.0.roles.decode.min": 10**9}, "services[0].roles.decode.min"),
        ({"services.0.policy.prefill": 10**9}, "services[0].policy.prefill"),
        ({"services.0.policy.decode": 10**9}, "services[0].policy.decode"),
        ({"services.0.max_prefill_tokens": 2**40}, "services[0].max_prefill_tokens"),
        ({"services.0.max_decode_batch": 2**40}, "services[0].max_decode_batch"),
        ({"simulation": {"seed": 2**62}}, "simulation.seed"),
        ({"budget": {"total_gpus": 2**62}}, "budget.total_gpus"),
        ({"budget": {"by_sku": {"h800": 2**62}}}, "budget.by_sku.h800"),
    ],
)
def test_absurd_counts_are_one_line_naming_the_field(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    path = write(tmp_path, "bad.yaml", scenario_dict(**changes))
    message = one_line_error(path)
    assert message.startswith(f"{path}: {field}: "), message
    assert "less than or equal to" in message


@pytest.mark.parametrize(
    "changes",
    [
        {"services.0.load.copies": 1_000},
        {"services.0.roles.prefill.max": 10_000, "services.0.roles.decode.max": 10_000},
        {"simulation": {"seed": 2**32 - 1}},
    ],
)
def test_counts_at_their_upper_bound_are_accepted(tmp_path: Path, changes: dict[str, Any]) -> None:
    load_scenario(str(write(tmp_path, "ok.yaml", scenario_dict(**changes))))
