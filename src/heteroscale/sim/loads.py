"""Each service's load, built from its LoadSpec: a request list (seeded), or at fluid fidelity on a
plain Poisson load a rate curve with the length mix (a day at fleet scale never materialises)."""

from __future__ import annotations

import math

import numpy as np

from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.parts import load_window, raw_curve, shape_source, smoothed_curve
from heteroscale.sim.scenario import Fidelity, LoadKind, LoadSpec, Scenario, ServiceRun
from heteroscale.sim.traces import RateCurve, RequestTrace, generate_poisson, merge, read_trace, superpose
from heteroscale.sim.transforms import scale_lengths


def load_curve(load: LoadSpec, name: str) -> RateCurve:
    """A Poisson load's rate curve: the chosen day, smoothed between window centres."""
    return smoothed_curve(raw_curve(load, name), load)


def build_trace(load: LoadSpec, rng: np.random.Generator, name: str, duration_s: float | None = None) -> RequestTrace:
    """The request list one service sees, from its LoadSpec (seeded), ``start_s`` rebased to 0; the
    sources of ``mixed_with`` are drawn after this one from the same generator and merged in."""
    trace = _source_trace(load, rng, name, duration_s)
    if not load.mixed_with:
        return trace
    parts = [trace, *(_source_trace(part, rng, name, duration_s) for part in load.mixed_with)]
    return merge(parts, name)


def build_loads(scenario: Scenario, fidelity: Fidelity, seed: int, duration_s: float | None) -> list[ServiceLoad]:
    """Every service's load, in scenario order; service ``i`` draws from the generator ``[seed, i]``."""
    cold_start_s = scenario.settings.cold_start_s
    loads: list[ServiceLoad] = []
    for i, run in enumerate(scenario.services):
        if fidelity is Fidelity.FLUID and _curve_served(run.load):
            loads.append(_curve_load(run, cold_start_s, duration_s))
            continue
        trace = build_trace(run.load, np.random.default_rng([seed, i]), run.spec.name, duration_s)
        if duration_s is not None:
            trace = trace.slice_time(0.0, duration_s, rebase=False)
        cached = ServiceLoad.resolve_cached(trace, run.spec.prefix_cache_hit_rate)
        loads.append(ServiceLoad(run.spec, trace, cached, cold_start_s))
    return loads


def _curve_served(load: LoadSpec) -> bool:
    """Whether the fluid engine can take the load as a rate curve (rate steps act on requests: draw them)."""
    return load.kind is LoadKind.POISSON and not load.mixed_with and not load.rate_steps


def _curve_load(run: ServiceRun, cold_start_s: float, duration_s: float | None) -> ServiceLoad:
    load = run.load
    lengths = read_trace(load.trace_path, load.trace_format, skip_bad_rows=load.skip_bad_rows)
    curve = raw_curve(load, run.spec.name)
    part = load_window(load, lengths, curve)
    lengths = scale_lengths(lengths, load.lengths)
    return ServiceLoad(
        run.spec,
        lengths,
        ServiceLoad.resolve_cached(lengths, run.spec.prefix_cache_hit_rate),
        cold_start_s,
        rate_curve=smoothed_curve(curve, load),
        rate_scale=load.rate_scale * max(1, load.copies),
        time_compression=load.time_compression,
        duration_s=duration_s if part is None else _shorter(part.length_s, duration_s),
        curve_start_s=load.start_s + (0.0 if part is None else part.start_s),
    )


def _source_trace(load: LoadSpec, rng: np.random.Generator, name: str, duration_s: float | None) -> RequestTrace:
    source = read_trace(load.trace_path, load.trace_format, skip_bad_rows=load.skip_bad_rows)
    curve = raw_curve(load, name) if load.kind is LoadKind.POISSON else None
    part = load_window(load, source, curve)
    offset_s = 0.0 if part is None else part.start_s
    if curve is not None:
        length_s = None if part is None else part.length_s
        trace = generate_poisson(
            smoothed_curve(curve, load),
            source,
            rng,
            rate_scale=load.rate_scale,
            time_compression=load.time_compression,
            name=name,
            start_s=load.start_s + offset_s,
            duration_s=_shorter(length_s, duration_s),
        )
    else:
        trace = source
        if load.time_compression != 1.0:
            trace = trace.scale_time(load.time_compression)
    if load.copies > 1:
        trace = superpose(trace, load.copies, load.copy_shift_s, name=name)
    if load.start_s > 0 and load.kind is not LoadKind.POISSON:  # Poisson arrivals start there already
        trace = trace.slice_time(load.start_s, math.inf)
    if part is not None and load.kind is not LoadKind.POISSON:
        trace = trace.slice_time(part.start_s, math.inf if part.end_s is None else part.end_s)
    return shape_source(trace, load, rng, offset_s)


def _shorter(a_s: float | None, b_s: float | None) -> float | None:
    return a_s if b_s is None else b_s if a_s is None else min(a_s, b_s)
