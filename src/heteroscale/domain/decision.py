"""Reasons, steps, recommendations, decisions and the DecisionRecord of one reconcile."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    FIXED_COUNT = "fixed-count"
    WITHIN_BOUNDS = "within-bounds"
    CLAMPED_MIN = "clamped-to-min"
    CLAMPED_MAX = "clamped-to-max"
    HOLD_STALE = "hold-stale-observation"
    HOLD_MISSING = "hold-missing-observation"
    NO_CHANGE = "no-change"
    UNPLACEABLE = "unplaceable"


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    prefill: int
    decode: int
    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Recommendation:
    service: str
    prefill: int
    decode: int
    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    service: str
    current_prefill: int
    current_decode: int
    desired_prefill: int
    desired_decode: int
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    at_s: float
    service: str
    observation: dict[str, Any]
    recommendation: Recommendation
    decision: ScalingDecision
    plan: dict[str, Any]
    outcome: dict[str, Any] = field(default_factory=dict)
