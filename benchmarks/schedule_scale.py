"""One federated scheduling cycle (Algorithm 4) at fleet scale, then checks of the plan it produced.

Fleet: ``generate_fleet(seed)`` — ≈12,600 nodes × 8 GPUs (100,800 GPUs), 252 big-pods, a mix of
homogeneous and heterogeneous domains, ~60 % occupied, 1,000 services with existing DGs of which a
third scale out and a sixth scale in. ``cycle_s`` times ``place()`` including the rebuild of the
topological view. Target: ≤ 1.0 s on one core; the process is single-threaded.

Checks, each against an independent brute-force recomputation (node by node) of the free capacity
left after the plan (the residual view) — not against the scheduler's own indexes:

1. affinity: every DG (kept instances + launches) lies inside one domain of its service's level, and
   every DG the plan touched ends at the P/D ratio ±1 pod (or closer to it than it started);
2. unplaced: every entry has a reason naming the constraint (``affinity`` or ``ratio``, and the role's
   SKUs or the word ``DG``), and is really unplaceable in the residual view — no DG of the service
   can take one more pod of that role within the P/D ratio ±1 pod and its domain, and, when both
   roles are short, no other domain has room for one prefill and one decode together;
3. pool order: replaying each service's launches in plan order, no launch went to a HIGH pool while
   its service could still have used a LOW pool (growing a DG that existed then, or a new DG when
   both roles were still wanted) — witnessed by LOW room still left at the end, which is enough
   because capacity only shrinks within a cycle. The same test for any more valuable pool than
   needed is printed as ``pool_order_violations``.

    python benchmarks/schedule_scale.py [--seed N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Mapping

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.plan import Launch, PlacementPlan
from heteroscale.domain.service import AffinityLevel
from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.domain.topology import NodeSpec, SubgroupPriority
from heteroscale.scheduling.federated import place
from heteroscale.scheduling.fleet import Fleet, generate_fleet
from heteroscale.scheduling.groups import RATIO_TOLERANCE_PODS, ROLES, ServiceDemand, imbalance, ratio_gap
from heteroscale.scheduling.subgroups import derive_subgroups, subgroup_of_s1

TARGET_CYCLE_S = 1.0
_DEPTH = {AffinityLevel.S1: 5, AffinityLevel.S2: 4, AffinityLevel.CLUSTER: 3}
_CAPACITY = (Lifecycle.PENDING, Lifecycle.STARTING, Lifecycle.READY)
Top2 = dict[tuple[tuple[str, ...], str], list[int]]  # (domain path, sku) → two largest free counts


class Residual:
    """Free GPUs after the plan, node by node, and the two largest per (domain, SKU) per pool ceiling."""

    def __init__(self, fleet: Fleet, plan: PlacementPlan) -> None:
        self.nodes: dict[str, NodeSpec] = {n.name: n for n in fleet.topology.nodes}
        sg_of = subgroup_of_s1(derive_subgroups(fleet.topology))
        self.tier = {n.name: int(sg_of[n.path[:5]].priority) for n in fleet.topology.nodes}
        free = {n.name: (fleet.free_gpus.get(n.name, n.gpus_free) if n.schedulable else 0) for n in self.nodes.values()}
        for launch in plan.launches:
            free[launch.node] -= launch.shape.gpus
        self.negative = [name for name, f in free.items() if f < 0]
        self.top2: dict[tuple[int, int], Top2] = {}  # (depth, max tier) → top-2 table
        for depth in _DEPTH.values():
            for max_tier in (0, 1, 2):
                table: Top2 = defaultdict(lambda: [0, 0])
                for name, f in free.items():
                    node = self.nodes[name]
                    if self.tier[name] > max_tier or f <= 0:
                        continue
                    top = table[(node.path[:depth], node.sku)]
                    if f > top[0]:
                        top[0], top[1] = f, top[0]
                    elif f > top[1]:
                        top[1] = f
                self.top2[(depth, max_tier)] = table

    def fits(self, depth: int, max_tier: int, domain: tuple[str, ...], shape: InstanceShape) -> bool:
        return self.top2[(depth, max_tier)].get((domain, shape.sku), [0, 0])[0] >= shape.gpus

    def seed_domains(self, depth: int, max_tier: int, demand: ServiceDemand) -> set[tuple[str, ...]]:
        """Domains with room for one prefill and one decode pod together, pools ≤ ``max_tier``."""
        table = self.top2[(depth, max_tier)]
        domains = {dom for dom, _ in table}
        out: set[tuple[str, ...]] = set()
        for dom in domains:
            for p in demand.spec.prefill_shapes:
                for d in demand.spec.decode_shapes:
                    tp = table.get((dom, p.sku), [0, 0])
                    td = table.get((dom, d.sku), [0, 0])
                    if p.sku != d.sku:
                        ok = tp[0] >= p.gpus and td[0] >= d.gpus
                    else:
                        big, small = max(p.gpus, d.gpus), min(p.gpus, d.gpus)
                        ok = tp[0] >= p.gpus + d.gpus or (tp[0] >= big and tp[1] >= small)
                    if ok:
                        out.add(dom)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    fleet = generate_fleet(args.seed)
    gpus = sum(n.gpus_total for n in fleet.topology.nodes)
    used = 1.0 - sum(fleet.free_gpus.values()) / gpus
    big_pods = len({n.path[:4] for n in fleet.topology.nodes})
    outs = sum(1 for d in fleet.demands if _delta(fleet, d, Role.PREFILL) > 0 or _delta(fleet, d, Role.DECODE) > 0)
    ins = sum(1 for d in fleet.demands if _delta(fleet, d, Role.PREFILL) < 0 or _delta(fleet, d, Role.DECODE) < 0)
    print(
        f"fleet: nodes={len(fleet.topology.nodes)} gpus={gpus} big_pods={big_pods} occupied={used:.1%} "
        f"services={len(fleet.demands)} scaling_out={outs} scaling_in={ins} instances={len(fleet.state.instances)}"
    )
    started = time.perf_counter()
    plan = place(fleet.demands, fleet.state, fleet.topology, fleet.free_gpus)
    cycle_s = time.perf_counter() - started
    again = place(fleet.demands, fleet.state, fleet.topology, fleet.free_gpus)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    short = sum(u.count for u in plan.unplaced)
    print(
        f"cycle_s={cycle_s:.3f} launches={len(plan.launches)} removals={len(plan.removals)} "
        f"unplaced={len(plan.unplaced)} unplaced_pods={short} peak_rss_mb={rss_mb:.0f}"
    )
    residual = Residual(fleet, plan)
    tiers = defaultdict(int)
    for launch in plan.launches:
        tiers[SubgroupPriority(residual.tier[launch.node]).label] += 1
    print("launches_by_pool: " + " ".join(f"{k}={tiers[k]}" for k in ("low", "medium", "high")))
    checks = {
        "deterministic": plan == again,
        "no_node_overcommitted": not residual.negative,
        "dgs_inside_affinity_domain": _check_affinity(fleet, plan, residual),
        "touched_dgs_at_ratio": _check_ratio(fleet, plan),
        "unplaced_have_reasons_and_are_unplaceable": _check_unplaced(fleet, plan, residual),
        "no_high_pool_while_low_could_serve": _check_pool_order(fleet, plan, residual),
        f"cycle_s<={TARGET_CYCLE_S}": cycle_s <= TARGET_CYCLE_S,
    }
    for name, ok in checks.items():
        print(f"check {name}: {'ok' if ok else 'FAILED'}")
    return 0 if all(checks.values()) else 1


def _delta(fleet: Fleet, demand: ServiceDemand, role: Role) -> int:
    have = sum(1 for i in _instances(fleet).get(demand.spec.name, []) if i.role is role and i.lifecycle in _CAPACITY)
    return demand.desired(role) - have


_CACHE: dict[int, dict[str, list[InstanceInfo]]] = {}


def _instances(fleet: Fleet) -> dict[str, list[InstanceInfo]]:
    found = _CACHE.get(id(fleet))
    if found is None:
        found = defaultdict(list)
        for inst in fleet.state.instances:
            found[inst.service].append(inst)
        _CACHE[id(fleet)] = found
    return found


def _final_dgs(fleet: Fleet, plan: PlacementPlan) -> dict[str, dict[str, list[tuple[Role, str]]]]:
    """service → DG → (role, node) of every kept capacity instance and every launch."""
    removed = {r.instance_id for r in plan.removals}
    out: dict[str, dict[str, list[tuple[Role, str]]]] = defaultdict(lambda: defaultdict(list))
    for inst in fleet.state.instances:
        if inst.lifecycle in _CAPACITY and inst.id not in removed:
            out[inst.service][inst.dg].append((inst.role, inst.node))
    for launch in plan.launches:
        out[launch.service][launch.dg].append((launch.role, launch.node))
    return out


def _check_affinity(fleet: Fleet, plan: PlacementPlan, residual: Residual) -> bool:
    specs = {d.spec.name: d.spec for d in fleet.demands}
    bad: list[str] = []
    dgs = 0
    for service, groups in _final_dgs(fleet, plan).items():
        depth = _DEPTH[specs[service].affinity]
        for dg, members in groups.items():
            dgs += 1
            domains = {residual.nodes[node].path[:depth] for _, node in members}
            if len(domains) != 1:
                bad.append(f"{dg}: {len(domains)} domains")
    print(f"  affinity: {dgs} DGs checked, {len(bad)} outside their domain {bad[:3]}")
    return not bad


def _check_ratio(fleet: Fleet, plan: PlacementPlan) -> bool:
    """Every DG the plan touched ends at its P/D ratio ±1 pod, or at least closer to it than it was."""
    demands = {d.spec.name: d for d in fleet.demands}
    by_id = {i.id: i for i in fleet.state.instances}
    touched = {(launch.service, launch.dg) for launch in plan.launches}
    touched |= {(by_id[r.instance_id].service, by_id[r.instance_id].dg) for r in plan.removals}
    before: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for inst in fleet.state.instances:
        if inst.lifecycle in _CAPACITY:
            before[inst.dg][inst.role is Role.DECODE] += 1
    final = _final_dgs(fleet, plan)
    bad: list[str] = []
    for service, dg in sorted(touched):
        members = final.get(service, {}).get(dg, [])
        p = sum(1 for role, _ in members if role is Role.PREFILL)
        ratio = demands[service].dg_ratio
        after = imbalance(p, len(members) - p, ratio)
        if after > RATIO_TOLERANCE_PODS + 1e-9 and not after < imbalance(*before[dg], ratio):
            bad.append(f"{dg}: {p}P:{len(members) - p}D at ratio {ratio:.3g}")
    print(f"  ratio: {len(touched)} DGs touched, {len(bad)} off the P/D ratio ±1 pod {bad[:3]}")
    return not bad


def _check_unplaced(fleet: Fleet, plan: PlacementPlan, residual: Residual) -> bool:
    demands = {d.spec.name: d for d in fleet.demands}
    final = _final_dgs(fleet, plan)
    short: dict[str, set[Role]] = defaultdict(set)
    for u in plan.unplaced:
        short[u.service].add(u.role)
    bad: list[str] = []
    for u in plan.unplaced:
        demand = demands[u.service]
        skus = {s.sku for s in demand.spec.shapes(u.role)}
        names_it = ("affinity" in u.reason or "ratio" in u.reason) and (
            any(sku in u.reason for sku in skus) or "DG" in u.reason
        )
        if not u.reason or not names_it or u.count <= 0:
            bad.append(f"{u.service}/{u.role.value}: reason does not name the constraint: {u.reason!r}")
            continue
        depth = _DEPTH[demand.spec.affinity]
        ratio = demand.dg_ratio
        groups = final.get(u.service, {})
        taken = set()
        for dg, members in groups.items():
            p = sum(1 for r, _ in members if r is Role.PREFILL)
            d = len(members) - p
            domain = residual.nodes[members[0][1]].path[:depth]
            taken.add(domain)
            after = ratio_gap(p + (u.role is Role.PREFILL), d + (u.role is Role.DECODE), ratio)
            if after > RATIO_TOLERANCE_PODS + 1e-9 and not after < ratio_gap(p, d, ratio):
                continue
            if any(residual.fits(depth, 2, domain, s) for s in demand.spec.shapes(u.role)):
                bad.append(f"{u.service}/{u.role.value}: {dg} could still take one")
        if len(short[u.service]) == 2 and residual.seed_domains(depth, 2, demand) - taken:
            bad.append(f"{u.service}/{u.role.value}: a new DG still fits")
    print(f"  unplaced: {len(plan.unplaced)} entries checked, {len(bad)} wrong {bad[:3]}")
    return not bad


def _check_pool_order(fleet: Fleet, plan: PlacementPlan, residual: Residual) -> bool:
    """Replay each service's launches; a launch on pool tier t is wrong if a tier < t option still exists."""
    demands = {d.spec.name: d for d in fleet.demands}
    by_service: dict[str, list[Launch]] = defaultdict(list)
    for launch in plan.launches:
        by_service[launch.service].append(launch)
    removed = {r.instance_id for r in plan.removals}
    high_vs_low: list[str] = []
    any_order: list[str] = []
    for service, launches in by_service.items():
        demand = demands[service]
        depth = _DEPTH[demand.spec.affinity]
        counts: dict[str, list[int]] = {}
        domain_of: dict[str, tuple[str, ...]] = {}
        for inst in _instances(fleet).get(service, []):
            if inst.lifecycle in _CAPACITY and inst.id not in removed:
                counts.setdefault(inst.dg, [0, 0])[inst.role is Role.DECODE] += 1
                domain_of.setdefault(inst.dg, residual.nodes[inst.node].path[:depth])
        need = {role: demand.desired(role) - sum(c[role is Role.DECODE] for c in counts.values()) for role in ROLES}
        need = {role: max(0, n) for role, n in need.items()}
        seeds = {t: residual.seed_domains(depth, t, demand) for t in (0, 1)}
        for launch in launches:
            tier = residual.tier[launch.node]
            for lower in range(tier):
                if _had_option(demand, lower, counts, domain_of, need, seeds[lower], residual, depth):
                    any_order.append(f"{service}: {launch.role.value} on tier {tier} with tier {lower} open")
                    if tier == 2 and lower == 0:
                        high_vs_low.append(any_order[-1])
                    break
            counts.setdefault(launch.dg, [0, 0])[launch.role is Role.DECODE] += 1
            domain_of.setdefault(launch.dg, residual.nodes[launch.node].path[:depth])
            need[launch.role] -= 1
    print(
        f"  pools: {sum(len(v) for v in by_service.values())} launches replayed; high_while_low_open="
        f"{len(high_vs_low)} pool_order_violations={len(any_order)} {any_order[:3]}"
    )
    return not high_vs_low


def _had_option(
    demand: ServiceDemand,
    max_tier: int,
    counts: Mapping[str, list[int]],
    domain_of: Mapping[str, tuple[str, ...]],
    need: Mapping[Role, int],
    seeds: set[tuple[str, ...]],
    residual: Residual,
    depth: int,
) -> bool:
    ratio = demand.dg_ratio
    for dg, (p, d) in counts.items():
        for role in ROLES:
            if need[role] <= 0:
                continue
            after = ratio_gap(p + (role is Role.PREFILL), d + (role is Role.DECODE), ratio)
            if after > RATIO_TOLERANCE_PODS + 1e-9 and not after < ratio_gap(p, d, ratio):
                continue
            if any(residual.fits(depth, max_tier, domain_of[dg], s) for s in demand.spec.shapes(role)):
                return True
    both = need[Role.PREFILL] > 0 and need[Role.DECODE] > 0
    return both and bool(seeds - set(domain_of.values()))


if __name__ == "__main__":
    sys.exit(main())
