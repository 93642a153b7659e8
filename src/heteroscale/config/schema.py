"""Pydantic models of a ``kind: scenario`` file: one typed tree, one nested model per concern.

Validators accept or reject; they never rewrite a value. Names that refer to other things (models,
SKUs, traces, topologies) are checked against the catalog, the topology and the package data by
:mod:`heteroscale.config.build`, which also turns this tree into the simulator's ``Scenario``.
Defaults come from the domain dataclasses, so there is one source for each.

Layout of a scenario file::

    kind: scenario
    name: chat-on-h800-h20
    description: one line shown by ``list``
    topology: two-bigpods          # embedded name, a path relative to this file, or an inline mapping
    catalog: {gpus: [...], models: [...]}   # optional additions / overrides, or a path to a catalog file
    simulation: {fidelity: request, duration_s: 3600, seed: 0}
    services:
      - name: chat
        model: llama-3.1-70b       # canonical id or alias
        precision: bf16
        roles:
          prefill: {shapes: [{sku: h800, tp: 4}], min: 1, max: 64}   # shapes in preference order
          decode: {shapes: [{sku: h20, tp: 4}], min: 1, max: 64}
        pd_ratio: 1.0
        slo: {ttft_s: 2.0, tbt_s: 0.1}
        load: {kind: trace, trace: azure-conv}
        policy: {name: fixed, prefill: 3, decode: 3}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, StringConstraints, Tag, model_validator

from heteroscale.config.catalog import CatalogConfig
from heteroscale.config.source import UNION_TAG_PREFIX, StrictModel, field_default
from heteroscale.config.topology import TopologyConfig
from heteroscale.domain.service import ServiceSpec
from heteroscale.sim.scenario import EngineSettings, LoadSpec, SimSettings
from heteroscale.sim.transforms import LengthScale, RateStep

# Upper bounds on counts: far above any real deployment (the paper's fleet is tens of thousands of
# GPUs), low enough that a typo such as an extra digit or 2**62 is an error, not an hours-long run.
MAX_INSTANCES = 10_000  # instances of one role of one service
MAX_COPIES = 1_000  # superposed copies of a trace
MAX_PREFILL_TOKENS = 1_048_576  # prefill token budget per batch
MAX_DECODE_BATCH = 65_536  # requests in one decode batch
MAX_SEED = 2**32 - 1  # the range of a 32-bit seed
MAX_GPUS = 1_000_000  # GPUs in a budget

ServiceName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


# --- services -------------------------------------------------------------------------------


class ShapeConfig(StrictModel):
    """One instance shape: a GPU SKU (canonical id or alias) and a tensor-parallel degree."""

    sku: str = Field(min_length=1)
    tp: int = Field(ge=1, le=64)


class RoleConfig(StrictModel):
    """One role (prefill or decode) of a service: allowed shapes in preference order and bounds."""

    shapes: list[ShapeConfig] = Field(min_length=1)
    min: int = Field(default=field_default(ServiceSpec, "min_prefill"), ge=0, le=MAX_INSTANCES)
    max: int = Field(default=field_default(ServiceSpec, "max_prefill"), ge=1, le=MAX_INSTANCES)

    @model_validator(mode="after")
    def _min_le_max(self) -> RoleConfig:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class RolesConfig(StrictModel):
    prefill: RoleConfig
    decode: RoleConfig


class SloConfig(StrictModel):
    ttft_s: float = Field(gt=0)
    tbt_s: float = Field(gt=0)


class TargetsConfig(StrictModel):
    """Pinned policy targets (normally written by a pressure test into the resolved config).

    Per-instance TPS maps are keyed by instance-shape key, ``<role>:<sku>:tp<N>``."""

    decode_tps_per_instance: dict[str, Annotated[float, Field(gt=0)]]
    prefill_tps_per_instance: dict[str, Annotated[float, Field(gt=0)]]
    prefill_gpu_util: float = Field(gt=0, le=1)
    decode_gpu_util: float = Field(gt=0, le=1)
    prefill_sm_activity: float = Field(gt=0, le=1)
    decode_sm_activity: float = Field(gt=0, le=1)
    ttft_s: float = Field(gt=0)
    tbt_s: float = Field(gt=0)
    requests_per_s_per_prefill: float = Field(gt=0)
    requests_per_s_per_decode: float = Field(gt=0)
    mean_input_tokens: float = Field(gt=0)
    mean_output_tokens: float = Field(gt=0)
    margin: float = Field(default=0.75, gt=0, le=1)
    source: str = "pinned"
    # the peers' own terms and Dynamo's profile (optional: only the peer that reads one needs it)
    prefill_queue_per_instance: float | None = Field(default=None, gt=0)
    decode_batch_util: float | None = Field(default=None, gt=0, le=1)
    prefill_s_per_input_token: float | None = Field(default=None, gt=0)
    decode_itl_floor_s: float | None = Field(default=None, gt=0)
    decode_itl_s_per_request: float | None = Field(default=None, ge=0)
    decode_itl_s_per_kv_token: float | None = Field(default=None, gt=0)
    decode_kv_capacity_tokens: float | None = Field(default=None, gt=0)


class RateStepConfig(StrictModel):
    """The arrival rate ×``factor`` from ``at_s`` on (load axis), reached linearly over ``ramp_s``."""

    at_s: float = Field(ge=0, allow_inf_nan=False)
    factor: float = Field(gt=0, allow_inf_nan=False)
    ramp_s: float = Field(default=field_default(RateStep, "ramp_s"), ge=0, allow_inf_nan=False)


class LoadWindowConfig(StrictModel):
    """A part of the load, rebased to start at 0: ``half`` (first / second), ``start_s`` + ``end_s``,
    or ``steepest_s`` (the window of that length where a Poisson load's curve rises fastest)."""

    half: Literal["first", "second"] | None = None
    start_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    end_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    steepest_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_form(self) -> LoadWindowConfig:
        forms = [self.half is not None, self.start_s is not None or self.end_s is not None, self.steepest_s is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of: half, start_s + end_s, steepest_s")
        if forms[1] and (self.start_s is None or self.end_s is None):
            raise ValueError("a window by time needs both start_s and end_s")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s:g}) must be after start_s ({self.start_s:g})")
        return self


class LoadConfig(StrictModel):
    """Where a service's requests come from.

    ``trace`` and ``rate_curve`` take a bundled name (``azure-conv``, ``servegen-m-large``, …) or a
    path relative to the YAML file. ``kind: poisson`` draws arrivals from ``rate_curve`` and lengths
    from ``trace``; ``kind: trace`` replays ``trace``. Transforms (the same for every policy):
    ``input_scale`` / ``output_scale`` with optional caps, ``rate_steps``, and ``window`` (a part of
    the load); see :mod:`heteroscale.sim.transforms` and :mod:`heteroscale.sim.windows`.
    """

    kind: Literal["trace", "poisson"] = "trace"
    trace: str = Field(min_length=1)
    format: Literal["auto", "azure", "mooncake", "burstgpt"] = "auto"
    rate_curve: str | None = Field(default=None, min_length=1)
    rate_curve_day: int | None = Field(default=None, ge=0)
    rate_curve_smoothing_s: float = Field(default=field_default(LoadSpec, "rate_curve_smoothing_s"), ge=0)
    rate_scale: float = Field(default=field_default(LoadSpec, "rate_scale"), gt=0)
    time_compression: float = Field(default=field_default(LoadSpec, "time_compression"), gt=0)
    copies: int = Field(default=field_default(LoadSpec, "copies"), ge=1, le=MAX_COPIES)
    copy_shift_s: float = Field(default=field_default(LoadSpec, "copy_shift_s"), ge=0)
    start_s: float = Field(default=field_default(LoadSpec, "start_s"), ge=0)
    skip_bad_rows: bool = field_default(LoadSpec, "skip_bad_rows")
    input_scale: float = Field(default=field_default(LengthScale, "input_scale"), gt=0, le=64, allow_inf_nan=False)
    input_cap_tokens: int | None = Field(default=field_default(LengthScale, "input_cap_tokens"), ge=1)
    output_scale: float = Field(default=field_default(LengthScale, "output_scale"), gt=0, le=64, allow_inf_nan=False)
    output_cap_tokens: int | None = Field(default=field_default(LengthScale, "output_cap_tokens"), ge=1)
    rate_steps: list[RateStepConfig] = Field(default_factory=list)
    window: LoadWindowConfig | None = None
    # further sources of the same service, superposed with this one (one level: a part has no mix)
    mix: list[LoadConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _curve_matches_kind(self) -> LoadConfig:
        if self.kind == "poisson" and self.rate_curve is None:
            raise ValueError("kind 'poisson' needs a rate_curve")
        if self.kind == "trace" and self.rate_curve is not None:
            raise ValueError("rate_curve is only used by kind 'poisson' (kind 'trace' replays the trace)")
        if self.kind == "trace" and self.rate_scale != 1.0:  # a replay has no curve to scale: it was ignored
            raise ValueError(
                "rate_scale scales a rate curve (kind 'poisson'); scale a replay with copies or rate_steps"
            )
        if self.rate_curve_day is not None and self.rate_curve is None:
            raise ValueError("rate_curve_day needs a rate_curve")
        if any(part.mix for part in self.mix):
            raise ValueError("a part of a load mix cannot have a mix of its own")
        return self


class PolicyConfig(StrictModel):
    """The scaling policy: a registry name (see ``heteroscale.policy.registry``), the initial counts
    (held all along by ``fixed`` / ``static``) and the policy's own options."""

    name: str = Field(min_length=1)
    prefill: int = Field(ge=0, le=MAX_INSTANCES)
    decode: int = Field(ge=0, le=MAX_INSTANCES)
    options: dict[str, Any] = Field(default_factory=dict)


class ServiceFieldsConfig(StrictModel):
    """What every file that names a service says about it (scenarios, demands, the live controller)."""

    name: ServiceName
    model: str = Field(min_length=1)
    precision: Literal["bf16", "fp8"] = "bf16"
    roles: RolesConfig
    pd_ratio: float = Field(gt=0)
    slo: SloConfig
    priority: int = field_default(ServiceSpec, "priority")
    affinity: Literal["s1", "s2", "cluster"] = field_default(ServiceSpec, "affinity").value
    prefix_cache_hit_rate: float = Field(default=field_default(ServiceSpec, "prefix_cache_hit_rate"), ge=0, le=1)
    max_prefill_tokens: int = Field(
        default=field_default(ServiceSpec, "max_prefill_tokens"), ge=1, le=MAX_PREFILL_TOKENS
    )
    max_decode_batch: int = Field(default=field_default(ServiceSpec, "max_decode_batch"), ge=1, le=MAX_DECODE_BATCH)
    # several allowed shapes per role: "preference" (listed order, fallback) or "cost" (cheapest mix)
    gpu_mix: Literal["preference", "cost"] = field_default(ServiceSpec, "gpu_mix").value
    gpu_mix_time_limit_s: float = Field(default=field_default(ServiceSpec, "gpu_mix_time_limit_s"), gt=0, le=60)


class ServiceConfig(ServiceFieldsConfig):
    """A scenario's service: its fields plus its load, policy and (optionally pinned) targets."""

    load: LoadConfig
    policy: PolicyConfig
    targets: TargetsConfig | None = None

    @model_validator(mode="after")
    def _policy_within_bounds(self) -> ServiceConfig:
        for role in ("prefill", "decode"):
            count = getattr(self.policy, role)
            bounds: RoleConfig = getattr(self.roles, role)
            if not bounds.min <= count <= bounds.max:
                raise ValueError(f"policy.{role} ({count}) is outside roles.{role} bounds [{bounds.min}, {bounds.max}]")
        return self


# --- simulation -----------------------------------------------------------------------------


class EngineConfig(StrictModel):
    """``simulation.engine``: serving-engine behaviours of the request-fidelity engine (see
    ``heteroscale.sim.scenario.EngineSettings``; the defaults leave results as they were)."""

    kv_reservation: Literal["admission", "grow"] = field_default(EngineSettings, "kv_reservation").value
    preemption: Literal["recompute", "swap"] = field_default(EngineSettings, "preemption").value
    swap_gbyte_per_s: float = Field(default=field_default(EngineSettings, "swap_gbyte_per_s"), gt=0)
    prefill_chunk_tokens: int | None = Field(default=field_default(EngineSettings, "prefill_chunk_tokens"), ge=1)
    max_batched_tokens: int | None = Field(default=field_default(EngineSettings, "max_batched_tokens"), ge=1)
    kv_transfer: Literal["queued", "parallel"] = field_default(EngineSettings, "kv_transfer").value
    mixed_pool: bool = field_default(EngineSettings, "mixed_pool")
    mixed_pool_prompt_tokens: int = Field(default=field_default(EngineSettings, "mixed_pool_prompt_tokens"), ge=1)
    kv_capacity_tokens: int | None = Field(default=field_default(EngineSettings, "kv_capacity_tokens"), ge=1)
    kv_capacity_gib: float | None = Field(default=field_default(EngineSettings, "kv_capacity_gib"), gt=0)
    kv_link_gbyte_per_s: float | None = Field(default=field_default(EngineSettings, "kv_link_gbyte_per_s"), gt=0)
    kv_link_latency_s: float | None = Field(default=field_default(EngineSettings, "kv_link_latency_s"), ge=0)

    @model_validator(mode="after")
    def _one_capacity(self) -> EngineConfig:
        if self.kv_capacity_tokens is not None and self.kv_capacity_gib is not None:
            raise ValueError("give kv_capacity_tokens or kv_capacity_gib, not both")
        return self


class SimulationConfig(StrictModel):
    fidelity: Literal["request", "fluid"] = field_default(SimSettings, "fidelity").value
    duration_s: float | None = Field(default=field_default(SimSettings, "duration_s"), gt=0)
    seed: int = Field(default=field_default(SimSettings, "seed"), ge=0, le=MAX_SEED)
    tick_s: float = Field(default=field_default(SimSettings, "tick_s"), gt=0)
    cold_start_s: float = Field(default=field_default(SimSettings, "cold_start_s"), ge=0)
    drain_grace_s: float = Field(default=field_default(SimSettings, "drain_grace_s"), ge=0)
    scale_in_mode: Literal["drain", "kill"] = field_default(SimSettings, "scale_in_mode").value
    fluid_step_s: float = Field(default=field_default(SimSettings, "fluid_step_s"), gt=0)
    telemetry_window_s: float = Field(default=field_default(SimSettings, "telemetry_window_s"), gt=0)
    kv_activation_reserve: float = Field(default=field_default(SimSettings, "kv_activation_reserve"), ge=0, lt=1)
    max_tail_s: float = Field(default=field_default(SimSettings, "max_tail_s"), ge=0)
    perf_engine: Literal["current", "measured-2023"] = field_default(SimSettings, "perf_engine")
    ratio_tolerance: float = Field(default=field_default(SimSettings, "ratio_tolerance"), gt=0)
    soft_scale_in_s: float = Field(default=field_default(SimSettings, "soft_scale_in_s"), ge=0)
    role_wise_targets: bool = field_default(SimSettings, "role_wise_targets")
    engine: EngineConfig = Field(default_factory=EngineConfig)


# --- the file -------------------------------------------------------------------------------


def _ref_or_inline(value: Any) -> str:
    return f"{UNION_TAG_PREFIX}inline" if isinstance(value, dict | BaseModel) else f"{UNION_TAG_PREFIX}ref"


TopologyRef = Annotated[
    Annotated[str, Tag(f"{UNION_TAG_PREFIX}ref"), StringConstraints(min_length=1)]
    | Annotated[TopologyConfig, Tag(f"{UNION_TAG_PREFIX}inline")],
    Discriminator(_ref_or_inline),
]
CatalogRef = Annotated[
    Annotated[str, Tag(f"{UNION_TAG_PREFIX}ref"), StringConstraints(min_length=1)]
    | Annotated[CatalogConfig, Tag(f"{UNION_TAG_PREFIX}inline")],
    Discriminator(_ref_or_inline),
]


class VariantShapesConfig(StrictModel):
    """Other allowed shapes of one service in a variant (a role left out keeps its shapes)."""

    prefill: list[ShapeConfig] | None = Field(default=None, min_length=1)
    decode: list[ShapeConfig] | None = Field(default=None, min_length=1)


class VariantConfig(StrictModel):
    """A named way to run the scenario in ``compare``: a registry policy and options for every service
    (over the service's own options when it uses the same policy), optionally other shapes."""

    policy: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    shapes: dict[str, VariantShapesConfig] = Field(default_factory=dict)
    gpu_mix: Literal["preference", "cost"] | None = None  # override every service's gpu_mix
    ignore_budget: bool = False  # run this variant without the scenario's GPU budget
    description: str = ""


class BudgetConfig(StrictModel):
    """GPUs all services may hold together (pending, starting, ready and draining instances): a total
    and/or per-SKU caps. When it binds, capacity goes by service priority."""

    total_gpus: int | None = Field(default=None, ge=0, le=MAX_GPUS)
    by_sku: dict[str, Annotated[int, Field(ge=0, le=MAX_GPUS)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_cap(self) -> BudgetConfig:
        if self.total_gpus is None and not self.by_sku:
            raise ValueError("a budget needs total_gpus or by_sku")
        return self


class ScenarioConfig(StrictModel):
    """A ``kind: scenario`` file."""

    kind: Literal["scenario"]
    name: ServiceName
    description: str = ""
    topology: TopologyRef
    catalog: CatalogRef | None = None
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    services: list[ServiceConfig] = Field(min_length=1)
    variants: dict[ServiceName, VariantConfig] = Field(default_factory=dict)
    compare: list[str] = Field(default_factory=list)  # what `compare` runs without --policies
    budget: BudgetConfig | None = None
