"""Cost-aware GPU mix (scheduling/mix.py): MILP against greedy and a brute-force oracle, the shared-SKU
coupling, availability, the GPU cap, bounds, infeasible demand, the churn penalty, the time budget and
silence on stdout."""

from __future__ import annotations

import itertools
import math
import random
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import ServiceSpec, Slo
from heteroscale.domain.topology import NodeSpec, Topology
from heteroscale.scheduling.groups import ServiceDemand
from heteroscale.scheduling.mix import (
    MixOption,
    MixProblem,
    free_gpus_by_sku,
    greedy_mix,
    solve_mix,
)

P, D = Role.PREFILL, Role.DECODE
GENEROUS_S = 5.0  # a time limit no small problem reaches, even on a loaded machine

# --- builders -------------------------------------------------------------------------------


def opt(role: Role, sku: str, tp: int, tps: float, cost: float, current: int = 0) -> MixOption:
    return MixOption(InstanceShape(role, sku, tp), tps_per_instance=tps, cost_per_hour=cost, current=current)


def problem(options: Sequence[MixOption], prefill: float = 0.0, decode: float = 0.0, **kw: Any) -> MixProblem:
    free = kw.pop("free", {o.shape.sku: 1_000 for o in options})
    return MixProblem(demand_tps={P: prefill, D: decode}, options=tuple(options), free_gpus_by_sku=free, **kw)


def launches_by_sku(prob: MixProblem, counts: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in prob.options:
        out[o.shape.sku] = out.get(o.shape.sku, 0) + max(0, counts[o.key] - o.current) * o.gpus
    return out


def role_count(prob: MixProblem, counts: Mapping[str, int], role: Role) -> int:
    return sum(counts[o.key] for o in prob.options if o.role is role)


def capacity(prob: MixProblem, counts: Mapping[str, int], role: Role) -> float:
    return sum(counts[o.key] * o.tps_per_instance for o in prob.options if o.role is role)


def covers(prob: MixProblem, counts: Mapping[str, int]) -> bool:
    return all(capacity(prob, counts, r) >= prob.demand(r) * (1 - 1e-9) for r in (P, D))


def within_limits(prob: MixProblem, counts: Mapping[str, int]) -> bool:
    """Free GPUs per SKU, the GPU cap and the maximum counts — independently of the solver's own check."""
    used = launches_by_sku(prob, counts)
    if any(used[sku] > prob.free(sku) for sku in used) or any(n < 0 for n in counts.values()):
        return False
    if prob.max_gpus is not None and sum(counts[o.key] * o.gpus for o in prob.options) > prob.max_gpus:
        return False
    for role in (P, D):
        high = prob.bounds(role)[1]
        if high is not None and role_count(prob, counts, role) > high:
            return False
    return True


def score(prob: MixProblem, counts: Mapping[str, int]) -> float:
    """The coverage score the solver maximises first: the worst share of a role's demand or minimum
    count, plus 1 % of each role's demand share."""
    shares, demand_shares = [], 0.0
    for r in (P, D):
        demand = prob.demand(r)
        if demand > 0:
            cap = capacity(prob, counts, r)
            share = 1.0 if cap >= demand * (1 - 1e-6) else cap / demand
            shares.append(share)
            demand_shares += share
        low = prob.bounds(r)[0]
        if low > 0:
            shares.append(min(1.0, role_count(prob, counts, r) / low))
    return min(shares, default=1.0) + 0.01 * demand_shares


def objective(prob: MixProblem, counts: Mapping[str, int]) -> float:
    return sum(
        counts[o.key] * o.cost_per_hour + max(0, counts[o.key] - o.current) * prob.penalty(o) for o in prob.options
    )


def brute_force(prob: MixProblem) -> tuple[float, float]:
    """(score, cost + launches) of the best mix by enumeration: the best score, then the lowest cost."""
    ranges = [range(o.current + prob.free(o.shape.sku) // o.gpus + 1) for o in prob.options]
    best: tuple[float, float] | None = None
    for combo in itertools.product(*ranges):
        counts = {o.key: n for o, n in zip(prob.options, combo, strict=True)}
        if within_limits(prob, counts):
            rank = (-round(score(prob, counts), 9), round(objective(prob, counts), 9))
            best = rank if best is None or rank < best else best
    assert best is not None  # no instance at all is always within the limits
    return -best[0], best[1]


# --- small random problems: MILP = oracle ≤ greedy --------------------------------------------


@st.composite
def small_problems(draw: st.DrawFn) -> MixProblem:
    """2 roles × up to 3 SKUs (one of them often allowed in both roles), TP 4 / 8, scarce free GPUs."""
    skus = ["a", "b", "c"][: draw(st.integers(1, 3))]
    options: list[MixOption] = []
    for role in (P, D):
        for sku in draw(st.lists(st.sampled_from(skus), min_size=1, max_size=2, unique=True)):
            tp = draw(st.sampled_from([4, 8]))
            options.append(
                opt(
                    role,
                    sku,
                    tp,
                    tps=float(draw(st.sampled_from([100, 150, 200, 300]))),
                    cost=float(draw(st.integers(1, 12))),
                    current=draw(st.integers(0, 2)),
                )
            )
    free = {sku: draw(st.sampled_from([0, 8, 16, 24])) for sku in skus}
    cap = draw(st.one_of(st.none(), st.integers(8, 64)))
    return MixProblem(
        demand_tps={P: float(draw(st.integers(0, 8)) * 100), D: float(draw(st.integers(0, 8)) * 100)},
        options=tuple(options),
        free_gpus_by_sku=free,
        max_gpus=cap,
        min_count={P: draw(st.integers(0, 1)), D: draw(st.integers(0, 1))},
        launch_penalty_h=draw(st.sampled_from([0.0, 0.1, 0.5])),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prob=small_problems())
def test_milp_matches_brute_force_and_is_never_worse_than_greedy(prob: MixProblem) -> None:
    milp = solve_mix(prob, GENEROUS_S)
    greedy = greedy_mix(prob)
    assert milp.method == "milp", milp.status
    for result in (milp, greedy):
        assert within_limits(prob, result.counts)
        meets_min = all(role_count(prob, result.counts, r) >= prob.bounds(r)[0] for r in (P, D))
        assert result.feasible == (covers(prob, result.counts) and meets_min)
        assert result.feasible == (not any(result.shortfall_tps.values()) and meets_min)
    best_score, best_cost = brute_force(prob)
    assert score(prob, milp.counts) == pytest.approx(best_score, abs=1e-6)
    assert milp.objective == pytest.approx(best_cost, rel=1e-6, abs=1e-6)
    assert milp.objective == pytest.approx(objective(prob, milp.counts))
    # greedy never covers more, and when it covers everything it is never cheaper
    assert score(prob, greedy.counts) <= score(prob, milp.counts) + 1e-9
    if greedy.feasible:
        assert milp.feasible
        assert milp.objective <= greedy.objective + 1e-6


# --- hand-built cases -----------------------------------------------------------------------

# x (16 free GPUs: four tp4 instances) is allowed in both roles. The cheapest split is 3 to prefill and
# 1 to decode (its other shape is a 200 tps lump): 3·4 + 8 + 4 + 12 = 36. Greedy gives x to one role
# first (P: 4x + 2z = 40; D: 3x + 1x + 3y = 40) or alternately (2x + 2y, 2x + z = 44).
COUPLED = problem(
    [
        opt(P, "x", 4, 100, 4.0),
        opt(P, "y", 4, 100, 8.0),
        opt(D, "x", 4, 100, 4.0),
        opt(D, "z", 4, 200, 12.0),
    ],
    prefill=400,
    decode=300,
    free={"x": 16, "y": 64, "z": 64},
)


def test_a_node_limit_replaces_the_time_limit_and_keeps_wall_time_out_of_the_decision_line() -> None:
    timed = solve_mix(COUPLED, GENEROUS_S)
    assert re.search(r"\(optimal; \d+\.\d ms\)", timed.detail)
    limited = [solve_mix(COUPLED, math.inf, node_limit=10_000) for _ in range(2)]
    assert limited[0].counts == limited[1].counts == timed.counts
    assert limited[0].detail == limited[1].detail  # the same line on every machine and every run
    assert "(optimal)" in limited[0].detail and " ms" not in limited[0].detail
    with pytest.raises(ValueError, match="time_limit_s must be > 0"):
        solve_mix(COUPLED, math.inf)  # no limit at all
    with pytest.raises(ValueError, match="node_limit must be ≥ 1"):
        solve_mix(COUPLED, 1.0, node_limit=0)


def test_shared_sku_coupling_milp_splits_the_scarce_sku_and_greedy_does_not() -> None:
    milp = solve_mix(COUPLED, GENEROUS_S)
    assert (milp.method, milp.status, milp.feasible) == ("milp", "optimal", True)
    assert milp.counts == {"prefill:x:tp4": 3, "prefill:y:tp4": 1, "decode:x:tp4": 1, "decode:z:tp4": 1}
    assert milp.cost_per_hour == pytest.approx(36.0)
    greedy = greedy_mix(COUPLED)
    assert greedy.feasible
    assert greedy.cost_per_hour == pytest.approx(40.0)
    # with the shared SKU plentiful there is no coupling left and greedy is optimal again
    plenty = problem(COUPLED.options, prefill=400, decode=300)
    assert greedy_mix(plenty).cost_per_hour == pytest.approx(solve_mix(plenty, GENEROUS_S).cost_per_hour) == 28.0


@pytest.mark.parametrize("solver", ["milp", "greedy"])
@pytest.mark.parametrize(
    ("free", "expected_launch_gpus"),
    [
        ({"h800": 16, "l20": 0}, {"h800": 16, "l20": 0}),  # cheap l20 absent: h800 only, as far as it goes
        ({"h800": 0, "l20": 8}, {"h800": 0, "l20": 8}),
        ({"h800": 8, "l20": 12}, {"h800": 8, "l20": 12}),  # 12 l20 GPUs: three tp4 instances, no more
    ],
)
def test_launches_never_exceed_free_gpus_per_sku(
    solver: str, free: dict[str, int], expected_launch_gpus: dict[str, int]
) -> None:
    prob = problem(
        [opt(P, "l20", 4, 3_000, 2.6), opt(P, "h800", 8, 20_000, 17.2, current=1)],
        prefill=200_000,
        free=free,
    )
    result = solve_mix(prob, GENEROUS_S) if solver == "milp" else greedy_mix(prob)
    assert launches_by_sku(prob, result.counts) == expected_launch_gpus
    assert not result.feasible and result.shortfall_tps[P] > 0


@pytest.mark.parametrize("solver", ["milp", "greedy"])
@pytest.mark.parametrize(("cap", "feasible"), [(None, True), (48, True), (40, False), (0, False)])
def test_gpu_cap_is_respected(solver: str, cap: int | None, feasible: bool) -> None:
    # 4 prefill h800 tp8 (32 GPUs) + 2 decode h20 tp8 (16 GPUs) = 48 GPUs cover the demand exactly
    prob = problem(
        [opt(P, "h800", 8, 10_000, 17.2), opt(D, "h20", 8, 2_000, 11.2)],
        prefill=40_000,
        decode=4_000,
        max_gpus=cap,
    )
    result = solve_mix(prob, GENEROUS_S) if solver == "milp" else greedy_mix(prob)
    gpus = 8 * (result.counts["prefill:h800:tp8"] + result.counts["decode:h20:tp8"])
    assert cap is None or gpus <= cap
    assert result.feasible is feasible
    if not feasible and cap:
        # best effort keeps both roles going rather than giving every GPU to one of them
        assert result.role_count(P) >= 1 and result.role_count(D) >= 1


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({}, (1, 1)),
        ({"min_count": {P: 3, D: 2}}, (3, 2)),
        ({"max_count": {P: 1, D: 1}}, (1, 1)),
    ],
)
def test_instance_bounds_per_role(bounds: dict[str, Any], expected: tuple[int, int]) -> None:
    prob = problem(
        [opt(P, "h800", 8, 10_000, 17.2), opt(D, "h20", 4, 2_000, 5.6)], prefill=9_000, decode=1_500, **bounds
    )
    result = solve_mix(prob, GENEROUS_S)
    assert (result.role_count(P), result.role_count(D)) == expected
    assert result.feasible


def test_min_count_out_of_reach_is_best_effort_not_an_error() -> None:
    prob = problem([opt(P, "h800", 8, 10_000, 17.2), opt(D, "h20", 4, 2_000, 5.6)], min_count={D: 5}, free={"h20": 8})
    result = solve_mix(prob, GENEROUS_S)
    assert not result.feasible
    assert result.role_count(D) == 2  # all that 8 free GPUs give
    assert "below the minimum counts" in result.detail


@pytest.mark.parametrize("solver", ["milp", "greedy"])
def test_infeasible_demand_covers_what_it_can_and_says_how_much_is_missing(solver: str) -> None:
    prob = problem(
        [opt(P, "h800", 8, 20_000, 17.2), opt(P, "l20", 4, 3_000, 2.6), opt(D, "h20", 4, 2_000, 5.6, current=2)],
        prefill=1_000_000,
        decode=3_000,
        free={"h800": 16, "l20": 8, "h20": 0},
    )
    result = solve_mix(prob, GENEROUS_S) if solver == "milp" else greedy_mix(prob)
    assert not result.feasible
    # everything available for prefill, decode kept at its 2 current instances (no free h20)
    assert result.counts == {"prefill:h800:tp8": 2, "prefill:l20:tp4": 2, "decode:h20:tp4": 2}
    assert result.shortfall_tps == {P: 1_000_000 - 46_000, D: 0.0}
    assert "INFEASIBLE" in result.detail and "prefill short 954000 tps" in result.detail


def test_a_role_without_options_is_infeasible_not_an_error() -> None:
    result = solve_mix(problem([opt(P, "h800", 8, 20_000, 17.2)], prefill=10_000, decode=1_000), GENEROUS_S)
    assert not result.feasible
    assert result.counts == {"prefill:h800:tp8": 1}
    assert result.shortfall_tps[D] == 1_000


@pytest.mark.parametrize(
    ("penalty_h", "new_cost", "keeps"),
    [
        (0.0, 9.5, False),  # no churn term: a 5 % cheaper shape replaces the current ones
        (5 / 60, 9.5, True),  # 5 min of cold start: 9.5 + 0.79 > 10, keep the current instances
        (5 / 60, 5.0, False),  # a big saving is worth the launches
    ],
)
def test_churn_penalty_keeps_current_instances_when_the_saving_is_small(
    penalty_h: float, new_cost: float, keeps: bool
) -> None:
    prob = problem(
        [opt(D, "old", 4, 1_000, 10.0, current=3), opt(D, "new", 4, 1_000, new_cost)],
        decode=3_000,
        launch_penalty_h=penalty_h,
    )
    for result in (solve_mix(prob, GENEROUS_S), greedy_mix(prob)):
        assert result.counts == (
            {"decode:old:tp4": 3, "decode:new:tp4": 0} if keeps else {"decode:old:tp4": 0, "decode:new:tp4": 3}
        )


def test_removing_instances_is_free_and_done_when_demand_drops() -> None:
    prob = problem([opt(D, "h20", 4, 1_000, 5.6, current=6)], decode=2_500, free={"h20": 0}, launch_penalty_h=1.0)
    result = solve_mix(prob, GENEROUS_S)
    assert result.counts == {"decode:h20:tp4": 3}
    assert result.launch_cost == 0.0
    assert "decode:h20:tp4=3 (-3)" in result.detail


def test_detail_is_one_readable_line() -> None:
    result = solve_mix(COUPLED, GENEROUS_S)
    assert "\n" not in result.detail
    for part in ("mix milp (optimal", "prefill:x:tp4=3 (+3)", "decode:z:tp4=1 (+1)", "36/h", "per 1k tokens"):
        assert part in result.detail
    # 36 per hour over 700 tokens/s = 2.52M tokens/h: 0.01429 per 1k tokens
    assert "0.01429 per 1k tokens" in result.detail


def test_solve_time_comes_from_the_injected_timer() -> None:
    ticks = iter([10.0, 10.25])
    result = solve_mix(COUPLED, GENEROUS_S, timer=lambda: next(ticks))
    assert result.solve_s == pytest.approx(0.25)
    assert greedy_mix(COUPLED).solve_s == 0.0


def test_result_feeds_a_service_demand() -> None:
    spec = ServiceSpec(
        name="svc",
        model="llama-3.1-70b",
        prefill_shapes=(InstanceShape(P, "x", 4), InstanceShape(P, "y", 4)),
        decode_shapes=(InstanceShape(D, "x", 4), InstanceShape(D, "z", 4)),
        pd_ratio=1.0,
        slo=Slo(ttft_s=2.0, tbt_s=0.1),
    )
    result = solve_mix(COUPLED, GENEROUS_S)
    demand = ServiceDemand(
        spec=spec,
        desired_prefill=result.role_count(P),
        desired_decode=result.role_count(D),
        shape_counts=result.shape_counts(),
    )
    assert demand.desired_by_shape() == result.counts


# --- time budget and silence ----------------------------------------------------------------


def large_problem(seed: int = 7) -> MixProblem:
    """40 shapes over 20 SKUs (each in both roles, so every pool is shared), big demands."""
    rng = random.Random(seed)
    options = []
    for k in range(20):
        for role in (P, D):
            tp = rng.choice([1, 2, 4, 8])
            options.append(
                opt(role, f"sku{k}", tp, rng.uniform(500, 5_000) * tp, rng.uniform(0.5, 3.5) * tp, rng.randrange(5))
            )
    free = {f"sku{k}": rng.choice([0, 8, 64, 512, 4_096]) for k in range(20)}
    return problem(options, prefill=3.0e6, decode=1.2e6, free=free, max_gpus=6_000, launch_penalty_h=0.1)


@pytest.mark.parametrize("time_limit_s", [1e-4, 1e-3, 0.05])
def test_a_tiny_time_budget_still_returns_an_answer_within_it(time_limit_s: float) -> None:
    prob = large_problem()
    result = solve_mix(prob, time_limit_s)
    assert result.status
    assert within_limits(prob, result.counts)
    assert result.feasible == covers(prob, result.counts)
    # without a timer, solve_s is HiGHS's own run time over its calls; an invariant, not a speed test
    assert result.solve_s <= time_limit_s + 0.5


def test_nothing_is_printed(capfd: pytest.CaptureFixture[str]) -> None:
    solve_mix(COUPLED, GENEROUS_S)  # optimal
    solve_mix(problem(COUPLED.options, prefill=1e6, decode=1e6, free={"x": 8}), GENEROUS_S)  # best effort
    solve_mix(large_problem(), 1e-4)  # time limit
    greedy_mix(COUPLED)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# HiGHS run silenced on its default thread pool first: mix.py asks for one thread, HiGHS refuses a
# second pool size in one process, and mix.py must then retry on the pool there is
DEFAULT_POOL_FIRST = (
    "from highspy._core import _Highs\n"
    "h = _Highs()\n"
    "h.setOptionValue('output_flag', False)\n"
    "h.passModel(1, 1, 1, 2, 1, 0.0, [1.0], [0.0], [10.0], [3.0], [1e30], [0, 1], [0], [1.0], [1])\n"
    "h.run()\n"
)


@pytest.mark.parametrize("prelude", ["", DEFAULT_POOL_FIRST], ids=["fresh", "default-thread-pool-first"])
def test_a_fresh_process_prints_nothing_and_gets_the_milp_answer(prelude: str) -> None:
    # HiGHS prints its banner once per process, on the first solver it builds: check a fresh process
    code = prelude + (
        "from heteroscale.domain.hardware import InstanceShape, Role\n"
        "from heteroscale.scheduling.mix import MixOption, MixProblem, solve_mix\n"
        "o = MixOption(InstanceShape(Role.DECODE, 'h20', 4), 1000.0, 5.6)\n"
        "r = solve_mix(MixProblem({Role.DECODE: 2500.0}, (o,), {'h20': 16}), 5.0)\n"
        "assert (r.method, r.status, r.counts) == ('milp', 'optimal', {'decode:h20:tp4': 3}), r\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


# --- validation and the free-GPU helper -----------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: opt(P, "x", 4, 0.0, 1.0), "tps_per_instance"),
        (lambda: opt(P, "x", 4, 100.0, -1.0), "cost_per_hour"),
        (lambda: opt(P, "x", 4, 100.0, 1.0, current=-1), "current"),
        (lambda: opt(P, "x", 0, 100.0, 1.0), "GPU"),
        (lambda: problem([opt(P, "x", 4, 100, 1.0), opt(P, "x", 4, 50, 1.0)]), "twice"),
        (lambda: problem([opt(P, "x", 4, 100, 1.0)], prefill=-1.0), "demand_tps"),
        (lambda: problem([opt(P, "x", 4, 100, 1.0)], prefill=math.nan), "demand_tps"),
        (lambda: problem([opt(P, "x", 4, 100, 1.0)], min_count={P: 3}, max_count={P: 2}), "bounds"),
        (lambda: problem([opt(P, "x", 4, 100, 1.0)], max_gpus=-8), "max_gpus"),
        (lambda: problem([opt(P, "x", 4, 100, 1.0)], launch_penalty_h=-0.1), "launch_penalty_h"),
        (lambda: solve_mix(COUPLED, 0.0), "time_limit_s"),
    ],
)
def test_invalid_input_is_refused(build: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def node(name: str, sku: str, free: int, total: int = 8, schedulable: bool = True) -> NodeSpec:
    return NodeSpec(("v", "p", "lc", "s2", "s1", "s0", name), sku, total, free, schedulable)


@pytest.mark.parametrize(
    ("free_map", "granularity", "expected"),
    [
        ({}, 1, {"h800": 8 + 3, "h20": 5}),  # the nodes' own gpus_free; the cordoned node gives nothing
        ({"a": 2, "b": 8, "c": 8, "d": 8}, 1, {"h800": 10, "h20": 8}),
        ({"a": 99, "b": -3}, 1, {"h800": 8, "h20": 5}),  # clamped to [0, gpus_total]
        ({}, 4, {"h800": 8, "h20": 4}),  # only whole tp4 slots per node
    ],
)
def test_free_gpus_by_sku(free_map: dict[str, int], granularity: int, expected: dict[str, int]) -> None:
    topology = Topology(
        name="t",
        nodes=(node("a", "h800", 8), node("b", "h800", 3), node("c", "h20", 5), node("d", "h20", 8, schedulable=False)),
    )
    assert free_gpus_by_sku(topology, free_map, granularity) == expected
