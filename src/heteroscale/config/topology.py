"""Topology files: the tree VDC → physical cluster → logical cluster → big-pod (S2) → mini-pod (S1) → S0
→ node, validated with pydantic and turned into :class:`heteroscale.domain.topology.Topology`.

A node list may mix single nodes and generators (``{count: 4, sku: h800, gpus: 8, prefix: a1n}``
makes ``a1n1`` … ``a1n4``).

RDMA-subgroup priorities are derived from the tree (see :mod:`heteroscale.scheduling.subgroups`);
``subgroup_priority`` overrides them per big-pod or mini-pod, named by its name or, when a name is
used more than once, by its full path ``vdc/physical/logical/big-pod[/mini-pod]``::

    subgroup_priority: {s2-b: medium, s1-a1: high}
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, StringConstraints, Tag, model_validator

from heteroscale.config.catalog import Catalog
from heteroscale.config.source import UNION_TAG_PREFIX, Document, Loc, StrictModel, format_loc
from heteroscale.domain.topology import KvBandwidthTable, NodeSpec, SubgroupPriority, Topology
from heteroscale.errors import ConfigError

Name = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]

_DEFAULT_KV = KvBandwidthTable()


class _NodeCommon(StrictModel):
    sku: str = Field(min_length=1)
    gpus: int = Field(ge=1, le=64)
    gpus_free: int | None = Field(default=None, ge=0)  # default: all of ``gpus``
    schedulable: bool = True
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _free_within_total(self) -> _NodeCommon:
        if self.gpus_free is not None and self.gpus_free > self.gpus:
            raise ValueError(f"gpus_free ({self.gpus_free}) exceeds gpus ({self.gpus})")
        return self


class NodeConfig(_NodeCommon):
    name: Name


class NodeGeneratorConfig(_NodeCommon):
    """``count`` identical nodes named ``{prefix}{start}`` … ``{prefix}{start + count - 1}``."""

    count: int = Field(ge=1, le=10_000)
    prefix: Name
    start: int = Field(default=1, ge=0)


def _node_item_tag(value: Any) -> str:
    if isinstance(value, dict):
        return f"{UNION_TAG_PREFIX}generator" if "count" in value else f"{UNION_TAG_PREFIX}node"
    if isinstance(value, NodeGeneratorConfig):
        return f"{UNION_TAG_PREFIX}generator"
    return f"{UNION_TAG_PREFIX}node"


NodeItem = Annotated[
    Annotated[NodeConfig, Tag(f"{UNION_TAG_PREFIX}node")]
    | Annotated[NodeGeneratorConfig, Tag(f"{UNION_TAG_PREFIX}generator")],
    Discriminator(_node_item_tag),
]


class S0Config(StrictModel):
    name: Name
    nodes: list[NodeItem] = Field(min_length=1)


class MiniPodConfig(StrictModel):
    """An S1 switch domain."""

    name: Name
    s0s: list[S0Config] = Field(min_length=1)


class BigPodConfig(StrictModel):
    """An S2 switch domain."""

    name: Name
    mini_pods: list[MiniPodConfig] = Field(min_length=1)


class LogicalClusterConfig(StrictModel):
    name: Name
    big_pods: list[BigPodConfig] = Field(min_length=1)


class PhysicalClusterConfig(StrictModel):
    name: Name
    logical_clusters: list[LogicalClusterConfig] = Field(min_length=1)


class VdcConfig(StrictModel):
    name: Name
    physical_clusters: list[PhysicalClusterConfig] = Field(min_length=1)


class KvBandwidthConfig(StrictModel):
    """KV-transfer bandwidth factor by the closest level P and D share (defaults: assumptions)."""

    same_node: float = Field(default=_DEFAULT_KV.same_node, gt=0)
    same_s1: float = Field(default=_DEFAULT_KV.same_s1, gt=0)
    same_s2: float = Field(default=_DEFAULT_KV.same_s2, gt=0)
    same_cluster: float = Field(default=_DEFAULT_KV.same_cluster, gt=0)
    cross_cluster: float = Field(default=_DEFAULT_KV.cross_cluster, gt=0)
    setup_s: float = Field(default=_DEFAULT_KV.setup_s, ge=0)


class TopologyConfig(StrictModel):
    """A ``kind: topology`` file, or a scenario's inline ``topology:`` mapping."""

    kind: Literal["topology"] = "topology"
    name: Name
    description: str = ""
    kv_bandwidth: KvBandwidthConfig = Field(default_factory=KvBandwidthConfig)
    vdcs: list[VdcConfig] = Field(min_length=1)
    # big-pod or mini-pod name (or full path) → the priority of its RDMA subgroup, replacing the derived one
    subgroup_priority: dict[str, Literal["low", "medium", "high"]] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------

_LEVELS: tuple[tuple[str, str], ...] = (
    ("vdcs", "VDC"),
    ("physical_clusters", "physical cluster"),
    ("logical_clusters", "logical cluster"),
    ("big_pods", "big-pod"),
    ("mini_pods", "mini-pod"),
    ("s0s", "S0"),
)


def build_topology(config: TopologyConfig, doc: Document, catalog: Catalog, loc: Loc = ()) -> Topology:
    """The domain topology for ``config``; SKU aliases resolved against ``catalog``.

    Rejects sibling domains with one name and node names used twice anywhere in the tree.
    """
    nodes: list[NodeSpec] = []
    first_seen: dict[str, Loc] = {}
    _walk(config, 0, (), loc, doc, catalog, nodes, first_seen)
    kv = config.kv_bandwidth
    table = KvBandwidthTable(
        same_node=kv.same_node,
        same_s1=kv.same_s1,
        same_s2=kv.same_s2,
        same_cluster=kv.same_cluster,
        cross_cluster=kv.cross_cluster,
        setup_s=kv.setup_s,
    )
    overrides = _priority_overrides(config, doc, loc, nodes)
    return Topology(name=config.name, nodes=tuple(nodes), kv_bandwidth=table, subgroup_priority=overrides)


def _priority_overrides(
    config: TopologyConfig, doc: Document, loc: Loc, nodes: list[NodeSpec]
) -> tuple[tuple[tuple[str, ...], SubgroupPriority], ...]:
    """``subgroup_priority`` resolved to S2 / S1 paths; unknown, ambiguous or repeated names are errors."""
    by_name: dict[str, list[tuple[str, ...]]] = {}
    by_path: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        for depth in (4, 5):  # big-pod, mini-pod
            path = node.path[:depth]
            joined = "/".join(path)
            if joined not in by_path:
                by_path[joined] = path
                by_name.setdefault(path[-1], []).append(path)
    out: list[tuple[tuple[str, ...], SubgroupPriority]] = []
    seen: dict[tuple[str, ...], str] = {}
    for key, value in config.subgroup_priority.items():
        key_loc: Loc = (*loc, "subgroup_priority", key)
        matches = [by_path[key]] if key in by_path else by_name.get(key, [])
        if not matches:
            close = difflib.get_close_matches(key, list(by_name), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise doc.error(key_loc, f"no big-pod or mini-pod named {key!r} in topology '{config.name}'{hint}")
        if len(matches) > 1:
            shown = ", ".join("/".join(p) for p in matches[:3])
            raise doc.error(key_loc, f"{key!r} names {len(matches)} domains ({shown}); write the full path instead")
        path = matches[0]
        if path in seen:
            raise doc.error(key_loc, f"{key!r} and {seen[path]!r} name the same domain")
        seen[path] = key
        out.append((path, SubgroupPriority[value.upper()]))
    return tuple(sorted(out))  # one canonical order, whatever the order in the file


def _walk(
    parent: Any,
    depth: int,
    path: tuple[str, ...],
    loc: Loc,
    doc: Document,
    catalog: Catalog,
    out: list[NodeSpec],
    first_seen: dict[str, Loc],
) -> None:
    if depth == len(_LEVELS):
        _add_nodes(parent, path, loc, doc, catalog, out, first_seen)
        return
    field, label = _LEVELS[depth]
    siblings: set[str] = set()
    for i, child in enumerate(getattr(parent, field)):
        child_loc = (*loc, field, i)
        if child.name in siblings:
            raise doc.error((*child_loc, "name"), f"duplicate {label} name {child.name!r} in one parent")
        siblings.add(child.name)
        _walk(child, depth + 1, (*path, child.name), child_loc, doc, catalog, out, first_seen)


def _add_nodes(
    s0: S0Config,
    path: tuple[str, ...],
    loc: Loc,
    doc: Document,
    catalog: Catalog,
    out: list[NodeSpec],
    first_seen: dict[str, Loc],
) -> None:
    for i, item in enumerate(s0.nodes):
        item_loc = (*loc, "nodes", i)
        try:
            sku = catalog.resolve_sku(item.sku)
        except ConfigError as exc:
            raise doc.error((*item_loc, "sku"), str(exc)) from exc
        if isinstance(item, NodeGeneratorConfig):
            names = [f"{item.prefix}{n}" for n in range(item.start, item.start + item.count)]
            name_loc: Loc = (*item_loc, "prefix")
        else:
            names = [item.name]
            name_loc = (*item_loc, "name")
        for name in names:
            if name in first_seen:
                raise doc.error(name_loc, f"duplicate node name {name!r} (first at {format_loc(first_seen[name])})")
            first_seen[name] = name_loc
            out.append(
                NodeSpec(
                    path=(path[0], path[1], path[2], path[3], path[4], path[5], name),
                    sku=sku,
                    gpus_total=item.gpus,
                    gpus_free=item.gpus if item.gpus_free is None else item.gpus_free,
                    schedulable=item.schedulable,
                    labels=tuple(item.labels.items()),
                )
            )


def topology_to_dict(topology: Topology) -> dict[str, Any]:
    """Plain data for ``topology`` in the topology-file schema (every node listed, no generators)."""
    vdcs: list[dict[str, Any]] = []
    index: dict[tuple[str, ...], list[dict[str, Any]]] = {(): vdcs}
    for node in topology.nodes:
        for depth in range(len(_LEVELS)):
            key = node.path[: depth + 1]
            if key not in index:
                child_field = _LEVELS[depth + 1][0] if depth + 1 < len(_LEVELS) else "nodes"
                children: list[dict[str, Any]] = []
                index[node.path[:depth]].append({"name": node.path[depth], child_field: children})
                index[key] = children
        entry: dict[str, Any] = {
            "name": node.name,
            "sku": node.sku,
            "gpus": node.gpus_total,
            "gpus_free": node.gpus_free,
            "schedulable": node.schedulable,
        }
        if node.labels:
            entry["labels"] = dict(node.labels)
        index[node.path[:6]].append(entry)
    kv = topology.kv_bandwidth
    return {
        "kind": "topology",
        "name": topology.name,
        "kv_bandwidth": {
            "same_node": kv.same_node,
            "same_s1": kv.same_s1,
            "same_s2": kv.same_s2,
            "same_cluster": kv.same_cluster,
            "cross_cluster": kv.cross_cluster,
            "setup_s": kv.setup_s,
        },
        "vdcs": vdcs,
        **(
            {"subgroup_priority": {"/".join(path): p.label for path, p in topology.subgroup_priority}}
            if topology.subgroup_priority
            else {}
        ),
    }
