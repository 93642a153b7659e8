"""Build a scenario's engine, drive it with a controller on each tick, and summarise the run.

Every run ends with a check that it billed no less than the saturation bound of the work it completed
(:mod:`heteroscale.sim.bound`); the bound is in the summary as ``lower_bound``. The controller gets
virtual time as ``now_s`` on each reconcile: the simulator has no clock of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from heteroscale.clock import Stopwatch
from heteroscale.controller.journal import Journal
from heteroscale.controller.mixing import mix_settings
from heteroscale.controller.readiness import ReadinessSettings
from heteroscale.controller.reconcile import Controller, ServiceBinding
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.plan import PlacementPlan
from heteroscale.domain.state import ClusterState
from heteroscale.domain.topology import Topology
from heteroscale.errors import ConfigError
from heteroscale.perf import Calibration, InstancePerf, build_instance_perf
from heteroscale.policy.context import Targets
from heteroscale.policy.registry import make_policy
from heteroscale.policy.targets import analytic_targets
from heteroscale.scheduling import ServiceDemand, place
from heteroscale.scheduling.budget import apply_budget
from heteroscale.sim.adapters import SimActuator, SimMetricSource
from heteroscale.sim.bound import check_bound, load_costs, run_bound
from heteroscale.sim.cluster import SimCluster
from heteroscale.sim.engine import Engine, ServiceLoad
from heteroscale.sim.fidelity import peak_load_fraction
from heteroscale.sim.fluid_engine import FluidEngine, arrivals_rng
from heteroscale.sim.gating import GatingTally
from heteroscale.sim.loads import build_loads, build_trace, load_curve
from heteroscale.sim.records import RecordWriter, open_records
from heteroscale.sim.request_engine import RequestEngine
from heteroscale.sim.scenario import Fidelity, Scenario
from heteroscale.sim.summary import RunFacts, summarise
from heteroscale.sim.telemetry import Telemetry

__all__ = ["MIX_NODE_LIMIT", "ProgressFn", "SimulationRun", "build_trace", "load_curve"]

ProgressFn = Callable[[float], None]
# the GPU-mix MILP in a simulation stops at this many branch-and-bound nodes, not at a time limit, so
# that a run repeats exactly on a loaded machine and in parallel (the models solve in far fewer)
MIX_NODE_LIMIT = 10_000
Perfs = dict[tuple[int, InstanceShape], InstancePerf]
PolicyChoice = tuple[str, dict[str, object]]


def build_perfs(scenario: Scenario, calibration: Calibration) -> Perfs:
    """The performance model of every (service, shape) the scenario allows."""
    perfs: Perfs = {}
    reserve = scenario.settings.kv_activation_reserve
    for i, run in enumerate(scenario.services):
        model = scenario.models[run.spec.model]
        for role in Role:
            for shape in run.spec.shapes(role):
                try:
                    sku = scenario.skus[shape.sku]
                    perfs[(i, shape)] = build_instance_perf(model, sku, shape.tp, calibration, reserve)
                except ValueError as exc:
                    raise ConfigError(
                        f"service {run.spec.name}: {role.value} shape {shape.sku} TP{shape.tp}: {exc}"
                    ) from exc
    return perfs


def perfs_of(perfs: Perfs, svc: int) -> dict[InstanceShape, InstancePerf]:
    return {shape: perf for (i, shape), perf in perfs.items() if i == svc}


def build_engine(
    scenario: Scenario,
    fidelity: Fidelity,
    seed: int,
    cluster: SimCluster,
    loads: list[ServiceLoad],
    perfs: Perfs,
    telemetry: Telemetry,
    records: RecordWriter,
) -> Engine:
    st = scenario.settings
    if fidelity is Fidelity.REQUEST:
        return RequestEngine(cluster, loads, perfs, telemetry, records, st.telemetry_window_s, st.engine)
    return FluidEngine(cluster, loads, perfs, telemetry, st.telemetry_window_s, st.fluid_step_s, arrivals_rng(seed))


def build_bindings(
    scenario: Scenario,
    loads: list[ServiceLoad],
    perfs: Perfs,
    targets: dict[str, Targets] | None,
    policies: dict[str, PolicyChoice] | None,
) -> list[ServiceBinding]:
    """One binding per service: its policy (``policies`` over the scenario's) and its targets (given,
    pinned in the scenario, else from the performance model for the load's mean lengths)."""
    bindings: list[ServiceBinding] = []
    for i, run in enumerate(scenario.services):
        name, options = (policies or {}).get(run.spec.name, (run.policy.name, run.policy.build_options()))
        given = (targets or {}).get(run.spec.name) or run.targets
        if given is None:
            trace = loads[i].trace
            given = analytic_targets(
                run.spec,
                {s.key: p for s, p in perfs_of(perfs, i).items()},
                float(trace.input_tokens.mean()) if len(trace) else 1.0,
                float(trace.output_tokens.mean()) if len(trace) else 1.0,
            )
        try:
            policy = make_policy(name, options)
        except ValueError as exc:
            raise ConfigError(f"service {run.spec.name}: policy {name}: {exc}") from exc
        mix = mix_settings(run.spec, scenario.skus, scenario.settings.cold_start_s, node_limit=MIX_NODE_LIMIT)
        bindings.append(ServiceBinding(run.spec, policy, given, mix=mix))
    return bindings


def build_controller(
    scenario: Scenario, bindings: list[ServiceBinding], engine: Engine, adapter: SimActuator, journal: Journal
) -> Controller:
    st = scenario.settings
    return Controller(
        bindings,
        SimMetricSource(engine),
        adapter,
        adapter,
        journal,
        window_s=max(st.tick_s, st.telemetry_window_s),
        tick_s=st.tick_s,
        readiness=ReadinessSettings(st.ratio_tolerance, st.soft_scale_in_s, st.drain_grace_s),
        budget=scenario.budget,
        plain_records=False,  # the run reads only the journal, which asks for them when it keeps any
    )


class SimulationRun:
    """One simulation of a scenario. ``run()`` returns the summary dict."""

    def __init__(
        self,
        scenario: Scenario,
        calibration: Calibration,
        *,
        fidelity: Fidelity | None = None,
        duration_s: float | None = None,
        seed: int | None = None,
        out_dir: Path | None = None,
        loads: list[ServiceLoad] | None = None,
        targets: dict[str, Targets] | None = None,
        policies: dict[str, PolicyChoice] | None = None,
        requests_csv: str = "plain",
    ) -> None:
        """``targets`` per service (else performance-model targets); ``policies`` per service as
        (registry name, options), overriding the scenario's; ``requests_csv`` with ``out_dir``:
        ``plain`` (requests.csv), ``gzip`` (requests.csv.gz) or ``off``."""
        st = scenario.settings
        self.scenario = scenario
        self.calibration = calibration
        self.fidelity = fidelity or st.fidelity
        self.duration_s = duration_s if duration_s is not None else st.duration_s
        self.seed = st.seed if seed is None else seed
        self.out_dir = out_dir
        names = [s.spec.name for s in scenario.services]
        self.service_index = {n: i for i, n in enumerate(names)}
        self.loads = build_loads(scenario, self.fidelity, self.seed, self.duration_s) if loads is None else loads
        self.perfs = build_perfs(scenario, calibration)
        # each request's least GPU time at saturation: the bound every run is checked against
        self.costs = [
            load_costs(run.spec, self.loads[i], perfs_of(self.perfs, i), scenario.skus)
            for i, run in enumerate(scenario.services)
        ]
        self.cluster = SimCluster(scenario.topology, scenario.skus, names)
        self.telemetry = Telemetry(names)
        self._records_stream: IO[str] | None = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._records_stream = open_records(out_dir, requests_csv)
        self.engine = build_engine(
            scenario,
            self.fidelity,
            self.seed,
            self.cluster,
            self.loads,
            self.perfs,
            self.telemetry,
            RecordWriter(self._records_stream),
        )
        self.journal = Journal(out_dir / "journal.jsonl" if out_dir is not None else None)
        self.adapter = SimActuator(self.engine, self.service_index)
        bindings = build_bindings(scenario, self.loads, self.perfs, targets, policies)
        self.targets: dict[str, Targets] = {b.spec.name: b.targets for b in bindings}
        self.policy_names = {b.spec.name: b.policy.name for b in bindings}
        self.controller = build_controller(scenario, bindings, self.engine, self.adapter, self.journal)
        self.gating = GatingTally()
        self.wall_s = 0.0
        self.loop_wall_s = 0.0
        self.initial_launches = 0
        self.peak_gpus_held = 0  # the most GPUs instances held (pending to draining) after any reconcile
        # what places the warm initial deployment (the federated scheduler; a benchmark may swap it)
        self.initial_placer: Callable[[list[ServiceDemand], ClusterState, Topology, dict[str, int]], PlacementPlan] = (
            place
        )

    def _deploy_initial(self) -> None:
        """The initial deployment, placed by the scheduler like any other, is warm at t = 0; under a GPU
        budget it is capped by service priority first (the cluster never starts over its budget)."""
        demands = [ServiceDemand(run.spec, run.policy.prefill, run.policy.decode) for run in self.scenario.services]
        budget = self.scenario.budget
        if budget is not None and budget.bounded:
            demands = list(apply_budget(demands, (), budget).demands)
        plan = self.initial_placer(
            demands, self.cluster.snapshot(0.0), self.cluster.topology, dict(self.cluster.node_free)
        )
        if plan.unplaced:
            u = plan.unplaced[0]
            raise ConfigError(
                f"scenario {self.scenario.name}: initial deployment of {u.service} does not fit: "
                f"{u.count} {u.role.value} instance(s) unplaced ({u.reason})"
            )
        for launch in plan.launches:
            self.engine.launch(self.service_index[launch.service], launch.shape, launch.dg, launch.node, 0.0, warm=True)
            self.initial_launches += 1

    def load_end_s(self) -> float:
        return max((ld.load_end_s() for ld in self.loads), default=0.0)

    def run(self, progress: ProgressFn | None = None) -> dict[str, Any]:
        total = Stopwatch()
        st = self.scenario.settings
        self._deploy_initial()
        tick = st.tick_s
        load_end = self.load_end_s()
        horizon = self.duration_s if self.duration_s is not None else load_end + st.max_tail_s
        t = 0.0
        loop = Stopwatch()
        n_ticks_max = int(horizon / tick) + 2
        for _ in range(n_ticks_max):
            t_next = min(t + tick, horizon)
            self.engine.run_until(t_next)
            t = t_next
            if progress is not None:
                progress(min(1.0, t / horizon) if horizon > 0 else 1.0)
            if t >= horizon - 1e-9:
                break
            if self.duration_s is None and self.engine.idle:
                break
            self.controller.reconcile_once(t)
            self.gating.observe(t, self.controller.books, self.cluster.instances)
            # GPUs grow only at a reconcile (launches), so the peak is seen right after one
            self.peak_gpus_held = max(self.peak_gpus_held, self.cluster.gpus_held())
        self.loop_wall_s = loop.elapsed_s()
        end_s = t
        summary = self.summary(end_s)
        bound = run_bound(self.engine, self.loads, self.costs)
        summary["lower_bound"] = bound.as_dict() | {
            "basis": "served tokens" if self.engine.latency_estimated else "completed requests"
        }
        billing = self.cluster.close_billing(end_s)
        check_bound(self.scenario.name, bound, billing.gpu_s_by_role, billing.cost_gpu_s)
        self.wall_s = total.elapsed_s()
        summary["wall_s"] = round(self.wall_s, 3)
        summary["peak_gpus_held"] = max(self.peak_gpus_held, self.cluster.gpus_held())
        summary["gpu_budget"] = None if self.scenario.budget is None else self.scenario.budget.total_gpus
        self.close()
        return summary

    def summary(self, end_s: float) -> dict[str, Any]:
        """Bring the engine's accumulators and the gating tally up to ``end_s``, then summarise."""
        self.engine.finalize(end_s)
        self.gating.close(end_s)
        facts = RunFacts(
            scenario=self.scenario.name,
            fidelity=self.fidelity,
            seed=self.seed,
            perf_engine=self.scenario.settings.perf_engine,
            engine_settings=self.scenario.settings.engine,
            calibration=self.calibration,
            loads=self.loads,
            engine=self.engine,
            initial_launches=self.initial_launches,
            gating=self.gating,
            load_fractions=None
            if self.fidelity is Fidelity.REQUEST
            else {
                name: peak_load_fraction(self.telemetry.series(name), self.targets[name]) for name in self.service_index
            },
        )
        return summarise(facts, end_s)

    def close(self) -> None:
        if self._records_stream is not None:
            self._records_stream.close()
            self._records_stream = None
        self.journal.close()
