"""Domination, the one definition the benchmark and its reports use.

Contender X *dominates* a reference R on a scenario when X's SLO attainment is at least R's minus
0.05 percentage points and X bills less than 0.99 × R's GPU-hours (cost, in a scenario whose GPU
types differ), each figure a mean over the scenario's seeds and score parts. ``EPSILON`` only absorbs
the rounding of fractions (0.999 − 0.0005 is not exactly 0.9985 in floating point): a value on the
−0.05 pt edge counts as within it, one at exactly 0.99× does not dominate.
"""

from __future__ import annotations

from collections.abc import Mapping

SLO_SLACK_PP = 0.05  # percentage points of attainment that count as a tie
BILL_RATIO = 0.99  # X must bill under 99 % of the reference
EPSILON = 1e-9


def dominates(x_slo: float, x_billed: float, ref_slo: float, ref_billed: float) -> bool:
    """Whether X (SLO attainment as a 0–1 fraction, what it billed) dominates the reference."""
    return x_slo >= ref_slo - SLO_SLACK_PP / 100.0 - EPSILON and x_billed < BILL_RATIO * ref_billed


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
