"""Who wins: Pareto domination on (SLO attainment, GPU-hours) and the verdict sentence."""

from __future__ import annotations

import pytest

from heteroscale.experiments.verdict import Contender, best_peer, contenders_from, dominates, verdict


def c(name: str, slo: float, billed: float) -> Contender:
    return Contender(name, slo, billed)


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (c("x", 0.999, 80.0), c("y", 0.999, 100.0), True),  # same SLO, 20 % cheaper
        (c("x", 0.9995, 80.0), c("y", 1.0, 100.0), True),  # 0.05 pp lower: a tie
        (c("x", 0.9994, 80.0), c("y", 1.0, 100.0), False),  # 0.06 pp lower: not a tie
        (c("x", 1.0, 99.0), c("y", 1.0, 100.0), False),  # 1 % cheaper is not < 0.99 ×
        (c("x", 1.0, 98.9), c("y", 1.0, 100.0), True),
        (c("x", 1.0, 100.0), c("y", 1.0, 100.0), False),
    ],
)
def test_domination_needs_the_slo_within_the_slack_and_a_bill_under_99_percent(
    x: Contender, y: Contender, expected: bool
) -> None:
    assert dominates(x, y) is expected


def test_verdict_names_who_dominates_whom_and_by_how_much() -> None:
    rows = [c("heteroscale", 0.999, 80.7), c("static-peak", 1.0, 118.4), c("hpa", 0.97, 90.0), c("kthena", 1.0, 70.0)]
    found = verdict(rows)
    pairs = {(d.winner, d.loser) for d in found.dominations}
    assert ("heteroscale", "hpa") in pairs and ("kthena", "static-peak") in pairs
    assert ("heteroscale", "static-peak") not in pairs  # 0.1 pp below static-peak: beyond the slack
    assert found.front == ("kthena",)
    assert found.sentence.startswith("heteroscale dominates hpa (10.3 % fewer GPU-hours, SLO +2.90 pp)")
    assert "it is dominated by kthena (13.3 % fewer GPU-hours" in found.sentence


def test_verdict_says_when_the_focus_is_on_the_front_alone_or_absent() -> None:
    alone = verdict([c("heteroscale", 1.0, 50.0), c("hpa", 0.99, 60.0)])
    assert alone.sentence == (
        "heteroscale dominates hpa (16.7 % fewer GPU-hours, SLO +1.00 pp); it is on the Pareto front, alone."
    )
    tied = verdict([c("heteroscale", 0.98, 50.0), c("hpa", 1.0, 60.0)])
    assert tied.sentence == "heteroscale dominates no other contender; it is on the Pareto front with hpa."
    peers = verdict([c("hpa", 1.0, 50.0), c("kthena", 1.0, 60.0)], unit="cost")
    assert peers.sentence == "Pareto front: hpa. hpa dominates kthena (16.7 % fewer cost, SLO +0.00 pp)."
    assert verdict([c("hpa", 1.0, 1.0)]).sentence == "Only hpa ran: nothing to compare."


def test_contenders_read_plain_and_aggregated_figures_per_service() -> None:
    policies = {
        "heteroscale": {
            "gpu_hours": {"mean": 80.0, "ci95": 2.0, "n": 3},
            "cost": {"mean": 140.0, "ci95": None, "n": 3},
            "slo_attainment": {"mean": 0.99, "ci95": 0.01, "n": 3},
            "services": {"chat": {"slo_attainment": {"mean": 0.95, "ci95": None, "n": 3}}},
        },
        "hpa": {"gpu_hours": 90.0, "cost": 150.0, "slo_attainment": None},
    }
    assert contenders_from(policies) == [Contender("heteroscale", 0.99, 80.0)]
    assert contenders_from(policies, by_cost=True, service="chat") == [Contender("heteroscale", 0.95, 140.0)]


def test_best_peer_is_the_cheapest_peer_at_the_best_slo_and_never_static_peak() -> None:
    rows = [
        c("heteroscale", 0.999, 80.0),
        c("heteroscale[scenario-options]", 1.0, 70.0),
        c("static-peak", 1.0, 118.0),
        c("hpa", 0.9996, 95.0),
        c("kthena", 1.0, 99.0),
        c("aibrix-apa", 0.90, 60.0),
    ]
    assert best_peer(rows) == "hpa"  # within 0.05 pp of kthena's SLO and cheaper
    assert best_peer([c("heteroscale", 1.0, 1.0), c("static-peak", 1.0, 2.0)]) is None


def test_a_loss_that_rounds_to_nothing_reads_plus_zero() -> None:
    found = verdict([c("heteroscale", 0.99999, 50.0), c("hpa", 1.0, 60.0)])
    assert "SLO +0.00 pp" in found.sentence and "-0.00" not in found.sentence
