"""Simulator speed and memory.

request fidelity: 10 time-shifted copies of the Azure conversation trace superposed (193,660
requests), Llama-3.1-70B TP4, 16 prefill + 16 decode on H100 (embedded scenario `h100-speed`).
Times the event loop only (not imports, trace parsing or setup); also prints requests per CPU second
of the whole run, which a shared, loaded machine disturbs less than wall time.
fluid fidelity: 24 h of a 200-instance service (embedded scenario `fluid-day`).

Targets (one core of a 2-core, 24 GiB machine): ≥ 100,000 requests per wall second; ≤ 30 s for the
fluid day; peak RSS ≤ 2 GiB for both. Each part runs in its own process so RSS is its own.

    python benchmarks/sim_speed.py            # both parts
    python benchmarks/sim_speed.py request    # one part
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

TARGET_RPS = 100_000.0
TARGET_FLUID_S = 30.0
TARGET_RSS_MB = 2048.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def part_request() -> bool:
    from heteroscale.config.catalog import calibration_for
    from heteroscale.config.loader import load_scenario
    from heteroscale.sim.runner import SimulationRun

    run = SimulationRun(sc := load_scenario("h100-speed"), calibration_for(sc))
    cpu0_s = time.process_time()
    summary = run.run()
    cpu_s = time.process_time() - cpu0_s
    requests = summary["requests_total"]
    rps = requests / run.loop_wall_s
    eps = run.engine.events / run.loop_wall_s
    rss = _peak_rss_mb()
    # per CPU second of the whole run (loop and summary): steadier than wall time on a shared machine
    print(
        f"request: requests={requests} requests_per_wall_s={rps:,.0f} requests_per_cpu_s={requests / cpu_s:,.0f} "
        f"events_per_wall_s={eps:,.0f} "
        f"loop_wall_s={run.loop_wall_s:.2f} peak_rss_mb={rss:,.0f} "
        f"completed={summary['requests_completed']} slo_attainment={summary['slo_attainment']}"
    )
    ok = rps >= TARGET_RPS and rss <= TARGET_RSS_MB
    print(
        f"request: target requests_per_wall_s>={TARGET_RPS:,.0f} and rss<={TARGET_RSS_MB:,.0f} MB: "
        f"{'met' if ok else 'MISSED'}"
    )
    return ok


def part_fluid() -> bool:
    from heteroscale.config.catalog import calibration_for
    from heteroscale.config.loader import load_scenario
    from heteroscale.sim.runner import SimulationRun

    run = SimulationRun(sc := load_scenario("fluid-day"), calibration_for(sc))
    summary = run.run()
    instances = sum(r.policy.prefill + r.policy.decode for r in run.scenario.services)
    rss = _peak_rss_mb()
    print(
        f"fluid: instances={instances} simulated_s={summary['simulated_s']} fluid_day_wall_s={run.loop_wall_s:.2f} "
        f"peak_rss_mb={rss:,.0f} requests={summary['requests_total']} slo_attainment={summary['slo_attainment']}"
    )
    ok = run.loop_wall_s <= TARGET_FLUID_S and rss <= TARGET_RSS_MB
    print(
        f"fluid: target fluid_day_wall_s<={TARGET_FLUID_S:.0f} and rss<={TARGET_RSS_MB:,.0f} MB: "
        f"{'met' if ok else 'MISSED'}"
    )
    return ok


def main() -> int:
    parts = {"request": part_request, "fluid": part_fluid}
    if len(sys.argv) > 1:
        return 0 if parts[sys.argv[1]]() else 1
    results = [subprocess.run([sys.executable, __file__, name], check=False).returncode for name in parts]
    return 0 if all(rc == 0 for rc in results) else 1


if __name__ == "__main__":
    sys.exit(main())
