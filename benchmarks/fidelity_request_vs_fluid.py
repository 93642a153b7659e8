"""Agreement of the fluid engine with the request engine under the same fixed counts and load.

Runs each scenario at both fidelities (same trace, same instances, same seed) and prints, per
figure, both values and the relative difference. Target: within 10 % on average GPU utilisation
per role, prefill and decode TPS, and median TTFT and TBT (the fluid latencies are estimates).

    python benchmarks/fidelity_request_vs_fluid.py
"""

from __future__ import annotations

import sys
from typing import Any

TARGET = 0.10
# (scenario, fixed prefill, fixed decode): the same fixed counts at both fidelities
CASES = (("default", 8, 8), ("h100-speed", 16, 16))
LOADED_CASE = ("default", 6, 6)


def _figures(summary: dict[str, Any]) -> dict[str, float | None]:
    return {
        "prefill_gpu_util": summary["avg_gpu_util_by_role"]["prefill"],
        "decode_gpu_util": summary["avg_gpu_util_by_role"]["decode"],
        "prefill_tps": summary["avg_tps_by_role"]["prefill"],
        "decode_tps": summary["avg_tps_by_role"]["decode"],
        "ttft_p50_s": summary["ttft_p50_s"],
        "tbt_p50_s": summary["tbt_p50_s"],
    }


def compare(name: str, counts: tuple[int, int] | None = None) -> bool:
    import dataclasses

    from heteroscale.config.catalog import calibration_for
    from heteroscale.config.loader import load_scenario
    from heteroscale.sim.runner import SimulationRun
    from heteroscale.sim.scenario import Fidelity, PolicySpec

    scenario = load_scenario(name)
    if counts is not None:  # hold fixed counts (the scenario's own policy may autoscale)
        services = tuple(dataclasses.replace(r, policy=PolicySpec(*counts)) for r in scenario.services)
        scenario = dataclasses.replace(scenario, services=services)
        name = f"{name} at fixed {counts[0]}P/{counts[1]}D"
    req_run = SimulationRun(scenario, calibration_for(scenario), fidelity=Fidelity.REQUEST)
    req = _figures(req_run.run())
    # the fluid engine serves the very same request list, binned per step
    flu_run = SimulationRun(scenario, calibration_for(scenario), fidelity=Fidelity.FLUID, loads=req_run.loads)
    flu = _figures(flu_run.run())
    ok = True
    print(f"scenario {name}: request engine {req_run.loop_wall_s:.2f} s, fluid engine {flu_run.loop_wall_s:.2f} s")
    for key in req:
        a, b = req[key], flu[key]
        if a is None or b is None or a == 0:
            print(f"  {key:18s} request={a} fluid={b} rel_diff=n/a  MISSED")
            ok = False
            continue
        diff = (b - a) / a
        within = abs(diff) <= TARGET
        ok = ok and within
        print(
            f"  {key:18s} request={a:12.4f} fluid={b:12.4f} rel_diff={100 * diff:+6.1f} %  "
            f"{'ok' if within else 'MISSED'}"
        )
    return ok


def main() -> int:
    results = [compare(name, (p, d)) for name, p, d in CASES]
    print(f"target |rel_diff| <= {100 * TARGET:.0f} % on every figure: {'met' if all(results) else 'MISSED'}")
    print("for information (outside the target): a loaded cluster, where the fluid model's solo-prefill")
    print("service times ignore the request engine's batching gains")
    name, p, d = LOADED_CASE
    compare(name, (p, d))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
