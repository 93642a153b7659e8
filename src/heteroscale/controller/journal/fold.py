"""What a restarted controller remembers, folded from journal records (and saved in checkpoints).

Per service: the last scale-out and scale-in (service-wide and per role) and the direction of the last
action, the P/D ratio the last decision used (an adaptive ratio resumes there) and the recent raw
recommendations (for stabilisation windows). Other policy-specific history (signal samples, the
forecaster's profile) is not kept: it refills within one window (a season for the profile).

Only **applied** decisions are actions: an outcome whose ``applied`` is true (schema 1: something was
launched, removed or moved in discovery). A dry-run plan, a hold, a refused or abandoned plan stamps no
cooldown. An intent with no outcome (the controller stopped between acting and recording) counts as
applied when its plan would have written something: it may have acted, and a cooldown errs safe.

Folding is per service and in journal order, so folding every record and folding a checkpoint then the
records after it give the same memory; that is what lets start-up read from the last checkpoint only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from heteroscale.controller.journal.records import Damaged, Phase, applied_of, phase_of, plans_writes
from heteroscale.domain.decision import Reason
from heteroscale.policy.context import PolicyMemory
from heteroscale.policy.normalize import PD
from heteroscale.policy.outcome import remember_actions
from heteroscale.policy.ratio import restored_ratio

log = logging.getLogger(__name__)

HOLD_REASONS = frozenset(
    {
        Reason.HOLD_STALE.value,
        Reason.HOLD_MISSING.value,
        Reason.HOLD_PARTIAL.value,
        Reason.HOLD_NO_SIGNAL.value,
        Reason.JOURNAL_UNWRITABLE.value,
    }
)


def _number(record: dict[str, Any], key: str) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Damaged(f"{key} is {value!r}, not a finite number")
    return float(value)


def _count(section: dict[str, Any], key: str, where: str) -> int:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Damaged(f"{where}.{key} is {value!r}, not a count")
    return value


def _section(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    if not isinstance(value, dict):
        raise Damaged(f"{key} is {type(value).__name__ if value is not None else 'null'}, not an object")
    return value


def _ratio(value: Any) -> float | None:
    """A usable P/D ratio, else None (absent in old journals; a bad value is ignored, not fatal)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


@dataclass(frozen=True, slots=True)
class _Decision:
    """The parts of one decision record the fold uses, checked."""

    at_s: float
    current: PD
    final: PD
    reason: str
    raw: PD
    pd_ratio: float | None

    @staticmethod
    def of(record: dict[str, Any]) -> _Decision:
        decision = _section(record, "decision")
        rec = _section(record, "recommendation")
        reason = rec.get("reason")
        if not isinstance(reason, str):
            raise Damaged(f"recommendation.reason is {reason!r}, not a string")
        return _Decision(
            at_s=_number(record, "at_s"),
            current=PD(_count(decision, "current_prefill", "decision"), _count(decision, "current_decode", "decision")),
            final=PD(_count(decision, "desired_prefill", "decision"), _count(decision, "desired_decode", "decision")),
            reason=reason,
            raw=PD(_count(rec, "prefill", "recommendation"), _count(rec, "decode", "recommendation")),
            pd_ratio=_ratio(record.get("pd_ratio")),
        )


@dataclass(slots=True)
class ServiceFold:
    memory: PolicyMemory = field(default_factory=PolicyMemory)  # actions only
    pd_ratio: float | None = None
    recent: list[tuple[float, int, int]] = field(default_factory=list)  # raw recommendations, not holds
    pending: tuple[str, dict[str, Any]] | None = None  # an intent whose outcome has not been read yet


class MemoryFold:
    """Folds journal records into every service's restorable memory (see the module doc)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.services: dict[str, ServiceFold] = {}

    def add(self, record: dict[str, Any]) -> None:
        """Fold one decoded record in; :class:`Damaged` (nothing folded) when it cannot be used."""
        phase = phase_of(record)
        if phase is Phase.CHECKPOINT:
            self.restore_checkpoint(record)
            return
        service = record.get("service")
        if not isinstance(service, str) or not service:
            raise Damaged(f"service is {service!r}, not a name")
        decision = _Decision.of(record)
        decision_id = record.get("decision_id")
        state = self.services.setdefault(service, ServiceFold())
        if state.pending is not None and (phase is Phase.INTENT or state.pending[0] != decision_id):
            self._fold_orphan(state)
        if phase is Phase.INTENT:
            state.pending = (str(decision_id), record)
            return
        state.pending = None
        self._fold(state, decision, applied_of(record))

    def _fold_orphan(self, state: ServiceFold) -> None:
        if state.pending is None:
            return
        _, intent = state.pending
        state.pending = None
        self._fold(state, _Decision.of(intent), plans_writes(intent))

    def _fold(self, state: ServiceFold, d: _Decision, applied: bool) -> None:
        if applied:
            state.memory = remember_actions(state.memory, d.at_s, d.current, d.final)
        if d.pd_ratio is not None:
            state.pd_ratio = d.pd_ratio
        if d.reason not in HOLD_REASONS:
            state.recent.append((d.at_s, d.raw.prefill, d.raw.decode))
            state.recent = [r for r in state.recent if d.at_s - r[0] <= self.window_s]

    def settle(self) -> None:
        """Fold every intent still waiting for its outcome (none will come: the reader is at the end)."""
        for state in self.services.values():
            self._fold_orphan(state)

    # --- checkpoints ---------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Every service's folded memory as plain data (the ``services`` of a checkpoint line)."""
        self.settle()
        out: dict[str, Any] = {}
        for name, state in sorted(self.services.items()):
            m = state.memory
            out[name] = {
                "last_scale_out_s": m.last_scale_out_s,
                "last_scale_in_s": m.last_scale_in_s,
                "last_direction": m.last_direction,
                "values": dict(m.values),
                "pd_ratio": state.pd_ratio,
                "recommendations": [list(r) for r in state.recent],
            }
        return out

    def restore_checkpoint(self, record: dict[str, Any]) -> None:
        """Start over from a checkpoint line (:class:`Damaged`, nothing changed, if it cannot be used)."""
        services = _section(record, "services")
        restored = {name: _service_from_checkpoint(name, body) for name, body in services.items()}
        self.services = restored

    # --- the memory ----------------------------------------------------------------------------

    def memory(self, service: str, now_s: float) -> PolicyMemory:
        """The policy memory of ``service`` as of ``now_s`` (a record from after ``now_s`` — the wall
        clock went back — counts as made at ``now_s``, so its cooldown still applies)."""
        self.settle()
        state = self.services.get(service)
        if state is None:
            return PolicyMemory()
        m = state.memory
        memory = replace(
            m,
            last_scale_out_s=None if m.last_scale_out_s is None else min(m.last_scale_out_s, now_s),
            last_scale_in_s=None if m.last_scale_in_s is None else min(m.last_scale_in_s, now_s),
            values=tuple((k, min(v, now_s) if k.endswith("_s") else v) for k, v in m.values),
            recommendations=tuple(r for r in state.recent if 0 <= now_s - r[0] <= self.window_s),
        )
        if state.pd_ratio is not None:  # an adaptive ratio resumes where it was, not at the service's
            memory = restored_ratio(memory, state.pd_ratio)
        return memory


def _service_from_checkpoint(name: str, body: Any) -> ServiceFold:
    if not isinstance(body, dict):
        raise Damaged(f"services.{name} is not an object")

    def stamp(key: str) -> float | None:
        value = body.get(key)
        if value is None:
            return None
        return _number(body, key)

    values = body.get("values") or {}
    if not isinstance(values, dict):
        raise Damaged(f"services.{name}.values is not an object")
    recent_raw = body.get("recommendations") or []
    if not isinstance(recent_raw, list):
        raise Damaged(f"services.{name}.recommendations is not a list")
    recent: list[tuple[float, int, int]] = []
    for entry in recent_raw:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise Damaged(f"services.{name}.recommendations holds {entry!r}")
        t = _number({"t": entry[0]}, "t")
        p = _count({"p": entry[1]}, "p", "recommendation")
        d = _count({"d": entry[2]}, "d", "recommendation")
        recent.append((t, p, d))
    direction = body.get("last_direction", 0)
    if direction not in (-1, 0, 1) or isinstance(direction, bool):
        raise Damaged(f"services.{name}.last_direction is {direction!r}")
    memory = PolicyMemory(
        last_scale_out_s=stamp("last_scale_out_s"),
        last_scale_in_s=stamp("last_scale_in_s"),
        last_direction=int(direction),
        values=tuple(sorted((str(k), _number(values, k)) for k in values)),
    )
    return ServiceFold(memory=memory, pd_ratio=_ratio(body.get("pd_ratio")), recent=recent)


def restore_memory(records: Iterable[dict[str, Any]], service: str, now_s: float, window_s: float) -> PolicyMemory:
    """A policy's memory rebuilt from decoded journal records of ``service`` (damaged ones skipped)."""
    fold = MemoryFold(window_s)
    for record in records:
        if record.get("service") != service and record.get("phase") != Phase.CHECKPOINT.value:
            continue
        try:
            fold.add(record)
        except Damaged as exc:
            log.warning("journal record of %s at %r skipped: %s", service, record.get("at_s"), exc)
    return fold.memory(service, now_s)
