"""The saturation bound of the work a run did, and the check that no run beats it.

Every run ends with ``GPU-hours ≥ bound`` per role and ``cost ≥ cost bound``, where the bound is the
least GPU time the work the run completed takes at saturation (:mod:`heteroscale.sim.saturation`).
Why it holds: an instance is billed from launch to gone, and it serves only while it exists, one batch
or step at a time, never faster than the performance model at its largest feasible batch; so its
billed GPU-seconds are at least its busy GPU-seconds, which are at least the saturation cost of what it
served, whichever shape served it. Summing over instances gives the bound, whatever the policy, its
SLO or its timing. The check is cheap (one vectorised sum per service), so :class:`SimulationRun`
makes it on every run and raises :class:`~heteroscale.errors.SimulationInvariantError` on a breach:
a run below it would mean the simulator served work faster than its own performance model allows.

What "the work it did" is depends on the engine. The request engine knows which requests completed,
so the bound sums their costs (each request's whole prefill and decode; partial work on failed or
unfinished requests only adds to the run's side). The fluid engine serves flows, so the bound prices
the tokens each role served at the load mix's token-weighted saturation cost per token, which is the
cost per token the fluid engine's own rates average over (its prefill runs at the mix's solo rate,
its decode at the mix's mean context).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from heteroscale.domain.hardware import GpuSku, InstanceShape, Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.errors import SimulationInvariantError
from heteroscale.perf import InstancePerf
from heteroscale.sim.cluster import SimCluster
from heteroscale.sim.engine import Engine, ServiceLoad
from heteroscale.sim.saturation import RequestCosts, request_costs

REL_TOL = 1e-6  # the request engine rounds a decode step count to its target within 1e-6 steps


@dataclass(frozen=True, slots=True)
class WorkBound:
    """Least GPU-seconds per role and least cost-weighted GPU-seconds of some work, at saturation."""

    prefill_gpu_s: float
    decode_gpu_s: float
    cost_gpu_s: float

    @property
    def gpu_hours(self) -> float:
        return (self.prefill_gpu_s + self.decode_gpu_s) / 3600.0

    def plus(self, other: WorkBound) -> WorkBound:
        return WorkBound(
            self.prefill_gpu_s + other.prefill_gpu_s,
            self.decode_gpu_s + other.decode_gpu_s,
            self.cost_gpu_s + other.cost_gpu_s,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpu_hours": round(self.gpu_hours, 6),
            "gpu_hours_by_role": {
                Role.PREFILL.value: round(self.prefill_gpu_s / 3600.0, 6),
                Role.DECODE.value: round(self.decode_gpu_s / 3600.0, 6),
            },
            "cost": round(self.cost_gpu_s / 3600.0, 6),
        }


ZERO = WorkBound(0.0, 0.0, 0.0)


def load_costs(
    spec: ServiceSpec, load: ServiceLoad, perfs: Mapping[InstanceShape, InstancePerf], skus: Mapping[str, GpuSku]
) -> RequestCosts:
    """Saturation costs of every request of ``load`` (of its length mix, for a rate-curve load) on the
    shapes ``spec`` allows (a run's own: a variant may allow fewer than the load's spec)."""
    return request_costs(spec, load.trace, load.cached_tokens, perfs, skus)


def requests_bound(costs: RequestCosts, mask: np.ndarray) -> WorkBound:
    """The bound of the requests selected by ``mask`` (servable ones only: the others never complete)."""
    pick = mask & costs.servable
    return WorkBound(
        float(costs.prefill_gpu_s[pick].sum()),
        float(costs.decode_gpu_s[pick].sum()),
        float(costs.prefill_cost_s[pick].sum() + costs.decode_cost_s[pick].sum()),
    )


def tokens_bound(costs: RequestCosts, load: ServiceLoad, prefill_tokens: float, decode_tokens: float) -> WorkBound:
    """The bound of ``prefill_tokens`` cache-missed prompt tokens and ``decode_tokens`` generated tokens
    of ``load``'s mix, each priced at the mix's token-weighted saturation cost per token."""
    new = (load.trace.input_tokens - load.cached_tokens).astype(np.float64)
    steps = np.maximum(load.trace.output_tokens.astype(np.float64) - 1.0, 0.0)[costs.servable]
    new_total = float(new.sum())
    steps_total = float(steps.sum())
    p_gpu = float(costs.prefill_gpu_s.sum()) / new_total if new_total > 0 else 0.0
    p_cost = float(costs.prefill_cost_s.sum()) / new_total if new_total > 0 else 0.0
    d_gpu = float(costs.decode_gpu_s.sum()) / steps_total if steps_total > 0 else 0.0
    d_cost = float(costs.decode_cost_s.sum()) / steps_total if steps_total > 0 else 0.0
    return WorkBound(prefill_tokens * p_gpu, decode_tokens * d_gpu, prefill_tokens * p_cost + decode_tokens * d_cost)


def served_tokens(cluster: SimCluster, svc: int) -> dict[Role, float]:
    """Tokens every instance of service ``svc`` served over the run, per role."""
    out = {role: 0.0 for role in Role}
    for inst in cluster.instances.values():
        if inst.svc == svc:
            out[inst.role] += inst.acc_tokens
    return out


def run_bound(engine: Engine, loads: Sequence[ServiceLoad], costs: Sequence[RequestCosts]) -> WorkBound:
    """The saturation bound of the work a finished run did (see the module doc)."""
    total = ZERO
    for svc, (load, c) in enumerate(zip(loads, costs, strict=True)):
        mask = engine.completed_mask(svc)
        if mask is not None:
            total = total.plus(requests_bound(c, mask))
        else:
            served = served_tokens(engine.cluster, svc)
            total = total.plus(tokens_bound(c, load, served[Role.PREFILL], served[Role.DECODE]))
    return total


def check_bound(scenario: str, bound: WorkBound, gpu_s_by_role: Mapping[str, float], cost_gpu_s: float) -> None:
    """Raise :class:`SimulationInvariantError` when a run's billing is below the bound of its work."""
    pairs = (
        ("prefill GPU-hours", gpu_s_by_role.get(Role.PREFILL.value, 0.0), bound.prefill_gpu_s),
        ("decode GPU-hours", gpu_s_by_role.get(Role.DECODE.value, 0.0), bound.decode_gpu_s),
        ("cost", cost_gpu_s, bound.cost_gpu_s),
    )
    for what, billed, least in pairs:
        if billed < least * (1.0 - REL_TOL) - 1e-9:
            raise SimulationInvariantError(
                f"scenario {scenario}: {what} {billed / 3600.0:.6g} below the saturation bound "
                f"{least / 3600.0:.6g} of the work it completed (a simulator defect; please report it)"
            )
