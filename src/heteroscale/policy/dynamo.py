"""``dynamo-sla``: an NVIDIA Dynamo SLA-planner-style policy (HETEROSCALE.md §7), from its formulas.

Every tick it updates a forecast of three series — request rate, mean input length (ISL) and mean
output length (OSL) — with Holt's linear method (an EWMA of the level plus an EWMA of the slope, in
per-second units so uneven ticks are fine; α = 0.5, β = 0.3). The forecast for the next interval is
``level + slope · interval`` (the end of the interval, where a rising load is highest), never below 0.
The state lives in ``PolicyMemory.values`` (``rate.level``, ``rate.slope_per_s``, ``rate.at_s``, …).

Every ``adjustment_interval_s`` (180 s) it sizes both pools from the forecast (between adjustments it
holds, and says so):

    prefill capacity/instance  rps_p = requests_per_s_per_prefill · mean_in / ISL
    decode capacity/instance   rps_d = requests_per_s_per_decode · (mean_in + mean_out/2)/(ISL + OSL/2)
                                                                  · mean_out / OSL
    P = ceil(rate · c_p / rps_p),  D = ceil(rate · c_d / rps_d)

``mean_in``/``mean_out`` and the per-instance rates are the pressure test's (``Targets``). The decode
rescaling has two factors: the KV context a request holds (concurrency per instance ∝ 1/context)
and the tokens it needs (requests/s ∝ 1/OSL); set ``decode_kv_bound=False`` to keep only the latter.
Correction factors are observed / expected latency, ``c_p = TTFT p90 / targets.ttft_s`` and
``c_d = TBT p90 / targets.tbt_s``, clamped to [0.5, 2] (1 when a latency is not measured).

No P/D ratio coordination, no damping; bounds last. Scale-in kills with a 30 s grace (Dynamo does not
drain in-flight work). Holds on a missing, stale or partial observation or an unmeasured request rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from heteroscale.domain.decision import Reason
from heteroscale.domain.observation import Observation
from heteroscale.policy.context import PolicyContext, PolicyMemory, Targets
from heteroscale.policy.normalize import PD, ceil_count
from heteroscale.policy.outcome import KILL, ScaleIn, with_values
from heteroscale.policy.stages import Bounds, Interval
from heteroscale.policy.wrapper import Raw, Seen, ShapedPolicy, Shaping


@dataclass(frozen=True, slots=True)
class DynamoParams:
    adjustment_interval_s: float = 180.0
    level_smoothing: float = 0.5  # α of Holt's method
    slope_smoothing: float = 0.3  # β of Holt's method
    # Dynamo divides observed by *expected* latency (its model's prediction at the current load). The
    # policy context carries no per-load latency model, only the knee thresholds, so a factor below 1
    # would mean "faster than at the knee" and halve replicas at light load; it is floored at 1.
    correction_min: float = 1.0
    correction_max: float = 2.0
    decode_kv_bound: bool = True
    scale_in: ScaleIn = field(default_factory=lambda: KILL)

    def __post_init__(self) -> None:
        if self.adjustment_interval_s < 0:
            raise ValueError(f"adjustment_interval_s must be ≥ 0, got {self.adjustment_interval_s}")
        if not (0 < self.level_smoothing <= 1 and 0 <= self.slope_smoothing <= 1):
            raise ValueError("level_smoothing must be in (0, 1] and slope_smoothing in [0, 1]")
        if not 0 < self.correction_min <= 1 <= self.correction_max:
            raise ValueError("correction bounds need 0 < correction_min ≤ 1 ≤ correction_max")


@dataclass(frozen=True, slots=True)
class Holt:
    """Holt's linear smoothing state of one series."""

    level: float
    slope_per_s: float
    at_s: float

    def update(self, value: float, now_s: float, alpha: float, beta: float) -> Holt:
        dt_s = now_s - self.at_s
        if dt_s <= 0:
            return self
        level = alpha * value + (1 - alpha) * (self.level + self.slope_per_s * dt_s)
        slope = beta * (level - self.level) / dt_s + (1 - beta) * self.slope_per_s
        return Holt(level, slope, now_s)

    def forecast(self, horizon_s: float) -> float:
        return max(0.0, self.level + self.slope_per_s * horizon_s)


def load_holt(memory: PolicyMemory, name: str) -> Holt | None:
    stored = dict(memory.values)
    if f"{name}.level" not in stored:
        return None
    return Holt(stored[f"{name}.level"], stored[f"{name}.slope_per_s"], stored[f"{name}.at_s"])


def store_holt(memory: PolicyMemory, name: str, state: Holt) -> PolicyMemory:
    return with_values(
        memory, {f"{name}.level": state.level, f"{name}.slope_per_s": state.slope_per_s, f"{name}.at_s": state.at_s}
    )


@dataclass(frozen=True, slots=True)
class Forecast:
    rate_rps: float
    isl_tokens: float
    osl_tokens: float


def correction(observed_s: float | None, expected_s: float, lo: float = 0.5, hi: float = 2.0) -> float:
    """observed / expected latency, clamped to [lo, hi]; 1 when not measured."""
    if observed_s is None or expected_s <= 0:
        return 1.0
    return min(hi, max(lo, observed_s / expected_s))


def dynamo_sizing(
    forecast: Forecast, targets: Targets, c_prefill: float, c_decode: float, decode_kv_bound: bool = True
) -> tuple[PD, str]:
    """P and D for a forecast (module doc), with the arithmetic as a detail string."""
    isl = max(1.0, forecast.isl_tokens)
    osl = max(1.0, forecast.osl_tokens)
    rps_p = targets.requests_per_s_per_prefill * targets.mean_input_tokens / isl
    context = (targets.mean_input_tokens + targets.mean_output_tokens / 2) / (isl + osl / 2)
    rps_d = targets.requests_per_s_per_decode * targets.mean_output_tokens / osl
    if decode_kv_bound:
        rps_d *= context
    if rps_p <= 0 or rps_d <= 0:
        raise ValueError("dynamo-sla needs positive requests_per_s_per_prefill / _decode targets")
    prefill = ceil_count(forecast.rate_rps * c_prefill / rps_p)
    decode = ceil_count(forecast.rate_rps * c_decode / rps_d)
    detail = (
        f"forecast {forecast.rate_rps:.4g} req/s, ISL {isl:.4g}, OSL {osl:.4g}; "
        f"P = ceil({forecast.rate_rps:.4g}·{c_prefill:.3g}/{rps_p:.4g}) = {prefill}; "
        f"D = ceil({forecast.rate_rps:.4g}·{c_decode:.3g}/{rps_d:.4g}) = {decode}"
    )
    return PD(prefill, decode), detail


def dynamo_shaping(params: DynamoParams) -> Shaping:
    """The adjustment interval, then bounds: no hysteresis, cooldown, damping or P/D coordination."""
    stages = (Interval(params.adjustment_interval_s, key="dynamo.last_adjust_s"), Bounds())
    return Shaping(stages, ("requests_per_s",), params.scale_in)


class DynamoSlaPolicy(ShapedPolicy):
    """Forecast → SLA-feasible replicas per role, corrected by observed/expected latency (module doc)."""

    def __init__(
        self, params: DynamoParams | None = None, *, shaping: Shaping | None = None, name: str = "dynamo-sla"
    ) -> None:
        self.params = params or DynamoParams()
        self.shaping = shaping or dynamo_shaping(self.params)
        self.name = name

    def _forecast(self, memory: PolicyMemory, observation: Observation, now_s: float) -> tuple[Forecast, PolicyMemory]:
        prm = self.params
        series = {
            "rate": observation.requests_per_s,
            "isl": observation.mean_input_tokens,
            "osl": observation.mean_output_tokens,
        }
        values: dict[str, float | None] = {}
        for name, value in series.items():
            state = load_holt(memory, name)
            if value is not None:
                state = (
                    Holt(value, 0.0, now_s)
                    if state is None
                    else state.update(value, now_s, prm.level_smoothing, prm.slope_smoothing)
                )
                memory = store_holt(memory, name, state)
            values[name] = None if state is None else state.forecast(prm.adjustment_interval_s)
        rate, isl, osl = values["rate"], values["isl"], values["osl"]
        return Forecast(rate or 0.0, isl or 0.0, osl or 0.0), memory

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        prm = self.params
        observation = seen.observation
        forecast, memory = self._forecast(ctx.memory, observation, ctx.now_s)
        targets = ctx.targets
        if forecast.isl_tokens <= 0:
            forecast = Forecast(forecast.rate_rps, targets.mean_input_tokens, forecast.osl_tokens)
        if forecast.osl_tokens <= 0:
            forecast = Forecast(forecast.rate_rps, forecast.isl_tokens, targets.mean_output_tokens)
        c_p = correction(observation.ttft_p90_s, targets.ttft_s, prm.correction_min, prm.correction_max)
        c_d = correction(observation.tbt_p90_s, targets.tbt_s, prm.correction_min, prm.correction_max)
        sized, detail = dynamo_sizing(forecast, targets, c_p, c_d, prm.decode_kv_bound)
        note = f"corrections TTFT ×{c_p:.3g}, TBT ×{c_d:.3g}"
        return Raw(sized, Reason.FORECAST, detail, memory=memory, notes=(("interval", note),))
