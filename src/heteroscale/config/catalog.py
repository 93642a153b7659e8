"""The GPU and model catalog: canonical ids, alias tables and user overrides.

The packaged catalog lives in ``heteroscale/data/catalog/{gpus,models}.yaml``. A scenario (or a
``kind: catalog`` file) may add SKUs / models or override single fields of existing ones, e.g.
``{id: h800, cost_per_gpu_hour: 2.0}``; a new id must give every field.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from heteroscale.config.bundled import data_path
from heteroscale.config.source import Document, Loc, StrictModel, read_document
from heteroscale.domain.hardware import GpuSku, ModelSpec
from heteroscale.errors import ConfigError

if TYPE_CHECKING:
    from heteroscale.perf import Calibration
    from heteroscale.sim.scenario import Scenario

PRECISION_BYTES: dict[str, float] = {"bf16": 2.0, "fp8": 1.0}
"""Bytes per weight for each serving precision (the KV cache stays at the model's ``kv_bytes_per_elem``)."""


def normalise_name(name: str) -> str:
    """Case-, underscore- and space-insensitive key used by the alias tables."""
    return "-".join(name.strip().lower().replace("_", "-").split())


# ---------------------------------------------------------------------------------------------
# Schema of catalog entries. Every field but ``id`` is optional so one schema serves both a full
# entry and a partial override; completeness of new entries is checked when merging.


class _Entry(StrictModel):
    id: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)


class GpuEntry(_Entry):
    name: str | None = None
    bf16_tflops: float | None = Field(default=None, gt=0)
    mem_gb: float | None = Field(default=None, gt=0)
    mem_bw_tbps: float | None = Field(default=None, gt=0)
    interconnect_gbps: float | None = Field(default=None, gt=0)
    nic_gbit_per_gpu: float | None = Field(default=None, gt=0)
    tdp_w: float | None = Field(default=None, gt=0)
    cost_per_gpu_hour: float | None = Field(default=None, ge=0)
    nvlink: bool | None = None
    note: str | None = None


class ModelEntry(_Entry):
    hf_name: str | None = None
    layers: int | None = Field(default=None, ge=1)
    hidden_size: int | None = Field(default=None, ge=1)
    heads: int | None = Field(default=None, ge=1)
    kv_heads: int | None = Field(default=None, ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    intermediate_size: int | None = Field(default=None, ge=1)
    vocab_size: int | None = Field(default=None, ge=1)
    params_b: float | None = Field(default=None, gt=0)
    bytes_per_param: float | None = Field(default=None, gt=0)
    kv_bytes_per_elem: float | None = Field(default=None, gt=0)
    mlp_matrices: int | None = Field(default=None, ge=2, le=3)

    @model_validator(mode="after")
    def _kv_heads_divide_heads(self) -> ModelEntry:
        if self.heads is not None and self.kv_heads is not None and self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        return self


class CatalogConfig(StrictModel):
    """A ``kind: catalog`` file, or the inline ``catalog:`` section of a scenario."""

    kind: Literal["catalog"] = "catalog"
    gpus: list[GpuEntry] = Field(default_factory=list)
    models: list[ModelEntry] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Catalog:
    """SKUs and models by canonical id, and normalised alias → canonical id tables.

    The alias tables also map each canonical id (and each model's ``hf_name``) to itself.
    """

    skus: dict[str, GpuSku]
    models: dict[str, ModelSpec]
    sku_aliases: dict[str, str]
    model_aliases: dict[str, str]

    def resolve_sku(self, name: str) -> str:
        """Canonical SKU id for ``name`` (any alias, any case, ``_`` or ``-``)."""
        return _resolve(name, self.sku_aliases, self.skus, "GPU SKU")

    def resolve_model(self, name: str) -> str:
        """Canonical model id for ``name`` (any alias, any case, ``_`` or ``-``)."""
        return _resolve(name, self.model_aliases, self.models, "model")

    def sku(self, name: str) -> GpuSku:
        return self.skus[self.resolve_sku(name)]

    def model(self, name: str) -> ModelSpec:
        return self.models[self.resolve_model(name)]

    def with_overrides(self, config: CatalogConfig, doc: Document, loc: Loc = ()) -> Catalog:
        """This catalog with ``config``'s entries added or merged in; errors name ``doc`` and ``loc``."""
        skus = dict(self.skus)
        models = dict(self.models)
        sku_aliases = dict(self.sku_aliases)
        model_aliases = dict(self.model_aliases)
        for i, gpu in enumerate(config.gpus):
            _merge(gpu, skus, sku_aliases, GpuSku, "GPU SKU", doc, (*loc, "gpus", i))
        for i, model in enumerate(config.models):
            _merge(model, models, model_aliases, ModelSpec, "model", doc, (*loc, "models", i))
            spec = models[model_aliases[normalise_name(model.id)]]
            if spec.hf_name:
                _add_alias(model_aliases, spec.hf_name, spec.id, "model", doc, (*loc, "models", i, "hf_name"))
        return Catalog(skus=skus, models=models, sku_aliases=sku_aliases, model_aliases=model_aliases)


def _resolve(name: str, aliases: dict[str, str], known: dict[str, Any], what: str) -> str:
    key = normalise_name(name)
    if key in aliases:
        return aliases[key]
    close = difflib.get_close_matches(key, list(aliases), n=1, cutoff=0.75)
    hint = f"; did you mean '{aliases[close[0]]}'?" if close else ""
    raise ConfigError(f"unknown {what} {name!r} (known: {', '.join(sorted(known))}){hint}")


def _add_alias(aliases: dict[str, str], alias: str, target: str, what: str, doc: Document, loc: Loc) -> None:
    key = normalise_name(alias)
    owner = aliases.get(key)
    if owner is not None and owner != target:
        raise doc.error(loc, f"alias {alias!r} already names {what} '{owner}'")
    aliases[key] = target


def _merge(
    entry: GpuEntry | ModelEntry,
    table: dict[str, Any],
    aliases: dict[str, str],
    factory: type[GpuSku] | type[ModelSpec],
    what: str,
    doc: Document,
    loc: Loc,
) -> None:
    """Add ``entry`` to ``table`` (new id: all fields required) or override the given fields."""
    given = entry.model_dump(exclude={"id", "aliases"}, exclude_none=True)
    existing_id = aliases.get(normalise_name(entry.id))
    if existing_id is not None:
        merged = dataclasses.replace(table[existing_id], **given)
        canonical = existing_id
    else:
        canonical = entry.id
        required = [
            f.name
            for f in dataclasses.fields(factory)
            if f.name != "id" and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in given]
        if missing:
            raise doc.error(loc, f"new {what} {entry.id!r} must give: {', '.join(missing)}")
        merged = factory(id=canonical, **given)
        _add_alias(aliases, canonical, canonical, what, doc, (*loc, "id"))
    if isinstance(merged, ModelSpec) and merged.heads % merged.kv_heads:
        raise doc.error(loc, f"heads ({merged.heads}) must be a multiple of kv_heads ({merged.kv_heads})")
    table[canonical] = merged
    for j, alias in enumerate(entry.aliases):
        _add_alias(aliases, alias, canonical, what, doc, (*loc, "aliases", j))


def _empty() -> Catalog:
    return Catalog(skus={}, models={}, sku_aliases={}, model_aliases={})


def _packaged_document(name: str) -> Document:
    path = data_path("catalog", name)
    return read_document(path)


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The packaged catalog (cached). Treat the result as read-only."""
    catalog = _empty()
    for name in ("gpus.yaml", "models.yaml"):
        doc = _packaged_document(name)
        catalog = catalog.with_overrides(doc.validate(CatalogConfig), doc)
    return catalog


def load_catalog_file(doc: Document, base: Catalog | None = None) -> Catalog:
    """``base`` (default: the packaged catalog) with a ``kind: catalog`` document merged in."""
    return (base or load_catalog()).with_overrides(doc.validate(CatalogConfig), doc)


def resolve_sku(name: str) -> str:
    """Canonical id of a GPU SKU in the packaged catalog; ConfigError if unknown."""
    return load_catalog().resolve_sku(name)


def resolve_model(name: str) -> str:
    """Canonical id of a model in the packaged catalog; ConfigError if unknown."""
    return load_catalog().resolve_model(name)


def calibration(engine: str = "measured-2023") -> Calibration:
    """The performance-model calibration of engine profile ``engine`` (cached; see
    :mod:`heteroscale.perf.engines`).

    ``current`` (what the simulator uses by default) keeps the efficiencies of the pooled fit on the
    packaged Splitwise llama2-70b rows and takes current-engine overheads (``Calibration.default()``);
    ``measured-2023`` is fitted on the Splitwise table (the 2023 vLLM engine's overheads included,
    efficiencies per SKU); ``gpu-kernels``, ``distserve-2024`` and ``vllm-2024`` are fitted on the
    other packaged profiles. ``ConfigError`` for an unknown name.
    """
    from heteroscale.config.profile_sources import engine_calibration

    return engine_calibration(engine)


def calibration_for(scenario: Scenario) -> Calibration:
    """The calibration a scenario's settings ask for."""
    return calibration(scenario.settings.perf_engine)
