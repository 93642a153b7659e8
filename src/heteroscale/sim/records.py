"""Per-request outcomes: streamed to a CSV file as the run goes, summarised without keeping requests.

Latency definitions (used everywhere): TTFT = arrival → first output token (prefill queue, prefill,
KV transfer and decode admission included); a request's TBT = mean gap between its output tokens
after the first (None for one-token outputs); a request meets its SLO when TTFT ≤ TTFT-SLO and
TBT ≤ TBT-SLO; a failed or unfinished request is a miss.
"""

from __future__ import annotations

from array import array
from typing import IO

RECORD_HEADER = (
    "request,service,arrival_s,input_tokens,output_tokens,cached_tokens,prefill_instance,"
    "decode_instance,ttft_s,tbt_s,finish_s,status\n"
)


class RecordWriter:
    """Writes one CSV line per finished (or failed) request; a no-op when there is no file."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._stream = stream
        if stream is not None:
            stream.write(RECORD_HEADER)

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def write(self, line: str) -> None:
        if self._stream is not None:
            self._stream.write(line)


class ServiceStats:
    """Run totals of one service plus the current telemetry window's completions."""

    __slots__ = (
        "arrivals",
        "completed",
        "failed",
        "met_slo",
        "tbt_slo_s",
        "tbt_values",
        "ttft_slo_s",
        "ttft_values",
        "w_arrivals",
        "w_inputs",
        "w_outputs",
        "w_tbt",
        "w_ttft",
    )

    def __init__(self, ttft_slo_s: float, tbt_slo_s: float) -> None:
        self.ttft_slo_s = ttft_slo_s
        self.tbt_slo_s = tbt_slo_s
        self.arrivals = 0
        self.completed = 0
        self.failed = 0
        self.met_slo = 0
        self.ttft_values = array("d")
        self.tbt_values = array("d")
        self.w_arrivals = 0
        self.w_ttft: list[float] = []
        self.w_tbt: list[float] = []
        self.w_inputs = 0
        self.w_outputs = 0

    def complete(self, ttft_s: float, tbt_s: float | None, input_tokens: int, output_tokens: int) -> None:
        self.completed += 1
        self.ttft_values.append(ttft_s)
        self.w_ttft.append(ttft_s)
        ok = ttft_s <= self.ttft_slo_s
        if tbt_s is not None:
            self.tbt_values.append(tbt_s)
            self.w_tbt.append(tbt_s)
            ok = ok and tbt_s <= self.tbt_slo_s
        if ok:
            self.met_slo += 1
        self.w_inputs += input_tokens
        self.w_outputs += output_tokens

    def reset_window(self) -> None:
        self.w_arrivals = 0
        self.w_ttft = []
        self.w_tbt = []
        self.w_inputs = 0
        self.w_outputs = 0
