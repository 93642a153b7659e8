"""One line per decision, for people: ``<time> <service>  P a→b  D c→d  <reason>: <detail>``.

The input is a decision in its plain form — a journal ``outcome`` line, or
``to_plain(DecisionRecord)`` — so a dry run's live lines and the demo's lines read from the journal
look the same. The reason is the recommendation's; the steps that changed the counts after it (a
cooldown, the step limit, the bounds, the budget …) follow an arrow. A plan that was not applied says
why (a dry run, a fenced write).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

DETAIL_CHARS = 100  # a line stays readable in a terminal; the journal keeps the whole detail


def clock_label(at_s: float) -> str:
    """``HH:MM:SSZ`` (UTC) of an epoch time."""
    return datetime.datetime.fromtimestamp(at_s, tz=datetime.UTC).strftime("%H:%M:%SZ")


def binding_steps(record: Mapping[str, Any]) -> list[str]:
    """The reasons of the steps that moved the counts away from the recommendation, in order.

    The first step (the observation check) carries the current counts in; a later step that takes up
    the recommendation is not a change of it; once a step has changed it, every later change counts."""
    rec = record.get("recommendation") or {}
    wanted = (rec.get("prefill"), rec.get("decode"))
    steps: Sequence[Mapping[str, Any]] = (record.get("decision") or {}).get("steps") or []
    out: list[str] = []
    prev: tuple[Any, Any] | None = None
    for step in steps:
        now = (step.get("prefill"), step.get("decode"))
        if prev is not None and now != prev and (out or now != wanted):
            out.append(str(step.get("reason")))
        prev = now
    return out


def not_applied(record: Mapping[str, Any]) -> str | None:
    """Why a decision that moves counts reached nothing (None: applied, or nothing to apply)."""
    outcome = record.get("outcome") or {}
    if not isinstance(outcome, Mapping):
        return None
    if outcome.get("fenced"):
        return "fenced, not applied"
    errors = outcome.get("errors") or []
    if any(str(e).startswith("dry run") for e in errors):
        return "dry run, not applied"
    return None


def decision_text(record: Mapping[str, Any], at: str | None = None) -> str:
    """The line of one decision (module doc); ``at`` replaces the UTC clock time (e.g. ``t+42s``)."""
    d = record.get("decision") or {}
    rec = record.get("recommendation") or {}
    when = at if at is not None else clock_label(float(record.get("at_s") or 0.0))
    prefill = f"P {d.get('current_prefill')}→{d.get('desired_prefill')}"
    decode = f"D {d.get('current_decode')}→{d.get('desired_decode')}"
    reason = str(rec.get("reason"))
    steps = binding_steps(record)
    if steps:
        reason += " → " + ", ".join(steps)
    detail = " ".join(str(rec.get("detail") or "").split())
    if len(detail) > DETAIL_CHARS:
        detail = detail[: DETAIL_CHARS - 1] + "…"
    line = f"{when} {record.get('service')}  {prefill}  {decode}  {reason}" + (f": {detail}" if detail else "")
    why = not_applied(record) if moves_counts(record) else None
    return f"{line} ({why})" if why else line


def moves_counts(record: Mapping[str, Any]) -> bool:
    """Whether a decision asks for other counts than it found."""
    d = record.get("decision") or {}
    return (d.get("current_prefill"), d.get("current_decode")) != (d.get("desired_prefill"), d.get("desired_decode"))
