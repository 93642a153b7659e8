"""The controller with a GPU budget and the cost-aware GPU mix (controller/reconcile.py, controller/mixing.py).

- ``reconcile_once`` against a fake cluster (launches hold their GPUs at once and are Ready after a cold
  start; removals drain, then are gone) and scripted policies: under a binding budget the GPUs held by
  instances that are not gone never exceed it after any cycle, the higher priority keeps its capacity
  (``budget-ok``, or a deferral while the lower one's GPUs drain), the lower priority is cut with a
  reason naming the higher one, and every decision's desired counts are its ``budget`` step's; without
  a budget there is no ``budget`` step;
- a ``gpu_mix: cost`` service: a growing decision gets a ``gpu-mix`` step and the cheapest instances;
- :func:`choose_mix` on its own: growth adds the cheapest per token, shrinking removes the dearest per
  token first, a held role keeps its shapes, nothing to mix → None;
- the ``budget`` section of a scenario file: errors, SKU aliases, the resolved config;
- the simulator's wiring of the budget (a short run of a test-size scenario).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from heteroscale.config.loader import load_topology
from heteroscale.controller.journal import Journal
from heteroscale.controller.mixing import MixSettings
from heteroscale.controller.readiness import ReadinessSettings
from heteroscale.controller.reconcile import Controller, ServiceBinding
from heteroscale.domain.decision import DecisionRecord, Reason, Recommendation, ScalingDecision, Step
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.plan import ActuationResult, PlacementPlan
from heteroscale.domain.service import AffinityLevel, GpuMix, ServiceSpec, Slo
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle, ScaleInMode
from heteroscale.domain.topology import Topology
from heteroscale.policy.context import PolicyContext, PolicyResult, Targets
from heteroscale.scheduling.budget import GpuBudget
from tests.unit import policy_builders as pb

P, D = Role.PREFILL, Role.DECODE
TICK_S = 30.0

# --- fakes ----------------------------------------------------------------------------------


@dataclass
class FakeCluster:
    """A ClusterStateSource and Actuator: a launch holds its GPUs at once (STARTING) and is Ready
    ``start_s`` later; a drain-mode removal keeps its GPUs (DRAINING) for ``drain_s``, then is gone."""

    topo: Topology
    start_s: float = 60.0
    drain_s: float = 60.0
    instances: dict[str, InstanceInfo] = field(default_factory=dict)
    removed_at: dict[str, float] = field(default_factory=dict)
    free: dict[str, int] = field(init=False)
    serial: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.free = {n.name: n.gpus_total for n in self.topo.nodes}

    def advance(self, now_s: float) -> None:
        for inst in list(self.instances.values()):
            if inst.lifecycle is Lifecycle.STARTING and now_s >= inst.launched_at_s + self.start_s:
                self.instances[inst.id] = dataclasses.replace(
                    inst, lifecycle=Lifecycle.READY, in_discovery=True, ready_at_s=now_s
                )
            elif inst.lifecycle is Lifecycle.DRAINING and now_s >= self.removed_at[inst.id] + self.drain_s:
                self._gone(inst)

    def _gone(self, inst: InstanceInfo) -> None:
        del self.instances[inst.id]
        self.free[inst.node] += inst.shape.gpus

    # ClusterStateSource

    def snapshot(self, now_s: float) -> ClusterState:
        self.advance(now_s)
        return ClusterState(now_s, tuple(self.instances.values()))

    def free_gpus(self) -> dict[str, int]:
        return dict(self.free)

    def topology(self) -> Topology:
        return self.topo

    # Actuator

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        launched: list[str] = []
        errors: list[str] = []
        for launch in plan.launches:
            if self.free[launch.node] < launch.shape.gpus:
                errors.append(f"launch {launch.service} on {launch.node}: no room")
                continue
            inst_id = f"{launch.service}-{launch.role.value}-{next(self.serial)}"
            self.free[launch.node] -= launch.shape.gpus
            self.instances[inst_id] = InstanceInfo(
                inst_id, launch.service, launch.role, launch.shape, launch.dg, launch.node,
                Lifecycle.STARTING, in_discovery=False, launched_at_s=now_s,
            )  # fmt: skip
            launched.append(inst_id)
        removed: list[str] = []
        for removal in plan.removals:
            inst = self.instances.get(removal.instance_id)
            if inst is None or inst.lifecycle is Lifecycle.DRAINING:
                continue
            removed.append(inst.id)
            if removal.mode is ScaleInMode.KILL:
                self._gone(inst)
            else:
                self.instances[inst.id] = dataclasses.replace(inst, lifecycle=Lifecycle.DRAINING, in_discovery=False)
                self.removed_at[inst.id] = now_s
        changed: list[str] = []
        for change in plan.discovery:
            if change.instance_id in self.instances:
                inst = self.instances[change.instance_id]
                self.instances[inst.id] = dataclasses.replace(inst, in_discovery=change.in_discovery)
                changed.append(inst.id)
        return ActuationResult(tuple(launched), tuple(removed), tuple(changed), tuple(errors))

    # what the tests read

    def held_gpus(self) -> int:
        return sum(i.shape.gpus for i in self.instances.values() if i.lifecycle is not Lifecycle.GONE)

    def held_by_sku(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for i in self.instances.values():
            if i.lifecycle is not Lifecycle.GONE:
                out[i.shape.sku] += i.shape.gpus
        return out

    def fleet(self, service: str, *lifecycles: Lifecycle) -> Counter[str]:
        """Instances of ``service`` per shape key (optionally only in ``lifecycles``)."""
        return Counter(
            i.shape.key
            for i in self.instances.values()
            if i.service == service and (not lifecycles or i.lifecycle in lifecycles)
        )


class FakeMetrics:
    """A MetricSource that always answers with a healthy observation (latency well within the SLO)."""

    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        return pb.observation(service=service, window_start_s=now_s - window_s, window_end_s=now_s)


@dataclass
class ScriptedPolicy:
    """A policy whose desired counts are a function of time (the sizing is not what these tests are about)."""

    wants: Callable[[float], tuple[int, int]]
    name: str = "scripted"

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        prefill, decode = self.wants(ctx.now_s)
        step = Step("scripted", prefill, decode, Reason.FIXED_COUNT, f"{prefill}P {decode}D at {ctx.now_s:g} s")
        decision = ScalingDecision(
            ctx.spec.name, ctx.counts.prefill.capacity, ctx.counts.decode.capacity, prefill, decode, (step,)
        )
        recommendation = Recommendation(ctx.spec.name, prefill, decode, Reason.FIXED_COUNT)
        return PolicyResult(recommendation, decision, ctx.memory)


# --- builders -------------------------------------------------------------------------------


def service(
    name: str,
    priority: int = 0,
    prefill: Sequence[tuple[str, int]] = (("l40s", 2),),
    decode: Sequence[tuple[str, int]] = (("a100-80g", 1),),
    **overrides: Any,
) -> ServiceSpec:
    """A service on the ``small-mixed`` topology (L40S and A100 share big-pod s2-a)."""
    base: dict[str, Any] = {
        "name": name,
        "model": "llama-3.1-8b",
        "prefill_shapes": tuple(InstanceShape(P, sku, tp) for sku, tp in prefill),
        "decode_shapes": tuple(InstanceShape(D, sku, tp) for sku, tp in decode),
        "pd_ratio": 1.0,
        "slo": Slo(ttft_s=2.0, tbt_s=0.1),
        "priority": priority,
        "affinity": AffinityLevel.S2,
        "max_prefill": 16,
        "max_decode": 16,
    }
    base.update(overrides)
    return ServiceSpec(**base)


def targets_for(spec: ServiceSpec, tps: Mapping[str, float] | None = None) -> Targets:
    """Targets with a tok/s value for every shape of ``spec`` (``tps`` by shape key, else 1000)."""
    tps = tps or {}
    table = {role: tuple((s.key, tps.get(s.key, 1000.0)) for s in spec.shapes(role)) for role in (P, D)}
    return pb.targets(prefill_tps_per_instance=table[P], decode_tps_per_instance=table[D])


def binding(
    spec: ServiceSpec, wants: Callable[[float], tuple[int, int]], mix: MixSettings | None = None, **tps: float
) -> ServiceBinding:
    return ServiceBinding(spec, ScriptedPolicy(wants), targets_for(spec, tps or None), mix=mix)


def constant(prefill: int, decode: int) -> Callable[[float], tuple[int, int]]:
    return lambda now_s: (prefill, decode)


def until(t_s: float, before: tuple[int, int], after: tuple[int, int]) -> Callable[[float], tuple[int, int]]:
    """Wants ``before`` until ``t_s``, then ``after``."""
    return lambda now_s: before if now_s < t_s else after


@dataclass
class Run:
    cluster: FakeCluster
    records: list[DecisionRecord]
    held_after_tick: list[int]  # GPUs held by instances that are not gone, right after each cycle
    held_by_sku_after_tick: list[Counter[str]]

    def of(self, service: str) -> list[DecisionRecord]:
        return [r for r in self.records if r.service == service]


def run_loop(
    bindings: list[ServiceBinding],
    budget: GpuBudget | None,
    ticks: int = 20,
    readiness: ReadinessSettings | None = None,
) -> Run:
    """Reconcile every ``TICK_S`` from an empty cluster; the GPUs held are read right after each cycle."""
    cluster = FakeCluster(load_topology("small-mixed"))
    journal = Journal(keep=True)
    controller = Controller(
        bindings, FakeMetrics(), cluster, cluster, journal, tick_s=TICK_S, readiness=readiness, budget=budget
    )
    held: list[int] = []
    by_sku: list[Counter[str]] = []
    for k in range(1, ticks + 1):
        controller.reconcile_once(k * TICK_S)
        held.append(cluster.held_gpus())
        by_sku.append(cluster.held_by_sku())
    return Run(cluster, journal.records, held, by_sku)


def steps(record: DecisionRecord, name: str) -> list[Step]:
    return [s for s in record.decision.steps if s.name == name]


def desired(record: DecisionRecord) -> tuple[int, int]:
    return record.decision.desired_prefill, record.decision.desired_decode


# GPUs: chat P = L40S TP2 (2), D = A100 TP1 (1); batch P = L40S TP1 (1), D = A100 TP2 (2)
CHAT = service("chat", priority=10)
BATCH = service("batch", priority=0, prefill=(("l40s", 1),), decode=(("a100-80g", 2),))
BUDGET_GPUS = 20
BUDGET = GpuBudget(total_gpus=BUDGET_GPUS)
GROW_AT_S = 150.0
# chat 2P2D (6 GPUs) grows to 5P5D (15) at 150 s; batch wants 4P4D (12) throughout: 18 → 27 > 20
CHAT_GROWS = until(GROW_AT_S, (2, 2), (5, 5))
BATCH_STEADY = constant(4, 4)


def gpus(spec: ServiceSpec, prefill: int, decode: int) -> int:
    return prefill * spec.preferred_shape(P).gpus + decode * spec.preferred_shape(D).gpus


# --- the budget in the reconcile loop ---------------------------------------------------------


@pytest.fixture(scope="module")
def chat_grows() -> Run:
    return run_loop([binding(CHAT, CHAT_GROWS), binding(BATCH, BATCH_STEADY)], BUDGET)


def test_the_timeline_needs_more_than_the_budget_without_one() -> None:
    """The control for the tests below: the same wants without a budget exceed it (and no budget step)."""
    assert gpus(CHAT, 5, 5) + gpus(BATCH, 4, 4) > BUDGET_GPUS
    for budget in (None, GpuBudget()):
        run = run_loop([binding(CHAT, CHAT_GROWS), binding(BATCH, BATCH_STEADY)], budget)
        assert max(run.held_after_tick) == gpus(CHAT, 5, 5) + gpus(BATCH, 4, 4)
        assert run.records and all(not steps(r, "budget") for r in run.records)
        assert all(desired(r) == (5, 5) for r in run.of("chat") if r.at_s >= GROW_AT_S)


def test_gpus_held_never_exceed_the_budget_after_any_cycle(chat_grows: Run) -> None:
    assert len(chat_grows.held_after_tick) == 20
    assert max(chat_grows.held_after_tick) <= BUDGET_GPUS
    assert max(chat_grows.held_after_tick) == BUDGET_GPUS  # it binds: every GPU ends up used


def test_every_decision_has_one_budget_step_and_ends_at_its_counts(chat_grows: Run) -> None:
    assert len(chat_grows.records) == 2 * 20
    for record in chat_grows.records:
        (step,) = steps(record, "budget")
        assert record.decision.steps[-1] is step
        assert step.reason in (Reason.BUDGET_OK, Reason.BUDGET_CUT)
        assert desired(record) == (step.prefill, step.decode)


def test_before_it_binds_both_services_are_ok_with_the_summary(chat_grows: Run) -> None:
    early = [r for r in chat_grows.records if r.at_s < GROW_AT_S]
    assert {r.service for r in early} == {"chat", "batch"}
    for record in early:
        (step,) = steps(record, "budget")
        assert step.reason is Reason.BUDGET_OK
        assert step.detail.startswith("GPU budget (total 20): held ") and step.detail.endswith("does not bind")


def test_the_low_priority_is_cut_and_its_reason_names_the_high_priority(chat_grows: Run) -> None:
    late = [r for r in chat_grows.of("batch") if r.at_s >= GROW_AT_S]
    assert late
    for record in late:
        (step,) = steps(record, "budget")
        assert step.reason is Reason.BUDGET_CUT
        assert step.detail.startswith("batch (priority 0): steady-state cut from 4P:4D to 2P:1D")
        assert "granted ahead of it to chat (priority 10)" in step.detail
    # 20 − chat's 15 leaves 5: 2P:2D would need 6, so batch keeps 2P:1D (4 GPUs, at its ratio ±1)
    assert "5 left, 2P:2D would need 6" in step.detail
    assert chat_grows.cluster.fleet("batch", Lifecycle.READY) == {"prefill:l40s:tp1": 2, "decode:a100-80g:tp2": 1}


def test_the_high_priority_keeps_its_capacity_and_waits_only_for_draining_gpus(chat_grows: Run) -> None:
    chat = chat_grows.of("chat")
    cut = [r for r in chat if steps(r, "budget")[0].reason is Reason.BUDGET_CUT]
    # while batch's GPUs drain, chat's launches are deferred — never its steady-state grant
    assert cut, "the timeline should make chat wait for batch's GPUs at least once"
    for record in cut:
        detail = steps(record, "budget")[0].detail
        assert detail.startswith("chat (priority 10): deferral: of the steady-state 5P:5D only ")
        assert "steady-state cut" not in detail
        assert "waits for GPUs to drain from batch (priority 0)" in detail
    assert all(r.at_s < GROW_AT_S + chat_grows.cluster.drain_s + TICK_S for r in cut)
    # once they have drained: ok, with all it asked for
    assert all(steps(r, "budget")[0].reason is Reason.BUDGET_OK for r in chat[-5:])
    assert all(desired(r) == (5, 5) for r in chat[-5:])
    assert chat_grows.cluster.fleet("chat", Lifecycle.READY) == {"prefill:l40s:tp2": 5, "decode:a100-80g:tp1": 5}


def test_with_soft_scale_in_the_cut_instances_still_leave_and_the_budget_holds() -> None:
    # batch's cut instances first leave discovery for 60 s (still holding their GPUs), then drain
    readiness = ReadinessSettings(soft_scale_in_s=60.0)
    run = run_loop([binding(CHAT, CHAT_GROWS), binding(BATCH, BATCH_STEADY)], BUDGET, readiness=readiness)
    assert max(run.held_after_tick) <= BUDGET_GPUS
    assert all(desired(r) == (5, 5) and steps(r, "budget")[0].reason is Reason.BUDGET_OK for r in run.of("chat")[-5:])
    assert run.cluster.fleet("chat", Lifecycle.READY) == {"prefill:l40s:tp2": 5, "decode:a100-80g:tp1": 5}
    assert run.cluster.fleet("batch") == {"prefill:l40s:tp1": 2, "decode:a100-80g:tp2": 1}


def test_a_high_priority_that_fits_is_never_cut() -> None:
    run = run_loop([binding(CHAT, constant(5, 5)), binding(BATCH, BATCH_STEADY)], BUDGET, ticks=8)
    assert max(run.held_after_tick) <= BUDGET_GPUS
    for record in run.of("chat"):
        (step,) = steps(record, "budget")
        assert (step.reason, desired(record)) == (Reason.BUDGET_OK, (5, 5))
        assert "; cut batch 4P:4D→2P:1D" in step.detail
    for record in run.of("batch"):
        (step,) = steps(record, "budget")
        assert (step.reason, desired(record)) == (Reason.BUDGET_CUT, (2, 1))
        assert "chat (priority 10)" in step.detail


def test_a_per_sku_cap_counts_only_that_skus_gpus() -> None:
    budget = GpuBudget(by_sku=(("a100-80g", 9),))
    run = run_loop([binding(CHAT, CHAT_GROWS), binding(BATCH, BATCH_STEADY)], budget)
    assert max(held["a100-80g"] for held in run.held_by_sku_after_tick) == 9
    assert max(run.held_after_tick) > 9  # the L40S GPUs do not count
    # A100: chat's 5 decode of TP1 leave 4: batch keeps 2 decode of TP2 and, as the L40S are not capped,
    # the largest fleet at its ratio ±1 with 2 decode: 3P:2D
    assert run.cluster.fleet("batch", Lifecycle.READY) == {"prefill:l40s:tp1": 3, "decode:a100-80g:tp2": 2}
    assert all(desired(r) == (5, 5) for r in run.of("chat")[-3:])
    for record in run.of("batch")[-3:]:
        (step,) = steps(record, "budget")
        assert step.reason is Reason.BUDGET_CUT and desired(record) == (3, 2)
        assert "by the a100-80g budget of 9 GPUs" in step.detail and "chat (priority 10)" in step.detail


# --- the cost-aware mix in the reconcile loop --------------------------------------------------

# decode on H100 (listed first: the preferred shape) or A100, the same tok/s each: A100 costs less
MIXED = service(
    "mixed",
    decode=(("h100-sxm", 1), ("a100-80g", 1)),
    affinity=AffinityLevel.CLUSTER,
    gpu_mix=GpuMix.COST,
)
MIX_COSTS = MixSettings((("l40s", 1.0), ("a100-80g", 1.0), ("h100-sxm", 3.0)), time_limit_s=5.0)
MIX_TPS = {"prefill:l40s:tp2": 4000.0, "decode:h100-sxm:tp1": 1000.0, "decode:a100-80g:tp1": 1000.0}


@pytest.mark.parametrize("budget", [None, GpuBudget(total_gpus=40)], ids=["no-budget", "loose-budget"])
def test_a_growing_decision_gets_the_cheapest_instances_and_a_gpu_mix_step(budget: GpuBudget | None) -> None:
    # 1P2D, decode grows to 4 at 120 s
    mixed = ServiceBinding(
        MIXED, ScriptedPolicy(until(120.0, (1, 2), (1, 4))), targets_for(MIXED, MIX_TPS), mix=MIX_COSTS
    )
    run = run_loop([mixed], budget, ticks=8)
    grew = [r for r in run.records if r.decision.desired_decode > r.decision.current_decode]
    assert len(grew) == 2  # from 0 at 30 s, and at 120 s
    for record in grew:
        (step,) = steps(record, "gpu-mix")
        assert step.reason is Reason.GPU_MIX
        assert "mix milp" in step.detail or "greedy" in step.detail
        # the demand is the capacity wanted: the policy's decode count × 1000 tok/s
        assert step.detail.startswith("demand ") and f"decode {1000 * step.decode:,} tok/s" in step.detail
        assert desired(record) == (1, 2 if record.at_s < 120.0 else 4)
        if budget is None:
            assert desired(record) == (step.prefill, step.decode)
        else:
            (ok,) = steps(record, "budget")
            assert ok.reason is Reason.BUDGET_OK and (ok.prefill, ok.decode) == (step.prefill, step.decode)
    # the preference order would have launched H100s (listed first); the mix launches only A100s
    assert run.cluster.fleet("mixed") == {"prefill:l40s:tp2": 1, "decode:a100-80g:tp1": 4}
    assert all(not steps(r, "gpu-mix") for r in run.records if r not in grew)  # holds: no mix step
