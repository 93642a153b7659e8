"""One root for every error HeteroScale raises on purpose.

A user sees ``str(error)``: one line naming the place (file, line, field) and the problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HeteroScaleError(Exception):
    """Root of all deliberate errors."""


class ConfigError(HeteroScaleError):
    """A scenario, topology, catalog or controller configuration is invalid."""


class TraceError(HeteroScaleError):
    """A request trace or rate curve cannot be read."""


class MetricsUnavailable(HeteroScaleError):
    """Metrics could not be read (HTTP error, time-out, stale or partial data)."""


class TransientActuationError(HeteroScaleError):
    """The cluster refused an action for now; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentActuationError(HeteroScaleError):
    """The cluster refused an action for good (e.g. 4xx other than 409)."""


class JournalUnwritable(HeteroScaleError):
    """The decision journal cannot be written (disk full, file too large, I/O error): hold, do not act."""


class SimulationInvariantError(HeteroScaleError):
    """A simulation broke one of its own invariants (e.g. served work faster than its performance model)."""


class BenchmarkRecordError(HeteroScaleError):
    """A recorded benchmark output or a README block generated from it is missing or malformed."""


class SloUnreachable(HeteroScaleError):
    """No load meets a service's SLO on the clusters a pressure test may use (its knee is 0 req/s)."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a mistyped ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
