"""The ``kind: controller`` file's Kubernetes parts (config/controller.py) and how they become workload
templates and settings (cli/wiring.py): verbatim service names, Secret / ConfigMap environment, pod
security, tolerations, the GPU accounting default, the start time-out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.actuators.kube.manifests import CONFIG_MAP, SECRET, EnvFrom, EnvRef, PodSecurity
from heteroscale.cli.wiring import workload_template
from heteroscale.config.controller import load_controller_config
from heteroscale.errors import ConfigError
from tests.support.live_env import controller_config


def write(tmp_path: Path, edit: Any = None) -> Path:
    path = controller_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", identity="x")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if edit is not None:
        edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def service_name(name: str) -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["services"][0]["name"] = name

    return edit


@pytest.mark.parametrize("name", ["llama-3.1-70b", "Chat_EU", "a" * 63])
def test_service_names_that_are_label_values_are_accepted(tmp_path: Path, name: str) -> None:
    config, _ = load_controller_config(write(tmp_path, service_name(name)))
    assert config.services[0].name == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [("chat-", "not a valid Kubernetes label value"), ("chat.", "not a valid Kubernetes label value")],
)
def test_service_names_that_are_not_label_values_are_refused_in_one_line(
    tmp_path: Path, name: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_controller_config(write(tmp_path, service_name(name)))
    message = str(info.value)
    assert "\n" not in message and "services[0].name" in message and problem in message and repr(name) in message


def test_kubernetes_defaults_are_namespace_accounting_and_a_start_time_out(tmp_path: Path) -> None:
    config, _ = load_controller_config(write(tmp_path))
    k = config.kubernetes
    assert (k.gpu_accounting, k.start_timeout_s, k.list_page_size, k.tolerations) == ("namespace", 900.0, 500, [])


def test_workload_env_from_secrets_and_config_maps_and_security(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        workload = data["services"][0]["workload"]
        workload["env"] = {
            "HF_HOME": "/tmp/hf",
            "HF_TOKEN": {"secret": "hf-token", "key": "token"},
            "MODE": {"config_map": "engine-settings", "key": "mode", "optional": True},
        }
        workload["env_from"] = [{"config_map": "engine-settings", "prefix": "ENGINE_"}, {"secret": "extra"}]
        workload["security"] = {"run_as_user": 1000, "read_only_root_filesystem": True}
        data["kubernetes"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    config, _ = load_controller_config(write(tmp_path, edit))
    template = workload_template(config.services[0].workload)
    assert template.env == (("HF_HOME", "/tmp/hf"),)
    assert template.env_refs == (
        EnvRef("HF_TOKEN", SECRET, "hf-token", "token"),
        EnvRef("MODE", CONFIG_MAP, "engine-settings", "mode", optional=True),
    )
    assert template.env_from == (EnvFrom(CONFIG_MAP, "engine-settings", "ENGINE_"), EnvFrom(SECRET, "extra"))
    assert template.security == PodSecurity(run_as_user=1000, read_only_root_filesystem=True)
    assert [e["name"] for e in template.env_manifest()] == ["HF_HOME", "HF_TOKEN", "MODE"]
    assert config.kubernetes.tolerations[0].operator == "Exists"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"TOKEN": {"secret": "a", "config_map": "b", "key": "k"}}, "exactly one of secret or config_map"),
        ({"TOKEN": {"key": "k"}}, "exactly one of secret or config_map"),
        ({"TOKEN": {"secret": "Not_A_Name", "key": "k"}}, "secret"),
        ({"1BAD": "x"}, "not a valid environment variable name"),
    ],
)
def test_bad_env_entries_are_refused_in_one_line(tmp_path: Path, env: dict[str, Any], problem: str) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["services"][0]["workload"]["env"] = env

    with pytest.raises(ConfigError) as info:
        load_controller_config(write(tmp_path, edit))
    message = str(info.value)
    assert "\n" not in message and "services[0].workload.env" in message and problem in message


def test_running_as_root_must_be_said_plainly(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["services"][0]["workload"]["security"] = {"run_as_user": 0}

    with pytest.raises(ConfigError, match="run_as_non_root: false"):
        load_controller_config(write(tmp_path, edit))
