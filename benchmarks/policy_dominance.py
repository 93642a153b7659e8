"""Is heteroscale dominated? `compare` on parts of the evaluation suite, one row per contender.

For each scenario of the embedded suite `policies` named on the command line (all when none) and each
of its parts (tune, score or both), runs `compare` with heteroscale and the peers and prints SLO
attainment, GPU-hours (cost where the scenario mixes GPU types), scale actions per hour and × the
lower bound, and marks a peer that dominates heteroscale: SLO ≥ heteroscale's − 0.05 pt and
GPU-hours < 0.99 × heteroscale's. `--json FILE` appends one JSON line per part (to compare runs).

    python benchmarks/policy_dominance.py --parts score suite-step suite-prefix-reuse
    python benchmarks/policy_dominance.py --policies heteroscale --parts tune

Each part runs every contender once (a pressure test plus one simulation each; ≈ 10-40 s a part on
one core). Use `nice` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

PEERS = "heteroscale,kthena,dynamo-sla,hpa,aibrix-apa,independent-tps"
SLO_SLACK_PT = 0.05
COST_FACTOR = 0.99


def figures(policy: dict[str, Any], cost: bool) -> tuple[float, float, float, float | None]:
    """(SLO %, GPU-hours or cost, actions/h, × lower bound) of one contender's summary."""
    gpu_h = policy["cost"] if cost else policy["gpu_hours"]
    return policy["slo_attainment"] * 100.0, gpu_h, policy["scale_actions_per_hour"], policy["gpu_hours_vs_lower_bound"]


def dominates(peer: tuple[float, float, float, float | None], ours: tuple[float, float, float, float | None]) -> bool:
    return peer[0] >= ours[0] - SLO_SLACK_PT and peer[1] < COST_FACTOR * ours[1]


def main() -> None:
    from heteroscale.config.catalog import calibration_for
    from heteroscale.config.loader import load_suite
    from heteroscale.experiments.compare import compare
    from heteroscale.experiments.figures import means

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help="suite scenario names (suite-step …); all when none")
    parser.add_argument("--parts", choices=("tune", "score", "both"), default="both")
    parser.add_argument("--policies", default=PEERS)
    parser.add_argument("--json", help="append one JSON line per part to this file")
    args = parser.parse_args()
    names = args.policies.split(",")
    for entry in load_suite("policies").entries:
        if args.scenarios and entry.scenario.name not in args.scenarios:
            continue
        parts = [entry.tune_scenario()] if args.parts in ("tune", "both") else []
        parts += list(entry.score_scenarios()) if args.parts in ("score", "both") else []
        for scenario in parts:
            start = time.perf_counter()
            result, _ = compare(scenario, calibration_for(scenario), names)
            rows = {name: means(summary) for name, summary in result["policies"].items()}
            cost = bool(result.get("gpu_mix"))
            print(f"== {scenario.name} ({time.perf_counter() - start:.0f} s; {'cost' if cost else 'GPU-h'})")
            ours = figures(rows["heteroscale"], cost) if "heteroscale" in rows else None
            for name, row in rows.items():
                fig = figures(row, cost)
                mark = "  dominates heteroscale" if ours and name != "heteroscale" and dominates(fig, ours) else ""
                lb = "-" if fig[3] is None else f"{fig[3]:.2f}"
                print(f"  {name:<16} SLO {fig[0]:7.3f} %  {fig[1]:8.2f}  act/h {fig[2]:6.1f}  ×LB {lb}{mark}")
            if args.json:
                with open(args.json, "a", encoding="utf-8") as out:
                    out.write(
                        json.dumps({"scenario": scenario.name, "cost": cost, "policies": rows}, default=str) + "\n"
                    )


if __name__ == "__main__":
    main()
