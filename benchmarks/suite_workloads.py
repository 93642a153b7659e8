"""Wall time of every part of the evaluation suite's workloads, under the HeteroScale policy.

For each scenario of the embedded suite `policies` (src/heteroscale/data/suites/policies.yaml) and
each of its parts (the tune part, then the score parts), what `heteroscale simulate` does: the
pressure test that gives the policy its targets, then the run at the scenario's fidelity. Prints
one row per part (requests, simulated hours, SLO attainment, GPU-hours, peak GPUs, pressure-test
and run wall seconds) and the suite's total. Its runs start at the counts the scenario file gives,
not at the evaluation's warm start, so their SLO and GPU-hours are not `results/bench.json`'s (e.g. a
score part that opens at a higher rate than its file's counts serve starts with a backlog).

Budget: each run ≤ 40 s on one core of a 2-core machine (the suite, ≈ 8 scenarios × ~8 contenders
× tune + score parts, should stay near 30 min on 2 cores). The pressure test is reported apart: its
targets depend on the service and its lengths, not on the policy, so a runner computes them once
per scenario part and every contender reuses them. The last line estimates the suite's wall time
on 2 cores for 8 contenders: (8 × Σ run + Σ pressure test) / 2.

    python benchmarks/suite_workloads.py                 # every scenario
    python benchmarks/suite_workloads.py suite-bursty    # the scenarios named
"""

from __future__ import annotations

import sys
import time

TARGET_RUN_S = 40.0
CONTENDERS = 8


def main(names: list[str]) -> bool:
    from heteroscale.config.catalog import calibration_for
    from heteroscale.config.loader import load_suite
    from heteroscale.experiments.pressure import pressure_test
    from heteroscale.policy.registry import TARGET_FREE_POLICIES
    from heteroscale.sim.runner import SimulationRun

    suite = load_suite("policies")
    print(
        f"{'scenario@part':<36} {'role':<5} {'requests':>9} {'sim_h':>6} {'slo':>7} {'gpu_h':>7} "
        f"{'peak':>5} {'pressure_s':>10} {'run_s':>6} {'total_s':>7}"
    )
    ok = True
    total_s = runs_s = pressures_s = 0.0
    for entry in suite.entries:
        if names and entry.scenario.name not in names:
            continue
        parts = [("tune", entry.tune_scenario()), *(("score", s) for s in entry.score_scenarios())]
        for role, scenario in parts:
            calibration = calibration_for(scenario)
            start = time.perf_counter()
            targets = {
                run.spec.name: pressure_test(scenario, run.spec.name, calibration, seed=scenario.settings.seed).targets
                for run in scenario.services
                if run.policy.name not in TARGET_FREE_POLICIES and run.targets is None
            }
            pressure_s = time.perf_counter() - start
            sim = SimulationRun(scenario, calibration, targets=targets)
            summary = sim.run()
            run_s = time.perf_counter() - start - pressure_s
            total_s += pressure_s + run_s
            runs_s += run_s
            pressures_s += pressure_s
            ok = ok and run_s <= TARGET_RUN_S
            print(
                f"{scenario.name:<36} {role:<5} {summary['requests_total']:>9,} "
                f"{summary['simulated_s'] / 3600:>6.2f} {summary['slo_attainment']:>7.4f} "
                f"{summary['gpu_hours']:>7.1f} {summary['peak_gpus_held']:>5} {pressure_s:>10.1f} {run_s:>6.1f} "
                f"{pressure_s + run_s:>7.1f}",
                flush=True,
            )
    print(
        f"total wall s (one contender, every part): {total_s:.1f} (runs {runs_s:.1f}, pressure tests {pressures_s:.1f})"
    )
    estimate_min = (CONTENDERS * runs_s + pressures_s) / 2 / 60
    print(f"suite estimate, {CONTENDERS} contenders on 2 cores: {estimate_min:.1f} min")
    print(f"target: each run ≤ {TARGET_RUN_S:g} s: {'met' if ok else 'MISSED'}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:]) else 1)
