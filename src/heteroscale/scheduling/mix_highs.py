"""The MILP of :mod:`heteroscale.scheduling.mix` in HiGHS: model building, solving, reading counts back."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from heteroscale.domain.hardware import Role
from heteroscale.scheduling.groups import ROLES
from heteroscale.scheduling.mix_problem import INT_TOL, MIP_REL_GAP, SHARE_WEIGHT, MixOption, MixProblem, evaluate

if TYPE_CHECKING:
    from highspy._core import _Highs

# --- HiGHS --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Model:
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

    def copy(self) -> Model:
        return Model(
            list(self.cost),
            list(self.col_lo),
            list(self.col_hi),
            list(self.integer),
            list(self.row_lo),
            list(self.row_hi),
            [dict(r) for r in self.rows],
        )


@dataclass(frozen=True, slots=True)
class Run:
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
    ("mip_rel_gap", MIP_REL_GAP),
    ("mip_heuristic_run_feasibility_jump", False),
)


def solve_model(model: Model, time_limit_s: float, node_limit: int | None = None) -> Run:
    """Solve ``model`` with HiGHS, silenced, within ``time_limit_s`` (and ``node_limit`` branch-and-bound
    nodes, a limit that does not depend on the machine). Never raises."""
    try:
        # The core class, not highspy.Highs: the wrapper installs callbacks on construction, and that
        # makes HiGHS print its banner to stdout once per process before any option can silence it.
        from highspy._core import HighsModelStatus, HighsStatus, _Highs, kSolutionStatusFeasible
    except ImportError as exc:  # pragma: no cover - highspy is a declared dependency
        return Run("other", "", None, math.inf, 0.0, error=f"highspy unavailable: {exc}")
    try:
        for single_thread in (True, False):
            highs = _Highs()
            try:
                for name, value in (*_OPTIONS, ("time_limit", float(time_limit_s))):
                    highs.setOptionValue(name, value)
                if node_limit is not None:
                    highs.setOptionValue("mip_max_nodes", int(node_limit))
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
                return Run(_state(status), text, values, float(info.mip_gap), float(highs.getRunTime()))
            finally:
                highs.clear()
    except Exception as exc:  # any solver failure means: fall back, never crash the controller
        return Run("other", "", None, math.inf, 0.0, error=f"{type(exc).__name__}: {exc}")
    return Run("other", "", None, math.inf, 0.0, error="HiGHS refused to run")  # pragma: no cover


def _state(status: object) -> Literal["optimal", "infeasible", "stopped", "other"]:
    from highspy._core import HighsModelStatus

    if status == HighsModelStatus.kOptimal:
        return "optimal"
    if status in (HighsModelStatus.kInfeasible, HighsModelStatus.kUnboundedOrInfeasible):
        return "infeasible"
    if status in (HighsModelStatus.kTimeLimit, HighsModelStatus.kInterrupt, HighsModelStatus.kSolutionLimit):
        return "stopped"
    return "other"


def _pass_model(highs: _Highs, model: Model) -> None:
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


def _base_model(problem: MixProblem) -> tuple[Model, list[int]]:
    """Columns n_s (integer) and a_s with the launch, pool, cap and max-count rows; the n_s columns.

    Columns come in (n_s, a_s) pairs in the options' order — n_s is column 2·i, a_s column 2·i + 1."""
    model = Model()
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


def exact_model(problem: MixProblem) -> Model:
    model, n_cols = _base_model(problem)
    for role in ROLES:
        demand = problem.demand(role)
        if demand > 0:
            model.row(_role_cols(problem, n_cols, role, lambda o: o.tps_per_instance), demand, _INF)
        low = problem.bounds(role)[0]
        if low > 0:
            model.row(_role_cols(problem, n_cols, role, lambda _: 1.0), float(low), _INF)
    return model


def coverage_model(problem: MixProblem) -> tuple[Model, int, dict[Role, int]]:
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
            shares[role] = model.col(-SHARE_WEIGHT, 0.0, 1.0, integer=False)
            model.row({**tps, shares[role]: -demand}, 0.0, _INF)
        low = problem.bounds(role)[0]
        if low > 0:
            model.row({**_role_cols(problem, n_cols, role, lambda _: 1.0), z: -float(low)}, 0.0, _INF)
    return model, z, shares


def cheapest_at(
    model: Model, values: Sequence[float], z: int, shares: Mapping[Role, int], problem: MixProblem
) -> Model:
    """Best effort, second step: the coverage model with its score held at what the first step reached
    (``z + 1 % · Σ c_r ≥`` that) and the cost objective back."""
    out = model.copy()
    out.cost = [0.0] * len(out.cost)
    for i, opt in enumerate(problem.options):
        out.cost[2 * i] = opt.cost_per_hour
        out.cost[2 * i + 1] = problem.penalty(opt)
    weights = {z: 1.0, **{col: SHARE_WEIGHT for col in shares.values()}}
    reached = sum(w * values[col] for col, w in weights.items())
    out.row(weights, reached - 1e-7, _INF)
    return out


def counts_from(problem: MixProblem, run: Run) -> list[int] | None:
    """Integer counts from a HiGHS solution, if they are integral and pass the independent hard check."""
    if run.values is None:
        return None
    counts: list[int] = []
    for i in range(len(problem.options)):
        value = run.values[2 * i]  # n_s columns come first in each (n_s, a_s) pair
        rounded = round(value)
        if abs(value - rounded) > INT_TOL or rounded < 0:
            return None
        counts.append(int(rounded))
    return counts if evaluate(problem, counts).hard_ok else None
