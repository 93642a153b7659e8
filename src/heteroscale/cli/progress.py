"""Progress on stderr: a bar for one simulation, a counted line per step for the experiments.

Both show an ETA only once it means something: measured from the first report (not from the
command's start, whose loading and pressure testing would inflate the rate) and only after some
progress has been seen, so a first estimate is never absurd. They write only to a terminal, and
read time from a ``Clock`` (the wall clock by default) so that tests can drive them.
"""

from __future__ import annotations

import sys
from typing import TextIO

from heteroscale.clock import Clock, WallClock
from heteroscale.experiments.parallel import Step

MIN_ETA_FRACTION = 0.01  # an ETA from less progress than this is noise


def eta_s(elapsed_s: float, done: float, start: float = 0.0) -> float | None:
    """Seconds left when ``done`` (a fraction, 0–1) was reached ``elapsed_s`` after ``start`` was: the rate
    seen so far, extrapolated; None until ``MIN_ETA_FRACTION`` of the work has been seen."""
    progressed = done - start
    if progressed < MIN_ETA_FRACTION or elapsed_s <= 0.0:
        return None
    return elapsed_s / progressed * max(0.0, 1.0 - done)


def _eta_text(eta: float | None) -> str:
    if eta is None:
        return "eta …"
    return f"eta {eta:,.0f} s" if eta < 120.0 else f"eta {eta / 60.0:,.1f} min"


class ProgressBar:
    """One simulation's fraction done, redrawn in place after ``delay_s`` (short runs show nothing)."""

    def __init__(
        self,
        label: str,
        enabled: bool,
        stream: TextIO | None = None,
        delay_s: float = 2.0,
        clock: Clock | None = None,
        force: bool = False,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled and (force or self.stream.isatty())
        self.delay_s = delay_s
        self._clock = clock or WallClock()
        self._t0 = self._clock.monotonic_s()
        self._first: tuple[float, float] | None = None  # (time, fraction) of the first report
        self._shown = False
        self._last = -1.0

    def __call__(self, fraction: float) -> None:
        if not self.enabled:
            return
        now = self._clock.monotonic_s()
        if self._first is None:
            self._first = (now, fraction)
        if now - self._t0 < self.delay_s or now - self._last < 0.1:
            return
        self._last = now
        self._shown = True
        width = 30
        filled = int(width * fraction)
        eta = eta_s(now - self._first[0], fraction, self._first[1])
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f} %  {_eta_text(eta):<14}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * 72 + "\r")
            self.stream.flush()


class StepPrinter:
    """One line per step of an experiment: ``[done/total] label  eta …`` (the ETA from the steps done)."""

    def __init__(
        self, command: str, enabled: bool, stream: TextIO | None = None, clock: Clock | None = None, force: bool = False
    ) -> None:
        self.command = command
        self.stream = stream or sys.stderr
        self.enabled = enabled and (force or self.stream.isatty())
        self._clock = clock or WallClock()
        self._t0: float | None = None
        self._phase = ""

    def __call__(self, step: Step) -> None:
        if not self.enabled:
            return
        now = self._clock.monotonic_s()
        phase = step.phase
        if self._t0 is None or phase != self._phase:  # each phase (pressure test, runs) has its own rate
            self._t0, self._phase = now, phase
        fraction = step.done / step.total if step.total > 0 else 1.0
        eta = eta_s(now - self._t0, fraction) if step.done > 0 else None
        tail = "" if step.done >= step.total else f"  {_eta_text(eta)}"
        self.stream.write(f"  {self.command}: [{step.done}/{step.total}] {step.label}{tail}\n")
        self.stream.flush()
