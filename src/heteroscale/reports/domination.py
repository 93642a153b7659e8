"""Domination over a table of contenders (name → (SLO attainment, billed)): who dominates a reference, and
the Pareto front; the definition itself is :mod:`heteroscale.domain.domination`."""

from __future__ import annotations

from collections.abc import Mapping

from heteroscale.domain.domination import BILL_RATIO, EPSILON, SLO_SLACK_PP, dominates

__all__ = ["BILL_RATIO", "EPSILON", "SLO_SLACK_PP", "dominates", "dominators", "pareto_front"]


def dominators(scores: Mapping[str, tuple[float, float]], reference: str) -> list[str]:
    """The names in ``scores`` (name → (SLO attainment, billed)) that dominate ``reference``, in order."""
    ref_slo, ref_billed = scores[reference]
    return [
        name
        for name, (slo, billed) in scores.items()
        if name != reference and dominates(slo, billed, ref_slo, ref_billed)
    ]


def pareto_front(scores: Mapping[str, tuple[float, float]]) -> list[str]:
    """The names no other name dominates, cheapest first."""
    front = [name for name in scores if not any(dominates(*scores[o], *scores[name]) for o in scores if o != name)]
    return sorted(front, key=lambda name: (scores[name][1], -scores[name][0], name))
