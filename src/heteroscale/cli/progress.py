"""A terminal progress bar that appears only for runs longer than about 2 s, on a TTY."""

from __future__ import annotations

import sys
from typing import TextIO

from heteroscale.clock import Stopwatch


class ProgressBar:
    def __init__(self, label: str, enabled: bool, stream: TextIO | None = None, delay_s: float = 2.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.delay_s = delay_s
        self._watch = Stopwatch()
        self._shown = False
        self._last = 0.0

    def __call__(self, fraction: float) -> None:
        if not self.enabled:
            return
        elapsed = self._watch.elapsed_s()
        now = elapsed
        if elapsed < self.delay_s or now - self._last < 0.1:
            return
        self._last = now
        self._shown = True
        width = 30
        filled = int(width * fraction)
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f} %  eta {eta:5.0f} s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()
