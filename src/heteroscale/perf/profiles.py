"""Parse profiling tables (text in, :class:`ProfileRow` out). Pure: the caller reads the files.

Four formats ship as package data (``heteroscale/data/profiles``, see its ``LICENSES.md``):

* Splitwise ``perf_model.csv`` — measured, 2023 vLLM-era; one CSV line gives a prefill row
  (``prompt_time``: ``batch_size`` prompts of ``prompt_size`` tokens) and a decode row
  (``token_time``: one step of ``batch_size`` sequences).
* AIConfigurator estimates — ``static_ctx`` is the prefill of one ``isl``-token prompt at batch 1
  (``ttft_ms``), ``static_gen`` one decode step at batch 64 (``tpot_ms``).
* GPU kernel times (``h200_kernel_times.csv``) — measured GPU time of one forward pass, no host
  overhead (rows are ``kernel_only``): a prefill of ``new_tokens`` over ``cached_tokens`` cached ones,
  or a decode step of ``batch`` sequences of ``ctx_per_seq`` tokens (:mod:`.profile_formats`).
* DistServe's fitted A100 profiles (``profiler-a100-80g.*.json``) — coefficients fitted to
  measurements, evaluated on the grid DistServe measured (:mod:`.profile_formats`).

Decode context: a decode step's KV read depends on the batch's total context, which the tables do
not give per step. We use the mid-generation average, ``batch · (prompt + output // 2)``: for
Splitwise the step time is averaged over the whole generation, and the average step sees half of
the output tokens in the cache; AIConfigurator's TPOT is likewise an average over OSL.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass

from heteroscale.domain.hardware import Role

SPLITWISE_HARDWARE: Mapping[str, str] = {
    "a100-80gb": "a100-80g",
    "h100-80gb": "h100-sxm",
}
"""Splitwise hardware names → catalog SKU ids. ``h100-80gb-pcap`` (power-capped) has no SKU."""

SPLITWISE_MODELS: Mapping[str, str] = {"llama2-70b": "llama2-70b"}

AICONFIGURATOR_HARDWARE: Mapping[str, str] = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200",
    "a100_sxm": "a100-80g",
    "l40s": "l40s",
    "b200_sxm": "b200",
}

AICONFIGURATOR_MODELS: Mapping[str, str] = {
    "Qwen/Qwen3-8B": "qwen3-8b",
    "Qwen/Qwen3-32B": "qwen3-32b",
    "meta-llama/Meta-Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Meta-Llama-3.1-70B": "llama-3.1-70b",
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b",
}

SPLITWISE_COPIED_DECODE_HARDWARE = frozenset({"h100-80gb-pcap"})
"""Hardware whose ``token_time`` column is a copy of another machine's (not measured)."""

_SPLITWISE_COLUMNS = (
    "model",
    "hardware",
    "prompt_size",
    "batch_size",
    "token_size",
    "prompt_time",
    "token_time",
    "tensor_parallel",
)
_AIC_COLUMNS = ("model", "system", "tp", "mode", "batch_size", "isl", "osl", "ttft_ms", "tpot_ms")


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One timed step: a prefill batch or a decode step, on one (model, SKU, TP).

    Prefill: ``batch`` prompts of ``prompt_tokens`` uncached tokens each over ``cached_tokens``
    cached ones (``context_tokens = 0``). Decode: one step of ``batch`` sequences whose KV totals
    ``context_tokens``. ``sku_id``/``model_id`` are catalog ids where the source name is known, else
    the source's spelling (lower-case for hardware); ``hardware`` keeps the source's spelling.
    ``measured`` is False for estimates and for columns known to be copied rather than measured.
    ``kernel_only`` rows time GPU kernels alone (no host overhead) and are scored against kernel time.
    """

    model_id: str
    sku_id: str
    tp: int
    phase: Role
    prompt_tokens: int
    batch: int
    context_tokens: int
    time_s: float
    source: str
    output_tokens: int = 0
    measured: bool = True
    hardware: str = ""
    cached_tokens: int = 0
    kernel_only: bool = False

    @property
    def new_tokens(self) -> int:
        """Uncached prompt tokens of a prefill row (0 for decode rows)."""
        return self.batch * self.prompt_tokens if self.phase is Role.PREFILL else 0

    @property
    def attn_units(self) -> float:
        """``Σ new·(cached + new)`` of a prefill row (0 for decode rows)."""
        if self.phase is not Role.PREFILL:
            return 0.0
        return float(self.batch) * float(self.prompt_tokens) * float(self.cached_tokens + self.prompt_tokens)

    @property
    def prefix_units(self) -> float:
        """``Σ new·cached`` of a prefill row (0 for decode rows and fresh prompts)."""
        if self.phase is not Role.PREFILL:
            return 0.0
        return float(self.batch) * float(self.prompt_tokens) * float(self.cached_tokens)


def decode_context_tokens(batch: int, prompt_tokens: int, output_tokens: int) -> int:
    """Mid-generation total context of a decode batch: ``batch · (prompt + output // 2)``."""
    return batch * (prompt_tokens + output_tokens // 2)


def records(text: str, required: tuple[str, ...], source_name: str) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{source_name}: missing column(s) {', '.join(missing)}")
    return [(index + 2, record) for index, record in enumerate(reader)]


def number(record: dict[str, str], column: str, source_name: str, line: int) -> float:
    raw = (record.get(column) or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{source_name}:{line}: column {column!r} is not a number: {raw!r}") from None
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{source_name}:{line}: column {column!r} must be >= 0, got {raw!r}")
    return value


def integer(record: dict[str, str], column: str, source_name: str, line: int) -> int:
    value = number(record, column, source_name, line)
    if value != int(value):
        raise ValueError(f"{source_name}:{line}: column {column!r} must be an integer, got {value}")
    return int(value)


def parse_splitwise_csv(
    text: str,
    source_name: str,
    hardware_aliases: Mapping[str, str] | None = None,
    model_aliases: Mapping[str, str] | None = None,
) -> list[ProfileRow]:
    """Splitwise ``perf_model.csv`` text → prefill and decode rows (two per CSV line), file order.

    Times are converted from ms to s. Decode rows of ``h100-80gb-pcap`` are marked
    ``measured=False`` (its ``token_time`` is a copy of ``h100-80gb``). Raises ``ValueError`` naming
    ``source_name`` and the line for malformed input.
    """
    hw_map = SPLITWISE_HARDWARE if hardware_aliases is None else hardware_aliases
    model_map = SPLITWISE_MODELS if model_aliases is None else model_aliases
    rows: list[ProfileRow] = []
    for line, record in records(text, _SPLITWISE_COLUMNS, source_name):
        hardware = (record["hardware"] or "").strip()
        model_name = (record["model"] or "").strip()
        sku_id = hw_map.get(hardware, hardware.lower())
        model_id = model_map.get(model_name, model_name)
        prompt = integer(record, "prompt_size", source_name, line)
        batch = integer(record, "batch_size", source_name, line)
        output = integer(record, "token_size", source_name, line)
        tp = integer(record, "tensor_parallel", source_name, line)
        if batch < 1 or tp < 1 or prompt < 1:
            raise ValueError(f"{source_name}:{line}: prompt_size, batch_size and tensor_parallel must be >= 1")
        for phase, column, context, measured in (
            (Role.PREFILL, "prompt_time", 0, True),
            (
                Role.DECODE,
                "token_time",
                decode_context_tokens(batch, prompt, output),
                hardware not in SPLITWISE_COPIED_DECODE_HARDWARE,
            ),
        ):
            rows.append(
                ProfileRow(
                    model_id=model_id,
                    sku_id=sku_id,
                    tp=tp,
                    phase=phase,
                    prompt_tokens=prompt,
                    batch=batch,
                    context_tokens=context,
                    time_s=number(record, column, source_name, line) / 1e3,
                    source=source_name,
                    output_tokens=output,
                    measured=measured,
                    hardware=hardware,
                )
            )
    return rows


def parse_aiconfigurator_csv(
    text: str,
    source_name: str,
    hardware_aliases: Mapping[str, str] | None = None,
    model_aliases: Mapping[str, str] | None = None,
) -> list[ProfileRow]:
    """AIConfigurator estimates text → rows (``measured=False``), file order.

    ``static_ctx``: prefill of ``batch_size`` prompts of ``isl`` tokens, time ``ttft_ms``.
    ``static_gen``: one decode step of ``batch_size`` sequences at context
    ``batch · (isl + osl // 2)``, time ``tpot_ms``. Other modes raise ``ValueError``.
    """
    hw_map = AICONFIGURATOR_HARDWARE if hardware_aliases is None else hardware_aliases
    model_map = AICONFIGURATOR_MODELS if model_aliases is None else model_aliases
    rows: list[ProfileRow] = []
    for line, record in records(text, _AIC_COLUMNS, source_name):
        system = (record["system"] or "").strip()
        model_name = (record["model"] or "").strip()
        mode = (record["mode"] or "").strip()
        tp = integer(record, "tp", source_name, line)
        batch = integer(record, "batch_size", source_name, line)
        isl = integer(record, "isl", source_name, line)
        osl = integer(record, "osl", source_name, line)
        if batch < 1 or tp < 1 or isl < 1:
            raise ValueError(f"{source_name}:{line}: tp, batch_size and isl must be >= 1")
        if mode == "static_ctx":
            phase = Role.PREFILL
            context = 0
            time_s = number(record, "ttft_ms", source_name, line) / 1e3
        elif mode == "static_gen":
            phase = Role.DECODE
            context = decode_context_tokens(batch, isl, osl)
            time_s = number(record, "tpot_ms", source_name, line) / 1e3
        else:
            raise ValueError(f"{source_name}:{line}: unknown mode {mode!r} (static_ctx or static_gen)")
        rows.append(
            ProfileRow(
                model_id=model_map.get(model_name, model_name),
                sku_id=hw_map.get(system, system.lower()),
                tp=tp,
                phase=phase,
                prompt_tokens=isl,
                batch=batch,
                context_tokens=context,
                time_s=time_s,
                source=source_name,
                output_tokens=osl,
                measured=False,
                hardware=system,
            )
        )
    return rows
