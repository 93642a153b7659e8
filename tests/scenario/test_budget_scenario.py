"""The embedded ``budget`` scenario, variant ``by-priority``: two services under a 192-GPU budget.

``chat`` (priority 10) and ``batch`` (priority 0) peak together above the budget. Asserted on one
request-level run (≈1.5 M requests, ≈40 s): the GPUs held never exceed the budget, chat holds its SLO
while batch pays for it, batch's cuts name chat, chat is never cut in steady state — it only waits
(a deferral) while batch's GPUs drain — and no request fails by scale-in.
"""

from __future__ import annotations

from typing import Any

import pytest

from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario
from heteroscale.controller.journal import decision_records, read_all
from heteroscale.experiments.compare import Comparison

pytestmark = pytest.mark.slow

BUDGET_GPUS = 192


@pytest.fixture(scope="module")
def by_priority(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's summary and its journal (one record per service per tick)."""
    scenario = load_scenario("budget")
    out = tmp_path_factory.mktemp("budget") / "by-priority"
    run = Comparison(scenario, calibration_for(scenario)).run_policy("by-priority", scenario.settings.seed, out)
    journal = list(decision_records(read_all(out / "journal.jsonl")))
    return run.summary, journal


def budget_step(record: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in record["decision"]["steps"] if s["name"] == "budget"]
    assert len(found) == 1, found
    return found[0]


def cuts(journal: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    return [r for r in journal if r["service"] == service and budget_step(r)["reason"] == "budget-cut"]


def test_gpus_held_never_exceed_the_budget(by_priority: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    summary, _ = by_priority
    assert summary["gpu_budget"] == BUDGET_GPUS
    assert summary["peak_gpus_held"] <= BUDGET_GPUS
    assert summary["peak_gpus_held"] >= 0.9 * BUDGET_GPUS  # it is used, not just left idle


def test_the_high_priority_holds_its_slo_and_the_low_one_pays(
    by_priority: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    services = by_priority[0]["services"]
    assert services["chat"]["slo_attainment"] >= 0.99
    assert services["batch"]["slo_attainment"] < services["chat"]["slo_attainment"]


def test_every_decision_ends_with_the_budget_step(by_priority: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, journal = by_priority
    assert {r["service"] for r in journal} == {"chat", "batch"}
    for record in journal:
        step = budget_step(record)
        assert record["decision"]["steps"][-1] == step
        assert step["reason"] in ("budget-ok", "budget-cut")
        assert (step["prefill"], step["decode"]) == (
            record["decision"]["desired_prefill"],
            record["decision"]["desired_decode"],
        )


def test_batch_is_cut_for_chat(by_priority: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    batch_cuts = cuts(by_priority[1], "batch")
    assert batch_cuts, "the budget never bound"
    steady = [r for r in batch_cuts if "steady-state cut" in budget_step(r)["detail"]]
    assert steady, "batch was never cut for chat"
    for record in batch_cuts:
        detail = budget_step(record)["detail"]
        if record in steady:
            assert detail.startswith("batch (priority 0): steady-state cut from ")
            assert "granted ahead of it to chat (priority 10)" in detail
        else:  # batch may also wait for GPUs its own draining instances still hold
            assert detail.startswith("batch (priority 0): deferral: of the steady-state ")
            assert "waits for GPUs to drain" in detail
    # at least once below what batch already had: it yields GPUs, not only launches
    assert any("so it scales in and the GPUs return once drained" in budget_step(r)["detail"] for r in batch_cuts)


def test_chat_is_never_cut_in_steady_state(by_priority: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    # chat may wait for batch's GPUs to drain (the budget holds during transitions); never more
    chat_cuts = cuts(by_priority[1], "chat")
    for record in chat_cuts:
        detail = budget_step(record)["detail"]
        assert detail.startswith("chat (priority 10): deferral: of the steady-state ")
        assert "steady-state cut" not in detail
        assert "waits for GPUs to drain from batch (priority 0)" in detail
    chat = [r for r in by_priority[1] if r["service"] == "chat"]
    assert len(chat_cuts) <= 0.1 * len(chat)


def test_no_request_fails_by_scale_in(by_priority: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    summary, _ = by_priority
    assert summary["instances_removed"] > 0  # there were scale-ins
    assert summary["requests_failed_by_scale_in"] == 0
    for name, service in summary["services"].items():
        assert service["requests_failed_by_scale_in"] == 0, name
