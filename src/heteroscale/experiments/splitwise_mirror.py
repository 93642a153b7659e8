"""SplitwiseSim's published cases A, A′ and B as scenarios of ours, and its SLO verdict.

The reference is ``shared/reference/splitwise-sim-cases.md``; the scenarios are
``heteroscale/data/scenarios/splitwise/``; ``benchmarks/splitwise_mirror.py`` prints both side by side
and says where and why they differ.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any

from heteroscale.domain.hardware import Role
from heteroscale.perf import Calibration
from heteroscale.sim.records import RecordWriter
from heteroscale.sim.request_engine import RequestEngine
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.scenario import Scenario

# name: (scenario file, reference row: verdict, TTFT p50/p90/p99 s, TBT p50/p90/p99 ms, event-loop req/s,
# E2E p50/p99 s)
CASES = {
    "A": ("case-a.yaml", (True, (0.109, 0.417, 0.781), (42.7, 53.8, 78.9), 395.0, (6.24, 27.80))),
    "A'": ("case-a-prime.yaml", (False, (0.128, 0.484, 1.299), (45.8, 83.0, 154.4), 189.0, (7.70, 39.91))),
    "B": ("case-b.yaml", (True, (0.104, 0.507, 0.747), (42.6, 46.1, 54.0), 1198.0, (0.77, 10.81))),
}
# its placement columns (reference §4): prompts run on an A100, decodes run on an H100, both phases
# on one instance (no KV transfer)
REFERENCE_LENDING = {"A": (800, 5, 453), "A'": (4238, 5457, 6241), "B": (1, 70, 4)}
TTFT_SLO_S = 2.0
TBT_SLO_S = 0.1


def with_mixed_pool(sc: Scenario, mixed_pool: bool) -> Scenario:
    """A mirror scenario with the mixed pool on (as its scheduler) or off (pure P/D)."""
    st = sc.settings
    engine = dataclasses.replace(st.engine, mixed_pool=mixed_pool)
    return dataclasses.replace(sc, settings=dataclasses.replace(st, engine=engine))


def flat_decode_step(calibration: Calibration) -> Calibration:
    """A diagnostic calibration: no per-sequence host cost in a decode step, so the step stays nearly
    flat in the batch size, as SplitwiseSim's decode iteration does (42.6–45.0 ms on an A100 from 1
    to 512 sequences; ``measured-2023`` fits ≈ 0.26 ms a sequence: ≈ 80 ms at 128)."""
    return dataclasses.replace(calibration, decode_seq_overhead_s=0.0)


def verdict(summary: dict[str, Any]) -> bool:
    """SplitwiseSim's SLO on its own metrics: p99 TTFT < 2 s and p99 TBT < 100 ms."""
    lat = summary["latency"]
    return bool(lat["ttft_splitwise_s"]["p99"] < TTFT_SLO_S and lat["tbt_splitwise_s"]["p99"] < TBT_SLO_S)


def run_case(sc: Scenario, calibration: Calibration, mixed_pool: bool = True) -> dict[str, Any]:
    """The summary of one case's run (``sc`` loaded from its file in ``CASES``)."""
    return SimulationRun(with_mixed_pool(sc, mixed_pool), calibration).run()


def lending_counts(sc: Scenario, calibration: Calibration) -> tuple[int, int, int]:
    """Where the mixed pool ran each phase, from one run's request records: (prompts run on a decode
    instance, decodes run on a prefill instance, requests with both phases on one instance)."""
    run = SimulationRun(with_mixed_pool(sc, True), calibration)
    if not isinstance(run.engine, RequestEngine):
        raise TypeError(f"scenario {sc.name}: the mirror needs the request engine")
    buf = io.StringIO()
    run.engine.records = RecordWriter(buf)
    run.run()
    roles = {i.id: i.role for i in run.cluster.instances.values()}
    prompts = decodes = same = 0
    for row in csv.DictReader(io.StringIO(buf.getvalue())):
        p, d = row["prefill_instance"], row["decode_instance"]
        if not p or not d:  # failed before both phases were placed: lent nowhere
            continue
        prompts += roles[p] is Role.DECODE
        decodes += roles[d] is Role.PREFILL
        same += p == d
    return prompts, decodes, same
