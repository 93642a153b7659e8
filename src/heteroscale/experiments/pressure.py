"""Pressure test (Algorithm 1's PressureTest): the load at a service's SLO knee, and the targets.

A small fixed cluster of the service (D decode instances and round(r·D) prefill instances, all in one
mini-pod so topology does not interfere) is driven by Poisson arrivals whose lengths are resampled
from the service's own load. Bisection finds the highest request rate at which the run still meets
the SLO (attainment ≥ 0.99 and p90 TTFT / TBT within the SLO). Every target a policy uses — decode and
prefill TPS per instance, GPU utilisation and SM activity per role, latency thresholds, the
SLA-feasible request rate per instance — is the value measured at that knee times one margin.

A service whose SLO no probe meets — the bisection's, then loads an eighth as high, and an eighth of that,
down to a probe of ``MIN_PROBE_REQUESTS`` requests — has no knee: the test stops with
:class:`~heteroscale.errors.SloUnreachable` naming the service, its SLO and the best latency reached.
A test whose highest probe still met the SLO found only a lower estimate of the knee: it says so in a
warning and in ``knee_is_lower_estimate``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import AffinityLevel, ServiceSpec
from heteroscale.domain.topology import NodeSpec, Topology
from heteroscale.errors import SloUnreachable
from heteroscale.experiments.parallel import ProgressFn, Step
from heteroscale.perf import Calibration, InstancePerf, build_instance_perf
from heteroscale.policy.context import Targets
from heteroscale.policy.targets import decode_itl_profile
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.runner import SimulationRun, build_trace
from heteroscale.sim.scenario import Fidelity, LoadKind, LoadSpec, PolicySpec, Scenario, ServiceRun, SimSettings
from heteroscale.sim.traces import RequestTrace, read_trace
from heteroscale.sim.transforms import scale_lengths

logger = logging.getLogger(__name__)

SLO_ATTAINMENT = 0.99
DEFAULT_MARGIN = 0.75
AMPLE = 4  # role-wise knees: the role that must not be the bottleneck gets this many times its count
MIN_PROBE_REQUESTS = 10  # a probe with fewer requests than this says little about a 99 % attainment


@dataclass(frozen=True, slots=True)
class KneePoint:
    """What one pressure-test run measured."""

    rate_rps: float
    slo_attainment: float
    ttft_p90_s: float
    tbt_p90_s: float
    prefill_tps: float  # total over the prefill instances
    decode_tps: float
    prefill_gpu_util: float
    decode_gpu_util: float
    prefill_sm_activity: float
    decode_sm_activity: float
    meets_slo: bool
    prefill_queue_per_instance: float = 0.0  # waiting prefill requests per ready instance, window mean
    decode_running_per_instance: float = 0.0  # running decode requests per ready instance, window mean


@dataclass(frozen=True, slots=True)
class RoleKnees:
    """Role-wise knees: ``prefill`` on P and AMPLE·D instances, ``decode`` on AMPLE·P and D."""

    prefill: KneePoint
    decode: KneePoint


@dataclass(frozen=True, slots=True)
class PressureResult:
    service: str
    prefill: int
    decode: int
    knee: KneePoint
    probes: tuple[KneePoint, ...]
    targets: Targets
    role_knees: RoleKnees | None = None

    @property
    def knee_is_lower_estimate(self) -> bool:
        """Every probe met the SLO: the knee lies somewhere above the highest one."""
        return upper_bracket_met(self.probes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "cluster": {"prefill": self.prefill, "decode": self.decode},
            "knee": dataclasses.asdict(self.knee),
            "knee_is_lower_estimate": self.knee_is_lower_estimate,
            "probes": len(self.probes),
            "targets": dataclasses.asdict(self.targets),
        } | ({"role_knees": dataclasses.asdict(self.role_knees)} if self.role_knees is not None else {})


def length_mix(run: ServiceRun, duration_s: float | None = None, seed: int = 0) -> RequestTrace:
    """The request lengths of a service's load (the trace it replays or resamples, its length scales
    applied). A mixed load's are those of the whole load over the run (each source in proportion to
    its requests)."""
    if run.load.mixed_with:
        return build_trace(run.load, np.random.default_rng([seed, 20_000]), run.spec.name, duration_s)
    source = read_trace(run.load.trace_path, run.load.trace_format, skip_bad_rows=run.load.skip_bad_rows)
    return scale_lengths(source, run.load.lengths)


def _test_topology(spec: ServiceSpec, prefill: int, decode: int) -> Topology:
    nodes: list[NodeSpec] = []
    need: dict[str, int] = {}
    for role, count in ((Role.PREFILL, prefill), (Role.DECODE, decode)):
        for shape in spec.shapes(role):
            need[shape.sku] = need.get(shape.sku, 0) + count * shape.gpus
    for sku, gpus in sorted(need.items()):
        for k in range(math.ceil(gpus / 8) + 1):
            nodes.append(NodeSpec(("vdc", "pc", "lc", "s2", "s1", "s0", f"{sku}-{k}"), sku, 8, 8))
    return Topology(name="pressure-test", nodes=tuple(nodes))


def _probe(
    base: Scenario,
    spec: ServiceSpec,
    mix: RequestTrace,
    prefill: int,
    decode: int,
    rate_rps: float,
    duration_s: float,
    calibration: Calibration,
    seed: int,
) -> KneePoint:
    rng = np.random.default_rng([seed, int(rate_rps * 1000)])
    n = int(rng.poisson(rate_rps * duration_s))
    arrival = np.sort(rng.uniform(0.0, duration_s, n))
    rows = rng.integers(0, len(mix), n)
    trace = RequestTrace(
        name="pressure",
        arrival_s=arrival,
        input_tokens=mix.input_tokens[rows],
        output_tokens=mix.output_tokens[rows],
        cached_tokens=None if mix.cached_tokens is None else mix.cached_tokens[rows],
    )
    test_spec = dataclasses.replace(spec, affinity=AffinityLevel.CLUSTER, min_prefill=0, min_decode=0)
    run = ServiceRun(
        spec=test_spec,
        load=LoadSpec(kind=LoadKind.TRACE, trace_path="<pressure>"),
        policy=PolicySpec(prefill=prefill, decode=decode),
    )
    scenario = dataclasses.replace(
        base,
        name=f"pressure-{spec.name}",
        services=(run,),
        topology=_test_topology(spec, prefill, decode),
        settings=SimSettings(fidelity=Fidelity.REQUEST, duration_s=None, seed=seed, max_tail_s=600.0),
    )
    load = ServiceLoad(test_spec, trace, ServiceLoad.resolve_cached(trace, spec.prefix_cache_hit_rate), 0.0)
    sim = SimulationRun(scenario, calibration, loads=[load])
    s = sim.run()
    rows_p90 = [r for r in sim.telemetry.series(spec.name) if r.completions]
    ttft90 = _weighted(rows_p90, "ttft_p90_s")
    tbt90 = _weighted(rows_p90, "tbt_p90_s")
    att = s["slo_attainment"] or 0.0
    sim_s = max(1e-9, float(s["simulated_s"]))
    series = sim.telemetry.series(spec.name)
    return KneePoint(
        rate_rps=rate_rps,
        slo_attainment=att,
        ttft_p90_s=ttft90,
        tbt_p90_s=tbt90,
        prefill_tps=float(s["avg_tps_by_role"]["prefill"] or 0.0) * sim_s / duration_s,
        decode_tps=float(s["avg_tps_by_role"]["decode"] or 0.0) * sim_s / duration_s,
        prefill_gpu_util=float(s["avg_gpu_util_by_role"]["prefill"] or 0.0),
        decode_gpu_util=float(s["avg_gpu_util_by_role"]["decode"] or 0.0),
        prefill_sm_activity=float(s["avg_sm_activity_by_role"]["prefill"] or 0.0),
        decode_sm_activity=float(s["avg_sm_activity_by_role"]["decode"] or 0.0),
        meets_slo=att >= SLO_ATTAINMENT and ttft90 <= spec.slo.ttft_s and tbt90 <= spec.slo.tbt_s,
        prefill_queue_per_instance=_per_instance(series, Role.PREFILL, "queue_len_mean"),
        decode_running_per_instance=_per_instance(series, Role.DECODE, "running_mean"),
    )


def _per_instance(rows: list[Any], role: Role, key: str) -> float:
    """Mean over the windows with ready instances of a role's ``key`` ÷ its ready instances."""
    values = [
        (getattr(r.role(role), key) or 0.0) / r.role(role).instances_ready for r in rows if r.role(role).instances_ready
    ]
    return sum(values) / len(values) if values else 0.0


def upper_bracket_met(probes: Sequence[KneePoint]) -> bool:
    """Whether even the highest load probed met the SLO (the knee is then only a lower estimate)."""
    return bool(probes) and all(p.meets_slo for p in probes)


def _unreachable(spec: ServiceSpec, prefill: int, decode: int, probes: Sequence[KneePoint]) -> SloUnreachable:
    def excess(p: KneePoint) -> tuple[float, float]:
        return max(p.ttft_p90_s / spec.slo.ttft_s, p.tbt_p90_s / spec.slo.tbt_s), -p.slo_attainment

    best = min(probes, key=excess)
    return SloUnreachable(
        f"pressure test of service {spec.name}: no load meets its SLO (TTFT p90 ≤ {spec.slo.ttft_s:g} s, "
        f"TBT p90 ≤ {spec.slo.tbt_s:g} s, attainment ≥ {SLO_ATTAINMENT:.0%}) on {prefill}P/{decode}D; the best "
        f"probe ({best.rate_rps:.3g} req/s) reached TTFT p90 {best.ttft_p90_s:.3g} s, TBT p90 "
        f"{best.tbt_p90_s:.3g} s, attainment {best.slo_attainment:.1%}"
    )


def _weighted(rows: list[Any], key: str) -> float:
    pairs = [(getattr(r, key), r.completions) for r in rows if getattr(r, key) is not None]
    total = sum(c for _, c in pairs)
    return sum(v * c for v, c in pairs) / total if total else 0.0


def analytic_capacity_rps(spec: ServiceSpec, perf_p: InstancePerf, perf_d: InstancePerf, mix: RequestTrace) -> float:
    """A first bracket for the bisection: request rate one P/D pair sustains by the perf model alone."""
    mean_in = float(mix.input_tokens.mean())
    mean_out = float(mix.output_tokens.mean())
    prefill_rps = 1.0 / perf_p.prefill_time_s(int(mean_in), mean_in * mean_in)
    batch = 1
    for b in range(1, spec.max_decode_batch + 1):
        if perf_d.decode_step_time_s(b, int(b * (mean_in + mean_out / 2))) > spec.slo.tbt_s:
            break
        batch = b
    step = perf_d.decode_step_time_s(batch, int(batch * (mean_in + mean_out / 2)))
    decode_rps = batch / step / max(1.0, mean_out)
    return max(0.01, min(prefill_rps / max(spec.pd_ratio, 1e-9), decode_rps))


def find_knee(
    scenario: Scenario,
    spec: ServiceSpec,
    calibration: Calibration,
    prefill: int,
    decode: int,
    mix: RequestTrace,
    *,
    duration_s: float = 600.0,
    iterations: int = 8,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> tuple[KneePoint, tuple[KneePoint, ...]]:
    """Bisect for the highest request rate that ``prefill`` P + ``decode`` D instances serve within SLO.

    Raises :class:`SloUnreachable` when no probe meets the SLO (a knee of 0 req/s)."""
    model = scenario.models[spec.model]
    shape_p, shape_d = spec.preferred_shape(Role.PREFILL), spec.preferred_shape(Role.DECODE)
    reserve = scenario.settings.kv_activation_reserve
    perf_p = build_instance_perf(model, scenario.skus[shape_p.sku], shape_p.tp, calibration, reserve)
    perf_d = build_instance_perf(model, scenario.skus[shape_d.sku], shape_d.tp, calibration, reserve)
    guess = analytic_capacity_rps(dataclasses.replace(spec, pd_ratio=prefill / decode), perf_p, perf_d, mix) * decode
    probes: list[KneePoint] = []
    lo, hi = 0.0, guess * 1.5
    best: KneePoint | None = None

    def tell(rate_rps: float, remaining: int) -> None:
        # probes so far + those left (this one included): exact unless the bracket or a lower load needs more
        total = len(probes) + remaining
        logger.info("pressure test %s: probe %d of %d at %.3g req/s", spec.name, len(probes) + 1, total, rate_rps)
        if progress is not None:
            progress(Step(f"{spec.name}: probe at {rate_rps:.3g} req/s", len(probes), total, phase="pressure test"))

    for _ in range(6):  # make sure hi is infeasible
        tell(hi, 1 + iterations)
        point = _probe(scenario, spec, mix, prefill, decode, hi, duration_s, calibration, seed)
        probes.append(point)
        if not point.meets_slo:
            break
        best, lo, hi = point, hi, hi * 2.0
    for k in range(iterations):
        mid = 0.5 * (lo + hi)
        tell(mid, iterations - k)
        point = _probe(scenario, spec, mix, prefill, decode, mid, duration_s, calibration, seed)
        probes.append(point)
        if point.meets_slo:
            best, lo = point, mid
        else:
            hi = mid
    if best is None:  # every probe missed: look lower, down to a near-idle load, before giving up
        best, lo, hi = _below(scenario, spec, mix, prefill, decode, probes, duration_s, calibration, seed)
        for k in range(iterations if best is not None else 0):
            mid = 0.5 * (lo + hi)
            tell(mid, iterations - k)
            point = _probe(scenario, spec, mix, prefill, decode, mid, duration_s, calibration, seed)
            probes.append(point)
            if point.meets_slo:
                best, lo = point, mid
            else:
                hi = mid
    if best is None:
        raise _unreachable(spec, prefill, decode, probes)
    return best, tuple(probes)


def _below(
    scenario: Scenario,
    spec: ServiceSpec,
    mix: RequestTrace,
    prefill: int,
    decode: int,
    probes: list[KneePoint],
    duration_s: float,
    calibration: Calibration,
    seed: int,
) -> tuple[KneePoint | None, float, float]:
    """Probe at an eighth of the lowest load so far, again and again while a probe still holds at least
    ``MIN_PROBE_REQUESTS`` requests: the first that meets the SLO and the rate above it, else None."""
    rate = min(p.rate_rps for p in probes)
    while rate / 8.0 * duration_s >= MIN_PROBE_REQUESTS:
        rate /= 8.0
        point = _probe(scenario, spec, mix, prefill, decode, rate, duration_s, calibration, seed)
        probes.append(point)
        if point.meets_slo:
            return point, rate, rate * 8.0
    return None, 0.0, rate


def pressure_test(
    scenario: Scenario,
    service: str,
    calibration: Calibration,
    *,
    decode: int = 4,
    ratio: float | None = None,
    margin: float = DEFAULT_MARGIN,
    duration_s: float = 600.0,
    iterations: int = 8,
    seed: int = 0,
    mix: RequestTrace | None = None,
    role_wise: bool | None = None,
    progress: ProgressFn | None = None,
) -> PressureResult:
    """Find the SLO knee of ``service`` on ``decode`` D and round(r·D) P instances, and its targets.

    ``role_wise`` (default: the scenario's ``role_wise_targets``): each shape's per-instance TPS target
    comes from a knee where that shape's role alone is the bottleneck (the other role ×``AMPLE``), one
    knee per allowed shape, not from the balanced knee (where the role that is not the bottleneck reads
    below its capacity) nor from the preferred shape scaled by the performance model (which misses
    that a slower GPU meets a latency SLO at a lower load). A policy that
    sizes each role from its own demand (the adaptive ratio) needs these; the other targets still
    come from the balanced knee."""
    run = next(r for r in scenario.services if r.spec.name == service)
    spec = run.spec
    r = spec.pd_ratio if ratio is None else ratio
    prefill = max(1, round(r * decode))
    mix = mix if mix is not None else length_mix(run, scenario.settings.duration_s, seed)
    best, probes = find_knee(
        scenario, spec, calibration, prefill, decode, mix, duration_s=duration_s, iterations=iterations, seed=seed,
        progress=progress,
    )  # fmt: skip
    if upper_bracket_met(probes):
        logger.warning(
            "pressure test of service %s: the highest load probed (%.3g req/s on %dP/%dD) still met the SLO; "
            "the knee and the targets are only a lower estimate",
            spec.name,
            max(p.rate_rps for p in probes),
            prefill,
            decode,
        )
    role_knees: RoleKnees | None = None
    measured: dict[str, float] = {}
    if scenario.settings.role_wise_targets if role_wise is None else role_wise:
        knees: dict[Role, KneePoint] = {}
        for role in Role:
            for k, shape in enumerate(spec.shapes(role)):
                alone = _with_preferred(spec, shape)
                p_test, d_test = (prefill, decode * AMPLE) if role is Role.PREFILL else (prefill * AMPLE, decode)
                knee, more = find_knee(
                    scenario, alone, calibration, p_test, d_test, mix, duration_s=duration_s, iterations=iterations,
                    seed=seed, progress=progress,
                )  # fmt: skip
                probes = (*probes, *more)
                if k == 0:
                    knees[role] = knee
                tps = knee.prefill_tps / prefill if role is Role.PREFILL else knee.decode_tps / decode
                measured[shape.key] = tps * margin
        role_knees = RoleKnees(knees[Role.PREFILL], knees[Role.DECODE])
    perfs = perf_by_shape(scenario, spec, calibration)
    targets = targets_from_knee(spec, best, prefill, decode, margin, perfs, mix, role_knees)
    if measured:  # every shape's own knee rather than the preferred shape's scaled by the perf model
        targets = dataclasses.replace(
            targets,
            prefill_tps_per_instance=tuple((s.key, measured[s.key]) for s in spec.shapes(Role.PREFILL)),
            decode_tps_per_instance=tuple((s.key, measured[s.key]) for s in spec.shapes(Role.DECODE)),
        )
    return PressureResult(spec.name, prefill, decode, best, probes, targets, role_knees)


def _with_preferred(spec: ServiceSpec, shape: InstanceShape) -> ServiceSpec:
    """``spec`` with ``shape`` first (preferred) in its role, the others after it."""
    rest = tuple(s for s in spec.shapes(shape.role) if s != shape)
    if shape.role is Role.PREFILL:
        return dataclasses.replace(spec, prefill_shapes=(shape, *rest))
    return dataclasses.replace(spec, decode_shapes=(shape, *rest))


def perf_by_shape(scenario: Scenario, spec: ServiceSpec, calibration: Calibration) -> dict[InstanceShape, InstancePerf]:
    model = scenario.models[spec.model]
    out: dict[InstanceShape, InstancePerf] = {}
    for role in Role:
        for shape in spec.shapes(role):
            out[shape] = build_instance_perf(
                model, scenario.skus[shape.sku], shape.tp, calibration, scenario.settings.kv_activation_reserve
            )
    return out


def targets_from_knee(
    spec: ServiceSpec,
    knee: KneePoint,
    prefill: int,
    decode: int,
    margin: float,
    perfs: dict[InstanceShape, InstancePerf],
    mix: RequestTrace,
    role_knees: RoleKnees | None = None,
) -> Targets:
    """Targets = knee values × margin; other shapes of a role scale by the performance model's ratio.
    With ``role_knees`` the per-instance TPS targets come from the role-wise knees."""
    mean_in = float(mix.input_tokens.mean())
    mean_out = float(mix.output_tokens.mean())
    d_pref = spec.preferred_shape(Role.DECODE)
    p_pref = spec.preferred_shape(Role.PREFILL)
    d_tps = knee.decode_tps / decode * margin
    p_tps = knee.prefill_tps / prefill * margin
    source = f"pressure-test: knee {knee.rate_rps:.2f} req/s on {prefill}P/{decode}D"
    if role_knees is not None:
        d_tps = role_knees.decode.decode_tps / decode * margin
        p_tps = role_knees.prefill.prefill_tps / prefill * margin
        source += (
            f"; role-wise TPS: prefill knee {role_knees.prefill.rate_rps:.2f} req/s on {prefill}P/{decode * AMPLE}D, "
            f"decode knee {role_knees.decode.rate_rps:.2f} req/s on {prefill * AMPLE}P/{decode}D"
        )
    batch = max(1, round(knee.decode_tps / decode * knee.tbt_p90_s)) if knee.tbt_p90_s > 0 else 1
    ctx = int(batch * (mean_in + mean_out / 2))
    d_ref = perfs[d_pref].decode_step_time_s(batch, ctx)
    p_ref = perfs[p_pref].prefill_time_s(int(mean_in), mean_in * mean_in)
    decode_tps = tuple(
        (s.key, d_tps * d_ref / perfs[s].decode_step_time_s(batch, ctx)) for s in spec.shapes(Role.DECODE)
    )
    prefill_tps = tuple(
        (s.key, p_tps * p_ref / perfs[s].prefill_time_s(int(mean_in), mean_in * mean_in))
        for s in spec.shapes(Role.PREFILL)
    )
    floor_s, per_request_s, per_kv_s = decode_itl_profile(perfs[d_pref], spec.max_decode_batch, mean_in + mean_out / 2)
    return Targets(
        decode_tps_per_instance=decode_tps,
        prefill_tps_per_instance=prefill_tps,
        prefill_gpu_util=knee.prefill_gpu_util * margin,
        decode_gpu_util=knee.decode_gpu_util * margin,
        prefill_sm_activity=knee.prefill_sm_activity * margin,
        decode_sm_activity=knee.decode_sm_activity * margin,
        ttft_s=knee.ttft_p90_s * margin if knee.ttft_p90_s > 0 else spec.slo.ttft_s * margin,
        tbt_s=knee.tbt_p90_s * margin if knee.tbt_p90_s > 0 else spec.slo.tbt_s * margin,
        requests_per_s_per_prefill=knee.rate_rps / prefill * margin,
        requests_per_s_per_decode=knee.rate_rps / decode * margin,
        mean_input_tokens=mean_in,
        mean_output_tokens=mean_out,
        margin=margin,
        source=source,
        prefill_queue_per_instance=knee.prefill_queue_per_instance * margin,
        decode_batch_util=knee.decode_running_per_instance / max(1, spec.max_decode_batch) * margin,
        prefill_s_per_input_token=p_ref / max(1.0, mean_in),
        decode_itl_floor_s=floor_s,
        decode_itl_s_per_request=per_request_s,
        decode_itl_s_per_kv_token=per_kv_s,
        decode_kv_capacity_tokens=float(perfs[d_pref].kv_capacity_tokens),
    )
