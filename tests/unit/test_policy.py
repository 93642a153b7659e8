"""Policy engine: normalisation steps, sizing, HeteroScale, single-signal policies, ablations, registry.

The peers (hpa, aibrix-apa, kthena, dynamo-sla) are in test_peers.py."""

from __future__ import annotations

from typing import Any

import pytest

from heteroscale.domain.decision import Reason
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import ScaleInMode
from heteroscale.policy.context import PolicyResult, RoleCounts
from heteroscale.policy.heteroscale import HeteroScaleParams, HeteroScalePolicy, LatencyTier
from heteroscale.policy.normalize import (
    PD,
    clamp_bounds,
    cooldown,
    coordinate_pd,
    hold_on_bad_observation,
    hysteresis,
    limit_step,
    round_half_up,
    stabilise_scale_in,
)
from heteroscale.policy.registry import make_policy
from heteroscale.policy.sizing import size_by_capacity
from tests.unit.policy_builders import (
    D_SHAPE,
    D_SHAPE_2,
    M_DECODE,
    NOW,
    counts,
    ctx,
    desired,
    memory,
    observation,
    spec,
    step,
    warmed,
)

# --- hold on bad observations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obs", "error", "driving", "hold", "reason", "says"),
    [
        (None, "prometheus timed out", (), True, Reason.HOLD_MISSING, "prometheus timed out"),
        (None, None, (), True, Reason.HOLD_MISSING, "no observation"),
        (observation(stale=True), None, (), True, Reason.HOLD_STALE, "stale"),
        (observation(decode_tps=None), None, (), True, Reason.HOLD_PARTIAL, "decode has 20 ready"),
        (observation(prefill_tps=None, prefill_ready=0), None, (), True, Reason.HOLD_PARTIAL, "prefill has 10 ready"),
        (observation(decode_util=None), None, ("decode.gpu_util",), True, Reason.HOLD_NO_SIGNAL, "decode.gpu_util"),
        (observation(tbt_p90_s=None), None, ("tbt_p90_s",), True, Reason.HOLD_NO_SIGNAL, "tbt_p90_s"),
        (observation(decode_util=None), None, ("decode.tps",), False, Reason.OBSERVATION_OK, "decode.tps=2e+04"),
        (observation(), None, (), False, Reason.OBSERVATION_OK, "complete"),
    ],
)
def test_hold_on_bad_observation(
    obs: Any, error: str | None, driving: tuple[str, ...], hold: bool, reason: Reason, says: str
) -> None:
    held, checked = hold_on_bad_observation(obs, error, counts(prefill=10, decode=20, decode_starting=2), driving)
    assert held is hold
    assert checked.reason is reason
    assert says in checked.detail
    assert (checked.prefill, checked.decode) == (10, 22)  # current = ready + starting
    if hold:
        assert "no scale-in" in checked.detail


def test_no_ready_instances_without_tps_is_not_partial() -> None:
    held, _ = hold_on_bad_observation(
        observation(prefill_tps=None, prefill_ready=0), None, counts(prefill=0, prefill_starting=3), ()
    )
    assert not held


# --- bounds, damping, cooldown, coordination, hysteresis, stabilisation ----------------------------


@pytest.mark.parametrize(
    ("cur", "want", "allow_in", "expected", "reason"),
    [
        ((5, 10), (6, 12), True, (6, 12), Reason.WITHIN_BOUNDS),
        ((5, 10), (0, 12), True, (2, 12), Reason.CLAMPED_MIN),
        ((5, 10), (6, 80), True, (6, 50), Reason.CLAMPED_MAX),
        ((5, 60), (5, 60), False, (5, 60), Reason.WITHIN_BOUNDS),  # holding above max: no scale-in
        ((5, 60), (5, 60), True, (5, 50), Reason.CLAMPED_MAX),
        ((0, 0), (0, 0), False, (2, 3), Reason.CLAMPED_MIN),  # a hold may still raise to min
    ],
)
def test_clamp_bounds(
    cur: tuple[int, int], want: tuple[int, int], allow_in: bool, expected: tuple[int, int], reason: Reason
) -> None:
    got = clamp_bounds(
        spec(min_prefill=2, max_prefill=40, min_decode=3, max_decode=50), PD(*cur), PD(*want), allow_scale_in=allow_in
    )
    assert ((got.prefill, got.decode), got.reason) == (expected, reason)
    assert got.detail


@pytest.mark.parametrize(
    ("cur", "want", "kwargs", "expected", "reason"),
    [
        ((10, 20), (30, 60), {}, (20, 40), Reason.DAMPED),  # +100 %
        ((10, 20), (12, 25), {}, (12, 25), Reason.WITHIN_STEP_LIMIT),
        ((10, 20), (2, 4), {}, (8, 15), Reason.DAMPED),  # −25 % (floor), at least 1
        ((3, 2), (1, 1), {}, (2, 1), Reason.DAMPED),  # at least −1 when 25 % < 1
        ((0, 0), (5, 5), {}, (1, 1), Reason.DAMPED),  # at least +1 from zero
        ((10, 20), (30, 60), {"max_up_fraction": 0.5, "min_step": 2}, (15, 30), Reason.DAMPED),
        ((4, 4), (10, 10), {"max_up_fraction": 0.1, "min_step": 2}, (6, 6), Reason.DAMPED),
    ],
)
def test_limit_step(
    cur: tuple[int, int], want: tuple[int, int], kwargs: dict[str, Any], expected: tuple[int, int], reason: Reason
) -> None:
    got = limit_step(PD(*cur), PD(*want), **kwargs)
    assert ((got.prefill, got.decode), got.reason) == (expected, reason)


@pytest.mark.parametrize(
    ("mem", "want", "per_role", "expected", "reason"),
    [
        ({}, (12, 24), False, (12, 24), Reason.COOLDOWN_CLEAR),
        ({"last_scale_out_s": NOW - 100}, (12, 24), False, (10, 20), Reason.COOLDOWN_OUT),
        ({"last_scale_out_s": NOW - 179.9}, (12, 24), False, (10, 20), Reason.COOLDOWN_OUT),
        ({"last_scale_out_s": NOW - 180}, (12, 24), False, (12, 24), Reason.COOLDOWN_CLEAR),
        ({"last_scale_in_s": NOW - 30}, (12, 24), False, (12, 24), Reason.COOLDOWN_CLEAR),  # out after in: allowed
        ({"last_scale_out_s": NOW - 500}, (8, 16), False, (10, 20), Reason.COOLDOWN_IN),  # in within 600 s of out
        ({"last_scale_in_s": NOW - 599}, (8, 16), False, (10, 20), Reason.COOLDOWN_IN),
        ({"last_scale_in_s": NOW - 600, "last_scale_out_s": NOW - 900}, (8, 16), False, (8, 16), Reason.COOLDOWN_CLEAR),
        # per role: only the role that acted is cooling down
        ({"values": (("decode.last_scale_out_s", NOW - 10),)}, (12, 24), True, (12, 20), Reason.COOLDOWN_OUT),
        ({"last_scale_out_s": NOW - 10}, (12, 24), True, (12, 24), Reason.COOLDOWN_CLEAR),
    ],
)
def test_cooldown_compares_timestamps(
    mem: dict[str, Any], want: tuple[int, int], per_role: bool, expected: tuple[int, int], reason: Reason
) -> None:
    got = cooldown(NOW, memory(**mem), PD(10, 20), PD(*want), per_role=per_role)
    assert ((got.prefill, got.decode), got.reason) == (expected, reason)
    if reason is not Reason.COOLDOWN_CLEAR:
        assert "left" in got.detail


@pytest.mark.parametrize(
    ("mem", "expected", "reason"),
    [
        ({"last_scale_in_s": NOW - 300}, (8, 16), Reason.COOLDOWN_CLEAR),  # one step after a scale-in
        ({"last_scale_in_s": NOW - 299}, (10, 20), Reason.COOLDOWN_IN),
        # a scale-out still earns the full 600 s, whenever the last scale-in was
        ({"last_scale_out_s": NOW - 300, "last_scale_in_s": NOW - 900}, (10, 20), Reason.COOLDOWN_IN),
        ({"last_scale_out_s": NOW - 600, "last_scale_in_s": NOW - 300}, (8, 16), Reason.COOLDOWN_CLEAR),
    ],
)
def test_a_scale_in_step_waits_less_after_a_scale_in_than_after_a_scale_out(
    mem: dict[str, Any], expected: tuple[int, int], reason: Reason
) -> None:
    got = cooldown(NOW, memory(**mem), PD(10, 20), PD(8, 16), scale_in_s=600.0, scale_in_step_s=300.0)
    assert ((got.prefill, got.decode), got.reason) == (expected, reason)


@pytest.mark.parametrize(
    ("cur", "want", "driver", "overrides", "expected", "reason"),
    [
        ((10, 20), (0, 24), Role.DECODE, {}, (12, 24), Reason.PD_COORDINATED),
        ((10, 20), (0, 21), Role.DECODE, {}, (11, 21), Reason.PD_COORDINATED),  # 10.5 rounds half up
        ((10, 20), (0, 2), Role.DECODE, {"min_prefill": 3}, (3, 2), Reason.PD_COORDINATED),
        ((15, 20), (0, 22), Role.DECODE, {}, (15, 22), Reason.PD_DIRECTION_KEPT),  # D out, P would fall
        ((5, 20), (0, 16), Role.DECODE, {}, (5, 16), Reason.PD_DIRECTION_KEPT),  # D in, P would rise
        ((8, 20), (0, 20), Role.DECODE, {}, (10, 20), Reason.PD_COORDINATED),  # D holds: P repaired
        ((10, 20), (12, 0), Role.PREFILL, {}, (12, 24), Reason.PD_COORDINATED),
        ((10, 20), (1, 0), Role.PREFILL, {"pd_ratio": 4.0}, (1, 1), Reason.PD_COORDINATED),  # at least 1
    ],
)
def test_coordinate_pd(
    cur: tuple[int, int],
    want: tuple[int, int],
    driver: Role,
    overrides: dict[str, Any],
    expected: tuple[int, int],
    reason: Reason,
) -> None:
    got = coordinate_pd(spec(**overrides), PD(*cur), PD(*want), driver=driver)
    assert ((got.prefill, got.decode), got.reason) == (expected, reason)


@pytest.mark.parametrize(
    ("cur", "want", "driver", "expected", "reason"),
    [
        ((10, 20), (11, 22), Role.DECODE, (10, 20), Reason.HYSTERESIS_HOLD),  # R = 1.1 is not > 1.1
        ((10, 20), (12, 23), Role.DECODE, (12, 23), Reason.HYSTERESIS_OUT),
        ((10, 20), (9, 18), Role.DECODE, (10, 20), Reason.HYSTERESIS_HOLD),  # R = 0.9 is not < 0.9
        ((10, 20), (8, 17), Role.DECODE, (8, 17), Reason.HYSTERESIS_IN),
        ((0, 0), (1, 2), Role.DECODE, (1, 2), Reason.HYSTERESIS_OUT),
        ((0, 0), (0, 0), Role.DECODE, (0, 0), Reason.HYSTERESIS_HOLD),
        ((10, 20), (15, 21), None, (15, 20), Reason.HYSTERESIS_OUT),  # each role on its own R
        ((10, 20), (5, 23), None, (5, 23), Reason.HYSTERESIS_OUT),
    ],
)
def test_hysteresis(
    cur: tuple[int, int], want: tuple[int, int], driver: Role | None, expected: tuple[int, int], reason: Reason
) -> None:
    got = hysteresis(PD(*cur), PD(*want), driver=driver)
    assert ((got.prefill, got.decode), got.reason) == (expected, reason)


@pytest.mark.parametrize(
    ("history", "want", "expected", "reason"),
    [
        (((NOW, 5, 10),), (5, 10), (5, 10), Reason.NOT_STABILISED),
        (((NOW - 100, 9, 19), (NOW, 5, 10)), (5, 10), (9, 19), Reason.STABILISED),
        (((NOW - 100, 30, 40), (NOW, 5, 10)), (5, 10), (10, 20), Reason.STABILISED),  # never above current
        (((NOW - 301, 9, 19), (NOW, 5, 10)), (5, 10), (5, 10), Reason.NOT_STABILISED),  # outside the window
        (((NOW - 100, 5, 10), (NOW, 12, 25)), (12, 25), (12, 25), Reason.NOT_STABILISED),  # scale-out passes
    ],
)
def test_stabilise_scale_in(
    history: tuple[tuple[float, int, int], ...], want: tuple[int, int], expected: tuple[int, int], reason: Reason
) -> None:
    got = stabilise_scale_in(NOW, history, PD(10, 20), PD(*want), window_s=300.0)
    assert ((got.prefill, got.decode), got.reason) == (expected, reason)


@pytest.mark.parametrize(("x", "n"), [(0.5, 1), (1.5, 2), (2.5, 3), (2.49, 2), (0.0, 0)])
def test_round_half_up(x: float, n: int) -> None:
    assert round_half_up(x) == n


# --- capacity-based sizing ----------------------------------------------------------------------------

H100, H20 = D_SHAPE.key, D_SHAPE_2.key
TPS = ((H100, 1000.0), (H20, 500.0))


@pytest.mark.parametrize(
    ("m_tps", "role_counts", "shapes", "expected"),
    [
        (20_000.0, RoleCounts(ready=20), (D_SHAPE,), 20),
        (20_000.0001, RoleCounts(ready=20), (D_SHAPE,), 21),
        (15_500.0, RoleCounts(ready=20), (D_SHAPE,), 16),
        (15_500.0, RoleCounts(ready=0), (D_SHAPE,), 16),
        (0.0, RoleCounts(ready=20), (D_SHAPE,), 0),
        # 10 H100 + 10 H20: capacity 15 000; above it new instances are H100s (1000 each)
        (20_000.0, RoleCounts(ready=20, by_shape=((H100, 10), (H20, 10))), (D_SHAPE, D_SHAPE_2), 25),
        (15_000.0, RoleCounts(ready=20, by_shape=((H100, 10), (H20, 10))), (D_SHAPE, D_SHAPE_2), 20),
        (7_500.0, RoleCounts(ready=20, by_shape=((H100, 10), (H20, 10))), (D_SHAPE, D_SHAPE_2), 10),
        # preferred H20: new instances carry 500 each
        (20_000.0, RoleCounts(ready=20, by_shape=((H100, 10), (H20, 10))), (D_SHAPE_2, D_SHAPE), 30),
        # starting instances are capacity; instances missing from by_shape count as preferred
        (20_000.0, RoleCounts(ready=10, starting=10, by_shape=((H20, 10),)), (D_SHAPE,), 25),
    ],
)
def test_size_by_capacity(m_tps: float, role_counts: RoleCounts, shapes: Any, expected: int) -> None:
    assert size_by_capacity(m_tps, role_counts, shapes, TPS).count == expected


def test_size_by_capacity_missing_target_counts_at_preferred() -> None:
    got = size_by_capacity(12_000.0, RoleCounts(ready=10, by_shape=(("decode:l20:tp2", 10),)), (D_SHAPE,), TPS)
    assert got.count == 12
    assert "no target for decode:l20:tp2" in got.detail


# --- HeteroScale ---------------------------------------------------------------------------------------


def hetero(**overrides: Any) -> PolicyResult:
    """HeteroScale on ``ctx(**overrides)``, its warm-up over (a full window observed) unless told."""
    overrides["memory"] = warmed(overrides.get("memory"))
    return HeteroScalePolicy().decide(ctx(**overrides))


@pytest.mark.parametrize(
    ("decode_tps", "expected"),
    [
        (20_000.0, (10, 20)),  # R = 1: hold
        (21_900.0, (10, 20)),  # D_new 22, R = 1.1: hold
        (30_000.0, (15, 30)),  # out: D 30, P = round(30·0.5)
        (50_000.0, (20, 40)),  # out, damped to +100 %
        (15_000.0, (8, 15)),  # in: D 15, P = round(7.5) = 8
        (5_000.0, (8, 15)),  # in, damped to −25 %
    ],
)
def test_heteroscale_proportional(decode_tps: float, expected: tuple[int, int]) -> None:
    assert desired(hetero(obs=observation(decode_tps=decode_tps))) == expected


def test_heteroscale_recommendation_is_raw() -> None:
    result = hetero(obs=observation(decode_tps=50_000.0))
    assert (result.recommendation.prefill, result.recommendation.decode) == (25, 50)
    assert result.recommendation.reason is Reason.PROPORTIONAL
    assert "M=5e+04" in result.recommendation.detail


def test_heteroscale_counts_capacity_per_sku() -> None:
    two = spec(decode_shapes=(D_SHAPE, D_SHAPE_2))
    mixed = counts(prefill=10, decode=20, decode_by_shape=((H100, 10), (H20, 10)))
    result = hetero(spec=two, counts=mixed, obs=observation(decode_tps=20_000.0))
    assert result.recommendation.decode == 25  # 15 000 of capacity + 5 new H100s
    assert desired(result) == (13, 25)


@pytest.mark.parametrize(
    ("latency", "count_kwargs", "expected", "reason"),
    [
        ({"tbt_p90_s": 0.105}, {}, (10, 20), Reason.LATENCY_OK),  # 1.05× SLO
        ({"tbt_p90_s": 0.11}, {}, (11, 22), Reason.LATENCY_MODERATE),  # 1.1×: +10 %
        ({"tbt_p90_s": 0.14}, {}, (11, 22), Reason.LATENCY_MODERATE),
        ({"tbt_p90_s": 0.15}, {}, (12, 24), Reason.LATENCY_SEVERE),  # 1.5×: +20 %
        ({"ttft_p90_s": 3.2}, {}, (12, 24), Reason.LATENCY_SEVERE),  # TTFT 1.6× its SLO
        ({"tbt_p90_s": 0.11}, {"prefill": 3, "decode": 6}, (4, 7), Reason.LATENCY_MODERATE),  # at least +1
        # starting instances already cover the bump: no repeated scale-out while they load
        ({"tbt_p90_s": 0.2}, {"prefill_starting": 2, "decode_starting": 4}, (12, 24), Reason.LATENCY_COVERED),
    ],
)
def test_latency_tiers(
    latency: dict[str, Any], count_kwargs: dict[str, Any], expected: tuple[int, int], reason: Reason
) -> None:
    base: dict[str, Any] = {"prefill": 10, "decode": 20, **count_kwargs}
    ready_d = base["decode"]
    obs = observation(decode_tps=ready_d * M_DECODE, decode_ready=ready_d, prefill_ready=base["prefill"], **latency)
    result = hetero(counts=counts(**base), obs=obs)
    assert step(result, "latency").reason is reason
    assert desired(result) == expected


def test_latency_tiers_are_scale_out_only_and_configurable() -> None:
    params = HeteroScaleParams(latency_tiers=(LatencyTier(1.2, 0.5),))
    obs = observation(decode_tps=20_000.0, tbt_p90_s=0.125)
    result = HeteroScalePolicy(params).decide(ctx(obs=obs))
    assert desired(result) == (15, 30)
    low = HeteroScalePolicy().decide(ctx(obs=observation(decode_tps=10_000.0, tbt_p90_s=0.01)))
    assert step(low, "latency").reason is Reason.LATENCY_OK


@pytest.mark.parametrize(
    ("p_starting", "d_starting", "expected"),
    [
        (0, 0, (12, 24)),  # 20 ready, M = 23 500 (saturated) → D_new 24: out
        (3, 5, (13, 25)),  # 20 ready + 5 starting: capacity 25 → D_new 24, R = 0.96: hold
    ],
)
def test_starting_instances_count_as_capacity(p_starting: int, d_starting: int, expected: tuple[int, int]) -> None:
    result = hetero(
        counts=counts(prefill=10, decode=20, prefill_starting=p_starting, decode_starting=d_starting),
        obs=observation(decode_tps=23_500.0),
    )
    assert result.decision.current_decode == 20 + d_starting
    assert desired(result) == expected


@pytest.mark.parametrize(
    ("mem", "decode_tps", "expected", "reason"),
    [
        ({"last_scale_out_s": NOW - 60}, 30_000.0, (10, 20), Reason.COOLDOWN_OUT),
        ({"last_scale_out_s": NOW - 200}, 30_000.0, (15, 30), Reason.COOLDOWN_CLEAR),
        ({"last_scale_out_s": NOW - 400}, 12_000.0, (10, 20), Reason.COOLDOWN_IN),
        ({"last_scale_in_s": NOW - 700}, 12_000.0, (8, 15), Reason.COOLDOWN_CLEAR),
        ({"last_scale_in_s": NOW - 400}, 12_000.0, (10, 20), Reason.COOLDOWN_IN),  # scale-in steps: 600 s too
    ],
)
def test_heteroscale_cooldowns(
    mem: dict[str, float], decode_tps: float, expected: tuple[int, int], reason: Reason
) -> None:
    result = hetero(memory=memory(**mem), obs=observation(decode_tps=decode_tps))
    assert step(result, "cooldown").reason is reason
    assert desired(result) == expected


def test_a_shorter_scale_in_cooldown_also_shortens_the_wait_between_scale_ins() -> None:
    # the step follows scale_in_cooldown_s unless it is set: a config that only shortens the cooldown
    # (as the demo does) keeps meaning what it meant before the step had a knob of its own
    policy = make_policy("heteroscale", {"scale_in_cooldown_s": 300})
    context = ctx(memory=warmed(memory(last_scale_in_s=NOW - 400)), obs=observation(decode_tps=12_000.0))
    result = policy.decide(context)
    assert step(result, "cooldown").reason is Reason.COOLDOWN_CLEAR
    assert desired(result) == (8, 15)


def test_heteroscale_memory_stamps_actions() -> None:
    out = hetero(obs=observation(decode_tps=30_000.0))
    assert (out.memory.last_scale_out_s, out.memory.last_direction) == (NOW, 1)
    assert out.memory.recommendations == ((NOW, 15, 30),)
    held = hetero(obs=observation(decode_tps=20_000.0))
    assert held.memory.last_scale_out_s is None


@pytest.mark.parametrize(
    "obs_kwargs",
    [
        {"obs": None, "error": "timeout"},
        {"obs": observation(stale=True, decode_tps=1.0)},
        {"obs": observation(decode_tps=None)},
    ],
)
def test_heteroscale_holds_on_bad_observations(obs_kwargs: dict[str, Any]) -> None:
    result = hetero(**obs_kwargs)
    assert desired(result) == (10, 20)
    assert result.decision.steps[0].reason in (Reason.HOLD_MISSING, Reason.HOLD_STALE, Reason.HOLD_PARTIAL)
    assert result.memory == warmed()  # unchanged by the hold


def test_heteroscale_hold_even_with_high_latency() -> None:
    result = hetero(obs=observation(stale=True, tbt_p90_s=1.0))
    assert desired(result) == (10, 20)


def test_heteroscale_scales_in_by_draining() -> None:
    context = ctx(obs=observation(decode_tps=5_000.0), memory=warmed())
    result = HeteroScalePolicy(HeteroScaleParams(drain_grace_s=300.0)).decide(context)
    assert (result.scale_in_mode, result.drain_grace_s) == (ScaleInMode.DRAIN, 300.0)
    assert desired(result) == (8, 15)
