"""The columnar request trace: one numpy array per column (arrival time, input tokens, output tokens,
optionally prefix-cache hit tokens), so the simulator can replay hundreds of thousands of requests
without a Python object per request. Arrays are shared, not copied, between derived traces: treat
them as read-only. Readers live in :mod:`heteroscale.sim.traces`, which re-exports this type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from heteroscale.errors import ConfigError, TraceError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class RequestTrace:
    """Requests as parallel columns, sorted by arrival (stable).

    ``eq=False``: equality is identity (comparing arrays element-wise has no single truth value);
    compare the columns with ``numpy.array_equal``.
    """

    name: str
    arrival_s: FloatArray  # float64, ascending, relative seconds
    input_tokens: IntArray  # int64 ≥ 1
    output_tokens: IntArray  # int64 ≥ 1
    cached_tokens: IntArray | None  # int64 in [0, input_tokens − 1]: prefix-cache hits; None = unknown
    skipped_rows: int = 0  # bad rows skipped under skip_bad_rows
    failed_rows_excluded: int = 0  # BurstGPT failed requests (0 response tokens) left out

    def __post_init__(self) -> None:
        arrival = np.ascontiguousarray(self.arrival_s, dtype=np.float64)
        inp = np.ascontiguousarray(self.input_tokens, dtype=np.int64)
        out = np.ascontiguousarray(self.output_tokens, dtype=np.int64)
        object.__setattr__(self, "arrival_s", arrival)
        object.__setattr__(self, "input_tokens", inp)
        object.__setattr__(self, "output_tokens", out)
        n = arrival.shape[0]
        if arrival.ndim != 1 or inp.shape != (n,) or out.shape != (n,):
            raise TraceError(f"{self.name}: columns must be 1-D and of equal length")
        if n and not bool(np.isfinite(arrival).all()):
            raise TraceError(f"{self.name}: arrival_s holds a non-finite value")
        if n > 1 and not bool((arrival[1:] >= arrival[:-1]).all()):
            raise TraceError(f"{self.name}: arrival_s is not sorted ascending")
        if n and (int(inp.min()) < 1 or int(out.min()) < 1):
            raise TraceError(f"{self.name}: token counts must be ≥ 1")
        if self.cached_tokens is not None:
            cached = np.ascontiguousarray(self.cached_tokens, dtype=np.int64)
            object.__setattr__(self, "cached_tokens", cached)
            if cached.shape != (n,):
                raise TraceError(f"{self.name}: cached_tokens must match the other columns")
            if n and (int(cached.min()) < 0 or bool((cached >= inp).any())):
                raise TraceError(f"{self.name}: cached_tokens must lie in [0, input_tokens - 1]")

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def duration_s(self) -> float:
        """Last arrival minus first arrival (0.0 for fewer than two requests)."""
        if self.arrival_s.shape[0] < 2:
            return 0.0
        return float(self.arrival_s[-1] - self.arrival_s[0])

    @property
    def mean_rps(self) -> float:
        """Requests per second over ``duration_s`` (0.0 when the span is zero)."""
        span_s = self.duration_s
        return len(self) / span_s if span_s > 0 else 0.0

    def slice_time(self, start_s: float, end_s: float, rebase: bool = True) -> RequestTrace:
        """Requests with ``start_s <= arrival < end_s``; ``rebase`` subtracts ``start_s``."""
        if not (math.isfinite(start_s) and not math.isnan(end_s) and end_s >= start_s):
            raise ConfigError(f"{self.name}: bad time slice [{start_s}, {end_s})")
        lo = int(np.searchsorted(self.arrival_s, start_s, side="left"))
        hi = int(np.searchsorted(self.arrival_s, end_s, side="left"))
        arrival = self.arrival_s[lo:hi]
        return RequestTrace(
            name=f"{self.name}[{start_s:g}:{end_s:g}]",
            arrival_s=arrival - start_s if rebase else arrival,
            input_tokens=self.input_tokens[lo:hi],
            output_tokens=self.output_tokens[lo:hi],
            cached_tokens=None if self.cached_tokens is None else self.cached_tokens[lo:hi],
            skipped_rows=self.skipped_rows,
            failed_rows_excluded=self.failed_rows_excluded,
        )

    def scale_time(self, compression: float) -> RequestTrace:
        """Divide every arrival by ``compression`` (> 1 plays the trace faster)."""
        if not (math.isfinite(compression) and compression > 0):
            raise ConfigError(f"{self.name}: time compression must be a positive number, got {compression}")
        return RequestTrace(
            name=self.name if compression == 1 else f"{self.name}/{compression:g}",
            arrival_s=self.arrival_s / compression,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_tokens=self.cached_tokens,
            skipped_rows=self.skipped_rows,
            failed_rows_excluded=self.failed_rows_excluded,
        )
