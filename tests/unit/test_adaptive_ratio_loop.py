"""The adaptive P/D ratio in a closed loop: convergence, bounds, its rate limit, a restart from the journal."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heteroscale.domain.decision import Reason
from heteroscale.policy.context import PolicyContext, PolicyMemory, PolicyResult
from heteroscale.policy.heteroscale import HeteroScaleParams, HeteroScalePolicy
from heteroscale.policy.ratio import AdaptiveRatio
from tests.unit.adaptive_ratio_builders import DECODE_TPS, HOLDS, policy, prefill_for
from tests.unit.policy_builders import NOW, counts, ctx, desired, observation, spec, targets

# --- closed loop: convergence and properties ------------------------------------------------------


def run_loop(
    chosen: HeteroScalePolicy,
    observations: list[tuple[float | None, float | None]],
    *,
    service_ratio: float = 1.0,
    start: tuple[int, int] = (10, 20),
    bounds: tuple[int, int, int, int] = (1, 100, 1, 100),
) -> list[PolicyResult]:
    """Decide once per (prefill TPS, decode TPS), 30 s apart, feeding back the memory and taking the
    desired counts as ready for the next decision."""
    min_p, max_p, min_d, max_d = bounds
    service = spec(pd_ratio=service_ratio, min_prefill=min_p, max_prefill=max_p, min_decode=min_d, max_decode=max_d)
    memory, (prefill, decode) = PolicyMemory(), start
    results = []
    for k, (prefill_tps, decode_tps) in enumerate(observations):
        obs = observation(prefill_tps=prefill_tps, decode_tps=decode_tps, prefill_ready=prefill, decode_ready=decode)
        context = PolicyContext(NOW + 30.0 * k, service, obs, None, counts(prefill, decode), targets(), memory)
        result = chosen.decide(context)
        results.append(result)
        memory, (prefill, decode) = result.memory, desired(result)
    return results


def ratios(results: list[PolicyResult]) -> list[float]:
    out = []
    for result in results:
        assert result.pd_ratio is not None
        out.append(result.pd_ratio)
    return out


@pytest.mark.parametrize(("start", "true"), [(1.0, 4.0), (4.0, 1.0), (0.5, 3.0)])
def test_constant_demand_converges_monotonically_into_the_band(start: float, true: float) -> None:
    bounds = AdaptiveRatio()  # hysteresis 10 %, 10 %/min, τ = 300 s
    results = run_loop(
        HeteroScalePolicy(HeteroScaleParams(adaptive_ratio=bounds)),
        [(prefill_for(true), DECODE_TPS)] * 80,
        service_ratio=start,
    )
    seen = ratios(results)
    moves = [b - a for a, b in zip([start, *seen], seen, strict=False)]
    direction = 1.0 if true > start else -1.0
    assert all(direction * m >= 0 for m in moves), seen  # monotone
    assert all(direction * (true - r) >= -1e-12 for r in seen), seen  # never past the true ratio
    assert abs(seen[-1] - true) <= bounds.hysteresis * seen[-1] + 1e-12, seen
    assert abs(seen[1] - true) > bounds.hysteresis * seen[1]  # the rate limit makes it take a while
    reached = next(k for k, r in enumerate(seen) if abs(r - true) <= bounds.hysteresis * r + 1e-12)
    assert set(seen[reached:]) == {seen[reached]}  # and then it stays
    reasons = [r.decision.steps[1].reason for r in results]
    assert set(reasons[: reached + 1]) == {Reason.RATIO_RATE_LIMITED}
    assert set(reasons[reached + 1 :]) == {Reason.RATIO_WITHIN_BAND}
    final = desired(results[-1])
    assert final[1] == 20
    assert final[0] == math.ceil(20 * seen[-1] - 1e-9)


@st.composite
def adaptive_params(draw: st.DrawFn) -> AdaptiveRatio:
    low = draw(st.sampled_from([0.25, 0.5, 1.0]))
    return AdaptiveRatio(
        min_ratio=low,
        max_ratio=draw(st.sampled_from([low, 2.0, 4.0, 8.0])),
        hysteresis=draw(st.sampled_from([0.0, 0.05, 0.1, 0.3])),
        max_change_per_min=draw(st.sampled_from([0.0, 0.05, 0.1, 0.5, 2.0])),
        smoothing_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
    )


def tps(*, missing: bool, top: float) -> st.SearchStrategy[float | None]:
    values: list[st.SearchStrategy[float | None]] = [st.just(0.0), st.floats(0.0, top)]
    if missing:
        values.append(st.none())
    return st.one_of(*values)


def sequences(*, missing: bool) -> st.SearchStrategy[list[tuple[float | None, float | None]]]:
    one = st.tuples(tps(missing=missing, top=2_000_000.0), tps(missing=missing, top=100_000.0))
    return st.lists(one, min_size=2, max_size=30)


SERVICE_BOUNDS = st.tuples(st.integers(1, 5), st.integers(5, 60), st.integers(1, 5), st.integers(5, 60))
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_bounds(results: list[PolicyResult], params: AdaptiveRatio, bounds: tuple[int, int, int, int]) -> None:
    min_p, max_p, min_d, max_d = bounds
    for result in results:
        assert result.pd_ratio is not None
        assert params.min_ratio <= result.pd_ratio <= params.max_ratio
        p, d = desired(result)
        assert min_p <= p <= max_p and min_d <= d <= max_d


def check_rate(results: list[PolicyResult], params: AdaptiveRatio, dt: float = 30.0) -> None:
    seen = ratios(results)
    for before, after in itertools.pairwise(seen):
        assert abs(after - before) <= params.max_change_per_min * before * dt / 60 + 1e-9, seen


@PROPERTY
@given(
    params=adaptive_params(),
    service_ratio=st.sampled_from([0.1, 0.5, 1.0, 3.0, 12.0]),
    bounds=SERVICE_BOUNDS,
    observations=sequences(missing=True),
)
def test_ratio_and_counts_stay_within_bounds(
    params: AdaptiveRatio,
    service_ratio: float,
    bounds: tuple[int, int, int, int],
    observations: list[tuple[float | None, float | None]],
) -> None:
    start = (bounds[0], bounds[2])
    results = run_loop(
        HeteroScalePolicy(HeteroScaleParams(adaptive_ratio=params)),
        observations,
        service_ratio=service_ratio,
        start=start,
        bounds=bounds,
    )
    check_bounds(results, params, bounds)


@PROPERTY
@given(
    params=adaptive_params(),
    service_ratio=st.sampled_from([0.1, 0.5, 1.0, 3.0, 12.0]),
    bounds=SERVICE_BOUNDS,
    observations=sequences(missing=False),
)
def test_ratio_moves_at_most_at_its_rate_when_every_observation_is_complete(
    params: AdaptiveRatio,
    service_ratio: float,
    bounds: tuple[int, int, int, int],
    observations: list[tuple[float | None, float | None]],
) -> None:
    results = run_loop(
        HeteroScalePolicy(HeteroScaleParams(adaptive_ratio=params)),
        observations,
        service_ratio=service_ratio,
        start=(bounds[0], bounds[2]),
        bounds=bounds,
    )
    check_bounds(results, params, bounds)
    check_rate(results, params)


# A hold (stale/partial observation, or a missing TPS) keeps the ratio but moves the clock of the rate
# limit (ratio.at_s) on: time without an estimate earns no extra change for the next one.


@settings(PROPERTY, derandomize=True, database=None)
@given(
    params=adaptive_params(),
    service_ratio=st.sampled_from([0.1, 0.5, 1.0, 3.0, 12.0]),
    observations=sequences(missing=True),
)
def test_ratio_moves_at_most_at_its_rate_between_consecutive_decisions(
    params: AdaptiveRatio, service_ratio: float, observations: list[tuple[float | None, float | None]]
) -> None:
    results = run_loop(
        HeteroScalePolicy(HeteroScaleParams(adaptive_ratio=params)), observations, service_ratio=service_ratio
    )
    check_rate(results, params)


@pytest.mark.parametrize("gap", sorted(HOLDS))
def test_a_hold_does_not_bank_rate_for_the_next_decision(gap: str) -> None:
    chosen = policy()  # 10 %/min: at most 5 % per 30 s decision
    first = chosen.decide(ctx(now_s=NOW, spec=spec(pd_ratio=1.0), obs=observation(prefill_tps=prefill_for(4.0))))
    gap_ctx = ctx(now_s=NOW + 30, spec=spec(pd_ratio=1.0), memory=first.memory, **HOLDS[gap])
    held = chosen.decide(gap_ctx)
    after = chosen.decide(
        ctx(now_s=NOW + 60, spec=spec(pd_ratio=1.0), obs=observation(prefill_tps=prefill_for(4.0)), memory=held.memory)
    )
    assert held.pd_ratio is not None and after.pd_ratio is not None
    assert held.pd_ratio == first.pd_ratio
    assert held.memory.value("ratio.current") == first.pd_ratio
    assert held.memory.value("ratio.at_s") == NOW + 30
    assert after.pd_ratio > held.pd_ratio  # still moving towards 4, at the rate of 30 s only
    assert after.pd_ratio - held.pd_ratio <= 0.1 * held.pd_ratio * 30 / 60 + 1e-12


def test_a_restarted_controller_resumes_the_adaptive_ratio_from_its_journal() -> None:
    from heteroscale.controller.live import restore_memory
    from heteroscale.policy.ratio import current_ratio

    def record(at_s: float, pd_ratio: float | None) -> dict[str, Any]:
        decision = {"current_prefill": 4, "current_decode": 2, "desired_prefill": 4, "desired_decode": 2}
        rec = {"reason": "proportional", "prefill": 4, "decode": 2}
        return {"at_s": at_s, "service": "chat", "decision": decision, "recommendation": rec, "pd_ratio": pd_ratio}

    params = AdaptiveRatio(min_ratio=0.5, max_ratio=8.0)
    records = [record(30.0, 1.5), record(60.0, 2.25), {"at_s": 90.0, "service": "other", "pd_ratio": 7.0}]
    memory = restore_memory(records, "chat", now_s=120.0, window_s=300.0)
    assert current_ratio(memory, 1.0, params) == pytest.approx(2.25)
    # a journal from before the field existed (or a bad value): the service's ratio, as before
    for old in ([record(30.0, None)], [{**record(30.0, None), "pd_ratio": "x"}], [record(30.0, -1.0)]):
        assert current_ratio(restore_memory(old, "chat", now_s=120.0, window_s=300.0), 1.0, params) == 1.0
