"""Properties of the policies over generated contexts, and a closed-loop stability check."""

from __future__ import annotations

import itertools
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heteroscale.domain.observation import Observation, RoleSignals
from heteroscale.policy.context import Policy, PolicyContext, PolicyMemory, RoleCounts, ServiceCounts
from heteroscale.policy.heteroscale import HeteroScaleParams, HeteroScalePolicy
from heteroscale.policy.normalize import Stability
from heteroscale.policy.registry import POLICY_NAMES, make_policy
from tests.unit.policy_builders import M_DECODE, observation, spec, targets

NOW = 50_000.0
METRIC_POLICIES = [n for n in POLICY_NAMES if n not in ("periodic", "static", "fixed")]
COORDINATED = ["heteroscale", *[n for n in POLICY_NAMES if n.startswith("signal:")]]


def options_for(name: str) -> dict[str, object]:
    return {"prefill": 3, "decode": 6} if name in ("static", "fixed", "periodic") else {}


@st.composite
def contexts(draw: st.DrawFn, *, bad: bool = False, within_bounds: bool = True) -> PolicyContext:
    """A context with current counts within the service's bounds (``bad``: a missing, stale or partial
    observation)."""
    ratio = draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0]))
    min_p, min_d = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    max_p, max_d = draw(st.integers(max(min_p, 1), 80)), draw(st.integers(max(min_d, 1), 80))
    service = spec(pd_ratio=ratio, min_prefill=min_p, max_prefill=max_p, min_decode=min_d, max_decode=max_d)
    lo_p, lo_d = (min_p, min_d) if within_bounds else (0, 0)
    cap_p, cap_d = draw(st.integers(lo_p, max_p)), draw(st.integers(lo_d, max_d))
    start_p, start_d = draw(st.integers(0, cap_p)), draw(st.integers(0, cap_d))
    counts = ServiceCounts(
        prefill=RoleCounts(ready=cap_p - start_p, starting=start_p),
        decode=RoleCounts(ready=cap_d - start_d, starting=start_d),
    )
    maybe = st.one_of(st.none(), st.floats(0, 10)) if bad else st.floats(0, 10)
    obs: Observation | None = observation(
        decode_tps=draw(st.floats(0, 150_000)),
        prefill_tps=draw(st.floats(0, 1_500_000)),
        decode_ready=cap_d - start_d,
        prefill_ready=cap_p - start_p,
        decode_util=draw(st.floats(0, 1)),
        prefill_util=draw(st.floats(0, 1)),
        decode_sm=draw(st.floats(0, 1)),
        prefill_sm=draw(st.floats(0, 1)),
        ttft_p90_s=draw(maybe),
        tbt_p90_s=draw(st.one_of(st.none(), st.floats(0, 1)) if bad else st.floats(0, 1)),
        requests_per_s=draw(st.floats(0, 200)),
    )
    if bad:
        kind = draw(st.sampled_from(["missing", "stale", "partial-decode", "partial-prefill"]))
        if kind == "missing":
            obs = None
        elif kind == "stale":
            obs = observation(stale=True, decode_ready=cap_d - start_d, prefill_ready=cap_p - start_p)
        elif kind == "partial-decode":
            counts = ServiceCounts(counts.prefill, RoleCounts(ready=max(1, cap_d - start_d), starting=start_d))
            obs = observation(decode_tps=None, decode_ready=max(1, cap_d - start_d))
        else:
            counts = ServiceCounts(RoleCounts(ready=max(1, cap_p - start_p), starting=start_p), counts.decode)
            obs = observation(prefill_tps=None, prefill_ready=max(1, cap_p - start_p))
    recent = st.one_of(st.none(), st.floats(NOW - 2000, NOW))
    history = draw(st.lists(st.tuples(st.floats(NOW - 600, NOW), st.integers(0, 80), st.integers(0, 80)), max_size=5))
    memory = PolicyMemory(
        last_scale_out_s=draw(recent), last_scale_in_s=draw(recent), recommendations=tuple(sorted(history))
    )
    return PolicyContext(NOW, service, obs, "down" if obs is None else None, counts, targets(), memory)


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(POLICY_NAMES), contexts())
def test_never_outside_bounds(name: str, ctx: PolicyContext) -> None:
    result = make_policy(name, options_for(name)).decide(ctx)
    s = ctx.spec
    assert s.min_prefill <= result.decision.desired_prefill <= s.max_prefill
    assert s.min_decode <= result.decision.desired_decode <= s.max_decode


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["heteroscale", "hpa", "independent-tps"]), contexts(within_bounds=False))
def test_never_outside_bounds_from_below_min(name: str, ctx: PolicyContext) -> None:
    result = make_policy(name).decide(ctx)
    assert result.decision.desired_prefill >= ctx.spec.min_prefill
    assert result.decision.desired_decode >= ctx.spec.min_decode


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(COORDINATED), contexts())
def test_p_and_d_never_move_in_opposite_directions(name: str, ctx: PolicyContext) -> None:
    result = make_policy(name).decide(ctx)
    d = result.decision
    assert sign(d.desired_prefill - d.current_prefill) * sign(d.desired_decode - d.current_decode) >= 0


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(METRIC_POLICIES), contexts(bad=True))
def test_never_scales_in_on_missing_stale_or_partial_observations(name: str, ctx: PolicyContext) -> None:
    result = make_policy(name).decide(ctx)
    d = result.decision
    assert d.desired_prefill >= d.current_prefill
    assert d.desired_decode >= d.current_decode
    assert d.steps[0].reason.value.startswith("hold-")
    assert "no scale-in" in d.steps[0].detail


# --- closed loop: a stationary load must not make the policy flap ----------------------------------

TICK_S = 30.0
COLD_START_S = 120.0
LOAD_TPS = 20 * M_DECODE  # D ≈ 20 at the target
M_MAX = M_DECODE / 0.85  # what one ready instance can serve (the target carries a 0.85 margin)


def run_loop(policy: Policy, seed: int, d0: int, ratio: float, hours: float = 1.0) -> list[int]:
    """Simulate ticks: noisy stationary load, cold starts, memory fed back; return D after each tick
    and the direction of each action."""
    rng = random.Random(seed)
    service = spec(pd_ratio=ratio)
    ready_at: dict[str, list[float]] = {
        "prefill": [-COLD_START_S] * max(1, round(d0 * ratio)),
        "decode": [-COLD_START_S] * d0,
    }
    memory = PolicyMemory()
    directions: list[int] = []
    for k in range(int(hours * 3600 / TICK_S)):
        now = k * TICK_S
        ready = {role: sum(1 for t in times if t <= now) for role, times in ready_at.items()}
        load = LOAD_TPS * rng.uniform(0.9, 1.1)
        served = min(load, ready["decode"] * M_MAX)
        saturated = load > ready["decode"] * M_MAX
        obs = Observation(
            service="svc",
            window_start_s=now - TICK_S,
            window_end_s=now,
            prefill=RoleSignals(ready["prefill"], served * 5, gpu_util=0.7),
            decode=RoleSignals(ready["decode"], served, gpu_util=0.9),
            ttft_p90_s=0.5,
            tbt_p90_s=0.16 if saturated else 0.05,
        )
        counts = ServiceCounts(
            prefill=RoleCounts(ready=ready["prefill"], starting=len(ready_at["prefill"]) - ready["prefill"]),
            decode=RoleCounts(ready=ready["decode"], starting=len(ready_at["decode"]) - ready["decode"]),
        )
        ctx = PolicyContext(now, service, obs, None, counts, targets(), memory)
        result = policy.decide(ctx)
        memory = result.memory
        moves = []
        for role, want in (("prefill", result.decision.desired_prefill), ("decode", result.decision.desired_decode)):
            times = sorted(ready_at[role])
            if want > len(times):
                times += [now + COLD_START_S] * (want - len(times))
            else:
                times = times[:want]  # the youngest (starting) instances leave first
            moves.append(sign(want - len(ready_at[role])))
            ready_at[role] = times
        move = moves[1] or moves[0]
        if move:
            directions.append(move)
    return directions


def reversals(directions: list[int]) -> int:
    return sum(1 for a, b in itertools.pairwise(directions) if a != b)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(16, 24), st.sampled_from([0.5, 1.0]))
def test_at_most_two_reversals_per_hour_on_a_stationary_load(seed: int, d0: int, ratio: float) -> None:
    directions = run_loop(HeteroScalePolicy(), seed, d0, ratio)
    assert reversals(directions) <= 2, directions


def test_the_reversal_check_can_fail() -> None:
    """Without hysteresis, stabilisation and cooldowns the same loop flaps (so the check above bites)."""
    bare = Stability(theta_out=0, theta_in=0, scale_out_cooldown_s=0, scale_in_cooldown_s=0, scale_in_window_s=0)
    policy: Any = HeteroScalePolicy(HeteroScaleParams(stability=bare))
    assert max(reversals(run_loop(policy, seed, 20, 0.5)) for seed in range(5)) > 2
