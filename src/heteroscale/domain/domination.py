"""Domination, the one definition every table, verdict and benchmark uses.

Contender X *dominates* a reference R on a scenario when X's SLO attainment is at least R's minus
0.05 percentage points and X bills less than 0.99 × R's GPU-hours (cost, in a scenario whose GPU
types differ), each figure a mean over the scenario's seeds and score parts. ``EPSILON`` only absorbs
the rounding of fractions (0.999 − 0.0005 is not exactly 0.9985 in floating point): a value on the
−0.05 pt edge counts as within it, one at exactly 0.99× does not dominate.
"""

from __future__ import annotations

SLO_SLACK_PP = 0.05  # percentage points of attainment that count as a tie
BILL_RATIO = 0.99  # X must bill under 99 % of the reference
EPSILON = 1e-9


def dominates(
    x_slo: float,
    x_billed: float,
    ref_slo: float,
    ref_billed: float,
    *,
    slo_slack_pp: float = SLO_SLACK_PP,
    bill_ratio: float = BILL_RATIO,
) -> bool:
    """Whether X (SLO attainment as a 0–1 fraction, what it billed) dominates the reference."""
    return x_slo >= ref_slo - slo_slack_pp / 100.0 - EPSILON and x_billed < bill_ratio * ref_billed
