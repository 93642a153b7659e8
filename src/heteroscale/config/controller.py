"""The live controller's configuration: a ``kind: controller`` file (validated with pydantic, one-line
errors naming file, field and line) says where Prometheus and Kubernetes are, how series map to
services and roles, and which services to manage — with the same service fields as a scenario, less
``load`` (a live cluster has real load) and with pinned ``targets`` (it has no simulator pressure test)
plus how it is actuated (:mod:`.actuation`: ``owned`` with the ``workload`` its pods run, or ``scale``
/ ``metrics`` with the ``scale_targets`` users already run)::

    kind: controller
    prometheus: {url: https://prometheus:9090, timeout_s: 2, staleness_s: 60,
                 bearer_token_file: /var/run/secrets/heteroscale/prometheus/token,   # or basic_auth
                 tls: {ca_file: /var/run/secrets/heteroscale/prometheus/ca.crt},
                 mapping: {preset: llm-d, spelling: both}}         # or engine / *_selector / gpu_join
    kubernetes: {in_cluster: true, namespace: llm,          # or kubeconfig: ~/.kube/config, context: …
                 start_timeout_s: 900, gpu_accounting: namespace,
                 tolerations: [{key: nvidia.com/gpu, operator: Exists}]}
    controller: {interval_s: 30, window_s: 60, journal: /var/lib/heteroscale/journal.jsonl}
    leader_election: {enabled: true, lease_name: heteroscale-controller}
    http: {address: 0.0.0.0, port: 8080, workers: 4, max_connections: 64, timeout_s: 5}
    services:
      - name: chat
        model: llama-3.1-70b
        roles: {prefill: {shapes: [{sku: h800, tp: 4}]}, decode: {shapes: [{sku: h20, tp: 4}]}}
        pd_ratio: 1.0
        slo: {ttft_s: 2.0, tbt_s: 0.1}
        policy: {name: heteroscale, prefill: 2, decode: 2}
        targets: {…}                                          # config.schema.TargetsConfig
        workload: {image: vllm/vllm-openai:v0.10.0, prefill_args: [...], decode_args: [...],
                   env: {HF_HOME: /tmp/hf, HF_TOKEN: {secret: hf-token, key: token}},
                   env_from: [{config_map: engine-settings}],
                   security: {run_as_user: 1000, read_only_root_filesystem: false}}

A service name is carried verbatim in the pods' ``heteroscale.io/service`` label, so it must be a valid
Kubernetes label value (at most 63 characters: letters, digits, ``-``, ``_``, ``.``, beginning and
ending with a letter or digit). ``gpu_accounting: namespace`` (the default) counts the GPUs our own pods
use; ``cluster`` counts every pod on the GPU nodes and needs the cluster-wide pod list permission of
deploy/kustomize/components/gpu-accounting. A pod that is not Ready within ``start_timeout_s`` is stuck:
it stops counting as capacity and is replaced; so is a pod the scheduler finds no node for, at once
when its domain has no schedulable room, else after ``unschedulable_grace_s``.

``kubernetes``: ``in_cluster: true`` (the pod's service account), or ``kubeconfig`` (a path relative to
this file; unset: ``$KUBECONFIG`` or ``~/.kube/config``) and ``context`` (unset: the current one).
``--kubeconfig`` / ``--context`` / ``--namespace`` and ``HETEROSCALE_*`` override them
(:mod:`heteroscale.config.access`). Complete examples: ``deploy/examples/controller.yaml`` (in the
cluster) and ``deploy/examples/controller-local.yaml`` (from a workstation).

With leader election on, the time-outs must fit the lease (:func:`check_lease_budgets`), so that a cycle
never spends longer than the renew deadline between two fence checks and a write that passed the fence
lands before a successor can take the Lease:

* ``prometheus.budget_s`` (default ``4 × timeout_s``) ≤ ``leader_election.renew_deadline_s`` — one
  service's observation;
* ``kubernetes.retry_budget_s`` ≤ ``renew_deadline_s`` — one API call with its retries (a renewal too);
* ``kubernetes.request_timeout_s`` ≤ ``lease_duration_s − renew_deadline_s`` — one write in flight;
* ``retry_period_s`` < ``renew_deadline_s`` / 2 — a failed renewal is retried before the deadline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from heteroscale.actuators.kube.naming import label_value_problem
from heteroscale.config.actuation import ActuationMode, ScaleTargetConfig, check_actuation
from heteroscale.config.build import resolve_spec, targets_from_config
from heteroscale.config.catalog import Catalog
from heteroscale.config.presets import MappingConfig, PodJoinConfig  # noqa: F401  (re-exported)
from heteroscale.config.schema import BudgetConfig, ServiceConfig, ServiceName, TargetsConfig
from heteroscale.config.source import Document, Loc, StrictModel, field_default, read_document
from heteroscale.config.workload import WorkloadConfig
from heteroscale.controller.bounded_http import HttpLimits
from heteroscale.domain.service import ServiceSpec
from heteroscale.metrics.auth import (
    CredentialError,
    Credentials,
    TlsFiles,
    read_secret,
    redact_url,
    split_userinfo,
    ssl_context,
)
from heteroscale.metrics.prometheus import url_problem
from heteroscale.policy.context import Targets
from heteroscale.policy.registry import TARGET_FREE_POLICIES


class BasicAuthConfig(StrictModel):
    username: str = Field(min_length=1)
    password_file: str = Field(min_length=1)  # read once at start-up


class TlsConfig(StrictModel):
    ca_file: str | None = Field(default=None, min_length=1)  # CA bundle that signed the server's certificate
    cert_file: str | None = Field(default=None, min_length=1)  # client certificate (mutual TLS)
    key_file: str | None = Field(default=None, min_length=1)
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pairs(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        if self.insecure_skip_verify and self.ca_file is not None:
            raise ValueError("insecure_skip_verify: true verifies nothing, so ca_file would be ignored; give one")
        return self


class PrometheusConfig(StrictModel):
    """Where Prometheus is and how to authenticate: ``bearer_token_file`` (read again every
    ``token_refresh_s`` and on a 401) or ``basic_auth`` or ``user:password@`` in the URL (moved into
    basic auth), and ``tls`` for an https:// URL. File paths are relative to the config file."""

    url: str = Field(min_length=1)
    timeout_s: float = Field(default=2.0, gt=0, le=120)
    staleness_s: float = Field(default=60.0, gt=0)
    budget_s: float | None = Field(default=None, gt=0)  # one observation; default 4 × timeout_s
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    bearer_token_file: str | None = Field(default=None, min_length=1)
    token_refresh_s: float = Field(default=60.0, gt=0)
    basic_auth: BasicAuthConfig | None = None
    tls: TlsConfig = Field(default_factory=TlsConfig)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # a ValueError's text replaces pydantic's, which would echo the value with its password
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {redact_url(value)!r})")
        return value

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> PrometheusConfig:
        _, username, _ = split_userinfo(self.url)
        given = [
            name
            for name, present in (
                ("user:password@ in url", username is not None),
                ("bearer_token_file", self.bearer_token_file is not None),
                ("basic_auth", self.basic_auth is not None),
            )
            if present
        ]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} exclude each other: give one way to authenticate")
        if self.tls != TlsConfig() and not self.url.startswith("https://"):
            raise ValueError("tls applies to an https:// url only")
        return self

    @field_validator("url")
    @classmethod
    def _url_parses(cls, url: str) -> str:
        problem = url_problem(url)  # checked as the HTTP client will read it
        if problem is not None:
            raise ValueError(problem)
        return url

    @property
    def observation_budget_s(self) -> float:
        return 4.0 * self.timeout_s if self.budget_s is None else self.budget_s


class NodeLabelsConfig(StrictModel):
    vdc: str | None = "heteroscale.io/vdc"
    physical_cluster: str | None = "heteroscale.io/physical-cluster"
    logical_cluster: str | None = "heteroscale.io/logical-cluster"
    s2: str | None = "heteroscale.io/s2"
    s1: str | None = "heteroscale.io/s1"
    s0: str | None = "heteroscale.io/s0"
    sku: str = Field(default="heteroscale.io/gpu-sku", min_length=1)
    gpu_resource: str = Field(default="nvidia.com/gpu", min_length=1)


class TolerationConfig(StrictModel):
    """A toleration put on every pod we create (Kubernetes' fields); a node tainted NoSchedule or
    NoExecute is used only when every such taint is tolerated."""

    key: str | None = Field(default=None, min_length=1)
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> TolerationConfig:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key needs operator: Exists")
        return self


class KubernetesConfig(StrictModel):
    in_cluster: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    labels: NodeLabelsConfig = Field(default_factory=NodeLabelsConfig)
    request_timeout_s: float = Field(default=5.0, gt=0, le=300)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=0.2, gt=0)
    max_backoff_s: float = Field(default=5.0, gt=0)
    retry_budget_s: float = Field(default=8.0, gt=0)
    gpu_accounting: Literal["cluster", "namespace"] = "namespace"
    start_timeout_s: float = Field(default=900.0, gt=0)
    unschedulable_grace_s: float = Field(default=60.0, ge=0)
    list_page_size: int = Field(default=500, ge=1, le=10000)
    tolerations: list[TolerationConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> KubernetesConfig:
        if self.in_cluster and (self.kubeconfig or self.context):
            raise ValueError("in_cluster: true takes no kubeconfig or context")
        return self


class LoopConfig(StrictModel):
    interval_s: float = Field(default=30.0, gt=0)
    window_s: float = Field(default=60.0, gt=0)
    journal: str = Field(default="journal.jsonl", min_length=1)
    memory_window_s: float = Field(default=600.0, ge=0)
    journal_max_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)  # then the file rotates
    journal_keep_files: int = Field(default=3, ge=0)  # rotated files kept
    journal_checkpoint_every: int = Field(default=100, ge=1)  # records between checkpoints
    journal_checkpoint_interval_s: float = Field(default=600.0, gt=0)  # or this much time


class LeaderElectionConfig(StrictModel):
    enabled: bool = True
    lease_name: str = Field(default="heteroscale-controller", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str | None = None
    identity: str | None = Field(default=None, min_length=1)
    lease_duration_s: float = Field(default=15.0, gt=0)
    renew_deadline_s: float = Field(default=10.0, gt=0)
    retry_period_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _deadline(self) -> LeaderElectionConfig:
        if self.renew_deadline_s >= self.lease_duration_s:
            raise ValueError(
                f"renew_deadline_s ({self.renew_deadline_s:g}) must be below "
                f"lease_duration_s ({self.lease_duration_s:g})"
            )
        if self.retry_period_s >= self.renew_deadline_s / 2:
            raise ValueError(
                f"retry_period_s ({self.retry_period_s:g}) must be below half of renew_deadline_s "
                f"({self.renew_deadline_s:g}), so a failed renewal is retried before the deadline"
            )
        return self


class HttpConfig(StrictModel):
    """The ``/metrics`` + ``/healthz`` server: ``workers`` threads answer; at most ``max_connections``
    connections wait for their request, each for at most ``timeout_s``."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=field_default(HttpLimits, "workers"), ge=1, le=64)
    max_connections: int = Field(default=field_default(HttpLimits, "max_connections"), ge=1, le=4096)
    timeout_s: float = Field(default=field_default(HttpLimits, "timeout_s"), gt=0, le=300)

    def limits(self) -> HttpLimits:
        return HttpLimits(workers=self.workers, max_connections=self.max_connections, timeout_s=self.timeout_s)


class LiveServiceConfig(ServiceConfig):
    """A scenario's service fields, less ``load``, plus how it is actuated (:mod:`.actuation`: the pods'
    ``workload`` when owned, the ``scale_targets`` otherwise) and an optional metric mapping."""

    load: None = None  # type: ignore[assignment]
    actuation: ActuationMode = "owned"
    scale_targets: list[ScaleTargetConfig] | None = Field(default=None, min_length=1)
    workload: WorkloadConfig | None = None
    metrics: MappingConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _targets_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("targets"), list):
            raise ValueError("targets holds the policy's pinned targets; list the workloads to scale as scale_targets")
        return data

    @model_validator(mode="after")
    def _actuation(self) -> LiveServiceConfig:
        problem = check_actuation(self.actuation, self.scale_targets, self.workload is not None)
        if problem is not None:
            raise ValueError(problem)
        return self

    @field_validator("name")
    @classmethod
    def _label_value(cls, name: str) -> str:
        # pods carry the name verbatim in a label, which metric selectors and the state compare against
        problem = label_value_problem(name)
        if problem is not None:
            raise ValueError(f"service name {name!r} {problem}")
        return name

    @model_validator(mode="before")
    @classmethod
    def _no_load(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("load") is not None:
            raise ValueError("load is for the simulator; a live controller observes the real load in Prometheus")
        return data


class ControllerConfig(StrictModel):
    """A ``kind: controller`` file."""

    kind: Literal["controller"]
    name: ServiceName = "heteroscale"
    description: str = ""
    prometheus: PrometheusConfig
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    controller: LoopConfig = Field(default_factory=LoopConfig)
    leader_election: LeaderElectionConfig = Field(default_factory=LeaderElectionConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    services: list[LiveServiceConfig] = Field(min_length=1)
    budget: BudgetConfig | None = None  # GPUs all services may hold together; cuts go by priority

    @model_validator(mode="after")
    def _one_mode(self) -> ControllerConfig:
        modes = sorted({s.actuation for s in self.services})
        if len(modes) > 1:
            # scale targets are virtual nodes of the scheduler's view: an owned service could be placed on one
            raise ValueError(f"services name several actuation modes ({', '.join(modes)}); one controller runs one")
        return self

    @property
    def actuation(self) -> str:
        return self.services[0].actuation


# --- building -------------------------------------------------------------------------------------


def load_controller_config(path: Path) -> tuple[ControllerConfig, Document]:
    doc = read_document(path)
    if doc.data.get("kind") != "controller":
        raise doc.error(("kind",), f"expected 'controller', got {doc.data.get('kind')!r}")
    config = doc.validate(ControllerConfig)
    check_lease_budgets(config, doc)
    return config, doc


def check_lease_budgets(config: ControllerConfig, doc: Document) -> None:
    """With leader election on, the time-outs must fit the lease (the rules in the module doc)."""
    le = config.leader_election
    if not le.enabled:
        return
    p, k = config.prometheus, config.kubernetes
    deadline = f"leader_election.renew_deadline_s ({le.renew_deadline_s:g} s)"
    if p.observation_budget_s > le.renew_deadline_s:
        field = "budget_s" if p.budget_s is not None else "timeout_s"
        how = "" if p.budget_s is not None else ", 4 × timeout_s when budget_s is not set"
        raise doc.error(
            ("prometheus", field),
            f"the observation budget ({p.observation_budget_s:g} s{how}) must fit within {deadline}: "
            "one service's observation",
        )
    if k.retry_budget_s > le.renew_deadline_s:
        raise doc.error(
            ("kubernetes", "retry_budget_s"),
            f"{k.retry_budget_s:g} s must fit within {deadline}: one call with its retries, a renewal too",
        )
    gap_s = le.lease_duration_s - le.renew_deadline_s
    if k.request_timeout_s > gap_s:
        raise doc.error(
            ("kubernetes", "request_timeout_s"),
            f"{k.request_timeout_s:g} s must fit within lease_duration_s − renew_deadline_s ({gap_s:g} s): "
            "a write sent just before the renew deadline must land before a successor can take the lease",
        )


def build_service(service: LiveServiceConfig, doc: Document, loc: Loc, catalog: Catalog) -> tuple[ServiceSpec, Targets]:
    # the cluster's nodes are read at run time: shapes are checked against the catalog and the model here
    _, spec = resolve_spec(service, doc, loc, catalog, None)
    return spec, _targets(service, spec, doc, (*loc, "targets"))


def _targets(service: LiveServiceConfig, spec: ServiceSpec, doc: Document, loc: Loc) -> Targets:
    t: TargetsConfig | None = service.targets
    if t is None:
        if service.policy.name not in TARGET_FREE_POLICIES:
            raise doc.error(
                loc,
                f"required for policy '{service.policy.name}': a live cluster has no simulator pressure test, "
                "so pin the targets (e.g. from a scenario's resolved.yaml)",
            )
        unused = tuple((s.key, 1.0) for s in spec.decode_shapes), tuple((s.key, 1.0) for s in spec.prefill_shapes)
        return Targets(unused[0], unused[1], 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, "unused")
    return targets_from_config(t, spec, doc, loc)


def prometheus_credentials(config: PrometheusConfig, doc: Document) -> Credentials:
    """The credentials and TLS files of ``config``, each file read once now: a missing, unreadable, empty
    or malformed one is one :class:`ConfigError` naming the config file and the field."""
    loc: Loc = ("prometheus",)

    def path(ref: str | None) -> Path | None:
        return None if ref is None else relative_path(ref, doc)

    t = config.tls
    tls = TlsFiles(path(t.ca_file), path(t.cert_file), path(t.key_file), t.insecure_skip_verify)
    token_file = path(config.bearer_token_file)
    try:
        if token_file is not None:
            read_secret(token_file, "bearer_token_file")
        username = password = None
        if config.basic_auth is not None:
            username = config.basic_auth.username
            password = read_secret(relative_path(config.basic_auth.password_file, doc), "basic_auth.password_file")
        else:
            _, username, password = split_userinfo(config.url)
        if tls != TlsFiles():
            ssl_context(tls)
    except CredentialError as exc:
        raise doc.error((*loc, *exc.field.split(".")), exc.problem) from exc
    return Credentials(token_file, username, password, config.token_refresh_s, tls)


def relative_path(ref: str, doc: Document) -> Path:
    path = Path(ref).expanduser()
    return path if path.is_absolute() else doc.base_dir / path
