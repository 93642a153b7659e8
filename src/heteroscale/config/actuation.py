"""How a live service is actuated: ``actuation`` and its ``scale_targets`` (``kind: controller`` files).

::

    services:
      - name: chat
        actuation: scale          # owned (default: we create the Deployments) | scale | metrics
        scale_targets:            # scale and metrics modes: the workloads the user already runs
          - role: prefill         # prefill | decode
            sku: h100-sxm         # one of the role's shapes (roles.<role>.shapes)
            tp: 4
            dg: dg-a              # optional: its deployment group (default dg-<domain>)
            domain: rack-1        # optional: its network domain; targets without one share one domain
            scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: chat-prefill}
            roleName: prefill     # role shims only (StormService, ModelServing): the role in the object

``owned`` creates and scales our own Deployments (``workload`` says what they run). ``scale`` drives
each target's replicas (its ``scale`` subresource, or a role shim's JSON patch; actuators/scale.py);
``metrics`` publishes the desired replicas per target on ``/metrics`` for KEDA or an HPA and writes
nothing (actuators/metrics.py). One controller runs one mode: every service names the same.

The scale targets are ``scale_targets``, not ``targets``: ``targets`` already holds the policy's pinned
targets (per-instance TPS and the rest), which a scaled service needs as much as an owned one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from heteroscale.actuators.kube.kinds import kind_of, known_kinds
from heteroscale.actuators.kube.targets import ScaleTarget
from heteroscale.config.catalog import Catalog
from heteroscale.config.source import Document, Loc, StrictModel
from heteroscale.domain.hardware import Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.errors import ConfigError

ActuationMode = Literal["owned", "scale", "metrics"]
OBJECT_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ScaleTargetRefConfig(StrictModel):
    apiVersion: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    name: str = Field(pattern=OBJECT_NAME, max_length=253)

    @model_validator(mode="after")
    def _known(self) -> ScaleTargetRefConfig:
        if kind_of(self.apiVersion, self.kind) is None:
            raise ValueError(f"{self.kind} ({self.apiVersion}) is not a kind we can scale; known: {known_kinds()}")
        return self


class ScaleTargetConfig(StrictModel):
    role: Literal["prefill", "decode"]
    sku: str = Field(min_length=1)
    tp: int = Field(ge=1, le=64)
    dg: str | None = Field(default=None, min_length=1, max_length=63)
    domain: str | None = Field(default=None, min_length=1, max_length=63)
    scaleTargetRef: ScaleTargetRefConfig
    roleName: str | None = Field(default=None, min_length=1, max_length=63)

    @model_validator(mode="after")
    def _role_name(self) -> ScaleTargetConfig:
        ref = self.scaleTargetRef
        kind = kind_of(ref.apiVersion, ref.kind)
        if kind is not None and kind.shim and self.roleName is None:
            raise ValueError(f"a {ref.kind} keeps its roles inside one object: name the role with roleName")
        if kind is not None and not kind.shim and self.roleName is not None:
            raise ValueError(f"roleName is only for role shims (StormService, ModelServing), not a {ref.kind}")
        return self


def check_actuation(mode: str, targets: list[ScaleTargetConfig] | None, has_workload: bool) -> str | None:
    """Why a service's ``actuation``, ``scale_targets`` and ``workload`` do not fit together, or None."""
    if mode == "owned":
        if targets:
            return "scale_targets are for actuation: scale or metrics (owned creates its own workloads)"
        if not has_workload:
            return "workload is required for actuation: owned (it says what the pods we create run)"
        return None
    if not targets:
        return f"actuation: {mode} needs scale_targets (the workloads to drive)"
    if has_workload:
        return f"workload is for actuation: owned; with {mode} the stack's own objects say what runs"
    return None


def build_targets(
    service: str, targets: list[ScaleTargetConfig], spec: ServiceSpec, doc: Document, loc: Loc, catalog: Catalog
) -> tuple[ScaleTarget, ...]:
    """The service's targets, each shape checked against the role's allowed shapes."""
    out: list[ScaleTarget] = []
    seen: set[str] = set()
    for i, tc in enumerate(targets):
        at = (*loc, i)
        try:
            sku = catalog.resolve_sku(tc.sku)
        except ConfigError as exc:
            raise doc.error((*at, "sku"), str(exc)) from exc
        role = Role(tc.role)
        shapes = spec.prefill_shapes if role is Role.PREFILL else spec.decode_shapes
        if not any(s.sku == sku and s.tp == tc.tp for s in shapes):
            allowed = ", ".join(f"{s.sku} tp{s.tp}" for s in shapes)
            raise doc.error(
                at, f"{sku} tp{tc.tp} is not among roles.{role.value}.shapes ({allowed}), so it could never be chosen"
            )
        ref = tc.scaleTargetRef
        kind = kind_of(ref.apiVersion, ref.kind)
        if kind is None:  # the model validator refused it already
            raise doc.error((*at, "scaleTargetRef"), f"unknown kind {ref.kind}")
        target = ScaleTarget(service, role, sku, tc.tp, kind, ref.name, tc.dg, tc.domain, tc.roleName)
        if target.id in seen:
            raise doc.error(at, f"{target.id} is named twice")
        seen.add(target.id)
        out.append(target)
    return tuple(out)
