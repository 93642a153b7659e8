"""Objects the user's own tooling makes, through the Kubernetes API fake: created as ``kubectl apply``
would, and read back by kind (the ``scale`` actuation tests)."""

from __future__ import annotations

from typing import Any

import kubernetes

from heteroscale.actuators.kube.kinds import kind_of
from tests.support.kube_fake import KubeFakeServer
from tests.support.live_env import NAMESPACE


def api(kube: KubeFakeServer) -> Any:
    configuration = kubernetes.client.Configuration()
    configuration.host = kube.url
    configuration.retries = False
    return kubernetes.client.ApiClient(configuration)


def create(kube: KubeFakeServer, obj: dict[str, Any]) -> None:
    """Create ``obj`` through the API, as the user's own tooling would."""
    client = api(kube)
    try:
        if obj["apiVersion"] == "apps/v1":
            kubernetes.client.AppsV1Api(client).create_namespaced_deployment(NAMESPACE, obj)
        else:
            group, version = obj["apiVersion"].split("/")
            found = kind_of(obj["apiVersion"], obj["kind"])
            assert found is not None, obj["kind"]
            plural = found.plural
            kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
                group, version, NAMESPACE, plural, obj
            )
    finally:
        client.close()


def objects(kube: KubeFakeServer, kind: str) -> dict[str, dict[str, Any]]:
    def read(f: Any) -> dict[str, dict[str, Any]]:
        return {
            name: obj.raw
            for (_, ns, name), obj in list(f.objects.items())
            if ns == NAMESPACE and not obj.deleted and obj.raw.get("kind") == kind
        }

    return kube.call(read)  # type: ignore[no-any-return]


def spec_replicas(kube: KubeFakeServer, kind: str) -> dict[str, int]:
    return {name: int(obj["spec"]["replicas"]) for name, obj in objects(kube, kind).items()}
