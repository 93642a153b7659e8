"""The objects we create: one Deployment per (service, deployment group, role, instance shape).

Its pods carry labels for service, DG, role, SKU and TP; required node affinity pins them to the DG's
domain (every domain label from the top down to the service's affinity level) and to the SKU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from heteroscale.actuators.kube.api import KubernetesSettings
from heteroscale.actuators.kube.naming import (
    A_CREATED_AT,
    A_DOMAIN,
    A_SERVICE_NAME,
    DISCOVERY_ON,
    L_DG,
    L_DISCOVERY,
    L_ROLE,
    L_SERVICE,
    L_SKU,
    L_TP,
    L_WORKLOAD,
    MANAGED_BY,
    MANAGER,
    WorkloadKey,
    dns_label,
)
from heteroscale.actuators.kube.state import Snapshot
from heteroscale.domain.hardware import Role
from heteroscale.domain.service import AffinityLevel
from heteroscale.domain.topology import Level


@dataclass(frozen=True, slots=True)
class WorkloadTemplate:
    """What one service's pods run: image, per-role arguments, port, environment."""

    image: str
    prefill_args: tuple[str, ...] = ()
    decode_args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    port: int = 8000
    readiness_path: str = "/health"
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # extra pod labels (e.g. for a PodMonitor)
    termination_grace_s: int = 30

    def args(self, role: Role) -> tuple[str, ...]:
        return self.prefill_args if role is Role.PREFILL else self.decode_args


def affinity_level(affinity: AffinityLevel) -> Level:
    return {AffinityLevel.S1: Level.S1, AffinityLevel.S2: Level.S2, AffinityLevel.CLUSTER: Level.LOGICAL_CLUSTER}[
        affinity
    ]


def deployment_manifest(
    key: WorkloadKey,
    node: str,
    replicas: int,
    snap: Snapshot,
    template: WorkloadTemplate,
    settings: KubernetesSettings,
    affinity: AffinityLevel,
    created_at_s: float,
) -> dict[str, Any]:
    """The Deployment of one workload, pinned to the domain of ``node`` and to the shape's SKU."""
    level = affinity_level(affinity)
    by_name = {n.name: n for n in snap.topology.nodes}
    spec_node = by_name.get(node)
    expressions: list[dict[str, Any]] = []
    domain: list[tuple[int, str]] = []
    raw_node = next((n for n in snap.nodes if n["metadata"]["name"] == node), None)
    node_labels = (raw_node or {}).get("metadata", {}).get("labels") or {}
    for lv, label_key in settings.labels.level_keys():
        if lv > level or label_key is None or label_key not in node_labels:
            continue
        expressions.append({"key": label_key, "operator": "In", "values": [node_labels[label_key]]})
        if spec_node is not None:
            domain.append((int(lv), spec_node.path[int(lv)]))
    sku_values = sorted(snap.raw_sku_values.get(key.sku, {key.sku}))
    expressions.append({"key": settings.labels.sku, "operator": "In", "values": sku_values})
    selector = {MANAGED_BY: MANAGER, L_WORKLOAD: key.name}
    pod_labels = {
        **dict(template.labels),
        **selector,
        L_SERVICE: dns_label(key.service),
        L_DG: dns_label(key.dg),
        L_ROLE: key.role.value,
        L_SKU: dns_label(key.sku),
        L_TP: str(key.tp),
        L_DISCOVERY: DISCOVERY_ON,
    }
    gpus = {settings.labels.gpu_resource: str(key.tp)}
    container: dict[str, Any] = {
        "name": "engine",
        "image": template.image,
        "ports": [{"name": "http", "containerPort": template.port}],
        "resources": {"limits": dict(gpus), "requests": dict(gpus)},
        "readinessProbe": {"httpGet": {"path": template.readiness_path, "port": "http"}, "periodSeconds": 5},
    }
    if template.command:
        container["command"] = list(template.command)
    if template.args(key.role):
        container["args"] = list(template.args(key.role))
    if template.env:
        container["env"] = [{"name": k, "value": v} for k, v in template.env]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": key.name,
            "namespace": settings.namespace,
            "labels": {
                MANAGED_BY: MANAGER,
                L_SERVICE: dns_label(key.service),
                L_DG: dns_label(key.dg),
                L_ROLE: key.role.value,
            },
            "annotations": {A_CREATED_AT: f"{created_at_s:.6f}", A_SERVICE_NAME: key.service},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {A_DOMAIN: json.dumps(domain)}},
                "spec": {
                    "terminationGracePeriodSeconds": template.termination_grace_s,
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": expressions}]
                            }
                        }
                    },
                    "containers": [container],
                },
            },
        },
    }
