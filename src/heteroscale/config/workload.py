"""The pods a ``kind: controller`` file asks for (``workload:``): image, command, arguments, environment
(literals or Secret / ConfigMap references), labels and security settings, validated with pydantic."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator, model_validator

from heteroscale.config.actuation import OBJECT_NAME
from heteroscale.config.source import UNION_TAG_PREFIX, StrictModel

ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


class _SourceConfig(StrictModel):
    """Exactly one of a Secret (``secret``) or a ConfigMap (``config_map``)."""

    secret: str | None = Field(default=None, pattern=OBJECT_NAME, max_length=253)
    config_map: str | None = Field(default=None, pattern=OBJECT_NAME, max_length=253)

    @model_validator(mode="after")
    def _one_source(self) -> _SourceConfig:
        if (self.secret is None) == (self.config_map is None):
            raise ValueError("name exactly one of secret or config_map")
        return self


class EnvRefConfig(_SourceConfig):
    """An environment variable read from one key of a Secret (``secret``) or a ConfigMap (``config_map``)."""

    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)
    optional: bool = False


def _value_or_ref(value: Any) -> str:
    return f"{UNION_TAG_PREFIX}ref" if isinstance(value, dict | BaseModel) else f"{UNION_TAG_PREFIX}value"


EnvValue = Annotated[
    Annotated[str, Tag(f"{UNION_TAG_PREFIX}value")] | Annotated[EnvRefConfig, Tag(f"{UNION_TAG_PREFIX}ref")],
    Discriminator(_value_or_ref),
]


class EnvFromConfig(_SourceConfig):
    """Every key of a Secret or a ConfigMap as environment variables (``envFrom``)."""

    prefix: str = Field(default="", pattern=r"^([-._a-zA-Z][-._a-zA-Z0-9]*)?$")
    optional: bool = False


class SecurityConfig(StrictModel):
    """The pods' security settings; the defaults lock them down (actuators.kube.manifests.PodSecurity)."""

    run_as_non_root: bool = True
    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    fs_group: int | None = Field(default=None, ge=0)
    allow_privilege_escalation: bool = False
    drop_all_capabilities: bool = True
    seccomp_runtime_default: bool = True
    read_only_root_filesystem: bool = False  # engines write caches (weights, compiled kernels)
    automount_service_account_token: bool = False

    @model_validator(mode="after")
    def _root(self) -> SecurityConfig:
        if self.run_as_non_root and self.run_as_user == 0:
            raise ValueError("run_as_user 0 is root: set run_as_non_root: false to run as root")
        return self


class WorkloadConfig(StrictModel):
    image: str = Field(min_length=1)
    command: list[str] = Field(default_factory=list)
    prefill_args: list[str] = Field(default_factory=list)
    decode_args: list[str] = Field(default_factory=list)
    port: int = Field(default=8000, ge=1, le=65535)
    readiness_path: str = Field(default="/health", pattern=r"^/")
    env: dict[str, EnvValue] = Field(default_factory=dict)  # a literal, or {secret|config_map: name, key: k}
    env_from: list[EnvFromConfig] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    termination_grace_s: int = Field(default=30, ge=0)
    security: SecurityConfig = Field(default_factory=SecurityConfig)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str | EnvRefConfig]) -> dict[str, str | EnvRefConfig]:
        for name in env:
            if not re.match(ENV_NAME, name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return env
