"""Single-signal policies for the paper's signal study (HETEROSCALE.md §4, Fig. 6): ``signal:<s>``.

Each policy drives ONE role from ONE signal and sizes the other role at the P/D ratio r:

* ``decode-tps`` / ``prefill-tps``: capacity-based proportional control, as HeteroScale
  (``sizing.size_by_capacity``) on that role's TPS and per-instance TPS targets;
* ``*-gpu-util`` / ``*-sm-activity``: HPA-style ``ceil(ready · value / target)``, ready being the
  instances the observed average is over; the target comes from ``Targets``;
* ``ttft`` (drives prefill) / ``tbt`` (drives decode): threshold-driven. p90 above the threshold
  (``Targets.ttft_s`` / ``tbt_s``) → +20 % (ceil, at least +1); p90 below 0.5× the threshold → −10 %
  (at least −1); otherwise hold. For these the threshold band *is* the hysteresis (a −10 % step would
  never leave a ±10 % R band), so the "hysteresis" step records the band and the R band is skipped.

A decode-driven policy sets P = max(min_prefill, round(D·r)); a prefill-driven one D = max(min_decode,
round(P/r)). Then the same stabilisation, cooldown, damping and bounds as HeteroScale, and the same hold
on a missing, stale or partial observation. No latency safety net: each policy shows its signal alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import ScaleInMode
from heteroscale.policy.context import PolicyContext, Targets
from heteroscale.policy.defaults import DRAIN_GRACE_S
from heteroscale.policy.normalize import PD, Stability, coordinate_pd, current_counts
from heteroscale.policy.outcome import ScaleIn
from heteroscale.policy.sizing import grow, proportional, shrink, size_role_by_tps
from heteroscale.policy.stages import Coordinate, Stabilise, limit_stages, stability_stages
from heteroscale.policy.wrapper import Raw, Seen, ShapedPolicy, Shaping


class Signal(StrEnum):
    PREFILL_TPS = "prefill-tps"
    DECODE_TPS = "decode-tps"
    PREFILL_GPU_UTIL = "prefill-gpu-util"
    DECODE_GPU_UTIL = "decode-gpu-util"
    PREFILL_SM_ACTIVITY = "prefill-sm-activity"
    DECODE_SM_ACTIVITY = "decode-sm-activity"
    TTFT = "ttft"
    TBT = "tbt"


@dataclass(frozen=True, slots=True)
class _SignalSpec:
    driver: Role
    observed: str  # read_signal name
    kind: str  # "tps" | "linear" | "latency"


_SPECS: dict[Signal, _SignalSpec] = {
    Signal.PREFILL_TPS: _SignalSpec(Role.PREFILL, "prefill.tps", "tps"),
    Signal.DECODE_TPS: _SignalSpec(Role.DECODE, "decode.tps", "tps"),
    Signal.PREFILL_GPU_UTIL: _SignalSpec(Role.PREFILL, "prefill.gpu_util", "linear"),
    Signal.DECODE_GPU_UTIL: _SignalSpec(Role.DECODE, "decode.gpu_util", "linear"),
    Signal.PREFILL_SM_ACTIVITY: _SignalSpec(Role.PREFILL, "prefill.sm_activity", "linear"),
    Signal.DECODE_SM_ACTIVITY: _SignalSpec(Role.DECODE, "decode.sm_activity", "linear"),
    Signal.TTFT: _SignalSpec(Role.PREFILL, "ttft_p90_s", "latency"),
    Signal.TBT: _SignalSpec(Role.DECODE, "tbt_p90_s", "latency"),
}


def signal_target(signal: Signal, targets: Targets) -> float:
    """The target of a utilisation / SM-activity / latency signal (TPS targets are per shape)."""
    table = {
        Signal.PREFILL_GPU_UTIL: targets.prefill_gpu_util,
        Signal.DECODE_GPU_UTIL: targets.decode_gpu_util,
        Signal.PREFILL_SM_ACTIVITY: targets.prefill_sm_activity,
        Signal.DECODE_SM_ACTIVITY: targets.decode_sm_activity,
        Signal.TTFT: targets.ttft_s,
        Signal.TBT: targets.tbt_s,
    }
    if signal not in table:
        raise ValueError(f"signal {signal.value} has per-shape TPS targets, not one target")
    return table[signal]


@dataclass(frozen=True, slots=True)
class SignalParams:
    """Knobs of the single-signal policies; stability defaults are HeteroScale's."""

    stability: Stability = field(default_factory=Stability)
    latency_out_fraction: float = 0.2  # p90 above the threshold → +20 %
    latency_in_fraction: float = 0.1  # p90 below latency_in_factor × threshold → −10 %
    latency_in_factor: float = 0.5
    pd_ratio: float | None = None  # None: spec.pd_ratio
    drain_grace_s: float = DRAIN_GRACE_S

    def __post_init__(self) -> None:
        if self.latency_out_fraction <= 0 or not 0 < self.latency_in_fraction < 1:
            raise ValueError("latency_out_fraction must be > 0 and latency_in_fraction in (0, 1)")
        if not 0 < self.latency_in_factor < 1:
            raise ValueError(f"latency_in_factor must be in (0, 1), got {self.latency_in_factor}")
        if self.pd_ratio is not None and self.pd_ratio <= 0:
            raise ValueError(f"pd_ratio must be > 0, got {self.pd_ratio}")


def latency_band(
    current: PD, driver: Role, p90_s: float, threshold_s: float, params: SignalParams
) -> tuple[int, Reason, str]:
    """The driver's count from the threshold band: (count, reason, detail)."""
    cur = current.role(driver)
    low = params.latency_in_factor * threshold_s
    if p90_s > threshold_s:
        return grow(cur, params.latency_out_fraction), Reason.LATENCY_ABOVE, f"p90 {p90_s:.4g} s > {threshold_s:g} s"
    if p90_s < low:
        return shrink(cur, params.latency_in_fraction), Reason.LATENCY_BELOW, f"p90 {p90_s:.4g} s < {low:g} s"
    return cur, Reason.LATENCY_IN_BAND, f"p90 {p90_s:.4g} s within [{low:g}, {threshold_s:g}] s"


def signal_shaping(signal: Signal, params: SignalParams) -> Shaping:
    """HeteroScale's stabilisation, hysteresis (the threshold band for latency signals), P/D coordination
    from the driving role, cooldown, damping and bounds."""
    spec = _SPECS[signal]
    stability = params.stability
    if spec.kind == "latency":  # the threshold band is the hysteresis: no R band after it
        stages = (Stabilise(stability.scale_in_window_s), Coordinate(spec.driver), *limit_stages(stability))
    else:
        stages = (*stability_stages(stability, spec.driver), *limit_stages(stability))
    return Shaping(stages, (spec.observed,), ScaleIn(ScaleInMode.DRAIN, params.drain_grace_s))


class SingleSignalPolicy(ShapedPolicy):
    """One signal drives one role; the other follows at the P/D ratio (module doc)."""

    def __init__(
        self, signal: Signal | str, params: SignalParams | None = None, *, shaping: Shaping | None = None
    ) -> None:
        try:
            self.signal = Signal(signal)
        except ValueError:
            known = ", ".join(s.value for s in Signal)
            raise ValueError(f"unknown signal {signal!r}; known signals: {known}") from None
        self.params = params or SignalParams()
        self.name = f"signal:{self.signal.value}"
        self._spec = _SPECS[self.signal]
        self.shaping = shaping or signal_shaping(self.signal, self.params)

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        spec = self._spec
        value = seen.signals[spec.observed]
        ratio = ctx.spec.pd_ratio if self.params.pd_ratio is None else self.params.pd_ratio
        current = current_counts(ctx.counts)
        driver = spec.driver
        if spec.kind == "latency":
            return self._latency(ctx, current, value, ratio)
        if spec.kind == "tps":
            shapes = ctx.spec.shapes(driver)
            sizing = size_role_by_tps(value, driver, ctx.counts, shapes, ctx.targets)
            count, how = sizing.count, sizing.detail
        else:
            target = signal_target(self.signal, ctx.targets)
            base = seen.observation.role(driver).instances_ready or ctx.counts.role(driver).ready
            count = proportional(base, value, target)
            how = f"ceil({base}·{value:.4g}/{target:.4g}) = {count}"
        raw = coordinate_pd(ctx.spec, current, current.with_role(driver, count), driver=driver, ratio=ratio)
        detail = f"{self.signal.value}={value:.4g}; {driver.value} = {how}; {raw.detail}"
        return Raw(PD.of(raw), Reason.PROPORTIONAL, detail, ratio=ratio)

    def _latency(self, ctx: PolicyContext, current: PD, p90_s: float, ratio: float) -> Raw:
        driver = self._spec.driver
        threshold = signal_target(self.signal, ctx.targets)
        count, reason, why = latency_band(current, driver, p90_s, threshold, self.params)
        wanted = coordinate_pd(ctx.spec, current, current.with_role(driver, count), driver=driver, ratio=ratio)
        band = Step("hysteresis", wanted.prefill, wanted.decode, reason, f"threshold band replaces the R band: {why}")
        detail = f"{self.signal.value} {why}"
        return Raw(PD.of(wanted), Reason.LATENCY_THRESHOLD, detail, steps=(band,), ratio=ratio)
