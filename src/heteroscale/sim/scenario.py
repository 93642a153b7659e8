"""The resolved, validated form of a scenario that the simulator runs.

``heteroscale.config`` builds it from YAML (pydantic at the boundary); the simulator only sees these
frozen values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from heteroscale.domain.hardware import GpuSku, InstanceShape, ModelSpec
from heteroscale.domain.service import GpuMix, ServiceSpec
from heteroscale.domain.state import ScaleInMode
from heteroscale.domain.topology import Topology
from heteroscale.policy.context import Targets
from heteroscale.scheduling.budget import GpuBudget
from heteroscale.sim.transforms import LengthScale, RateStep
from heteroscale.sim.windows import LoadWindow


class Fidelity(StrEnum):
    REQUEST = "request"
    FLUID = "fluid"


class LoadKind(StrEnum):
    TRACE = "trace"  # replay a request trace (Azure / Mooncake / BurstGPT)
    POISSON = "poisson"  # non-homogeneous Poisson arrivals from a rate curve, lengths from a trace


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Where one service's requests come from. Paths are absolute after resolution."""

    kind: LoadKind
    trace_path: str  # request trace (replayed, or the source of lengths for POISSON)
    trace_format: str = "auto"  # auto | azure | mooncake | burstgpt
    rate_curve_path: str | None = None
    rate_curve_day: int | None = None  # take one day (0-based) of the curve
    rate_curve_smoothing_s: float = 60.0  # interpolate between window centres on this grid; 0 = steps
    rate_scale: float = 1.0
    time_compression: float = 1.0  # >1 plays the load faster
    copies: int = 1  # superpose time-shifted copies
    copy_shift_s: float = 0.0
    start_s: float = 0.0  # offset into the (compressed) load
    skip_bad_rows: bool = False
    # transforms, part of the load (the same for every policy; see heteroscale.sim.transforms)
    lengths: LengthScale = field(default_factory=LengthScale)
    rate_steps: tuple[RateStep, ...] = ()
    window: LoadWindow | None = None  # keep only this part of the load (see heteroscale.sim.windows)
    # further sources served by the same service, superposed with this one (a request mix that moves
    # within the day: e.g. conversation on one day curve, long-prompt code traffic on another)
    mixed_with: tuple[LoadSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A service's policy: its registry name, the initial (warm) counts, and its options.

    ``prefill`` / ``decode`` are the deployment at t = 0 and, for ``fixed`` / ``static``, the counts
    held all along.
    """

    prefill: int
    decode: int
    name: str = "fixed"
    options: tuple[tuple[str, object], ...] = ()

    def build_options(self) -> dict[str, object]:
        """The options the policy is built with; ``fixed`` / ``static`` also get the counts to hold."""
        options = dict(self.options)
        if self.name in ("fixed", "static"):
            options.setdefault("prefill", self.prefill)
            options.setdefault("decode", self.decode)
        return options


class KvReservation(StrEnum):
    ADMISSION = "admission"  # a decode admits a request only when its prompt + full output fit (no preemption)
    GROW = "grow"  # admit on the prompt + one token; the KV grows a token a step, preempting when it runs out


class Preemption(StrEnum):
    RECOMPUTE = "recompute"  # the victim's KV is dropped; on readmission its context is prefilled again
    SWAP = "swap"  # the victim's KV is copied to host memory and back (both copies stall the batch)


class KvTransfer(StrEnum):
    QUEUED = "queued"  # a prefill instance's outbound KV transfers share its NIC one after another
    PARALLEL = "parallel"  # every transfer runs at the full link bandwidth at once (SplitwiseSim's DummyLink)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Serving-engine behaviours of the request-fidelity engine (the fluid engine ignores them).

    The defaults are the engine as it always ran, so results do not move: KV reserved for the whole
    output at admission (hence no preemption), whole prompts per prefill batch, the service's own
    ``max_prefill_tokens`` / ``max_decode_batch`` only, queued KV transfers, no mixed pool, and KV
    capacity and link bandwidth from the performance model and the topology.
    """

    kv_reservation: KvReservation = KvReservation.ADMISSION
    preemption: Preemption = Preemption.RECOMPUTE  # acts only when the KV runs out (kv_reservation: grow)
    swap_gbyte_per_s: float = 25.0  # host ↔ GPU copy rate of a swap (assumption: PCIe Gen4 x16 class)
    prefill_chunk_tokens: int | None = None  # chunked prefill: at most this many prompt tokens a batch
    max_batched_tokens: int | None = None  # tokens per iteration on any instance (a decode counts one)
    kv_transfer: KvTransfer = KvTransfer.QUEUED
    # SplitwiseSim's mixed pool (sim/request_mixed.py): under overload a prompt is lent to a decode
    # instance and a decode to a prefill instance; a prefill instance is overloaded when it has work
    # waiting and more than ``mixed_pool_prompt_tokens`` pending with this prompt
    mixed_pool: bool = False
    mixed_pool_prompt_tokens: int = 8192
    kv_capacity_tokens: int | None = None  # KV tokens per instance (None: what the memory leaves)
    kv_capacity_gib: float | None = None  # the same in GiB of KV (converted with the model's bytes/token)
    kv_link_gbyte_per_s: float | None = None  # every P→D link at this rate (None: NICs × topology factor)
    kv_link_latency_s: float | None = None  # per-transfer setup time (None: the topology's)

    def kv_capacity_for(self, kv_bytes_per_token: float, default_tokens: int) -> int:
        """An instance's KV capacity in tokens under these settings."""
        if self.kv_capacity_tokens is not None:
            return self.kv_capacity_tokens
        if self.kv_capacity_gib is not None:
            return int(self.kv_capacity_gib * 1024**3 / kv_bytes_per_token)
        return default_tokens


@dataclass(frozen=True, slots=True)
class SimSettings:
    fidelity: Fidelity = Fidelity.REQUEST
    duration_s: float | None = None  # None: until the load ends and the cluster drains
    seed: int = 0
    tick_s: float = 30.0  # controller reconcile interval (simulated)
    cold_start_s: float = 120.0
    drain_grace_s: float = 600.0
    scale_in_mode: ScaleInMode = ScaleInMode.DRAIN
    fluid_step_s: float = 1.0
    telemetry_window_s: float = 30.0
    kv_activation_reserve: float = 0.1  # fraction of GPU memory kept for activations
    max_tail_s: float = 3600.0  # after the load ends, how long to wait for in-flight work
    # performance-model calibration: "current" = efficiencies fitted on the measured profiles with
    # current-engine host overheads; "measured-2023" = the plain fit, 2023 engine overheads included
    perf_engine: str = "current"
    # ratio maintenance at Ready time: gate the surplus role beyond this deviation of the Ready P:D
    ratio_tolerance: float = 0.25
    # soft scale-in: removed instances first leave discovery for this long (0 = off; on diurnal the
    # window costs ≈3 % GPU-hours for no SLO gain, so it is opt-in)
    soft_scale_in_s: float = 0.0
    # pressure test: per-instance TPS targets from role-wise knees (each role the bottleneck in turn)
    # rather than the balanced knee; what a policy that sizes each role from its own demand needs
    role_wise_targets: bool = False
    engine: EngineSettings = field(default_factory=EngineSettings)  # request-fidelity serving behaviours


@dataclass(frozen=True, slots=True)
class ServiceRun:
    """One service in a scenario: its spec, its load, its policy and (when pinned) its targets.

    ``targets`` None means "derive them": a pressure test for policies that read targets. A resolved
    config written after a pressure test carries them, so a rerun uses the very same values.
    """

    spec: ServiceSpec
    load: LoadSpec
    policy: PolicySpec
    targets: Targets | None = None


@dataclass(frozen=True, slots=True)
class Variant:
    """A named way to run a scenario in ``compare``: a registry policy with options for every service,
    and optionally other allowed shapes per service (e.g. one SKU per role, to price the mix).

    ``options`` are the variant's own; a service whose scenario policy is the same registry policy
    keeps its options underneath (the variant's win)."""

    policy: str
    options: tuple[tuple[str, object], ...] = ()
    shapes: tuple[tuple[str, tuple[InstanceShape, ...], tuple[InstanceShape, ...]], ...] = ()  # (service, P, D)
    description: str = ""
    gpu_mix: GpuMix | None = None  # None: each service's own
    ignore_budget: bool = False  # run without the scenario's GPU budget (to see what it costs)

    def service_options(self, run: ServiceRun) -> dict[str, object]:
        options = dict(run.policy.options) if run.policy.name == self.policy else {}
        options.update(self.options)
        return options

    def service_spec(self, spec: ServiceSpec) -> ServiceSpec:
        if self.gpu_mix is not None:
            spec = replace(spec, gpu_mix=self.gpu_mix)
        for service, prefill, decode in self.shapes:
            if service == spec.name:
                return replace(spec, prefill_shapes=prefill, decode_shapes=decode)
        return spec


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    services: tuple[ServiceRun, ...]
    topology: Topology
    skus: dict[str, GpuSku]
    models: dict[str, ModelSpec]
    settings: SimSettings = field(default_factory=SimSettings)
    source: str = "<embedded>"
    variants: dict[str, Variant] = field(default_factory=dict)
    compare_policies: tuple[str, ...] = ()  # what ``compare`` runs when no --policies is given
    budget: GpuBudget | None = None  # GPUs all services may hold together (None: unbounded)
