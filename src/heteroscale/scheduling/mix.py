"""Cost-aware GPU mix for one service (pure): how many instances of each allowed shape carry both roles'
demand at the SLO for the least cost.

The policy decides counts in units of each role's preferred shape; the controller turns them into a
capacity demand ``d_r`` in tokens/s per role and asks :func:`solve_mix` for the cheapest instances per
shape that cover it. The answer goes to the scheduler as ``ServiceDemand.shape_counts``.

Model. Options (shapes) ``s``, each of one role ``r(s)``, on SKU ``k(s)``, with ``g_s`` GPUs, carrying
``τ_s`` tokens/s at the SLO, costing ``c_s`` per hour, with ``m_s`` instances now (ready + starting).
A new instance also costs ``π_s = λ·c_s`` once, ``λ`` = ``launch_penalty_h`` (e.g. the cold start in
hours: the GPU-hours burnt while it starts), so the fleet is not reshuffled for a tiny saving; the
one-off cost is weighed against one hour of running cost (scale ``λ`` to weigh it against another
horizon). Removing an instance is free. Free GPUs per SKU ``F_k`` feed new instances only (current
ones keep theirs; GPUs that removals free come back at the next cycle, as in the scheduler)::

    minimise    Σ_s c_s·n_s + Σ_s π_s·a_s
    subject to  Σ_{s ∈ r} τ_s·n_s ≥ d_r                 for each role r     (capacity covers demand)
                a_s ≥ n_s − m_s,  a_s ≥ 0                for each shape s    (launches)
                Σ_{s : k(s) = k} g_s·a_s ≤ F_k           for each SKU k      (shared by both roles)
                Σ_s g_s·n_s ≤ G                                              (the service's GPU cap, if any)
                L_r ≤ Σ_{s ∈ r} n_s ≤ U_r               for each role r     (instance bounds)
                n_s ∈ ℤ≥0,  a_s ∈ ℝ                      (a_s = max(0, n_s − m_s) at the optimum)

A SKU allowed in both roles couples them through ``F_k``: that is why this is a MILP and not two
knapsacks. HiGHS (``highspy``) solves it within ``time_limit_s`` — or, where runs must repeat exactly
(the simulator, whose runs go in parallel on loaded cores), within ``node_limit`` branch-and-bound
nodes and no time limit: HiGHS with one thread is deterministic for a given node limit. Optimal →
used; a limit reached with an incumbent → the incumbent, or the greedy answer if that is cheaper;
anything else (no incumbent, a solver error, a solution that fails the independent check) → the
greedy fallback. Every answer says which and why in ``MixResult.status`` and one readable ``detail``
line for the decision journal.

Infeasible demand (not enough free GPUs, cap or bounds) never raises: a best-effort MILP first
maximises ``z``, the smallest covered share over the roles' demands and minimum counts
(``Σ τ_s·n_s ≥ z·d_r``, ``Σ n_s ≥ z·L_r``, ``0 ≤ z ≤ 1``; then, at 1 % of the weight, each role's own
covered share ``c_r ≤ 1``), then the cheapest counts that keep that score; the result has
``feasible=False`` and the shortfall in tokens/s per role.

Greedy: per role, the next instance is the one with the lowest marginal cost (``c_s``, plus ``π_s``
when it is a launch) per token/s it adds (``min(τ_s, still missing)``), which keeps current instances
of cheaper shapes and launches from the free GPUs; then the minimum count; then the surplus is trimmed
from the most expensive per token/s. Roles are served in order of scarcity (demand / reachable
capacity) — and, since the order decides who gets a shared SKU, also in the other order and
interleaved (the least covered role next); the best coverage, then the lowest cost, wins.

No clock here (the pure core reads none): ``MixResult.solve_s`` is HiGHS's own run time, or the
difference of an injected ``timer``; the decision line shows it only under a time limit (a
node-limited answer reads the same on every machine).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from heteroscale.scheduling.mix_greedy import greedy_counts
from heteroscale.scheduling.mix_highs import cheapest_at, counts_from, coverage_model, exact_model, solve_model
from heteroscale.scheduling.mix_problem import (
    MIN_BUDGET_S,
    Method,
    MixOption,
    MixProblem,
    MixResult,
    free_gpus_by_sku,
    rank,
    result_of,
)

__all__ = ["MixOption", "MixProblem", "MixResult", "free_gpus_by_sku", "greedy_mix", "solve_mix"]


def solve_mix(
    problem: MixProblem,
    time_limit_s: float = 0.2,
    *,
    node_limit: int | None = None,
    timer: Callable[[], float] | None = None,
) -> MixResult:
    """The cheapest mix covering ``problem``'s demand (MILP within ``time_limit_s``, greedy fallback);
    with ``node_limit`` the MILP is bounded by nodes instead and ``time_limit_s`` may be infinite.

    Never raises for an infeasible demand: it covers what it can and says so (``feasible=False``)."""
    if node_limit is not None and node_limit < 1:
        raise ValueError(f"node_limit must be ≥ 1, got {node_limit}")
    if not (time_limit_s > 0 and (math.isfinite(time_limit_s) or node_limit is not None)):
        raise ValueError(f"time_limit_s must be > 0, got {time_limit_s}")
    started = timer() if timer is not None else 0.0
    counts, method, status, run_s = _decide(problem, _Limits(time_limit_s, node_limit))
    solve_s = timer() - started if timer is not None else run_s
    return result_of(problem, counts, method, status, solve_s, timed=node_limit is None)


def greedy_mix(problem: MixProblem, *, timer: Callable[[], float] | None = None) -> MixResult:
    """The greedy answer alone (what :func:`solve_mix` falls back to), e.g. to measure the MILP's gain."""
    started = timer() if timer is not None else 0.0
    counts = greedy_counts(problem)
    solve_s = timer() - started if timer is not None else 0.0
    return result_of(problem, counts, "greedy", "greedy only", solve_s)


# --- the decision chain -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Limits:
    time_s: float
    nodes: int | None

    def text(self) -> str:
        return f"{self.time_s:g} s" if self.nodes is None else f"{self.nodes} nodes"


def _decide(problem: MixProblem, limits: _Limits) -> tuple[list[int], Method, str, float]:
    """(counts per option, method, status, HiGHS run time)."""
    exact = solve_model(exact_model(problem), limits.time_s, limits.nodes)
    spent = exact.run_s
    if exact.error:
        return greedy_counts(problem), "greedy", f"greedy: MILP failed ({exact.error})", spent
    if exact.state == "infeasible":
        return _best_effort(problem, limits, spent)
    counts = counts_from(problem, exact)
    if counts is None:
        why = exact.status if exact.values is None else "its solution failed the check"
        return greedy_counts(problem), "greedy", f"greedy: MILP gave no usable solution ({why})", spent
    if exact.state == "optimal":
        return counts, "milp", "optimal", spent
    fallback = greedy_counts(problem)
    if rank(problem, fallback) < rank(problem, counts):
        return fallback, "greedy", f"greedy: beat the MILP incumbent at {exact.status} ({limits.text()})", spent
    return counts, "milp", f"incumbent at {exact.status} ({limits.text()}), gap {exact.gap:.2%}", spent


def _best_effort(problem: MixProblem, limits: _Limits, spent: float) -> tuple[list[int], Method, str, float]:
    # under a node limit the time budget is infinite, so what is left never depends on the machine
    left = limits.time_s - spent
    fallback = "greedy best effort: demand cannot be covered"
    if left < MIN_BUDGET_S:
        return greedy_counts(problem), "greedy", f"{fallback}, no time left for a best-effort MILP", spent
    model, z_col, share_cols = coverage_model(problem)
    first = solve_model(model, left, limits.nodes)
    spent += first.run_s
    if first.error or first.values is None:
        why = first.error or first.status
        return greedy_counts(problem), "greedy", f"{fallback}, best-effort MILP failed ({why})", spent
    counts = counts_from(problem, first)
    if counts is None:
        return greedy_counts(problem), "greedy", f"{fallback}, best-effort solution failed the check", spent
    left = limits.time_s - spent
    status = "best effort: demand cannot be covered; coverage maximised"
    if left >= MIN_BUDGET_S:
        second = solve_model(cheapest_at(model, first.values, z_col, share_cols, problem), left, limits.nodes)
        spent += second.run_s
        cheaper = counts_from(problem, second) if not second.error else None
        if cheaper is not None and rank(problem, cheaper) <= rank(problem, counts):
            counts = cheaper
            status += ", then cost" + ("" if second.state == "optimal" else f" ({second.status})")
    greedy = greedy_counts(problem)
    if rank(problem, greedy) < rank(problem, counts):
        return greedy, "greedy", "greedy best effort: demand cannot be covered; beat the best-effort MILP", spent
    return counts, "milp", status, spent
