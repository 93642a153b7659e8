"""Adaptive P/D ratio (policy/ratio.py) and its use by the HeteroScale policy: bounds, hysteresis, rate
limit, holds, convergence, validation, and no change at all when the option is unset.

Demands in the default builders: P_need = prefill TPS / 10 000, D_need = decode TPS / 1 000, so an
observation with decode TPS 20 000 and prefill TPS 200 000·r has the true ratio r.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heteroscale.domain.decision import Reason
from heteroscale.domain.observation import Observation
from heteroscale.errors import ConfigError
from heteroscale.policy.context import PolicyContext, PolicyMemory, PolicyResult
from heteroscale.policy.heteroscale import HeteroScaleParams, HeteroScalePolicy
from heteroscale.policy.ratio import AdaptiveRatio, adapt_ratio, current_ratio
from heteroscale.policy.registry import make_policy
from tests.unit.policy_builders import NOW, counts, ctx, desired, observation, spec, targets

DECODE_TPS = 20_000.0  # D_need = 20


def prefill_for(ratio: float, decode_tps: float = DECODE_TPS) -> float:
    """The prefill TPS whose demand is ``ratio`` × the decode demand of ``decode_tps``."""
    return 10.0 * ratio * decode_tps


def adaptive(**overrides: Any) -> AdaptiveRatio:
    """Default bounds [0.25, 8], hysteresis 10 %, 10 %/min; no smoothing unless asked for."""
    base: dict[str, Any] = {"smoothing_s": 0.0}
    base.update(overrides)
    return AdaptiveRatio(**base)


def remembered(ratio: float, *, dt: float = 30.0, p_need: float | None = None, d_need: float = 20.0) -> PolicyMemory:
    """Memory of a previous estimate ``dt`` seconds before NOW that settled on ``ratio``."""
    values = {
        "ratio.current": ratio,
        "ratio.at_s": NOW - dt,
        "ratio.p_need": ratio * d_need if p_need is None else p_need,
        "ratio.d_need": d_need,
    }
    return PolicyMemory(values=tuple(sorted(values.items())))


def policy(**overrides: Any) -> HeteroScalePolicy:
    return HeteroScalePolicy(HeteroScaleParams(adaptive_ratio=adaptive(**overrides)))


def step_names(result: PolicyResult) -> tuple[str, ...]:
    return tuple(s.name for s in result.decision.steps)


# --- adapt_ratio: one decision ------------------------------------------------------------------

UNSET = None  # no memory: the first decision (dt = ∞, one minute of rate)


@pytest.mark.parametrize(
    ("params", "before", "dt", "prefill_tps", "decode_tps", "expected", "reason", "says"),
    [
        # within the hysteresis band (±10 % of r): kept, the numbers shown
        ({}, 4.0, 30, prefill_for(4.2), DECODE_TPS, 4.0, Reason.RATIO_WITHIN_BAND, ["r*=4.2", "±10% of r=4: kept"]),
        ({}, 4.0, 30, prefill_for(3.7), DECODE_TPS, 4.0, Reason.RATIO_WITHIN_BAND, ["r*=3.7"]),
        ({}, 4.0, 30, prefill_for(4.4), DECODE_TPS, 4.0, Reason.RATIO_WITHIN_BAND, ["r*=4.4"]),  # on the edge
        (
            {},
            4.0,
            30,
            prefill_for(4.2),
            DECODE_TPS,
            4.0,
            Reason.RATIO_WITHIN_BAND,
            ["P_need=8.4e+05/1e+04=84", "D_need=2e+04/1000=20", "smoothed 84/20"],
        ),
        # outside the band: rate-limited to 10 %/min of r over dt (30 s → 5 %)
        ({}, 1.0, 30, prefill_for(4.0), DECODE_TPS, 1.05, Reason.RATIO_RATE_LIMITED, ["r*=4", "10%/min: 1→1.05"]),
        ({}, 4.0, 30, prefill_for(1.0), DECODE_TPS, 3.8, Reason.RATIO_RATE_LIMITED, ["r*=1", "4→3.8"]),
        ({}, 4.0, 120, prefill_for(1.0), DECODE_TPS, 3.2, Reason.RATIO_RATE_LIMITED, ["4→3.2"]),  # 2 min: 20 %
        # outside the band but within the rate: reaches the estimate
        (
            {"max_change_per_min": 0.5},
            1.0,
            60,
            prefill_for(1.2),
            DECODE_TPS,
            1.2,
            Reason.RATIO_ADAPTED,
            ["r*=1.2", "r 1→1.2"],
        ),
        # bounded above / below by [min_ratio, max_ratio]
        (
            {"max_change_per_min": 1.0},
            7.0,
            60,
            prefill_for(20.0),
            DECODE_TPS,
            8.0,
            Reason.RATIO_ADAPTED,
            ["r*=20", "bounded to [0.25, 8] → 8", "r 7→8"],
        ),
        (
            {"max_change_per_min": 1.0},
            0.5,
            60,
            prefill_for(0.05),
            DECODE_TPS,
            0.25,
            Reason.RATIO_ADAPTED,
            ["r*=0.05", "bounded to [0.25, 8] → 0.25"],
        ),
        ({}, 8.0, 30, prefill_for(20.0), DECODE_TPS, 8.0, Reason.RATIO_WITHIN_BAND, ["bounded to [0.25, 8] → 8"]),
        ({}, 1.0, 30, 0.0, DECODE_TPS, 0.95, Reason.RATIO_RATE_LIMITED, ["r*=0", "→ 0.25"]),  # no prefill demand
        # missing prefill or decode TPS, or no decode demand: held
        ({}, 4.0, 30, None, DECODE_TPS, 4.0, Reason.RATIO_HELD, ["r=4 kept", "not measured"]),
        ({}, 4.0, 30, prefill_for(1.0), None, 4.0, Reason.RATIO_HELD, ["r=4 kept", "not measured"]),
        ({}, 4.0, 30, math.nan, DECODE_TPS, 4.0, Reason.RATIO_HELD, ["not measured"]),
        ({}, 4.0, 30, prefill_for(1.0), math.inf, 4.0, Reason.RATIO_HELD, ["not measured"]),
        ({}, 4.0, 30, prefill_for(1.0), 0.0, 4.0, Reason.RATIO_HELD, ["r=4 kept", "no decode demand", "D_need="]),
        ({}, 4.0, 30, 0.0, 0.0, 4.0, Reason.RATIO_HELD, ["no decode demand"]),
        # first decision: from the service's ratio (within bounds), one minute of rate
        ({}, UNSET, 0, prefill_for(4.0), DECODE_TPS, 1.1, Reason.RATIO_RATE_LIMITED, ["1→1.1"]),
        ({"min_ratio": 2.0}, UNSET, 0, prefill_for(2.1), DECODE_TPS, 2.0, Reason.RATIO_WITHIN_BAND, ["r=2"]),
        ({}, UNSET, 0, None, DECODE_TPS, 1.0, Reason.RATIO_HELD, ["r=1 kept"]),
    ],
)
def test_adapt_ratio_one_decision(
    params: dict[str, Any],
    before: float | None,
    dt: float,
    prefill_tps: float | None,
    decode_tps: float | None,
    expected: float,
    reason: Reason,
    says: list[str],
) -> None:
    bounds = adaptive(**params)
    memory = PolicyMemory() if before is None else remembered(before, dt=dt)
    context = ctx(
        now_s=NOW,
        spec=spec(pd_ratio=1.0),
        obs=observation(prefill_tps=prefill_tps, decode_tps=decode_tps),
        memory=memory,
    )
    ratio, step, updated = adapt_ratio(context, 1.0, bounds)
    assert ratio == pytest.approx(expected, rel=1e-9)
    assert step.reason is reason, step.detail
    for fragment in says:
        assert fragment in step.detail, step.detail
    assert (step.name, step.prefill, step.decode) == ("ratio", 10, 20)  # explains, never moves counts
    assert bounds.min_ratio <= ratio <= bounds.max_ratio
    if before is not None:  # |Δr| ≤ max_change_per_min · r · dt/60
        assert abs(ratio - before) <= bounds.max_change_per_min * before * dt / 60 + 1e-12
    assert updated.value("ratio.current", math.nan) == ratio
    assert current_ratio(updated, 1.0, bounds) == ratio


@pytest.mark.parametrize(
    ("remembered_needs", "seen_needs", "estimate"),
    [
        # weight 1 − e^{−dt/τ} = 0.632 at dt = τ: P̄ = 0.632·80 + 0.368·20, D̄ = 20
        ((20.0, 20.0), (80.0, 20.0), 2.8964),
        # demand-weighted: a quiet interval with another mix barely moves a busy estimate of 4 …
        ((80.0, 20.0), (1.0, 1.0), 3.7626),
        # … a busy one moves it most of the way
        ((80.0, 20.0), (100.0, 100.0), 1.3128),
    ],
)
def test_estimate_is_an_ewma_of_the_demands(
    remembered_needs: tuple[float, float], seen_needs: tuple[float, float], estimate: float
) -> None:
    p_mem, d_mem = remembered_needs
    p_seen, d_seen = seen_needs
    bounds = adaptive(smoothing_s=300.0, hysteresis=0.0, max_change_per_min=100.0)
    context = ctx(
        now_s=NOW,
        obs=observation(prefill_tps=p_seen * 10_000, decode_tps=d_seen * 1_000),
        memory=remembered(p_mem / d_mem, dt=300.0, p_need=p_mem, d_need=d_mem),
    )
    ratio, step, updated = adapt_ratio(context, 1.0, bounds)
    assert ratio == pytest.approx(estimate, rel=1e-4)
    assert f"r*={estimate:.3g}" in step.detail
    assert updated.value("ratio.p_need") / updated.value("ratio.d_need") == pytest.approx(estimate, rel=1e-4)
    assert updated.value("ratio.at_s") == NOW


@pytest.mark.parametrize(
    ("missing", "key"),
    [("prefill_tps_per_instance", "prefill:h100-sxm:tp4"), ("decode_tps_per_instance", "decode:h100-sxm:tp4")],
)
def test_a_missing_preferred_target_is_a_one_line_config_error(missing: str, key: str) -> None:
    # a preferred shape without a per-instance target: a ConfigError naming the key, not a KeyError
    context = ctx(targets=targets(**{missing: ()}))
    with pytest.raises(ConfigError, match=f"no per-instance TPS target for preferred shape '{key}'") as info:
        policy().decide(context)
    assert "\n" not in str(info.value)


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"min_ratio": 2.0, "max_ratio": 1.0}, "min_ratio"),
        ({"min_ratio": 0.0}, "min_ratio"),
        ({"min_ratio": -1.0}, "min_ratio"),
        ({"min_ratio": -2.0, "max_ratio": -1.0}, "min_ratio"),
        ({"min_ratio": math.nan}, "min_ratio"),
        ({"hysteresis": -0.1}, "hysteresis"),
        ({"hysteresis": math.inf}, "hysteresis"),
        ({"max_change_per_min": -0.1}, "max_change_per_min"),
        ({"smoothing_s": -1.0}, "smoothing_s"),
        ({"smoothing_s": math.nan}, "smoothing_s"),
    ],
)
def test_adaptive_ratio_rejects_bad_values(kwargs: dict[str, float], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        AdaptiveRatio(**kwargs)


def test_adaptive_ratio_accepts_edge_values() -> None:
    edge = AdaptiveRatio(min_ratio=2.0, max_ratio=2.0, hysteresis=0.0, max_change_per_min=0.0, smoothing_s=0.0)
    assert (edge.clamp(0.1), edge.clamp(9.0)) == (2.0, 2.0)


@pytest.mark.parametrize(
    ("nested", "says"),
    [
        ({"bogus": 1}, "heteroscale.adaptive_ratio: unknown option 'bogus'; known options: hysteresis"),
        ({"min_ratio": "low"}, "heteroscale.adaptive_ratio.min_ratio must be a number"),
        ({"hysteresis": True}, "heteroscale.adaptive_ratio.hysteresis must be a number"),
        (3, "heteroscale.adaptive_ratio must be a mapping"),
        ([0.5, 8.0], "heteroscale.adaptive_ratio must be a mapping"),
    ],
)
def test_make_policy_names_a_bad_nested_option(nested: object, says: str) -> None:
    with pytest.raises(ValueError) as info:
        make_policy("heteroscale", {"adaptive_ratio": nested})
    assert says in str(info.value)


@pytest.mark.parametrize("nested", [{"min_ratio": 2.0, "max_ratio": 1.0}, {"hysteresis": -1.0}])
def test_make_policy_rejects_a_bad_nested_value(nested: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(nested))):
        make_policy("heteroscale", {"adaptive_ratio": nested})


@pytest.mark.parametrize(
    ("nested", "says"),
    [
        ({"min_ratio": 2.0, "max_ratio": 1.0}, "heteroscale.adaptive_ratio: adaptive ratio needs 0 < min_ratio"),
        ({"hysteresis": -1.0}, "heteroscale.adaptive_ratio: adaptive ratio: hysteresis must be"),
        ({"bogus": 1}, "heteroscale.adaptive_ratio: unknown option 'bogus'"),  # already placed: not twice
    ],
)
def test_make_policy_names_where_a_bad_nested_value_is(nested: dict[str, float], says: str) -> None:
    # the params' own validation error is prefixed with where it is, once
    with pytest.raises(ValueError) as info:
        make_policy("heteroscale", {"adaptive_ratio": nested})
    message = str(info.value)
    assert message.startswith(says), message
    assert message.count("heteroscale.adaptive_ratio") == 1, message


def test_make_policy_builds_the_nested_option() -> None:
    built = make_policy("heteroscale", {"adaptive_ratio": {"min_ratio": 0.5, "max_ratio": 4, "smoothing_s": 60}})
    assert isinstance(built, HeteroScalePolicy)
    assert built.params.adaptive_ratio == AdaptiveRatio(min_ratio=0.5, max_ratio=4.0, smoothing_s=60.0)
    unset = make_policy("heteroscale", {"adaptive_ratio": None})
    assert isinstance(unset, HeteroScalePolicy) and unset.params.adaptive_ratio is None


# --- the policy: holds, the ratio step, unset ---------------------------------------------------

HOLDS: dict[str, dict[str, Any]] = {
    "stale": {"obs": observation(stale=True)},
    "missing": {"obs": None, "error": "prometheus timed out"},
    "decode TPS missing": {"obs": observation(decode_tps=None)},
    "prefill TPS missing": {"obs": observation(prefill_tps=None)},
}


@pytest.mark.parametrize("hold", sorted(HOLDS))
def test_a_hold_reports_the_remembered_ratio(hold: str) -> None:
    memory = remembered(3.0)
    result = policy().decide(ctx(now_s=NOW, spec=spec(pd_ratio=0.5), memory=memory, **HOLDS[hold]))
    assert result.pd_ratio == 3.0
    assert desired(result) == (10, 20)
    assert "ratio" not in step_names(result)
    assert result.memory.value("ratio.current") == 3.0
    assert result.memory.value("ratio.at_s") == NOW  # the rate-limit clock moves on, holds included


def test_a_first_hold_reports_the_service_ratio_within_bounds() -> None:
    result = policy(min_ratio=0.75).decide(ctx(spec=spec(pd_ratio=0.5), obs=observation(stale=True)))
    assert result.pd_ratio == 0.75


def test_the_ratio_step_comes_right_after_the_observation_and_sizes_prefill() -> None:
    # estimate 2.1 is within ±10 % of the remembered 2: P = ceil(D_need · 2) = 40, D = 20, held there
    context = ctx(
        now_s=NOW,
        spec=spec(pd_ratio=0.5),
        obs=observation(prefill_tps=prefill_for(2.1), prefill_ready=40),
        counts=counts(prefill=40, decode=20),
        memory=remembered(2.0),
    )
    result = policy().decide(context)
    assert step_names(result)[:4] == ("observation", "ratio", "demand", "stabilisation")
    assert result.decision.steps[1].reason is Reason.RATIO_WITHIN_BAND
    assert result.pd_ratio == 2.0
    assert (result.recommendation.prefill, result.recommendation.decode) == (40, 20)
    assert desired(result) == (40, 20)
    assert result.memory.value("ratio.current") == 2.0


FIXED_STEPS = (
    "observation",
    "demand",
    "stabilisation",
    "hysteresis",
    "pd-ratio",
    "latency",
    "warm-up",
    "cooldown",
    "damping",
    "bounds",
)


@pytest.mark.parametrize(
    ("options", "obs", "want_desired", "want_ratio"),
    [
        ({}, observation(), (10, 20), 0.5),  # D = 20 000/1 000, P = round(20 · 0.5)
        ({"adaptive_ratio": None}, observation(), (10, 20), 0.5),
        ({"pd_ratio": 0.75}, observation(), (15, 20), 0.75),
        ({}, observation(decode_tps=30_000.0, prefill_tps=prefill_for(6.0, 30_000.0)), (15, 30), 0.5),
        ({"pd_ratio": 2.0}, observation(decode_tps=30_000.0), (20, 30), 2.0),  # damped: +100 % of 10
    ],
)
def test_without_adaptive_ratio_the_decision_is_unchanged(
    options: dict[str, object], obs: Observation, want_desired: tuple[int, int], want_ratio: float
) -> None:
    built = make_policy("heteroscale", options)
    plain = built.decide(ctx(now_s=NOW, obs=obs))
    # whatever the memory says about a ratio is ignored when the option is unset
    with_memory = built.decide(ctx(now_s=NOW, obs=obs, memory=remembered(6.0)))
    for result in (plain, with_memory):
        assert step_names(result) == FIXED_STEPS
        assert all(not s.reason.value.startswith("ratio-") for s in result.decision.steps)
        assert desired(result) == want_desired
        assert result.pd_ratio == want_ratio
    assert plain.decision == with_memory.decision
    assert not [k for k, _ in plain.memory.values if k.startswith("ratio.")]


@pytest.mark.parametrize("options", [{}, {"pd_ratio": 1.5}])
def test_without_adaptive_ratio_a_hold_reports_the_fixed_ratio(options: dict[str, object]) -> None:
    result = make_policy("heteroscale", options).decide(ctx(obs=observation(stale=True), memory=remembered(6.0)))
    assert result.pd_ratio == options.get("pd_ratio", 0.5)


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
