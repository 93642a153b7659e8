"""The policy's target report (benchmarks/policy_targets.py) and the per-service figures it reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario
from heteroscale.experiments.bench import BY_SERVICE_ROLE, SLO_BY_SERVICE, mean_figures
from heteroscale.sim.runner import SimulationRun

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "policy_targets.py"


@pytest.fixture(scope="module")
def targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("policy_targets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(gpu_hours: float, slo: float, hours: dict[str, float], slo_by: dict[str, float]) -> dict[str, Any]:
    mean = {
        "gpu_hours": gpu_hours,
        "gpu_hours_vs_lower_bound": gpu_hours / 10.0,
        "slo_attainment": slo,
        "scale_actions_per_hour": 5.0,
        BY_SERVICE_ROLE: hours,
        SLO_BY_SERVICE: slo_by,
    }
    return {"mean": mean}


def bench() -> dict[str, Any]:
    ours = row(
        141.2, 0.934, {"batch/prefill": 20.8, "batch/decode": 3.0, "chat/prefill": 6.1}, {"batch": 0.9, "chat": 0.97}
    )
    kthena = row(134.4, 0.935, {"batch/prefill": 17.0, "batch/decode": 3.0, "chat/prefill": 6.0}, {"batch": 0.91})
    other = row(150.0, 0.90, {"batch/prefill": 21.0}, {"batch": 0.9})
    static = row(160.0, 1.0, {"batch/prefill": 22.0}, {"batch": 1.0})
    rows = {"heteroscale": ours, "kthena": kthena, "static-peak": static}
    rows |= {p: other for p in ("hpa", "aibrix-apa", "dynamo-sla", "independent-tps")}
    rows |= {f"{name}[tuned]": r for name, r in list(rows.items())}
    return {"scenarios": {"suite-budget": {"gpu_mix": False, "rows": rows}}}


def test_a_dominating_row_names_the_service_and_role_where_the_hours_go(targets: ModuleType) -> None:
    f = targets.figures(bench(), tuned=False)
    assert len(f["dominated"]) == 1
    line = f["dominated"][0]
    assert line.startswith("suite-budget: kthena 134.4 @ 93.50%")
    # the largest difference first; the equal decode hours are not the reason
    assert line.endswith("batch/prefill +3.8 GPU-h (20.8 vs 17.0), chat/prefill +0.1 GPU-h (6.1 vs 6.0)")


def test_an_slo_miss_shows_each_service_s_attainment(targets: ModuleType) -> None:
    missed = targets.figures(bench(), tuned=False)["slo_missed"]
    assert missed == ["suite-budget (93.40%; batch 90.00%, chat 97.00%; static-peak, static-peak[tuned] reach 99 %)"]


def test_the_service_figures_add_up_to_the_run_s_and_average_over_parts() -> None:
    scenario = load_scenario("small-mixed")
    summary = SimulationRun(scenario, calibration_for(scenario)).run()
    services = summary["services"]
    assert set(services) == {"chat-8b", "code-32b"}
    total = sum(s["gpu_hours"] for s in services.values())
    assert total == pytest.approx(summary["gpu_hours"], abs=1e-3)
    for role in ("prefill", "decode"):
        assert sum(s["gpu_hours_by_role"][role] for s in services.values()) == pytest.approx(
            summary["gpu_hours_by_role"][role], abs=1e-3
        )
    parts = [
        {
            "fidelity": "request",
            "fidelity_label": "request",
            BY_SERVICE_ROLE: {"a/prefill": 2.0},
            SLO_BY_SERVICE: {"a": 1.0},
        },
        {
            "fidelity": "request",
            "fidelity_label": "request",
            BY_SERVICE_ROLE: {"a/prefill": 4.0},
            SLO_BY_SERVICE: {"a": 0.5},
        },
    ]
    mean = mean_figures(parts)
    assert mean[BY_SERVICE_ROLE] == {"a/prefill": 3.0} and mean[SLO_BY_SERVICE] == {"a": 0.75}


def test_equal_differences_are_listed_by_name_whatever_the_hash_seed(targets: ModuleType) -> None:
    # a set's iteration order changes with the string hash seed: ties must not follow it
    ours = {BY_SERVICE_ROLE: {"chat/prefill": 11.8, "chat/decode": 11.8}}
    theirs = {BY_SERVICE_ROLE: {"chat/prefill": 8.0, "chat/decode": 8.0}}
    shown = targets.where_hours_differ(ours, theirs)
    assert shown == "chat/decode +3.8 GPU-h (11.8 vs 8.0), chat/prefill +3.8 GPU-h (11.8 vs 8.0)"


def test_the_lower_bound_reference_names_each_peer_and_the_ratio_oracle(targets: ModuleType) -> None:
    data = bench()
    assert targets.figures(data, tuned=False)["oracle_vs_lower_bound"] is None  # no oracle recorded: n/a
    scenario = data["scenarios"]["suite-budget"]
    scenario["lower_bound"] = {
        "day1": {"gpu_hours": 10.0, "cost": 20.0, "ratio_oracle_gpu_hours": 18.0},
        "day2": {"gpu_hours": 20.0, "cost": 40.0, "ratio_oracle_gpu_hours": 44.0},
    }
    f = targets.figures(data, tuned=False)
    assert f["oracle_vs_lower_bound"] == pytest.approx((1.8 + 2.2) / 2)  # the mean over parts
    assert f["peers_vs_lower_bound"]["kthena"] == pytest.approx(13.44) and f["peers_vs_lower_bound"]["hpa"] == 15.0
