"""Scale-in safety on the embedded scenarios: HeteroScale drains (no request fails by scale-in); the
Kubernetes-style peers kill with Kubernetes' 30 s grace, Dynamo's planner drains with its operator's
60 s grace, and the requests that kills fail are counted and reported.

On ``default`` (Azure conversation lengths, short decodes) the baselines' kills happen to catch no
request; on ``long-prompt`` dynamo-sla scales in often under load: as shipped its 60 s drain fails no
request, and the same planner told to kill at once fails some. About a minute in all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario
from heteroscale.experiments.compare import Comparison
from heteroscale.sim.scenario import Variant

pytestmark = pytest.mark.slow


# the planner told to kill at once: every request on a removed instance fails
KILLING_DYNAMO = Variant(
    "dynamo-sla", (("scale_in", {"mode": "kill", "grace_s": 0.0}),), description="dynamo-sla killing on scale-in"
)


def run_policies(scenario_name: str, policies: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    scenario = load_scenario(scenario_name)
    scenario = dataclasses.replace(scenario, variants={**scenario.variants, "dynamo-kill": KILLING_DYNAMO})
    comparison = Comparison(scenario, calibration_for(scenario))
    return {p: comparison.run_policy(p, scenario.settings.seed).summary for p in policies}


@pytest.fixture(scope="module")
def default() -> dict[str, dict[str, Any]]:
    return run_policies("default", ("heteroscale", "hpa"))


@pytest.fixture(scope="module")
def long_prompt() -> dict[str, dict[str, Any]]:
    return run_policies("long-prompt", ("heteroscale", "dynamo-sla", "dynamo-kill"))


def by_scale_in(summary: dict[str, Any]) -> int:
    """The run's count, checked against its per-service counts and its failure total."""
    total = summary["requests_failed_by_scale_in"]
    assert isinstance(total, int) and total >= 0
    assert total == sum(s["requests_failed_by_scale_in"] for s in summary["services"].values())
    assert total <= summary["requests_failed"] == sum(summary["requests_failed_by_cause"].values())
    assert summary["requests_failed_by_cause"]["scale-in"] == total
    return total


@pytest.mark.parametrize("scenario", ["default", "long-prompt"])
def test_heteroscale_scales_in_without_failing_a_request(
    scenario: str, default: dict[str, dict[str, Any]], long_prompt: dict[str, dict[str, Any]]
) -> None:
    h = (default if scenario == "default" else long_prompt)["heteroscale"]
    assert h["instances_removed"] > 0
    assert by_scale_in(h) == 0
    assert h["requests_failed"] == 0
    assert h["requests_completed"] == h["requests_total"]


def test_hpa_kills_on_scale_in_and_its_count_is_reported(default: dict[str, dict[str, Any]]) -> None:
    hpa = default["hpa"]
    assert hpa["instances_removed"] > 0
    assert by_scale_in(hpa) >= 0  # 0 on this scenario: its kills catch no request in flight
    assert hpa["requests_completed"] + hpa["requests_failed"] + hpa["requests_unfinished"] == hpa["requests_total"]


def test_a_baseline_that_kills_under_load_fails_requests_by_scale_in(long_prompt: dict[str, dict[str, Any]]) -> None:
    killing = long_prompt["dynamo-kill"]
    assert killing["instances_removed"] > 0
    assert by_scale_in(killing) > 0
    assert killing["requests_failed_by_cause"]["kv-capacity"] == 0
    shipped = long_prompt["dynamo-sla"]  # its operator's 60 s drain: every removed request finishes
    assert shipped["instances_removed"] > 0
    assert by_scale_in(shipped) == 0
