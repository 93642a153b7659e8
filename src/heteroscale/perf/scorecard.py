"""The calibration scorecard: the performance model against a profile source, on held-out rows.

Pure: sources arrive as :class:`Source` values (rows already parsed and resolved to catalog ids; the
config layer reads the files). For each source, :func:`score_held_out` fits the source's engine
profile on all rows but one group and predicts that group, for every group in turn, so every row is
scored by a fit that never saw it:

* primary split — leave one (model, TP) configuration out: the fit has seen neither this model at
  this TP nor, for a single-configuration model, the model at all;
* strict split (information) — leave one model out: with two models per source, the fit sees one
  model only, often at one TP, which leaves the engine's TP-dependent terms to the prior.

A source with a single configuration cannot be held out that way; it is split by SKU if it has
several, else :func:`score_held_out` raises ``ValueError``. Errors are relative, ``(model −
measured) / measured``; ``median`` and ``p90`` are of their absolute values (p90: nearest rank).
Rows are grouped by phase and regime (:func:`regime`). Kernel-only rows are scored against the
model's kernel time. :func:`score_fixed` scores a calibration without any fit (the ``current``
profile, which no measured source was used to make, and the AIConfigurator estimates).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from heteroscale.domain.hardware import GpuSku, ModelSpec, Role
from heteroscale.perf.calibrate import Calibration, SkuEfficiency
from heteroscale.perf.engines import EngineProfile, describe
from heteroscale.perf.fit import FitSpec, fit_engine
from heteroscale.perf.model import InstancePerf, build_instance_perf, predict_row_time_s
from heteroscale.perf.profiles import ProfileRow

TARGET_MEDIAN = 0.10
TARGET_P90 = 0.25
SHORT_PREFILL_TOKENS = 1024  # a prefill batch below this many new tokens is "short"
LONG_CONTEXT_PER_SEQ = 1024  # decode context per sequence above this is "long"
SPLIT_CONFIG = "leave one (model, TP) configuration out"
SPLIT_MODEL = "leave one model out"
SPLIT_SKU = "leave one SKU out"
SPLIT_NONE = "none (not fitted to this source)"


@dataclass(frozen=True, slots=True)
class Source:
    """Rows of one profile file, resolved to catalog ids, with the rows left out and why.

    ``kind`` is ``measured``, ``fit of measurements`` or ``estimate``; ``engine`` the engine
    profile the source describes; ``in_target`` whether the scorecard's target applies.
    """

    name: str
    description: str
    kind: str
    engine: str
    rows: tuple[ProfileRow, ...]
    excluded: tuple[tuple[ProfileRow, str], ...] = ()
    in_target: bool = True


@dataclass(frozen=True, slots=True)
class Stats:
    """Errors of ``n`` rows: median / p90 / max of the absolute relative error, median signed."""

    n: int
    median: float
    p90: float
    max: float
    median_signed: float

    @classmethod
    def of(cls, errors: Sequence[float]) -> Stats:
        if not errors:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        absolute = sorted(abs(e) for e in errors)
        signed = sorted(errors)
        return cls(len(errors), _median(absolute), _nearest_rank(absolute, 0.9), absolute[-1], _median(signed))


@dataclass(frozen=True, slots=True)
class EfficiencyRange:
    """One SKU's fitted efficiencies on all rows, and their range over the held-out folds."""

    sku_id: str
    fitted: SkuEfficiency
    low: SkuEfficiency
    high: SkuEfficiency


@dataclass(frozen=True, slots=True)
class SourceScore:
    """The scorecard of one source under one calibration (fitted per fold, or fixed)."""

    source: str
    description: str
    kind: str
    engine: str
    engine_summary: str  # the engine profile's one-line assumptions, with the numbers used
    split: str
    in_target: bool
    overall: Stats
    by_regime: tuple[tuple[str, Stats], ...]
    folds: tuple[tuple[str, Stats], ...]  # each held-out group and its errors
    excluded: tuple[tuple[str, int], ...]
    efficiencies: tuple[EfficiencyRange, ...] = ()
    strict: Stats | None = None  # leave-one-model-out, for information
    calibration: Calibration | None = None  # the fit on all rows (or the fixed calibration)

    @property
    def target_met(self) -> bool | None:
        """``None`` outside the target; else whether median and p90 meet it."""
        if not self.in_target:
            return None
        return self.overall.median <= TARGET_MEDIAN and self.overall.p90 <= TARGET_P90


@dataclass(frozen=True, slots=True)
class Scorecard:
    """Held-out scores of the measured sources (the target), scores of estimates (outside it), and
    the ``current`` profile on the measured rows without any fit (information)."""

    held_out: tuple[SourceScore, ...]
    estimates: tuple[SourceScore, ...]
    current_on_measured: tuple[SourceScore, ...]


def regime(row: ProfileRow) -> str:
    """``prefill/cached-prefix``, ``prefill/short`` (< 1,024 new tokens per batch), ``prefill/long``,
    or ``decode/batch <bucket>/context <short|long>`` (context per sequence ≤ 1,024 or above)."""
    if row.phase is Role.PREFILL:
        if row.cached_tokens > 0:
            return "prefill/cached-prefix"
        return "prefill/short" if row.new_tokens < SHORT_PREFILL_TOKENS else "prefill/long"
    batch = "1" if row.batch == 1 else "2-32" if row.batch <= 32 else "33-128" if row.batch <= 128 else ">128"
    context = "long" if row.context_tokens > LONG_CONTEXT_PER_SEQ * row.batch else "short"
    return f"decode/batch {batch}/context {context}"


def exclusions(
    rows: Sequence[ProfileRow],
    models: Mapping[str, ModelSpec],
    skus: Mapping[str, GpuSku],
    measured_only: bool,
    extra: Callable[[ProfileRow], str | None] | None = None,
) -> tuple[tuple[ProfileRow, ...], tuple[tuple[ProfileRow, str], ...]]:
    """Split ``rows`` into scored and excluded (with a reason): no catalog entry, not measured
    (when ``measured_only``), weights that do not fit on the instance, a batch whose KV cache does
    not fit beside the weights even with no activation reserve, or ``extra``'s reason."""
    kept: list[ProfileRow] = []
    dropped: list[tuple[ProfileRow, str]] = []
    for row in rows:
        reason = _reason(row, models, skus, measured_only) or (extra(row) if extra else None)
        if reason is None:
            kept.append(row)
        else:
            dropped.append((row, reason))
    return tuple(kept), tuple(dropped)


def _reason(
    row: ProfileRow, models: Mapping[str, ModelSpec], skus: Mapping[str, GpuSku], measured_only: bool
) -> str | None:
    if measured_only and not row.measured:
        return "not measured (estimate or copied column)"
    if row.model_id not in models:
        return f"model {row.model_id!r} has no catalog entry"
    if row.sku_id not in skus:
        return f"hardware {row.hardware or row.sku_id!r} is no catalog SKU"
    model, sku = models[row.model_id], skus[row.sku_id]
    free_bytes = row.tp * sku.mem_gb * 1e9 - model.weight_bytes
    if free_bytes <= 0.0:
        return f"{row.model_id} does not fit on {row.tp} x {row.sku_id}"
    kv_tokens = row.context_tokens if row.phase is Role.DECODE else row.batch * (row.cached_tokens + row.prompt_tokens)
    if kv_tokens * model.kv_bytes_per_token > free_bytes:
        return "the batch's KV cache does not fit beside the weights"
    return None


def _errors(
    rows: Sequence[ProfileRow], calibration: Calibration, models: Mapping[str, ModelSpec], skus: Mapping[str, GpuSku]
) -> list[tuple[ProfileRow, float]]:
    cache: dict[tuple[str, str, int], InstancePerf] = {}
    out: list[tuple[ProfileRow, float]] = []
    for row in rows:
        key = (row.model_id, row.sku_id, row.tp)
        if key not in cache:
            cache[key] = build_instance_perf(models[row.model_id], skus[row.sku_id], row.tp, calibration, 0.0)
        out.append((row, (predict_row_time_s(cache[key], row) - row.time_s) / row.time_s))
    return out


def _config_key(row: ProfileRow) -> str:
    return f"{row.model_id} tp{row.tp}"


def _model_key(row: ProfileRow) -> str:
    return row.model_id


def _sku_key(row: ProfileRow) -> str:
    return row.sku_id


def _held_out(
    rows: Sequence[ProfileRow],
    key: Callable[[ProfileRow], str],
    spec: FitSpec,
    models: Mapping[str, ModelSpec],
    skus: Mapping[str, GpuSku],
) -> tuple[list[tuple[ProfileRow, float]], list[tuple[str, Stats]], list[Calibration]]:
    """Every group predicted by a fit on all the other groups."""
    scored: list[tuple[ProfileRow, float]] = []
    folds: list[tuple[str, Stats]] = []
    fits: list[Calibration] = []
    for group in sorted({key(row) for row in rows}):
        train = [row for row in rows if key(row) != group]
        test = [row for row in rows if key(row) == group]
        fit = fit_engine(train, models, skus, spec)
        errors = _errors(test, fit, models, skus)
        fits.append(fit)
        folds.append((group, Stats.of([err for _, err in errors])))
        scored.extend(errors)
    return scored, folds, fits


def _split(source: Source) -> tuple[str, Callable[[ProfileRow], str]]:
    """The primary split, or by SKU when the source has one configuration; ``ValueError`` if neither."""
    for split, key in ((SPLIT_CONFIG, _config_key), (SPLIT_SKU, _sku_key)):
        if len({key(row) for row in source.rows}) >= 2:
            return split, key
    raise ValueError(
        f"{source.name}: cannot hold rows out — it has one (model, TP) configuration on one SKU "
        f"({len(source.rows)} usable rows); give rows of at least two models, TP degrees or SKUs"
    )


def score_held_out(
    source: Source, profile: EngineProfile, models: Mapping[str, ModelSpec], skus: Mapping[str, GpuSku]
) -> SourceScore:
    """Fit ``profile`` fold by fold and score each held-out group (see the module docstring)."""
    spec = profile.fit_spec()
    rows = source.rows
    split, key = _split(source)
    scored, folds, fits = _held_out(rows, key, spec, models, skus)
    full = fit_engine(rows, models, skus, spec)
    strict = None
    if split == SPLIT_CONFIG and len({row.model_id for row in rows}) >= 2:
        strict_scored, _, _ = _held_out(rows, _model_key, spec, models, skus)
        strict = Stats.of([err for _, err in strict_scored])
    return _summarise(source, profile, split, scored, tuple(folds), full, _ranges(full, fits), strict)


def score_fixed(
    source: Source,
    profile: EngineProfile,
    calibration: Calibration,
    models: Mapping[str, ModelSpec],
    skus: Mapping[str, GpuSku],
) -> SourceScore:
    """Score ``source`` with ``calibration`` as it is (no fit: no row informed it). In the target only
    when ``profile`` is the source's own engine and the source is in the target."""
    scored = _errors(source.rows, calibration, models, skus)
    return _summarise(source, profile, SPLIT_NONE, scored, (), calibration, (), None)


def _summarise(
    source: Source,
    profile: EngineProfile,
    split: str,
    scored: Sequence[tuple[ProfileRow, float]],
    folds: tuple[tuple[str, Stats], ...],
    calibration: Calibration,
    efficiencies: tuple[EfficiencyRange, ...],
    strict: Stats | None,
) -> SourceScore:
    by_regime: dict[str, list[float]] = {}
    for row, err in scored:
        by_regime.setdefault(regime(row), []).append(err)
    reasons: dict[str, int] = {}
    for _, reason in source.excluded:
        reasons[reason] = reasons.get(reason, 0) + 1
    return SourceScore(
        source=source.name,
        description=source.description,
        kind=source.kind,
        engine=profile.name,
        engine_summary=describe(profile, calibration),
        split=split,
        in_target=source.in_target and profile.name == source.engine,
        overall=Stats.of([err for _, err in scored]),
        by_regime=tuple((name, Stats.of(errs)) for name, errs in sorted(by_regime.items())),
        folds=folds,
        excluded=tuple(sorted(reasons.items())),
        efficiencies=efficiencies,
        strict=strict,
        calibration=calibration,
    )


def _ranges(full: Calibration, folds: Sequence[Calibration]) -> tuple[EfficiencyRange, ...]:
    out: list[EfficiencyRange] = []
    for fitted in full.sku_efficiencies:
        seen = [fitted] + [f for fold in folds for f in fold.sku_efficiencies if f.sku_id == fitted.sku_id]
        low = SkuEfficiency(
            fitted.sku_id, min(e.compute for e in seen), min(e.attention for e in seen), min(e.hbm for e in seen)
        )
        high = SkuEfficiency(
            fitted.sku_id, max(e.compute for e in seen), max(e.attention for e in seen), max(e.hbm for e in seen)
        )
        out.append(EfficiencyRange(fitted.sku_id, fitted, low, high))
    return tuple(out)


def _median(values: Sequence[float]) -> float:
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else 0.5 * (values[mid - 1] + values[mid])


def _nearest_rank(values: Sequence[float], q: float) -> float:
    return values[max(0, math.ceil(q * len(values)) - 1)]
