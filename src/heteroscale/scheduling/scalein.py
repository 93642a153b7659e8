"""Scale-in of one service (Algorithm 4, the ``if scale-in`` branch): which instances to remove.

Step by step: each step removes a whole DG (when what is still to go covers it), a *pair* (one
prefill and one decode from the same DG) or a single pod. Options are ranked by:

1. the removal does not take the DG further from the P/D ratio, and preferably brings it closer
   (a DG left with one role only shrinks first);
2. the DG stays balanced after it (ratio ±1 pod; an emptied DG is balanced);
3. the DG sits on the most valuable pool (HIGH before MEDIUM before LOW) — that capacity is freed first;
4. a whole DG, then a pair, then a single pod (P and D victims come from the same DG);
5. the smallest imbalance after, then the oldest DG, then prefill before decode.

Inside the chosen DG and role the victim is the one not yet serving (pending, then starting) before a
ready one, then the one on the most valuable pool, then the newest. Draining instances are never
chosen (they already leave). The freed GPUs are *not* returned to the view: they come back only when
the next cycle rebuilds it.

With a GPU mix (``surplus``: shape key → pods of that shape still to go) only pods of a shape with a
surplus can be chosen: a DG offers, per role, as many pods as its members of surplus shapes cover
(at most the surplus of each shape), the ranking above is unchanged, and inside the DG the victim is
the first one in the order below whose shape still has a surplus.

When the counts leave no other choice than a DG with one role only (e.g. 2P:1D + 2P:1D at ratio 3
asked to become 3P:1D), that DG's last pods go too — see :func:`_orphans`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from heteroscale.domain.hardware import Role
from heteroscale.domain.state import InstanceInfo
from heteroscale.scheduling.groups import Group, Member, balanced, imbalance


def choose_victims(
    groups: Sequence[Group], remove: dict[Role, int], ratio: float, surplus: dict[str, int] | None = None
) -> list[InstanceInfo]:
    """Victims for ``remove[role]`` fewer pods; updates the groups' counts and members, and ``remove``
    (and ``surplus``, shape key → pods of that shape still to go, when a mix restricts the choice)."""
    victims: list[InstanceInfo] = []
    two_sided = {g.name for g in groups if g.prefill > 0 and g.decode > 0}
    while True:
        best: tuple[bool, bool, bool, int, int, float, int] | None = None
        choice: tuple[Group, int, int] | None = None
        for group in groups:
            value = group.value()
            before = imbalance(group.prefill, group.decode, ratio)
            for kind, (dp, dd) in enumerate(_options(group, remove, surplus)):
                if not (dp or dd):
                    continue
                p, d = group.prefill - dp, group.decode - dd
                after = imbalance(p, d, ratio)
                key = (
                    after > before + 1e-9,
                    not after < before - 1e-9,
                    not balanced(p, d, ratio),
                    -value,
                    kind,
                    after,
                    group.order,
                )
                if best is None or key < best:
                    best, choice = key, (group, dp, dd)
        if choice is None:
            return victims + _orphans(groups, two_sided)
        group, dp, dd = choice
        for role, count in ((Role.PREFILL, dp), (Role.DECODE, dd)):
            for _ in range(count):
                member = group.members[role].pop(_first_victim(group.members[role], surplus))
                group.add(role, -1)
                remove[role] -= 1
                if surplus is not None:
                    surplus[member.instance.shape.key] -= 1
                victims.append(member.instance)


def _first_victim(members: Sequence[Member], surplus: dict[str, int] | None) -> int:
    """Index of the first member (in victim order) that may go: any, or one of a shape with a surplus."""
    if surplus is None:
        return 0
    return next(i for i, m in enumerate(members) if surplus.get(m.instance.shape.key, 0) > 0)


def _removable(members: Sequence[Member], surplus: dict[str, int] | None) -> int:
    """How many of ``members`` may go: all of them, or with a mix at most each shape's surplus."""
    if surplus is None:
        return len(members)
    by_shape = Counter(m.instance.shape.key for m in members)
    return sum(min(n, max(0, surplus.get(key, 0))) for key, n in by_shape.items())


def _orphans(groups: Sequence[Group], two_sided: set[str]) -> list[InstanceInfo]:
    """The remaining pods of DGs this scale-in left with one role only: they have no partner inside their
    affinity domain, so they cannot serve. Removing them overshoots the desired count of that role; the
    next cycle grows a balanced DG back, where keeping them would hold the service at a count that
    does not serve."""
    out: list[InstanceInfo] = []
    for group in groups:
        if group.name in two_sided and (group.prefill == 0) != (group.decode == 0):
            for role in (Role.PREFILL, Role.DECODE):
                while group.members[role]:
                    out.append(group.members[role].pop(0).instance)
                    group.add(role, -1)
    return out


def _options(group: Group, remove: dict[Role, int], surplus: dict[str, int] | None) -> tuple[tuple[int, int], ...]:
    """(prefill, decode) removals to consider, by kind: the whole DG, a pair, one prefill, one decode.

    A kind that does not apply is (0, 0). With a mix, only pods of surplus shapes count as removable,
    and the whole DG only when all of its pods are."""
    members_p, members_d = group.members[Role.PREFILL], group.members[Role.DECODE]
    has_p = _removable(members_p, surplus)
    has_d = _removable(members_d, surplus)
    want_p, want_d = remove[Role.PREFILL], remove[Role.DECODE]
    all_go = has_p == len(members_p) and has_d == len(members_d)
    whole = (has_p, has_d) if (has_p or has_d) and all_go and want_p >= has_p and want_d >= has_d else (0, 0)
    pair = (1, 1) if has_p and has_d and want_p and want_d else (0, 0)
    return (
        whole,
        pair,
        (1, 0) if has_p and want_p else (0, 0),
        (0, 1) if has_d and want_d else (0, 0),
    )
