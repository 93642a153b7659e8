"""Time is injected through a Clock. This is the only module that reads real time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """``now_s``: epoch seconds, for timestamps (may jump); ``monotonic_s``: seconds on a clock that
    never goes back, for measuring intervals such as a lease's age (its origin means nothing)."""

    def now_s(self) -> float: ...

    def monotonic_s(self) -> float: ...

    def sleep_s(self, seconds: float) -> None: ...


class WallClock:
    """Real time: epoch seconds for timestamps, ``time.sleep`` for waits."""

    def now_s(self) -> float:
        return time.time()

    def sleep_s(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def monotonic_s(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock moved by hand (virtual time); used by the simulator and by tests.

    Its monotonic time moves with it (from ``monotonic_start_s``); ``set_wall_s`` moves only the wall
    time, as an NTP step would, so tests can show that intervals are measured on the monotonic clock.
    """

    def __init__(self, start_s: float = 0.0, monotonic_start_s: float = 0.0) -> None:
        self._now_s = start_s
        self._mono_s = monotonic_start_s

    def now_s(self) -> float:
        return self._now_s

    def monotonic_s(self) -> float:
        return self._mono_s

    def sleep_s(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now_s += seconds
            self._mono_s += seconds

    def advance_to(self, t_s: float) -> None:
        self.advance(t_s - self._now_s)

    def set_wall_s(self, t_s: float) -> None:
        self._now_s = t_s


class Stopwatch:
    """Measures elapsed wall time (for figures like ``wall_s`` only; never for simulated time)."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    def restart(self) -> None:
        self._t0 = time.perf_counter()
