"""The SplitwiseSim mirror (benchmarks/splitwise_mirror.py): its cases A (1P+2D conv), A′ (1P+1D conv)
and B (11P+1D code) with the mixed pool on give its pass/fail verdicts; in pure P/D mode A′ passes
here (why: the benchmark's docstring and the README's calibration section)."""

from __future__ import annotations

import pytest

from heteroscale.config.bundled import data_path
from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario
from heteroscale.experiments.splitwise_mirror import CASES, run_case, verdict


def run(name: str, mixed_pool: bool):
    sc = load_scenario(data_path("scenarios", "splitwise", CASES[name][0]))
    return run_case(sc, calibration_for(sc), mixed_pool)


@pytest.mark.parametrize("name", list(CASES))
def test_mixed_pool_verdicts_match_splitwise_sim(name: str) -> None:
    s = run(name, mixed_pool=True)
    assert s["requests_completed"] == s["requests_total"]
    assert verdict(s) is CASES[name][1][0]


def test_pure_pd_mode_passes_case_a_prime_where_the_reference_fails() -> None:
    """The documented difference: without lending no prompt stalls the single decode instance."""
    pure = run("A'", mixed_pool=False)
    mixed = run("A'", mixed_pool=True)
    assert verdict(pure) is True
    assert pure["latency"]["tbt_splitwise_s"]["p99"] < mixed["latency"]["tbt_splitwise_s"]["p99"]
