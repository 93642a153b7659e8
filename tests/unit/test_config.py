"""Configuration layer: embedded scenarios, aliases, one-line errors, validate_file, resolved config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from heteroscale.config import (
    ValidationReport,
    calibration,
    list_embedded_scenarios,
    load_catalog,
    load_scenario,
    load_topology,
    resolve_model,
    resolve_sku,
    validate_file,
)
from heteroscale.config.bundled import embedded_scenarios, embedded_topologies
from heteroscale.domain.hardware import Role
from heteroscale.errors import ConfigError
from heteroscale.perf import Calibration
from heteroscale.sim.scenario import Fidelity, LoadKind
from tests.unit.config_builders import (
    EMBEDDED,
    scenario_dict,
    write,
)

# --- embedded scenarios ---------------------------------------------------------------------


@pytest.mark.parametrize("name", EMBEDDED)
def test_every_embedded_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.source == f"embedded:{name}"
    assert scenario.services
    for run in scenario.services:
        assert run.spec.model in scenario.models
        for role in Role:
            for shape in run.spec.shapes(role):
                assert shape.sku in scenario.skus
                assert shape.sku in scenario.topology.gpus_by_sku()
        assert Path(run.load.trace_path).is_absolute()
        assert Path(run.load.trace_path).is_file()


def test_list_embedded_scenarios_names_all_with_one_line_descriptions() -> None:
    listed = dict(list_embedded_scenarios())
    assert set(EMBEDDED) <= set(listed)
    assert set(listed) == set(embedded_scenarios())
    for description in listed.values():
        assert description
        assert "\n" not in description


@pytest.mark.parametrize("name", sorted(embedded_topologies()))
def test_every_embedded_topology_is_valid(name: str) -> None:
    report = validate_file(embedded_topologies()[name])
    assert report == ValidationReport(kind="topology", ok=True, message=report.message)
    assert load_topology(name).name == name


def test_default_scenario_is_what_make_run_expects() -> None:
    s = load_scenario("default")
    (run,) = s.services
    assert run.spec.model == "llama-3.1-70b"
    assert [(x.sku, x.tp) for x in run.spec.prefill_shapes] == [("h800", 4)]
    assert [(x.sku, x.tp) for x in run.spec.decode_shapes] == [("h20", 4)]
    assert (run.policy.prefill, run.policy.decode) == (3, 3)
    assert run.load.trace_path.endswith("AzureLLMInferenceTrace_conv.csv")
    assert (run.load.copies, run.load.copy_shift_s) == (10, 350.0)
    assert s.settings.fidelity is Fidelity.REQUEST
    assert s.topology.name == "two-bigpods"
    s2_skus: dict[str, set[str]] = {}
    for node in s.topology.nodes:
        s2_skus.setdefault(node.path[3], set()).add(node.sku)
    assert sorted(map(sorted, s2_skus.values())) == [["h20", "h800"], ["h800"]]


def test_fluid_day_is_a_day_of_poisson_load_at_fleet_scale() -> None:
    s = load_scenario("fluid-day")
    (run,) = s.services
    assert s.settings.fidelity is Fidelity.FLUID
    assert s.settings.duration_s == 86400
    assert run.load.kind is LoadKind.POISSON
    assert run.load.rate_curve_path is not None
    assert run.load.rate_curve_path.endswith("servegen_language_m-large_rate.csv")
    assert run.load.rate_curve_day == 0
    assert run.policy.prefill + run.policy.decode == 200


# --- aliases --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("h100-80gb", "h100-sxm"),
        ("H100_SXM", "h100-sxm"),
        ("h100-sxm", "h100-sxm"),
        ("A100-80GB", "a100-80g"),
        ("NVIDIA H20", "h20"),
        ("l40s", "l40s"),
    ],
)
def test_sku_aliases_resolve(alias: str, canonical: str) -> None:
    assert resolve_sku(alias) == canonical


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("Llama_3.1_70B", "llama-3.1-70b"),
        ("Qwen/Qwen3-32B", "qwen3-32b"),
        ("llama2-70b", "llama2-70b"),
    ],
)
def test_model_aliases_resolve(alias: str, canonical: str) -> None:
    assert resolve_model(alias) == canonical


@pytest.mark.parametrize(
    ("resolve", "name", "fragment"),
    [
        (resolve_sku, "h999", "unknown GPU SKU 'h999' (known: a100-80g"),
        (resolve_model, "gpt-5", "unknown model 'gpt-5' (known: "),
    ],
)
def test_unknown_names_are_config_errors(resolve: Any, name: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"^unknown") as info:
        resolve(name)
    assert fragment in str(info.value)


def test_scenario_resolves_aliases_to_canonical_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        scenario_dict(
            **{
                "services.0.model": "meta-llama/Llama-3.1-70B",
                "services.0.roles.prefill.shapes": [{"sku": "H800_SXM", "tp": 4}],
            }
        ),
    )
    (run,) = load_scenario(str(path)).services
    assert run.spec.model == "llama-3.1-70b"
    assert run.spec.prefill_shapes[0].sku == "h800"


def test_catalog_and_calibration_are_loaded_once() -> None:
    assert load_catalog() is load_catalog()
    assert calibration() is calibration()
    assert calibration() != Calibration.default()  # fitted on perf_model.csv, not the priors


# --- one-line errors ------------------------------------------------------------------------
