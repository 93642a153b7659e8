"""The greedy fallback of :mod:`heteroscale.scheduling.mix` (see its docstring for the rules)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from heteroscale.domain.hardware import Role
from heteroscale.scheduling.groups import ROLES
from heteroscale.scheduling.mix_problem import REL_TOL, MixProblem, rank

# --- greedy -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Fill:
    """One greedy pass: counts so far, free GPUs per SKU left, GPUs, instances and capacity per role."""

    problem: MixProblem
    counts: list[int]
    pool: dict[str, int]
    by_role: dict[Role, list[int]]
    role_count: dict[Role, int]
    role_tps: dict[Role, float]
    gpus: int = 0

    @classmethod
    def start(cls, problem: MixProblem) -> _Fill:
        options = problem.options
        return cls(
            problem=problem,
            counts=[0] * len(options),
            pool={o.shape.sku: problem.free(o.shape.sku) for o in options},
            by_role={r: [i for i, o in enumerate(options) if o.role is r] for r in ROLES},
            role_count=dict.fromkeys(ROLES, 0),
            role_tps=dict.fromkeys(ROLES, 0.0),
        )

    def indexes(self, role: Role) -> list[int]:
        return self.by_role[role]

    def capacity(self, role: Role) -> float:
        return self.role_tps[role]

    def count(self, role: Role) -> int:
        return self.role_count[role]

    def missing(self, role: Role) -> float:
        demand = self.problem.demand(role)
        gap = demand - self.role_tps[role]
        return gap if gap > REL_TOL * max(1.0, demand) else 0.0

    def marginal(self, i: int) -> float:
        """The cost of one more instance of option ``i`` (running cost, plus the launch if it is new)."""
        opt = self.problem.options[i]
        launch = self.counts[i] >= opt.current
        return opt.cost_per_hour + (self.problem.penalty(opt) if launch else 0.0)

    def saving(self, i: int) -> float:
        """What removing one instance of option ``i`` saves (launches go before kept instances)."""
        opt = self.problem.options[i]
        launched = self.counts[i] > opt.current
        return opt.cost_per_hour + (self.problem.penalty(opt) if launched else 0.0)

    def can_add(self, i: int) -> bool:
        opt = self.problem.options[i]
        high = self.problem.bounds(opt.role)[1]
        if high is not None and self.count(opt.role) >= high:
            return False
        if self.problem.max_gpus is not None and self.gpus + opt.gpus > self.problem.max_gpus:
            return False
        return self.counts[i] < opt.current or self.pool[opt.shape.sku] >= opt.gpus

    def add(self, i: int) -> None:
        opt = self.problem.options[i]
        if self.counts[i] >= opt.current:
            self.pool[opt.shape.sku] -= opt.gpus
        self._change(i, 1)

    def drop(self, i: int) -> None:
        self._change(i, -1)
        opt = self.problem.options[i]
        if self.counts[i] >= opt.current:
            self.pool[opt.shape.sku] += opt.gpus

    def _change(self, i: int, delta: int) -> None:
        opt = self.problem.options[i]
        self.counts[i] += delta
        self.gpus += delta * opt.gpus
        self.role_count[opt.role] += delta
        self.role_tps[opt.role] += delta * opt.tps_per_instance

    def best_unit(self, role: Role) -> int | None:
        """The option whose next instance costs least per token/s still missing (capped at what is missing)."""
        missing = self.missing(role)
        best: tuple[float, float, int] | None = None
        for i in self.indexes(role):
            if not self.can_add(i):
                continue
            tps = min(self.problem.options[i].tps_per_instance, missing)
            key = (self.marginal(i) / tps, self.marginal(i), i)
            if best is None or key < best:
                best = key
        return None if best is None else best[2]

    def cover(self, role: Role) -> None:
        while self.missing(role) > 0:
            i = self.best_unit(role)
            if i is None:
                return
            for _ in range(self.run_length(i, role)):
                self.add(i)

    def run_length(self, i: int, role: Role) -> int:
        """How many instances of ``i`` in a row :meth:`best_unit` would pick: its cost per token/s and every
        other option's (which only grows as less is missing) stay put while a whole instance is still
        missing and its marginal cost, the pool, the cap and the maximum count do not change."""
        opt = self.problem.options[i]
        run = max(1, int(self.missing(role) // opt.tps_per_instance))
        n = self.counts[i]
        run = min(run, opt.current - n) if n < opt.current else min(run, self.pool[opt.shape.sku] // opt.gpus)
        if self.problem.max_gpus is not None:
            run = min(run, (self.problem.max_gpus - self.gpus) // opt.gpus)
        high = self.problem.bounds(role)[1]
        if high is not None:
            run = min(run, high - self.role_count[role])
        return max(1, run)

    def reach_minimum(self, role: Role) -> None:
        low = self.problem.bounds(role)[0]
        while self.count(role) < low:
            options = self.problem.options
            addable = [i for i in self.indexes(role) if self.can_add(i)]
            if not addable:
                return
            self.add(min(addable, key=lambda i: (self.marginal(i), self.marginal(i) / options[i].tps_per_instance, i)))

    def trim(self, role: Role) -> None:
        """Remove surplus instances, the most expensive per token/s first, while demand and minimum hold."""
        demand = self.problem.demand(role)
        low = self.problem.bounds(role)[0]
        while self.count(role) > low:
            capacity = self.capacity(role)
            best: tuple[float, float, int] | None = None
            for i in self.indexes(role):
                opt = self.problem.options[i]
                if self.counts[i] == 0 or capacity - opt.tps_per_instance < demand * (1 - REL_TOL):
                    continue
                key = (-self.saving(i) / opt.tps_per_instance, -self.saving(i), i)
                if best is None or key < best:
                    best = key
            if best is None:
                return
            self.drop(best[2])


def greedy_counts(problem: MixProblem) -> list[int]:
    """The best of three greedy passes (scarcest role first, the other order, interleaved)."""
    order = sorted(ROLES, key=lambda r: (-_scarcity(problem, r), ROLES.index(r)))
    passes = [_greedy_in_order(problem, order), _greedy_in_order(problem, order[::-1]), _greedy_interleaved(problem)]
    return min(passes, key=lambda counts: rank(problem, counts))


def _scarcity(problem: MixProblem, role: Role) -> float:
    """Demand over the capacity the role could reach alone (current plus everything its SKUs have free)."""
    demand = problem.demand(role)
    options = [o for o in problem.options if o.role is role]
    reach = sum((o.current + problem.free(o.shape.sku) // o.gpus) * o.tps_per_instance for o in options)
    if demand <= 0:
        return 0.0
    return math.inf if reach <= 0 else demand / reach


def _greedy_in_order(problem: MixProblem, order: Sequence[Role]) -> list[int]:
    fill = _Fill.start(problem)
    for role in order:
        fill.cover(role)
        fill.reach_minimum(role)
        fill.trim(role)
    return fill.counts


def _greedy_interleaved(problem: MixProblem) -> list[int]:
    """One instance at a time to the role whose demand is least covered (shares a scarce pool fairly)."""
    fill = _Fill.start(problem)
    active = [r for r in ROLES if problem.demand(r) > 0]
    while True:
        choices = [(fill.capacity(r) / problem.demand(r), ROLES.index(r), r) for r in active if fill.missing(r) > 0]
        chosen = None
        for _, _, role in sorted(choices):
            chosen = fill.best_unit(role)
            if chosen is not None:
                break
        if chosen is None:
            break
        fill.add(chosen)
    for role in ROLES:
        fill.reach_minimum(role)
    for role in ROLES:
        fill.trim(role)
    return fill.counts
