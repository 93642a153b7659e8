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
    # observation checks (policy.normalize.hold_on_bad_observation)
    OBSERVATION_OK = "observation-ok"
    HOLD_PARTIAL = "hold-partial-observation"
    HOLD_NO_SIGNAL = "hold-missing-signal"
    # metric coverage: instances reporting metrics against serving instances (policy.coverage)
    COVERAGE_OK = "coverage-ok"
    COVERAGE_EXTRAPOLATED = "coverage-extrapolated"
    COVERAGE_PARTIAL = "coverage-partial"
    COVERAGE_HOLD = "coverage-hold"
    COVERAGE_NO_SCALE_IN = "coverage-no-scale-in"
    # raw recommendations
    PROPORTIONAL = "proportional"
    LATENCY_THRESHOLD = "latency-threshold"
    FORECAST = "forecast"
    DEMAND = "demand"  # decode sized from arrivals × output length: decode TPS was censored
    PREFILL_BACKLOG = "prefill-backlog"  # prefill sized from arrivals and its backlog; decode follows
    SCHEDULED = "scheduled"
    SCHEDULE_DEFAULT = "schedule-default"
    # is decode TPS censored by prefill? (policy.demand)
    SIGNAL_CENSORED = "signal-censored-by-prefill"
    SIGNAL_UNCENSORED = "signal-not-censored"
    # hysteresis / tolerance
    HYSTERESIS_OUT = "hysteresis-scale-out"
    HYSTERESIS_IN = "hysteresis-scale-in"
    HYSTERESIS_HOLD = "hysteresis-hold"
    WITHIN_TOLERANCE = "within-tolerance"
    OUTSIDE_TOLERANCE = "outside-tolerance"
    # P/D coordination and ratio band
    PD_COORDINATED = "pd-coordinated"
    PD_DIRECTION_KEPT = "pd-direction-kept"
    RATIO_BAND_OK = "ratio-band-ok"
    RATIO_BAND_REPAIRED = "ratio-band-repaired"
    RATIO_ADAPTED = "ratio-adapted"
    RATIO_RATE_LIMITED = "ratio-rate-limited"
    RATIO_WITHIN_BAND = "ratio-within-band"
    RATIO_HELD = "ratio-held"
    # cost-aware GPU mix and the GPU budget (controller steps after the policy's)
    GPU_MIX = "gpu-mix"
    GPU_MIX_SHORT = "gpu-mix-short"
    BUDGET_OK = "budget-ok"
    BUDGET_CUT = "budget-cut"
    # latency safety net and latency-driven policies
    LATENCY_OK = "latency-within-slo"
    LATENCY_MODERATE = "latency-moderate-breach"
    LATENCY_SEVERE = "latency-severe-breach"
    LATENCY_COVERED = "latency-covered-by-starting"
    LATENCY_BACKLOG = "latency-backlog-not-drained"  # starting capacity cannot drain the backlog in time
    LATENCY_ABOVE = "latency-above-threshold"
    LATENCY_BELOW = "latency-below-threshold"
    LATENCY_IN_BAND = "latency-in-band"
    # cooldowns, damping, rate limits, stabilisation, intervals
    COOLDOWN_CLEAR = "cooldown-clear"
    COOLDOWN_OUT = "cooldown-scale-out"
    COOLDOWN_IN = "cooldown-scale-in"
    COOLDOWN_LATENCY = "cooldown-passed-latency"  # a latency tier is reached: no cooldown holds a scale-out
    COOLDOWN_DEMAND = "cooldown-passed-demand"  # sized from demand (censored signal): no cooldown holds it
    COOLDOWN_RISING = "cooldown-passed-latency-rising"  # latency past a fraction of its SLO: scale-out passes
    # no scale-in until a full window of data since start-up or a restart (policy.stages.WarmUp)
    WARMING_UP = "warm-up-no-scale-in"
    WINDOW_FULL = "window-full"
    WITHIN_STEP_LIMIT = "within-step-limit"
    DAMPED = "damped"
    RATE_LIMITED = "rate-limited"
    STABILISED = "scale-down-stabilised"
    NOT_STABILISED = "not-stabilised"
    ADJUSTMENT_INTERVAL = "adjustment-interval"
    ADJUSTED = "adjusted"
    PANIC = "panic-mode"
    STABLE_MODE = "stable-mode"
    # the controller's own guards
    JOURNAL_UNWRITABLE = "journal-unwritable"  # the intent could not be made durable: nothing acted


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
    pd_ratio: float | None = None  # the P/D ratio the decision used (an adaptive one changes over time)
