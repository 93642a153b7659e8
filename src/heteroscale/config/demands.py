"""The ``kind: demands`` file of ``heteroscale schedule``: its schema and its loader.

A demands file (``kind: demands``) lists services with the same fields as a scenario's service, minus
``load`` / ``policy`` / ``targets``, plus the desired counts (optionally per shape, ``desired.by_shape``:
a GPU mix) and, optionally, the current instances::

    kind: demands
    services:
      - name: chat
        model: llama-3.1-70b
        roles: {prefill: {shapes: [{sku: h800, tp: 4}]}, decode: {shapes: [{sku: h20, tp: 4}]}}
        pd_ratio: 1.0
        slo: {ttft_s: 2.0, tbt_s: 0.1}
        affinity: s2
        desired: {prefill: 4, decode: 4}
        scale_in: {mode: drain, grace_s: 600}            # optional
        instances:                                       # optional: what runs now
          - {id: chat-p0, role: prefill, sku: h800, tp: 4, dg: chat-dg0, node: a1n1, lifecycle: ready}

The topology's ``gpus_free`` is the inventory's word on free GPUs, so it already excludes the listed
instances; a node whose instances use more GPUs than the topology says are in use is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from heteroscale.config.build import resolve_spec
from heteroscale.config.catalog import Catalog, load_catalog
from heteroscale.config.schema import RoleConfig, ServiceFieldsConfig
from heteroscale.config.source import Document, Loc, StrictModel, format_loc, read_document
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle, ScaleInMode
from heteroscale.domain.topology import Topology
from heteroscale.errors import ConfigError
from heteroscale.scheduling.groups import ServiceDemand


class ShapeCountConfig(StrictModel):
    """How many instances of one shape the service wants (a GPU mix); the counts of a role sum to its total."""

    role: Literal["prefill", "decode"]
    sku: str = Field(min_length=1)
    tp: int = Field(ge=1, le=64)
    count: int = Field(ge=0)


class DesiredConfig(StrictModel):
    prefill: int = Field(ge=0)
    decode: int = Field(ge=0)
    by_shape: list[ShapeCountConfig] = Field(default_factory=list)  # optional: the mix, per shape


class ScaleInConfig(StrictModel):
    mode: Literal["drain", "kill"] = "drain"
    grace_s: float = Field(default=600.0, ge=0)


class InstanceConfig(StrictModel):
    """One running instance: its role and shape, its DG and node, and where it is in its life."""

    id: str = Field(min_length=1)
    role: Literal["prefill", "decode"]
    sku: str = Field(min_length=1)
    tp: int = Field(ge=1, le=64)
    dg: str = Field(min_length=1)
    node: str = Field(min_length=1)
    lifecycle: Literal["pending", "starting", "ready", "draining"] = "ready"
    launched_at_s: float = Field(default=0.0, ge=0)


class DemandServiceConfig(ServiceFieldsConfig):
    """A service's fields plus the counts it wants this cycle and its current instances."""

    desired: DesiredConfig
    scale_in: ScaleInConfig = Field(default_factory=ScaleInConfig)
    instances: list[InstanceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _desired_within_bounds(self) -> DemandServiceConfig:
        for role in ("prefill", "decode"):
            count = getattr(self.desired, role)
            bounds: RoleConfig = getattr(self.roles, role)
            if not bounds.min <= count <= bounds.max:
                raise ValueError(
                    f"desired.{role} ({count}) is outside roles.{role} bounds [{bounds.min}, {bounds.max}]"
                )
        return self


class DemandsConfig(StrictModel):
    """A ``kind: demands`` file."""

    kind: Literal["demands"]
    description: str = ""
    services: list[DemandServiceConfig] = Field(min_length=1)


def check_demands(doc: Document, catalog: Catalog | None = None) -> str:
    """Check a demands file without a topology (its schema and GPU names; ``schedule`` checks the rest
    against the topology) and say what it holds."""
    config = doc.validate(DemandsConfig)
    catalog = catalog or load_catalog()
    for i, service in enumerate(config.services):
        for j, inst in enumerate(service.instances):
            try:
                catalog.resolve_sku(inst.sku)
            except ConfigError as exc:
                raise doc.error(("services", i, "instances", j, "sku"), str(exc)) from exc
    names = ", ".join(s.name for s in config.services)
    instances = sum(len(s.instances) for s in config.services)
    return f"{len(config.services)} service(s) ({names}), {instances} current instance(s)"


def load_demands(
    path: str | Path, topology: Topology, catalog: Catalog | None = None
) -> tuple[tuple[ServiceDemand, ...], ClusterState]:
    """The demands and the current instances of a demands file, checked against ``topology``."""
    doc = read_document(Path(path))
    if "kind" not in doc.data:
        raise ConfigError(f"{doc.display}: kind: missing (expected 'demands')")
    if doc.data["kind"] != "demands":
        raise doc.error(("kind",), f"expected 'demands', got {doc.data['kind']!r}")
    config = doc.validate(DemandsConfig)
    catalog = catalog or load_catalog()
    demands: list[ServiceDemand] = []
    instances: list[InstanceInfo] = []
    seen: dict[str, Loc] = {}
    for i, service in enumerate(config.services):
        loc: Loc = ("services", i)
        if service.name in {d.spec.name for d in demands}:
            raise doc.error((*loc, "name"), f"duplicate service name {service.name!r}")
        _, spec = resolve_spec(service, doc, loc, catalog, topology)
        demands.append(_demand(service, spec, doc, loc, catalog))
        for j, inst in enumerate(service.instances):
            instances.append(_instance(inst, service.name, doc, (*loc, "instances", j), catalog, seen))
    _check_gpus_in_use(instances, topology, doc, seen)
    at_s = max((inst.launched_at_s for inst in instances), default=0.0)
    return tuple(demands), ClusterState(at_s=at_s, instances=tuple(instances))


def _demand(
    service: DemandServiceConfig, spec: ServiceSpec, doc: Document, loc: Loc, catalog: Catalog
) -> ServiceDemand:
    """The service's demand; ``desired.by_shape`` (a GPU mix) becomes per-shape counts for the scheduler."""
    shape_counts: list[tuple[str, int]] = []
    for j, item in enumerate(service.desired.by_shape):
        at: Loc = (*loc, "desired", "by_shape", j)
        try:
            sku = catalog.resolve_sku(item.sku)
        except ConfigError as exc:
            raise doc.error((*at, "sku"), str(exc)) from exc
        shape_counts.append((InstanceShape(Role(item.role), sku, item.tp).key, item.count))
    try:
        return ServiceDemand(
            spec=spec,
            desired_prefill=service.desired.prefill,
            desired_decode=service.desired.decode,
            scale_in_mode=ScaleInMode(service.scale_in.mode),
            drain_grace_s=service.scale_in.grace_s,
            shape_counts=tuple(shape_counts),
        )
    except ValueError as exc:
        raise doc.error((*loc, "desired"), str(exc)) from exc


def _instance(
    inst: InstanceConfig, service: str, doc: Document, loc: Loc, catalog: Catalog, seen: dict[str, Loc]
) -> InstanceInfo:
    if inst.id in seen:
        raise doc.error((*loc, "id"), f"duplicate instance id {inst.id!r} (first at {format_loc(seen[inst.id])})")
    seen[inst.id] = loc
    try:
        sku = catalog.resolve_sku(inst.sku)
    except ConfigError as exc:
        raise doc.error((*loc, "sku"), str(exc)) from exc
    lifecycle = Lifecycle(inst.lifecycle)
    return InstanceInfo(
        id=inst.id,
        service=service,
        role=Role(inst.role),
        shape=InstanceShape(Role(inst.role), sku, inst.tp),
        dg=inst.dg,
        node=inst.node,
        lifecycle=lifecycle,
        in_discovery=lifecycle is Lifecycle.READY,
        launched_at_s=inst.launched_at_s,
    )


def _check_gpus_in_use(instances: list[InstanceInfo], topology: Topology, doc: Document, seen: dict[str, Loc]) -> None:
    nodes = {n.name: n for n in topology.nodes}
    used: dict[str, int] = {}
    for inst in instances:
        node = nodes.get(inst.node)
        if node is None:
            raise doc.error((*seen[inst.id], "node"), f"no node {inst.node!r} in topology '{topology.name}'")
        if node.sku != inst.shape.sku:
            raise doc.error((*seen[inst.id], "sku"), f"node {inst.node!r} has {node.sku} GPUs, not {inst.shape.sku}")
        used[inst.node] = used.get(inst.node, 0) + inst.shape.gpus
        in_use = node.gpus_total - node.gpus_free
        if used[inst.node] > in_use:
            raise doc.error(
                (*seen[inst.id], "node"),
                f"instances on node {inst.node!r} use {used[inst.node]} GPUs but topology '{topology.name}' "
                f"reports {in_use} in use (gpus {node.gpus_total}, gpus_free {node.gpus_free})",
            )
