"""Where the live controller reaches Kubernetes: command-line flags and ``HETEROSCALE_*`` variables over
the config file.

Three settings can come from outside the file, so one file serves every cluster and a laptop:

=============  ========================  ==========================
setting        flag                      environment variable
=============  ========================  ==========================
kubeconfig     ``--kubeconfig FILE``     ``HETEROSCALE_KUBECONFIG``
context        ``--context NAME``        ``HETEROSCALE_CONTEXT``
namespace      ``--namespace NAME``      ``HETEROSCALE_NAMESPACE``
=============  ========================  ==========================

A flag wins over its variable, which wins over ``kubernetes.<setting>`` in the file; an empty variable
counts as unset. A kubeconfig given outside the file is read relative to the working directory (one in
the file, relative to the file). A kubeconfig or context given outside the file means kubeconfig
access, so it turns ``in_cluster: true`` off. Without any kubeconfig the client reads ``$KUBECONFIG``
or ``~/.kube/config``, as kubectl does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from heteroscale.config.controller import ControllerConfig, KubernetesConfig
from heteroscale.errors import ConfigError

SETTINGS = ("kubeconfig", "context", "namespace")
ENV_PREFIX = "HETEROSCALE_"
NAMESPACE_RULE = "not a namespace name (lower-case letters, digits and '-', a letter or digit at each end, ≤ 63)"


def env_name(setting: str) -> str:
    return f"{ENV_PREFIX}{setting.upper()}"


@dataclass(frozen=True, slots=True)
class Override:
    setting: str  # kubeconfig | context | namespace
    value: str
    source: str  # "--namespace" or "HETEROSCALE_NAMESPACE": named in errors and in the start-up log


def overrides(flags: Mapping[str, str | None], env: Mapping[str, str]) -> list[Override]:
    """The settings given outside the file, each from the flag if set, else from its variable."""
    out: list[Override] = []
    for setting in SETTINGS:
        flag = flags.get(setting)
        if flag is not None:
            out.append(Override(setting, flag, f"--{setting}"))
            continue
        value = env.get(env_name(setting), "")
        if value:
            out.append(Override(setting, value, env_name(setting)))
    return out


def apply_overrides(config: ControllerConfig, given: list[Override], cwd: Path) -> ControllerConfig:
    """``config`` with the overrides in ``kubernetes`` (module doc); one line naming the flag or variable
    when a value is not valid there."""
    if not given:
        return config
    data = config.kubernetes.model_dump()
    for o in given:
        if not o.value.strip():
            raise ConfigError(f"{o.source}: must not be empty")
        if o.setting == "kubeconfig":
            path = Path(o.value).expanduser()
            data["kubeconfig"] = str(path if path.is_absolute() else cwd / path)
        else:
            data[o.setting] = o.value
        if o.setting in ("kubeconfig", "context"):
            data["in_cluster"] = False  # asked for a kubeconfig: not the pod's service account
    try:
        kubernetes = KubernetesConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        source = next((o.source for o in given if o.setting == field), ", ".join(o.source for o in given))
        why = NAMESPACE_RULE if field == "namespace" else str(first["msg"])
        raise ConfigError(f"{source}: {first.get('input')!r}: {why}") from exc
    return config.model_copy(update={"kubernetes": kubernetes})


def describe(given: list[Override]) -> str:
    """``namespace from --namespace, context from HETEROSCALE_CONTEXT`` (for the start-up log)."""
    return ", ".join(f"{o.setting} from {o.source}" for o in given)
