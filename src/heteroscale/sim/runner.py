"""Build a scenario's engine, drive it with a controller on each tick, and summarise the run.

Every run ends with a check that it billed no less than the saturation bound of the work it completed
(:mod:`heteroscale.sim.bound`); the bound is in the summary as ``lower_bound``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

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
from heteroscale.sim.fluid_engine import FluidEngine, arrivals_rng
from heteroscale.sim.parts import load_window, raw_curve, shape_source, smoothed_curve
from heteroscale.sim.records import RecordWriter, open_records
from heteroscale.sim.request_engine import RequestEngine
from heteroscale.sim.scenario import Fidelity, LoadKind, LoadSpec, Scenario, ServiceRun
from heteroscale.sim.summary import summarise
from heteroscale.sim.telemetry import Telemetry
from heteroscale.sim.traces import (
    RateCurve,
    RequestTrace,
    generate_poisson,
    merge,
    read_trace,
    superpose,
)
from heteroscale.sim.transforms import scale_lengths

ProgressFn = Callable[[float], None]
# the GPU-mix MILP in a simulation stops at this many branch-and-bound nodes, not at a time limit, so
# that a run repeats exactly on a loaded machine and in parallel (the models solve in far fewer)
MIX_NODE_LIMIT = 10_000


def load_curve(load: LoadSpec, name: str) -> RateCurve:
    """A Poisson load's rate curve: the chosen day, smoothed between window centres."""
    return smoothed_curve(raw_curve(load, name), load)


def build_trace(load: LoadSpec, rng: np.random.Generator, name: str, duration_s: float | None = None) -> RequestTrace:
    """The request list one service sees, from its LoadSpec (seeded), ``start_s`` rebased to 0; the
    sources of ``mixed_with`` are drawn after this one from the same generator and merged in."""
    trace = _source_trace(load, rng, name, duration_s)
    if not load.mixed_with:
        return trace
    parts = [trace, *(_source_trace(part, rng, name, duration_s) for part in load.mixed_with)]
    return merge(parts, name)


def _source_trace(load: LoadSpec, rng: np.random.Generator, name: str, duration_s: float | None) -> RequestTrace:
    source = read_trace(load.trace_path, load.trace_format, skip_bad_rows=load.skip_bad_rows)
    curve = raw_curve(load, name) if load.kind is LoadKind.POISSON else None
    part = load_window(load, source, curve)
    offset_s = 0.0 if part is None else part.start_s
    if curve is not None:
        length_s = None if part is None else part.length_s
        trace = generate_poisson(
            smoothed_curve(curve, load),
            source,
            rng,
            rate_scale=load.rate_scale,
            time_compression=load.time_compression,
            name=name,
            start_s=load.start_s + offset_s,
            duration_s=_shorter(length_s, duration_s),
        )
    else:
        trace = source
        if load.time_compression != 1.0:
            trace = trace.scale_time(load.time_compression)
    if load.copies > 1:
        trace = superpose(trace, load.copies, load.copy_shift_s, name=name)
    if load.start_s > 0 and load.kind is not LoadKind.POISSON:  # Poisson arrivals start there already
        trace = trace.slice_time(load.start_s, math.inf)
    if part is not None and load.kind is not LoadKind.POISSON:
        trace = trace.slice_time(part.start_s, math.inf if part.end_s is None else part.end_s)
    return shape_source(trace, load, rng, offset_s)


def _shorter(a_s: float | None, b_s: float | None) -> float | None:
    return a_s if b_s is None else b_s if a_s is None else min(a_s, b_s)


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
        policies: dict[str, tuple[str, dict[str, object]]] | None = None,
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
        if loads is None:
            loads = []
            for i, run in enumerate(scenario.services):
                rng = np.random.default_rng([self.seed, i])
                if (
                    self.fidelity is Fidelity.FLUID
                    and run.load.kind is LoadKind.POISSON
                    and not run.load.mixed_with
                    and not run.load.rate_steps  # steps act on requests: draw them
                ):
                    loads.append(self._curve_load(run, st.cold_start_s))
                    continue
                trace = build_trace(run.load, rng, run.spec.name, self.duration_s)
                if self.duration_s is not None:
                    trace = trace.slice_time(0.0, self.duration_s, rebase=False)
                loads.append(
                    ServiceLoad(
                        run.spec,
                        trace,
                        ServiceLoad.resolve_cached(trace, run.spec.prefix_cache_hit_rate),
                        st.cold_start_s,
                    )
                )
        self.loads = loads
        self.perfs: dict[tuple[int, InstanceShape], InstancePerf] = {}
        for i, run in enumerate(scenario.services):
            model = scenario.models[run.spec.model]
            for role in Role:
                for shape in run.spec.shapes(role):
                    try:
                        self.perfs[(i, shape)] = build_instance_perf(
                            model, scenario.skus[shape.sku], shape.tp, calibration, st.kv_activation_reserve
                        )
                    except ValueError as exc:
                        raise ConfigError(
                            f"service {run.spec.name}: {role.value} shape {shape.sku} TP{shape.tp}: {exc}"
                        ) from exc
        # each request's least GPU time at saturation: the bound every run is checked against
        self.costs = [
            load_costs(run.spec, loads[i], {s: p for (j, s), p in self.perfs.items() if j == i}, scenario.skus)
            for i, run in enumerate(scenario.services)
        ]
        self.cluster = SimCluster(scenario.topology, scenario.skus, names)
        self.telemetry = Telemetry(names)
        self._records_stream: IO[str] | None = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._records_stream = open_records(out_dir, requests_csv)
        records = RecordWriter(self._records_stream)
        self.engine: Engine
        if self.fidelity is Fidelity.REQUEST:
            self.engine = RequestEngine(
                self.cluster, loads, self.perfs, self.telemetry, records, st.telemetry_window_s, st.engine
            )
        else:
            self.engine = FluidEngine(
                self.cluster,
                loads,
                self.perfs,
                self.telemetry,
                st.telemetry_window_s,
                st.fluid_step_s,
                arrivals_rng(self.seed),
            )
        self.journal = Journal(out_dir / "journal.jsonl" if out_dir is not None else None)
        adapter = SimActuator(self.engine, self.service_index)
        self.targets: dict[str, Targets] = {}
        bindings: list[ServiceBinding] = []
        for i, run in enumerate(scenario.services):
            name, options = (policies or {}).get(run.spec.name, (run.policy.name, run.policy.build_options()))
            given = (targets or {}).get(run.spec.name) or run.targets
            if given is None:
                trace = loads[i].trace
                given = analytic_targets(
                    run.spec,
                    {s.key: p for (j, s), p in self.perfs.items() if j == i},
                    float(trace.input_tokens.mean()) if len(trace) else 1.0,
                    float(trace.output_tokens.mean()) if len(trace) else 1.0,
                )
            self.targets[run.spec.name] = given
            try:
                policy = make_policy(name, options)
            except ValueError as exc:
                raise ConfigError(f"service {run.spec.name}: policy {name}: {exc}") from exc
            mix = mix_settings(run.spec, scenario.skus, st.cold_start_s, node_limit=MIX_NODE_LIMIT)
            bindings.append(ServiceBinding(run.spec, policy, given, mix=mix))
        self.policy_names = {b.spec.name: b.policy.name for b in bindings}
        self.controller = Controller(
            bindings,
            SimMetricSource(self.engine),
            adapter,
            adapter,
            self.journal,
            window_s=max(st.tick_s, st.telemetry_window_s),
            tick_s=st.tick_s,
            readiness=ReadinessSettings(st.ratio_tolerance, st.soft_scale_in_s, st.drain_grace_s),
            budget=scenario.budget,
        )
        self.adapter = adapter
        self.wall_s = 0.0
        self.loop_wall_s = 0.0
        self.initial_launches = 0
        self.peak_gpus_held = 0  # the most GPUs instances held (pending to draining) after any reconcile
        # what places the warm initial deployment (the federated scheduler; a benchmark may swap it)
        self.initial_placer: Callable[[list[ServiceDemand], ClusterState, Topology, dict[str, int]], PlacementPlan] = (
            place
        )

    def _curve_load(self, run: ServiceRun, cold_start_s: float) -> ServiceLoad:
        load = run.load
        lengths = read_trace(load.trace_path, load.trace_format, skip_bad_rows=load.skip_bad_rows)
        curve = raw_curve(load, run.spec.name)
        part = load_window(load, lengths, curve)
        lengths = scale_lengths(lengths, load.lengths)
        return ServiceLoad(
            run.spec,
            lengths,
            ServiceLoad.resolve_cached(lengths, run.spec.prefix_cache_hit_rate),
            cold_start_s,
            rate_curve=smoothed_curve(curve, load),
            rate_scale=load.rate_scale * max(1, load.copies),
            time_compression=load.time_compression,
            duration_s=self.duration_s if part is None else _shorter(part.length_s, self.duration_s),
            curve_start_s=load.start_s + (0.0 if part is None else part.start_s),
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
            # GPUs grow only at a reconcile (launches), so the peak is seen right after one
            self.peak_gpus_held = max(self.peak_gpus_held, self.cluster.gpus_held())
        self.loop_wall_s = loop.elapsed_s()
        end_s = t
        summary = summarise(self, end_s)
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

    def close(self) -> None:
        if self._records_stream is not None:
            self._records_stream.close()
            self._records_stream = None
        self.journal.close()
