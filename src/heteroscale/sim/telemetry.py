"""Telemetry: per-service, per-role signals sampled every window, as a time series.

Meanings follow HETEROSCALE.md "What the signals mean": prefill TPS counts cache-missed prompt
tokens, decode TPS counts generated tokens; GPU utilisation is the fraction of time a kernel runs
(host gaps between steps excluded); SM activity is that busy fraction times a per-phase occupancy;
compute efficiency is achieved / peak FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation, RoleSignals


class SortedValues(Protocol):
    """What :func:`percentile` reads: a sorted list, or a sorted numpy array."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> float: ...


def percentile(sorted_values: SortedValues, q: float) -> float | None:
    """Nearest-rank-interpolated percentile of an already sorted list; None when empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    if n == 1:
        return sorted_values[0]
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_values[lo] * (1.0 - frac) + sorted_values[hi] * frac


@dataclass(frozen=True, slots=True)
class RoleWindow:
    instances_ready: int
    instances_starting: int
    instances_draining: int
    tps: float
    gpu_util: float | None
    sm_activity: float | None
    compute_efficiency: float | None
    queue_len: float
    running: float
    kv_usage: float | None
    instances_held: int = 0  # Ready but out of service discovery (gated or soft-removed)
    queue_len_mean: float | None = None  # queue_len / running averaged over the window (1 s samples)
    running_mean: float | None = None


@dataclass(frozen=True, slots=True)
class WindowRow:
    t_s: float  # end of the window
    window_s: float
    service: str
    prefill: RoleWindow
    decode: RoleWindow
    arrivals_per_s: float
    completions: int
    ttft_p50_s: float | None
    ttft_p90_s: float | None
    ttft_p99_s: float | None
    tbt_p50_s: float | None
    tbt_p90_s: float | None
    tbt_p99_s: float | None
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    estimated_latency: bool = False
    # requests completed in the window that met both the TTFT and the TBT SLO (the rule of
    # ServiceStats.met_slo); and those that missed one, plus requests failed in the window. Fluid
    # fidelity: estimates, rounded so that over a run Σ slo_met ≈ met_slo.
    slo_met: int = 0
    slo_missed: int = 0

    def role(self, role: Role) -> RoleWindow:
        return self.prefill if role is Role.PREFILL else self.decode

    def flat(self) -> dict[str, float | int | str | bool | None]:
        out: dict[str, float | int | str | bool | None] = {
            "t_s": self.t_s,
            "service": self.service,
            "arrivals_per_s": self.arrivals_per_s,
            "completions": self.completions,
            "ttft_p50_s": self.ttft_p50_s,
            "ttft_p90_s": self.ttft_p90_s,
            "ttft_p99_s": self.ttft_p99_s,
            "tbt_p50_s": self.tbt_p50_s,
            "tbt_p90_s": self.tbt_p90_s,
            "tbt_p99_s": self.tbt_p99_s,
            "estimated_latency": self.estimated_latency,
            "slo_met": self.slo_met,
            "slo_missed": self.slo_missed,
        }
        for role in Role:
            rw = self.role(role)
            p = role.value
            out[f"{p}_ready"] = rw.instances_ready
            out[f"{p}_starting"] = rw.instances_starting
            out[f"{p}_draining"] = rw.instances_draining
            out[f"{p}_held"] = rw.instances_held
            out[f"{p}_tps"] = rw.tps
            out[f"{p}_gpu_util"] = rw.gpu_util
            out[f"{p}_sm_activity"] = rw.sm_activity
            out[f"{p}_compute_efficiency"] = rw.compute_efficiency
            out[f"{p}_queue_len"] = rw.queue_len
            out[f"{p}_running"] = rw.running
            out[f"{p}_kv_usage"] = rw.kv_usage
        return out


class Telemetry:
    """Keeps the time series (a few thousand rows for a day) and answers observations."""

    def __init__(self, service_names: list[str]) -> None:
        self.service_names = service_names
        self.rows: list[WindowRow] = []
        self._by_service: dict[str, list[WindowRow]] = {s: [] for s in service_names}

    def add(self, row: WindowRow) -> None:
        self.rows.append(row)
        self._by_service[row.service].append(row)

    def series(self, service: str) -> list[WindowRow]:
        return self._by_service[service]

    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        """Aggregate the rows of the last ``window_s`` seconds into an Observation."""
        rows = [r for r in reversed(self._by_service.get(service, [])[-64:]) if r.t_s > now_s - window_s - 1e-9]
        rows = [r for r in rows if r.t_s <= now_s + 1e-9]
        if not rows:
            empty = RoleSignals(instances_ready=0, tps=None)
            return Observation(
                service=service,
                window_start_s=now_s - window_s,
                window_end_s=now_s,
                prefill=empty,
                decode=empty,
                stale=True,
                missing=("no telemetry window ends in the observation window",),
            )
        latest = rows[0]
        span = sum(r.window_s for r in rows)

        def wavg(values: list[tuple[float | None, float]]) -> float | None:
            pairs = [(v, w) for v, w in values if v is not None]
            total_w = sum(w for _, w in pairs)
            if not pairs or total_w <= 0:
                return None
            return sum(v * w for v, w in pairs) / total_w

        def role_signals(role: Role) -> RoleSignals:
            ws = [(r.role(role), r.window_s) for r in rows]
            return RoleSignals(
                instances_ready=latest.role(role).instances_ready,
                tps=wavg([(w.tps, s) for w, s in ws]),
                gpu_util=wavg([(w.gpu_util, s) for w, s in ws]),
                sm_activity=wavg([(w.sm_activity, s) for w, s in ws]),
                compute_efficiency=wavg([(w.compute_efficiency, s) for w, s in ws]),
                queue_len=latest.role(role).queue_len,
                running=latest.role(role).running,
                kv_usage=latest.role(role).kv_usage,
                queue_len_mean=wavg([(w.queue_len_mean, s) for w, s in ws]),
                running_mean=wavg([(w.running_mean, s) for w, s in ws]),
            )

        comp = [(r, float(r.completions)) for r in rows]
        return Observation(
            service=service,
            window_start_s=now_s - span,
            window_end_s=now_s,
            prefill=role_signals(Role.PREFILL),
            decode=role_signals(Role.DECODE),
            ttft_p50_s=wavg([(r.ttft_p50_s, c) for r, c in comp]),
            ttft_p90_s=wavg([(r.ttft_p90_s, c) for r, c in comp]),
            ttft_p99_s=wavg([(r.ttft_p99_s, c) for r, c in comp]),
            tbt_p50_s=wavg([(r.tbt_p50_s, c) for r, c in comp]),
            tbt_p90_s=wavg([(r.tbt_p90_s, c) for r, c in comp]),
            tbt_p99_s=wavg([(r.tbt_p99_s, c) for r, c in comp]),
            requests_per_s=wavg([(r.arrivals_per_s, r.window_s) for r in rows]),
            mean_input_tokens=wavg([(r.mean_input_tokens, c) for r, c in comp]),
            mean_output_tokens=wavg([(r.mean_output_tokens, c) for r, c in comp]),
        )
