"""PromQL for the engine metrics HeteroScale reads (vLLM, SGLang, NVIDIA Dynamo's frontend, DCGM).

Pure string building, no I/O: :class:`MetricMapping` says which engine serves a service, how metric
names are spelled and which label matchers pick a service's and a role's series; :class:`Queries`
turns that into the PromQL of every signal of an :class:`~heteroscale.domain.observation.Observation`.

Metric names (GPUS.md): a vLLM or SGLang series is spelled ``vllm:x`` when the engine's client library
keeps the colon and ``vllm_x`` when it escapes it (prometheus_client ≥ 0.26 answering an OpenMetrics
scrape). ``Spelling.BOTH`` matches either with ``{__name__=~"vllm[:_]x"}``; one engine instance only
ever exposes one spelling, so nothing is counted twice.

Selectors are templates with ``{service}`` replaced by the service name (PromQL-escaped), e.g.
``service="{service}"`` when pods carry a ``service`` label relabelled into their series, or
``model_name=~"{service}(-.*)?"`` to map vLLM's ``model_name`` label by regular expression.

Instances are pods: a data-parallel engine reports one series per rank (``engine="0"``, ``dp_rank``…),
sometimes from one scrape target per rank, so instances are counted by ``instance_labels``
(``namespace``, ``pod``), never by series or by scrape target.

DCGM series carry no ``role`` or ``service`` label: dcgm-exporter with its Kubernetes pod mapping labels
each GPU's series with the ``pod``, ``namespace`` and ``container`` using it (``exported_pod`` /
``exported_namespace`` when Prometheus renames them to keep its own target labels). A :class:`PodJoin`
joins them to kube-state-metrics' ``kube_pod_labels`` (one series per pod, with the pod labels that its
``--metric-labels-allowlist`` names, spelled ``label_<sanitised key>``) to pick a service's and a role's
GPUs.

Engine quirks handled here: SGLang's token counters grow only when a request finishes, so its decode TPS
lags by a whole output; its ``gen_throughput`` gauge is updated every few decode steps and is read
instead. vLLM before v0.9.1 (PR #18354, 2025-05) exposed prefix-cache hits only as
``gpu_prefix_cache_hits``: :meth:`Queries.legacy_prefix_cache_pods` finds such pods, and the source then
refuses the prefill TPS rather than overstate it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from heteroscale.domain.hardware import Role


class Engine(StrEnum):
    VLLM = "vllm"
    SGLANG = "sglang"


class Spelling(StrEnum):
    COLON = "colon"  # vllm:prompt_tokens_total
    UNDERSCORE = "underscore"  # vllm_prompt_tokens_total
    BOTH = "both"  # either, matched by a regular expression on __name__


class Frontend(StrEnum):
    """Where end-to-end latency and the request rate come from."""

    ENGINE = "engine"  # the engines' own histograms (TTFT on ttft_role, TBT on tbt_role)
    DYNAMO = "dynamo"  # NVIDIA Dynamo's frontend (dynamo_frontend_*), which sees whole requests


@dataclass(frozen=True, slots=True)
class EngineNames:
    """Metric names of one engine, without the ``<engine>:`` prefix; alternatives in preference order."""

    prompt_tokens: str
    cached_prompt_tokens: str  # prefix-cache hits, in tokens
    generation_tokens: str
    ttft_histogram: tuple[str, ...]
    tbt_histogram: tuple[str, ...]
    waiting: str
    running: str
    kv_usage: tuple[str, ...]
    requests: str  # finished requests (counter)
    prompt_length_histogram: str | None
    output_length_histogram: str | None
    # a generated-tokens/s gauge updated while requests run (read instead of the counter when it exists)
    step_generation_tps: str | None = None
    # prefix-cache hits under the name an older release used (its pods are refused, see the module doc)
    legacy_cached_prompt_tokens: str | None = None


ENGINE_NAMES: dict[Engine, EngineNames] = {
    Engine.VLLM: EngineNames(
        prompt_tokens="prompt_tokens_total",
        cached_prompt_tokens="prefix_cache_hits_total",
        generation_tokens="generation_tokens_total",
        ttft_histogram=("time_to_first_token_seconds",),
        tbt_histogram=("inter_token_latency_seconds", "time_per_output_token_seconds"),
        waiting="num_requests_waiting",
        running="num_requests_running",
        kv_usage=("kv_cache_usage_perc", "gpu_cache_usage_perc"),
        requests="request_success_total",
        prompt_length_histogram="request_prompt_tokens",
        output_length_histogram="request_generation_tokens",
        legacy_cached_prompt_tokens="gpu_prefix_cache_hits_total",  # vLLM ≤ v0.9.0, sglang has none
    ),
    Engine.SGLANG: EngineNames(
        prompt_tokens="prompt_tokens_total",
        cached_prompt_tokens="cached_tokens_total",
        generation_tokens="generation_tokens_total",
        ttft_histogram=("time_to_first_token_seconds",),
        tbt_histogram=("inter_token_latency_seconds", "time_per_output_token_seconds"),
        waiting="num_queue_reqs",
        running="num_running_reqs",
        kv_usage=("token_usage",),
        requests="num_requests_total",
        prompt_length_histogram=None,
        output_length_histogram=None,
        # sglang/srt/metrics/collector.py (SchedulerMetricsCollector): set by the scheduler's decode stats
        step_generation_tps="gen_throughput",
    ),
}

DYNAMO_PREFIX = "dynamo_frontend_"  # Dynamo's default; its frontend takes --metrics-prefix / DYN_METRICS_PREFIX
DCGM_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"  # percent
DCGM_SM_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE"  # 0–1

QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def escape_label_value(value: str) -> str:
    """A string safe inside a double-quoted PromQL label value."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def duration(seconds: float) -> str:
    """A PromQL range duration in whole milliseconds (``[90000ms]``), at least 1 ms."""
    return f"{max(1, round(seconds * 1000))}ms"


def check_selector_template(template: str) -> str | None:
    """None if ``template`` is usable as label matchers (``{service}`` the only placeholder), else why not."""
    if "{" in template.replace("{service}", "") or "}" in template.replace("{service}", ""):
        return "only the placeholder {service} may appear in braces"
    if template.strip().startswith(","):
        return "must not start with a comma"
    return None


@dataclass(frozen=True, slots=True)
class PodJoin:
    """How DCGM series are tied to a service and a role: through ``metric`` (kube-state-metrics'
    ``kube_pod_labels``), whose selectors (templates with ``{service}``) pick the pods; the DCGM series'
    own pod and namespace labels are ``pod_label`` and ``namespace_label``."""

    service_selector: str = 'label_heteroscale_io_service="{service}"'
    prefill_selector: str = 'label_heteroscale_io_role="prefill"'
    decode_selector: str = 'label_heteroscale_io_role="decode"'
    pod_label: str = "pod"
    namespace_label: str = "namespace"
    metric: str = "kube_pod_labels"

    def role_selector(self, role: Role) -> str:
        return self.prefill_selector if role is Role.PREFILL else self.decode_selector


@dataclass(frozen=True, slots=True)
class MetricMapping:
    """How a service's and a role's series are found, and which names they carry."""

    engine: Engine = Engine.VLLM
    spelling: Spelling = Spelling.BOTH
    service_selector: str = 'service="{service}"'
    prefill_selector: str = 'role="prefill"'
    decode_selector: str = 'role="decode"'
    # matchers on the DCGM series themselves; None: the engine selectors above (only right where DCGM
    # series were relabelled with the engines' labels). With gpu_join they only narrow the DCGM series.
    gpu_service_selector: str | None = None
    gpu_prefill_selector: str | None = None
    gpu_decode_selector: str | None = None
    # DCGM series joined to the pods' labels (the module doc); None: matched by the selectors above alone
    gpu_join: PodJoin | None = field(default_factory=PodJoin)
    frontend: Frontend = Frontend.ENGINE
    dynamo_selector: str = 'model="{service}"'
    dynamo_prefix: str = DYNAMO_PREFIX
    ttft_role: Role = Role.PREFILL  # with Frontend.ENGINE: whose TTFT histogram is the service's TTFT
    tbt_role: Role = Role.DECODE
    extra_matchers: tuple[str, ...] = field(default=())  # ANDed into every selector, e.g. 'namespace="llm"'
    # what tells instances apart when counting those that report: one pod is one instance, however many
    # series (one per data-parallel rank) and scrape targets (one per rank's port) it has
    instance_labels: tuple[str, ...] = ("namespace", "pod")

    def role_selector(self, role: Role) -> str:
        return self.prefill_selector if role is Role.PREFILL else self.decode_selector

    def gpu_role_selector(self, role: Role) -> str:
        chosen = self.gpu_prefill_selector if role is Role.PREFILL else self.gpu_decode_selector
        if chosen is None:
            return "" if self.gpu_join is not None else self.role_selector(role)
        return chosen

    def templates(self) -> dict[str, str]:
        """Every selector template by field name (for validation)."""
        out = {
            "service_selector": self.service_selector,
            "prefill_selector": self.prefill_selector,
            "decode_selector": self.decode_selector,
            "dynamo_selector": self.dynamo_selector,
        }
        for name in ("gpu_service_selector", "gpu_prefill_selector", "gpu_decode_selector"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.gpu_join is not None:
            out["gpu_join.service_selector"] = self.gpu_join.service_selector
            out["gpu_join.prefill_selector"] = self.gpu_join.prefill_selector
            out["gpu_join.decode_selector"] = self.gpu_join.decode_selector
        for i, matcher in enumerate(self.extra_matchers):
            out[f"extra_matchers[{i}]"] = matcher
        return out


class Queries:
    """PromQL of every signal of one service under one mapping, for a rate window of ``window_s``.

    With ``staleness_s``, a role's token rates sum only the instances whose running gauge has a sample
    newer than that, and :meth:`reporting_instances` counts exactly the instances in that sum: a pod
    whose scrapes stopped leaves both at once, one whose series are too new for a rate is in neither,
    so TPS × serving ÷ reporting estimates the whole role.
    """

    def __init__(self, mapping: MetricMapping, service: str, window_s: float, staleness_s: float | None = None) -> None:
        self.mapping = mapping
        self.names = ENGINE_NAMES[mapping.engine]
        self.service = service
        self.window = duration(window_s)
        self.staleness_s = staleness_s

    # --- selectors ---------------------------------------------------------------------------

    def _fill(self, template: str) -> str:
        return template.replace("{service}", escape_label_value(self.service))

    def _matchers(self, *templates: str) -> list[str]:
        parts = [self._fill(t).strip() for t in (*self.mapping.extra_matchers, *templates)]
        return [p for p in parts if p]

    def engine_metric(self, name: str, role: Role | None, suffix: str = "") -> str:
        """``{__name__…, service…, role…}`` for engine metric ``name`` (no prefix) of a role or any role."""
        prefix = self.mapping.engine.value
        full = f"{name}{suffix}"
        if self.mapping.spelling is Spelling.COLON:
            name_matcher = f'__name__="{prefix}:{full}"'
        elif self.mapping.spelling is Spelling.UNDERSCORE:
            name_matcher = f'__name__="{prefix}_{full}"'
        else:
            name_matcher = f'__name__=~"{prefix}[:_]{re.escape(full)}"'
        templates = [self.mapping.service_selector]
        if role is not None:
            templates.append(self.mapping.role_selector(role))
        return "{" + ", ".join([name_matcher, *self._matchers(*templates)]) + "}"

    def gpu_metric(self, name: str, role: Role) -> str:
        """The selector of DCGM metric ``name``: its own matchers only (with a join, :meth:`gpu_series`
        narrows it to the role's pods)."""
        service = self.mapping.gpu_service_selector
        if service is None:
            service = "" if self.mapping.gpu_join is not None else self.mapping.service_selector
        templates = [service, self.mapping.gpu_role_selector(role)]
        return "{" + ", ".join([f'__name__="{name}"', *self._matchers(*templates)]) + "}"

    def pod_labels(self, role: Role) -> str | None:
        """The ``kube_pod_labels`` selector of the role's pods, None without a join."""
        join = self.mapping.gpu_join
        if join is None:
            return None
        matchers = self._matchers(join.service_selector, join.role_selector(role))
        return "{" + ", ".join([f'__name__="{join.metric}"', *matchers]) + "}"

    def gpu_series(self, expression: str, role: Role) -> str:
        """``expression`` (per DCGM series) kept only for the role's pods: joined on namespace and pod."""
        join = self.mapping.gpu_join
        labels = self.pod_labels(role)
        if join is None or labels is None:
            return expression
        for ours, theirs in (("pod", join.pod_label), ("namespace", join.namespace_label)):
            if theirs != ours:  # exported_pod → pod, so the join matches kube_pod_labels' own labels
                expression = f'label_replace({expression}, "{ours}", "$1", "{theirs}", "(.+)")'
        return f"({expression} and on(namespace, pod) {labels})"

    def dynamo_metric(self, name: str) -> str:
        prefix = self.mapping.dynamo_prefix
        return "{" + ", ".join([f'__name__="{prefix}{name}"', *self._matchers(self.mapping.dynamo_selector)]) + "}"

    # --- signals -----------------------------------------------------------------------------

    def _fresh_rate(self, name: str, role: Role) -> str:
        """``rate(...)`` of a role's counter per series, of the fresh instances only when ``staleness_s`` is set."""
        return self._fresh(f"rate({self.engine_metric(name, role)}[{self.window}])", role)

    def _fresh(self, expression: str, role: Role) -> str:
        """``expression`` of the instances with a fresh running gauge only (when ``staleness_s`` is set)."""
        if self.staleness_s is None:
            return expression
        on = ", ".join(self.mapping.instance_labels)
        gauge = self.engine_metric(self.names.running, role)
        return f"({expression} and on({on}) (timestamp({gauge}) > (time() - {self.staleness_s:g})))"

    def _role_rate(self, name: str, role: Role) -> str:
        return f"sum({self._fresh_rate(name, role)})"

    def _step_generation(self) -> str | None:
        """Per series, the decode role's generated tokens/s over the window from the engine's per-step
        gauge, of the instances that ran a request in the window (the gauge keeps its last value when idle)."""
        name = self.names.step_generation_tps
        if name is None:
            return None
        on = ", ".join(self.mapping.instance_labels)
        gauge = self.engine_metric(name, Role.DECODE)
        running = self.engine_metric(self.names.running, Role.DECODE)
        busy = f"(max by ({on}) (max_over_time({running}[{self.window}])) > 0)"
        return self._fresh(f"(avg_over_time({gauge}[{self.window}]) and on({on}) {busy})", Role.DECODE)

    def prefill_tps(self) -> str:
        """Cache-missed prompt tokens per second on the prefill role: prompt − prefix-cache hits."""
        prompt = self._role_rate(self.names.prompt_tokens, Role.PREFILL)
        hits = self._role_rate(self.names.cached_prompt_tokens, Role.PREFILL)
        return f"{prompt} - ({hits} or vector(0))"

    def decode_tps(self) -> str:
        step = self._step_generation()
        if step is not None:
            return f"sum({step})"
        return self._role_rate(self.names.generation_tokens, Role.DECODE)

    def legacy_prefix_cache_pods(self) -> str | None:
        """Prefill instances that expose prefix-cache hits only under the old name (None: the engine has
        no such name). Prompt − hits cannot be computed for them."""
        legacy = self.names.legacy_cached_prompt_tokens
        if legacy is None:
            return None
        by = ", ".join(self.mapping.instance_labels)
        old = self.engine_metric(legacy, Role.PREFILL)
        new = self.engine_metric(self.names.cached_prompt_tokens, Role.PREFILL)
        return f"count(count by ({by}) ({old}) unless on({by}) count by ({by}) ({new}))"

    def tps(self, role: Role) -> str:
        return self.prefill_tps() if role is Role.PREFILL else self.decode_tps()

    def freshest_sample(self, role: Role) -> str:
        """Epoch seconds of the newest sample of the role's running gauge (staleness)."""
        return f"max(timestamp({self.engine_metric(self.names.running, role)}))"

    def reporting_instances(self, role: Role) -> str:
        """Instances (distinct ``instance_labels`` values) whose token counter is in the role's TPS: it has
        a rate over the window (two samples or more) and, with ``staleness_s``, a fresh running gauge."""
        counter = self.names.prompt_tokens if role is Role.PREFILL else self.names.generation_tokens
        by = ", ".join(self.mapping.instance_labels)
        step = self._step_generation() if role is Role.DECODE else None
        if step is not None:  # the gauge's instances, whether busy or idle (an idle one serves 0 tokens/s)
            gauge = self.engine_metric(self.names.step_generation_tps or "", role)
            return f"count(count by ({by}) ({self._fresh(f'avg_over_time({gauge}[{self.window}])', role)}))"
        return f"count(count by ({by}) ({self._fresh_rate(counter, role)}))"

    def queue_len(self, role: Role) -> str:
        return f"sum({self.engine_metric(self.names.waiting, role)})"

    def running(self, role: Role) -> str:
        return f"sum({self.engine_metric(self.names.running, role)})"

    def kv_usage(self, role: Role) -> tuple[str, ...]:
        """Mean KV-cache usage per instance (its ranks averaged first), averaged over the instances."""
        by = ", ".join(self.mapping.instance_labels)
        return tuple(
            f"avg(avg by ({by}) (avg_over_time({self.engine_metric(n, role)}[{self.window}])))"
            for n in self.names.kv_usage
        )

    def _gpu_mean(self, name: str, role: Role) -> str:
        return f"avg({self.gpu_series(f'avg_over_time({self.gpu_metric(name, role)}[{self.window}])', role)})"

    def gpu_util(self, role: Role) -> str:
        return f"{self._gpu_mean(DCGM_GPU_UTIL, role)} / 100"

    def sm_activity(self, role: Role) -> str:
        return self._gpu_mean(DCGM_SM_ACTIVE, role)

    def gpu_freshest_sample(self, role: Role) -> str:
        return f"max({self.gpu_series(f'timestamp({self.gpu_metric(DCGM_GPU_UTIL, role)})', role)})"

    def _quantile(self, q: float, bucket_selector: str) -> str:
        return f"histogram_quantile({q:g}, sum by (le) (rate({bucket_selector}[{self.window}])))"

    def ttft(self, q: float) -> tuple[str, ...]:
        if self.mapping.frontend is Frontend.DYNAMO:
            return (self._quantile(q, self.dynamo_metric("time_to_first_token_seconds_bucket")),)
        role = self.mapping.ttft_role
        return tuple(self._quantile(q, self.engine_metric(n, role, "_bucket")) for n in self.names.ttft_histogram)

    def tbt(self, q: float) -> tuple[str, ...]:
        if self.mapping.frontend is Frontend.DYNAMO:
            return (self._quantile(q, self.dynamo_metric("inter_token_latency_seconds_bucket")),)
        role = self.mapping.tbt_role
        return tuple(self._quantile(q, self.engine_metric(n, role, "_bucket")) for n in self.names.tbt_histogram)

    def requests_per_s(self) -> str:
        if self.mapping.frontend is Frontend.DYNAMO:
            return f"sum(rate({self.dynamo_metric('requests_total')}[{self.window}]))"
        return f"sum(rate({self.engine_metric(self.names.requests, Role.DECODE)}[{self.window}]))"

    def _mean_of(self, selector_sum: str, selector_count: str) -> str:
        return f"sum(rate({selector_sum}[{self.window}])) / sum(rate({selector_count}[{self.window}]))"

    def mean_input_tokens(self) -> str | None:
        if self.mapping.frontend is Frontend.DYNAMO:
            base = "input_sequence_tokens"
            return self._mean_of(self.dynamo_metric(f"{base}_sum"), self.dynamo_metric(f"{base}_count"))
        name = self.names.prompt_length_histogram
        if name is None:
            return None
        role = Role.PREFILL
        return self._mean_of(self.engine_metric(name, role, "_sum"), self.engine_metric(name, role, "_count"))

    def mean_output_tokens(self) -> str | None:
        if self.mapping.frontend is Frontend.DYNAMO:
            base = "output_sequence_tokens"
            return self._mean_of(self.dynamo_metric(f"{base}_sum"), self.dynamo_metric(f"{base}_count"))
        name = self.names.output_length_histogram
        if name is None:
            return None
        role = Role.DECODE
        return self._mean_of(self.engine_metric(name, role, "_sum"), self.engine_metric(name, role, "_count"))
