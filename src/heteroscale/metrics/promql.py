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
    ),
}

DYNAMO_PREFIX = "dynamo_frontend_"
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
class MetricMapping:
    """How a service's and a role's series are found, and which names they carry."""

    engine: Engine = Engine.VLLM
    spelling: Spelling = Spelling.BOTH
    service_selector: str = 'service="{service}"'
    prefill_selector: str = 'role="prefill"'
    decode_selector: str = 'role="decode"'
    # DCGM series are labelled by the exporter (pod, namespace, …); None: the engine selectors above
    gpu_service_selector: str | None = None
    gpu_prefill_selector: str | None = None
    gpu_decode_selector: str | None = None
    frontend: Frontend = Frontend.ENGINE
    dynamo_selector: str = 'model="{service}"'
    ttft_role: Role = Role.PREFILL  # with Frontend.ENGINE: whose TTFT histogram is the service's TTFT
    tbt_role: Role = Role.DECODE
    extra_matchers: tuple[str, ...] = field(default=())  # ANDed into every selector, e.g. 'namespace="llm"'
    # what tells instances apart when counting those that report: one scrape target (``instance``) or pod
    # is one instance, however many series it has (a data-parallel engine reports one per rank)
    instance_labels: tuple[str, ...] = ("instance", "pod")

    def role_selector(self, role: Role) -> str:
        return self.prefill_selector if role is Role.PREFILL else self.decode_selector

    def gpu_role_selector(self, role: Role) -> str:
        chosen = self.gpu_prefill_selector if role is Role.PREFILL else self.gpu_decode_selector
        return self.role_selector(role) if chosen is None else chosen

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
        service = self.mapping.gpu_service_selector
        templates = [
            self.mapping.service_selector if service is None else service,
            self.mapping.gpu_role_selector(role),
        ]
        return "{" + ", ".join([f'__name__="{name}"', *self._matchers(*templates)]) + "}"

    def dynamo_metric(self, name: str) -> str:
        return (
            "{" + ", ".join([f'__name__="{DYNAMO_PREFIX}{name}"', *self._matchers(self.mapping.dynamo_selector)]) + "}"
        )

    # --- signals -----------------------------------------------------------------------------

    def _fresh_rate(self, name: str, role: Role) -> str:
        """``rate(...)`` of a role's counter per series, of the fresh instances only when ``staleness_s`` is set."""
        rate = f"rate({self.engine_metric(name, role)}[{self.window}])"
        if self.staleness_s is None:
            return rate
        on = ", ".join(self.mapping.instance_labels)
        gauge = self.engine_metric(self.names.running, role)
        return f"({rate} and on({on}) (timestamp({gauge}) > (time() - {self.staleness_s:g})))"

    def _role_rate(self, name: str, role: Role) -> str:
        return f"sum({self._fresh_rate(name, role)})"

    def prefill_tps(self) -> str:
        """Cache-missed prompt tokens per second on the prefill role: prompt − prefix-cache hits."""
        prompt = self._role_rate(self.names.prompt_tokens, Role.PREFILL)
        hits = self._role_rate(self.names.cached_prompt_tokens, Role.PREFILL)
        return f"{prompt} - ({hits} or vector(0))"

    def decode_tps(self) -> str:
        return self._role_rate(self.names.generation_tokens, Role.DECODE)

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
        return f"count(count by ({by}) ({self._fresh_rate(counter, role)}))"

    def queue_len(self, role: Role) -> str:
        return f"sum({self.engine_metric(self.names.waiting, role)})"

    def running(self, role: Role) -> str:
        return f"sum({self.engine_metric(self.names.running, role)})"

    def kv_usage(self, role: Role) -> tuple[str, ...]:
        return tuple(f"avg(avg_over_time({self.engine_metric(n, role)}[{self.window}]))" for n in self.names.kv_usage)

    def gpu_util(self, role: Role) -> str:
        return f"avg(avg_over_time({self.gpu_metric(DCGM_GPU_UTIL, role)}[{self.window}])) / 100"

    def sm_activity(self, role: Role) -> str:
        return f"avg(avg_over_time({self.gpu_metric(DCGM_SM_ACTIVE, role)}[{self.window}]))"

    def gpu_freshest_sample(self, role: Role) -> str:
        return f"max(timestamp({self.gpu_metric(DCGM_GPU_UTIL, role)}))"

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
