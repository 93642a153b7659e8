"""Turn a validated scenario tree into the simulator's :class:`~heteroscale.sim.scenario.Scenario`.

This is where names are resolved (model and SKU aliases → canonical ids, bundled trace names and
relative paths → absolute paths, topology references → a topology) and where the checks that need
the catalog or the topology run. Every failure is one ``ConfigError`` line naming file and field.
"""

from __future__ import annotations

from heteroscale.config.build_loads import load_spec, relative_path
from heteroscale.config.bundled import embedded_topologies, looks_like_path
from heteroscale.config.catalog import (
    PRECISION_BYTES,
    Catalog,
    CatalogConfig,
    load_catalog,
    load_catalog_file,
)
from heteroscale.config.schema import (
    BudgetConfig,
    EngineConfig,
    RoleConfig,
    ScenarioConfig,
    ServiceFieldsConfig,
    ShapeConfig,
    SimulationConfig,
    TargetsConfig,
    VariantConfig,
)
from heteroscale.config.source import Document, Loc, format_loc, read_document, require_kind
from heteroscale.config.topology import TopologyConfig, build_topology
from heteroscale.domain.hardware import InstanceShape, ModelSpec, Role
from heteroscale.domain.service import AffinityLevel, GpuMix, ServiceSpec, Slo
from heteroscale.domain.state import ScaleInMode
from heteroscale.domain.topology import Topology
from heteroscale.errors import ConfigError
from heteroscale.policy.context import Targets
from heteroscale.policy.registry import POLICY_NAMES
from heteroscale.scheduling.budget import GpuBudget
from heteroscale.sim.scenario import (
    EngineSettings,
    Fidelity,
    KvReservation,
    KvTransfer,
    PolicySpec,
    Preemption,
    Scenario,
    ServiceRun,
    SimSettings,
    Variant,
)

# the activation reserve where no simulation settings say otherwise (demands files, live configs)
DEFAULT_KV_RESERVE = SimSettings().kv_activation_reserve


def build_scenario(config: ScenarioConfig, doc: Document, source: str) -> Scenario:
    catalog = _scenario_catalog(config, doc)
    topology = _scenario_topology(config, doc, catalog)
    reserve = config.simulation.kv_activation_reserve
    models: dict[str, ModelSpec] = {}
    precision_of: dict[str, tuple[str, str]] = {}  # model id → (precision, first service using it)
    services: list[ServiceRun] = []
    seen_names: set[str] = set()
    for i, service in enumerate(config.services):
        loc: Loc = ("services", i)
        if service.name in seen_names:
            raise doc.error((*loc, "name"), f"duplicate service name {service.name!r}")
        seen_names.add(service.name)
        model, spec = resolve_spec(service, doc, loc, catalog, topology, reserve)
        earlier = precision_of.get(model.id)
        if earlier is not None and earlier[0] != service.precision:
            raise doc.error(
                (*loc, "precision"),
                f"model '{model.id}' is already served at {earlier[0]} by service '{earlier[1]}'; "
                "one scenario serves each model at one precision",
            )
        precision_of.setdefault(model.id, (service.precision, service.name))
        models[model.id] = model
        policy = PolicySpec(
            prefill=service.policy.prefill,
            decode=service.policy.decode,
            name=service.policy.name,
            options=tuple(sorted(service.policy.options.items())),
        )
        _check_policy(policy, doc, (*loc, "policy"))
        services.append(
            ServiceRun(
                spec=spec,
                load=load_spec(service, doc, loc),
                policy=policy,
                targets=None
                if service.targets is None
                else targets_from_config(service.targets, spec, doc, (*loc, "targets")),
            )
        )
    used_skus = sorted({node.sku for node in topology.nodes})
    variants = {
        name: _variant(name, variant, config, services, doc, catalog) for name, variant in config.variants.items()
    }
    known = {*POLICY_NAMES, "static-peak", *variants}
    for j, name in enumerate(config.compare):
        if name not in known:
            raise doc.error(("compare", j), f"{name!r} is neither a policy nor a variant of this scenario")
    return Scenario(
        name=config.name,
        description=config.description,
        services=tuple(services),
        topology=topology,
        skus={sku: catalog.skus[sku] for sku in used_skus},
        models=models,
        settings=sim_settings(config.simulation),
        source=source,
        variants=variants,
        compare_policies=tuple(config.compare),
        budget=None if config.budget is None else budget_from_config(config.budget, doc, ("budget",), catalog),
    )


def budget_from_config(config: BudgetConfig, doc: Document, loc: Loc, catalog: Catalog) -> GpuBudget:
    """The scheduler's GpuBudget; SKU names through the catalog's aliases."""
    by_sku: dict[str, int] = {}
    for name, cap in config.by_sku.items():
        try:
            sku = catalog.resolve_sku(name)
        except ConfigError as exc:
            raise doc.error((*loc, "by_sku", name), str(exc)) from exc
        if sku in by_sku:
            raise doc.error((*loc, "by_sku", name), f"SKU {sku!r} is capped twice (aliases of one SKU)")
        by_sku[sku] = cap
    return GpuBudget(total_gpus=config.total_gpus, by_sku=tuple(sorted(by_sku.items())))


def _variant(
    name: str,
    config: VariantConfig,
    scenario: ScenarioConfig,
    services: list[ServiceRun],
    doc: Document,
    catalog: Catalog,
) -> Variant:
    loc: Loc = ("variants", name)
    if name in POLICY_NAMES or name == "static-peak":
        raise doc.error(loc, f"variant {name!r} shadows a policy of the same name; choose another name")
    by_name = {s.name: (i, s) for i, s in enumerate(scenario.services)}
    shapes: list[tuple[str, tuple[InstanceShape, ...], tuple[InstanceShape, ...]]] = []
    for service_name, override in config.shapes.items():
        if service_name not in by_name:
            raise doc.error((*loc, "shapes", service_name), f"no service {service_name!r} in this scenario")
        spec = services[by_name[service_name][0]].spec
        per_role: dict[Role, tuple[InstanceShape, ...]] = {}
        for role in (Role.PREFILL, Role.DECODE):
            given: list[ShapeConfig] | None = getattr(override, role.value)
            allowed = spec.shapes(role)
            if given is None:
                per_role[role] = allowed
                continue
            picked: list[InstanceShape] = []
            for j, shape_config in enumerate(given):
                at: Loc = (*loc, "shapes", service_name, role.value, j)
                try:
                    sku_id = catalog.resolve_sku(shape_config.sku)
                except ConfigError as exc:
                    raise doc.error((*at, "sku"), str(exc)) from exc
                shape = InstanceShape(role=role, sku=sku_id, tp=shape_config.tp)
                if shape not in allowed:
                    listed = ", ".join(f"{s.sku} tp{s.tp}" for s in allowed)
                    raise doc.error(
                        at,
                        f"{sku_id} tp{shape.tp} is not among service {service_name!r}'s {role.value} shapes "
                        f"({listed}); a variant picks from them (their targets come from its pressure test)",
                    )
                if shape in picked:
                    raise doc.error(at, f"{sku_id} tp{shape.tp} is listed twice")
                picked.append(shape)
            per_role[role] = tuple(picked)
        shapes.append((service_name, per_role[Role.PREFILL], per_role[Role.DECODE]))
    variant = Variant(
        policy=config.policy,
        options=tuple(sorted(config.options.items())),
        shapes=tuple(shapes),
        description=config.description,
        gpu_mix=None if config.gpu_mix is None else GpuMix(config.gpu_mix),
        ignore_budget=config.ignore_budget,
    )
    for run in services:
        policy = PolicySpec(
            run.policy.prefill, run.policy.decode, variant.policy, tuple(sorted(variant.service_options(run).items()))
        )
        _check_policy(policy, doc, loc, name_field="policy")
    return variant


def _check_policy(policy: PolicySpec, doc: Document, loc: Loc, name_field: str = "name") -> None:
    from heteroscale.policy.registry import make_policy

    try:
        make_policy(policy.name, policy.build_options())
    except (ValueError, TypeError) as exc:
        field = name_field if "unknown policy" in str(exc) else "options"
        raise doc.error((*loc, field), str(exc)) from exc


def service_spec(
    service: ServiceFieldsConfig,
    model_id: str,
    prefill: tuple[InstanceShape, ...],
    decode: tuple[InstanceShape, ...],
) -> ServiceSpec:
    """The domain ServiceSpec of a validated service (its shapes already resolved and checked)."""
    return ServiceSpec(
        name=service.name,
        model=model_id,
        prefill_shapes=prefill,
        decode_shapes=decode,
        pd_ratio=service.pd_ratio,
        slo=Slo(ttft_s=service.slo.ttft_s, tbt_s=service.slo.tbt_s),
        min_prefill=service.roles.prefill.min,
        max_prefill=service.roles.prefill.max,
        min_decode=service.roles.decode.min,
        max_decode=service.roles.decode.max,
        priority=service.priority,
        affinity=AffinityLevel(service.affinity),
        prefix_cache_hit_rate=service.prefix_cache_hit_rate,
        max_prefill_tokens=service.max_prefill_tokens,
        max_decode_batch=service.max_decode_batch,
        gpu_mix=GpuMix(service.gpu_mix),
        gpu_mix_time_limit_s=service.gpu_mix_time_limit_s,
        extra={"precision": service.precision},
    )


def targets_from_config(t: TargetsConfig, spec: ServiceSpec, doc: Document, loc: Loc) -> Targets:
    """Pinned targets → the policy's Targets; the TPS maps must name exactly the service's shapes."""
    for role, given in ((Role.DECODE, t.decode_tps_per_instance), (Role.PREFILL, t.prefill_tps_per_instance)):
        keys = {s.key for s in spec.shapes(role)}
        if set(given) != keys:
            field = f"{role.value}_tps_per_instance"
            raise doc.error((*loc, field), f"needs exactly the {role.value} shapes {sorted(keys)}, got {sorted(given)}")
    return Targets(
        decode_tps_per_instance=tuple(t.decode_tps_per_instance.items()),
        prefill_tps_per_instance=tuple(t.prefill_tps_per_instance.items()),
        prefill_gpu_util=t.prefill_gpu_util,
        decode_gpu_util=t.decode_gpu_util,
        prefill_sm_activity=t.prefill_sm_activity,
        decode_sm_activity=t.decode_sm_activity,
        ttft_s=t.ttft_s,
        tbt_s=t.tbt_s,
        requests_per_s_per_prefill=t.requests_per_s_per_prefill,
        requests_per_s_per_decode=t.requests_per_s_per_decode,
        mean_input_tokens=t.mean_input_tokens,
        mean_output_tokens=t.mean_output_tokens,
        margin=t.margin,
        source=t.source,
        prefill_queue_per_instance=t.prefill_queue_per_instance,
        decode_batch_util=t.decode_batch_util,
        prefill_s_per_input_token=t.prefill_s_per_input_token,
        decode_itl_floor_s=t.decode_itl_floor_s,
        decode_itl_s_per_request=t.decode_itl_s_per_request,
        decode_itl_s_per_kv_token=t.decode_itl_s_per_kv_token,
        decode_kv_capacity_tokens=t.decode_kv_capacity_tokens,
    )


def sim_settings(config: SimulationConfig) -> SimSettings:
    return SimSettings(
        fidelity=Fidelity(config.fidelity),
        duration_s=config.duration_s,
        seed=config.seed,
        tick_s=config.tick_s,
        cold_start_s=config.cold_start_s,
        drain_grace_s=config.drain_grace_s,
        scale_in_mode=ScaleInMode(config.scale_in_mode),
        fluid_step_s=config.fluid_step_s,
        telemetry_window_s=config.telemetry_window_s,
        kv_activation_reserve=config.kv_activation_reserve,
        max_tail_s=config.max_tail_s,
        perf_engine=config.perf_engine,
        ratio_tolerance=config.ratio_tolerance,
        soft_scale_in_s=config.soft_scale_in_s,
        role_wise_targets=config.role_wise_targets,
        engine=engine_settings(config.engine),
    )


def engine_settings(config: EngineConfig) -> EngineSettings:
    return EngineSettings(
        kv_reservation=KvReservation(config.kv_reservation),
        preemption=Preemption(config.preemption),
        swap_gbyte_per_s=config.swap_gbyte_per_s,
        prefill_chunk_tokens=config.prefill_chunk_tokens,
        max_batched_tokens=config.max_batched_tokens,
        kv_transfer=KvTransfer(config.kv_transfer),
        mixed_pool=config.mixed_pool,
        mixed_pool_prompt_tokens=config.mixed_pool_prompt_tokens,
        kv_capacity_tokens=config.kv_capacity_tokens,
        kv_capacity_gib=config.kv_capacity_gib,
        kv_link_gbyte_per_s=config.kv_link_gbyte_per_s,
        kv_link_latency_s=config.kv_link_latency_s,
    )


# --- catalog and topology -------------------------------------------------------------------


def _scenario_catalog(config: ScenarioConfig, doc: Document) -> Catalog:
    if config.catalog is None:
        return load_catalog()
    if isinstance(config.catalog, CatalogConfig):
        return load_catalog().with_overrides(config.catalog, doc, ("catalog",))
    path = relative_path(config.catalog, doc)
    catalog_doc = read_document(path)
    require_kind(catalog_doc, "catalog")
    return load_catalog_file(catalog_doc)


def _scenario_topology(config: ScenarioConfig, doc: Document, catalog: Catalog) -> Topology:
    if isinstance(config.topology, TopologyConfig):
        return build_topology(config.topology, doc, catalog, ("topology",))
    ref = config.topology
    embedded = embedded_topologies()
    if ref in embedded and not looks_like_path(ref):
        path = embedded[ref]
    else:
        path = relative_path(ref, doc)
        if not looks_like_path(ref) and not path.exists():
            known = ", ".join(sorted(embedded)) or "none"
            raise doc.error(
                ("topology",),
                f"unknown topology {ref!r} (embedded: {known}; or give a path to a YAML file)",
            )
    return topology_from_document(read_document(path), catalog)


def topology_from_document(doc: Document, catalog: Catalog | None = None) -> Topology:
    """The topology of a ``kind: topology`` document (SKUs resolved with ``catalog``)."""
    require_kind(doc, "topology")
    config = doc.validate(TopologyConfig)
    return build_topology(config, doc, catalog or load_catalog())


# --- services -------------------------------------------------------------------------------


def service_model(service: ServiceFieldsConfig, doc: Document, loc: Loc, catalog: Catalog) -> ModelSpec:
    """The service's model from the catalog (aliases resolved) at the service's precision."""
    try:
        model = catalog.model(service.model)
    except ConfigError as exc:
        raise doc.error((*loc, "model"), str(exc)) from exc
    return model.with_precision(PRECISION_BYTES[service.precision])


def resolve_spec(
    service: ServiceFieldsConfig,
    doc: Document,
    loc: Loc,
    catalog: Catalog,
    topology: Topology | None,
    reserve: float = DEFAULT_KV_RESERVE,
) -> tuple[ModelSpec, ServiceSpec]:
    """A service's model and its ServiceSpec, every shape checked (:func:`role_shapes`)."""
    model = service_model(service, doc, loc, catalog)
    prefill = role_shapes(service.roles.prefill, Role.PREFILL, model, service, doc, loc, catalog, topology, reserve)
    decode = role_shapes(service.roles.decode, Role.DECODE, model, service, doc, loc, catalog, topology, reserve)
    return model, service_spec(service, model.id, prefill, decode)


def role_shapes(
    role_config: RoleConfig,
    role: Role,
    model: ModelSpec,
    service: ServiceFieldsConfig,
    doc: Document,
    loc: Loc,
    catalog: Catalog,
    topology: Topology | None,
    reserve: float,
) -> tuple[InstanceShape, ...]:
    """A role's allowed shapes, each checked: a known SKU (aliases resolved), listed once, TP dividing the
    model's heads, the weights fitting the GPUs beside the activation reserve and — with a ``topology``
    (a live cluster learns its nodes at run time, so it passes none) — a node of that SKU large enough."""
    largest_node: dict[str, int] = {}
    for node in topology.nodes if topology is not None else ():
        largest_node[node.sku] = max(largest_node.get(node.sku, 0), node.gpus_total)
    shapes: list[InstanceShape] = []
    first_at: dict[tuple[str, int], Loc] = {}
    for j, shape_config in enumerate(role_config.shapes):
        shape_loc: Loc = (*loc, "roles", role.value, "shapes", j)
        try:
            sku_id = catalog.resolve_sku(shape_config.sku)
        except ConfigError as exc:
            raise doc.error((*shape_loc, "sku"), str(exc)) from exc
        tp = shape_config.tp
        key = (sku_id, tp)
        if key in first_at:
            raise doc.error(shape_loc, f"shape {sku_id} tp{tp} is listed twice (first at {format_loc(first_at[key])})")
        first_at[key] = shape_loc
        if topology is not None and sku_id not in largest_node:
            have = ", ".join(sorted(largest_node))
            raise doc.error(
                (*shape_loc, "sku"),
                f"no node of SKU '{sku_id}' in topology '{topology.name}' (it has: {have})",
            )
        if topology is not None and tp > largest_node[sku_id]:
            raise doc.error(
                (*shape_loc, "tp"),
                f"tp {tp} exceeds the largest '{sku_id}' node in topology '{topology.name}' "
                f"({largest_node[sku_id]} GPUs); an instance runs on one node",
            )
        if model.heads % tp:
            raise doc.error(
                (*shape_loc, "tp"),
                f"tp {tp} does not divide the {model.heads} attention heads of '{model.id}'",
            )
        sku = catalog.skus[sku_id]
        usable_gb = tp * sku.mem_gb * (1.0 - reserve)
        weights_gb = model.weight_bytes / 1e9
        if weights_gb >= usable_gb:
            raise doc.error(
                shape_loc,
                f"model '{model.id}' ({service.precision}) does not fit {sku_id} tp{tp}: weights need "
                f"{weights_gb:.1f} GB, {tp}x{sku.mem_gb:g} GB leaves {usable_gb:.1f} GB after the "
                f"{reserve:.0%} activation reserve",
            )
        shapes.append(InstanceShape(role=role, sku=sku_id, tp=tp))
    return tuple(shapes)
