"""The single-signal policies, the ablations and the ratio band, periodic and static policies, the
registry, and every step's reason."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from heteroscale.domain.decision import Reason
from heteroscale.domain.state import ScaleInMode
from heteroscale.policy.ablations import IndependentTpsPolicy, PureLatencyPolicy
from heteroscale.policy.context import PolicyContext
from heteroscale.policy.heteroscale import HeteroScalePolicy, LatencyTier
from heteroscale.policy.normalize import (
    PD,
    Stability,
)
from heteroscale.policy.periodic import DAY_S, PeriodicPolicy, Schedule, ScheduleEntry, StaticPolicy
from heteroscale.policy.registry import POLICY_NAMES, make_policy
from heteroscale.policy.signals import SingleSignalPolicy
from heteroscale.policy.stages import repair_ratio_band
from tests.unit.policy_builders import (
    NOW,
    ctx,
    desired,
    memory,
    observation,
)

# --- single-signal policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "obs_kwargs", "expected"),
    [
        ("decode-tps", {"decode_tps": 30_000.0}, (15, 30)),
        ("prefill-tps", {"prefill_tps": 150_000.0}, (15, 30)),  # P = 15, D = round(15 / 0.5)
        ("decode-gpu-util", {"decode_util": 1.0}, (13, 25)),  # ceil(20 · 1.0/0.8) = 25
        ("decode-gpu-util", {"decode_util": 0.85}, (10, 20)),  # 22/20 = 1.1 → hold
        ("prefill-gpu-util", {"prefill_util": 0.4}, (8, 15)),  # ceil(10·0.5) = 5, D 10; damped −25 % each
        ("decode-sm-activity", {"decode_sm": 0.75}, (15, 30)),
        ("ttft", {"ttft_p90_s": 2.0}, (12, 24)),  # above 1.6 s: P +20 %
        ("ttft", {"ttft_p90_s": 0.5}, (9, 18)),  # below 0.8 s: P −10 %
        ("ttft", {"ttft_p90_s": 1.0}, (10, 20)),  # in band
        ("tbt", {"tbt_p90_s": 0.09}, (12, 24)),  # D +20 %, P follows
        ("tbt", {"tbt_p90_s": 0.03}, (9, 18)),
    ],
)
def test_single_signal_policies(signal: str, obs_kwargs: dict[str, Any], expected: tuple[int, int]) -> None:
    policy = SingleSignalPolicy(signal)
    assert policy.name == f"signal:{signal}"
    result = policy.decide(ctx(obs=observation(**obs_kwargs)))
    assert desired(result) == expected


def test_single_signal_holds_on_missing_signal() -> None:
    result = SingleSignalPolicy("decode-gpu-util").decide(ctx(obs=observation(decode_util=None, decode_tps=1.0)))
    assert desired(result) == (10, 20)
    assert result.decision.steps[0].reason is Reason.HOLD_NO_SIGNAL


def test_unknown_signal() -> None:
    with pytest.raises(ValueError, match="known signals"):
        SingleSignalPolicy("kv-usage")


# --- ablations and the ratio band -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("want", "expected", "reason"),
    [
        ((10, 20), (10, 20), Reason.RATIO_BAND_OK),
        ((8, 20), (8, 20), Reason.RATIO_BAND_OK),  # 0.4 within [0.375, 0.625]
        ((5, 20), (8, 20), Reason.RATIO_BAND_REPAIRED),  # P short: ceil(20·0.375)
        ((15, 20), (15, 24), Reason.RATIO_BAND_REPAIRED),  # D short: ceil(15/0.625)
        ((3, 0), (3, 5), Reason.RATIO_BAND_REPAIRED),
    ],
)
def test_kthena_band_repair(want: tuple[int, int], expected: tuple[int, int], reason: Reason) -> None:
    got = repair_ratio_band(PD(10, 20), PD(*want), 0.5 * 0.75, 0.5 * 1.25)
    assert ((got.prefill, got.decode), got.reason) == (expected, reason)


def test_independent_tps_does_not_coordinate() -> None:
    result = IndependentTpsPolicy().decide(ctx(obs=observation(prefill_tps=50_000.0, decode_tps=30_000.0)))
    assert desired(result) == (8, 30)  # P in (damped −25 %), D out: pools move apart
    assert result.scale_in_mode is ScaleInMode.KILL


@pytest.mark.parametrize(
    ("obs_kwargs", "mem", "expected"),
    [
        ({"ttft_p90_s": 2.0, "tbt_p90_s": 0.09}, {}, (11, 21)),
        ({"ttft_p90_s": 0.5, "tbt_p90_s": 0.03}, {}, (9, 19)),
        ({"ttft_p90_s": 1.0, "tbt_p90_s": 0.05}, {}, (10, 20)),
        ({"ttft_p90_s": 2.0, "tbt_p90_s": 0.03}, {}, (11, 19)),
        ({"ttft_p90_s": 2.0, "tbt_p90_s": 0.09}, {"values": (("prefill.last_scale_out_s", NOW - 60),)}, (10, 21)),
    ],
)
def test_pure_latency(obs_kwargs: dict[str, Any], mem: dict[str, Any], expected: tuple[int, int]) -> None:
    result = PureLatencyPolicy().decide(ctx(obs=observation(**obs_kwargs), memory=memory(**mem)))
    assert desired(result) == expected


# --- periodic and static -------------------------------------------------------------------------------

H = 3600.0
SCHEDULE = Schedule.of(
    [
        ScheduleEntry(frozenset(range(5)), 8 * H, 20 * H, 6, 12, "weekday day"),
        ScheduleEntry(frozenset({4}), 22 * H, 6 * H, 4, 8, "friday night"),
    ],
    default=(2, 4),
)


@pytest.mark.parametrize(
    ("now_s", "schedule", "expected", "reason"),
    [
        (9 * H, SCHEDULE, (6, 12), Reason.SCHEDULED),  # Monday 09:00
        (7 * H, SCHEDULE, (2, 4), Reason.SCHEDULE_DEFAULT),  # Monday 07:00
        (5 * DAY_S + 9 * H, SCHEDULE, (2, 4), Reason.SCHEDULE_DEFAULT),  # Saturday 09:00
        (4 * DAY_S + 23 * H, SCHEDULE, (4, 8), Reason.SCHEDULED),  # Friday 23:00
        (5 * DAY_S + 3 * H, SCHEDULE, (4, 8), Reason.SCHEDULED),  # Saturday 03:00: wraps from Friday
        (7 * DAY_S + 9 * H, SCHEDULE, (6, 12), Reason.SCHEDULED),  # next Monday
        (9 * H, dataclasses.replace(SCHEDULE, start_weekday=5), (2, 4), Reason.SCHEDULE_DEFAULT),  # day 0 = Saturday
        (9 * H, Schedule.of([], default=(200, 1)), (100, 1), Reason.SCHEDULE_DEFAULT),  # bounds still apply
    ],
)
def test_periodic(now_s: float, schedule: Schedule, expected: tuple[int, int], reason: Reason) -> None:
    result = PeriodicPolicy(schedule).decide(ctx(now_s=now_s, obs=None))
    assert result.decision.steps[0].reason is reason
    assert desired(result) == expected


def test_static_holds_its_counts_through_bounds() -> None:
    assert desired(StaticPolicy(7, 9).decide(ctx(obs=None))) == (7, 9)
    fixed = StaticPolicy(0, 500, name="fixed").decide(ctx())
    assert desired(fixed) == (1, 100)
    assert fixed.decision.steps[-1].reason is Reason.CLAMPED_MIN


# --- registry ------------------------------------------------------------------------------------------


def options_for(name: str) -> dict[str, object]:
    return {"prefill": 3, "decode": 6} if name in ("static", "fixed", "periodic") else {}


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_registry_builds_every_policy(name: str) -> None:
    policy = make_policy(name, options_for(name))
    assert policy.name == name


def test_registry_rejects_unknown_names_and_options() -> None:
    known = r"unknown policy 'nope' \(known: 'heteroscale', 'periodic', 'signal:prefill-tps'.*'fixed'\)"
    with pytest.raises(ValueError, match=known):
        make_policy("nope")
    with pytest.raises(ValueError, match="unknown option 'theta'"):
        make_policy("heteroscale", {"theta": 0.2})
    with pytest.raises(ValueError, match="must be a number"):
        make_policy("hpa", {"tolerance": "big"})
    with pytest.raises(ValueError, match="needs 'prefill' and 'decode'"):
        make_policy("static")


def test_registry_options() -> None:
    policy = make_policy(
        "heteroscale",
        {"theta_out": 0.2, "scale_in_cooldown_s": 300, "latency_tiers": [[1.2, 0.3]], "drain_grace_s": 120},
    )
    assert isinstance(policy, HeteroScalePolicy)
    assert policy.params.stability == Stability(theta_out=0.2, scale_in_cooldown_s=300.0)
    assert policy.params.latency_tiers == (LatencyTier(1.2, 0.3),)
    apa = make_policy("aibrix-apa", {"scale_in": "drain"})
    assert apa.decide(ctx()).scale_in_mode is ScaleInMode.DRAIN
    periodic = make_policy(
        "periodic",
        {
            "entries": [{"weekdays": ["mon-fri"], "start": "08:00", "end": "20:00", "prefill": 6, "decode": 12}],
            "default": [2, 4],
        },
    )
    assert desired(periodic.decide(ctx(now_s=4 * DAY_S + 9 * H))) == (6, 12)  # Friday 09:00
    assert desired(periodic.decide(ctx(now_s=5 * DAY_S + 9 * H))) == (2, 4)


# --- every step explains itself ------------------------------------------------------------------------

CONTEXTS = [
    ctx(),
    ctx(obs=observation(decode_tps=40_000.0, tbt_p90_s=0.3, decode_util=1.0, prefill_util=0.2, ttft_p90_s=3.0)),
    ctx(obs=observation(decode_tps=4_000.0, prefill_tps=10_000.0, decode_util=0.3, ttft_p90_s=0.1, tbt_p90_s=0.01)),
    ctx(obs=None, error="down"),
    ctx(obs=observation(stale=True)),
    ctx(memory=memory(last_scale_out_s=NOW - 10), obs=observation(decode_tps=40_000.0)),
]


@pytest.mark.parametrize("name", POLICY_NAMES)
@pytest.mark.parametrize("context", CONTEXTS)
def test_every_step_has_a_reason_and_a_detail(name: str, context: PolicyContext) -> None:
    result = make_policy(name, options_for(name)).decide(context)
    assert result.decision.steps
    for s in result.decision.steps:
        assert isinstance(s.reason, Reason) and s.reason.value
        assert s.detail.strip(), f"{name}: step {s.name} has no detail"
    last = result.decision.steps[-1]
    assert (last.prefill, last.decode) == desired(result)
    assert result.recommendation.service == "svc"
