"""Fluid against request fidelity from light load to overload, with the bounds of ``sim/fidelity.py``.

For each case (a scenario's service at fixed P/D counts) the pressure test's bisection finds the SLO
knee on those counts (capacity; the knee does not depend on the margin, so this is the knee at margin
1.0). Then, at 30 %, 50 %, 70 %, 85 %, 100 % and 110 % of it, one Poisson request list (lengths
resampled from the service's load, ``DURATION_S`` long) is served by both engines on the same fixed
instances, and the figures are compared:

* light (< 70 %): GPU utilisation and TPS per role within ±5 %, TTFT/TBT p50 within ±10 %, SLO
  attainment within ±1 point;
* loaded (70–100 %): utilisation and TPS within ±5 %, TTFT/TBT p99 within ±25 %, SLO within ±3 points;
* overload (> 100 %): utilisation and TPS within ±5 %; latency and SLO figures are estimates.

Every figure is printed with both values, the difference, its bound and ``ok`` / ``MISSED``; a figure
outside its regime (``estimate``) is printed for information. The run also checks that no
utilisation exceeds 100 % at either fidelity, and that the labels a fluid summary carries
(``fluid_estimates``, from its own peak load fraction) trust no figure that missed its bound here.
Target (exit code 1 when missed): no trusted figure outside its bound, no utilisation above 100 %; a
missed bound on a figure labelled ``estimate`` is listed, and is why the table labels it so.

    python benchmarks/fluid_fidelity.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any

import numpy as np

FRACTIONS = (0.3, 0.5, 0.7, 0.85, 1.0, 1.1)
DURATION_S = 1_800.0
# (scenario, service index, prefill, decode): counts the pressure test accepts (prefill = ratio · decode)
CASES = (("default", 0, 4, 4), ("h100-speed", 0, 4, 4))
ROLES = ("prefill", "decode")


def _figures(summary: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for role in ROLES:
        out[f"avg_gpu_util_by_role.{role}"] = summary["avg_gpu_util_by_role"][role]
        out[f"avg_tps_by_role.{role}"] = summary["avg_tps_by_role"][role]
    for key in ("ttft_p50_s", "tbt_p50_s", "ttft_p99_s", "tbt_p99_s", "slo_attainment"):
        out[key] = summary[key]
    return out


def _within(metric: str, req: float | None, flu: float | None, bound: float) -> tuple[bool, str]:
    if req is None or flu is None:
        return req is None and flu is None, "n/a"
    if metric == "slo_attainment":
        diff = flu - req
        return abs(diff) <= bound + 1e-12, f"{100 * diff:+6.2f} pt"
    if req == 0:
        return flu == 0, "n/a"
    diff = (flu - req) / req
    return abs(diff) <= bound + 1e-12, f"{100 * diff:+6.1f} %"


def _case_scenario(name: str, index: int, prefill: int, decode: int, trace: Any) -> tuple[Any, Any, Any]:
    from heteroscale.config.catalog import calibration_for
    from heteroscale.config.loader import load_scenario
    from heteroscale.domain.service import AffinityLevel
    from heteroscale.experiments.pressure import _test_topology
    from heteroscale.sim.engine import ServiceLoad
    from heteroscale.sim.scenario import Fidelity, LoadKind, LoadSpec, PolicySpec, ServiceRun, SimSettings

    base = load_scenario(name)
    spec = dataclasses.replace(base.services[index].spec, affinity=AffinityLevel.CLUSTER, min_prefill=0, min_decode=0)
    run = ServiceRun(spec, LoadSpec(kind=LoadKind.TRACE, trace_path="<bench>"), PolicySpec(prefill, decode))
    settings = SimSettings(fidelity=Fidelity.REQUEST, duration_s=None, seed=0, max_tail_s=600.0)
    scenario = dataclasses.replace(
        base, services=(run,), topology=_test_topology(spec, prefill, decode), settings=settings
    )
    load = ServiceLoad(spec, trace, ServiceLoad.resolve_cached(trace, spec.prefix_cache_hit_rate), 0.0)
    return scenario, calibration_for(scenario), load


def _poisson(mix: Any, rate_rps: float, duration_s: float, seed: int) -> Any:
    from heteroscale.sim.traces import RequestTrace

    rng = np.random.default_rng([seed, int(rate_rps * 1000)])
    n = int(rng.poisson(rate_rps * duration_s))
    rows = rng.integers(0, len(mix), n)
    return RequestTrace(
        name=f"poisson-{rate_rps:.2f}",
        arrival_s=np.sort(rng.uniform(0.0, duration_s, n)),
        input_tokens=mix.input_tokens[rows],
        output_tokens=mix.output_tokens[rows],
        cached_tokens=None if mix.cached_tokens is None else mix.cached_tokens[rows],
    )


def run_case(name: str, index: int, prefill: int, decode: int, duration_s: float, fractions: tuple[float, ...]) -> bool:
    from heteroscale.config.catalog import calibration_for
    from heteroscale.config.loader import load_scenario
    from heteroscale.experiments.pressure import length_mix, pressure_test
    from heteroscale.sim.fidelity import BOUNDS, metric_group, regime
    from heteroscale.sim.runner import SimulationRun
    from heteroscale.sim.scenario import Fidelity

    base = load_scenario(name)
    svc = base.services[index]
    mix = length_mix(svc, base.settings.duration_s, 0)
    pressure = pressure_test(
        base,
        svc.spec.name,
        calibration_for(base),
        decode=decode,
        ratio=prefill / decode,
        margin=1.0,
        duration_s=600.0,
        iterations=6,
        mix=mix,
        role_wise=False,
    )
    capacity_rps = pressure.knee.rate_rps
    targets = {svc.spec.name: pressure.targets}  # so that the fluid run knows its load fraction
    print(f"== {name}/{svc.spec.name} at {prefill}P/{decode}D: capacity (SLO knee) {capacity_rps:.2f} req/s")
    honest = True  # no figure labelled trusted missed its bound, no utilisation above 100 %
    missed: list[str] = []
    for frac in fractions:
        trace = _poisson(mix, frac * capacity_rps, duration_s, seed=0)
        scenario, calibration, load = _case_scenario(name, index, prefill, decode, trace)
        req = SimulationRun(scenario, calibration, fidelity=Fidelity.REQUEST, loads=[load], targets=targets).run()
        flu = SimulationRun(scenario, calibration, fidelity=Fidelity.FLUID, loads=[load], targets=targets).run()
        reg = regime(frac)
        bounds = BOUNDS[reg]
        print(
            f"-- {100 * frac:.0f} % of capacity ({reg.value}; {len(trace):,} requests; fluid says "
            f"load fraction {flu.get('fluid_load_fraction')}, regime {flu.get('fluid_regime')})"
        )
        labels = flu.get("fluid_estimates") or {}
        rf, ff = _figures(req), _figures(flu)
        for metric in rf:
            key = metric.split(".")[0]
            group = metric_group(key)
            bound = bounds.get(group or "")
            if bound is None:
                within, diff = _within(metric, rf[metric], ff[metric], math.inf)
                verdict = "estimate"
            else:
                within, diff = _within(metric, rf[metric], ff[metric], bound)
                verdict = "ok" if within else "MISSED"
                if not within:
                    missed.append(f"{name} {100 * frac:.0f} % {metric}")
            if labels.get(key) is not None:
                verdict += f" [labelled {labels[key]}]"
            if not within and labels.get(key) == "trusted":
                verdict += " LABEL WRONG"
                honest = False
            a, b = rf[metric], ff[metric]
            shown = f"{a:12.4f} {b:12.4f}" if a is not None and b is not None else f"{a!s:>12} {b!s:>12}"
            unit = "pt" if key == "slo_attainment" else "%"
            limit = "" if bound is None else f"±{100 * bound:.0f} {unit}"
            print(f"   {metric:28s} {shown} {diff:>10s} {limit:>7s}  {verdict}")
        for s, label in ((req, "request"), (flu, "fluid")):
            for role in ROLES:
                util = s["avg_gpu_util_by_role"][role]
                if util is not None and util > 1.0:
                    print(f"   {label} {role} GPU utilisation {100 * util:.1f} % > 100 %: MISSED")
                    honest = False
    print(f"   bounds missed: {', '.join(missed) or 'none'}")
    return honest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first case only, 600 s per load")
    args = parser.parse_args()
    cases = CASES[:1] if args.quick else CASES
    duration_s = 600.0 if args.quick else DURATION_S
    results = [run_case(*case, duration_s, FRACTIONS) for case in cases]
    verdict = "met" if all(results) else "MISSED"
    print(f"target: every figure a fluid summary labels trusted within its bound, no utilisation > 100 %: {verdict}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
