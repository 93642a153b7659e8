"""Profile sources for calibration: the packaged files (``heteroscale/data/profiles``, see its
``LICENSES.md``) and user files, read here and handed to the pure parsers of :mod:`heteroscale.perf`.

Each source's rows are resolved to catalog ids (names the catalog does not know stay as written and
are left out of scoring with that reason) and paired with the engine profile they describe
(:mod:`heteroscale.perf.engines`). :func:`engine_calibration` is the calibration an engine profile
name stands for: ``current`` keeps the historical pooled fit (:func:`heteroscale.perf.fit_calibration`)
with 2025-engine priors; every other profile is fitted on all usable rows of its own source.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from heteroscale.config.catalog import Catalog, load_catalog
from heteroscale.errors import ConfigError, HeteroScaleError
from heteroscale.perf import (
    Calibration,
    ProfileRow,
    fit_calibration,
    fit_engine,
    parse_aiconfigurator_csv,
    parse_splitwise_csv,
)
from heteroscale.perf.engines import CURRENT, EngineProfile, engine_profile
from heteroscale.perf.profile_formats import parse_distserve_json, parse_kernel_times_csv
from heteroscale.perf.scorecard import Source, exclusions

SPLITWISE = "splitwise"
KERNELS = "kernels"
DISTSERVE = "distserve"
AICONFIGURATOR = "aiconfigurator"
FORMATS = (SPLITWISE, KERNELS, DISTSERVE, AICONFIGURATOR)


@dataclass(frozen=True, slots=True)
class _Packaged:
    name: str
    file: str
    fmt: str
    description: str
    kind: str
    engine: str
    in_target: bool = True


PACKAGED: tuple[_Packaged, ...] = (
    _Packaged(
        "splitwise",
        "perf_model.csv",
        SPLITWISE,
        "Splitwise perf_model.csv: llama2-70b TP2/4/8 and bloom-176b TP8 on DGX-A100 / DGX-H100, wall time",
        "measured",
        "measured-2023",
    ),
    _Packaged(
        "h200-kernels",
        "h200_kernel_times.csv",
        KERNELS,
        "H200 kernel times: llama-3.1-8b and qwen3-32b TP1, GPU kernel time (no host overhead)",
        "measured",
        "gpu-kernels",
    ),
    _Packaged(
        "distserve",
        "profiler-a100-80g.distserve.json",
        DISTSERVE,
        "DistServe A100 profile of its engine: OPT-13B TP1/2/4, OPT-66B TP2/3/4/8, fit evaluated on its grid",
        "fit of measurements",
        "distserve-2024",
    ),
    _Packaged(
        "vllm",
        "profiler-a100-80g.vllm.json",
        DISTSERVE,
        "DistServe A100 profile of vLLM: OPT-13B TP1/2/4, OPT-66B TP2/3/4/8, fit evaluated on its grid",
        "fit of measurements",
        "vllm-2024",
    ),
    _Packaged(
        "aiconfigurator",
        "aiconfigurator_estimates.csv",
        AICONFIGURATOR,
        "AIConfigurator estimates (not measurements): 4 models x 5 SKUs, ISL 2048 / OSL 256",
        "estimate",
        CURRENT,
        in_target=False,
    ),
)


def splitwise_anomaly(row: ProfileRow) -> str | None:
    """The packaged Splitwise table's TP2 batch-64 rows: prefill of 64 prompts ~8x *faster* than of
    32 and a decode step faster than at batch 32, on both SKUs — at a 90 % memory budget 2 × 80 GB
    leave ≈6 GB of KV beside 138 GB of weights, less than the batch needs, so the engine cannot have
    run the stated batch."""
    if row.tp == 2 and row.batch == 64:
        return "TP2 batch-64 point is anomalous (KV cache cannot hold the batch at a 90 % memory budget)"
    return None


def _parse(fmt: str, text: str, display: str) -> list[ProfileRow]:
    parsers: dict[str, Callable[[str, str], list[ProfileRow]]] = {
        SPLITWISE: parse_splitwise_csv,
        KERNELS: parse_kernel_times_csv,
        DISTSERVE: parse_distserve_json,
        AICONFIGURATOR: parse_aiconfigurator_csv,
    }
    try:
        return parsers[fmt](text, display)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _resolve(rows: list[ProfileRow], catalog: Catalog) -> list[ProfileRow]:
    """Rows with catalog ids where the catalog knows the names (unknown names stay as written)."""

    seen: dict[tuple[Callable[[str], str], str], str] = {}  # a few names over thousands of rows

    def known(resolve: Callable[[str], str], name: str) -> str:
        key = (resolve, name)
        if key not in seen:
            try:
                seen[key] = resolve(name)
            except HeteroScaleError:
                seen[key] = name  # scored as "no catalog entry"
        return seen[key]

    out = []
    for row in rows:
        model_id = known(catalog.resolve_model, row.model_id)
        sku_id = known(catalog.resolve_sku, row.sku_id)
        # most rows already carry catalog ids; a copy of a frozen row would only cost start-up time
        same = model_id == row.model_id and sku_id == row.sku_id
        out.append(row if same else replace(row, model_id=model_id, sku_id=sku_id))
    return out


def _source(
    name: str,
    description: str,
    kind: str,
    engine: str,
    rows: list[ProfileRow],
    catalog: Catalog,
    in_target: bool,
    extra: Callable[[ProfileRow], str | None] | None = None,
) -> Source:
    kept, dropped = exclusions(_resolve(rows, catalog), catalog.models, catalog.skus, in_target, extra)
    return Source(name, description, kind, engine, kept, dropped, in_target)


def packaged_sources() -> tuple[Source, ...]:
    """Every packaged profile source, resolved against the packaged catalog (each cached)."""
    return tuple(packaged_source(spec.name) for spec in PACKAGED)


def detect_format(text: str, display: str) -> str:
    """``kernels`` / ``splitwise`` / ``aiconfigurator`` from a CSV header, ``distserve`` for JSON."""
    if text.lstrip().startswith("{"):
        return DISTSERVE
    header = next(csv.reader(io.StringIO(text)), [])
    columns = {c.strip() for c in header}
    if "kernel_ms_median" in columns:
        return KERNELS
    if {"prompt_time", "token_time"} <= columns:
        return SPLITWISE
    if {"ttft_ms", "tpot_ms"} <= columns:
        return AICONFIGURATOR
    raise ConfigError(
        f"{display}: not a known profile format (a CSV with kernel_ms_median, with prompt_time and "
        "token_time, or with ttft_ms and tpot_ms; or a DistServe profile JSON)"
    )


def file_source(path: Path) -> Source:
    """A user's profile file, in any shipped format, as a scorecard source (fitted on itself)."""
    display = str(path)
    if not path.is_file():
        raise ConfigError(f"{display}: file not found")
    text = path.read_text(encoding="utf-8")
    fmt = detect_format(text, display)
    rows = _parse(fmt, text, display)
    if fmt == AICONFIGURATOR:
        return _source(path.name, f"{display} (estimates)", "estimate", CURRENT, rows, load_catalog(), False)
    kind = "fit of measurements" if fmt == DISTSERVE else "measured"
    engine = f"file:{path.name}"
    return _source(path.name, f"{display} ({fmt} format)", kind, engine, rows, load_catalog(), True)


def file_engine(source: Source) -> EngineProfile:
    """The engine profile a user file describes: fitted on the file, like the packaged profiles
    (kernel-time rows fix the host terms at 0)."""
    kernel_only = bool(source.rows) and all(row.kernel_only for row in source.rows)
    return EngineProfile(source.engine, f"the engine that produced {source.name}", source.name, kernel_only)


@functools.cache
def packaged_source(name: str) -> Source:
    """One packaged profile source (cached): a run reads only its engine's file, not all of them."""
    spec = next((s for s in PACKAGED if s.name == name), None)
    if spec is None:
        raise ConfigError(f"no packaged profile source {name!r}")
    display = f"<packaged>/profiles/{spec.file}"
    try:
        text = resources.files("heteroscale").joinpath("data", "profiles", spec.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{display}: cannot be read ({exc.strerror or exc})") from exc
    rows = _parse(spec.fmt, text, display)
    extra = splitwise_anomaly if spec.name == "splitwise" else None
    return _source(spec.name, spec.description, spec.kind, spec.engine, rows, load_catalog(), spec.in_target, extra)


@functools.cache
def engine_calibration(name: str) -> Calibration:
    """The calibration of engine profile ``name`` (cached). ``ConfigError`` for an unknown name."""
    try:
        profile = engine_profile(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from exc
    catalog = load_catalog()
    if profile.source is None:
        return pooled_calibration().with_engine_of(Calibration.default())
    source = packaged_source(profile.source)
    return fit_engine(source.rows, catalog.models, catalog.skus, profile.fit_spec())


@functools.lru_cache(maxsize=1)
def pooled_calibration() -> Calibration:
    """The historical pooled fit on the packaged Splitwise llama2-70b rows (the physics of ``current``)."""
    resource = resources.files("heteroscale").joinpath("data", "profiles", "perf_model.csv")
    try:
        text = resource.read_text(encoding="utf-8")
        rows = parse_splitwise_csv(text, "perf_model.csv")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"<packaged>/profiles/perf_model.csv: {exc}") from exc
    catalog = load_catalog()
    return fit_calibration(rows, catalog.models, catalog.skus)
