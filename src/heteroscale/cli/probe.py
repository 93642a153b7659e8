"""``heteroscale controller --check --probe``: what the controller would read and scale, read once.

``--check`` alone validates the file offline. With ``--probe`` it then asks the cluster and Prometheus,
per service and role: the targets found (owned mode: the Deployments labelled
``app.kubernetes.io/managed-by=heteroscale`` for the service and role; scale and metrics modes: each of
the role's ``scale_targets`` read as the controller reads it, its ``/scale`` replicas and pod selector,
or a role shim's role replicas), the pods found (owned: by our labels; scale and metrics: by each
target's selector), and the number of series behind each metric query (engine gauges and counters,
DCGM series before and after the join to ``kube_pod_labels``, the pods in ``kube_pod_labels``), then
the observation the controller would make. ``--json`` prints the same as one JSON object.

Each actuation mode has its :class:`TargetFinder` in ``FINDERS`` (scale and metrics share one: the
metrics mode reads its targets exactly as the scale mode does). A target that cannot be read (not
found, no such role) is a problem of its role, not an error of the whole probe.

Exit codes (from ``cli.live``): 0 every role has pods and engine series; 1 a role has no pod or no
series (the report says which); 2 the config is invalid or the cluster or Prometheus cannot be reached.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from heteroscale.actuators.kube.api import KubeApi, KubernetesSettings, new_api_client
from heteroscale.actuators.kube.naming import L_ROLE, L_SERVICE, MANAGED_BY, MANAGER
from heteroscale.actuators.kube.targets import ScaleTarget, target_instances
from heteroscale.actuators.scale import ScaleTargetsCluster
from heteroscale.clock import WallClock
from heteroscale.config.actuation import build_targets
from heteroscale.config.catalog import load_catalog
from heteroscale.config.controller import ControllerConfig, build_service, prometheus_credentials, relative_path
from heteroscale.config.source import Document
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import Lifecycle
from heteroscale.errors import PermanentActuationError
from heteroscale.metrics.auth import redact_url
from heteroscale.metrics.prometheus import PrometheusSource
from heteroscale.metrics.promql import DCGM_GPU_UTIL, MetricMapping, Queries

MAX_NAMES = 20  # names listed per role (the counts are always whole)


@dataclass(frozen=True, slots=True)
class SeriesFound:
    what: str
    promql: str
    series: int


@dataclass(slots=True)
class RoleProbe:
    role: str
    targets: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    series: list[SeriesFound] = field(default_factory=list)


@dataclass(slots=True)
class ServiceProbe:
    service: str
    roles: list[RoleProbe]
    observation: dict[str, Any]
    problems: list[str]


class TargetFinder(Protocol):
    """Where an actuation mode finds what it scales, and the pods behind it."""

    mode: str

    def targets(self, service: str, role: Role) -> list[dict[str, Any]]: ...

    def pods(self, service: str, role: Role) -> list[dict[str, Any]]: ...


def _pod_row(pod: Mapping[str, Any]) -> dict[str, Any]:
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return {"name": pod["metadata"]["name"], "phase": status.get("phase"), "ready": ready}


class OwnedTargets:
    """The owned mode's Deployments and pods, found by our labels (one list of each per probe)."""

    mode = "owned"

    def __init__(self, api: KubeApi, namespace: str) -> None:
        ours = f"{MANAGED_BY}={MANAGER}"
        self._deployments = api.list_all(
            f"list deployments in {namespace}",
            api.apps.list_namespaced_deployment,
            namespace,
            label_selector=ours,
            keep=lambda item: item,
        )
        self._pods = api.list_all(
            f"list pods in {namespace}",
            api.core.list_namespaced_pod,
            namespace,
            label_selector=ours,
            keep=lambda item: item,
        )

    @staticmethod
    def _ours(labels: Mapping[str, str], service: str, role: Role) -> bool:
        return labels.get(L_SERVICE) == service and labels.get(L_ROLE) == role.value

    def targets(self, service: str, role: Role) -> list[dict[str, Any]]:
        out = []
        for d in self._deployments:
            labels = ((d.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
            if self._ours(labels, service, role):
                status = d.get("status") or {}
                out.append(
                    {
                        "kind": "Deployment",
                        "name": d["metadata"]["name"],
                        "replicas": (d.get("spec") or {}).get("replicas", 0),
                        "ready": status.get("readyReplicas", 0),
                    }
                )
        return sorted(out, key=lambda t: str(t["name"]))

    def pods(self, service: str, role: Role) -> list[dict[str, Any]]:
        out = []
        for p in self._pods:
            if self._ours(p["metadata"].get("labels") or {}, service, role):
                out.append(_pod_row(p))
        return sorted(out, key=lambda p: str(p["name"]))


class ScaleTargets:
    """The scale and metrics modes' targets, each read once as the controller reads it (``/scale``, or a
    role shim's object), and the pods its selector finds."""

    mode = "scale"

    def __init__(self, api: KubeApi, targets: Sequence[ScaleTarget], now_s: float) -> None:
        cluster = ScaleTargetsCluster(api.api, api.settings, targets, api.clock)
        self._rows: dict[tuple[str, Role], list[dict[str, Any]]] = {}
        self._pods: dict[tuple[str, Role], list[dict[str, Any]]] = {}
        for t in sorted(targets, key=lambda t: t.id):
            row, pods = self._read(cluster, t, now_s)
            self._rows.setdefault((t.service, t.role), []).append(row)
            self._pods.setdefault((t.service, t.role), []).extend(pods)

    @staticmethod
    def _read(
        cluster: ScaleTargetsCluster, t: ScaleTarget, now_s: float
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        row: dict[str, Any] = {"kind": t.kind.kind, "name": t.name, "role_name": t.role_name}
        try:
            read = cluster.read_target(t)
        except PermanentActuationError as exc:  # not found, or no such role: this role's problem, not the probe's
            return {**row, "replicas": 0, "ready": 0, "selector": "", "problem": str(exc)}, []
        pods: list[dict[str, Any]] = []
        if read.selector:
            pods = cluster.client.list_all(
                f"list pods of {t.id}", cluster.core.list_namespaced_pod, cluster.settings.namespace,
                label_selector=read.selector, keep=lambda item: item,
            )  # fmt: skip
        read = dataclasses.replace(read, pods=tuple(pods))
        instances = target_instances(read, now_s, cluster.settings.start_timeout_s)
        row.update(
            replicas=read.replicas * max(1, read.groups),
            ready=sum(1 for i in instances if i.lifecycle is Lifecycle.READY),
            selector=read.selector,
        )
        if not read.selector:
            row["problem"] = f"{t.id} has no pod selector in its status (not reconciled by its operator yet?)"
        return row, sorted((_pod_row(p) for p in pods), key=lambda p: str(p["name"]))

    def targets(self, service: str, role: Role) -> list[dict[str, Any]]:
        return self._rows.get((service, role), [])

    def pods(self, service: str, role: Role) -> list[dict[str, Any]]:
        return self._pods.get((service, role), [])


def scale_targets_of(config: ControllerConfig, doc: Document) -> list[ScaleTarget]:
    """Every service's ``scale_targets``, built as the controller builds them (cli/wiring.py)."""
    catalog = load_catalog()
    out: list[ScaleTarget] = []
    for i, service in enumerate(config.services):
        loc = ("services", i)
        spec, _ = build_service(service, doc, loc, catalog)
        out.extend(build_targets(spec.name, service.scale_targets or [], spec, doc, (*loc, "scale_targets"), catalog))
    return out


def _scale_finder(api: KubeApi, config: ControllerConfig, doc: Document) -> TargetFinder:
    return ScaleTargets(api, scale_targets_of(config, doc), api.clock.now_s())


def _owned_finder(api: KubeApi, config: ControllerConfig, doc: Document) -> TargetFinder:
    return OwnedTargets(api, api.settings.namespace)


# actuation mode → how to build its finder
FINDERS: dict[str, Callable[[KubeApi, ControllerConfig, Document], TargetFinder]] = {
    "owned": _owned_finder,
    "scale": _scale_finder,
    "metrics": _scale_finder,  # the metrics mode reads its targets as the scale mode does
}


def _selectors(q: Queries, role: Role) -> list[tuple[str, str]]:
    """(what, PromQL whose series are counted) for every metric the role is read from."""
    names = q.names
    out = [("running requests (gauge)", q.engine_metric(names.running, role))]
    if role is Role.PREFILL:
        out.append(("prompt tokens (counter)", q.engine_metric(names.prompt_tokens, role)))
        out.append(("prefix-cache hits (counter)", q.engine_metric(names.cached_prompt_tokens, role)))
        if names.legacy_cached_prompt_tokens is not None:
            legacy = q.engine_metric(names.legacy_cached_prompt_tokens, role)
            out.append(("prefix-cache hits, pre-v0.9.1 name", legacy))
    elif names.step_generation_tps is not None:
        out.append(("generated tokens/s (per-step gauge)", q.engine_metric(names.step_generation_tps, role)))
    else:
        out.append(("generated tokens (counter)", q.engine_metric(names.generation_tokens, role)))
    out.append(("KV-cache usage (gauge)", q.engine_metric(names.kv_usage[0], role)))
    dcgm = q.gpu_metric(DCGM_GPU_UTIL, role)
    out.append(("DCGM GPU util, all matching GPUs", dcgm))
    pod_labels = q.pod_labels(role)
    if pod_labels is not None:
        out.append(("pods in kube_pod_labels", pod_labels))
        out.append(("DCGM GPU util, the role's GPUs (joined)", q.gpu_series(dcgm, role)))
    return out


def _observation(source: PrometheusSource, service: str, now_s: float, window_s: float) -> dict[str, Any]:
    obs = source.observe(service, now_s, window_s)

    def clean(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else round(value, 3)

    out: dict[str, Any] = {}
    for role, signals in ((Role.PREFILL, obs.prefill), (Role.DECODE, obs.decode)):
        out[role.value] = {
            "instances_reporting": signals.instances_ready,
            "tps": clean(signals.tps),
            "gpu_util": clean(signals.gpu_util),
            "kv_usage": clean(signals.kv_usage),
        }
    out["ttft_p90_s"] = clean(obs.ttft_p90_s)
    out["tbt_p90_s"] = clean(obs.tbt_p90_s)
    out["missing"] = list(obs.missing)
    return out


def probe(config: ControllerConfig, doc: Document, mode: str = "owned") -> list[ServiceProbe]:
    """The probe of every service (see the module doc); cluster and Prometheus errors raise."""
    clock = WallClock()
    k, p = config.kubernetes, config.prometheus
    settings = KubernetesSettings(
        namespace=k.namespace,
        request_timeout_s=k.request_timeout_s,
        max_attempts=k.max_attempts,
        backoff_s=k.backoff_s,
        max_backoff_s=k.max_backoff_s,
        retry_budget_s=k.retry_budget_s,
        list_page_size=k.list_page_size,
    )
    kubeconfig = None if k.kubeconfig is None else relative_path(k.kubeconfig, doc)
    api = KubeApi(new_api_client(kubeconfig, k.context, k.in_cluster), settings, clock)
    mappings: dict[str, MetricMapping] = {s.name: s.metrics.to_mapping() for s in config.services if s.metrics}
    source = PrometheusSource(
        redact_url(p.url),
        p.mapping.to_mapping(),
        timeout_s=p.timeout_s,
        staleness_s=p.staleness_s,
        clock=clock,
        budget_s=max(p.observation_budget_s, 30.0),  # a probe reads more than one cycle does
        service_mappings=mappings,
        credentials=prometheus_credentials(p, doc),
    )
    try:
        finder = FINDERS[mode](api, config, doc)
        now_s = clock.now_s()
        window_s = config.controller.window_s
        out = []
        for service in config.services:
            q = Queries(source.mapping_for(service.name), service.name, window_s, p.staleness_s)
            roles: list[RoleProbe] = []
            problems: list[str] = []
            for role in Role:
                found = RoleProbe(role.value, finder.targets(service.name, role), finder.pods(service.name, role))
                for what, promql in _selectors(q, role):
                    count = source.query(f"count({promql})", now_s, f"{service.name} {role.value} {what}")
                    found.series.append(SeriesFound(what, promql, 0 if count is None else int(count)))
                problems.extend(f"{role.value}: {t['problem']}" for t in found.targets if t.get("problem"))
                if not found.pods:
                    problems.append(f"{role.value}: no pod found")
                if found.series[0].series == 0:
                    problems.append(f"{role.value}: no series for {found.series[0].promql}")
                roles.append(found)
            observation = _observation(source, service.name, now_s, window_s)
            out.append(ServiceProbe(service.name, roles, observation, problems))
        return out
    finally:
        source.close()
        api.api.close()


def as_json(probes: list[ServiceProbe], mode: str) -> str:
    return json.dumps({"mode": mode, "services": [asdict(p) for p in probes]}, indent=2, sort_keys=False)


def _target_text(t: Mapping[str, Any]) -> str:
    """``Kind name[/role] (ready/replicas ready[, selector …])``; the owned mode's rows have no selector."""
    name = t["name"] if not t.get("role_name") else f"{t['name']}/{t['role_name']}"
    selector = f", selector {t['selector']}" if t.get("selector") else ""
    return f"{t['kind']} {name} ({t['ready']}/{t['replicas']} ready{selector})"


def as_text(probes: list[ServiceProbe], mode: str) -> str:
    lines: list[str] = []
    for sp in probes:
        lines.append(f"service {sp.service}")
        for rp in sp.roles:
            targets = ", ".join(_target_text(t) for t in rp.targets)
            lines.append(f"  {rp.role}: targets ({mode}): {len(rp.targets)}{': ' + targets if targets else ''}")
            ready = sum(1 for pod in rp.pods if pod["ready"])
            names = ", ".join(str(pod["name"]) for pod in rp.pods[:MAX_NAMES])
            more = f", … {len(rp.pods) - MAX_NAMES} more" if len(rp.pods) > MAX_NAMES else ""
            lines.append(f"    pods: {len(rp.pods)} ({ready} ready){': ' + names + more if names else ''}")
            for s in rp.series:
                lines.append(f"    series: {s.series:>5}  {s.what}: {s.promql}")
        for role in (Role.PREFILL.value, Role.DECODE.value):
            o = sp.observation[role]
            lines.append(
                f"  observation {role}: {o['instances_reporting']} reporting, tps {o['tps']}, "
                f"GPU util {o['gpu_util']}, KV usage {o['kv_usage']}"
            )
        for note in sp.observation["missing"]:
            lines.append(f"    missing: {note}")
        for problem in sp.problems:
            lines.append(f"  problem: {problem}")
    return "\n".join(lines)


def run_probe(config: ControllerConfig, doc: Document, *, as_json_output: bool) -> tuple[str, int]:
    """The report and the exit code (module doc); a HeteroScaleError passes through for the caller."""
    mode = config.actuation
    probes = probe(config, doc, mode)
    text = as_json(probes, mode) if as_json_output else as_text(probes, mode)
    return text, 1 if any(p.problems for p in probes) else 0
