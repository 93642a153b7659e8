"""HeteroScale sees demand when prefill censors decode TPS, and its safety net works when it is needed.

Builders' defaults (tests/unit/policy_builders.py): 1 000 decode tok/s and 5 req/s of prefill per
instance at target, mean lengths 2 000 in / 200 out, SLO TTFT 2 s / TBT 0.1 s. Here the P/D ratio is 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from heteroscale.controller.journal import restore_memory
from heteroscale.domain.decision import Reason
from heteroscale.policy.context import PolicyContext, PolicyMemory, PolicyResult
from heteroscale.policy.heteroscale import HeteroScaleParams, HeteroScalePolicy
from tests.unit.policy_builders import NOW, counts, ctx, desired, memory, observation, spec, step, warmed


def censored_obs(**overrides: Any) -> Any:
    """20P/20D serving a flat 20 000 decode tok/s (R = 1) while prefill is saturated and queues 600
    requests (6 s of work at 20 × 5 req/s) and 150 req/s arrive; latency below every tier."""
    base: dict[str, Any] = {
        "decode_tps": 20_000.0,
        "decode_ready": 20,
        "prefill_ready": 20,
        "prefill_util": 1.0,
        "prefill_queue": 600.0,
        "requests_per_s": 150.0,
        "ttft_p90_s": 1.5,
        "tbt_p90_s": 0.05,
    }
    base.update(overrides)
    return observation(**base)


def decide(obs: Any, *, params: HeteroScaleParams | None = None, **overrides: Any) -> PolicyResult:
    base: dict[str, Any] = {"spec": spec(pd_ratio=1.0), "counts": counts(prefill=20, decode=20), "obs": obs}
    base.update(overrides)
    base["memory"] = warmed(base.get("memory"))
    return HeteroScalePolicy(params).decide(ctx(**base))


# --- demand, not served throughput ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("out_tokens", "expected", "reason"),
    [
        # prefill need (150 + 600/60)/5 = 32 > round(30·1), D = 150·200/1000 = 30: prefill drives, D follows
        (200.0, (32, 32), "prefill-backlog"),
        # D = 150·250/1000 = 37.5 → 38 ≥ the prefill need 32: decode demand drives, P at the ratio
        (250.0, (38, 38), "demand"),
    ],
)
def test_prefill_saturated_and_decode_tps_flat_sizes_both_pools_from_demand(
    out_tokens: float, expected: tuple[int, int], reason: str
) -> None:
    result = decide(censored_obs(mean_output_tokens=out_tokens))
    assert desired(result) == expected  # one coordinated decision, at the ratio
    assert result.recommendation.reason == reason  # a Reason value (a StrEnum)
    assert step(result, "demand").reason is Reason.SIGNAL_CENSORED


@pytest.mark.parametrize(
    "signs",
    [
        {"prefill_util": 0.5, "ttft_p90_s": 2.5},  # TTFT-bound breach, TBT within its SLO
        {"prefill_util": 0.5},  # the queue grew since the last observation (memory below)
    ],
)
def test_other_signs_of_a_censored_signal(signs: dict[str, Any]) -> None:
    grew = memory(samples=(("demand.prefill_queue", NOW - 30.0, 100.0),))
    result = decide(censored_obs(**signs), memory=grew)
    assert desired(result) == (32, 32)
    assert step(result, "demand").reason is Reason.SIGNAL_CENSORED


def test_saturated_prefill_censors_decode_tps_without_a_backlog() -> None:
    # no queue yet, but prefill serves all it can: it needs 150/5 = 30, decode 150·200/1000 = 30
    result = decide(censored_obs(prefill_queue=0.0, prefill_util=0.95))
    assert desired(result) == (30, 30)
    assert step(result, "demand").reason is Reason.SIGNAL_CENSORED


@pytest.mark.parametrize(
    "calm",
    [
        {"prefill_queue": 150.0, "prefill_util": 0.8},  # 1.5 s of work: no backlog, not saturated
        {"prefill_util": 0.5},  # a backlog, but not saturated, no TTFT breach and not growing
    ],
)
def test_decode_tps_stays_primary_where_it_is_not_censored(calm: dict[str, Any]) -> None:
    result = decide(censored_obs(**calm))
    assert step(result, "demand").reason is Reason.SIGNAL_UNCENSORED
    assert result.recommendation.reason is Reason.PROPORTIONAL
    assert desired(result) == (20, 20)


def test_demand_sizing_can_be_switched_off() -> None:
    result = decide(censored_obs(), params=HeteroScaleParams(demand=None))
    assert "demand" not in [s.name for s in result.decision.steps]
    assert desired(result) == (20, 20)


# --- a safety net that works ------------------------------------------------------------------------


def test_a_latency_tier_scale_out_is_never_held_by_a_cooldown() -> None:
    recent = memory(last_scale_out_s=NOW - 60.0, last_direction=1)  # 120 s of the 180 s cooldown left
    result = decide(observation(ttft_p90_s=3.2), spec=spec(), counts=counts(), memory=recent)
    assert desired(result) == (12, 24)  # +20 % of 10P/20D
    assert step(result, "latency").reason is Reason.LATENCY_SEVERE
    assert step(result, "cooldown").reason == "cooldown-passed-latency"


def test_a_scale_out_the_signal_asks_for_passes_the_cooldown_while_latency_is_past_half_its_slo() -> None:
    # decode TPS asks for 15P/30D, above the severe tier's 12P/24D: the tier adds nothing, but with TBT p90
    # at 1.6× its SLO (> 0.5×) the proportional scale-out does not wait out the 120 s of cooldown left
    recent = memory(last_scale_out_s=NOW - 60.0, last_direction=1)
    obs = observation(decode_tps=30_000.0, tbt_p90_s=0.16)
    result = decide(obs, spec=spec(), counts=counts(), memory=recent)
    assert (step(result, "latency").prefill, step(result, "latency").decode) == (15, 30)
    assert step(result, "cooldown").reason is Reason.COOLDOWN_RISING
    assert "latency-rising scale-out passes: prefill 10→15, decode 20→30" in step(result, "cooldown").detail
    assert desired(result) == (15, 30)
    # switched off, the cooldown holds it
    off = decide(obs, params=HeteroScaleParams(rising_latency_factor=None), spec=spec(), counts=counts(), memory=recent)
    assert step(off, "cooldown").reason is Reason.COOLDOWN_OUT and desired(off) == (10, 20)


def test_a_latency_floor_on_one_pool_does_not_hold_the_other_pools_scale_out_while_latency_rises() -> None:
    # TBT at 1.6× its SLO: the backlog floor raises prefill 12→14; decode TPS asks decode 24→27 (r = 0.4
    # keeps prefill at 12). Within the cooldown both pass; without the rule only the floor's prefill does
    recent = memory(last_scale_out_s=NOW - 60.0, last_direction=1)
    obs = observation(tbt_p90_s=0.16, prefill_queue=1200.0, requests_per_s=50.0, decode_tps=27_000.0)
    kw: dict[str, Any] = {"spec": spec(pd_ratio=0.4), "counts": counts(prefill_starting=2, decode_starting=4)}
    result = decide(obs, memory=recent, **kw)
    assert (step(result, "latency").prefill, step(result, "latency").decode) == (14, 27)
    assert step(result, "cooldown").reason is Reason.COOLDOWN_RISING and desired(result) == (14, 27)
    off = decide(obs, params=HeteroScaleParams(rising_latency_factor=None), memory=recent, **kw)
    assert step(off, "cooldown").reason is Reason.COOLDOWN_LATENCY and desired(off) == (14, 24)


@pytest.mark.parametrize(
    ("ttft_p90_s", "tbt_p90_s", "passes"), [(0.5, 0.05, False), (1.01, 0.05, True), (0.5, 0.051, True)]
)
def test_latency_exactly_at_half_its_slo_keeps_the_cooldown_and_above_it_passes(
    ttft_p90_s: float, tbt_p90_s: float, passes: bool
) -> None:
    recent = memory(last_scale_out_s=NOW - 60.0, last_direction=1)
    obs = observation(decode_tps=30_000.0, ttft_p90_s=ttft_p90_s, tbt_p90_s=tbt_p90_s)  # no tier reached
    result = decide(obs, spec=spec(), counts=counts(), memory=recent)
    assert step(result, "latency").reason is Reason.LATENCY_OK
    assert step(result, "cooldown").reason is (Reason.COOLDOWN_RISING if passes else Reason.COOLDOWN_OUT)
    assert desired(result) == ((15, 30) if passes else (10, 20))


def test_a_demand_sized_scale_out_the_ordered_capacity_cannot_serve_passes_the_cooldown() -> None:
    # 20 prefill × 5 req/s = 100 < 150 req/s arriving: the queue never drains, and the 180 s scale-out
    # cooldown (120 s left) would hold the demand-sized 32P/32D for two more minutes of a growing backlog
    recent = memory(last_scale_out_s=NOW - 60.0, last_direction=1)
    result = decide(censored_obs(), memory=recent)
    assert desired(result) == (32, 32)
    assert step(result, "cooldown").reason is Reason.COOLDOWN_DEMAND
    assert "never drains" in step(result, "demand").detail


def test_a_demand_sized_scale_out_with_enough_capacity_ordered_waits_for_its_cooldown() -> None:
    # 20 ready + 10 starting prefill serve 150 req/s = the arrivals: the need (150 + 1200/60)/5 = 34 > 30
    # is for the backlog only, which the ordered capacity will work off; the scale-out keeps its cooldown
    recent = memory(last_scale_out_s=NOW - 60.0, last_direction=1)
    ordered = counts(prefill=20, decode=20, prefill_starting=10, decode_starting=10)
    calm = {"ttft_p90_s": 0.9, "tbt_p90_s": 0.04}  # below half the SLOs: no latency passes the cooldown
    result = decide(censored_obs(prefill_queue=1200.0, **calm), memory=recent, counts=ordered)
    assert (step(result, "hysteresis").prefill, step(result, "hysteresis").decode) == (34, 34)
    assert step(result, "demand").reason is Reason.SIGNAL_CENSORED
    assert step(result, "cooldown").reason is Reason.COOLDOWN_OUT
    assert desired(result) == (30, 30)


def test_starting_capacity_that_cannot_drain_the_backlog_is_no_cover() -> None:
    # TBT at 1.6× its SLO; 2P/4D already starting cover the +20 % step, but 12 × 5 req/s against
    # 50 req/s clears a queue of 1 200 in 120 s, not within 60 s: the floor is ceil((50 + 1200/60)/5) = 14
    # prefill. (Prefill is neither saturated nor TTFT-bound: decode TPS is not censored.)
    obs = observation(tbt_p90_s=0.16, prefill_queue=1200.0, requests_per_s=50.0)
    starting = counts(prefill_starting=2, decode_starting=4)
    result = decide(obs, spec=spec(), counts=starting)
    assert desired(result) == (14, 24)
    assert step(result, "latency").reason == "latency-backlog-not-drained"


def test_starting_capacity_that_drains_the_backlog_in_time_covers_the_breach() -> None:
    obs = observation(tbt_p90_s=0.16, prefill_queue=100.0, requests_per_s=50.0)
    starting = counts(prefill_starting=2, decode_starting=4)
    result = decide(obs, spec=spec(), counts=starting)
    assert step(result, "latency").reason is Reason.LATENCY_COVERED
    assert desired(result) == (12, 24)


@pytest.mark.parametrize(
    ("queue_before", "expected", "reason"),
    [
        (500.0, (10, 20), Reason.LATENCY_COVERED),  # shrinking: the p90 lags a queue already draining
        (100.0, (12, 24), Reason.LATENCY_SEVERE),  # growing: recurring bursts keep the tier's +20 % step
    ],
)
def test_a_ttft_breach_is_judged_by_whether_its_queue_drains(
    queue_before: float, expected: tuple[int, int], reason: Reason
) -> None:
    # TTFT at 1.6× its SLO; 10 ready prefill (50 req/s) clear a queue of 300 in 300/(50 − 20) = 10 s
    base = observation(ttft_p90_s=3.2, prefill_queue=300.0, requests_per_s=20.0, prefill_util=0.5)
    obs = dataclasses.replace(base, decode=dataclasses.replace(base.decode, queue_len=0.0))
    before = memory(samples=(("demand.prefill_queue", obs.window_end_s - 30.0, queue_before),))
    result = decide(obs, spec=spec(), counts=counts(), memory=before)
    assert desired(result) == expected
    assert step(result, "latency").reason is reason


# --- no scale-in before a full window of data ---------------------------------------------------------


def low_load(now_s: float, mem: PolicyMemory) -> PolicyContext:
    """10P/20D serving a quarter of their decode target: the policy wants 8P/15D (damped −25 %)."""
    return ctx(now_s=now_s, obs=observation(decode_tps=5_000.0), memory=mem)


def test_no_scale_in_until_the_window_is_full_after_start_up() -> None:
    policy = HeteroScalePolicy()
    mem = PolicyMemory()
    results: list[PolicyResult] = []
    # the first observation at 30 s; the warm-up is the 300 s stabilisation window (longer than 60 s)
    for now_s in (30.0, 60.0, 300.0, 330.0):
        results.append(policy.decide(low_load(now_s, mem)))
        mem = results[-1].memory
    assert [desired(r) for r in results] == [(10, 20), (10, 20), (10, 20), (8, 15)]
    assert [step(r, "warm-up").reason for r in results] == ["warm-up-no-scale-in"] * 3 + ["window-full"]
    assert "observed for 270 s of the 300 s window" in step(results[2], "warm-up").detail


def test_memory_restored_from_the_journal_does_not_count_as_data() -> None:
    def record(at_s: float) -> dict[str, Any]:
        decision = {"current_prefill": 10, "current_decode": 20, "desired_prefill": 10, "desired_decode": 20}
        rec = {"reason": "proportional", "prefill": 10, "decode": 20}
        return {"at_s": at_s, "service": "svc", "decision": decision, "recommendation": rec}

    # an hour of holds that ended 330 s before the restart at NOW (out of the 300 s stabilisation window)
    restored = restore_memory([record(NOW - 3600.0 + 30.0 * k) for k in range(110)], "svc", NOW, 300.0)
    assert restored.last_scale_out_s is None and restored.last_scale_in_s is None  # no cooldown running
    policy = HeteroScalePolicy()
    first = policy.decide(low_load(NOW, restored))
    assert desired(first) == (10, 20)
    assert step(first, "warm-up").reason == "warm-up-no-scale-in"
    sooner = policy.decide(low_load(NOW + 60.0, first.memory))  # one observation window is not enough
    assert desired(sooner) == (10, 20) and step(sooner, "warm-up").reason == "warm-up-no-scale-in"
    later = policy.decide(low_load(NOW + 300.0, sooner.memory))
    assert desired(later) == (8, 15)
    assert step(later, "warm-up").reason == "window-full"


def test_docs_policy_lists_real_reasons_and_every_new_one() -> None:
    import re
    from pathlib import Path

    text = Path(__file__).resolve().parents[2].joinpath("docs", "POLICY.md").read_text(encoding="utf-8")
    table = text.split("## Every reason the policy writes", 1)[1]
    listed = {
        name for cell in re.findall(r"\|([^|\n]*)\|\s*$", table, re.M) for name in re.findall(r"`([a-z-]+)`", cell)
    }
    known = {r.value for r in Reason}
    assert listed and listed <= known, sorted(listed - known)
    new = {
        Reason.SIGNAL_CENSORED,
        Reason.SIGNAL_UNCENSORED,
        Reason.DEMAND,
        Reason.PREFILL_BACKLOG,
        Reason.LATENCY_BACKLOG,
        Reason.COOLDOWN_LATENCY,
        Reason.COOLDOWN_DEMAND,
        Reason.COOLDOWN_RISING,
        Reason.WARMING_UP,
        Reason.WINDOW_FULL,
    }
    assert {r.value for r in new} <= listed
