"""`heteroscale calibrate`: the engine profiles, and the calibration scorecard (``--report``).

Each measured source is scored, held out, under the engine profile it describes; estimates under
``current`` (outside the target); and, for information, every measured source under ``current``
without any fit — what the simulator's default makes of that source's rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heteroscale.config.catalog import load_catalog
from heteroscale.config.profile_sources import engine_calibration, file_engine, file_source, packaged_sources
from heteroscale.errors import ConfigError
from heteroscale.perf.engines import CURRENT, ENGINE_PROFILES, EngineProfile, describe, engine_profile
from heteroscale.perf.scorecard import Scorecard, Source, SourceScore, score_fixed, score_held_out


def _held_out(source: Source, profile: EngineProfile) -> SourceScore:
    catalog = load_catalog()
    try:
        return score_held_out(source, profile, catalog.models, catalog.skus)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _current(source: Source) -> SourceScore:
    catalog = load_catalog()
    return score_fixed(source, engine_profile(CURRENT), engine_calibration(CURRENT), catalog.models, catalog.skus)


def packaged_scorecard() -> Scorecard:
    """The scorecard of every packaged profile source."""
    sources = packaged_sources()
    measured = [s for s in sources if s.in_target]
    return Scorecard(
        held_out=tuple(_held_out(s, engine_profile(s.engine)) for s in measured),
        estimates=tuple(_current(s) for s in sources if not s.in_target),
        current_on_measured=tuple(_current(s) for s in measured),
    )


def file_scorecard(path: Path) -> Scorecard:
    """The scorecard of one user file, fitted and held out on itself (estimates: under ``current``)."""
    source = file_source(path)
    if not source.rows:
        reasons = sorted({reason for _, reason in source.excluded}) or ["the file has no rows"]
        raise ConfigError(f"{path}: no usable rows ({'; '.join(reasons)})")
    if not source.in_target:
        return Scorecard((), (_current(source),), ())
    return Scorecard((_held_out(source, file_engine(source)),), (), (_current(source),))


def engine_profiles() -> dict[str, Any]:
    """Every engine profile with its one-line assumptions and its calibration (no scoring)."""
    return {p.name: describe(p, engine_calibration(p.name)) for p in ENGINE_PROFILES}
