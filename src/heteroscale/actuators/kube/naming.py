"""The labels and annotations we put on objects, and the names of the workloads we own."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from heteroscale.actuators.kube.api import PREFIX
from heteroscale.domain.hardware import Role

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "heteroscale"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
DELETION_COST_VICTIM = -2147483648  # int32 minimum: deleted first
L_WORKLOAD = f"{PREFIX}/workload"
L_SERVICE = f"{PREFIX}/service"
L_DG = f"{PREFIX}/dg"
L_ROLE = f"{PREFIX}/role"
L_SKU = f"{PREFIX}/sku"
L_TP = f"{PREFIX}/tp"
L_DISCOVERY = f"{PREFIX}/discovery"
A_DRAIN_DEADLINE = f"{PREFIX}/drain-deadline-s"
A_SCALED_DOWN = f"{PREFIX}/scaled-down"
A_DOMAIN = f"{PREFIX}/domain"
A_CREATED_AT = f"{PREFIX}/created-at"
A_SERVICE_NAME = f"{PREFIX}/service-name"
DISCOVERY_ON = "on"
DISCOVERY_OFF = "off"


@dataclass(frozen=True, slots=True)
class WorkloadKey:
    service: str
    dg: str
    role: Role
    sku: str
    tp: int

    @property
    def name(self) -> str:
        return workload_name(self)


def dns_label(text: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return out or "x"


def workload_name(key: WorkloadKey) -> str:
    """``<dg>-<role>-<sku>-tp<N>`` as a DNS label of at most 52 characters (hash-shortened if longer)."""
    full = dns_label(f"{key.dg}-{key.role.value}-{key.sku}-tp{key.tp}")
    if len(full) <= 52:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[:43].rstrip('-')}-{digest}"


def workload_key(labels: Mapping[str, str]) -> WorkloadKey | None:
    try:
        return WorkloadKey(
            service=labels[L_SERVICE],
            dg=labels[L_DG],
            role=Role(labels[L_ROLE]),
            sku=labels[L_SKU],
            tp=int(labels[L_TP]),
        )
    except (KeyError, ValueError):
        return None
