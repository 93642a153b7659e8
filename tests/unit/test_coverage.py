"""Metric coverage (policy/coverage.py) and its place in the controller (controller/reconcile.py).

- :func:`judge_coverage` as a table: reporting vs serving instances per role → ok / extrapolated / hold,
  the factor applied to the role's sums, averages untouched;
- :func:`keep_no_scale_in`: the coverage step first; with partial coverage no role below its current
  count, a last step naming what was lifted, and the memory stamps of the blocked scale-in taken back;
- the controller, for every policy: 1 of 3 decode instances reporting a third of the load never scales
  in (and the metric-driven policies hold, saying why); 2 of 3 reporting a rising load scales out by
  extrapolation; the same low load with all instances reporting does scale in (the control).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from heteroscale.config.loader import load_topology
from heteroscale.controller.journal import Journal
from heteroscale.controller.reconcile import Controller, ServiceBinding
from heteroscale.domain.decision import DecisionRecord, Reason, Recommendation, ScalingDecision, Step
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.observation import Observation, RoleSignals
from heteroscale.domain.plan import ActuationResult, PlacementPlan
from heteroscale.domain.service import AffinityLevel, ServiceSpec, Slo
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle
from heteroscale.domain.topology import Topology
from heteroscale.policy.context import PolicyMemory, PolicyResult, RoleCounts, ServiceCounts
from heteroscale.policy.coverage import Coverage, Serving, judge_coverage, keep_no_scale_in, serving_counts
from heteroscale.policy.registry import POLICY_NAMES, TARGET_FREE_POLICIES, make_policy
from tests.unit import policy_builders as pb

P, D = Role.PREFILL, Role.DECODE


def ready(prefill: int, decode: int) -> ServiceCounts:
    return ServiceCounts(prefill=RoleCounts(ready=prefill), decode=RoleCounts(ready=decode))


def serving(prefill: int, decode: int, *, new: tuple[int, int] = (0, 0)) -> dict[Role, Serving]:
    """Serving instances per role, ``new`` of them Ready only within the observation window."""
    return {P: Serving(prefill, prefill - new[0]), D: Serving(decode, decode - new[1])}


def judge(reporting: tuple[int, int], ready_pd: tuple[int, int]) -> Coverage:
    return judge_coverage(seen(*reporting), None, ready(*ready_pd), serving(*ready_pd))


def seen(prefill: int, decode: int, *, decode_tps: float = 3000.0) -> Observation:
    return dataclasses.replace(
        pb.observation(prefill_ready=prefill, decode_ready=decode, decode_tps=decode_tps),
        decode=RoleSignals(
            decode, decode_tps, gpu_util=0.5, sm_activity=0.4, queue_len=6.0, running=30.0, kv_usage=0.3
        ),
    )


# --- judge_coverage: the table ------------------------------------------------------------------

COVERAGE_TABLE = [
    # reporting P, D | serving P, D | new P, D | reason | scale-in allowed | decode factor
    ((3, 3), (3, 3), (0, 0), Reason.COVERAGE_OK, True, 1.0),
    ((4, 5), (3, 3), (0, 0), Reason.COVERAGE_OK, True, 1.0),  # more report (a draining pod): fine
    ((0, 0), (0, 0), (0, 0), Reason.COVERAGE_OK, True, 1.0),  # nothing serves yet
    ((3, 3), (3, 3), (0, 2), Reason.COVERAGE_OK, True, 1.0),  # new ones that already report count
    ((3, 2), (3, 3), (0, 0), Reason.COVERAGE_EXTRAPOLATED, False, 1.5),
    ((3, 2), (3, 4), (0, 0), Reason.COVERAGE_EXTRAPOLATED, False, 2.0),  # exactly half
    ((3, 1), (3, 2), (0, 0), Reason.COVERAGE_EXTRAPOLATED, False, 2.0),
    ((3, 2), (3, 4), (0, 1), Reason.COVERAGE_EXTRAPOLATED, False, 1.5),  # × established ÷ reporting
    ((3, 2), (3, 3), (0, 1), Reason.COVERAGE_PARTIAL, False, 1.0),  # only a just-Ready one is missing
    ((3, 1), (3, 2), (0, 1), Reason.COVERAGE_PARTIAL, False, 1.0),  # after a scale-out 1 → 2
    ((3, 1), (3, 3), (0, 0), Reason.COVERAGE_HOLD, False, None),  # 1 of 3: a guess, hold
    ((3, 1), (3, 3), (0, 2), Reason.COVERAGE_HOLD, False, None),  # also when 2 of the 3 are new
    ((3, 0), (3, 3), (0, 0), Reason.COVERAGE_HOLD, False, None),
    ((0, 3), (1, 3), (0, 0), Reason.COVERAGE_HOLD, False, None),  # prefill alone short is enough
    ((1, 3), (3, 3), (0, 0), Reason.COVERAGE_HOLD, False, None),
]


@pytest.mark.parametrize(("reporting", "serving_pd", "new", "reason", "scale_in", "factor"), COVERAGE_TABLE)
def test_judge_coverage_table(
    reporting: tuple[int, int],
    serving_pd: tuple[int, int],
    new: tuple[int, int],
    reason: Reason,
    scale_in: bool,
    factor: float | None,
) -> None:
    obs = seen(*reporting)
    verdict = judge_coverage(obs, None, ready(*serving_pd), serving(*serving_pd, new=new))
    assert verdict.step.reason is reason and verdict.scale_in_allowed is scale_in
    assert (verdict.step.prefill, verdict.step.decode) == serving_pd  # the step stands at current counts
    assert f"decode {reporting[1]} of {serving_pd[1]} serving instance(s) report" in verdict.step.detail
    if factor is None:
        assert verdict.observation is None and verdict.hold
        assert verdict.error is not None and "partial metric coverage" in verdict.error
        assert "no scale-in until more report" in verdict.step.detail
        return
    assert verdict.observation is not None and not verdict.hold
    got, raw = verdict.observation.decode, obs.decode
    assert got.tps == pytest.approx(raw.tps * factor)  # type: ignore[operator]
    assert got.queue_len == pytest.approx(6.0 * factor) and got.running == pytest.approx(30.0 * factor)
    assert (got.gpu_util, got.sm_activity, got.kv_usage) == (raw.gpu_util, raw.sm_activity, raw.kv_usage)
    assert verdict.observation.tbt_p90_s == obs.tbt_p90_s
    if reason is Reason.COVERAGE_OK:
        assert verdict.observation is obs
    elif factor == 1.0:
        assert got == raw and "became Ready within the window, not extrapolated" in verdict.step.detail
    else:
        established = serving_pd[1] - new[1]
        assert got.instances_ready == established
        assert f"sums × {established}/{reporting[1]}" in verdict.step.detail


def test_serving_counts_ready_in_discovery_and_established_since_the_window() -> None:
    def inst(i: int, role: Role, lifecycle: Lifecycle, in_discovery: bool, ready_at_s: float | None) -> InstanceInfo:
        shape = PREFILL_SHAPE if role is P else DECODE_SHAPE
        return InstanceInfo(f"i{i}", "svc", role, shape, "dg0", "n", lifecycle, in_discovery, 0.0, ready_at_s)

    instances = [
        inst(0, D, Lifecycle.READY, True, 50.0),
        inst(1, D, Lifecycle.READY, True, 100.0),  # Ready exactly at the window's start: established
        inst(2, D, Lifecycle.READY, True, 100.5),  # Ready inside the window: serving, not established
        inst(3, D, Lifecycle.READY, False, 10.0),  # held out of discovery: serves nothing
        inst(4, D, Lifecycle.STARTING, False, None),
        inst(5, D, Lifecycle.DRAINING, False, 10.0),
        inst(6, P, Lifecycle.READY, True, None),  # no Ready time known: counts
    ]
    assert serving_counts(instances, 100.0) == {P: Serving(1, 1), D: Serving(3, 2)}


def test_no_observation_passes_the_error_through() -> None:
    verdict = judge_coverage(None, "prometheus http://p:9090: time-out", ready(3, 3), serving(3, 3))
    assert verdict.step.reason is Reason.COVERAGE_OK and verdict.scale_in_allowed
    assert verdict.observation is None and verdict.error == "prometheus http://p:9090: time-out"


# --- keep_no_scale_in -----------------------------------------------------------------------------


def result(current: tuple[int, int], desired: tuple[int, int], memory: PolicyMemory) -> PolicyResult:
    step = Step("bounds", *desired, Reason.WITHIN_BOUNDS)
    decision = ScalingDecision("svc", *current, *desired, (step,))
    return PolicyResult(Recommendation("svc", *desired, Reason.PROPORTIONAL), decision, memory)


def test_partial_coverage_lifts_a_scale_in_and_takes_its_stamp_back() -> None:
    before = PolicyMemory(last_scale_out_s=100.0, values=(("decode.last_scale_out_s", 100.0),))
    stamped = PolicyMemory(
        last_scale_out_s=1000.0,
        last_scale_in_s=1000.0,
        last_direction=0,
        values=(
            ("decode.last_scale_in_s", 1000.0),
            ("decode.last_scale_out_s", 100.0),
            ("prefill.last_scale_out_s", 1000.0),
            ("x", 1.0),
        ),
    )  # fmt: skip
    verdict = judge((3, 2), (3, 3))
    out = keep_no_scale_in(verdict, result((3, 3), (4, 2), stamped), before, 1000.0)
    d = out.decision
    assert (d.desired_prefill, d.desired_decode) == (4, 3)
    assert d.steps[0] is verdict.step and d.steps[-1].reason is Reason.COVERAGE_NO_SCALE_IN
    assert "decode 2→3" in d.steps[-1].detail and "prefill" not in d.steps[-1].detail.split("(")[0]
    m = out.memory
    assert m.last_scale_in_s is None and m.last_scale_out_s == 1000.0 and m.last_direction == 1
    assert dict(m.values) == {"decode.last_scale_out_s": 100.0, "prefill.last_scale_out_s": 1000.0, "x": 1.0}


@pytest.mark.parametrize(
    ("reporting", "desired"),
    [((3, 3), (2, 2)), ((3, 2), (4, 5)), ((3, 2), (3, 3))],  # allowed, or nothing to lift
)
def test_nothing_is_lifted_when_allowed_or_not_scaling_in(reporting: tuple[int, int], desired: tuple[int, int]) -> None:
    memory = PolicyMemory(last_scale_in_s=5.0)
    original = result((3, 3), desired, memory)
    out = keep_no_scale_in(judge(reporting, (3, 3)), original, PolicyMemory(), 9.0)
    assert (out.decision.desired_prefill, out.decision.desired_decode) == desired
    assert out.decision.steps[1:] == original.decision.steps and out.memory is memory


# --- the controller, every policy ------------------------------------------------------------------

PREFILL_SHAPE = InstanceShape(P, "l40s", 2)
DECODE_SHAPE = InstanceShape(D, "a100-80g", 1)
SPEC = ServiceSpec(
    name="svc",
    model="llama-3.1-8b",
    prefill_shapes=(PREFILL_SHAPE,),
    decode_shapes=(DECODE_SHAPE,),
    pd_ratio=1.0,
    slo=Slo(ttft_s=2.0, tbt_s=0.1),
    affinity=AffinityLevel.S2,
    max_prefill=16,
    max_decode=16,
)
TARGETS = pb.targets(
    prefill_tps_per_instance=((PREFILL_SHAPE.key, 10_000.0),), decode_tps_per_instance=((DECODE_SHAPE.key, 1000.0),)
)


@dataclass
class StaticCluster:
    """Three Ready prefill and three Ready decode instances in discovery; plans are recorded, not applied."""

    topo: Topology = field(default_factory=lambda: load_topology("small-mixed"))
    plans: list[PlacementPlan] = field(default_factory=list)

    def snapshot(self, now_s: float) -> ClusterState:
        instances = [
            InstanceInfo(f"svc-{role.value}-{i}", "svc", role, shape, "dg0", node, Lifecycle.READY, True, 0.0, 1.0)
            for role, shape, node in ((P, PREFILL_SHAPE, "l40s-1"), (D, DECODE_SHAPE, "a100-1"))
            for i in range(3)
        ]
        return ClusterState(now_s, tuple(instances))

    def free_gpus(self) -> dict[str, int]:
        return {n.name: n.gpus_total for n in self.topo.nodes}

    def topology(self) -> Topology:
        return self.topo

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        self.plans.append(plan)
        return ActuationResult()


@dataclass
class PartialScrape:
    """Three decode instances each carry ``per_instance_tps``; only ``reporting`` of them are scraped."""

    reporting: int
    per_instance_tps: float
    utilisation: float = 0.1

    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        scraped = self.per_instance_tps * self.reporting
        util = self.utilisation
        return Observation(
            service=service,
            window_start_s=now_s - window_s,
            window_end_s=now_s,
            prefill=RoleSignals(3, 2.0 * scraped, gpu_util=util, sm_activity=util),
            decode=RoleSignals(self.reporting, scraped, gpu_util=util, sm_activity=util, kv_usage=0.1),
            ttft_p50_s=0.1, ttft_p90_s=0.2, ttft_p99_s=0.3, tbt_p50_s=0.01, tbt_p90_s=0.02, tbt_p99_s=0.03,
            requests_per_s=scraped / 200.0, mean_input_tokens=2000.0, mean_output_tokens=200.0,
        )  # fmt: skip


def decide(policy_name: str, metrics: PartialScrape, ticks: int = 3) -> list[DecisionRecord]:
    options: dict[str, object] = {"prefill": 1, "decode": 1} if policy_name in TARGET_FREE_POLICIES else {}
    binding = ServiceBinding(SPEC, make_policy(policy_name, options), TARGETS)
    cluster = StaticCluster()
    journal = Journal(keep=True)
    controller = Controller([binding], metrics, cluster, cluster, journal, tick_s=30.0)
    for k in range(1, ticks + 1):
        controller.reconcile_once(10_000.0 + 30.0 * k)
    return journal.records


def desired(record: DecisionRecord) -> tuple[int, int]:
    return record.decision.desired_prefill, record.decision.desired_decode


@pytest.mark.parametrize("policy_name", POLICY_NAMES)
def test_one_of_three_reporting_never_scales_in_and_says_why(policy_name: str) -> None:
    records = decide(policy_name, PartialScrape(reporting=1, per_instance_tps=100.0))
    for record in records:
        assert desired(record) >= (3, 3) and min(desired(record)) >= 3, record.decision.steps
        first = record.decision.steps[0]
        assert first.reason is Reason.COVERAGE_HOLD and "decode 1 of 3 serving instance(s) report" in first.detail
        assert record.observation["decode"]["instances_ready"] == 1  # the journal keeps what was read
    if policy_name not in TARGET_FREE_POLICIES:  # a metric-driven policy holds, naming the coverage
        assert all(r.recommendation.reason is Reason.HOLD_MISSING for r in records)
        assert all("partial metric coverage" in r.decision.steps[1].detail for r in records)


@pytest.mark.parametrize("policy_name", POLICY_NAMES)
def test_two_of_three_reporting_a_low_load_never_scales_in(policy_name: str) -> None:
    for record in decide(policy_name, PartialScrape(reporting=2, per_instance_tps=100.0)):
        assert record.decision.desired_prefill >= 3 and record.decision.desired_decode >= 3, record.decision.steps
        assert record.decision.steps[0].reason is Reason.COVERAGE_EXTRAPOLATED


@pytest.mark.parametrize("policy_name", ["heteroscale", "hpa", "independent-tps", "signal:decode-tps"])
def test_the_same_low_load_fully_reported_scales_in(policy_name: str) -> None:
    """The control: the load above is a scale-in when every instance reports (within twelve ticks:
    heteroscale first observes for its 300 s scale-in stabilisation window after start-up)."""
    records = decide(policy_name, PartialScrape(reporting=3, per_instance_tps=100.0), ticks=12)
    assert all(r.decision.steps[0].reason is Reason.COVERAGE_OK for r in records)
    assert any(r.decision.desired_decode < 3 for r in records)


def test_two_of_three_reporting_a_rising_load_scales_out_by_extrapolation() -> None:
    # 1500 tok/s per instance: 2 report 3000 (3 D at 1000 each: no move); × 3/2 = 4500 → 5 D
    (record,) = decide("heteroscale", PartialScrape(reporting=2, per_instance_tps=1500.0, utilisation=0.9), ticks=1)
    assert record.decision.steps[0].reason is Reason.COVERAGE_EXTRAPOLATED
    assert record.decision.desired_decode == 5 and record.decision.desired_prefill == 5
    (unextrapolated,) = decide("heteroscale", PartialScrape(reporting=3, per_instance_tps=1000.0), ticks=1)
    assert unextrapolated.decision.desired_decode == 3  # what 3000 tok/s read as-is would have said
