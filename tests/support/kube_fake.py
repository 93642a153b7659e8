"""The Kubernetes API fake the tests use: the one shipped for ``heteroscale demo``
(:mod:`heteroscale.demo.kube_fake`), re-exported so the tests and the demo share one copy."""

from __future__ import annotations

from heteroscale.demo.kube_fake import (
    AGENT_PREFIX,
    DEPLOYMENTS,
    LEASES,
    NODES,
    OWNER_LABEL,
    PODS,
    WRITE_METHODS,
    Fault,
    KubeFake,
    WriteSeen,
    writer_of,
)
from heteroscale.demo.kube_server import KubeFakeServer

__all__ = [
    "AGENT_PREFIX",
    "DEPLOYMENTS",
    "LEASES",
    "NODES",
    "OWNER_LABEL",
    "PODS",
    "WRITE_METHODS",
    "Fault",
    "KubeFake",
    "KubeFakeServer",
    "WriteSeen",
    "writer_of",
]
