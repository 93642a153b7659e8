"""Fakes for unit tests of the controller loop and its journal: a cluster, metrics, a scripted policy and
a journal whose disk is full. Each is a fake (in memory, deterministic), named so."""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from heteroscale.controller.journal import DurableJournal, JournalSettings, MemoryFold
from heteroscale.controller.reconcile import Controller, ServiceBinding
from heteroscale.domain.decision import Reason, Recommendation, Step
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.plan import ActuationResult, PlacementPlan
from heteroscale.domain.service import AffinityLevel, ServiceSpec, Slo
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle
from heteroscale.domain.topology import Topology
from heteroscale.policy.context import PolicyContext, PolicyResult
from heteroscale.policy.normalize import PD
from heteroscale.policy.outcome import conclude
from tests.support import builders
from tests.unit import policy_builders as pb

SHAPE_P = InstanceShape(Role.PREFILL, "h100-sxm", 4)
SHAPE_D = InstanceShape(Role.DECODE, "h100-sxm", 4)


def chat_spec() -> ServiceSpec:
    return ServiceSpec(
        name="chat",
        model="llama-3.1-70b",
        prefill_shapes=(SHAPE_P,),
        decode_shapes=(SHAPE_D,),
        pd_ratio=1.0,
        slo=Slo(ttft_s=2.0, tbt_s=0.1),
        affinity=AffinityLevel.CLUSTER,
        max_prefill=16,
        max_decode=16,
    )


@dataclass
class FakeCluster:
    """ClusterStateSource, Actuator and ``finish_drains``: a launch is Ready at once, a removal gone at once.
    ``applies`` counts actuator calls, ``writes`` the instances launched or removed."""

    topo: Topology = field(default_factory=builders.topology)
    instances: dict[str, InstanceInfo] = field(default_factory=dict)
    applies: int = 0
    writes: int = 0
    drains_finished: int = 0
    serial: itertools.count[int] = field(default_factory=itertools.count)

    def snapshot(self, now_s: float) -> ClusterState:
        return ClusterState(now_s, tuple(self.instances.values()))

    def free_gpus(self) -> dict[str, int]:
        used: dict[str, int] = {}
        for inst in self.instances.values():
            used[inst.node] = used.get(inst.node, 0) + inst.shape.gpus
        return {n.name: n.gpus_total - used.get(n.name, 0) for n in self.topo.nodes}

    def topology(self) -> Topology:
        return self.topo

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        self.applies += 1
        launched = []
        for launch in plan.launches:
            inst_id = f"{launch.service}-{launch.role.value}-{next(self.serial)}"
            self.instances[inst_id] = InstanceInfo(
                inst_id, launch.service, launch.role, launch.shape, launch.dg, launch.node,
                Lifecycle.READY, in_discovery=True, launched_at_s=now_s, ready_at_s=now_s,
            )  # fmt: skip
            launched.append(inst_id)
        removed = [r.instance_id for r in plan.removals if self.instances.pop(r.instance_id, None) is not None]
        self.writes += len(launched) + len(removed)
        return ActuationResult(tuple(launched), tuple(removed))

    def finish_drains(self, now_s: float) -> ActuationResult:
        self.drains_finished += 1
        return ActuationResult()

    def count(self, role: Role) -> int:
        return sum(1 for i in self.instances.values() if i.role is role)


class FakeMetrics:
    """A MetricSource that always answers with a healthy observation."""

    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        return pb.observation(service=service, window_start_s=now_s - window_s, window_end_s=now_s)


@dataclass
class CooldownPolicy:
    """A fake policy: wants ``wants(now_s)`` counts unless a scale-out happened less than ``cooldown_s``
    ago (read from its memory, as the real policies do); stamps its actions into memory."""

    wants: Callable[[float], tuple[int, int]]
    cooldown_s: float = 300.0
    name: str = "cooldown-fake"

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        current = PD(ctx.counts.prefill.capacity, ctx.counts.decode.capacity)
        want = PD(*self.wants(ctx.now_s))
        rec = Recommendation(ctx.spec.name, want.prefill, want.decode, Reason.FIXED_COUNT, "")
        last = ctx.memory.last_scale_out_s
        out = want.prefill > current.prefill or want.decode > current.decode
        if out and last is not None and ctx.now_s - last < self.cooldown_s:
            step = Step("cooldown", current.prefill, current.decode, Reason.COOLDOWN_OUT, f"{last:g}")
        else:
            step = Step("wants", want.prefill, want.decode, Reason.COOLDOWN_CLEAR)
        return conclude(ctx, rec, (step,))


def cooldown_binding(wants: Callable[[float], tuple[int, int]], cooldown_s: float = 300.0) -> ServiceBinding:
    return ServiceBinding(chat_spec(), CooldownPolicy(wants, cooldown_s), pb.targets())


def controller(binding: ServiceBinding, cluster: object, journal: object) -> Controller:
    return Controller([binding], FakeMetrics(), cluster, cluster, journal, tick_s=30.0)  # type: ignore[arg-type]


class FullDiskJournal(DurableJournal):
    """A fake durable journal whose disk is full while ``full`` is set: writes fail with ENOSPC."""

    def __init__(self, path: Path, settings: JournalSettings | None = None) -> None:
        settings = settings or JournalSettings()
        super().__init__(path, settings, MemoryFold(settings.window_s))
        self.full = False

    def _emit(self, data: bytes) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device (fake)")
        super()._emit(data)
