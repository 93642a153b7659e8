"""Metric coverage: do the instances that report metrics cover the instances that serve?

A scrape that reaches only some pods makes every summed signal read low (1 of 3 decode pods scraped
reads a third of the decode TPS), and a policy would scale in on it. Before any policy decides, the
controller compares, per role, the instances the metric source saw (``RoleSignals.instances_ready``:
the pods in the TPS sum) with the serving instances, Ready and in service discovery
(:func:`serving_counts`; one held out of discovery serves nothing). Of those, the *established* ones
were Ready before the observation window began; one Ready inside it served only part of the window
and may be too new for a rate, so its missing share is small and is not extrapolated:

* every serving instance reports (or none serves)      → ``coverage-ok``: the observation as read;
* fewer than half report                                → ``coverage-hold``: the policy gets no
  observation (it holds, and says why);
* fewer established ones report than there are          → ``coverage-extrapolated``: the role's sums
  (TPS, queue length, running requests) × established ÷ reporting, so a scale-out can go ahead;
* only instances Ready within the window are missing    → ``coverage-partial``: the sums as read.

Whenever coverage is not ``ok`` the service never scales in this cycle: :func:`keep_no_scale_in` lifts
every desired count back to its current count after the policy (a ``coverage`` step says so) and takes
the scale-in the policy stamped into its memory back out. Averages (GPU utilisation, SM activity, KV
usage) and latency quantiles are left as read: a sample of the instances estimates them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from heteroscale.domain.decision import Reason, ScalingDecision, Step
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation, RoleSignals
from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.policy.context import PolicyMemory, PolicyResult, ServiceCounts
from heteroscale.policy.normalize import PD, ROLES, current_counts
from heteroscale.policy.outcome import remember_actions

MIN_REPORTING_FRACTION = 0.5  # below this share of serving instances reporting, extrapolation is a guess


@dataclass(frozen=True, slots=True)
class Serving:
    """A role's instances that carry load: all of them, and those that did through the whole window."""

    serving: int
    established: int


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the policy may see and do, given how many instances report metrics."""

    observation: Observation | None  # the observation for the policy (extrapolated; None: hold)
    error: str | None  # why there is no observation, for the policy's hold step
    step: Step
    scale_in_allowed: bool

    @property
    def hold(self) -> bool:
        return self.step.reason is Reason.COVERAGE_HOLD


def serving_counts(instances: Iterable[InstanceInfo], window_start_s: float) -> dict[Role, Serving]:
    """Per role, the instances Ready and in service discovery, and how many of them were Ready at
    ``window_start_s`` (one without a Ready time counts as established)."""
    serving = dict.fromkeys(ROLES, 0)
    established = dict.fromkeys(ROLES, 0)
    for inst in instances:
        if inst.lifecycle is not Lifecycle.READY or not inst.in_discovery:
            continue
        serving[inst.role] += 1
        if inst.ready_at_s is None or inst.ready_at_s <= window_start_s:
            established[inst.role] += 1
    return {role: Serving(serving[role], established[role]) for role in ROLES}


def judge_coverage(
    observation: Observation | None, error: str | None, counts: ServiceCounts, serving: Mapping[Role, Serving]
) -> Coverage:
    """The coverage verdict for one service (see the module doc); ``serving`` from :func:`serving_counts`."""
    cur = current_counts(counts)
    if observation is None:
        # nothing was read: the policy's own check holds on the error
        step = Step("coverage", cur.prefill, cur.decode, Reason.COVERAGE_OK, "no observation to judge")
        return Coverage(None, error, step, True)
    notes: list[str] = []
    verdicts: set[Reason] = set()
    factors = dict.fromkeys(ROLES, 1.0)
    for role in ROLES:
        reporting = observation.role(role).instances_ready
        all_n, old_n = serving[role].serving, serving[role].established
        said = f"{role.value} {reporting} of {all_n} serving instance(s) report"
        if all_n == 0 or reporting >= all_n:
            notes.append(said)
        elif reporting == 0 or reporting < MIN_REPORTING_FRACTION * all_n:
            verdicts.add(Reason.COVERAGE_HOLD)
            notes.append(f"{said}, fewer than {MIN_REPORTING_FRACTION:.0%}")
        elif reporting < old_n:
            verdicts.add(Reason.COVERAGE_EXTRAPOLATED)
            factors[role] = old_n / reporting
            notes.append(f"{said}: sums × {old_n}/{reporting} (instances Ready through the window)")
        else:
            verdicts.add(Reason.COVERAGE_PARTIAL)
            notes.append(f"{said}: the {all_n - reporting} missing became Ready within the window, not extrapolated")
    if Reason.COVERAGE_HOLD in verdicts:
        detail = "; ".join(notes) + ": the policy gets no observation (it holds), no scale-in until more report"
        step = Step("coverage", cur.prefill, cur.decode, Reason.COVERAGE_HOLD, detail)
        return Coverage(None, f"partial metric coverage: {detail}", step, False)
    if not verdicts:
        step = Step("coverage", cur.prefill, cur.decode, Reason.COVERAGE_OK, "; ".join(notes))
        return Coverage(observation, error, step, True)
    reason = Reason.COVERAGE_EXTRAPOLATED if Reason.COVERAGE_EXTRAPOLATED in verdicts else Reason.COVERAGE_PARTIAL
    seen = dataclasses.replace(
        observation,
        prefill=_scaled(observation.prefill, factors[Role.PREFILL], serving[Role.PREFILL].established),
        decode=_scaled(observation.decode, factors[Role.DECODE], serving[Role.DECODE].established),
    )
    detail = "; ".join(notes) + "; no scale-in while coverage is partial"
    step = Step("coverage", cur.prefill, cur.decode, reason, detail)
    return Coverage(seen, error, step, False)


def _scaled(signals: RoleSignals, factor: float, serving: int) -> RoleSignals:
    if factor == 1.0:
        return signals

    def times(value: float | None) -> float | None:
        return None if value is None else value * factor

    return dataclasses.replace(
        signals,
        instances_ready=serving,
        tps=times(signals.tps),
        queue_len=times(signals.queue_len),
        running=times(signals.running),
    )


def keep_no_scale_in(coverage: Coverage, result: PolicyResult, before: PolicyMemory, now_s: float) -> PolicyResult:
    """The policy's result with the coverage step first and, when coverage is partial, no role below its
    current count (a last ``coverage`` step names what was lifted; memory forgets that scale-in)."""
    decision = result.decision
    steps = (coverage.step, *decision.steps)
    current = PD(decision.current_prefill, decision.current_decode)
    desired = PD(decision.desired_prefill, decision.desired_decode)
    kept = PD(max(desired.prefill, current.prefill), max(desired.decode, current.decode))
    if coverage.scale_in_allowed or kept == desired:
        return dataclasses.replace(result, decision=dataclasses.replace(decision, steps=steps))
    lifted = [
        f"{role.value} {desired.role(role)}→{kept.role(role)}"
        for role in ROLES
        if kept.role(role) != desired.role(role)
    ]
    detail = f"scale-in blocked: {', '.join(lifted)} (partial metric coverage: {coverage.step.detail})"
    last = Step("coverage", kept.prefill, kept.decode, Reason.COVERAGE_NO_SCALE_IN, detail)
    clamped: ScalingDecision = dataclasses.replace(
        decision, desired_prefill=kept.prefill, desired_decode=kept.decode, steps=(*steps, last)
    )
    return dataclasses.replace(result, decision=clamped, memory=_restamp(before, result.memory, now_s, current, kept))


def _restamp(before: PolicyMemory, after: PolicyMemory, now_s: float, current: PD, final: PD) -> PolicyMemory:
    """``after`` with the action stamps the policy made replaced by those of the move actually decided."""
    values = dict(after.values)
    old = dict(before.values)
    for role in ROLES:
        for kind in ("out", "in"):
            key = f"{role.value}.last_scale_{kind}_s"
            if key in old:
                values[key] = old[key]
            else:
                values.pop(key, None)
    reset = dataclasses.replace(
        after,
        last_scale_out_s=before.last_scale_out_s,
        last_scale_in_s=before.last_scale_in_s,
        last_direction=before.last_direction,
        values=tuple(sorted(values.items())),
    )
    return remember_actions(reset, now_s, current, final)
