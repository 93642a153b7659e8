"""``dynamo-sla``: NVIDIA Dynamo's SLA planner as shipped (HETEROSCALE.md §7).

Follows ai-dynamo/dynamo ``components/planner/src/dynamo/planner/utils/planner_core.py`` @ 0761925
(``Planner.observe_metrics``, ``make_adjustments``, ``_compute_replica_requirements``),
``defaults.py`` @ 00c13f8 (``adjustment_interval`` 180 s, ``load_predictor`` "arima" with 50 samples,
``min_endpoint`` 1), ``utils/load_predictor.py`` @ 62e1328 (the predictors, :mod:`.arima`),
``utils/prometheus.py`` @ 00d479d (each metric averaged over the last interval) and
``docs/architecture/sla_planner.md``; scale-in as its operator runs workers
(``deploy/cloud/operator/docs/footer.md`` @ ac09daa: ``terminationGracePeriodSeconds`` 60, the
worker drains its in-flight requests): drain with a 60 s grace.

Every ``adjustment_interval_s`` (the first one interval after start) it:

1. averages the interval's metrics — request rate, ISL, OSL, TTFT, ITL, decode concurrency — and adds
   ``num_req`` (requests in the interval), ISL and OSL to its three predictors;
2. corrects: ``p_corr`` = observed TTFT ÷ expected TTFT at that ISL, ``d_corr`` = observed ITL ÷
   expected ITL at the observed concurrency and context (ISL + OSL/2), from the profile;
3. predicts next interval's ``num_req``, ISL, OSL (ARIMA; the last value with fewer than 5 points);
4. sizes ``P = ceil(num_req · ISL / interval · min(1, p_corr) / prefill tokens/s per instance)`` and
   ``D = ceil(num_req · OSL / interval / best decode tokens/s per instance at ITL ≤ itl / d_corr)``,
   each at least ``min_endpoint``; then bounds. It skips the adjustment (and says so) when the
   interval's TTFT, ITL, ISL or OSL is missing. Between adjustments it holds.

Targets and profile, from the one pressure test × margin and the performance model:
prefill capacity = ``Targets.prefill_tps_per_instance`` (preferred shape, the knee × margin); the ITL
SLA = the service's TBT SLO × the same margin (the knee's TBT p90 can sit at the decode floor when
prefill is the bottleneck, which no batch meets); expected TTFT = ISL × ``prefill_s_per_input_token``;
decode ITL(b, ctx) = ``decode_itl_floor_s`` + (b − 1)·(``decode_itl_s_per_request`` +
``decode_itl_s_per_kv_token`` · ctx) (near-linear in active KV, as Dynamo's profile shows, plus the
compute each request adds), so the best batch at an ITL is b* = 1 + (ITL − floor) ÷ (per request +
per token · ctx), within [1, min(max_decode_batch, ``decode_kv_capacity_tokens`` ÷ ctx)].

Differences from upstream: Dynamo averages TTFT and ITL; the observation has percentiles, so the p90s
are used (the ITL SLA is the knee's p90 × margin); decode concurrency is the observed running
requests per decode instance (Dynamo derives it from request count × duration); the profile is the
performance model, not a sweep of the engine; prefill throughput does not vary with ISL; ARIMA is the
smaller search of :mod:`.arima`; the GPU budget (``max_gpu_budget``, 8 GPUs by default) gives way to
the service's bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from heteroscale.domain.decision import Reason
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import ScaleInMode
from heteroscale.errors import ConfigError
from heteroscale.policy.arima import predict_next
from heteroscale.policy.context import PolicyContext, PolicyMemory, Targets
from heteroscale.policy.normalize import PD, ceil_count, current_counts
from heteroscale.policy.outcome import ScaleIn, remember_sample
from heteroscale.policy.sizing import fleet_capacity
from heteroscale.policy.stages import Bounds, Interval, interval_due
from heteroscale.policy.wrapper import Raw, Seen, ShapedPolicy, Shaping

DYNAMO_GRACE_S = 60.0  # the operator's terminationGracePeriodSeconds for workers
PREDICTED = ("num_req", "isl", "osl")
INTERVAL_METRICS = ("rate", "isl", "osl", "ttft", "itl", "concurrency")


@dataclass(frozen=True, slots=True)
class DynamoParams:
    adjustment_interval_s: float = 180.0
    load_predictor: str = "arima"  # "arima" (the default) or "constant"
    prediction_window: int = 50  # load_prediction_window_size
    min_data_points: int = 5  # fewer: predict the last value
    no_correction: bool = False
    min_endpoint: int = 1
    scale_in: ScaleIn = field(default_factory=lambda: ScaleIn(ScaleInMode.DRAIN, DYNAMO_GRACE_S))

    def __post_init__(self) -> None:
        if not self.adjustment_interval_s > 0:
            raise ValueError(f"adjustment_interval_s must be > 0, got {self.adjustment_interval_s}")
        if self.load_predictor not in ("arima", "constant"):
            raise ValueError(f"load_predictor must be 'arima' or 'constant', got {self.load_predictor!r}")
        if self.prediction_window < 1 or self.min_data_points < 1 or self.min_endpoint < 0:
            raise ValueError("prediction_window and min_data_points must be ≥ 1, min_endpoint ≥ 0")


@dataclass(frozen=True, slots=True)
class Profile:
    """What Dynamo's interpolators answer, from the targets (module doc)."""

    prefill_tps: float  # tokens/s one prefill instance takes (the pressure test × margin)
    prefill_s_per_token: float  # queue-free prefill time per prompt token
    itl_floor_s: float
    itl_s_per_request: float
    itl_s_per_kv_token: float
    max_batch: int
    kv_tokens: float  # KV one instance holds: the batch at a context is at most kv_tokens ÷ context

    @staticmethod
    def of(ctx: PolicyContext) -> Profile:
        t: Targets = ctx.targets
        given = {
            "prefill_s_per_input_token": t.prefill_s_per_input_token,
            "decode_itl_floor_s": t.decode_itl_floor_s,
            "decode_itl_s_per_kv_token": t.decode_itl_s_per_kv_token,
        }
        values = {name: value for name, value in given.items() if value is not None and value > 0}
        missing = sorted(set(given) - set(values))
        if missing:
            raise ConfigError(f"dynamo-sla needs targets.{', '.join(missing)} > 0 (the performance profile)")
        prefill_tps = fleet_capacity(ctx.counts.prefill, ctx.spec.shapes(Role.PREFILL), t.prefill_tps_per_instance)[1]
        return Profile(
            prefill_tps,
            values["prefill_s_per_input_token"],
            values["decode_itl_floor_s"],
            t.decode_itl_s_per_request or 0.0,
            values["decode_itl_s_per_kv_token"],
            max(1, ctx.spec.max_decode_batch),
            t.decode_kv_capacity_tokens or math.inf,
        )

    def _per_request_s(self, context_tokens: float) -> float:
        return self.itl_s_per_request + self.itl_s_per_kv_token * max(1.0, context_tokens)

    def expected_itl_s(self, concurrency: float, context_tokens: float) -> float:
        return self.itl_floor_s + max(0.0, concurrency - 1.0) * self._per_request_s(context_tokens)

    def decode_tps(self, itl_s: float, context_tokens: float) -> tuple[float, float]:
        """(best tokens/s of one decode instance at ITL ≤ ``itl_s``, the batch that gives it)."""
        room = 1.0 + (itl_s - self.itl_floor_s) / self._per_request_s(context_tokens)
        most = min(float(self.max_batch), self.kv_tokens / max(1.0, context_tokens))
        batch = max(1.0, min(most, room))  # below batch 1 the profile has no point
        return batch / self.expected_itl_s(batch, context_tokens), batch


def _interval_means(memory: PolicyMemory, now_s: float, interval_s: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in INTERVAL_METRICS:
        recent = [v for t, v in memory.series(f"dynamo.obs.{name}") if now_s - t < interval_s]
        out[name] = sum(recent) / len(recent) if recent else None
    return out


def dynamo_shaping(params: DynamoParams) -> Shaping:
    """The adjustment interval (first adjustment one interval in), then bounds."""
    return Shaping((_interval(params), Bounds()), ("requests_per_s",), params.scale_in)


def _interval(params: DynamoParams) -> Interval:
    return Interval(params.adjustment_interval_s, key="dynamo.last_adjust_s", first_adjusts=False)


class DynamoSlaPolicy(ShapedPolicy):
    """Predict next interval's load → SLA-feasible replicas per role, corrected (module doc)."""

    def __init__(
        self, params: DynamoParams | None = None, *, shaping: Shaping | None = None, name: str = "dynamo-sla"
    ) -> None:
        self.params = params or DynamoParams()
        self.shaping = shaping or dynamo_shaping(self.params)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        prm, obs = self.params, seen.observation
        current = current_counts(ctx.counts)
        decode_ready = obs.decode.instances_ready or ctx.counts.decode.ready
        sample = {
            "rate": obs.requests_per_s,
            "isl": obs.mean_input_tokens,
            "osl": obs.mean_output_tokens,
            "ttft": obs.ttft_p90_s,
            "itl": obs.tbt_p90_s,
            "concurrency": None
            if obs.decode.running is None or decode_ready <= 0
            else obs.decode.running / decode_ready,
        }
        memory = ctx.memory
        for name, value in sample.items():
            if value is not None:
                memory = remember_sample(
                    memory, f"dynamo.obs.{name}", ctx.now_s, value, keep_s=prm.adjustment_interval_s
                )
        last = dict(memory.values).get("dynamo.last_adjust_s")
        if not interval_due(ctx.now_s, last, _interval(prm)):
            kept = len(memory.series("dynamo.obs.rate"))
            why = f"collecting this interval's metrics ({kept} sample(s)); no adjustment before the interval ends"
            return Raw(current, Reason.ADJUSTMENT_INTERVAL, why, memory=memory)
        return self._adjust(ctx, memory, current)

    def _adjust(self, ctx: PolicyContext, memory: PolicyMemory, current: PD) -> Raw:
        prm = self.params
        interval = prm.adjustment_interval_s
        means = _interval_means(memory, ctx.now_s, interval)
        observed = {
            "num_req": (means["rate"] or 0.0) * interval,
            "isl": means["isl"] or 0.0,
            "osl": means["osl"] or 0.0,
        }
        for name in PREDICTED:  # Dynamo adds a missing value as 0
            memory = remember_sample(memory, f"dynamo.{name}", ctx.now_s, observed[name], keep_n=prm.prediction_window)
        absent = [name for name in ("ttft", "itl", "isl", "osl") if means[name] is None]
        if absent:
            why = f"interval metrics missing ({', '.join(absent)}): Dynamo skips this adjustment"
            return Raw(current, Reason.HOLD_NO_SIGNAL, why, memory=memory)
        profile = Profile.of(ctx)
        isl, osl, ttft, itl = (float(means[k] or 0.0) for k in ("isl", "osl", "ttft", "itl"))
        context = isl + osl / 2
        p_corr = d_corr = 1.0
        if not prm.no_correction:
            p_corr = ttft / (isl * profile.prefill_s_per_token) if isl > 0 else 1.0
            d_corr = itl / profile.expected_itl_s(means["concurrency"] or 0.0, context)
        series = {name: [v for _, v in memory.series(f"dynamo.{name}")] for name in PREDICTED}
        num_req, next_isl, next_osl = (
            predict_next(series[name], prm.load_predictor, prm.min_data_points) for name in PREDICTED
        )
        itl_sla = ctx.spec.slo.tbt_s * ctx.targets.margin
        sla_itl = itl_sla / d_corr if d_corr > 0 else itl_sla
        prefill_load = num_req * next_isl / interval * min(1.0, p_corr)
        decode_tps, batch = profile.decode_tps(sla_itl, next_isl + next_osl / 2)
        decode_load = num_req * next_osl / interval
        sized = PD(
            max(prm.min_endpoint, ceil_count(prefill_load / profile.prefill_tps)),
            max(prm.min_endpoint, ceil_count(decode_load / decode_tps)),
        )
        detail = (
            f"interval means: {means['rate'] or 0.0:.4g} req/s, ISL {isl:.4g}, OSL {osl:.4g}, TTFT {ttft:.3g} s, "
            f"ITL {itl:.3g} s; corrections TTFT ×{p_corr:.3g} (min 1 applied), ITL ×{d_corr:.3g}; "
            f"{prm.load_predictor} predicts {num_req:.4g} requests, ISL {next_isl:.4g}, OSL {next_osl:.4g} "
            f"({len(series['num_req'])} point(s)); P = ceil({prefill_load:.4g}/{profile.prefill_tps:.4g}) = "
            f"{sized.prefill}; D = ceil({decode_load:.4g}/{decode_tps:.4g}) = {sized.decode} "
            f"(batch {batch:.3g} at ITL ≤ {sla_itl:.3g} s)"
        )
        return Raw(sized, Reason.FORECAST, detail, memory=memory)


__all__ = ["DynamoParams", "DynamoSlaPolicy", "Profile", "dynamo_shaping"]
