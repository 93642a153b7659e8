"""The fluid engine's state: arrivals per step (binned from a trace, or drawn from a rate curve), and
one :class:`FluidService` per service holding its flows, instances and accumulators."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from heteroscale.domain.hardware import Role
from heteroscale.sim.cluster import SimInstance
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.fluid_mix import LengthMix
from heteroscale.sim.records import FailureCause


def arrivals_rng(seed: int) -> np.random.Generator:
    """The generator a fluid run of ``seed`` draws its Poisson arrival counts from."""
    return np.random.default_rng([seed, 10_000])


def arrival_bins(
    loads: list[ServiceLoad], step_s: float, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Arrivals per step of every load, in order: (requests, cache-missed tokens). A rate-curve load
    draws Poisson counts from ``rng`` (one load after the other); a trace load bins its arrivals."""
    bins: list[tuple[np.ndarray, np.ndarray]] = []
    for load in loads:
        if load.rate_curve is not None:
            n = int(math.ceil(load.load_end_s() / step_s))
            lam = np.array([load.rate_at((k + 0.5) * step_s) * step_s for k in range(n)])
            counts = rng.poisson(lam).astype(np.float64)
            new = (load.trace.input_tokens - load.cached_tokens).astype(np.float64)
            mean_new = float(new.mean()) if len(new) else 0.0
            bins.append((counts, counts * mean_new))
            continue
        t = load.trace.arrival_s
        if len(t) == 0:
            bins.append((np.zeros(0), np.zeros(0)))
            continue
        idx = np.floor(t / step_s).astype(np.int64)
        n = int(idx[-1]) + 1
        new = (load.trace.input_tokens - load.cached_tokens).astype(np.float64)
        bins.append((np.bincount(idx, minlength=n).astype(np.float64), np.bincount(idx, weights=new, minlength=n)))
    return bins


class FluidInst(SimInstance):
    __slots__ = ()


@dataclass(slots=True)
class FluidService:
    """Everything the fluid engine keeps for one service: its load as flows, its instances, its
    accumulators for the run, for the current telemetry window and for the latency mixture."""

    load: ServiceLoad
    mix: LengthMix
    arrivals: np.ndarray  # requests per step
    arrival_tokens: np.ndarray  # cache-missed prompt tokens per step
    insts: list[FluidInst] = field(default_factory=list)
    # ready, in-discovery instances per role, rebuilt only when membership changes (``dirty``)
    ready: dict[Role, list[FluidInst]] = field(default_factory=lambda: {r: [] for r in Role})
    dirty: bool = True
    # work done since the last flush, per role: [wall, kernel, tokens, flops] (wall: whether any ran)
    pending: dict[Role, list[float]] = field(default_factory=lambda: {r: [0.0, 0.0, 0.0, 0.0] for r in Role})
    # the flows
    backlog_tokens: float = 0.0  # cache-missed prompt tokens waiting for prefill
    d_queue: float = 0.0  # requests waiting for decode admission
    dec_n: float = 0.0  # requests in decode batches
    arr_rate_ewma: float = 0.0
    arr_epoch_key: tuple[int, int, float] | None = None
    tbt_s: float = 0.0
    # run totals (fractional requests)
    arrivals_f: float = 0.0
    completed_f: float = 0.0
    met_f: float = 0.0
    failed_f: dict[FailureCause, float] = field(default_factory=lambda: {c: 0.0 for c in FailureCause})
    # latency mixture: sorted base latencies per epoch (counts of ready instances), and rows of
    # (epoch, wait, tbt, weight) over the run
    epochs: list[np.ndarray] = field(default_factory=list)
    lat_rows: list[tuple[int, float, float, float]] = field(default_factory=list)
    # the current telemetry window
    w_lat: list[tuple[float, float, float]] = field(default_factory=list)
    w_arrivals: float = 0.0
    w_completions: float = 0.0
    w_slo_prev: tuple[int, int] = (0, 0)  # run totals (rounded) at the last window: slo_met, slo_missed
