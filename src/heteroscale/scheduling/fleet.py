"""A generated, seeded fleet for scheduler tests and benchmarks (pure: same seed → same fleet).

Default size: 12,600 nodes × 8 GPUs = 100,800 GPUs in 4 logical clusters of 63 big-pods (S2) each
(252 in all) × 5 mini-pods (S1) × 2 S0s × 5 nodes. Big-pods are ~55 % homogeneous (LOW pools), ~30 % several types on
homogeneous mini-pods (MEDIUM), ~15 % with one or two mini-pods mixing two types (HIGH, plus the rest).
1,000 services of three kinds — one SKU for both roles, prefill and decode on different SKUs with
fallbacks, and strict pairs without fallback — with affinity s2 / s1 / cluster, several TPs, P/D
ratios and priorities, hold existing DGs placed at random in compatible domains; other tenants top
the fleet up to ~60 % occupied. About a third of the services scale out this cycle, a sixth scale in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import AffinityLevel, ServiceSpec, Slo
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle
from heteroscale.domain.topology import NodeSpec, Topology
from heteroscale.scheduling.groups import ServiceDemand

COMPUTE_SKUS = ("h800", "h100-sxm")
MEMORY_SKUS = ("h20", "l20")
ALL_SKUS = COMPUTE_SKUS + MEMORY_SKUS
_RATIOS = ((0.5, (1, 2)), (1.0, (1, 1)), (1.0, (1, 1)), (1.5, (3, 2)), (2.0, (2, 1)), (3.0, (3, 1)))
_DEPTH = {AffinityLevel.S1: 5, AffinityLevel.S2: 4, AffinityLevel.CLUSTER: 3}
_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Fleet:
    topology: Topology
    state: ClusterState
    free_gpus: Mapping[str, int]
    demands: tuple[ServiceDemand, ...]


def generate_fleet(
    seed: int = 0,
    *,
    logical_clusters: int = 4,
    big_pods_per_cluster: int = 63,
    mini_pods_per_big_pod: int = 5,
    nodes_per_mini_pod: int = 10,
    gpus_per_node: int = 8,
    services: int = 1_000,
    occupancy: float = 0.6,
    scale_out_share: float = 1 / 3,
    scale_in_share: float = 1 / 6,
) -> Fleet:
    """The fleet for ``seed``; the defaults give ≈12,500 nodes / 100,000 GPUs and 1,000 services."""
    rng = random.Random(seed)
    nodes = _nodes(
        rng, logical_clusters, big_pods_per_cluster, mini_pods_per_big_pod, nodes_per_mini_pod, gpus_per_node
    )
    topology = Topology(name=f"generated-{seed}", nodes=tuple(nodes))
    free = {n.name: n.gpus_total for n in nodes}
    index = _DomainIndex(nodes)
    specs = [_service(rng, i) for i in range(services)]
    total_gpus = sum(n.gpus_total for n in nodes)
    weights = [rng.lognormvariate(0.0, 0.8) for _ in specs]
    budget_per_weight = 0.95 * occupancy * total_gpus / sum(weights)
    instances: list[InstanceInfo] = []
    for spec, weight in zip(specs, weights, strict=True):
        instances.extend(_existing(rng, spec, weight * budget_per_weight, index, free))
    _background(rng, nodes, free, round(occupancy * total_gpus))
    state = ClusterState(at_s=_DAY_S, instances=tuple(instances))
    return Fleet(
        topology=topology,
        state=state,
        free_gpus=free,
        demands=_demands(rng, specs, instances, scale_out_share, scale_in_share),
    )


def _nodes(
    rng: random.Random, clusters: int, big_pods: int, mini_pods: int, per_mini_pod: int, gpus: int
) -> list[NodeSpec]:
    out: list[NodeSpec] = []
    for c in range(clusters):
        lc = f"lc{c}"
        for b in range(big_pods):
            s2 = f"{lc}-s2-{b:03d}"
            kind = rng.random()
            first, second = rng.sample(ALL_SKUS, 2)
            if kind < 0.55:  # homogeneous big-pod
                s1_skus: list[tuple[str, ...]] = [(first,) for _ in range(mini_pods)]
            elif kind < 0.85:  # several types, homogeneous mini-pods
                s1_skus = [(first,), (second,)]
                s1_skus += [(rng.choice((first, second)),) for _ in range(mini_pods - 2)]
            else:  # one or two mini-pods joining two types
                mixed = rng.choice((1, 1, 2))
                s1_skus = [(first, second) for _ in range(mixed)]
                s1_skus += [(rng.choice((first, second)),) for _ in range(mini_pods - mixed)]
            for m, skus in enumerate(s1_skus):
                s1 = f"{s2}-m{m}"
                for k in range(per_mini_pod):
                    s0 = f"{s1}-t{k * 2 // per_mini_pod}"
                    out.append(
                        NodeSpec(
                            path=("vdc0", f"pc{c // 2}", lc, s2, s1, s0, f"{s1}-n{k}"),
                            sku=skus[k % len(skus)],
                            gpus_total=gpus,
                            gpus_free=gpus,
                        )
                    )
    return out


def _service(rng: random.Random, i: int) -> ServiceSpec:
    kind = rng.random()
    compute, memory = rng.choice(COMPUTE_SKUS), rng.choice(MEMORY_SKUS)
    p_tp, d_tp = rng.choice((4, 4, 8, 2)), rng.choice((4, 4, 2, 8, 1))
    if kind < 0.5:  # one SKU for both roles, perhaps a fallback
        sku = rng.choice(ALL_SKUS)
        alt = rng.choice([s for s in ALL_SKUS if s != sku])
        p_skus = [sku] + ([alt] if rng.random() < 0.6 else [])
        d_skus = [sku] + ([alt] if rng.random() < 0.6 else [])
        affinity = rng.choice((AffinityLevel.S2, AffinityLevel.S2, AffinityLevel.S1, AffinityLevel.CLUSTER))
    elif kind < 0.85:  # P on a compute SKU, D on a memory SKU, with fallbacks
        p_skus = [compute] + ([memory] if rng.random() < 0.3 else [])
        d_skus = [memory] + ([compute] if rng.random() < 0.5 else [])
        affinity = rng.choice((AffinityLevel.S2, AffinityLevel.S2, AffinityLevel.S2, AffinityLevel.CLUSTER))
    else:  # a demanding pair: no fallback, often one mini-pod
        p_skus, d_skus = [compute], [memory]
        affinity = rng.choice((AffinityLevel.S1, AffinityLevel.S1, AffinityLevel.S2))
    ratio, _ = rng.choice(_RATIOS)
    return ServiceSpec(
        name=f"svc-{i:04d}",
        model="llama-3.1-70b",
        prefill_shapes=tuple(InstanceShape(Role.PREFILL, s, p_tp) for s in p_skus),
        decode_shapes=tuple(InstanceShape(Role.DECODE, s, d_tp) for s in d_skus),
        pd_ratio=ratio,
        slo=Slo(ttft_s=2.0, tbt_s=0.1),
        priority=rng.randrange(10),
        affinity=affinity,
    )


class _DomainIndex:
    """Per affinity level and SKU: the domains that have that SKU, and their nodes."""

    def __init__(self, nodes: list[NodeSpec]) -> None:
        self.nodes: dict[tuple[tuple[str, ...], str], list[NodeSpec]] = {}
        self.domains: dict[tuple[AffinityLevel, str], list[tuple[str, ...]]] = {}
        for node in nodes:
            for level, depth in _DEPTH.items():
                key = (node.path[:depth], node.sku)
                if key not in self.nodes:
                    self.nodes[key] = []
                    self.domains.setdefault((level, node.sku), []).append(node.path[:depth])
                self.nodes[key].append(node)

    def both(self, level: AffinityLevel, p_sku: str, d_sku: str) -> list[tuple[str, ...]]:
        with_d = set(self.domains.get((level, d_sku), ()))
        return [d for d in self.domains.get((level, p_sku), ()) if d in with_d]


def _existing(
    rng: random.Random, spec: ServiceSpec, budget_gpus: float, index: _DomainIndex, free: dict[str, int]
) -> list[InstanceInfo]:
    ratio = spec.pd_ratio
    unit = next(u for r, u in _RATIOS if r == ratio)
    p_shape, d_shape = spec.prefill_shapes[0], spec.decode_shapes[0]
    unit_gpus = unit[0] * p_shape.gpus + unit[1] * d_shape.gpus
    n_dgs = 1 if budget_gpus < 48 else 2 if budget_gpus < 160 else 3
    if spec.affinity is AffinityLevel.CLUSTER:
        n_dgs = min(n_dgs, 2)
    domains = index.both(spec.affinity, p_shape.sku, d_shape.sku)
    if not domains:
        return []
    out: list[InstanceInfo] = []
    for k, domain in enumerate(rng.sample(domains, min(n_dgs, len(domains)))):
        units = max(1, round(budget_gpus / n_dgs / unit_gpus))
        dg = f"{spec.name}-dg{k}"
        counts = {Role.PREFILL: 0, Role.DECODE: 0}
        for _ in range(units):  # one batch at the ratio at a time, all of it or nothing
            batch: list[tuple[Role, InstanceShape, str]] = []
            for role, shape, count in ((Role.PREFILL, p_shape, unit[0]), (Role.DECODE, d_shape, unit[1])):
                for _ in range(count):
                    node = _node_with_room(rng, index.nodes[(domain, shape.sku)], free, shape.gpus)
                    if node is None:
                        break
                    free[node] -= shape.gpus
                    batch.append((role, shape, node))
            if len(batch) < unit[0] + unit[1]:
                for _, shape, node in batch:
                    free[node] += shape.gpus
                break
            for role, shape, node in batch:
                out.append(_instance(rng, spec, role, shape, dg, node, f"{dg}-{role.value[0]}{counts[role]}"))
                counts[role] += 1
    return out


def _node_with_room(rng: random.Random, candidates: list[NodeSpec], free: dict[str, int], gpus: int) -> str | None:
    start = rng.randrange(len(candidates))
    for i in range(len(candidates)):
        node = candidates[(start + i) % len(candidates)]
        if free[node.name] >= gpus:
            return node.name
    return None


def _instance(
    rng: random.Random, spec: ServiceSpec, role: Role, shape: InstanceShape, dg: str, node: str, iid: str
) -> InstanceInfo:
    draw = rng.random()
    lifecycle = (
        Lifecycle.READY
        if draw < 0.85
        else Lifecycle.STARTING
        if draw < 0.93
        else Lifecycle.PENDING
        if draw < 0.95
        else Lifecycle.DRAINING
    )
    launched = rng.uniform(0.0, _DAY_S - 600.0)
    return InstanceInfo(
        id=iid,
        service=spec.name,
        role=role,
        shape=shape,
        dg=dg,
        node=node,
        lifecycle=lifecycle,
        in_discovery=lifecycle is Lifecycle.READY,
        launched_at_s=launched,
        ready_at_s=launched + 300.0 if lifecycle in (Lifecycle.READY, Lifecycle.DRAINING) else None,
    )


def _background(rng: random.Random, nodes: list[NodeSpec], free: dict[str, int], target_used: int) -> None:
    """Other tenants' GPUs, until ``target_used`` GPUs of the fleet are in use."""
    used = sum(n.gpus_total for n in nodes) - sum(free.values())
    order = list(range(len(nodes)))
    rng.shuffle(order)
    for i in order:
        if used >= target_used:
            return
        name = nodes[i].name
        take = min(free[name], rng.choice((1, 2, 2, 4, 4, 6, 8)), target_used - used)
        free[name] -= take
        used += take


def _demands(
    rng: random.Random,
    specs: list[ServiceSpec],
    instances: list[InstanceInfo],
    out_share: float,
    in_share: float,
) -> tuple[ServiceDemand, ...]:
    current: dict[tuple[str, Role], int] = {}
    for inst in instances:
        if inst.counts_as_capacity:
            key = (inst.service, inst.role)
            current[key] = current.get(key, 0) + 1
    order = list(range(len(specs)))
    rng.shuffle(order)
    n_out, n_in = round(out_share * len(specs)), round(in_share * len(specs))
    out: list[ServiceDemand] = []
    for rank, i in enumerate(order):
        spec = specs[i]
        p, d = current.get((spec.name, Role.PREFILL), 0), current.get((spec.name, Role.DECODE), 0)
        if rank < n_out:
            d = max(d + 1, math.ceil(d * rng.uniform(1.2, 1.8)))
            p = max(1, round(d * spec.pd_ratio))
        elif n_in > 0 and d > 1:  # scale in the first ``n_in`` of the others that have room to shrink
            n_in -= 1
            d = max(1, math.floor(d * rng.uniform(0.5, 0.8)))
            p = max(1, round(d * spec.pd_ratio))
        out.append(ServiceDemand(spec=spec, desired_prefill=p, desired_decode=d))
    out.sort(key=lambda demand: demand.spec.name)
    return tuple(out)
