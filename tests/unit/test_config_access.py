"""--kubeconfig / --context / --namespace and HETEROSCALE_* over the config file (config/access.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from heteroscale.config.access import apply_overrides, describe, overrides
from heteroscale.config.controller import ControllerConfig, load_controller_config
from heteroscale.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
NO_FLAGS: dict[str, str | None] = {"kubeconfig": None, "context": None, "namespace": None}


def local() -> ControllerConfig:
    config, _ = load_controller_config(EXAMPLES / "controller-local.yaml")
    return config


def in_cluster() -> ControllerConfig:
    config, _ = load_controller_config(EXAMPLES / "controller.yaml")
    return config


@pytest.mark.parametrize(
    ("flag", "env", "want", "source"),
    [
        (None, None, "llm-serving", None),  # the file
        (None, "from-env", "from-env", "HETEROSCALE_NAMESPACE"),
        ("from-flag", "from-env", "from-flag", "--namespace"),
        ("from-flag", None, "from-flag", "--namespace"),
        (None, "", "llm-serving", None),  # an empty variable is unset
    ],
)
def test_a_flag_wins_over_its_variable_which_wins_over_the_file(
    flag: str | None, env: str | None, want: str, source: str | None
) -> None:
    given = overrides({**NO_FLAGS, "namespace": flag}, {} if env is None else {"HETEROSCALE_NAMESPACE": env})
    assert [o.source for o in given] == ([] if source is None else [source])
    assert apply_overrides(local(), given, Path("/work")).kubernetes.namespace == want


def test_a_kubeconfig_from_outside_is_read_from_the_working_directory_and_means_no_in_cluster(tmp_path: Path) -> None:
    config = in_cluster()
    assert config.kubernetes.in_cluster
    given = overrides({**NO_FLAGS, "kubeconfig": "kube/config"}, {"HETEROSCALE_CONTEXT": "lab"})
    k = apply_overrides(config, given, tmp_path).kubernetes
    assert (k.kubeconfig, k.context, k.in_cluster) == (str(tmp_path / "kube/config"), "lab", False)
    assert describe(given) == "kubeconfig from --kubeconfig, context from HETEROSCALE_CONTEXT"
    absolute = overrides(NO_FLAGS, {"HETEROSCALE_KUBECONFIG": "/etc/k.yaml"})
    assert apply_overrides(config, absolute, tmp_path).kubernetes.kubeconfig == "/etc/k.yaml"


def test_a_namespace_that_is_not_a_name_is_one_line_naming_where_it_came_from() -> None:
    given = overrides(NO_FLAGS, {"HETEROSCALE_NAMESPACE": "Bad_NS"})
    with pytest.raises(ConfigError) as info:
        apply_overrides(local(), given, Path("/work"))
    message = str(info.value)
    assert message.startswith("HETEROSCALE_NAMESPACE: 'Bad_NS': not a namespace name") and "\n" not in message
    with pytest.raises(ConfigError, match=r"^--context: must not be empty"):
        apply_overrides(local(), overrides({**NO_FLAGS, "context": " "}, {}), Path("/work"))
