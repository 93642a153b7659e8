"""Custom resources for the Kubernetes API fake (:mod:`.kube_fake`): their ``scale`` subresource as
their CRD declares it, and a stand-in for their operators' pods. Plain dicts only; a test fake.

:func:`crd_kinds` reads a CustomResourceDefinition document: each served version becomes a
:class:`CustomKind` with the CRD's scale paths (``specReplicasPath``, ``statusReplicasPath``,
``labelSelectorPath``) and its ``openAPIV3Schema``.

:func:`desired_pods` is what the operator would run for one object, with the labels the real operator
puts on its pods (so the controller's grouping of pods into replicas meets real labels):

* LeaderWorkerSet: ``spec.replicas`` groups of ``leaderWorkerTemplate.size`` pods, labelled
  ``leaderworkerset.sigs.k8s.io/{name,group-index,worker-index}``; the scale selector picks leaders;
* StormService / ModelServing: per object replica (role set / serving group) and role, ``replicas``
  pods labelled as AIBrix / Kthena label them;
* DynamoGraphDeploymentScalingAdapter: ``spec.replicas`` pods labelled with the graph and component;
* any other kind with a scale subresource: ``spec.replicas`` pods labelled with their index.

Fewer replicas remove the highest indices, as those operators do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OWNER = "kube-fake/owner"  # the fake's mark on the pods it runs for a custom object
INDEX = "kube-fake/index"
DEFAULT_CONTAINER = {"name": "engine", "image": "engine:fake"}


@dataclass(frozen=True)
class CustomKind:
    group: str
    version: str
    plural: str
    kind: str
    spec_replicas: str | None  # ".spec.replicas" or None without a scale subresource
    status_replicas: str | None
    selector: str | None
    schema: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.group}/{self.version}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def crd_kinds(crd: dict[str, Any]) -> list[CustomKind]:
    spec = crd["spec"]
    out = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        scale = (version.get("subresources") or {}).get("scale") or {}
        out.append(
            CustomKind(
                spec["group"],
                version["name"],
                spec["names"]["plural"],
                spec["names"]["kind"],
                scale.get("specReplicasPath"),
                scale.get("statusReplicasPath"),
                scale.get("labelSelectorPath"),
                (version.get("schema") or {}).get("openAPIV3Schema") or {},
            )
        )
    return out


def get_path(obj: Any, path: str | None, default: Any = None) -> Any:
    """The value at a CRD JSON path such as ``.status.hpaPodSelector``."""
    if not path:
        return default
    node = obj
    for part in path.strip(".").split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    node = obj
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def as_custom_scale(kind: CustomKind, obj: dict[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1`` Scale of a custom object, read at its CRD's paths."""
    meta = obj.get("metadata", {})
    status: dict[str, Any] = {"replicas": int(get_path(obj, kind.status_replicas, 0) or 0)}
    selector = get_path(obj, kind.selector)
    if selector:
        status["selector"] = selector
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion", "uid") if k in meta},
        "spec": {"replicas": int(get_path(obj, kind.spec_replicas, 0) or 0)},
        "status": status,
    }


def owner_of(kind: CustomKind, name: str) -> str:
    return f"{kind.kind.lower()}.{name}"[:63]


def _pod_spec(template: Any) -> dict[str, Any]:
    spec = (template or {}).get("spec") if isinstance(template, dict) else None
    if isinstance(spec, dict) and spec.get("containers"):
        return dict(spec)
    return {"containers": [dict(DEFAULT_CONTAINER)]}


Pod = tuple[str, dict[str, str], dict[str, Any]]  # name, labels, spec


def desired_pods(kind: CustomKind, obj: dict[str, Any]) -> tuple[list[Pod], str]:
    """The pods the operator would run for ``obj`` and the selector its scale status names (module doc)."""
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    owner = {OWNER: owner_of(kind, name)}
    replicas = int(spec.get("replicas", 1) or 0)
    pods: list[Pod] = []
    if kind.kind == "LeaderWorkerSet":
        lws = spec.get("leaderWorkerTemplate") or {}
        size = int(lws.get("size", 1) or 1)
        base = {"leaderworkerset.sigs.k8s.io/name": name}
        for g in range(replicas):
            for w in range(size):
                labels = {**owner, **base, "leaderworkerset.sigs.k8s.io/group-index": str(g),
                          "leaderworkerset.sigs.k8s.io/worker-index": str(w)}  # fmt: skip
                template = lws.get("leaderTemplate") if w == 0 and lws.get("leaderTemplate") else lws["workerTemplate"]
                pods.append((f"{name}-{g}" if w == 0 else f"{name}-{g}-{w}", labels, _pod_spec(template)))
        return pods, f"leaderworkerset.sigs.k8s.io/name={name},leaderworkerset.sigs.k8s.io/worker-index=0"
    if kind.kind in ("StormService", "ModelServing"):
        aibrix = kind.kind == "StormService"
        roles = ((spec.get("template") or {}).get("spec") or {}).get("roles") if aibrix else None
        roles = roles if aibrix else (spec.get("template") or {}).get("roles")
        for g in range(replicas):
            for role in roles or []:
                for i in range(int(role.get("replicas", 1) or 0)):
                    if aibrix:
                        labels = {"storm-service-name": name, "role-name": role["name"], "roleset-name": f"{name}-{g}",
                                  "stormservice.orchestration.aibrix.ai/role-replica-index": str(i)}  # fmt: skip
                        template = role.get("template")
                    else:
                        labels = {"modelserving.volcano.sh/name": name, "modelserving.volcano.sh/role": role["name"],
                                  "modelserving.volcano.sh/group-name": f"{name}-{g}",
                                  "modelserving.volcano.sh/role-id": str(i)}  # fmt: skip
                        template = role.get("entryTemplate")
                    pods.append((f"{name}-{g}-{role['name']}-{i}", {**owner, **labels}, _pod_spec(template)))
        label = "storm-service-name" if aibrix else "modelserving.volcano.sh/name"
        return pods, f"{label}={name}"
    if kind.kind == "DynamoGraphDeploymentScalingAdapter":
        ref = spec.get("dgdRef") or {}
        labels = {"nvidia.com/dynamo-graph-deployment-name": str(ref.get("name", "")),
                  "nvidia.com/dynamo-component": str(ref.get("componentName", ""))}  # fmt: skip
        for i in range(replicas):
            pods.append((f"{name}-{i}", {**owner, **labels, INDEX: str(i)}, _pod_spec(None)))
        return pods, ",".join(f"{k}={v}" for k, v in labels.items())
    for i in range(replicas):
        pods.append((f"{name}-{i}", {**owner, INDEX: str(i)}, _pod_spec(None)))
    return pods, f"{OWNER}={owner_of(kind, name)}"


def custom_status(kind: CustomKind, obj: dict[str, Any], selector: str, ready: int) -> dict[str, Any]:
    """``obj``'s status as its operator keeps it: replicas and selector at the CRD's scale paths."""
    status = dict(obj.get("status") or {})
    full: dict[str, Any] = {"status": status}
    replicas = int((obj.get("spec") or {}).get("replicas", 1) or 0)
    if kind.status_replicas:
        set_path(full, kind.status_replicas, replicas)
    if kind.selector:
        set_path(full, kind.selector, selector)
    if kind.kind in ("LeaderWorkerSet", "StormService"):
        status["readyReplicas"] = ready
    return status
