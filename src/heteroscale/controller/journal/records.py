"""Journal records: the schema (version 2), the three phases, and reading one line back.

One JSON object per line, keys sorted, every float finite (NaN and ±Inf are written as ``null``):

* ``intent`` — made durable *before* the actuator is called: ``schema_version``, ``decision_id``,
  ``phase``, ``at_s``, ``service``, ``observation``, ``recommendation``, ``decision``, ``plan``,
  ``pd_ratio`` and ``applied: false``. A decision with nothing to do writes no intent.
* ``outcome`` — after the actuator answered (or at once for a decision with nothing to do): the whole
  DecisionRecord again, with ``outcome`` and ``applied`` (whether anything reached the cluster: a dry
  run, a refused or abandoned plan and a hold write nothing). An outcome line stands alone, so a reader
  that wants one line per decision reads the outcomes (:func:`is_decision`).
* ``checkpoint`` — what a restarted controller needs of every service (:mod:`.fold`), so start-up
  reads from the last checkpoint on; ``decision_id`` is null.

``decision_id`` is ``<service>@<at_s>#<n>`` with ``n`` counted per journal writer from 1 (per run), so
it is deterministic in simulation and a gap in ``n`` within one run is a record that never reached the
journal. Schema 1 (no ``schema_version``, no ``phase``) is one DecisionRecord per line; it is read as an
outcome whose ``applied`` is inferred: something was launched, removed or moved in discovery.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Iterator
from enum import Enum, StrEnum
from typing import Any

from heteroscale.domain.decision import DecisionRecord

SCHEMA_VERSION = 2
CHECKPOINT_MARK = b'"phase": "checkpoint"'  # how a checkpoint line looks on disk (keys sorted, default separators)


class Phase(StrEnum):
    INTENT = "intent"
    OUTCOME = "outcome"
    CHECKPOINT = "checkpoint"


class Damaged(ValueError):
    """A journal line that cannot be used (the message says why); readers skip it with a warning."""


def to_plain(value: Any, *, finite: bool = False) -> Any:
    """Dataclasses, enums, tuples and dicts → JSON-ready plain data.

    NaN becomes None; with ``finite`` (journal lines) so do ±Inf, which JSON cannot carry.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name), finite=finite) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_plain(v, finite=finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, finite=finite) for v in value]
    if isinstance(value, float) and (math.isnan(value) or (finite and math.isinf(value))):
        return None  # NaN never reaches the journal
    return value


def decision_line(record: DecisionRecord, decision_id: str, phase: Phase, applied: bool) -> dict[str, Any]:
    """The journal line of ``record`` in ``phase`` (an intent carries no outcome)."""
    line = to_plain(record, finite=True)
    if phase is Phase.INTENT:
        del line["outcome"]
    line.update(schema_version=SCHEMA_VERSION, decision_id=decision_id, phase=phase.value, applied=applied)
    return dict(line)


def checkpoint_line(at_s: float, services: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "decision_id": None,
        "phase": Phase.CHECKPOINT.value,
        "at_s": at_s,
        "services": to_plain(services, finite=True),
    }


def encode(line: dict[str, Any]) -> bytes:
    return (json.dumps(line, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _no_constant(name: str) -> Any:
    raise Damaged(f"{name} is not a JSON number")


def decode(raw: bytes) -> dict[str, Any]:
    """One complete line as a record; :class:`Damaged` says why it cannot be used."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Damaged(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        record = json.loads(text, parse_constant=_no_constant)
    except Damaged:
        raise
    except ValueError as exc:
        raise Damaged(f"not JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise Damaged(f"a JSON {type(record).__name__}, not an object")
    version = record.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Damaged(f"schema_version {version!r} is not a positive integer")
    if version >= 2:
        phase = record.get("phase")
        if phase not in {p.value for p in Phase}:
            raise Damaged(f"phase {phase!r} is not one of intent, outcome, checkpoint")
    return record


def phase_of(record: dict[str, Any]) -> Phase:
    """A schema-1 line is a finished decision: an outcome."""
    return Phase(record["phase"]) if record.get("schema_version", 1) >= 2 else Phase.OUTCOME


def applied_of(record: dict[str, Any]) -> bool:
    """Whether the decision wrote anything to the cluster (schema 1: inferred from its outcome)."""
    if record.get("schema_version", 1) >= 2:
        return record.get("applied") is True
    outcome = record.get("outcome")
    if not isinstance(outcome, dict):
        return False
    return any(isinstance(outcome.get(k), list) and outcome[k] for k in ("launched", "removed", "discovery_changed"))


def plans_writes(record: dict[str, Any]) -> bool:
    """Whether an intent's plan would write to the cluster (what a crash after the intent may have done)."""
    plan = record.get("plan")
    if not isinstance(plan, dict):
        return False
    return any(isinstance(plan.get(k), list) and plan[k] for k in ("launches", "removals", "discovery"))


def is_decision(record: dict[str, Any]) -> bool:
    """One line per decision: outcomes and schema-1 records (intents and checkpoints are not)."""
    return phase_of(record) is Phase.OUTCOME


def decision_records(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (r for r in records if is_decision(r))
