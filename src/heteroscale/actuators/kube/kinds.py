"""The workload kinds the scale and metrics modes drive, and where each keeps its replicas.

A *scale kind* has a ``scale`` subresource (its CRD's ``subresources.scale``): its replicas are read and
written through ``…/<plural>/<name>/scale`` (``spec.replicas``, ``status.replicas``,
``status.selector``). A *role shim* keeps one replica count per role inside one object (AIBrix
StormService, Kthena ModelServing): the role's ``replicas`` is read from the object and written with a
JSON patch whose ``test`` ops carry the values read, so a concurrent change fails the write instead of
being overwritten.

One *instance* is one replica of its target. Pods are grouped into replicas by the kind's replica-index
labels (an LWS replica is a leader and its workers; a Grove scaling-group replica several cliques), or
one pod per replica where the kind has none.

Only a ReplicaSet (under a Deployment) honours ``controller.kubernetes.io/pod-deletion-cost``; every
other kind chooses its own victims on scale-in (``removes``).
"""

from __future__ import annotations

from dataclasses import dataclass

LWS_GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
GROVE_PCSG_REPLICA = "grove.io/podcliquescalinggroup-replica-index"
AIBRIX_SERVICE = "storm-service-name"
AIBRIX_ROLE = "role-name"
AIBRIX_ROLESET = "roleset-name"
AIBRIX_ROLE_REPLICA = "stormservice.orchestration.aibrix.ai/role-replica-index"
KTHENA_NAME = "modelserving.volcano.sh/name"
KTHENA_ROLE = "modelserving.volcano.sh/role"
KTHENA_GROUP = "modelserving.volcano.sh/group-name"
KTHENA_ROLE_ID = "modelserving.volcano.sh/role-id"


@dataclass(frozen=True, slots=True)
class Kind:
    """Where one kind lives in the API and how its replicas behave."""

    api_version: str  # group/version as users write it in a scaleTargetRef
    kind: str
    plural: str
    replica_labels: tuple[str, ...] = ()  # pod labels naming the replica a pod belongs to; () = one pod each
    deletion_cost: bool = False  # its controller honours controller.kubernetes.io/pod-deletion-cost
    removes: str = "the replica its controller chooses"  # which replica goes on scale-in
    roles_path: tuple[str, ...] = ()  # a role shim: the path of the roles list inside the object
    role_selector: tuple[str, str] = ("", "")  # a role shim: (object-name label, role-name label) on pods

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def shim(self) -> bool:
        return bool(self.roles_path)


_SCALE_KINDS = (
    Kind("apps/v1", "Deployment", "deployments", deletion_cost=True, removes="the pod with the lowest deletion cost"),
    Kind("apps/v1", "ReplicaSet", "replicasets", deletion_cost=True, removes="the pod with the lowest deletion cost"),
    Kind("apps/v1", "StatefulSet", "statefulsets", removes="the highest ordinal"),
    Kind(
        "leaderworkerset.x-k8s.io/v1",
        "LeaderWorkerSet",
        "leaderworkersets",
        replica_labels=(LWS_GROUP_INDEX,),
        removes="the highest group index",
    ),
    Kind(
        "disaggregatedset.x-k8s.io/v1",
        "DisaggregatedSetRoleScaler",
        "disaggregatedsetrolescalers",
        replica_labels=(LWS_GROUP_INDEX,),
        removes="the highest group index of the role's LeaderWorkerSet",
    ),
    Kind(
        "nvidia.com/v1beta1",
        "DynamoGraphDeploymentScalingAdapter",
        "dynamographdeploymentscalingadapters",
        replica_labels=(GROVE_PCSG_REPLICA, LWS_GROUP_INDEX),
        removes="the replica the Dynamo operator (Grove or LWS underneath) chooses: the highest index",
    ),
    Kind(
        "nvidia.com/v1alpha1",
        "DynamoGraphDeploymentScalingAdapter",
        "dynamographdeploymentscalingadapters",
        replica_labels=(GROVE_PCSG_REPLICA, LWS_GROUP_INDEX),
        removes="the replica the Dynamo operator (Grove or LWS underneath) chooses: the highest index",
    ),
    Kind("grove.io/v1alpha1", "PodClique", "podcliques", removes="the newest pod"),
    Kind(
        "grove.io/v1alpha1",
        "PodCliqueScalingGroup",
        "podcliquescalinggroups",
        replica_labels=(GROVE_PCSG_REPLICA,),
        removes="the highest replica index",
    ),
)
_SHIMS = (
    Kind(
        "orchestration.aibrix.ai/v1alpha1",
        "StormService",
        "stormservices",
        replica_labels=(AIBRIX_ROLESET, AIBRIX_ROLE_REPLICA),
        removes="the role replica the StormService controller chooses: the highest index",
        roles_path=("spec", "template", "spec", "roles"),
        role_selector=(AIBRIX_SERVICE, AIBRIX_ROLE),
    ),
    Kind(
        "workload.serving.volcano.sh/v1alpha1",
        "ModelServing",
        "modelservings",
        replica_labels=(KTHENA_GROUP, KTHENA_ROLE_ID),
        removes="the role replica the ModelServing controller chooses: the highest role id",
        roles_path=("spec", "template", "roles"),
        role_selector=(KTHENA_NAME, KTHENA_ROLE),
    ),
)
KINDS: dict[tuple[str, str], Kind] = {(k.api_version, k.kind): k for k in (*_SCALE_KINDS, *_SHIMS)}


def kind_of(api_version: str, kind: str) -> Kind | None:
    return KINDS.get((api_version, kind))


def known_kinds() -> str:
    """The kinds we drive, for an error message."""
    return ", ".join(f"{k.kind} ({k.api_version})" for k in KINDS.values())
