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
import struct
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


# the per-request values a service keeps (request fidelity; the fluid engine keeps none): TTFT, TBT
# (multi-token outputs), end-to-end, queueing before the prefill starts, KV transfer (prefill end →
# transfer end) and SplitwiseSim's TTFT and TBT
PER_REQUEST = ("ttft", "tbt", "e2e", "queue", "xfer", "ttft_splitwise", "tbt_splitwise")


def _packed(values: list[float]) -> bytes:
    """``values`` as native doubles, the bytes of an ``array("d")`` of them (struct packs a list
    several times faster than numpy or ``array.extend``, which convert item by item)."""
    return struct.pack(f"{len(values)}d", *values)


class ServiceStats:
    """Run totals of one service plus the current telemetry window's completions."""

    __slots__ = (
        "arrivals",
        "closed",
        "completed",
        "failed",
        "failed_kv_capacity",
        "failed_scale_in",
        "met_slo",
        "tbt_slo_s",
        "ttft_slo_s",
        "w_arrivals",
        "w_e2e",
        "w_failed",
        "w_inputs",
        "w_met",
        "w_outputs",
        "w_queue",
        "w_tbt",
        "w_tbt_splitwise",
        "w_ttft",
        "w_ttft_splitwise",
        "w_xfer",
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
        # per-request values of the run, by name (PER_REQUEST): those of closed telemetry windows in
        # ``closed`` (8 bytes a value), the open window's in the ``w_<name>`` lists (a list append is
        # the cheap one per completion); ``values`` joins the two
        self.closed = {name: array("d") for name in PER_REQUEST}
        self.w_arrivals = 0
        self.w_ttft: list[float] = []
        self.w_tbt: list[float] = []
        self.w_e2e: list[float] = []
        self.w_queue: list[float] = []
        self.w_xfer: list[float] = []
        self.w_ttft_splitwise: list[float] = []
        self.w_tbt_splitwise: list[float] = []
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

    def values(self, name: str) -> array[float]:
        """Every value of ``name`` (one of PER_REQUEST) the run has recorded so far, in no set order."""
        out = array("d", self.closed[name])
        out.frombytes(_packed(getattr(self, f"w_{name}")))
        return out

    def complete(self, ttft_s: float, tbt_s: float | None, input_tokens: int, output_tokens: int) -> None:
        self.completed += 1
        self.w_ttft.append(ttft_s)
        ok = ttft_s <= self.ttft_slo_s
        if tbt_s is not None:
            self.w_tbt.append(tbt_s)
            ok = ok and tbt_s <= self.tbt_slo_s
        if ok:
            self.met_slo += 1
            self.w_met += 1
        self.w_inputs += input_tokens
        self.w_outputs += output_tokens

    def reset_window(self) -> None:
        for name, closed in self.closed.items():
            closed.frombytes(_packed(getattr(self, f"w_{name}")))
            setattr(self, f"w_{name}", [])
        self.w_arrivals = 0
        self.w_inputs = 0
        self.w_outputs = 0
        self.w_met = 0
        self.w_failed = 0
