"""The only place that picks real or simulated parts and joins config to the engines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from heteroscale.actuators.advisory import AdvisoryActuator
from heteroscale.actuators.kube.api import KubeApi, KubernetesSettings, LabelKeys, Toleration, new_api_client
from heteroscale.actuators.kube.manifests import CONFIG_MAP, SECRET, EnvFrom, EnvRef, PodSecurity, WorkloadTemplate
from heteroscale.actuators.kube.owned import KubernetesCluster
from heteroscale.actuators.kube.targets import ScaleTarget
from heteroscale.actuators.metrics import PublishedTargets
from heteroscale.actuators.scale import ScaleTargetsCluster
from heteroscale.clock import WallClock
from heteroscale.config.actuation import build_targets
from heteroscale.config.build import budget_from_config
from heteroscale.config.catalog import calibration_for, load_catalog
from heteroscale.config.controller import ControllerConfig, build_service, prometheus_credentials, relative_path
from heteroscale.config.loader import load_scenario, write_resolved_config
from heteroscale.config.source import Document, Loc
from heteroscale.config.workload import WorkloadConfig
from heteroscale.controller.http import ControllerMetrics
from heteroscale.controller.journal import JournalSettings, open_journal
from heteroscale.controller.leader import KubeLeaseStore, LeaseElector, LeaseSettings, default_identity
from heteroscale.controller.live import LiveController, LiveSettings
from heteroscale.controller.mixing import mix_settings
from heteroscale.controller.readiness import ReadinessSettings
from heteroscale.controller.reconcile import Controller, ServiceBinding
from heteroscale.domain.service import AffinityLevel
from heteroscale.errors import ConfigError
from heteroscale.experiments.parallel import ProgressFn as StepFn
from heteroscale.experiments.pressure import pressure_test
from heteroscale.metrics.auth import redact_url
from heteroscale.metrics.prometheus import PrometheusSource
from heteroscale.metrics.promql import MetricMapping
from heteroscale.policy.registry import TARGET_FREE_POLICIES, make_policy
from heteroscale.reports.files import write_summary, write_timeseries
from heteroscale.sim.runner import ProgressFn, SimulationRun
from heteroscale.sim.scenario import Fidelity, PolicySpec, Scenario, SimSettings


def with_overrides(
    scenario: Scenario,
    *,
    fidelity: str | None = None,
    duration_s: float | None = None,
    seed: int | None = None,
    skip_bad_rows: bool = False,
) -> Scenario:
    """The scenario as it will run: command-line overrides applied to its settings and loads."""
    settings = scenario.settings
    changes: dict[str, Any] = {}
    if fidelity is not None:
        changes["fidelity"] = Fidelity(fidelity)
    if duration_s is not None:
        changes["duration_s"] = duration_s
    if seed is not None:
        changes["seed"] = seed
    if changes:
        scenario = dataclasses.replace(scenario, settings=dataclasses.replace(settings, **changes))
    if skip_bad_rows:
        services = tuple(
            dataclasses.replace(run, load=dataclasses.replace(run.load, skip_bad_rows=True))
            for run in scenario.services
        )
        scenario = dataclasses.replace(scenario, services=services)
    return scenario


def simulate(
    scenario_ref: str,
    *,
    fidelity: str | None = None,
    duration_s: float | None = None,
    seed: int | None = None,
    out_dir: Path | None = None,
    skip_bad_rows: bool = False,
    progress: ProgressFn | None = None,
    requests_csv: str = "plain",
    steps: StepFn | None = None,
) -> dict[str, Any]:
    """One run of a scenario; ``steps`` hears of the pressure test's probes, ``progress`` of the run;
    ``requests_csv``: with ``out_dir``, write requests.csv ``plain``, ``gzip`` (requests.csv.gz) or ``off``."""
    scenario = with_overrides(
        load_scenario(scenario_ref),
        fidelity=fidelity,
        duration_s=duration_s,
        seed=seed,
        skip_bad_rows=skip_bad_rows,
    )
    calibration = calibration_for(scenario)
    targets = {
        r.spec.name: pressure_test(
            scenario, r.spec.name, calibration, seed=scenario.settings.seed, progress=steps
        ).targets
        for r in scenario.services
        if r.policy.name not in TARGET_FREE_POLICIES and r.targets is None
    }
    run = SimulationRun(scenario, calibration, out_dir=out_dir, targets=targets, requests_csv=requests_csv)
    skipped = sum(ld.trace.skipped_rows for ld in run.loads)
    summary = run.run(progress)
    summary["trace_rows_skipped"] = skipped
    if out_dir is not None:
        write_resolved_config(scenario, out_dir / "resolved.yaml")
        write_timeseries(out_dir, run.telemetry.rows)
        write_summary(out_dir, summary)
    return summary


def workload_template(w: WorkloadConfig) -> WorkloadTemplate:
    """What a service's pods run, from its ``workload`` section."""
    literal = tuple(sorted((name, value) for name, value in w.env.items() if isinstance(value, str)))
    refs = tuple(
        EnvRef(
            name,
            SECRET if value.secret is not None else CONFIG_MAP,
            value.secret or value.config_map or "",
            value.key,
            value.optional,
        )
        for name, value in sorted(w.env.items())
        if not isinstance(value, str)
    )
    env_from = tuple(
        EnvFrom(SECRET if e.secret is not None else CONFIG_MAP, e.secret or e.config_map or "", e.prefix, e.optional)
        for e in w.env_from
    )
    sec = w.security
    return WorkloadTemplate(
        image=w.image,
        prefill_args=tuple(w.prefill_args),
        decode_args=tuple(w.decode_args),
        command=tuple(w.command),
        port=w.port,
        readiness_path=w.readiness_path,
        env=literal,
        env_refs=refs,
        env_from=env_from,
        labels=tuple(sorted(w.labels.items())),
        termination_grace_s=w.termination_grace_s,
        security=PodSecurity(
            run_as_non_root=sec.run_as_non_root,
            run_as_user=sec.run_as_user,
            run_as_group=sec.run_as_group,
            fs_group=sec.fs_group,
            allow_privilege_escalation=sec.allow_privilege_escalation,
            drop_all_capabilities=sec.drop_all_capabilities,
            seccomp_runtime_default=sec.seccomp_runtime_default,
            read_only_root_filesystem=sec.read_only_root_filesystem,
            automount_service_account_token=sec.automount_service_account_token,
        ),
    )


def build_live(
    config: ControllerConfig,
    doc: Document,
    *,
    dry_run: bool,
    once: bool,
    cycles: int | None = None,
    duration_s: float | None = None,
) -> LiveController:
    """The LiveController for ``config`` (Kubernetes client, Prometheus source, policies, journal)."""
    catalog = load_catalog()
    clock = WallClock()
    bindings: list[ServiceBinding] = []
    templates: dict[str, WorkloadTemplate] = {}
    mappings: dict[str, MetricMapping] = {}
    affinity: dict[str, AffinityLevel] = {}
    targets_by_id: dict[str, ScaleTarget] = {}
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
        if service.workload is not None:
            templates[spec.name] = workload_template(service.workload)
        for j, target in enumerate(
            build_targets(spec.name, service.scale_targets or [], spec, doc, (*loc, "scale_targets"), catalog)
        ):
            if target.id in targets_by_id:
                other = targets_by_id[target.id].service
                raise doc.error((*loc, "scale_targets", j), f"{target.id} is already a target of service {other!r}")
            targets_by_id[target.id] = target
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
        start_timeout_s=k.start_timeout_s,
        unschedulable_grace_s=k.unschedulable_grace_s,
        list_page_size=k.list_page_size,
        tolerations=tuple(Toleration(t.key, t.operator, t.value, t.effect) for t in k.tolerations),
    )

    def resolve(value: str) -> str | None:
        try:
            return catalog.resolve_sku(value)
        except ConfigError:
            return None

    le = config.leader_election
    identity = le.identity or default_identity()
    api = new_api_client(None if k.kubeconfig is None else relative_path(k.kubeconfig, doc), k.context, k.in_cluster)
    api.user_agent = f"heteroscale/{identity}"  # names the writer in the API server's audit log
    metrics_out = ControllerMetrics()
    cluster: KubernetesCluster | ScaleTargetsCluster
    forget = None
    if config.actuation == "scale":
        cluster = ScaleTargetsCluster(api, settings, list(targets_by_id.values()), clock)
    elif config.actuation == "metrics":

        def publish(target: ScaleTarget, replicas: int) -> None:
            if not dry_run:  # a dry run says what it would do in its records, never to a scaler
                metrics_out.publish_target(target.service, target.role.value, target.metric_label, replicas)

        cluster = PublishedTargets(api, settings, list(targets_by_id.values()), publish, clock)
        forget = cluster.forget
    else:
        cluster = KubernetesCluster(api, settings, templates, clock, affinity=affinity, resolve_sku=resolve)
    # discovery gating needs our pod label, which the stacks' routers ignore (README: actuation modes)
    readiness = ReadinessSettings(gating=config.actuation == "owned")
    p = config.prometheus
    metrics = PrometheusSource(
        redact_url(p.url),  # user:password@ travels in the credentials, never in a URL
        p.mapping.to_mapping(),
        timeout_s=p.timeout_s,
        staleness_s=p.staleness_s,
        clock=clock,
        budget_s=p.budget_s,
        service_mappings=mappings,
        credentials=prometheus_credentials(p, doc),
    )
    loop = config.controller
    journal_settings = JournalSettings(
        max_bytes=loop.journal_max_bytes,
        keep_files=loop.journal_keep_files,
        checkpoint_every=loop.journal_checkpoint_every,
        checkpoint_interval_s=loop.journal_checkpoint_interval_s,
        window_s=loop.memory_window_s,
    )
    journal_path = relative_path(loop.journal, doc)
    try:
        journal, state = open_journal(journal_path, journal_settings, clock.now_s())
    except OSError as exc:
        raise ConfigError(f"controller.journal {journal_path}: cannot open: {exc}") from exc
    acting: Any = AdvisoryActuator(cluster) if dry_run else cluster
    budget = None if config.budget is None else budget_from_config(config.budget, doc, ("budget",), catalog)
    controller = Controller(
        bindings,
        metrics,
        acting,
        acting,
        journal,
        window_s=loop.window_s,
        tick_s=loop.interval_s,
        budget=budget,
        readiness=readiness,
    )
    elector = None
    if le.enabled:
        lease = LeaseSettings(
            namespace=le.namespace or k.namespace,
            identity=identity,
            name=le.lease_name,
            lease_duration_s=le.lease_duration_s,
            renew_deadline_s=le.renew_deadline_s,
            retry_period_s=le.retry_period_s,
        )
        # its own client state (counters), the same connection pool; Lease calls are never fenced
        store = KubeLeaseStore(KubeApi(api, settings, clock), lease.namespace, lease.name)
        elector = LeaseElector(store, lease, clock)
        cluster.client.fence = elector.fence  # every write to the cluster first proves the lead
    live = LiveController(
        controller,
        acting,
        LiveSettings(interval_s=loop.interval_s, max_cycles=1 if once else cycles, max_duration_s=duration_s),
        clock=clock,
        elector=elector,
        metrics=metrics_out,
        on_lost_lead=forget,
    )
    live.restore(state.fold)
    return live
