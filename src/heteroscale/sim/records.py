"""Per-request outcomes: streamed to a CSV file as the run goes, summarised without keeping requests.

Latency definitions (used everywhere): TTFT = arrival → first output token (prefill queue, prefill,
KV transfer and decode admission included); a request's TBT = mean gap between its output tokens
after the first (None for one-token outputs); a request meets its SLO when TTFT ≤ TTFT-SLO and
TBT ≤ TBT-SLO; a failed or unfinished request is a miss.

SplitwiseSim's metrics, as it computes them: ``ttft_splitwise`` = prefill end − arrival (no KV
transfer); ``tbt_splitwise`` = (completion − prefill end) / output tokens, one value per request — an
average that includes the KV transfer and any decode-side wait, divided by every output token, the
first included.

Every failed request has one cause (:class:`FailureCause`); the records CSV writes its status as
``failed:<cause>`` (``ok``, ``unfinished`` otherwise), always the last column.

Phase columns of the CSV (request fidelity; empty where the phase did not happen): ``prefill_queued_s``
(routed to a prefill instance), ``prefill_start_s`` (its first chunk starts), ``prefill_end_s``,
``transfer_start_s`` / ``transfer_end_s`` (equal when prompt and decode shared an instance),
``decode_admit_s`` (joins a decode batch: its first token, so ``first_token_s`` is the same time),
``preemptions`` and ``lent`` (1: the mixed pool ran one of its phases on the other pool). TTFT splits
exactly into queueing (prefill start − arrival), prefill (end − start), transfer (transfer end −
prefill end, NIC queue and the wait for a routable decode instance included) and admission
(first token − transfer end). The fluid engine writes no records.
"""

from __future__ import annotations

import gzip
from array import array
from enum import StrEnum
from pathlib import Path
from typing import IO

from heteroscale.errors import ConfigError

RECORD_HEADER = (
    "request,service,arrival_s,input_tokens,output_tokens,cached_tokens,prefill_instance,"
    "decode_instance,ttft_s,tbt_s,finish_s,prefill_queued_s,prefill_start_s,prefill_end_s,transfer_start_s,"
    "transfer_end_s,decode_admit_s,first_token_s,tbt_splitwise_s,preemptions,lent,status\n"
)


class FailureCause(StrEnum):
    """Why a request failed."""

    # scale-in: the instance serving it was killed (KILL, a drain deadline, a removed starting
    # instance) or its KV cache was lost in flight (the sending prefill instance was killed)
    SCALE_IN = "scale-in"
    # its prompt plus output can never fit any routable decode instance's KV cache
    KV_CAPACITY = "kv-capacity"


def open_records(out_dir: Path, mode: str) -> IO[str] | None:
    """The stream of a run's request records in ``out_dir``: ``plain`` (requests.csv), ``gzip``
    (requests.csv.gz, for large runs) or ``off`` (None)."""
    if mode == "off":
        return None
    if mode == "gzip":
        return gzip.open(out_dir / "requests.csv.gz", "wt", encoding="utf-8")
    if mode != "plain":
        raise ConfigError(f"requests_csv must be plain, gzip or off, not {mode!r}")
    return (out_dir / "requests.csv").open("w", encoding="utf-8")


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
        "e2e_values",
        "failed",
        "failed_kv_capacity",
        "failed_scale_in",
        "met_slo",
        "queue_values",
        "tbt_slo_s",
        "tbt_splitwise_values",
        "tbt_values",
        "ttft_slo_s",
        "ttft_splitwise_values",
        "ttft_values",
        "w_arrivals",
        "w_failed",
        "w_inputs",
        "w_met",
        "w_outputs",
        "w_tbt",
        "w_ttft",
        "xfer_values",
    )

    def __init__(self, ttft_slo_s: float, tbt_slo_s: float) -> None:
        self.ttft_slo_s = ttft_slo_s
        self.tbt_slo_s = tbt_slo_s
        self.arrivals = 0
        self.completed = 0
        self.failed = 0  # every cause: failed_scale_in + failed_kv_capacity
        self.failed_scale_in = 0
        self.failed_kv_capacity = 0
        self.met_slo = 0
        self.ttft_values = array("d")
        self.tbt_values = array("d")
        # request fidelity only (the fluid engine leaves them empty): end-to-end, queueing before the
        # prefill starts, KV transfer (prefill end → transfer end) and SplitwiseSim's TBT
        self.e2e_values = array("d")
        self.queue_values = array("d")
        self.xfer_values = array("d")
        self.tbt_splitwise_values = array("d")
        self.ttft_splitwise_values = array("d")
        self.w_arrivals = 0
        self.w_ttft: list[float] = []
        self.w_tbt: list[float] = []
        self.w_inputs = 0
        self.w_outputs = 0
        self.w_met = 0  # completions of the window that met both SLOs
        self.w_failed = 0  # failures of the window

    def failed_by_cause(self) -> dict[str, int]:
        return {
            FailureCause.SCALE_IN.value: self.failed_scale_in,
            FailureCause.KV_CAPACITY.value: self.failed_kv_capacity,
        }

    def fail(self, cause: FailureCause) -> None:
        self.failed += 1
        self.w_failed += 1
        if cause is FailureCause.SCALE_IN:
            self.failed_scale_in += 1
        else:
            self.failed_kv_capacity += 1

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
            self.w_met += 1
        self.w_inputs += input_tokens
        self.w_outputs += output_tokens

    def reset_window(self) -> None:
        self.w_arrivals = 0
        self.w_ttft = []
        self.w_tbt = []
        self.w_inputs = 0
        self.w_outputs = 0
        self.w_met = 0
        self.w_failed = 0
