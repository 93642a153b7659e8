"""Who wins: Pareto domination between contenders on (SLO attainment, GPU-hours) and a verdict sentence.

X *dominates* Y when X's SLO attainment is at least Y's minus ``slo_slack_pp`` percentage points
(0.05 pp: a tie within noise) and X bills less than ``cost_ratio`` (0.99) × Y's GPU-hours — or cost,
in a GPU-mix scenario, where GPU types differ in price. A contender no one dominates is on the
Pareto front. Pure: numbers in, plain data and one sentence out (the HTML report and the benchmark
suite both print it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heteroscale.domain import domination

SLO_SLACK_PP = domination.SLO_SLACK_PP  # percentage points of SLO attainment that count as a tie
COST_RATIO = domination.BILL_RATIO  # X must bill under 99 % of Y's GPU-hours (or cost) to dominate it
FOCUS = "heteroscale"


@dataclass(frozen=True, slots=True)
class Contender:
    """One row: its SLO attainment (a fraction, 0–1) and what it billed (GPU-hours, or cost)."""

    name: str
    slo_attainment: float
    billed: float


@dataclass(frozen=True, slots=True)
class Domination:
    winner: str
    loser: str
    billed_saving: float  # 1 − winner ÷ loser: the share of the loser's bill the winner saves
    slo_gain_pp: float  # winner − loser, percentage points (may be slightly negative: within the slack)


@dataclass(frozen=True, slots=True)
class Verdict:
    front: tuple[str, ...]  # the Pareto front, in the order given
    dominations: tuple[Domination, ...]
    sentence: str


def dominates(
    x: Contender, y: Contender, *, slo_slack_pp: float = SLO_SLACK_PP, cost_ratio: float = COST_RATIO
) -> bool:
    """Whether ``x`` dominates ``y`` (see the module docstring)."""
    return domination.dominates(
        x.slo_attainment, x.billed, y.slo_attainment, y.billed, slo_slack_pp=slo_slack_pp, bill_ratio=cost_ratio
    )


def verdict(
    contenders: Sequence[Contender],
    *,
    focus: str = FOCUS,
    unit: str = "GPU-hours",
    slo_slack_pp: float = SLO_SLACK_PP,
    cost_ratio: float = COST_RATIO,
) -> Verdict:
    """Every domination among ``contenders``, their Pareto front and one sentence centred on ``focus``
    (when it runs; else on the front)."""
    doms = tuple(
        Domination(x.name, y.name, 1.0 - x.billed / y.billed, 100.0 * (x.slo_attainment - y.slo_attainment))
        for x in contenders
        for y in contenders
        if x is not y and y.billed > 0 and dominates(x, y, slo_slack_pp=slo_slack_pp, cost_ratio=cost_ratio)
    )
    beaten = {d.loser for d in doms}
    front = tuple(c.name for c in contenders if c.name not in beaten)
    return Verdict(front, doms, _sentence(contenders, doms, front, focus, unit))


def _by_how_much(d: Domination, unit: str, name: str) -> str:
    gain_pp = round(d.slo_gain_pp, 2) + 0.0  # + 0.0: a tiny loss reads +0.00, not -0.00
    return f"{name} ({100.0 * d.billed_saving:.1f} % fewer {unit}, SLO {gain_pp:+.2f} pp)"


def _sentence(
    contenders: Sequence[Contender], doms: Sequence[Domination], front: Sequence[str], focus: str, unit: str
) -> str:
    if not contenders:
        return "No contender ran."
    if len(contenders) == 1:
        return f"Only {contenders[0].name} ran: nothing to compare."
    names = {c.name for c in contenders}
    if focus not in names:
        wins = [d for d in doms if d.winner in front]
        said = "; ".join(f"{d.winner} dominates {_by_how_much(d, unit, d.loser)}" for d in wins)
        return f"Pareto front: {', '.join(front)}." + (f" {said}." if said else " No contender dominates another.")
    won = [d for d in doms if d.winner == focus]
    lost = [d for d in doms if d.loser == focus]
    parts: list[str] = []
    if won:
        parts.append(f"{focus} dominates " + ", ".join(_by_how_much(d, unit, d.loser) for d in won))
    else:
        parts.append(f"{focus} dominates no other contender")
    if lost:
        parts.append("it is dominated by " + ", ".join(_by_how_much(d, unit, d.winner) for d in lost))
    elif focus in front:
        others = [n for n in front if n != focus]
        parts.append("it is on the Pareto front" + (f" with {', '.join(others)}" if others else ", alone"))
    return "; ".join(parts) + "."


def best_peer(contenders: Sequence[Contender], *, focus: str = FOCUS, slo_slack_pp: float = SLO_SLACK_PP) -> str | None:
    """The peer to set beside ``focus`` in plots: of the autoscalers other than ``focus`` (its marked
    rows included) and the fixed ``static-peak`` reference, the one with the best SLO attainment
    (within the slack), then the smallest bill."""
    peers = [c for c in contenders if not c.name.startswith(focus) and c.name != "static-peak"]
    if not peers:
        return None
    top = max(c.slo_attainment for c in peers)
    near = [c for c in peers if c.slo_attainment >= top - slo_slack_pp / 100.0]
    return min(near, key=lambda c: c.billed).name


def _mean(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("mean")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def contenders_from(
    policies: Mapping[str, Mapping[str, Any]], *, by_cost: bool = False, service: str | None = None
) -> list[Contender]:
    """Contenders from ``compare``'s ``policies`` (plain summaries or ``{mean, ci95, n}`` figures):
    billed GPU-hours (cost when ``by_cost``); SLO attainment of ``service`` when given, else overall.
    A row missing either figure is left out."""
    out: list[Contender] = []
    for name, summary in policies.items():
        figures: Any = summary
        if service is not None:
            services = summary.get("services")
            figures = services.get(service) if isinstance(services, Mapping) else None
        slo = _mean(figures.get("slo_attainment")) if isinstance(figures, Mapping) else None
        billed = _mean(summary.get("cost" if by_cost else "gpu_hours"))
        if slo is not None and billed is not None:
            out.append(Contender(name, slo, billed))
    return out


__all__ = [
    "COST_RATIO",
    "SLO_SLACK_PP",
    "Contender",
    "Domination",
    "Verdict",
    "best_peer",
    "contenders_from",
    "dominates",
    "verdict",
]
