"""``prometheus.mapping`` (:class:`MappingConfig`) and its presets: ``prometheus.mapping.preset`` names
the serving stack, and the preset fills the mapping's selectors; a field given next to it wins over it.

A service is named after the stack's own identity label (its value is ``{service}``); a role is told by
the stack's role label. Engine series reach Prometheus with those labels through the PodMonitor's
``podTargetLabels`` (Prometheus Operator turns ``llm-d.ai/role`` into ``llm_d_ai_role``), or through the
engine itself (Dynamo's ``dynamo_component``, SGLang's ``--extra-metric-labels``). DCGM series are tied
to the same pods through kube-state-metrics' ``kube_pod_labels``, which carries a pod label only when its
``--metric-labels-allowlist`` names it (``pods=[llm-d.ai/role,llm-d.ai/model]``, …): the key becomes
``label_<key with every character that is not a letter, digit or _ replaced by _>``.

Each preset cites where its label names come from (repository, file, as read in 2026-08).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from heteroscale.config.source import StrictModel, field_default
from heteroscale.domain.hardware import Role
from heteroscale.metrics.promql import Engine, Frontend, MetricMapping, PodJoin, Spelling, check_selector_template

# Field values per preset, in MappingConfig's terms (gpu_join: PodJoin's fields).
PRESETS: dict[str, dict[str, Any]] = {
    # Plain vLLM, pods labelled heteroscale.io/service and heteroscale.io/role (owned mode creates them so);
    # deploy/kustomize/base/podmonitor-engines.yaml relabels them to `service` and `role`.
    "vllm": {
        "engine": "vllm",
        "service_selector": 'service="{service}"',
        "prefill_selector": 'role="prefill"',
        "decode_selector": 'role="decode"',
        "gpu_join": {
            "service_selector": 'label_heteroscale_io_service="{service}"',
            "prefill_selector": 'label_heteroscale_io_role="prefill"',
            "decode_selector": 'label_heteroscale_io_role="decode"',
        },
    },
    # SGLang launched with --extra-metric-labels '{"service": "<name>", "role": "prefill"}' (sgl-project/
    # sglang python/sglang/srt/managers/scheduler_metrics_mixin.py: the labels are added to every scheduler
    # metric, beside dp_rank); its pods labelled like vllm's for the DCGM join.
    "sglang": {
        "engine": "sglang",
        "service_selector": 'service="{service}"',
        "prefill_selector": 'role="prefill"',
        "decode_selector": 'role="decode"',
        "gpu_join": {
            "service_selector": 'label_heteroscale_io_service="{service}"',
            "prefill_selector": 'label_heteroscale_io_role="prefill"',
            "decode_selector": 'label_heteroscale_io_role="decode"',
        },
    },
    # NVIDIA Dynamo: workers label their metrics dynamo_namespace / dynamo_component; a vLLM or SGLang
    # prefill worker registers the component "prefill", a decode worker "backend" (ai-dynamo/dynamo
    # components/src/dynamo/vllm/main.py, docs/observability/metrics.md). The operator labels pods
    # nvidia.com/dynamo-namespace and nvidia.com/dynamo-sub-component-type=prefill|decode
    # (deploy/operator/internal/consts/consts.go). Service = the Dynamo namespace. The frontend's prefix
    # (dynamo_prefix) follows its --metrics-prefix / DYN_METRICS_PREFIX.
    "dynamo": {
        "engine": "vllm",
        "service_selector": 'dynamo_namespace="{service}"',
        "prefill_selector": 'dynamo_component="prefill"',
        "decode_selector": 'dynamo_component="backend"',
        "gpu_join": {
            "service_selector": 'label_nvidia_com_dynamo_namespace="{service}"',
            "prefill_selector": 'label_nvidia_com_dynamo_sub_component_type="prefill"',
            "decode_selector": 'label_nvidia_com_dynamo_sub_component_type="decode"',
        },
    },
    # llm-d: pods labelled llm-d.ai/model and llm-d.ai/role=prefill|decode (llm-d/llm-d guides, and its
    # docs/monitoring: kube-state-metrics allowlist pods=[llm-d.ai/role,llm-d.ai/model,…]); the PodMonitor
    # copies both with podTargetLabels. Service = the llm-d.ai/model value.
    "llm-d": {
        "engine": "vllm",
        "service_selector": 'llm_d_ai_model="{service}"',
        "prefill_selector": 'llm_d_ai_role="prefill"',
        "decode_selector": 'llm_d_ai_role="decode"',
        "gpu_join": {
            "service_selector": 'label_llm_d_ai_model="{service}"',
            "prefill_selector": 'label_llm_d_ai_role="prefill"',
            "decode_selector": 'label_llm_d_ai_role="decode"',
        },
    },
    # AIBrix StormService: pods labelled storm-service-name and role-name (vllm-project/aibrix
    # pkg/controller/constants/stormservice.go: StormServiceNameLabelKey, RoleNameLabelKey); role names are
    # the StormService's own (prefill / decode in its P/D examples). Service = the StormService name.
    "aibrix": {
        "engine": "vllm",
        "service_selector": 'storm_service_name="{service}"',
        "prefill_selector": 'role_name="prefill"',
        "decode_selector": 'role_name="decode"',
        "gpu_join": {
            "service_selector": 'label_storm_service_name="{service}"',
            "prefill_selector": 'label_role_name="prefill"',
            "decode_selector": 'label_role_name="decode"',
        },
    },
    # Kthena ModelServing: pods labelled modelserving.volcano.sh/name and modelserving.volcano.sh/role
    # (volcano-sh/kthena pkg/apis/workload/v1alpha1/labels.go: ModelServingNameLabelKey, RoleLabelKey).
    # Service = the ModelServing name.
    "kthena": {
        "engine": "vllm",
        "service_selector": 'modelserving_volcano_sh_name="{service}"',
        "prefill_selector": 'modelserving_volcano_sh_role="prefill"',
        "decode_selector": 'modelserving_volcano_sh_role="decode"',
        "gpu_join": {
            "service_selector": 'label_modelserving_volcano_sh_name="{service}"',
            "prefill_selector": 'label_modelserving_volcano_sh_role="prefill"',
            "decode_selector": 'label_modelserving_volcano_sh_role="decode"',
        },
    },
}

# The pod labels each preset's PodMonitor copies onto the engine series (podTargetLabels) and that
# kube-state-metrics must allow for the DCGM join.
POD_LABELS: dict[str, tuple[str, ...]] = {
    "vllm": ("heteroscale.io/service", "heteroscale.io/role"),
    "sglang": ("heteroscale.io/service", "heteroscale.io/role"),
    "dynamo": ("nvidia.com/dynamo-namespace", "nvidia.com/dynamo-sub-component-type"),
    "llm-d": ("llm-d.ai/model", "llm-d.ai/role"),
    "aibrix": ("storm-service-name", "role-name"),
    "kthena": ("modelserving.volcano.sh/name", "modelserving.volcano.sh/role"),
}


def sanitised(label_key: str, prefix: str = "") -> str:
    """A Kubernetes label key as Prometheus Operator and kube-state-metrics spell it in a series."""
    return prefix + re.sub(r"[^a-zA-Z0-9_]", "_", label_key)


def with_preset(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a mapping section, as read) with its preset's fields under the fields it gives itself;
    ``gpu_join`` is merged field by field. Unknown presets are left for validation to refuse."""
    name = data.get("preset")
    if not isinstance(name, str) or name not in PRESETS:
        return data
    merged: dict[str, Any] = {k: v for k, v in PRESETS[name].items() if k != "gpu_join"}
    join = dict(PRESETS[name]["gpu_join"])
    merged.update({k: v for k, v in data.items() if k != "gpu_join"})
    given_join = data.get("gpu_join", {})
    if given_join is None or not isinstance(given_join, dict):
        merged["gpu_join"] = given_join  # null turns the join off; anything else is refused by validation
    else:
        join.update(given_join)
        merged["gpu_join"] = join
    return merged


PROMQL_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"


class PodJoinConfig(StrictModel):
    """DCGM series joined to the pods' labels in ``kube_pod_labels`` (metrics.promql.PodJoin)."""

    service_selector: str = field_default(PodJoin, "service_selector")
    prefill_selector: str = field_default(PodJoin, "prefill_selector")
    decode_selector: str = field_default(PodJoin, "decode_selector")
    pod_label: str = Field(default=field_default(PodJoin, "pod_label"), pattern=PROMQL_LABEL)  # exported_pod, …
    namespace_label: str = Field(default=field_default(PodJoin, "namespace_label"), pattern=PROMQL_LABEL)
    metric: str = Field(default=field_default(PodJoin, "metric"), pattern=METRIC_NAME)

    def to_join(self) -> PodJoin:
        return PodJoin(
            self.service_selector,
            self.prefill_selector,
            self.decode_selector,
            self.pod_label,
            self.namespace_label,
            self.metric,
        )


class MappingConfig(StrictModel):
    """How Prometheus series map to services and roles (metrics.promql.MetricMapping); ``preset`` fills
    the selectors for a serving stack (config.presets), the fields given beside it win."""

    preset: Literal["vllm", "sglang", "dynamo", "llm-d", "aibrix", "kthena"] | None = None
    engine: Literal["vllm", "sglang"] = field_default(MetricMapping, "engine").value
    spelling: Literal["colon", "underscore", "both"] = field_default(MetricMapping, "spelling").value
    service_selector: str = field_default(MetricMapping, "service_selector")
    prefill_selector: str = field_default(MetricMapping, "prefill_selector")
    decode_selector: str = field_default(MetricMapping, "decode_selector")
    gpu_service_selector: str | None = field_default(MetricMapping, "gpu_service_selector")
    gpu_prefill_selector: str | None = field_default(MetricMapping, "gpu_prefill_selector")
    gpu_decode_selector: str | None = field_default(MetricMapping, "gpu_decode_selector")
    gpu_join: PodJoinConfig | None = Field(default_factory=PodJoinConfig)  # null: DCGM series carry the labels
    frontend: Literal["engine", "dynamo"] = field_default(MetricMapping, "frontend").value
    dynamo_selector: str = field_default(MetricMapping, "dynamo_selector")
    dynamo_prefix: str = Field(default=field_default(MetricMapping, "dynamo_prefix"), pattern=METRIC_NAME)
    ttft_role: Literal["prefill", "decode"] = field_default(MetricMapping, "ttft_role").value
    tbt_role: Literal["prefill", "decode"] = field_default(MetricMapping, "tbt_role").value
    extra_matchers: list[str] = Field(default_factory=list)
    instance_labels: list[Annotated[str, Field(pattern=PROMQL_LABEL)]] = Field(
        default_factory=lambda: list(field_default(MetricMapping, "instance_labels")), min_length=1
    )

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return with_preset(data) if isinstance(data, dict) else data

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
            gpu_join=None if self.gpu_join is None else self.gpu_join.to_join(),
            frontend=Frontend(self.frontend),
            dynamo_selector=self.dynamo_selector,
            dynamo_prefix=self.dynamo_prefix,
            ttft_role=Role(self.ttft_role),
            tbt_role=Role(self.tbt_role),
            extra_matchers=tuple(self.extra_matchers),
            instance_labels=tuple(self.instance_labels),
        )
