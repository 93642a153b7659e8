"""Service demands, deployment groups (DGs) as the scheduler sees them, and the P/D balance rule.

A DG is balanced when one pod of one role would bring it to the service's P/D ratio ``r``:
``gap = |P − r·D| · min(1, 1/r) ≤ 1`` — measured in the role that needs fewer pods to close it. A
DG with pods of only one role is never balanced (gap = ∞); an empty one is (gap = 0). Growing a DG
with the role it lacks keeps every intermediate state balanced, so a cycle that stops half-way
leaves balanced DGs behind.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from heteroscale.domain.hardware import Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import InstanceInfo, Lifecycle, ScaleInMode
from heteroscale.scheduling.view import TopologyView

RATIO_TOLERANCE_PODS = 1.0
ROLES: tuple[Role, Role] = (Role.PREFILL, Role.DECODE)
_CAPACITY = (Lifecycle.PENDING, Lifecycle.STARTING, Lifecycle.READY)


@dataclass(frozen=True, slots=True)
class ServiceDemand:
    """What one service wants this cycle: its spec and its desired prefill and decode instance counts.

    ``shape_counts`` optionally pins the GPU mix: shape key (``role:sku:tpN``, one of the spec's shapes)
    → desired instances of that shape; a shape of the spec left out is wanted 0 times. Its per-role
    sums must equal ``desired_prefill`` / ``desired_decode``. Empty (the default): the scheduler picks
    shapes itself, preferred shape first with fallback in the spec's order.
    """

    spec: ServiceSpec
    desired_prefill: int
    desired_decode: int
    scale_in_mode: ScaleInMode = ScaleInMode.DRAIN
    drain_grace_s: float = 600.0
    shape_counts: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.desired_prefill < 0 or self.desired_decode < 0:
            raise ValueError(
                f"{self.spec.name}: desired counts must be ≥ 0, got {self.desired_prefill}P:{self.desired_decode}D"
            )
        if self.shape_counts:
            self._check_shape_counts()

    def _check_shape_counts(self) -> None:
        name = self.spec.name
        roles = {shape.key: role for role in ROLES for shape in self.spec.shapes(role)}
        seen: set[str] = set()
        sums = dict.fromkeys(ROLES, 0)
        for key, count in self.shape_counts:
            if key in seen:
                raise ValueError(f"{name}: shape_counts lists {key!r} twice")
            seen.add(key)
            role = roles.get(key)
            if role is None:
                raise ValueError(f"{name}: shape_counts names {key!r}, not one of the service's shapes {sorted(roles)}")
            if count < 0:
                raise ValueError(f"{name}: shape_counts[{key!r}] must be ≥ 0, got {count}")
            sums[role] += count
        for role in ROLES:
            if sums[role] != self.desired(role):
                raise ValueError(
                    f"{name}: shape_counts for {role.value} sum to {sums[role]}, "
                    f"but desired_{role.value} is {self.desired(role)}"
                )

    def desired(self, role: Role) -> int:
        return self.desired_prefill if role is Role.PREFILL else self.desired_decode

    @property
    def has_mix(self) -> bool:
        """Whether ``shape_counts`` pins the desired count of every shape."""
        return bool(self.shape_counts)

    def desired_by_shape(self) -> dict[str, int]:
        """Shape key → desired count for every shape of the spec (0 when ``shape_counts`` leaves it out);
        empty without a mix."""
        if not self.shape_counts:
            return {}
        out = {shape.key: 0 for role in ROLES for shape in self.spec.shapes(role)}
        out.update(self.shape_counts)
        return out

    @property
    def dg_ratio(self) -> float:
        """The P/D ratio every DG is kept at: the desired counts' ratio (so a periodic policy may change
        it), or the spec's when one desired count is 0."""
        if self.desired_prefill > 0 and self.desired_decode > 0:
            return self.desired_prefill / self.desired_decode
        return self.spec.pd_ratio


def ratio_gap(prefill: int, decode: int, ratio: float) -> float:
    """Pods of one role a DG with these counts lacks to sit at ``ratio`` (0 when empty, ∞ when one-sided)."""
    if prefill == 0 and decode == 0:
        return 0.0
    if prefill == 0 or decode == 0:
        return math.inf
    return abs(prefill - ratio * decode) * min(1.0, 1.0 / ratio)


def imbalance(prefill: int, decode: int, ratio: float) -> float:
    """:func:`ratio_gap` with a one-sided DG ranked by its size (1000 + pods), so shrinking it counts as progress."""
    if (prefill == 0) != (decode == 0):
        return 1000.0 + prefill + decode
    return ratio_gap(prefill, decode, ratio)


def balanced(prefill: int, decode: int, ratio: float) -> bool:
    return ratio_gap(prefill, decode, ratio) <= RATIO_TOLERANCE_PODS + 1e-9


@dataclass(frozen=True, slots=True)
class Member:
    """One capacity instance of a DG and the priority of the pool its node is in (-1: node unknown)."""

    instance: InstanceInfo
    tier: int


@dataclass(slots=True)
class Group:
    """A DG during one cycle: its affinity domain (view id, None if its nodes are unknown) and counts."""

    name: str
    domain: int | None
    order: int
    prefill: int = 0
    decode: int = 0
    members: dict[Role, list[Member]] = field(default_factory=lambda: {Role.PREFILL: [], Role.DECODE: []})
    created: bool = False

    def count(self, role: Role) -> int:
        return self.prefill if role is Role.PREFILL else self.decode

    def after(self, role: Role, delta: int) -> tuple[int, int]:
        if role is Role.PREFILL:
            return self.prefill + delta, self.decode
        return self.prefill, self.decode + delta

    def add(self, role: Role, delta: int) -> None:
        self.prefill, self.decode = self.after(role, delta)

    def value(self) -> int:
        """The most valuable pool any of its remaining members sits on."""
        return max((m.tier for role in ROLES for m in self.members[role]), default=-1)


def existing_groups(instances: Iterable[InstanceInfo], level: int, view: TopologyView) -> list[Group]:
    """The DGs of one service from its capacity instances (pending / starting / ready; draining ones
    neither count nor can be chosen), each in the affinity domain most of its members are in."""
    by_dg: dict[str, list[InstanceInfo]] = {}
    for inst in instances:
        if inst.lifecycle in _CAPACITY:
            by_dg.setdefault(inst.dg, []).append(inst)
    groups: list[Group] = []
    for order, name in enumerate(sorted(by_dg, key=_dg_sort_key)):
        domains: Counter[int] = Counter()
        group = Group(name=name, domain=None, order=order)
        for inst in sorted(by_dg[name], key=lambda i: i.id):
            node = view.node_index.get(inst.node)
            tier = -1 if node is None else view.node_tier[node]
            if node is not None:
                domains[view.node_dom[level][node]] += 1
            group.members[inst.role].append(Member(inst, tier))
            group.add(inst.role, 1)
        if domains:
            group.domain = min(domains, key=lambda d: (-domains[d], d))
        for role in ROLES:
            group.members[role].sort(key=_victim_key)
        groups.append(group)
    return groups


def next_dg_number(service: str, instances: Iterable[InstanceInfo]) -> int:
    """1 + the largest N among the service's ``<service>-dg<N>`` ids (draining ones included), or 0."""
    pattern = re.compile(re.escape(service) + r"-dg(\d+)$")
    numbers = [int(m.group(1)) for inst in instances if (m := pattern.match(inst.dg))]
    return max(numbers, default=-1) + 1


_LIFECYCLE_RANK = {Lifecycle.PENDING: 0, Lifecycle.STARTING: 1, Lifecycle.READY: 2}


def _victim_key(member: Member) -> tuple[int, int, float, str]:
    """Scale-in order inside a DG and role: not yet serving first, then the most valuable pool, then newest."""
    inst = member.instance
    return (_LIFECYCLE_RANK.get(inst.lifecycle, 3), -member.tier, -inst.launched_at_s, inst.id)


def _dg_sort_key(name: str) -> tuple[str, int, str]:
    match = re.match(r"^(.*?)(\d+)$", name)
    if match is None:
        return (name, -1, name)
    return (match.group(1), int(match.group(2)), name)
