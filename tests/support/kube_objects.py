"""Kubernetes object semantics of the API fake (:mod:`heteroscale.demo.kube_objects`), re-exported so the
tests and the demo share one copy."""

from __future__ import annotations

from heteroscale.demo.kube_objects import (
    DELETION_COST,
    affinity_allows,
    as_scale,
    deletion_rank,
    field_selector_matches,
    gpu_request,
    is_ready,
    label_selector_matches,
    list_key,
    node_object,
    now_iso,
    parse_iso,
    pods_by_owner,
    tolerated,
    tolerates,
    unschedulable_condition,
)

__all__ = [
    "DELETION_COST",
    "affinity_allows",
    "as_scale",
    "deletion_rank",
    "field_selector_matches",
    "gpu_request",
    "is_ready",
    "label_selector_matches",
    "list_key",
    "node_object",
    "now_iso",
    "parse_iso",
    "pods_by_owner",
    "tolerated",
    "tolerates",
    "unschedulable_condition",
]
