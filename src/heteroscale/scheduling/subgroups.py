"""RDMA subgroups and their priority, derived from the topology (HETEROSCALE.md §3).

Rules, per big-pod (S2), over the GPU types of *all* its nodes (schedulable or not — the wiring does
not change when a node is cordoned):

- LOW: the S2's GPUs are all one type. The whole S2 is one pool.
- MEDIUM: the S2 has several types but every S1 is homogeneous. The whole S2 is one pool.
- HIGH: an S1 that itself joins different types. That S1 is a pool of its own; the remaining S1s of
  its S2 (all homogeneous) form one more pool, named ``<s2>/rest``, whose priority follows the same
  rules applied to them alone (one type → LOW, several → MEDIUM). A big-pod made only of mixed S1s
  has no rest pool.

Overrides (``Topology.subgroup_priority``): an S2 path makes the whole big-pod one pool with the
given priority (its mixed S1s are not split out); an S1 path makes that mini-pod a pool of its own
with the given priority (even a homogeneous one, e.g. to reserve it). With both, the S1 is split out
and the rest of the S2 takes the S2's override.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from heteroscale.domain.topology import Level, RdmaSubgroup, SubgroupPriority, Topology

_S1 = int(Level.S1) + 1
_S2 = int(Level.S2) + 1


def derive_subgroups(topology: Topology) -> tuple[RdmaSubgroup, ...]:
    """Every RDMA subgroup of ``topology`` in topology order (S2 by S2), each with its priority and reason."""
    s2_order: list[tuple[str, ...]] = []
    s1s_of: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    skus_of: dict[tuple[str, ...], list[str]] = {}  # S1 path → SKUs in first-seen order
    for node in topology.nodes:
        s2 = node.path[:_S2]
        s1 = node.path[:_S1]
        if s2 not in s1s_of:
            s2_order.append(s2)
            s1s_of[s2] = []
        if s1 not in skus_of:
            s1s_of[s2].append(s1)
            skus_of[s1] = []
        if node.sku not in skus_of[s1]:
            skus_of[s1].append(node.sku)
    overrides = dict(topology.subgroup_priority)
    out: list[RdmaSubgroup] = []
    for s2 in s2_order:
        out.extend(_split_s2(s2, s1s_of[s2], skus_of, overrides))
    return tuple(out)


def subgroup_of_s1(subgroups: Sequence[RdmaSubgroup]) -> dict[tuple[str, ...], RdmaSubgroup]:
    """S1 path → the subgroup that holds it."""
    return {s1: sg for sg in subgroups for s1 in sg.s1s}


def priority_counts(subgroups: Sequence[RdmaSubgroup]) -> dict[SubgroupPriority, int]:
    """How many subgroups of each priority (every priority present, possibly 0)."""
    counts = dict.fromkeys(SubgroupPriority, 0)
    for sg in subgroups:
        counts[sg.priority] += 1
    return counts


def _split_s2(
    s2: tuple[str, ...],
    s1s: list[tuple[str, ...]],
    skus_of: Mapping[tuple[str, ...], list[str]],
    overrides: Mapping[tuple[str, ...], SubgroupPriority],
) -> list[RdmaSubgroup]:
    s2_override = overrides.get(s2)
    out: list[RdmaSubgroup] = []
    rest: list[tuple[str, ...]] = []
    for s1 in s1s:
        skus = skus_of[s1]
        s1_override = overrides.get(s1)
        if s1_override is not None:
            derived = SubgroupPriority.HIGH if len(skus) > 1 else None
            shown = f"derived {derived.label}" if derived is not None else "homogeneous mini-pod"
            out.append(
                RdmaSubgroup(
                    name=s1[-1],
                    domain=s1,
                    s1s=(s1,),
                    priority=s1_override,
                    skus=tuple(sorted(skus)),
                    reason=f"override of mini-pod {s1[-1]} ({shown})",
                    overridden=True,
                )
            )
        elif len(skus) > 1 and s2_override is None:
            out.append(
                RdmaSubgroup(
                    name=s1[-1],
                    domain=s1,
                    s1s=(s1,),
                    priority=SubgroupPriority.HIGH,
                    skus=tuple(sorted(skus)),
                    reason=f"mini-pod joins {' and '.join(sorted(skus))}",
                )
            )
        else:
            rest.append(s1)
    if not rest:
        return out
    name = s2[-1] if len(rest) == len(s1s) else f"{s2[-1]}/rest"
    rest_skus = sorted({sku for s1 in rest for sku in skus_of[s1]})
    if s2_override is not None:
        derived_rest = _derive(rest, skus_of, rest_skus)[0]
        pool = RdmaSubgroup(
            name=name,
            domain=s2,
            s1s=tuple(rest),
            priority=s2_override,
            skus=tuple(rest_skus),
            reason=f"override of big-pod {s2[-1]} (derived {derived_rest.label})",
            overridden=True,
        )
    else:
        priority, why = _derive(rest, skus_of, rest_skus)
        pool = RdmaSubgroup(name=name, domain=s2, s1s=tuple(rest), priority=priority, skus=tuple(rest_skus), reason=why)
    # the pool of the big-pod comes first, then the mini-pods split out of it
    return [pool, *out]


def _derive(
    s1s: list[tuple[str, ...]], skus_of: Mapping[tuple[str, ...], list[str]], skus: list[str]
) -> tuple[SubgroupPriority, str]:
    if any(len(skus_of[s1]) > 1 for s1 in s1s):
        return SubgroupPriority.HIGH, f"a mini-pod joins {' and '.join(skus)}"
    if len(skus) == 1:
        return SubgroupPriority.LOW, f"all {skus[0]}"
    return SubgroupPriority.MEDIUM, f"{' + '.join(skus)} on homogeneous mini-pods"
