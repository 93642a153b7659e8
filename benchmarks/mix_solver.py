"""The cost-aware GPU mix (scheduling/mix.py): solve time of the MILP (HiGHS) and its cost gain over the
greedy fallback, on random problems of a realistic size and on large ones.

- realistic: 2 roles × 3 SKUs × TP 4/8 (12 shapes; every SKU allowed in both roles, so the free GPUs
  of each SKU are shared), demands of a few to a few tens of instances, scarce free GPUs, a few
  current instances, an optional GPU cap, a 5-minute cold start as the churn penalty;
- large: the same with 30 SKUs (120 shapes).

Per-GPU throughputs for a 70B model at TP4 come from GPUS.md (AIConfigurator estimates, H100 3.9k
prefill / 765 decode tok/s/GPU, A100 1.5k / 396, L40S 200 / 118); the others are scaled from them by
compute (prefill) and memory bandwidth (decode) — assumptions, as is TP8's 0.9× per-GPU efficiency.
Relative costs per GPU-hour are GPUS.md's. The large set jitters this catalogue into 30 SKUs.

Figures (``name=value``): wall time of ``solve_mix`` (model building + HiGHS + checks) and of the
greedy alone, median and p99 in ms; how often the MILP hit its time limit and fell back; how often
the demand could not be covered; the greedy's extra cost over the MILP (objective: cost per hour plus
launches) on problems both cover — mean, p99 and max in %, and the share where greedy is worse.

    python benchmarks/mix_solver.py [--seed N] [--problems N] [--large-problems N] [--time-limit-s S]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.scheduling.mix import MixOption, MixProblem, MixResult, greedy_mix, solve_mix

# (sku, cost per GPU-hour, prefill tok/s per GPU, decode tok/s per GPU) for a 70B model at TP4
CATALOGUE: tuple[tuple[str, float, float, float], ...] = (
    ("h100-sxm", 2.15, 3_900.0, 765.0),
    ("h800", 2.15, 3_900.0, 700.0),
    ("h200", 2.6, 3_900.0, 1_100.0),
    ("h20", 1.4, 590.0, 910.0),
    ("a100-80g", 1.0, 1_500.0, 396.0),
    ("l40s", 0.65, 200.0, 118.0),
    ("l20", 0.65, 66.0, 118.0),
    ("b200", 3.5, 8_800.0, 1_700.0),
)
TP_EFFICIENCY = {4: 1.0, 8: 0.9}  # per-GPU throughput at TP8 relative to TP4 (assumption)
COLD_START_S = 300.0


@dataclass(frozen=True, slots=True)
class Outcome:
    milp: MixResult
    greedy: MixResult
    wall_ms: float
    greedy_ms: float


def make_problem(rng: random.Random, n_skus: int) -> MixProblem:
    if n_skus <= len(CATALOGUE):
        skus = rng.sample(CATALOGUE, n_skus)
    else:  # jittered copies of the catalogue
        skus = []
        for i in range(n_skus):
            sku, cost, prefill_tps, decode_tps = rng.choice(CATALOGUE)
            jitter = [rng.uniform(0.8, 1.2) for _ in range(3)]
            skus.append((f"{sku}-v{i}", cost * jitter[0], prefill_tps * jitter[1], decode_tps * jitter[2]))
    options: list[MixOption] = []
    for role in (Role.PREFILL, Role.DECODE):
        for sku, cost, prefill_tps, decode_tps in skus:
            per_gpu = prefill_tps if role is Role.PREFILL else decode_tps
            for tp in (4, 8):
                tps = per_gpu * tp * TP_EFFICIENCY[tp] * rng.uniform(0.9, 1.1)
                current = rng.choice((0, 0, 0, 1, 2, 4)) if tp == 4 else rng.choice((0, 0, 0, 0, 1))
                options.append(MixOption(InstanceShape(role, sku, tp), tps, cost * tp, current))
    # demands in units of the first SKU's TP4 instance: a few to a few tens of instances per role
    unit = {role: next(o.tps_per_instance for o in options if o.role is role) for role in (Role.PREFILL, Role.DECODE)}
    demand = {role: unit[role] * rng.uniform(2, 40) for role in unit}
    free = {sku[0]: rng.choice((0, 16, 32, 64, 128, 256, 512)) for sku in skus}
    cap = rng.choice((None, None, rng.randrange(64, 1_024, 8)))
    return MixProblem(
        demand_tps=demand,
        options=tuple(options),
        free_gpus_by_sku=free,
        max_gpus=cap,
        min_count={Role.PREFILL: 1, Role.DECODE: 1},
        launch_penalty_h=COLD_START_S / 3600.0,
    )


def run(problems: Sequence[MixProblem], time_limit_s: float) -> list[Outcome]:
    out: list[Outcome] = []
    for prob in problems:
        start = time.perf_counter()
        milp = solve_mix(prob, time_limit_s)  # solve_s: HiGHS's own run time
        wall_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        greedy = greedy_mix(prob)
        greedy_ms = (time.perf_counter() - start) * 1e3
        out.append(Outcome(milp, greedy, wall_ms, greedy_ms))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, outcomes: Sequence[Outcome]) -> None:
    wall = [o.wall_ms for o in outcomes]
    greedy = [o.greedy_ms for o in outcomes]
    both = [o for o in outcomes if o.milp.feasible and o.greedy.feasible]
    gaps = [100.0 * (o.greedy.objective - o.milp.objective) / o.milp.objective for o in both if o.milp.objective > 0]
    lines = {
        "problems": len(outcomes),
        "shapes": len(outcomes[0].milp.counts),
        "solve_ms_median": f"{statistics.median(wall):.2f}",
        "solve_ms_p99": f"{percentile(wall, 0.99):.2f}",
        "solve_ms_max": f"{max(wall):.2f}",
        "solve_ms_median_feasible": f"{statistics.median(o.wall_ms for o in outcomes if o.milp.feasible):.2f}",
        "highs_ms_median": f"{statistics.median(o.milp.solve_s for o in outcomes) * 1e3:.2f}",
        "greedy_ms_median": f"{statistics.median(greedy):.2f}",
        "greedy_ms_p99": f"{percentile(greedy, 0.99):.2f}",
        "time_limit_hits": sum("time limit" in o.milp.status for o in outcomes),
        "greedy_fallbacks": sum(o.milp.method == "greedy" for o in outcomes),
        "infeasible_share": f"{sum(not o.milp.feasible for o in outcomes) / len(outcomes):.3f}",
        "greedy_infeasible_when_milp_feasible": sum(o.milp.feasible and not o.greedy.feasible for o in outcomes),
        "greedy_gap_pct_mean": f"{statistics.fmean(gaps):.3f}" if gaps else "n/a",
        "greedy_gap_pct_p99": f"{percentile(gaps, 0.99):.3f}" if gaps else "n/a",
        "greedy_gap_pct_max": f"{max(gaps):.3f}" if gaps else "n/a",
        "greedy_worse_share": f"{sum(g > 1e-6 for g in gaps) / len(gaps):.3f}" if gaps else "n/a",
        "milp_worse_count": sum(g < -1e-6 for g in gaps),
    }
    for key, value in lines.items():
        print(f"{name}_{key}={value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--large-problems", type=int, default=200)
    parser.add_argument("--time-limit-s", type=float, default=0.2)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    print(f"time_limit_s={args.time_limit_s}")
    realistic = [make_problem(rng, 3) for _ in range(args.problems)]
    run(realistic[:5], args.time_limit_s)  # warm-up: the first solve loads HiGHS
    report("realistic", run(realistic, args.time_limit_s))
    large = [make_problem(rng, 30) for _ in range(args.large_problems)]
    report("large", run(large, args.time_limit_s))
    print(f"benchmark_s={time.perf_counter() - started:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
