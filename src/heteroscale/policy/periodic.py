"""Policies that read no metrics: a weekday / time-of-day schedule, and fixed counts.

``PeriodicPolicy`` (HETEROSCALE.md §4, the paper's periodic policy for services that cannot use
metrics) maps the simulated or wall time to P and D counts — so the P/D ratio may differ by time of
day too. ``now_s`` is seconds since a Monday 00:00 (``Schedule.start_weekday`` moves day 0 to another
weekday). The first entry that covers the moment wins; if none does, the schedule's default counts
apply. Entries whose end is not after their start wrap past midnight: a Friday 22:00–06:00 entry
covers Friday night and Saturday morning.

``StaticPolicy`` holds fixed counts (``static`` — e.g. the oracle's peak over the run — or ``fixed``).
Both still go through the service's bounds; neither scales on observations, so neither holds on them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from heteroscale.domain.decision import Reason, Step
from heteroscale.policy.context import PolicyContext
from heteroscale.policy.normalize import PD
from heteroscale.policy.outcome import DRAIN, ScaleIn
from heteroscale.policy.stages import Bounds
from heteroscale.policy.wrapper import Raw, Seen, ShapedPolicy, Shaping

DAY_S = 86_400.0
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _check_counts(prefill: int, decode: int, where: str) -> None:
    if prefill < 0 or decode < 0:
        raise ValueError(f"{where}: counts must be ≥ 0, got prefill={prefill}, decode={decode}")


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """P and D counts for some weekdays (0 = Monday … 6 = Sunday) between two times of day (seconds)."""

    weekdays: frozenset[int]
    start_s: float  # time of day the entry starts, in [0, 86400)
    end_s: float  # time of day it ends (exclusive), in (0, 86400]; ≤ start_s wraps past midnight
    prefill: int
    decode: int
    label: str = ""

    def __post_init__(self) -> None:
        if not self.weekdays or any(day not in range(7) for day in self.weekdays):
            raise ValueError(f"schedule entry weekdays must be a non-empty subset of 0..6, got {sorted(self.weekdays)}")
        if not 0 <= self.start_s < DAY_S or not 0 < self.end_s <= DAY_S or self.start_s == self.end_s:
            raise ValueError(
                "schedule entry times need 0 ≤ start_s < 86400, 0 < end_s ≤ 86400 and start_s ≠ end_s; "
                f"got start_s={self.start_s}, end_s={self.end_s}"
            )
        _check_counts(self.prefill, self.decode, "schedule entry")

    def covers(self, weekday: int, time_of_day_s: float) -> bool:
        if self.start_s < self.end_s:
            return weekday in self.weekdays and self.start_s <= time_of_day_s < self.end_s
        # wraps past midnight: the evening part on a listed day, the morning part on the day after
        if weekday in self.weekdays and time_of_day_s >= self.start_s:
            return True
        return (weekday - 1) % 7 in self.weekdays and time_of_day_s < self.end_s

    def describe(self) -> str:
        days = ",".join(WEEKDAY_NAMES[d] for d in sorted(self.weekdays))
        name = f"{self.label} " if self.label else ""
        return f"{name}{days} {clock(self.start_s)}–{clock(self.end_s)} → {self.prefill}P {self.decode}D"


def clock(seconds: float) -> str:
    """HH:MM of a time of day in seconds."""
    minutes = int(seconds // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def weekday_and_time(now_s: float, start_weekday: int = 0) -> tuple[int, float]:
    """(weekday, seconds since midnight) of ``now_s`` seconds after 00:00 of weekday ``start_weekday``."""
    day = math.floor(now_s / DAY_S)
    return (start_weekday + day) % 7, now_s - day * DAY_S


@dataclass(frozen=True, slots=True)
class Schedule:
    entries: tuple[ScheduleEntry, ...]
    default_prefill: int
    default_decode: int
    start_weekday: int = 0  # weekday of now_s = 0 (0 = Monday)

    def __post_init__(self) -> None:
        _check_counts(self.default_prefill, self.default_decode, "schedule default")
        if self.start_weekday not in range(7):
            raise ValueError(f"start_weekday must be in 0..6, got {self.start_weekday}")

    @staticmethod
    def of(entries: Iterable[ScheduleEntry], default: tuple[int, int], start_weekday: int = 0) -> Schedule:
        return Schedule(tuple(entries), default[0], default[1], start_weekday)

    def lookup(self, now_s: float) -> tuple[PD, ScheduleEntry | None]:
        """The counts at ``now_s`` and the entry that gave them (None: the default)."""
        weekday, tod = weekday_and_time(now_s, self.start_weekday)
        for entry in self.entries:
            if entry.covers(weekday, tod):
                return PD(entry.prefill, entry.decode), entry
        return PD(self.default_prefill, self.default_decode), None


def unobserved_shaping(scale_in: ScaleIn = DRAIN) -> Shaping:
    """Bounds only, and no observation check: these policies do not read metrics."""
    return Shaping((Bounds(),), None, scale_in)


class PeriodicPolicy(ShapedPolicy):
    """Counts from a (weekday, time-of-day) schedule, then bounds."""

    def __init__(
        self, schedule: Schedule, scale_in: ScaleIn = DRAIN, name: str = "periodic", *, shaping: Shaping | None = None
    ) -> None:
        self.schedule = schedule
        self.shaping = shaping or unobserved_shaping(scale_in)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        wanted, entry = self.schedule.lookup(ctx.now_s)
        weekday, tod = weekday_and_time(ctx.now_s, self.schedule.start_weekday)
        when = f"{WEEKDAY_NAMES[weekday]} {clock(tod)}"
        if entry is None:
            reason, detail = (
                Reason.SCHEDULE_DEFAULT,
                f"{when}: no entry covers it, default {wanted.prefill}P {wanted.decode}D",
            )
        else:
            reason, detail = Reason.SCHEDULED, f"{when}: {entry.describe()}"
        step = Step("schedule", wanted.prefill, wanted.decode, reason, detail)
        return Raw(wanted, reason, detail, steps=(step,))


class StaticPolicy(ShapedPolicy):
    """Fixed counts, then bounds (``static``, ``fixed``)."""

    def __init__(
        self,
        prefill: int,
        decode: int,
        name: str = "static",
        scale_in: ScaleIn = DRAIN,
        *,
        shaping: Shaping | None = None,
    ) -> None:
        _check_counts(prefill, decode, name)
        self.counts = PD(prefill, decode)
        self.name = name
        self.shaping = shaping or unobserved_shaping(scale_in)

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        detail = f"hold {self.counts.prefill}P {self.counts.decode}D"
        step = Step("fixed", self.counts.prefill, self.counts.decode, Reason.FIXED_COUNT, detail)
        return Raw(self.counts, Reason.FIXED_COUNT, detail, steps=(step,))
