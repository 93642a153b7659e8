"""What topology awareness is worth: the same services placed topology-aware and topology-blind.

A fleet of four big-pods (two all-H800, one H800 + H20 on separate mini-pods, one whose mini-pods
join H800 and H20: a HIGH-priority pool) serves three services at fixed counts, replaying the Azure
traces at request fidelity. Topology-aware = the federated scheduler (DGs inside their affinity
domain, LOW pools first). Topology-blind = what a generic scheduler does: each pod on the next node of
its GPU type, spreading round-robin over the big-pods, ignoring domains and pool priority.

Prints, per placement: the mean KV-transfer bandwidth factor over the P→D pairs that carry traffic
(1.0 = full NIC rate; the loss is 1 − factor), TTFT p50/p99 and SLO attainment, and the GPUs taken in
HIGH-priority pools by services that LOW pools could have served.

    python benchmarks/topology_value.py
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from heteroscale.config.catalog import calibration_for, load_catalog
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.plan import Launch, PlacementPlan
from heteroscale.domain.service import AffinityLevel, ServiceSpec, Slo
from heteroscale.domain.state import ClusterState
from heteroscale.domain.topology import NodeSpec, SubgroupPriority, Topology, shared_level
from heteroscale.scheduling import ServiceDemand, derive_subgroups
from heteroscale.scheduling.subgroups import subgroup_of_s1
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.scenario import LoadKind, LoadSpec, PolicySpec, Scenario, ServiceRun, SimSettings
from heteroscale.sim.traces import bundled_trace_path


def fleet() -> Topology:
    nodes: list[NodeSpec] = []

    def add(s2: str, s1: str, sku: str, count: int) -> None:
        for k in range(count):
            nodes.append(NodeSpec(("vdc", "pc", "lc", s2, s1, f"{s1}-s0", f"{s1}-n{k}"), sku, 8, 8))

    add("s2-h800-a", "s1-a1", "h800", 4)
    add("s2-h800-a", "s1-a2", "h800", 4)
    add("s2-h800-b", "s1-b1", "h800", 4)
    add("s2-h800-b", "s1-b2", "h800", 4)
    add("s2-mixed", "s1-m1", "h800", 4)
    add("s2-mixed", "s1-m2", "h20", 4)
    for s1 in ("s1-x1", "s1-x2"):  # mini-pods that join both types: HIGH priority
        add("s2-joined", s1, "h800", 2)
        add("s2-joined", s1, "h20", 2)
    return Topology(name="topology-value", nodes=tuple(nodes))


def services() -> list[tuple[ServiceSpec, str, int, int]]:
    slo = Slo(ttft_s=2.0, tbt_s=0.1)
    h800 = (InstanceShape(Role.PREFILL, "h800", 4),)
    return [
        (
            ServiceSpec("chat", "llama-3.1-70b", h800, (InstanceShape(Role.DECODE, "h20", 4),), 1.0, slo,
                        priority=2, affinity=AffinityLevel.S2),
            "AzureLLMInferenceTrace_conv.csv", 3, 3,
        ),
        (
            ServiceSpec("code", "llama-3.1-70b", h800, (InstanceShape(Role.DECODE, "h800", 4),), 3.0, slo,
                        priority=1, affinity=AffinityLevel.S2),
            "AzureLLMInferenceTrace_code.csv", 6, 2,
        ),
        (
            ServiceSpec("docs", "qwen3-32b", (InstanceShape(Role.PREFILL, "h800", 2),),
                        (InstanceShape(Role.DECODE, "h800", 2),), 1.0, slo, priority=0, affinity=AffinityLevel.S2),
            "AzureLLMInferenceTrace_code.csv", 3, 3,
        ),
    ]  # fmt: skip


def scenario() -> Scenario:
    cat = load_catalog()
    runs = tuple(
        ServiceRun(
            spec,
            LoadSpec(kind=LoadKind.TRACE, trace_path=bundled_trace_path(trace)),
            PolicySpec(prefill=p, decode=d, name="fixed"),
        )
        for spec, trace, p, d in services()
    )
    return Scenario(
        name="topology-value",
        description="three services on four big-pods, fixed counts",
        services=runs,
        topology=fleet(),
        skus=dict(cat.skus),
        models=dict(cat.models),
        settings=SimSettings(duration_s=3600.0),
    )


def blind_placer(
    demands: Sequence[ServiceDemand], state: ClusterState, topology: Topology, free: dict[str, int]
) -> PlacementPlan:
    """Each pod on the next node of its GPU type, round-robin over big-pods, ignoring domains."""
    free = dict(free)
    by_s2: dict[str, list[NodeSpec]] = {}
    for node in topology.nodes:
        by_s2.setdefault(node.path[3], []).append(node)
    s2s = sorted(by_s2)
    cursor = 0
    launches: list[Launch] = []
    for demand in demands:
        for role, count in ((Role.PREFILL, demand.desired_prefill), (Role.DECODE, demand.desired_decode)):
            shape = demand.spec.preferred_shape(role)
            for _ in range(count):
                for step in range(len(s2s)):
                    s2 = s2s[(cursor + step) % len(s2s)]
                    node = next((n for n in by_s2[s2] if n.sku == shape.sku and free[n.name] >= shape.gpus), None)
                    if node is not None:
                        free[node.name] -= shape.gpus
                        launches.append(Launch(demand.spec.name, role, shape, f"{demand.spec.name}-dg0", node.name))
                        cursor = (cursor + step + 1) % len(s2s)
                        break
    return PlacementPlan(launches=tuple(launches))


def measure(label: str, placer: object | None) -> dict[str, float]:
    sc = scenario()
    run = SimulationRun(sc, calibration_for(sc))
    if placer is not None:
        run.initial_placer = placer  # type: ignore[assignment]
    summary = run.run()
    cluster = run.cluster
    insts = list(cluster.instances.values())
    factors: list[float] = []
    for svc in range(len(sc.services)):
        ps = [i for i in insts if i.svc == svc and i.role is Role.PREFILL]
        ds = [i for i in insts if i.svc == svc and i.role is Role.DECODE]
        factors += [sc.topology.kv_bandwidth.factor(shared_level(p.path, d.path)) for p in ps for d in ds]
    subgroups = derive_subgroups(sc.topology)
    sg_of = subgroup_of_s1(subgroups)
    low_skus = {sku for sg in subgroups if sg.priority is SubgroupPriority.LOW for sku in sg.skus}
    high_gpus = 0
    for inst in insts:
        sg = sg_of[inst.path[:5]]
        if sg.priority is SubgroupPriority.HIGH and inst.shape.sku in low_skus:
            high_gpus += inst.gpus
    mean_factor = sum(factors) / len(factors)
    print(
        f"{label:16s} kv_bandwidth_factor={mean_factor:.3f} kv_bandwidth_lost={1 - mean_factor:.1%} "
        f"ttft_p50_s={summary['ttft_p50_s']:.4f} ttft_p99_s={summary['ttft_p99_s']:.4f} "
        f"slo_attainment={summary['slo_attainment']:.4f} high_priority_gpus_used_needlessly={high_gpus}"
    )
    return {"factor": mean_factor, "ttft_p99": summary["ttft_p99_s"], "high": high_gpus}


def main() -> int:
    aware = measure("topology-aware", None)
    blind = measure("topology-blind", blind_placer)
    print(
        f"difference: kv_bandwidth_lost {1 - blind['factor']:.1%} (blind) vs {1 - aware['factor']:.1%} (aware); "
        f"ttft_p99 +{1000 * (blind['ttft_p99'] - aware['ttft_p99']):.1f} ms blind; "
        f"HIGH-pool GPUs used needlessly {blind['high']} (blind) vs {aware['high']} (aware)"
    )
    return 0 if aware["factor"] >= blind["factor"] and aware["high"] <= blind["high"] else 1


if __name__ == "__main__":
    sys.exit(main())
