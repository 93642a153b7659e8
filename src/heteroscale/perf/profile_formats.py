"""Two more profile formats: GPU kernel times (CSV) and DistServe's fitted profiles (JSON).

Pure, text in, :class:`~heteroscale.perf.profiles.ProfileRow` out; names are kept as the file spells
them (the caller resolves them against the catalog).

* **Kernel times** (the format of ``h200_kernel_times.csv``): columns ``model, sku, tp, phase``,
  ``kernel_ms_median`` and, per phase, ``new_tokens`` / ``cached_tokens`` (prefill: one prompt of
  ``new_tokens`` uncached tokens over ``cached_tokens`` cached ones; ``batch`` prompts if given) or
  ``batch`` / ``ctx_per_seq`` (decode: one step of ``batch`` sequences of ``ctx_per_seq`` cached
  tokens each). Other columns (``run``, ``kernel_ms_min``) are ignored. The rows time GPU kernels
  only — no host launch gaps, no scheduling — so they are ``kernel_only``.
* **DistServe profiles** (``profiler-a100-80g.distserve.json`` / ``.vllm.json``): per model and TP,
  coefficients fitted (least squares on relative error) to step times DistServe measured on A100-80G:
  prefill ms ``a + b·Σlen + c·Σlen²``; decode ms ``a + b·Σlen + c·batch`` with separate coefficients
  for ``batch ≤ threshold`` and above. The JSON holds no measurements, so rows are the fit evaluated
  on the grid DistServe measured (its ``evaluation/0-test-single-forward-performance/main.py``):
  batch sizes 1–192 × prompt lengths 4–2020 with ``batch · ceil16(len)`` under a per-(model, TP)
  token limit, 16 output tokens. A decode row's context is mid-generation, ``batch · (len + 8)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from heteroscale.domain.hardware import Role
from heteroscale.perf.profiles import ProfileRow, decode_context_tokens, integer, number, records

_KERNEL_COLUMNS = ("model", "sku", "tp", "phase", "kernel_ms_median")

DISTSERVE_BATCHES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 96, 128, 160, 192)
DISTSERVE_PROMPT_LENS: tuple[int, ...] = (4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 284, 512, 768, 1024, 1536, 2020)
DISTSERVE_OUTPUT_TOKENS = 16
DISTSERVE_TOKEN_LIMITS: Mapping[tuple[str, int], int] = {
    ("facebook/opt-13b", 1): 49152,
    ("facebook/opt-13b", 2): 98304,
    ("facebook/opt-13b", 4): 250000,
    ("facebook/opt-66b", 2): 8192,
    ("facebook/opt-66b", 3): 36864,
    ("facebook/opt-66b", 4): 65000,
}
"""Tokens per batch DistServe profiled per (model, TP). OPT-66B at TP8 is in the JSON but not in the
profiling script; it gets the TP4 limit (assumption)."""
DISTSERVE_DEFAULT_LIMIT = 65000


def _optional_int(record: dict[str, str], column: str, default: int, source_name: str, line: int) -> int:
    if not (record.get(column) or "").strip():
        return default
    return integer(record, column, source_name, line)


def parse_kernel_times_csv(text: str, source_name: str) -> list[ProfileRow]:
    """Kernel-time CSV text → ``kernel_only`` rows in file order; ``ValueError`` names the line."""
    rows: list[ProfileRow] = []
    for line, record in records(text, _KERNEL_COLUMNS, source_name):
        model = (record["model"] or "").strip()
        sku = (record["sku"] or "").strip()
        phase_name = (record["phase"] or "").strip().lower()
        tp = integer(record, "tp", source_name, line)
        time_s = number(record, "kernel_ms_median", source_name, line) / 1e3
        if tp < 1 or time_s <= 0.0 or not model or not sku:
            raise ValueError(f"{source_name}:{line}: model and sku must be given, tp >= 1, kernel_ms_median > 0")
        if phase_name == "prefill":
            new = integer(record, "new_tokens", source_name, line)
            cached = _optional_int(record, "cached_tokens", 0, source_name, line)
            batch = _optional_int(record, "batch", 1, source_name, line)
            if new < 1 or batch < 1:
                raise ValueError(f"{source_name}:{line}: a prefill row needs new_tokens >= 1 and batch >= 1")
            phase, prompt, context = Role.PREFILL, new, 0
        elif phase_name == "decode":
            batch = integer(record, "batch", source_name, line)
            prompt = integer(record, "ctx_per_seq", source_name, line)
            if batch < 1:
                raise ValueError(f"{source_name}:{line}: a decode row needs batch >= 1")
            phase, cached, context = Role.DECODE, 0, batch * prompt
        else:
            raise ValueError(f"{source_name}:{line}: phase must be prefill or decode, got {phase_name!r}")
        rows.append(
            ProfileRow(
                model_id=model,
                sku_id=sku.lower(),
                tp=tp,
                phase=phase,
                prompt_tokens=prompt,
                batch=batch,
                context_tokens=context,
                time_s=time_s,
                source=source_name,
                hardware=sku,
                cached_tokens=cached,
                kernel_only=True,
            )
        )
    return rows


def _coefficients(entry: Mapping[str, Any], key: str, where: str) -> tuple[float, float, float]:
    value = entry.get(key)
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"{where}: {key!r} must be a list of three numbers")
    try:
        a, b, c = (float(x) for x in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key!r} must be a list of three numbers") from None
    if not all(math.isfinite(x) for x in (a, b, c)):
        raise ValueError(f"{where}: {key!r} has a non-finite coefficient")
    return a, b, c


def _grid(limit: int) -> list[tuple[int, int]]:
    return [
        (batch, length)
        for batch in DISTSERVE_BATCHES
        for length in DISTSERVE_PROMPT_LENS
        if batch * ((length + 15) // 16 * 16) <= limit
    ]


def parse_distserve_json(
    text: str,
    source_name: str,
    hardware: str = "a100-80g",
    limits: Mapping[tuple[str, int], int] | None = None,
) -> list[ProfileRow]:
    """DistServe profile JSON text → prefill and decode rows on the profiled grid (ms → s).

    Rows whose fitted time is not positive are left out (a fit can go negative far from its data).
    Raises ``ValueError`` naming ``source_name`` and the entry for malformed input.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source_name}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict) or not document:
        raise ValueError(f"{source_name}: expected an object of models, each an object of TP degrees")
    token_limits = DISTSERVE_TOKEN_LIMITS if limits is None else limits
    rows: list[ProfileRow] = []
    for model, by_tp in document.items():
        if not isinstance(by_tp, dict):
            raise ValueError(f"{source_name}: {model!r} must map TP degrees to coefficients")
        for tp_text, entry in by_tp.items():
            where = f"{source_name}: {model} tp={tp_text}"
            if not str(tp_text).isdigit() or int(tp_text) < 1 or not isinstance(entry, dict):
                raise ValueError(f"{where}: expected a TP degree >= 1 mapping to coefficients")
            tp = int(tp_text)
            threshold = entry.get("decoding_large_small_bs_threshold")
            if not isinstance(threshold, int | float) or threshold < 1:
                raise ValueError(f"{where}: 'decoding_large_small_bs_threshold' must be a number >= 1")
            prefill = _coefficients(entry, "prefill", where)
            small = _coefficients(entry, "decoding_smallbs", where)
            large = _coefficients(entry, "decoding_largebs", where)
            limit = token_limits.get((model, tp), DISTSERVE_DEFAULT_LIMIT)
            rows.extend(_grid_rows(model, hardware, tp, prefill, (small, large), threshold, limit, source_name))
    return rows


def _grid_rows(
    model: str,
    hardware: str,
    tp: int,
    prefill: Sequence[float],
    decode: tuple[Sequence[float], Sequence[float]],
    threshold: float,
    limit: int,
    source_name: str,
) -> list[ProfileRow]:
    rows: list[ProfileRow] = []
    for batch, length in _grid(limit):
        tokens = batch * length
        a, b, c = prefill
        prefill_ms = a + b * tokens + c * batch * length * length
        a, b, c = decode[0] if batch <= threshold else decode[1]
        decode_ms = a + b * tokens + c * batch
        context = decode_context_tokens(batch, length, DISTSERVE_OUTPUT_TOKENS)
        for phase, time_ms, ctx in ((Role.PREFILL, prefill_ms, 0), (Role.DECODE, decode_ms, context)):
            if time_ms <= 0.0:
                continue
            rows.append(
                ProfileRow(
                    model_id=model,
                    sku_id=hardware,
                    tp=tp,
                    phase=phase,
                    prompt_tokens=length,
                    batch=batch,
                    context_tokens=ctx,
                    time_s=time_ms / 1e3,
                    source=source_name,
                    output_tokens=DISTSERVE_OUTPUT_TOKENS,
                    hardware=hardware,
                )
            )
    return rows
