"""The policy's targets, read from the policy benchmark's committed results (`results/bench.json`).

For heteroscale as shipped and tuned, against the peers (hpa, aibrix-apa, kthena, dynamo-sla,
independent-tps; static-peak counts for domination and the SLO target, not for the peer ratio) on the
means over each scenario's score parts, with the billed figure of the scenario (GPU-hours, cost where GPU types differ):

1. not dominated on any scenario (`heteroscale.domain.domination`: SLO ≥ ours − 0.05 pt and billed
   < 0.99 × ours);
2. SLO attainment ≥ 99 % wherever any contender reaches 99 %;
3. median over scenarios of billed ÷ the best peer that reaches equal-or-better SLO ≤ 0.97 (scenarios
   where no peer does are listed, not counted); median billed ÷ the lower bound ≤ 1.5;
4. scale actions per hour ≤ the median of the dynamic peers (hpa, aibrix-apa, kthena, dynamo-sla).

Beside the lower-bound figure, for reference: each peer's median, and the clairvoyant
ratio-oracle's (the shared targets over 10-min windows, no cold start; GPU-hours) — the bound counts
neither margin nor SLO, so where the oracle is far above it, so is every policy.

Each miss says where it comes from: beside a row that dominates heteroscale, the services and roles
whose GPU-hours differ most; beside an SLO miss, each service's attainment.

Regenerate the results with `heteroscale bench --retune` first; this script only reads them.

    python benchmarks/policy_targets.py [results/bench.json]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from heteroscale.domain.domination import dominates

PEERS = ("hpa", "aibrix-apa", "kthena", "dynamo-sla", "independent-tps")
DYNAMIC = ("hpa", "aibrix-apa", "kthena", "dynamo-sla")
TARGET_RATIO = 0.97
TARGET_LB = 1.5
SLO = 0.99


def where_hours_differ(ours: dict[str, Any], theirs: dict[str, Any], most: int = 2) -> str:
    """The ``most`` services/roles whose mean GPU-hours differ most between two rows, ours first."""
    a, b = ours.get("gpu_hours_by_service_role") or {}, theirs.get("gpu_hours_by_service_role") or {}
    # ties broken by name: a set's order changes from run to run
    diffs = sorted(((a.get(k, 0.0) - b.get(k, 0.0), k) for k in {*a, *b}), key=lambda d: (-abs(d[0]), d[1]))
    return ", ".join(f"{k} {d:+.1f} GPU-h ({a.get(k, 0.0):.1f} vs {b.get(k, 0.0):.1f})" for d, k in diffs[:most])


def slo_by_service(row: dict[str, Any]) -> str:
    per = row.get("slo_attainment_by_service") or {}
    return ", ".join(f"{name} {slo:.2%}" for name, slo in per.items()) if len(per) > 1 else ""


def figures(bench: dict[str, Any], tuned: bool) -> dict[str, Any]:
    """The four targets' figures for heteroscale (``tuned``: the tuned rows)."""
    suffix = "[tuned]" if tuned else ""
    dominated: list[str] = []
    slo_missed: list[str] = []
    ratios: list[float] = []
    no_peer: list[str] = []
    lbs: list[float] = []
    peer_lbs: dict[str, list[float]] = {p: [] for p in PEERS}
    oracle_lbs: list[float] = []
    ours_actions: list[float] = []
    peers_actions: list[float] = []
    for name, scenario in bench["scenarios"].items():
        key = "cost" if scenario["gpu_mix"] else "gpu_hours"
        rows = scenario["rows"]
        ours = rows["heteroscale" + suffix]["mean"]
        same_kind = {n: r["mean"] for n, r in rows.items() if n.endswith("[tuned]") == tuned}
        for other, m in same_kind.items():
            if not other.startswith("heteroscale") and dominates(
                m["slo_attainment"], m[key], ours["slo_attainment"], ours[key]
            ):
                dominated.append(
                    f"{name}: {other} {m[key]:.1f} @ {m['slo_attainment']:.2%}; {where_hours_differ(ours, m)}"
                )
        reached = [n for n, r in rows.items() if r["mean"]["slo_attainment"] >= SLO]
        if reached and ours["slo_attainment"] < SLO:
            per = slo_by_service(ours)
            slo_missed.append(
                f"{name} ({ours['slo_attainment']:.2%}{'; ' + per if per else ''}; {', '.join(reached)} reach 99 %)"
            )
        better = [rows[p + suffix]["mean"][key] for p in PEERS
                  if rows[p + suffix]["mean"]["slo_attainment"] >= ours["slo_attainment"]]  # fmt: skip
        if better:
            ratios.append(ours[key] / min(better))
        else:
            no_peer.append(name)
        lbs.append(ours[key + "_vs_lower_bound"])
        for p in PEERS:
            peer_lbs[p].append(rows[p + suffix]["mean"][key + "_vs_lower_bound"])
        bounds = scenario.get("lower_bound", {}).values()
        if bounds and all("ratio_oracle_gpu_hours" in b and b["gpu_hours"] > 0 for b in bounds):
            oracle_lbs.append(statistics.mean(b["ratio_oracle_gpu_hours"] / b["gpu_hours"] for b in bounds))
        ours_actions.append(ours["scale_actions_per_hour"])
        peers_actions.append(statistics.median(rows[p + suffix]["mean"]["scale_actions_per_hour"] for p in DYNAMIC))
    return {
        "dominated": dominated,
        "slo_missed": slo_missed,
        "median_vs_best_peer": statistics.median(ratios) if ratios else None,
        "scenarios_counted": len(ratios),
        "no_peer_as_good": no_peer,
        "median_vs_lower_bound": statistics.median(lbs),
        "peers_vs_lower_bound": {p: statistics.median(v) for p, v in peer_lbs.items()},
        "oracle_vs_lower_bound": statistics.median(oracle_lbs) if oracle_lbs else None,
        "actions_per_hour": statistics.median(ours_actions),
        "peers_actions_per_hour": statistics.median(peers_actions),
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "results/bench.json")
    bench = json.loads(path.read_text(encoding="utf-8"))
    for tuned in (False, True):
        f = figures(bench, tuned)
        label = "heteroscale[tuned]" if tuned else "heteroscale as shipped"
        print(f"== {label} ({path})")
        print(f"  not dominated: {verdict(not f['dominated'])}" + "".join(f"\n    {d}" for d in f["dominated"]))
        print(f"  SLO >= 99 % where any contender reaches it: {verdict(not f['slo_missed'])}"
              + "".join(f"\n    {m}" for m in f["slo_missed"]))  # fmt: skip
        ratio = f["median_vs_best_peer"]
        shown = "n/a" if ratio is None else f"{ratio:.3f}"
        print(f"  median billed / best peer with >= SLO: {shown} over {f['scenarios_counted']} scenario(s) "
              f"(target <= {TARGET_RATIO}): {verdict(ratio is not None and ratio <= TARGET_RATIO)}; "
              f"no peer as good on: {', '.join(f['no_peer_as_good']) or 'none'}")  # fmt: skip
        lb = f["median_vs_lower_bound"]
        print(f"  median billed / lower bound: {lb:.2f} (target <= {TARGET_LB}): {verdict(lb <= TARGET_LB)}")
        peer_lbs = sorted(f["peers_vs_lower_bound"].items(), key=lambda kv: (kv[1], kv[0]))
        oracle = f["oracle_vs_lower_bound"]
        print(
            f"    for reference, the peers' medians: {', '.join(f'{p} {v:.2f}' for p, v in peer_lbs)}; the "
            f"clairvoyant ratio-oracle at the shared targets (no cold start, GPU-hours): "
            f"{'n/a' if oracle is None else f'{oracle:.2f}'}"
        )
        acts, peers = f["actions_per_hour"], f["peers_actions_per_hour"]
        print(f"  scale actions per hour: {acts:.1f} vs dynamic peers' median {peers:.1f}: {verdict(acts <= peers)}")


if __name__ == "__main__":
    main()
