"""The upstream CRDs (``../shared/crds``, see its README for sources and commits), a validator of objects
against them and the core Kubernetes schemas, and builders of the stacks' objects for the API fake.

The CRD schemas are checked strictly: a field the schema does not declare is an error where the API
server would silently prune it (an object schema with ``properties`` and neither
``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields``) — a write the server prunes is a
write lost.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from heteroscale.demo.kube_custom import crd_kinds

K8S_VERSION = "1.37"
REPO = Path(__file__).resolve().parents[2]
CRD_FILES = {
    "LeaderWorkerSet": "lws/leaderworkerset.x-k8s.io_leaderworkersets.yaml",
    "DisaggregatedSetRoleScaler": "lws/disaggregatedset.x-k8s.io_disaggregatedsetrolescalers.yaml",
    "DynamoGraphDeploymentScalingAdapter": "dynamo/nvidia.com_dynamographdeploymentscalingadapters.yaml",
    "PodClique": "grove/grove.io_podcliques.yaml",
    "PodCliqueScalingGroup": "grove/grove.io_podcliquescalinggroups.yaml",
    "StormService": "aibrix/orchestration.aibrix.ai_stormservices.yaml",
    "ModelServing": "kthena/workload.serving.volcano.sh_modelservings.yaml",
}
CORE_KINDS = {("v1", "Pod"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("v1", "Node")}


def crd_dir() -> Path | None:
    """Where the CRDs are: ``$HETEROSCALE_CRDS``, else ``shared/crds`` next to the repository."""
    env = os.environ.get("HETEROSCALE_CRDS")
    for candidate in ((Path(env),) if env else ()) + (REPO.parent / "shared" / "crds", REPO / "shared" / "crds"):
        if candidate.is_dir():
            return candidate
    return None


@functools.cache
def load_crd(kind: str) -> dict[str, Any]:
    where = crd_dir()
    if where is None:
        raise FileNotFoundError("no shared/crds folder")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads the 1.5 MB CRDs ~10× faster
    doc: dict[str, Any] = yaml.load((where / CRD_FILES[kind]).read_text(encoding="utf-8"), Loader=loader)
    return doc


def strict_schema(schema: Any) -> Any:
    """The schema with undeclared fields refused where the API server would prune them (module doc)."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


@functools.cache
def _crd_validator(kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    for ck in crd_kinds(load_crd(kind)):
        if ck.api_version == api_version:
            schema = strict_schema(copy.deepcopy(ck.schema))
            schema["properties"]["metadata"] = {"type": "object"}  # the server's ObjectMeta, checked apart
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
            return cls(schema)  # type: ignore[no-any-return]
    return None


def problems(obj: dict[str, Any]) -> list[str]:
    """What is wrong with ``obj`` against its CRD or the core schema (strict); [] when it is valid or its
    kind is neither (Leases, Nodes built by the tests' own helpers are checked by the core schema)."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    if kind in CRD_FILES:
        validator = _crd_validator(kind, api_version)
        if validator is None:
            return [f"{api_version} is not a served version of {kind}"]
        return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(obj)]
    if (api_version, kind) in CORE_KINDS:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [f"{'.'.join(map(str, exc.path)) or '(root)'}: {exc.message}"]
    return []


def crds(*kinds: str) -> list[dict[str, Any]]:
    return [load_crd(kind) for kind in kinds]


Validator = Callable[[dict[str, Any]], list[str]]


# --- the stacks' objects ----------------------------------------------------------------------------------


def _pod_template(labels: dict[str, str], gpus: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "engine",
                    "image": "vllm/vllm-openai:v0.10.1",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ]
        },
    }


def deployment(name: str, replicas: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment someone else runs: labelled as they like, never ``managed-by=heteroscale``."""
    match = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "helm", **match}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": match}, "template": _pod_template(match)},
    }


def leader_worker_set(name: str, replicas: int, size: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {"size": size, "workerTemplate": _pod_template(labels)},
        },
    }


def scaling_adapter(name: str, graph: str, component: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "dgdRef": {"name": graph, "componentName": component}},
    }


def storm_service(name: str, roles: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "orchestration.aibrix.ai/v1alpha1",
        "kind": "StormService",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "roles": [
                        {"name": role, "replicas": n, "template": _pod_template({"app": name})}
                        for role, n in roles.items()
                    ]
                },
            },
        },
    }


def model_serving(name: str, groups: int, roles: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "workload.serving.volcano.sh/v1alpha1",
        "kind": "ModelServing",
        "metadata": {"name": name},
        "spec": {
            "replicas": groups,
            "template": {
                "roles": [
                    {"name": role, "replicas": n, "workerReplicas": 0, "entryTemplate": _pod_template({"app": name})}
                    for role, n in roles.items()
                ]
            },
        },
    }
