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
knapsacks. HiGHS (``highspy``) solves it within ``time_limit_s``: optimal → used; time limit with an
incumbent → the incumbent, or the greedy answer if that is cheaper; anything else (no incumbent, a
solver error, a solution that fails the independent check) → the greedy fallback. Every answer says
which and why in ``MixResult.status`` and one readable ``detail`` line for the decision journal.

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
difference of an injected ``timer``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.topology import Topology
from heteroscale.scheduling.groups import ROLES

if TYPE_CHECKING:
    from highspy._core import _Highs

Method = Literal["milp", "greedy"]
_REL_TOL = 1e-6  # demand counted as covered when short by less than this share (solver tolerances)
_INT_TOL = 1e-5  # a MILP value this close to an integer is that integer
_MIP_REL_GAP = 1e-6
_MIN_BUDGET_S = 1e-3  # below this a further HiGHS call is not worth starting
_SHARE_WEIGHT = 0.01  # weight of each role's own covered share next to the worst share, best effort


@dataclass(frozen=True, slots=True)
class MixOption:
    """One allowed shape: tokens/s one instance carries at the SLO, its cost per hour, how many run now."""

    shape: InstanceShape
    tps_per_instance: float
    cost_per_hour: float
    current: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tps_per_instance) and self.tps_per_instance > 0):
            raise ValueError(f"{self.shape.key}: tps_per_instance must be > 0, got {self.tps_per_instance}")
        if not (math.isfinite(self.cost_per_hour) and self.cost_per_hour >= 0):
            raise ValueError(f"{self.shape.key}: cost_per_hour must be ≥ 0, got {self.cost_per_hour}")
        if self.current < 0:
            raise ValueError(f"{self.shape.key}: current must be ≥ 0, got {self.current}")
        if self.shape.gpus < 1:
            raise ValueError(f"{self.shape.key}: an instance needs ≥ 1 GPU, got {self.shape.gpus}")

    @property
    def key(self) -> str:
        return self.shape.key

    @property
    def role(self) -> Role:
        return self.shape.role

    @property
    def gpus(self) -> int:
        return self.shape.gpus


@dataclass(frozen=True, slots=True)
class MixProblem:
    """One service's mix question. Roles missing from ``demand_tps`` / ``min_count`` want 0; missing from
    ``max_count``, no upper bound. A SKU missing from ``free_gpus_by_sku`` has no free GPU."""

    demand_tps: Mapping[Role, float]
    options: tuple[MixOption, ...]
    free_gpus_by_sku: Mapping[str, int]
    max_gpus: int | None = None
    min_count: Mapping[Role, int] = field(default_factory=dict)
    max_count: Mapping[Role, int] = field(default_factory=dict)
    launch_penalty_h: float = 0.0

    def __post_init__(self) -> None:
        keys = [o.key for o in self.options]
        if len(set(keys)) != len(keys):
            raise ValueError(f"mix options list a shape twice: {sorted(k for k in keys if keys.count(k) > 1)}")
        for role, tps in self.demand_tps.items():
            if not (math.isfinite(tps) and tps >= 0):
                raise ValueError(f"demand_tps[{role.value}] must be ≥ 0, got {tps}")
        if self.max_gpus is not None and self.max_gpus < 0:
            raise ValueError(f"max_gpus must be ≥ 0, got {self.max_gpus}")
        if not (math.isfinite(self.launch_penalty_h) and self.launch_penalty_h >= 0):
            raise ValueError(f"launch_penalty_h must be ≥ 0, got {self.launch_penalty_h}")
        for role in ROLES:
            low, high = self.bounds(role)
            if low < 0 or (high is not None and high < low):
                raise ValueError(f"{role.value} count bounds must satisfy 0 ≤ min ≤ max, got [{low}, {high}]")

    def demand(self, role: Role) -> float:
        return float(self.demand_tps.get(role, 0.0))

    def bounds(self, role: Role) -> tuple[int, int | None]:
        return int(self.min_count.get(role, 0)), self.max_count.get(role)

    def free(self, sku: str) -> int:
        return max(0, int(self.free_gpus_by_sku.get(sku, 0)))

    def penalty(self, option: MixOption) -> float:
        """The one-off cost of launching one instance of ``option``."""
        return self.launch_penalty_h * option.cost_per_hour


@dataclass(frozen=True, slots=True)
class MixResult:
    """The chosen mix. ``counts`` has every option's shape key; ``cost_per_hour`` is the running cost,
    ``launch_cost`` the one-off cost of the launches it implies (what the solver also minimised)."""

    counts: dict[str, int]
    cost_per_hour: float
    launch_cost: float
    method: Method
    status: str
    solve_s: float
    detail: str
    feasible: bool
    capacity_tps: dict[Role, float]
    shortfall_tps: dict[Role, float]

    @property
    def objective(self) -> float:
        return self.cost_per_hour + self.launch_cost

    def role_count(self, role: Role) -> int:
        return sum(n for key, n in self.counts.items() if _role_of_key(key) is role)

    def shape_counts(self) -> tuple[tuple[str, int], ...]:
        """``ServiceDemand.shape_counts`` for this mix (every option, in the problem's order)."""
        return tuple(self.counts.items())


def free_gpus_by_sku(topology: Topology, free_gpus: Mapping[str, int], granularity_gpus: int = 1) -> dict[str, int]:
    """Free GPUs per SKU over the topology's schedulable nodes (``free_gpus`` by node name, else the node's
    own ``gpus_free``; clamped to [0, gpus_total] as the scheduler's view does). With ``granularity_gpus``
    > 1 only whole multiples of it count per node (e.g. the smallest TP in use), a tighter bound.

    An upper bound on what the scheduler can place: affinity domains and fragmentation may allow less
    (what does not fit comes back in ``PlacementPlan.unplaced``)."""
    if granularity_gpus < 1:
        raise ValueError(f"granularity_gpus must be ≥ 1, got {granularity_gpus}")
    out: dict[str, int] = {}
    for node in topology.nodes:
        free = 0
        if node.schedulable:
            free = max(0, min(node.gpus_total, int(free_gpus.get(node.name, node.gpus_free))))
        out[node.sku] = out.get(node.sku, 0) + free // granularity_gpus * granularity_gpus
    return out


def solve_mix(problem: MixProblem, time_limit_s: float = 0.2, *, timer: Callable[[], float] | None = None) -> MixResult:
    """The cheapest mix covering ``problem``'s demand (MILP within ``time_limit_s``, greedy fallback).

    Never raises for an infeasible demand: it covers what it can and says so (``feasible=False``)."""
    if not (time_limit_s > 0 and math.isfinite(time_limit_s)):
        raise ValueError(f"time_limit_s must be > 0, got {time_limit_s}")
    started = timer() if timer is not None else 0.0
    counts, method, status, run_s = _decide(problem, time_limit_s)
    solve_s = timer() - started if timer is not None else run_s
    return _result(problem, counts, method, status, solve_s)


def greedy_mix(problem: MixProblem, *, timer: Callable[[], float] | None = None) -> MixResult:
    """The greedy answer alone (what :func:`solve_mix` falls back to), e.g. to measure the MILP's gain."""
    started = timer() if timer is not None else 0.0
    counts = _greedy(problem)
    solve_s = timer() - started if timer is not None else 0.0
    return _result(problem, counts, "greedy", "greedy only", solve_s)


# --- the decision chain -------------------------------------------------------------------------


def _decide(problem: MixProblem, time_limit_s: float) -> tuple[list[int], Method, str, float]:
    """(counts per option, method, status, HiGHS run time)."""
    exact = _highs(_exact_model(problem), time_limit_s)
    spent = exact.run_s
    if exact.error:
        return _greedy(problem), "greedy", f"greedy: MILP failed ({exact.error})", spent
    if exact.state == "infeasible":
        return _best_effort(problem, time_limit_s, spent)
    counts = _counts(problem, exact)
    if counts is None:
        why = exact.status if exact.values is None else "its solution failed the check"
        return _greedy(problem), "greedy", f"greedy: MILP gave no usable solution ({why})", spent
    if exact.state == "optimal":
        return counts, "milp", "optimal", spent
    fallback = _greedy(problem)
    if _rank(problem, fallback) < _rank(problem, counts):
        return fallback, "greedy", f"greedy: beat the MILP incumbent at {exact.status} ({time_limit_s:g} s)", spent
    return counts, "milp", f"incumbent at {exact.status} ({time_limit_s:g} s), gap {exact.gap:.2%}", spent


def _best_effort(problem: MixProblem, time_limit_s: float, spent: float) -> tuple[list[int], Method, str, float]:
    left = time_limit_s - spent
    fallback = "greedy best effort: demand cannot be covered"
    if left < _MIN_BUDGET_S:
        return _greedy(problem), "greedy", f"{fallback}, no time left for a best-effort MILP", spent
    model, z_col, share_cols = _coverage_model(problem)
    first = _highs(model, left)
    spent += first.run_s
    if first.error or first.values is None:
        why = first.error or first.status
        return _greedy(problem), "greedy", f"{fallback}, best-effort MILP failed ({why})", spent
    counts = _counts(problem, first)
    if counts is None:
        return _greedy(problem), "greedy", f"{fallback}, best-effort solution failed the check", spent
    left = time_limit_s - spent
    status = "best effort: demand cannot be covered; coverage maximised"
    if left >= _MIN_BUDGET_S:
        second = _highs(_cheapest_at(model, first.values, z_col, share_cols, problem), left)
        spent += second.run_s
        cheaper = _counts(problem, second) if not second.error else None
        if cheaper is not None and _rank(problem, cheaper) <= _rank(problem, counts):
            counts = cheaper
            status += ", then cost" + ("" if second.state == "optimal" else f" ({second.status})")
    greedy = _greedy(problem)
    if _rank(problem, greedy) < _rank(problem, counts):
        return greedy, "greedy", "greedy best effort: demand cannot be covered; beat the best-effort MILP", spent
    return counts, "milp", status, spent


def _rank(problem: MixProblem, counts: Sequence[int]) -> tuple[float, float]:
    """Smaller is better: the coverage score (what the best-effort MILP maximises), then the cost."""
    ev = _evaluate(problem, counts)
    return (-round(ev.score, 9), round(ev.objective, 9))


# --- HiGHS --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Model:
    """A MILP in row-wise form: minimise cost·x subject to row_lo ≤ A·x ≤ row_hi, col_lo ≤ x ≤ col_hi."""

    cost: list[float] = field(default_factory=list)
    col_lo: list[float] = field(default_factory=list)
    col_hi: list[float] = field(default_factory=list)
    integer: list[int] = field(default_factory=list)
    row_lo: list[float] = field(default_factory=list)
    row_hi: list[float] = field(default_factory=list)
    rows: list[dict[int, float]] = field(default_factory=list)

    def col(self, cost: float, lo: float, hi: float, integer: bool) -> int:
        self.cost.append(cost)
        self.col_lo.append(lo)
        self.col_hi.append(hi)
        self.integer.append(1 if integer else 0)
        return len(self.cost) - 1

    def row(self, coefs: Mapping[int, float], lo: float, hi: float) -> None:
        self.rows.append({c: v for c, v in coefs.items() if v != 0.0})
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def copy(self) -> _Model:
        return _Model(
            list(self.cost),
            list(self.col_lo),
            list(self.col_hi),
            list(self.integer),
            list(self.row_lo),
            list(self.row_hi),
            [dict(r) for r in self.rows],
        )


@dataclass(frozen=True, slots=True)
class _Run:
    state: Literal["optimal", "infeasible", "stopped", "other"]
    status: str  # HiGHS's model status, as it prints it
    values: list[float] | None  # column values when HiGHS has a feasible solution
    gap: float
    run_s: float
    error: str = ""


_INF = math.inf


# HiGHS options besides the time limit. One thread: the answer does not depend on the machine's core
# count (HiGHS's MIP is deterministic for a given thread count), and on these small models more
# threads cost more than they give; the feasibility-jump heuristic likewise (median 10 → 1 ms on the
# realistic benchmark, same optima).
_OPTIONS: tuple[tuple[str, bool | float], ...] = (
    ("output_flag", False),
    ("log_to_console", False),
    ("mip_rel_gap", _MIP_REL_GAP),
    ("mip_heuristic_run_feasibility_jump", False),
)


def _highs(model: _Model, time_limit_s: float) -> _Run:
    """Solve ``model`` with HiGHS, silenced, within ``time_limit_s``. Never raises."""
    try:
        # The core class, not highspy.Highs: the wrapper installs callbacks on construction, and that
        # makes HiGHS print its banner to stdout once per process before any option can silence it.
        from highspy._core import HighsModelStatus, HighsStatus, _Highs, kSolutionStatusFeasible
    except ImportError as exc:  # pragma: no cover - highspy is a declared dependency
        return _Run("other", "", None, math.inf, 0.0, error=f"highspy unavailable: {exc}")
    try:
        for single_thread in (True, False):
            highs = _Highs()
            try:
                for name, value in (*_OPTIONS, ("time_limit", float(time_limit_s))):
                    highs.setOptionValue(name, value)
                if single_thread:
                    highs.setOptionValue("threads", 1)
                _pass_model(highs, model)
                outcome = highs.run()
                status = highs.getModelStatus()
                if single_thread and outcome == HighsStatus.kError and status == HighsModelStatus.kNotset:
                    continue  # HiGHS's thread pool already runs with another size in this process
                info = highs.getInfo()
                has_solution = info.primal_solution_status == int(kSolutionStatusFeasible)
                values = list(highs.getSolution().col_value) if has_solution else None
                text = highs.modelStatusToString(status).lower()
                return _Run(_state(status), text, values, float(info.mip_gap), float(highs.getRunTime()))
            finally:
                highs.clear()
    except Exception as exc:  # any solver failure means: fall back, never crash the controller
        return _Run("other", "", None, math.inf, 0.0, error=f"{type(exc).__name__}: {exc}")
    return _Run("other", "", None, math.inf, 0.0, error="HiGHS refused to run")  # pragma: no cover


def _state(status: object) -> Literal["optimal", "infeasible", "stopped", "other"]:
    from highspy._core import HighsModelStatus

    if status == HighsModelStatus.kOptimal:
        return "optimal"
    if status in (HighsModelStatus.kInfeasible, HighsModelStatus.kUnboundedOrInfeasible):
        return "infeasible"
    if status in (HighsModelStatus.kTimeLimit, HighsModelStatus.kInterrupt, HighsModelStatus.kSolutionLimit):
        return "stopped"
    return "other"


def _pass_model(highs: _Highs, model: _Model) -> None:
    from highspy._core import MatrixFormat, ObjSense, kHighsInf

    def bound(x: float) -> float:
        return kHighsInf if x == _INF else -kHighsInf if x == -_INF else x

    starts: list[int] = [0]
    index: list[int] = []
    coefs: list[float] = []
    for row in model.rows:
        for col in sorted(row):
            index.append(col)
            coefs.append(row[col])
        starts.append(len(index))
    highs.passModel(
        len(model.cost),
        len(model.rows),
        len(index),
        int(MatrixFormat.kRowwise),
        int(ObjSense.kMinimize),
        0.0,
        model.cost,
        [bound(x) for x in model.col_lo],
        [bound(x) for x in model.col_hi],
        [bound(x) for x in model.row_lo],
        [bound(x) for x in model.row_hi],
        starts,
        index,
        coefs,
        model.integer,
    )


def _base_model(problem: MixProblem) -> tuple[_Model, list[int]]:
    """Columns n_s (integer) and a_s with the launch, pool, cap and max-count rows; the n_s columns.

    Columns come in (n_s, a_s) pairs in the options' order — n_s is column 2·i, a_s column 2·i + 1."""
    model = _Model()
    n_cols: list[int] = []
    a_cols: list[int] = []
    for opt in problem.options:
        launchable = problem.free(opt.shape.sku) // opt.gpus
        high = opt.current + launchable
        max_role = problem.bounds(opt.role)[1]
        if max_role is not None:
            high = min(high, max_role)
        n_cols.append(model.col(opt.cost_per_hour, 0.0, float(high), integer=True))
        a_cols.append(model.col(problem.penalty(opt), 0.0, float(launchable), integer=False))
    for n, a, opt in zip(n_cols, a_cols, problem.options, strict=True):
        model.row({a: 1.0, n: -1.0}, -float(opt.current), _INF)  # a_s ≥ n_s − m_s
    for sku in sorted({o.shape.sku for o in problem.options}):
        pool = {a: float(o.gpus) for a, o in zip(a_cols, problem.options, strict=True) if o.shape.sku == sku}
        model.row(pool, -_INF, float(problem.free(sku)))
    if problem.max_gpus is not None:
        model.row({n: float(o.gpus) for n, o in zip(n_cols, problem.options, strict=True)}, -_INF, problem.max_gpus)
    for role in ROLES:
        high_count = problem.bounds(role)[1]
        if high_count is not None:
            model.row(_role_cols(problem, n_cols, role, lambda _: 1.0), -_INF, float(high_count))
    return model, n_cols


def _role_cols(
    problem: MixProblem, n_cols: Sequence[int], role: Role, coef: Callable[[MixOption], float]
) -> dict[int, float]:
    return {n: coef(o) for n, o in zip(n_cols, problem.options, strict=True) if o.role is role}


def _exact_model(problem: MixProblem) -> _Model:
    model, n_cols = _base_model(problem)
    for role in ROLES:
        demand = problem.demand(role)
        if demand > 0:
            model.row(_role_cols(problem, n_cols, role, lambda o: o.tps_per_instance), demand, _INF)
        low = problem.bounds(role)[0]
        if low > 0:
            model.row(_role_cols(problem, n_cols, role, lambda _: 1.0), float(low), _INF)
    return model


def _coverage_model(problem: MixProblem) -> tuple[_Model, int, dict[Role, int]]:
    """Best effort, first step: maximise the worst covered share z (demand and minimum counts), then the
    roles' own shares; no cost. Returns the model, z's column and each demanding role's share column."""
    model, n_cols = _base_model(problem)
    model.cost = [0.0] * len(model.cost)
    z = model.col(-1.0, 0.0, 1.0, integer=False)
    shares: dict[Role, int] = {}
    for role in ROLES:
        demand = problem.demand(role)
        if demand > 0:
            tps = _role_cols(problem, n_cols, role, lambda o: o.tps_per_instance)
            model.row({**tps, z: -demand}, 0.0, _INF)
            shares[role] = model.col(-_SHARE_WEIGHT, 0.0, 1.0, integer=False)
            model.row({**tps, shares[role]: -demand}, 0.0, _INF)
        low = problem.bounds(role)[0]
        if low > 0:
            model.row({**_role_cols(problem, n_cols, role, lambda _: 1.0), z: -float(low)}, 0.0, _INF)
    return model, z, shares


def _cheapest_at(
    model: _Model, values: Sequence[float], z: int, shares: Mapping[Role, int], problem: MixProblem
) -> _Model:
    """Best effort, second step: the coverage model with its score held at what the first step reached
    (``z + 1 % · Σ c_r ≥`` that) and the cost objective back."""
    out = model.copy()
    out.cost = [0.0] * len(out.cost)
    for i, opt in enumerate(problem.options):
        out.cost[2 * i] = opt.cost_per_hour
        out.cost[2 * i + 1] = problem.penalty(opt)
    weights = {z: 1.0, **{col: _SHARE_WEIGHT for col in shares.values()}}
    reached = sum(w * values[col] for col, w in weights.items())
    out.row(weights, reached - 1e-7, _INF)
    return out


def _counts(problem: MixProblem, run: _Run) -> list[int] | None:
    """Integer counts from a HiGHS solution, if they are integral and pass the independent hard check."""
    if run.values is None:
        return None
    counts: list[int] = []
    for i in range(len(problem.options)):
        value = run.values[2 * i]  # n_s columns come first in each (n_s, a_s) pair
        rounded = round(value)
        if abs(value - rounded) > _INT_TOL or rounded < 0:
            return None
        counts.append(int(rounded))
    return counts if _evaluate(problem, counts).hard_ok else None


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
        return gap if gap > _REL_TOL * max(1.0, demand) else 0.0

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
                if self.counts[i] == 0 or capacity - opt.tps_per_instance < demand * (1 - _REL_TOL):
                    continue
                key = (-self.saving(i) / opt.tps_per_instance, -self.saving(i), i)
                if best is None or key < best:
                    best = key
            if best is None:
                return
            self.drop(best[2])


def _greedy(problem: MixProblem) -> list[int]:
    """The best of three greedy passes (scarcest role first, the other order, interleaved)."""
    order = sorted(ROLES, key=lambda r: (-_scarcity(problem, r), ROLES.index(r)))
    passes = [_greedy_in_order(problem, order), _greedy_in_order(problem, order[::-1]), _greedy_interleaved(problem)]
    return min(passes, key=lambda counts: _rank(problem, counts))


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


# --- evaluation and the journal line ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Evaluation:
    cost_per_hour: float
    launch_cost: float
    capacity_tps: dict[Role, float]
    shortfall_tps: dict[Role, float]
    count_short: int  # instances missing to the roles' minimum counts
    worst_share: float  # the smallest covered share of a role's demand / minimum count (1 when all met)
    demand_share_sum: float  # Σ over roles with demand of min(1, capacity / demand)
    hard_ok: bool  # free GPUs per SKU, the GPU cap and the maximum counts hold

    @property
    def objective(self) -> float:
        return self.cost_per_hour + self.launch_cost

    @property
    def score(self) -> float:
        """z + 1 % of each role's share: the best-effort MILP's objective (the larger, the better)."""
        return self.worst_share + _SHARE_WEIGHT * self.demand_share_sum

    @property
    def feasible(self) -> bool:
        return self.hard_ok and self.count_short == 0 and not any(self.shortfall_tps.values())


def _evaluate(problem: MixProblem, counts: Sequence[int]) -> _Evaluation:
    options = problem.options
    launches = [max(0, n - o.current) for n, o in zip(counts, options, strict=True)]
    cost = sum(n * o.cost_per_hour for n, o in zip(counts, options, strict=True))
    launch_cost = sum(a * problem.penalty(o) for a, o in zip(launches, options, strict=True))
    used: dict[str, int] = {}
    for a, o in zip(launches, options, strict=True):
        used[o.shape.sku] = used.get(o.shape.sku, 0) + a * o.gpus
    hard_ok = all(used[sku] <= problem.free(sku) for sku in used)
    if problem.max_gpus is not None:
        hard_ok &= sum(n * o.gpus for n, o in zip(counts, options, strict=True)) <= problem.max_gpus
    capacity: dict[Role, float] = {}
    shortfall: dict[Role, float] = {}
    shares: list[float] = []
    demand_shares = 0.0
    count_short = 0
    for role in ROLES:
        n_role = sum(n for n, o in zip(counts, options, strict=True) if o.role is role)
        capacity[role] = sum(n * o.tps_per_instance for n, o in zip(counts, options, strict=True) if o.role is role)
        demand = problem.demand(role)
        short = demand - capacity[role]
        shortfall[role] = short if short > _REL_TOL * max(1.0, demand) else 0.0
        low, high = problem.bounds(role)
        if high is not None and n_role > high:
            hard_ok = False
        count_short += max(0, low - n_role)
        if demand > 0:
            shares.append(min(1.0, capacity[role] / demand) if shortfall[role] else 1.0)
            demand_shares += shares[-1]
        if low > 0:
            shares.append(min(1.0, n_role / low))
    return _Evaluation(
        cost_per_hour=cost,
        launch_cost=launch_cost,
        capacity_tps=capacity,
        shortfall_tps=shortfall,
        count_short=count_short,
        worst_share=min(shares, default=1.0),
        demand_share_sum=demand_shares,
        hard_ok=hard_ok,
    )


def _result(problem: MixProblem, counts: Sequence[int], method: Method, status: str, solve_s: float) -> MixResult:
    ev = _evaluate(problem, counts)
    return MixResult(
        counts={o.key: n for o, n in zip(problem.options, counts, strict=True)},
        cost_per_hour=ev.cost_per_hour,
        launch_cost=ev.launch_cost,
        method=method,
        status=status,
        solve_s=solve_s,
        detail=_detail(problem, counts, ev, method, status, solve_s),
        feasible=ev.feasible,
        capacity_tps=ev.capacity_tps,
        shortfall_tps=ev.shortfall_tps,
    )


def _detail(
    problem: MixProblem, counts: Sequence[int], ev: _Evaluation, method: Method, status: str, solve_s: float
) -> str:
    """One line: how it was decided, the counts per shape (with the change), cost, and coverage."""
    shapes = []
    for opt, n in zip(problem.options, counts, strict=True):
        if n or opt.current:
            change = f" ({n - opt.current:+d})" if n != opt.current else ""
            shapes.append(f"{opt.key}={n}{change}")
    served_tps = sum(min(ev.capacity_tps[r], problem.demand(r)) for r in ROLES)
    per_1k = f"{ev.cost_per_hour / (served_tps * 3.6):.4g}" if served_tps > 0 else "n/a"
    cover = ", ".join(f"{r.value} {ev.capacity_tps[r]:.0f}/{problem.demand(r):.0f} tps" for r in ROLES)
    parts = [
        f"mix {method} ({status}; {solve_s * 1e3:.1f} ms)",
        " ".join(shapes) or "no instances",
        f"{ev.cost_per_hour:.4g}/h + launches {ev.launch_cost:.3g}, {per_1k} per 1k tokens",
        cover,
    ]
    short = [f"{r.value} short {ev.shortfall_tps[r]:.0f} tps" for r in ROLES if ev.shortfall_tps[r]]
    if ev.count_short:
        short.append(f"{ev.count_short} instance(s) below the minimum counts")
    if not ev.hard_ok:  # only possible when nothing satisfies the limits (e.g. current counts over max)
        short.append("limits not met")
    if short:
        parts.append("INFEASIBLE: " + ", ".join(short))
    return "; ".join(parts)


def _role_of_key(key: str) -> Role:
    return Role(key.split(":", 1)[0])
