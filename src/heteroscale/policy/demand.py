"""See demand, not served throughput: when prefill censors decode TPS, size from arrivals and the backlog.

Decode TPS is what the decode pool *served*. When prefill saturates first, requests wait in the prefill
queue, decode TPS stops rising with the load, and a policy sized from it adds too little: the signal is
censored by the other role. :func:`see_demand` says whether that is happening and, if so, what the load
asks for (docs/POLICY.md):

* **saturated**: prefill GPU utilisation at or above ``saturated_util`` — prefill serves all it can,
  so decode TPS is capped by it (a scale-in of prefill on such a reading would be wrong); or
* **a backlog with a confirmation**: the prefill queue (window mean, else its last value) would take at
  least ``backlog_wait_factor`` × the TTFT SLO to drain at the ready prefill fleet's target rate, and
  TTFT p90 is at or above its SLO while TBT p90 is within its own (latency points at prefill), or the
  queue grew since the last observation.

When censored, two demands replace the served figures, and the policy takes the max of each with what
it would size anyway:

* decode demand ``λ · L_out`` tokens/s (arrivals × the observed mean output length);
* prefill need ``(λ + Q / drain_s) / μ`` instances, μ being one preferred prefill instance's request
  rate at target, rescaled by the observed mean prompt length (the backlog ``Q`` drains within
  ``drain_s`` while new arrivals are served). That is the backlog in prompt tokens divided by one
  instance's prefill rate in tokens, the same quotient in requests.

Where the arrival rate is not measured (``requests_per_s`` None), λ falls back to the served rate
``decode TPS / L_out``: the backlog term still sees the queue. Live, ``requests_per_s`` is the rate of
finished requests from the engines (or of the Dynamo frontend's requests), itself capped while
prefill saturates; the backlog term then carries the demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from heteroscale.domain.decision import Reason
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.service import ServiceSpec
from heteroscale.policy.context import PolicyMemory, ServiceCounts, Targets
from heteroscale.policy.outcome import remember_sample
from heteroscale.policy.sizing import size_role_by_tps

QUEUE_SAMPLE = "demand.prefill_queue"  # the last two observations' prefill queues, to see it grow or drain


def queue_draining(memory: PolicyMemory, observation: Observation) -> bool:
    """Whether the prefill queue shrank from the previous observation to ``observation`` (both in memory,
    kept by :func:`see_demand` at each observation's window end)."""
    series = memory.series(QUEUE_SAMPLE)
    current = len(series) >= 2 and abs(series[-1][0] - observation.window_end_s) < 1e-9
    return current and series[-1][1] < series[-2][1]


@dataclass(frozen=True, slots=True)
class DemandParams:
    """[ours] When decode TPS counts as censored by prefill, and how demand is sized then."""

    backlog_wait_factor: float = 1.0  # a backlog: the queue's wait at target rate ≥ this × the TTFT SLO
    saturated_util: float = 0.9  # prefill GPU utilisation at or above this is saturated
    drain_s: float = 60.0  # the prefill need drains the backlog within this, serving arrivals meanwhile
    # a scale-out sized from demand passes the scale-out cooldown: it counts starting capacity already
    passes_cooldown: bool = True

    def __post_init__(self) -> None:
        if not self.backlog_wait_factor > 0:
            raise ValueError(f"backlog_wait_factor must be > 0, got {self.backlog_wait_factor}")
        if not 0 < self.saturated_util <= 1:
            raise ValueError(f"saturated_util must be in (0, 1], got {self.saturated_util}")
        if not self.drain_s > 0:
            raise ValueError(f"drain_s must be > 0, got {self.drain_s}")


@dataclass(frozen=True, slots=True)
class Demand:
    """What :func:`see_demand` found: whether decode TPS is censored and, if so, the demands."""

    censored: bool
    reason: Reason  # SIGNAL_CENSORED or SIGNAL_UNCENSORED
    detail: str
    decode_tps: float = 0.0  # decode demand, tokens/s (0 when not censored)
    prefill_count: int = 0  # prefill instances the arrivals and the backlog need (0 when not censored)
    short: bool = False  # prefill ordered (ready + starting) serves less than the arrivals: the queue never drains
    memory: PolicyMemory | None = None  # memory with this observation's queue sample


def queue_of(observation: Observation, role: Role) -> float | None:
    """A role's queue over the window: its mean, else the window-end value; None when not measured."""
    signals = observation.role(role)
    return signals.queue_len_mean if signals.queue_len_mean is not None else signals.queue_len


def rate_per_instance(observation: Observation, targets: Targets, role: Role) -> float:
    """One preferred instance's request rate at target, rescaled by the observed mean length (prompt for
    prefill, output for decode) against the pressure test's; 0 when the targets carry none."""
    if role is Role.PREFILL:
        base, seen, tested = (
            targets.requests_per_s_per_prefill,
            observation.mean_input_tokens,
            targets.mean_input_tokens,
        )
    else:
        base, seen, tested = (
            targets.requests_per_s_per_decode,
            observation.mean_output_tokens,
            targets.mean_output_tokens,
        )
    if base <= 0:
        return 0.0
    if seen is None or seen <= 0 or tested <= 0:
        return base
    return base * tested / seen


def see_demand(
    observation: Observation,
    spec: ServiceSpec,
    counts: ServiceCounts,
    targets: Targets,
    memory: PolicyMemory,
    params: DemandParams,
) -> Demand:
    """Whether decode TPS is censored by prefill, and the demands when it is (module doc)."""
    queue = queue_of(observation, Role.PREFILL)
    previous = memory.series(QUEUE_SAMPLE)
    mem = memory if queue is None else remember_sample(memory, QUEUE_SAMPLE, observation.window_end_s, queue, keep_n=2)
    mu = rate_per_instance(observation, targets, Role.PREFILL)
    if queue is None or mu <= 0:
        why = "prefill queue not measured" if queue is None else "no prefill request-rate target"
        return Demand(False, Reason.SIGNAL_UNCENSORED, f"{why}: decode TPS drives", memory=mem)
    ready = counts.prefill.ready
    wait_s = queue / (ready * mu) if ready > 0 else (math.inf if queue > 0 else 0.0)
    limit_s = params.backlog_wait_factor * spec.slo.ttft_s
    shown = f"prefill queue {queue:.3g} ≈ {wait_s:.3g} s at {ready}×{mu:.3g} req/s (backlog at ≥ {limit_s:g} s)"
    util = observation.prefill.gpu_util
    saturated = util is not None and util >= params.saturated_util
    if saturated:
        signs = [f"prefill utilisation {util:.2f} ≥ {params.saturated_util:g}"]
    elif wait_s < limit_s:
        return Demand(False, Reason.SIGNAL_UNCENSORED, f"{shown}: no backlog, decode TPS drives", memory=mem)
    else:
        signs = _confirmations(observation, spec, queue, previous)
    if not signs:
        detail = f"{shown}, but prefill neither saturated, nor TTFT-bound, nor growing: decode TPS drives"
        return Demand(False, Reason.SIGNAL_UNCENSORED, detail, memory=mem)
    out_tokens = observation.mean_output_tokens or targets.mean_output_tokens
    decode_tps = observation.decode.tps or 0.0
    arrivals = observation.requests_per_s
    if arrivals is None:
        arrivals = decode_tps / out_tokens if out_tokens > 0 else 0.0
        how = f"λ = served {arrivals:.3g} req/s (arrivals not measured)"
    else:
        how = f"λ = {arrivals:.3g} req/s"
    need_equiv = (arrivals + queue / params.drain_s) / mu
    m_pref = dict(targets.prefill_tps_per_instance).get(spec.preferred_shape(Role.PREFILL).key, 0.0)
    if m_pref > 0:  # count capacity per GPU type, as the decode sizing does
        prefill = size_role_by_tps(need_equiv * m_pref, Role.PREFILL, counts, spec.prefill_shapes, targets).count
    else:
        prefill = max(0, math.ceil(need_equiv - 1e-9))
    demand_tps = arrivals * out_tokens
    detail = (
        f"{shown}; {', '.join(signs)}: decode TPS censored by prefill; {how}; decode demand λ·{out_tokens:.4g} = "
        f"{demand_tps:.4g} tok/s; prefill need (λ + {queue:.3g}/{params.drain_s:g} s)/{mu:.3g} = {need_equiv:.3g} "
        f"→ {prefill}"
    )
    ordered = counts.prefill.ready + counts.prefill.starting
    short = ordered * mu < arrivals
    if short:
        detail += f"; the {ordered} ordered serve {ordered * mu:.3g} < λ {arrivals:.3g} req/s: the queue never drains"
    return Demand(True, Reason.SIGNAL_CENSORED, detail, demand_tps, prefill, memory=mem, short=short)


def _confirmations(
    observation: Observation, spec: ServiceSpec, queue: float, previous: list[tuple[float, float]]
) -> list[str]:
    """What confirms that a backlog censors decode TPS: a TTFT-bound breach, or a growing queue."""
    signs: list[str] = []
    ttft, tbt = observation.ttft_p90_s, observation.tbt_p90_s
    if ttft is not None and ttft >= spec.slo.ttft_s and (tbt is None or tbt < spec.slo.tbt_s):
        signs.append(f"TTFT p90 {ttft:.3g} s ≥ SLO {spec.slo.ttft_s:g} s with TBT within its SLO")
    if previous and queue > previous[-1][1]:  # ``previous`` is the memory before this observation
        signs.append(f"queue grew from {previous[-1][1]:.3g}")
    return signs


__all__ = ["QUEUE_SAMPLE", "Demand", "DemandParams", "queue_draining", "queue_of", "rate_per_instance", "see_demand"]
