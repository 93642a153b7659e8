"""The labels and annotations we put on objects, and the names of the workloads we own.

Label *values* carry names verbatim (a service called ``llama-3.1-70b`` or ``Chat_EU`` is labelled
exactly so, which is what metric selectors and the controller's state compare against); the config
refuses a service name that is not a valid label value. Only object *names* are DNS-ified, with a short
hash of the raw text appended whenever the DNS form differs from it, so ``Llama_3`` and ``llama-3``
never share a workload.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from heteroscale.domain.hardware import Role

PREFIX = "heteroscale.io"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "heteroscale"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
DELETION_COST_VICTIM = -2147483648  # int32 minimum: deleted first
L_WORKLOAD = f"{PREFIX}/workload"
L_SERVICE = f"{PREFIX}/service"  # the service name, verbatim
L_DG = f"{PREFIX}/dg"
L_ROLE = f"{PREFIX}/role"
L_SKU = f"{PREFIX}/sku"
L_TP = f"{PREFIX}/tp"
L_DISCOVERY = f"{PREFIX}/discovery"
A_DRAIN_DEADLINE = f"{PREFIX}/drain-deadline-s"
A_SCALED_DOWN = f"{PREFIX}/scaled-down"
A_DOMAIN = f"{PREFIX}/domain"
A_CREATED_AT = f"{PREFIX}/created-at"
A_SERVICE_NAME = f"{PREFIX}/service-name"  # the service name, verbatim (also on workloads of older releases)
A_DG_NAME = f"{PREFIX}/dg-name"  # the DG name, verbatim (its label is shortened when too long)
DISCOVERY_ON = "on"
DISCOVERY_OFF = "off"
LABEL_VALUE_MAX = 63
OBJECT_NAME_MAX = 52  # a Deployment's name + "-<pod-template-hash>" must stay a valid label value
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


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


def label_value_problem(text: str) -> str | None:
    """Why ``text`` is not a valid Kubernetes label value, or None when it is."""
    if len(text) > LABEL_VALUE_MAX:
        return f"is {len(text)} characters long; a Kubernetes label value has at most {LABEL_VALUE_MAX}"
    if not _LABEL_VALUE.match(text):
        return (
            "is not a valid Kubernetes label value (letters, digits, '-', '_' and '.', "
            "beginning and ending with a letter or digit)"
        )
    return None


def dns_label(text: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return out or "x"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def object_name(raw: str, max_len: int = OBJECT_NAME_MAX) -> str:
    """``raw`` as a DNS label of at most ``max_len`` characters: itself when it already is one, else its
    DNS form with ``-<hash of raw>`` appended (so two raw names never share one object name)."""
    dns = dns_label(raw)
    if dns == raw and len(raw) <= max_len:
        return raw
    return f"{dns[: max_len - 9].rstrip('-')}-{_digest(raw)}"


def label_value(text: str) -> str:
    """``text`` verbatim when it is a valid label value, else a shortened DNS form with its hash."""
    return text if label_value_problem(text) is None else object_name(text, LABEL_VALUE_MAX)


def workload_name(key: WorkloadKey) -> str:
    """``<dg>-<role>-<sku>-tp<N>`` as a DNS label of at most 52 characters (hash-suffixed when changed)."""
    return object_name(f"{key.dg}-{key.role.value}-{key.sku}-tp{key.tp}")


def workload_key(labels: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> WorkloadKey | None:
    """The key of a workload from its pod template's labels; the verbatim service and DG names in the
    annotations win over the labels (older releases labelled a DNS form of the service name)."""
    notes = annotations or {}
    try:
        return WorkloadKey(
            service=notes.get(A_SERVICE_NAME) or labels[L_SERVICE],
            dg=notes.get(A_DG_NAME) or labels[L_DG],
            role=Role(labels[L_ROLE]),
            sku=labels[L_SKU],
            tp=int(labels[L_TP]),
        )
    except (KeyError, ValueError):
        return None
