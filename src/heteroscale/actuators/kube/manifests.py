"""The objects we create: one Deployment per (service, deployment group, role, instance shape).

Its pods carry labels for service (verbatim), DG, role, SKU and TP; required node affinity pins them to
the DG's domain (every domain label from the top down to the service's affinity level) and to the SKU.

Pods are locked down unless the service's workload says otherwise (:class:`PodSecurity`): no service
account token, ``runAsNonRoot``, no privilege escalation, every capability dropped, the runtime's
default seccomp profile; a read-only root filesystem only when asked (engines write caches). The
environment may read Secret and ConfigMap keys (``secretKeyRef`` / ``configMapKeyRef``) and whole
objects (``envFrom``), so credentials never sit in the controller's config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from heteroscale.actuators.kube.api import KubernetesSettings
from heteroscale.actuators.kube.naming import (
    A_CREATED_AT,
    A_DG_NAME,
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
    label_value,
    label_value_problem,
)
from heteroscale.actuators.kube.state import Snapshot
from heteroscale.domain.hardware import Role
from heteroscale.domain.service import AffinityLevel
from heteroscale.domain.topology import Level
from heteroscale.errors import PermanentActuationError

SECRET = "secret"
CONFIG_MAP = "configmap"


@dataclass(frozen=True, slots=True)
class EnvRef:
    """An environment variable read from one key of a Secret or a ConfigMap (``source``)."""

    name: str
    source: str  # SECRET or CONFIG_MAP
    object_name: str
    key: str
    optional: bool = False

    def manifest(self) -> dict[str, Any]:
        ref = "secretKeyRef" if self.source == SECRET else "configMapKeyRef"
        return {
            "name": self.name,
            "valueFrom": {ref: {"name": self.object_name, "key": self.key, "optional": self.optional}},
        }


@dataclass(frozen=True, slots=True)
class EnvFrom:
    """Every key of a Secret or a ConfigMap as environment variables (``envFrom``), optionally prefixed."""

    source: str  # SECRET or CONFIG_MAP
    object_name: str
    prefix: str = ""
    optional: bool = False

    def manifest(self) -> dict[str, Any]:
        ref = "secretRef" if self.source == SECRET else "configMapRef"
        out: dict[str, Any] = {ref: {"name": self.object_name, "optional": self.optional}}
        if self.prefix:
            out["prefix"] = self.prefix
        return out


@dataclass(frozen=True, slots=True)
class PodSecurity:
    """The pods' security settings; the defaults are the restrictive ones (module doc)."""

    run_as_non_root: bool = True
    run_as_user: int | None = None
    run_as_group: int | None = None
    fs_group: int | None = None
    allow_privilege_escalation: bool = False
    drop_all_capabilities: bool = True
    seccomp_runtime_default: bool = True
    read_only_root_filesystem: bool = False
    automount_service_account_token: bool = False

    def pod_context(self) -> dict[str, Any]:
        out: dict[str, Any] = {"runAsNonRoot": self.run_as_non_root}
        for name, value in (
            ("runAsUser", self.run_as_user),
            ("runAsGroup", self.run_as_group),
            ("fsGroup", self.fs_group),
        ):
            if value is not None:
                out[name] = value
        if self.seccomp_runtime_default:
            out["seccompProfile"] = {"type": "RuntimeDefault"}
        return out

    def container_context(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "allowPrivilegeEscalation": self.allow_privilege_escalation,
            "readOnlyRootFilesystem": self.read_only_root_filesystem,
        }
        if self.drop_all_capabilities:
            out["capabilities"] = {"drop": ["ALL"]}
        return out


@dataclass(frozen=True, slots=True)
class WorkloadTemplate:
    """What one service's pods run: image, per-role arguments, port, environment, security settings."""

    image: str
    prefill_args: tuple[str, ...] = ()
    decode_args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    port: int = 8000
    readiness_path: str = "/health"
    env: tuple[tuple[str, str], ...] = ()  # literal values
    env_refs: tuple[EnvRef, ...] = ()  # values read from Secret / ConfigMap keys
    env_from: tuple[EnvFrom, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # extra pod labels (e.g. for a PodMonitor)
    termination_grace_s: int = 30
    security: PodSecurity = PodSecurity()

    def args(self, role: Role) -> tuple[str, ...]:
        return self.prefill_args if role is Role.PREFILL else self.decode_args

    def env_manifest(self) -> list[dict[str, Any]]:
        literal = [(name, {"name": name, "value": value}) for name, value in self.env]
        refs = [(ref.name, ref.manifest()) for ref in self.env_refs]
        return [entry for _, entry in sorted(literal + refs, key=lambda item: item[0])]


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
    problem = label_value_problem(key.service)
    if problem is not None:  # the config refuses such names; a label must carry the name verbatim
        raise PermanentActuationError(f"service name {key.service!r} {problem}")
    selector = {MANAGED_BY: MANAGER, L_WORKLOAD: key.name}
    pod_labels = {
        **dict(template.labels),
        **selector,
        L_SERVICE: key.service,
        L_DG: label_value(key.dg),
        L_ROLE: key.role.value,
        L_SKU: label_value(key.sku),
        L_TP: str(key.tp),
        L_DISCOVERY: DISCOVERY_ON,
    }
    names = {A_SERVICE_NAME: key.service, A_DG_NAME: key.dg}
    gpus = {settings.labels.gpu_resource: str(key.tp)}
    container: dict[str, Any] = {
        "name": "engine",
        "image": template.image,
        "ports": [{"name": "http", "containerPort": template.port}],
        "resources": {"limits": dict(gpus), "requests": dict(gpus)},
        "readinessProbe": {"httpGet": {"path": template.readiness_path, "port": "http"}, "periodSeconds": 5},
        "securityContext": template.security.container_context(),
    }
    if template.command:
        container["command"] = list(template.command)
    if template.args(key.role):
        container["args"] = list(template.args(key.role))
    if template.env or template.env_refs:
        container["env"] = template.env_manifest()
    if template.env_from:
        container["envFrom"] = [source.manifest() for source in template.env_from]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": template.security.automount_service_account_token,
        "securityContext": template.security.pod_context(),
        "terminationGracePeriodSeconds": template.termination_grace_s,
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": expressions}]
                }
            }
        },
        "containers": [container],
    }
    if settings.tolerations:
        pod_spec["tolerations"] = [t.manifest() for t in settings.tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": key.name,
            "namespace": settings.namespace,
            "labels": {MANAGED_BY: MANAGER, L_SERVICE: key.service, L_DG: pod_labels[L_DG], L_ROLE: key.role.value},
            "annotations": {A_CREATED_AT: f"{created_at_s:.6f}", **names},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {A_DOMAIN: json.dumps(domain), **names}},
                "spec": pod_spec,
            },
        },
    }
