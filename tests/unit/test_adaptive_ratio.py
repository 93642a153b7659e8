"""Adaptive P/D ratio (policy/ratio.py) and its use by the HeteroScale policy: bounds, hysteresis, rate
limit, holds, convergence, validation, and no change at all when the option is unset.

Demands in the default builders: P_need = prefill TPS / 10 000, D_need = decode TPS / 1 000, so an
observation with decode TPS 20 000 and prefill TPS 200 000·r has the true ratio r.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from heteroscale.domain.decision import Reason
from heteroscale.domain.observation import Observation
from heteroscale.errors import ConfigError
from heteroscale.policy.context import PolicyMemory
from heteroscale.policy.heteroscale import HeteroScalePolicy
from heteroscale.policy.ratio import AdaptiveRatio, adapt_ratio, current_ratio
from heteroscale.policy.registry import make_policy
from tests.unit.adaptive_ratio_builders import DECODE_TPS, HOLDS, adaptive, policy, prefill_for, remembered, step_names
from tests.unit.policy_builders import NOW, counts, ctx, desired, observation, spec, targets

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
