"""Which fluid-fidelity figures to trust, by how loaded the cluster is.

The fluid engine serves flows, not requests (:mod:`heteroscale.sim.fluid_engine`): its throughput
and utilisation follow the offered load exactly, but its latencies and SLO attainment are estimates
from a queueing model. ``benchmarks/fluid_fidelity.py`` runs both fidelities on the same requests and
the same fixed instances from 30 % to 110 % of capacity (the pressure test's SLO knee at margin 1.0)
and checks the bounds below; this module is the table of what that check established, so that every
summary at fluid fidelity and every table built from one can label the rest ``estimate``.

Regimes (load fraction = offered request rate ÷ capacity):

* ``light`` (< 0.7): utilisation and TPS within ±5 %, p50 latencies within ±10 %, SLO attainment
  within ±1 point of request fidelity;
* ``loaded`` (0.7 to 1.0): p99 latencies within ±25 % and SLO attainment within ±3 points (throughput
  and utilisation keep their ±5 %); p50 latencies are not bounded there;
* ``overload`` (> 1.0): throughput and utilisation only; every latency and SLO figure is an estimate.

What the benchmark measured (1,800 s per load, ``default`` and ``h100-speed`` at 4P/4D): every bound
met at every load from 30 % to 110 %, the largest gaps at 100 % (TTFT p99 −18.5 %, SLO attainment
+1.8 points: the fluid engine is a little optimistic right at the knee). Shorter runs at the knee
vary more (``--quick``, 600 s of ``default`` at 100 %: SLO attainment 99.5 % fluid vs 95.4 %
request, +4.1 points, the request engine's own run-to-run spread there), so in the loaded regime p99
and SLO figures are trusted only up to ``VALIDATED_LOADED_MAX`` (85 %); above it they are
estimates, like every p50 of the loaded regime (not bounded there).

A figure outside its regime's trusted set is an estimate. ``metric`` names the summary key.

A fluid run knows its load fraction when its targets come from a pressure test (their per-instance
request rates are the knee × margin): each telemetry window's arrival rate over the knee at that
window's ready counts; the run's is the peak over its windows, so one overloaded window makes every
latency figure of the run an estimate. Every summary carries ``fluid_load_fraction``,
``fluid_regime`` and ``fluid_estimates`` (per latency / SLO key: ``trusted`` or ``estimate``), run-wide
and per service; at request fidelity they are None (nothing is estimated).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from heteroscale.policy.context import Targets
from heteroscale.sim.telemetry import WindowRow

LIGHT_MAX = 0.7  # load fractions below this are light
LOADED_MAX = 1.0  # up to this, loaded; beyond, overload
VALIDATED_LOADED_MAX = 0.85  # loaded-regime latency figures trusted up to here (at the knee runs vary)
PRESSURE_TEST_SOURCE = "pressure-test"  # how targets from a pressure test name their source

THROUGHPUT_METRICS = frozenset(
    {"avg_gpu_util", "avg_gpu_util_by_role", "avg_sm_activity", "avg_sm_activity_by_role", "avg_tps_by_role"}
)
P50_METRICS = frozenset({"ttft_p50_s", "tbt_p50_s"})
P99_METRICS = frozenset({"ttft_p99_s", "tbt_p99_s"})
SLO_METRICS = frozenset({"slo_attainment"})
LATENCY_METRICS = P50_METRICS | P99_METRICS | SLO_METRICS


class FluidRegime(StrEnum):
    LIGHT = "light"
    LOADED = "loaded"
    OVERLOAD = "overload"


# the benchmark's bounds per regime: metric group → allowed difference from request fidelity
# (relative for throughput and latency, absolute points of attainment for the SLO)
BOUNDS: dict[FluidRegime, dict[str, float]] = {
    FluidRegime.LIGHT: {"throughput": 0.05, "p50": 0.10, "slo": 0.01},
    FluidRegime.LOADED: {"throughput": 0.05, "p99": 0.25, "slo": 0.03},
    FluidRegime.OVERLOAD: {"throughput": 0.05},
}

_TRUSTED: dict[FluidRegime, frozenset[str]] = {
    FluidRegime.LIGHT: THROUGHPUT_METRICS | P50_METRICS | SLO_METRICS,
    FluidRegime.LOADED: THROUGHPUT_METRICS | P99_METRICS | SLO_METRICS,
    FluidRegime.OVERLOAD: THROUGHPUT_METRICS,
}


def regime(load_fraction: float) -> FluidRegime:
    """The regime of a load at ``load_fraction`` of capacity."""
    if load_fraction < LIGHT_MAX:
        return FluidRegime.LIGHT
    if load_fraction <= LOADED_MAX:
        return FluidRegime.LOADED
    return FluidRegime.OVERLOAD


def metric_group(metric: str) -> str | None:
    """The bound group of a summary key (``throughput``, ``p50``, ``p99``, ``slo``), or None."""
    if metric in THROUGHPUT_METRICS:
        return "throughput"
    if metric in P50_METRICS:
        return "p50"
    if metric in P99_METRICS:
        return "p99"
    if metric in SLO_METRICS:
        return "slo"
    return None


def fluid_regime_ok(load_fraction: float | None, metric: str) -> bool:
    """Whether a fluid-fidelity ``metric`` (a summary key) at ``load_fraction`` of capacity is within the
    benchmark's bounds of request fidelity. An unknown load fraction trusts throughput and utilisation
    only (they follow the offered load at any load); so does an unknown metric key: False."""
    if load_fraction is None:
        return metric in THROUGHPUT_METRICS
    if metric not in THROUGHPUT_METRICS and regime(load_fraction) is FluidRegime.LOADED:
        return load_fraction <= VALIDATED_LOADED_MAX and metric in _TRUSTED[FluidRegime.LOADED]
    return metric in _TRUSTED[regime(load_fraction)]


def estimate_labels(load_fraction: float | None) -> dict[str, str]:
    """Every latency and SLO summary key labelled ``trusted`` or ``estimate`` at ``load_fraction``."""
    return {m: "trusted" if fluid_regime_ok(load_fraction, m) else "estimate" for m in sorted(LATENCY_METRICS)}


def window_load_fraction(
    arrivals_per_s: float, ready_prefill: int, ready_decode: int, targets: Targets
) -> float | None:
    """Offered load ÷ capacity in one telemetry window, capacity being the SLO knee of the pressure
    test behind ``targets`` (its per-instance request rates ÷ margin) at the window's ready counts.

    None when the targets do not come from a pressure test: the performance model's capacity is a
    saturation rate above the knee, and a fraction of it would read too low (too trusting)."""
    if not targets.source.startswith(PRESSURE_TEST_SOURCE) or targets.margin <= 0:
        return None
    capacity_rps = min(
        targets.requests_per_s_per_prefill * ready_prefill, targets.requests_per_s_per_decode * ready_decode
    )
    capacity_rps /= targets.margin
    if capacity_rps <= 0:
        return math.inf if arrivals_per_s > 0 else 0.0
    return arrivals_per_s / capacity_rps


def peak_load_fraction(rows: Iterable[WindowRow], targets: Targets) -> float | None:
    """The highest window load fraction of a service's run (None when it cannot be known)."""
    peak: float | None = 0.0
    for row in rows:
        fraction = window_load_fraction(
            row.arrivals_per_s, row.prefill.instances_ready, row.decode.instances_ready, targets
        )
        if fraction is None:
            return None
        peak = max(peak or 0.0, fraction)
    return peak


def fluid_labels(load_fraction: float | None) -> dict[str, Any]:
    """What a fluid summary says about its own figures: the peak load fraction, its regime and each
    latency / SLO figure ``trusted`` or ``estimate`` (throughput and utilisation are always trusted)."""
    known = load_fraction is not None and math.isfinite(load_fraction)
    return {
        "fluid_load_fraction": round(load_fraction, 4) if known and load_fraction is not None else None,
        "fluid_regime": regime(load_fraction).value if known and load_fraction is not None else None,
        "fluid_estimates": estimate_labels(load_fraction if known else None),
    }
