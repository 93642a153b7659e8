"""Why pods of a service could not be placed: one line naming the constraint that failed.

Computed only for services left short, against the view as it stands when the service gave up (so
what earlier, higher-priority services took is already gone). Two constraints can bind:

- growth: the affinity domains of the service's DGs have no free slot for the role's shapes, or
  they have one but a further pod would put the DG off the P/D ratio (±1 pod);
- a new DG: no other domain of the affinity level has room for one prefill and one decode pod
  together (the best one is named with what it had), or only one role is short, and a new DG needs
  both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.scheduling.groups import Group
from heteroscale.scheduling.view import LEVELS, TopologyView

_SHOWN_GROUPS = 3


def shapes_text(shapes: Sequence[InstanceShape]) -> str:
    return " or ".join(f"{s.sku} tp{s.tp}" for s in shapes)


def unplaced_reasons(
    view: TopologyView,
    spec: ServiceSpec,
    level: int,
    groups: Sequence[Group],
    need: Mapping[Role, int],
    ratio: float,
) -> dict[Role, str]:
    """One reason per role still short (``need[role] > 0``)."""
    placed = [g for g in groups if g.domain is not None]
    short = [role for role in (Role.PREFILL, Role.DECODE) if need[role] > 0]
    new_dg = ""
    if len(short) == 2:
        new_dg = _new_dg_text(view, spec, level, {g.domain for g in placed if g.domain is not None})
    out: dict[Role, str] = {}
    for role in short:
        parts = [_growth_text(view, spec, level, placed, role, ratio)] if placed else []
        parts.append(
            new_dg or f"a new DG needs both roles and only {role.value} is short (affinity {spec.affinity.value})"
        )
        out[role] = "; ".join(parts)
    return out


def _growth_text(
    view: TopologyView, spec: ServiceSpec, level: int, placed: Sequence[Group], role: Role, ratio: float
) -> str:
    label = LEVELS[level].label
    shapes = spec.shapes(role)
    room = {g.name: _room(view, level, g, shapes) for g in placed}
    with_room = [g for g in placed if room[g.name] > 0]
    if with_room:
        return (
            f"one more {role.value} pod would put DG {_names(with_room)} off the P/D ratio {ratio:.3g} "
            f"±1 pod (its {label} domain still has {room[with_room[0].name]} {shapes_text(shapes)} slot(s))"
        )
    where = ", ".join(
        f"{g.name} in {view.domain_name(level, g.domain)}" for g in placed[:_SHOWN_GROUPS] if g.domain is not None
    )
    more = f" and {len(placed) - _SHOWN_GROUPS} more" if len(placed) > _SHOWN_GROUPS else ""
    return f"no free {role.value} slot ({shapes_text(shapes)}) in the {label} domain of {where}{more}"


def _room(view: TopologyView, level: int, group: Group, shapes: Sequence[InstanceShape]) -> int:
    if group.domain is None:
        return 0
    return max(view.slot_count(level, group.domain, s) for s in shapes)


def _names(groups: Sequence[Group]) -> str:
    shown = ", ".join(g.name for g in groups[:_SHOWN_GROUPS])
    return shown + (f" and {len(groups) - _SHOWN_GROUPS} more" if len(groups) > _SHOWN_GROUPS else "")


def _new_dg_text(view: TopologyView, spec: ServiceSpec, level: int, taken: set[int]) -> str:
    label = LEVELS[level].label
    prefill, decode = spec.shapes(Role.PREFILL), spec.shapes(Role.DECODE)
    wanted = f"1 prefill ({shapes_text(prefill)}) and 1 decode ({shapes_text(decode)})"
    where = "other " if taken else ""
    candidates: set[int] = set()
    for shape in (*prefill, *decode):
        candidates |= view.domains_with_room(level, shape)
    candidates -= taken
    if not candidates:
        return f"no {where}{label} domain has a free slot for either role ({wanted}; affinity {spec.affinity.value})"
    counts = {
        dom: (max(view.slot_count(level, dom, s) for s in prefill), max(view.slot_count(level, dom, s) for s in decode))
        for dom in candidates
    }
    # the closest miss: the most of the scarcer role, then the most in all, then the first domain
    best = max(sorted(counts), key=lambda dom: (min(counts[dom]), sum(counts[dom])))
    p, d = counts[best]
    shared = " sharing one SKU's last slot" if p and d else ""
    return (
        f"no {where}{label} domain has room for {wanted} together (affinity {spec.affinity.value}); "
        f"best {view.domain_name(level, best)} had {p} prefill and {d} decode slot(s){shared}"
    )
