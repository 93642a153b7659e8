"""``heteroscale controller --config FILE [--once] [--dry-run]``: the live controller.

The lead wires it into ``cli/main.py`` with ``add_controller_parser(subparsers)`` and the handler
``cmd_controller(namespace) -> int``. A ``kind: controller`` file (validated with pydantic, one-line
errors naming file, field and line) says where Prometheus and Kubernetes are, how series map to
services and roles, and which services to manage — with the same service fields as a scenario, less
``load`` (a live cluster has real load) and with pinned ``targets`` (it has no simulator pressure test)
plus the ``workload`` its pods run::

    kind: controller
    prometheus: {url: http://prometheus:9090, timeout_s: 5, staleness_s: 60,
                 mapping: {engine: vllm, spelling: both, service_selector: 'service="{service}"'}}
    kubernetes: {in_cluster: true, namespace: llm}          # or kubeconfig: ~/.kube/config, context: …
    controller: {interval_s: 30, window_s: 60, journal: /var/lib/heteroscale/journal.jsonl}
    leader_election: {enabled: true, lease_name: heteroscale-controller}
    http: {address: 0.0.0.0, port: 8080}
    services:
      - name: chat
        model: llama-3.1-70b
        roles: {prefill: {shapes: [{sku: h800, tp: 4}]}, decode: {shapes: [{sku: h20, tp: 4}]}}
        pd_ratio: 1.0
        slo: {ttft_s: 2.0, tbt_s: 0.1}
        policy: {name: heteroscale, prefill: 2, decode: 2}
        targets: {…}                                          # config.schema.TargetsConfig
        workload: {image: vllm/vllm-openai:v0.8.5, prefill_args: [...], decode_args: [...]}
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from heteroscale.config.build import resolve_spec, targets_from_config
from heteroscale.config.catalog import Catalog, load_catalog
from heteroscale.config.schema import BudgetConfig, ServiceConfig, ServiceName, TargetsConfig
from heteroscale.config.source import Document, Loc, StrictModel, field_default, read_document
from heteroscale.domain.hardware import Role
from heteroscale.domain.service import AffinityLevel, ServiceSpec
from heteroscale.errors import ConfigError, HeteroScaleError
from heteroscale.metrics.promql import (
    Engine,
    Frontend,
    MetricMapping,
    Spelling,
    check_selector_template,
)
from heteroscale.policy.context import Targets

log = logging.getLogger(__name__)

TARGET_FREE = frozenset({"fixed", "static", "periodic"})


class MappingConfig(StrictModel):
    """How Prometheus series map to services and roles (metrics.promql.MetricMapping)."""

    engine: Literal["vllm", "sglang"] = field_default(MetricMapping, "engine").value
    spelling: Literal["colon", "underscore", "both"] = field_default(MetricMapping, "spelling").value
    service_selector: str = field_default(MetricMapping, "service_selector")
    prefill_selector: str = field_default(MetricMapping, "prefill_selector")
    decode_selector: str = field_default(MetricMapping, "decode_selector")
    gpu_service_selector: str | None = field_default(MetricMapping, "gpu_service_selector")
    gpu_prefill_selector: str | None = field_default(MetricMapping, "gpu_prefill_selector")
    gpu_decode_selector: str | None = field_default(MetricMapping, "gpu_decode_selector")
    frontend: Literal["engine", "dynamo"] = field_default(MetricMapping, "frontend").value
    dynamo_selector: str = field_default(MetricMapping, "dynamo_selector")
    ttft_role: Literal["prefill", "decode"] = field_default(MetricMapping, "ttft_role").value
    tbt_role: Literal["prefill", "decode"] = field_default(MetricMapping, "tbt_role").value
    extra_matchers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _selectors(self) -> MappingConfig:
        for name, value in self.to_mapping().templates().items():
            problem = check_selector_template(value)
            if problem is not None:
                raise ValueError(f"{name} {value!r}: {problem}")
        return self

    def to_mapping(self) -> MetricMapping:
        return MetricMapping(
            engine=Engine(self.engine),
            spelling=Spelling(self.spelling),
            service_selector=self.service_selector,
            prefill_selector=self.prefill_selector,
            decode_selector=self.decode_selector,
            gpu_service_selector=self.gpu_service_selector,
            gpu_prefill_selector=self.gpu_prefill_selector,
            gpu_decode_selector=self.gpu_decode_selector,
            frontend=Frontend(self.frontend),
            dynamo_selector=self.dynamo_selector,
            ttft_role=Role(self.ttft_role),
            tbt_role=Role(self.tbt_role),
            extra_matchers=tuple(self.extra_matchers),
        )


class PrometheusConfig(StrictModel):
    url: str = Field(min_length=1, pattern=r"^https?://")
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    staleness_s: float = Field(default=60.0, gt=0)
    budget_s: float | None = Field(default=None, gt=0)
    mapping: MappingConfig = Field(default_factory=MappingConfig)

    @field_validator("url")
    @classmethod
    def _url_parses(cls, url: str) -> str:
        from heteroscale.metrics.prometheus import url_problem  # httpx loads only when a config is read

        problem = url_problem(url)  # checked as the HTTP client will read it
        if problem is not None:
            raise ValueError(problem)
        return url


class NodeLabelsConfig(StrictModel):
    vdc: str | None = "heteroscale.io/vdc"
    physical_cluster: str | None = "heteroscale.io/physical-cluster"
    logical_cluster: str | None = "heteroscale.io/logical-cluster"
    s2: str | None = "heteroscale.io/s2"
    s1: str | None = "heteroscale.io/s1"
    s0: str | None = "heteroscale.io/s0"
    sku: str = Field(default="heteroscale.io/gpu-sku", min_length=1)
    gpu_resource: str = Field(default="nvidia.com/gpu", min_length=1)


class KubernetesConfig(StrictModel):
    in_cluster: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    labels: NodeLabelsConfig = Field(default_factory=NodeLabelsConfig)
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=0.2, gt=0)
    max_backoff_s: float = Field(default=5.0, gt=0)
    retry_budget_s: float = Field(default=30.0, gt=0)
    gpu_accounting: Literal["cluster", "namespace"] = "cluster"

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


class LeaderElectionConfig(StrictModel):
    enabled: bool = True
    lease_name: str = Field(default="heteroscale-controller", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str | None = None
    identity: str | None = Field(default=None, min_length=1)
    lease_duration_s: float = Field(default=15.0, gt=0)
    renew_deadline_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _deadline(self) -> LeaderElectionConfig:
        if self.renew_deadline_s >= self.lease_duration_s:
            raise ValueError(
                f"renew_deadline_s ({self.renew_deadline_s:g}) must be below "
                f"lease_duration_s ({self.lease_duration_s:g})"
            )
        return self


class HttpConfig(StrictModel):
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class WorkloadConfig(StrictModel):
    image: str = Field(min_length=1)
    command: list[str] = Field(default_factory=list)
    prefill_args: list[str] = Field(default_factory=list)
    decode_args: list[str] = Field(default_factory=list)
    port: int = Field(default=8000, ge=1, le=65535)
    readiness_path: str = Field(default="/health", pattern=r"^/")
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    termination_grace_s: int = Field(default=30, ge=0)


class LiveServiceConfig(ServiceConfig):
    """A scenario's service fields, less ``load``, plus the pods' workload and an optional metric mapping."""

    load: None = None  # type: ignore[assignment]
    workload: WorkloadConfig
    metrics: MappingConfig | None = None

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


# --- building -------------------------------------------------------------------------------------


def load_controller_config(path: Path) -> tuple[ControllerConfig, Document]:
    doc = read_document(path)
    if doc.data.get("kind") != "controller":
        raise doc.error(("kind",), f"expected 'controller', got {doc.data.get('kind')!r}")
    return doc.validate(ControllerConfig), doc


def build_service(service: LiveServiceConfig, doc: Document, loc: Loc, catalog: Catalog) -> tuple[ServiceSpec, Targets]:
    # the cluster's nodes are read at run time: shapes are checked against the catalog and the model here
    _, spec = resolve_spec(service, doc, loc, catalog, None)
    return spec, _targets(service, spec, doc, (*loc, "targets"))


def _targets(service: LiveServiceConfig, spec: ServiceSpec, doc: Document, loc: Loc) -> Targets:
    t: TargetsConfig | None = service.targets
    if t is None:
        if service.policy.name not in TARGET_FREE:
            raise doc.error(
                loc,
                f"required for policy '{service.policy.name}': a live cluster has no simulator pressure test, "
                "so pin the targets (e.g. from a scenario's resolved.yaml)",
            )
        unused = tuple((s.key, 1.0) for s in spec.decode_shapes), tuple((s.key, 1.0) for s in spec.prefill_shapes)
        return Targets(unused[0], unused[1], 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, "unused")
    return targets_from_config(t, spec, doc, loc)


def _relative(ref: str, doc: Document) -> Path:
    path = Path(ref).expanduser()
    return path if path.is_absolute() else doc.base_dir / path


def build_live(
    config: ControllerConfig,
    doc: Document,
    *,
    dry_run: bool,
    once: bool,
    cycles: int | None = None,
    duration_s: float | None = None,
) -> Any:
    """The LiveController for ``config`` (Kubernetes client, Prometheus source, policies, journal)."""
    from heteroscale.actuators.advisory import AdvisoryActuator
    from heteroscale.actuators.kubernetes import (
        KubernetesCluster,
        KubernetesSettings,
        LabelKeys,
        WorkloadTemplate,
        new_api_client,
    )
    from heteroscale.clock import WallClock
    from heteroscale.config.build import budget_from_config
    from heteroscale.controller.leader import LeaseElector, LeaseSettings, default_identity
    from heteroscale.controller.live import DurableJournal, LiveController, LiveSettings, read_journal
    from heteroscale.controller.mixing import mix_settings
    from heteroscale.controller.reconcile import Controller, ServiceBinding
    from heteroscale.metrics.prometheus import PrometheusSource
    from heteroscale.policy.registry import make_policy
    from heteroscale.sim.scenario import PolicySpec, SimSettings

    catalog = load_catalog()
    clock = WallClock()
    bindings: list[ServiceBinding] = []
    templates: dict[str, WorkloadTemplate] = {}
    mappings: dict[str, MetricMapping] = {}
    affinity: dict[str, AffinityLevel] = {}
    seen: set[str] = set()
    for i, service in enumerate(config.services):
        loc: Loc = ("services", i)
        if service.name in seen:
            raise doc.error((*loc, "name"), f"duplicate service name {service.name!r}")
        seen.add(service.name)
        spec, targets = build_service(service, doc, loc, catalog)
        policy_spec = PolicySpec(
            prefill=service.policy.prefill,
            decode=service.policy.decode,
            name=service.policy.name,
            options=tuple(sorted(service.policy.options.items())),
        )
        try:
            policy = make_policy(policy_spec.name, policy_spec.build_options())
        except (ValueError, TypeError) as exc:
            field = "name" if "unknown policy" in str(exc) else "options"
            raise doc.error((*loc, "policy", field), str(exc)) from exc
        # the launch penalty: one cold start of a default 120 s (the simulator's cold start)
        mix = mix_settings(spec, catalog.skus, SimSettings().cold_start_s)
        bindings.append(ServiceBinding(spec, policy, targets, mix=mix))
        w = service.workload
        templates[spec.name] = WorkloadTemplate(
            image=w.image,
            prefill_args=tuple(w.prefill_args),
            decode_args=tuple(w.decode_args),
            command=tuple(w.command),
            port=w.port,
            readiness_path=w.readiness_path,
            env=tuple(sorted(w.env.items())),
            labels=tuple(sorted(w.labels.items())),
            termination_grace_s=w.termination_grace_s,
        )
        affinity[spec.name] = spec.affinity
        if service.metrics is not None:
            mappings[spec.name] = service.metrics.to_mapping()
    k = config.kubernetes
    labels = k.labels
    settings = KubernetesSettings(
        namespace=k.namespace,
        labels=LabelKeys(
            vdc=labels.vdc,
            physical_cluster=labels.physical_cluster,
            logical_cluster=labels.logical_cluster,
            s2=labels.s2,
            s1=labels.s1,
            s0=labels.s0,
            sku=labels.sku,
            gpu_resource=labels.gpu_resource,
        ),
        request_timeout_s=k.request_timeout_s,
        max_attempts=k.max_attempts,
        backoff_s=k.backoff_s,
        max_backoff_s=k.max_backoff_s,
        retry_budget_s=k.retry_budget_s,
        gpu_accounting=k.gpu_accounting,
    )

    def resolve(value: str) -> str | None:
        try:
            return catalog.resolve_sku(value)
        except ConfigError:
            return None

    api = new_api_client(None if k.kubeconfig is None else _relative(k.kubeconfig, doc), k.context, k.in_cluster)
    cluster = KubernetesCluster(api, settings, templates, clock, affinity=affinity, resolve_sku=resolve)
    p = config.prometheus
    metrics = PrometheusSource(
        p.url,
        p.mapping.to_mapping(),
        timeout_s=p.timeout_s,
        staleness_s=p.staleness_s,
        clock=clock,
        budget_s=p.budget_s,
        service_mappings=mappings,
    )
    journal_path = _relative(config.controller.journal, doc)
    journal = DurableJournal(journal_path)
    acting: Any = AdvisoryActuator(cluster) if dry_run else cluster
    loop = config.controller
    budget = None if config.budget is None else budget_from_config(config.budget, doc, ("budget",), catalog)
    controller = Controller(
        bindings, metrics, acting, acting, journal, window_s=loop.window_s, tick_s=loop.interval_s, budget=budget
    )
    elector = None
    le = config.leader_election
    if le.enabled:
        elector = LeaseElector(
            cluster,
            LeaseSettings(
                namespace=le.namespace or k.namespace,
                identity=le.identity or default_identity(),
                name=le.lease_name,
                lease_duration_s=le.lease_duration_s,
                renew_deadline_s=le.renew_deadline_s,
            ),
            clock,
        )
    live = LiveController(
        controller,
        acting,
        LiveSettings(interval_s=loop.interval_s, max_cycles=1 if once else cycles, max_duration_s=duration_s),
        clock=clock,
        elector=elector,
    )
    live.restore(read_journal(journal_path), loop.memory_window_s)
    return live


# --- the command ----------------------------------------------------------------------------------


def add_controller_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "controller", help="run the live controller against Prometheus and Kubernetes"
    )
    parser.add_argument("--config", type=Path, required=True, help="a kind: controller YAML file")
    parser.add_argument("--once", action="store_true", help="run one reconcile cycle and exit")
    parser.add_argument("--dry-run", action="store_true", help="decide and journal, apply nothing (advisory)")
    parser.add_argument("--cycles", type=int, help="stop after this many cycles (default: until SIGTERM)")
    parser.add_argument("--duration-s", type=float, help="stop after this many seconds (default: until SIGTERM)")
    parser.add_argument("--check", action="store_true", help="validate the config file and exit")
    return parser


def cmd_controller(args: argparse.Namespace) -> int:
    """0 on a clean stop; 1 when ``--once`` could make no decision; 2 on a configuration or start-up error."""
    try:
        config, doc = load_controller_config(args.config)
        if args.check:
            print(f"{args.config}: valid controller config ({len(config.services)} service(s))")
            return 0
        if args.cycles is not None and args.cycles < 1:
            raise HeteroScaleError(f"--cycles must be ≥ 1, got {args.cycles}")
        if args.duration_s is not None and args.duration_s <= 0:
            raise HeteroScaleError(f"--duration-s must be > 0, got {args.duration_s}")
        live = build_live(
            config, doc, dry_run=args.dry_run, once=args.once, cycles=args.cycles, duration_s=args.duration_s
        )
    except HeteroScaleError as exc:
        print(f"heteroscale controller: error: {exc}", file=sys.stderr)
        return 2
    from heteroscale.controller.http import HealthServer

    server = None
    if config.http.enabled:
        try:
            server = HealthServer(live.metrics, config.http.address, config.http.port, live.healthy).start()
        except OSError as exc:
            live.shutdown()
            print(
                f"heteroscale controller: error: http {config.http.address}:{config.http.port}: {exc}", file=sys.stderr
            )
            return 2

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("received signal %d: stopping after the current cycle", signum)
        live.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    mode = "dry run" if args.dry_run else "acting"
    log.warning(
        "controller %s: %s, %d service(s), every %g s",
        config.name,
        mode,
        len(config.services),
        config.controller.interval_s,
    )
    try:
        cycles = live.run()
    finally:
        live.shutdown()
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"heteroscale controller: stopped after {cycles} cycle(s); journal {live.controller.journal.path}")
    if args.once and live.last_error is not None:
        print(f"heteroscale controller: error: the cycle made no decision: {live.last_error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m heteroscale.cli.live controller …``: the command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="heteroscale")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_controller_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per PromQL query is noise
    return cmd_controller(args)


if __name__ == "__main__":
    sys.exit(main())
