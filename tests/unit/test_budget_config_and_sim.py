"""The GPU budget in a scenario file (one-line errors, aliases, the resolved config) and in the simulator."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.config.bundled import embedded_scenarios
from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario, write_resolved_config
from heteroscale.errors import ConfigError
from heteroscale.scheduling.budget import GpuBudget
from heteroscale.sim.runner import SimulationRun

# --- the budget in a scenario file --------------------------------------------------------------


def small_mixed(**top_level: Any) -> dict[str, Any]:
    """The embedded ``small-mixed`` scenario as a dict, with top-level keys replaced."""
    doc: dict[str, Any] = yaml.safe_load(embedded_scenarios()["small-mixed"].read_text(encoding="utf-8"))
    return doc | top_level


def write_scenario(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_an_empty_budget_is_a_one_line_error_naming_budget(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, small_mixed(budget={}))
    with pytest.raises(ConfigError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert "budget" in message and "total_gpus or by_sku" in message


def test_a_budget_sku_alias_resolves_to_the_canonical_id(tmp_path: Path) -> None:
    scenario = load_scenario(str(write_scenario(tmp_path, small_mixed(budget={"by_sku": {"A100-80GB": 16}}))))
    assert scenario.budget == GpuBudget(total_gpus=None, by_sku=(("a100-80g", 16),))


def test_the_resolved_config_round_trips_the_budget_and_ignore_budget(tmp_path: Path) -> None:
    variants = {
        "capped": {"policy": "fixed"},
        "uncapped": {"policy": "fixed", "ignore_budget": True},
    }
    doc = small_mixed(budget={"total_gpus": 12, "by_sku": {"h100-sxm": 4}}, variants=variants)
    scenario = load_scenario(str(write_scenario(tmp_path, doc)))
    assert scenario.budget == GpuBudget(total_gpus=12, by_sku=(("h100-sxm", 4),))
    again = load_scenario(str(write_resolved_config(scenario, tmp_path / "resolved" / "config.yaml")))
    assert again.budget == scenario.budget
    assert {n: v.ignore_budget for n, v in again.variants.items()} == {"capped": False, "uncapped": True}
    assert dataclasses.replace(again, source=scenario.source) == scenario


# --- the budget in the simulator ------------------------------------------------------------------


def test_a_simulation_passes_the_budget_to_the_controller(tmp_path: Path) -> None:
    # small-mixed: chat-8b 2P2D of TP1 (4 GPUs) + code-32b 1P1D of TP2 (4 GPUs): 8 fit exactly
    scenario = load_scenario(str(write_scenario(tmp_path, small_mixed(budget={"total_gpus": 8}))))
    summary = SimulationRun(scenario, calibration_for(scenario), out_dir=tmp_path / "run").run()
    assert summary["gpu_budget"] == 8 and summary["peak_gpus_held"] == 8
    records = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    assert records
    for record in records:
        (step,) = [s for s in record["decision"]["steps"] if s["name"] == "budget"]
        assert step["reason"] == "budget-ok" and "GPU budget (total 8)" in step["detail"]


def test_the_initial_deployment_respects_the_budget(tmp_path: Path) -> None:
    # the initial 2P2D + 1P1D need 8 GPUs; the budget is 6 and code-32b has the higher priority
    doc = small_mixed(budget={"total_gpus": 6})
    doc["services"][1]["priority"] = 5
    scenario = load_scenario(str(write_scenario(tmp_path, doc)))
    run = SimulationRun(scenario, calibration_for(scenario))
    summary = run.run()
    assert summary["peak_gpus_held"] <= summary["gpu_budget"] == 6
    # the start is capped by priority: code-32b (priority 5) keeps its 1P1D of TP2, chat-8b gets the rest
    assert run.initial_launches < 6
