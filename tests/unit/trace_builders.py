"""Builders shared by the traces tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from heteroscale.sim.traces import (
    RateCurve,
    RequestTrace,
)

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
CURVE_HEADER = "window_start_s,total_rate_rps,active_clients"


# ---------------------------------------------------------------- builders


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def azure_text(*rows: str, header: str = AZURE_HEADER, newline: str = "\n") -> str:
    return newline.join([header, *rows]) + newline


def mooncake_text(*records: dict[str, object]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def mc(timestamp: float, inp: int = 1000, out: int = 10, ids: list[int] | None = None) -> dict[str, object]:
    record: dict[str, object] = {"timestamp": timestamp, "input_length": inp, "output_length": out}
    if ids is not None:
        record["hash_ids"] = ids
    return record


def burst_row(t: float, req: int, resp: int, model: str = "ChatGPT", log: str = "Conversation log") -> str:
    return f"{t},{model},{req},{resp},{req + resp},{log}"


def make_trace(
    arrival_s: list[float],
    input_tokens: list[int] | None = None,
    output_tokens: list[int] | None = None,
    cached_tokens: list[int] | None = None,
    name: str = "t",
) -> RequestTrace:
    n = len(arrival_s)
    return RequestTrace(
        name=name,
        arrival_s=np.asarray(arrival_s, dtype=np.float64),
        input_tokens=np.asarray(input_tokens or [100] * n, dtype=np.int64),
        output_tokens=np.asarray(output_tokens or [10] * n, dtype=np.int64),
        cached_tokens=None if cached_tokens is None else np.asarray(cached_tokens, dtype=np.int64),
    )


def make_curve(rates: list[float], window_s: float = 600.0, start_s: float = 0.0) -> RateCurve:
    starts = start_s + window_s * np.arange(len(rates), dtype=np.float64)
    return RateCurve(name="c", window_start_s=starts, rate_rps=np.asarray(rates, dtype=np.float64), window_s=window_s)


def lengths_table(n: int = 50) -> RequestTrace:
    """Rows whose columns are tied (output = 2·input, cached = input − 1) to check joint resampling."""
    inp = list(range(1, n + 1))
    return make_trace(
        [0.0] * n, input_tokens=inp, output_tokens=[2 * i for i in inp], cached_tokens=[i - 1 for i in inp]
    )
