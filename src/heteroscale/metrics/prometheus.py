"""PrometheusSource: a MetricSource over the Prometheus HTTP API (``/api/v1/query`` with ``time=``).

Every signal is one instant query (``promql.Queries``); the answers are folded into an
:class:`Observation`. Freshness is judged at ``now_s``; the signals are read over the window that ends
at the service's newest sample (at most ``staleness_s`` before ``now_s``), so a scrape gap never reads
as a drop in load. What cannot be read is said, never papered over:

* the server cannot be reached, times out, answers an HTTP error or something that is not a
  Prometheus answer → :class:`MetricsUnavailable` naming the server, the signal and the cause;
* a role with no series at all → its signals are ``None`` and ``missing`` says which selector found
  nothing (with ready instances in the cluster the policy then holds: a partial observation);
* a role whose newest sample is older than ``staleness_s`` → ``stale=True`` and ``missing`` gives the
  age; DCGM series are checked on their own, a stale GPU signal is dropped (``None``) with a note;
* NaN or ±Inf (e.g. a histogram quantile over a window without requests) → ``None`` with a note;
  so is a value no signal can take (a negative queue, a utilisation above 1, a negative count): the
  answer is wrong, so it is not used; an instance count that is not one reads as 0 (not measured);
* an answer over ``MAX_ANSWER_BYTES``, not JSON, nested too deeply or of the wrong shape →
  :class:`MetricsUnavailable`.

All waiting is bounded: each query by ``timeout_s``, one ``observe`` by ``budget_s`` on ``clock``.

Credentials (:mod:`.auth`): a bearer-token file or basic auth, a CA bundle, a client certificate;
TLS verification is on unless ``insecure_skip_verify``. ``user:password@`` in the URL becomes basic
auth and leaves the URL, so ``base_url`` — and every message that names the server — carries no
secret; a known secret that still shows up in a message (an exception's text) is blanked.

``instances_ready`` counts the role's instances that report: distinct ``MetricMapping.instance_labels``
values (namespace and pod) with a fresh running gauge and a token rate over the window, so the several
series (and scrape targets) of one data-parallel engine count once; the role's TPS sums exactly those
instances. A vLLM prefill pod that reports prefix-cache hits only under the pre-v0.9.1 name makes the
prefill TPS ``None`` with one note saying so (prompt tokens alone would overstate it).
The controller compares the count with the serving instances (:mod:`heteroscale.policy.coverage`).
"""

from __future__ import annotations

import json
import logging
import math
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from heteroscale.clock import Clock, WallClock
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation, RoleSignals
from heteroscale.errors import MetricsUnavailable
from heteroscale.metrics.auth import (
    BearerTokenFile,
    Credentials,
    TlsFiles,
    client_auth,
    scrub,
    split_userinfo,
    ssl_context,
)
from heteroscale.metrics.promql import QUANTILES, MetricMapping, Queries

log = logging.getLogger(__name__)

# Every query is one aggregate: its answer is a few hundred bytes. A bigger one is not read to the end.
MAX_ANSWER_BYTES = 1 << 20
MAX_INSTANCES = 1_000_000  # an instance count above this is not a count of real instances
_FRACTION_SLACK = 1e-9  # float sums of values ≤ 1 may land a hair above 1
UNIT = (0.0, 1.0 + _FRACTION_SLACK)  # utilisation, SM activity, KV-cache usage: fractions
NON_NEGATIVE = (0.0, math.inf)  # queues, batches, latencies, rates, token means
ANY_REAL = (-math.inf, math.inf)  # TPS: a negative rate is clamped to 0 below, not refused


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a Prometheus base URL (None when it can). The URL itself is not repeated:
    it may carry a password."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "contains a space or a control character"
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        return f"not a valid URL ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if parsed.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    host = parsed.host
    if not host:
        return "has no host"
    if ":" not in host and not all(ch.isalnum() or ch in "-._" for ch in host):  # IPv6 hosts hold ':'
        return "has a host name with characters a host name cannot hold"
    if port is not None and not 1 <= port <= 65535:
        return f"port {port} is outside 1–65535"
    if parsed.query or parsed.fragment:
        return "must not carry a query (?…) or a fragment (#…): queries are appended to its path"
    return None


class PrometheusSource:
    """MetricSource over Prometheus.

    ``mapping`` applies to every service unless ``service_mappings`` has one for it (a service on
    SGLang beside services on vLLM, say). ``credentials``: how to authenticate and verify TLS (files
    are read here: a bad one raises :class:`~heteroscale.metrics.auth.CredentialError`). ``transport``
    is for tests (an ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        mapping: MetricMapping,
        timeout_s: float = 5.0,
        staleness_s: float = 60.0,
        clock: Clock | None = None,
        *,
        budget_s: float | None = None,
        service_mappings: Mapping[str, MetricMapping] | None = None,
        credentials: Credentials | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if staleness_s <= 0:
            raise ValueError(f"staleness_s must be > 0, got {staleness_s}")
        clean_url, username, password = split_userinfo(base_url.rstrip("/"))
        creds = credentials if credentials is not None else Credentials()
        if username is not None:
            if creds.bearer_token_file is not None or creds.username is not None:
                raise ValueError("credentials in the URL and in bearer_token_file / basic_auth exclude each other")
            creds = Credentials(username=username, password=password, tls=creds.tls)
        problem = url_problem(clean_url)
        if problem is not None:
            raise ValueError(f"prometheus url: {problem}")
        self.base_url = clean_url
        self.credentials = creds
        self.mapping = mapping
        self.service_mappings = dict(service_mappings or {})
        self.timeout_s = timeout_s
        self.staleness_s = staleness_s
        self.budget_s = 4.0 * timeout_s if budget_s is None else budget_s
        self.clock: Clock = clock if clock is not None else WallClock()
        if creds.tls.insecure_skip_verify:
            log.warning("prometheus %s: TLS verification is off (insecure_skip_verify)", self.base_url)
        self._auth = client_auth(creds, self.clock)
        verify: ssl.SSLContext | bool = True if creds.tls == TlsFiles() else ssl_context(creds.tls)
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, transport=transport, auth=self._auth, verify=verify
        )

    def _scrub(self, text: str) -> str:
        """``text`` without the password or the current token."""
        token = self._auth.secrets if isinstance(self._auth, BearerTokenFile) else ()
        return scrub(text, (self.credentials.password, *token))

    def close(self) -> None:
        self._client.close()

    def mapping_for(self, service: str) -> MetricMapping:
        """The service's own mapping if it has one (e.g. another engine), else the default."""
        return self.service_mappings.get(service, self.mapping)

    # --- one query -----------------------------------------------------------------------------

    def query(self, promql: str, at_s: float, what: str, deadline_s: float | None = None) -> float | None:
        """The single value of an instant query at ``at_s``; None when it returns no series."""
        timeout_s = self.timeout_s
        if deadline_s is not None:
            left_s = deadline_s - self.clock.now_s()
            if left_s <= 0:
                raise MetricsUnavailable(
                    f"prometheus {self.base_url}: observation budget of {self.budget_s:g} s spent before {what}"
                )
            timeout_s = min(timeout_s, left_s)
        where = f"prometheus {self.base_url}: {what}"
        params = {"query": promql, "time": f"{at_s:.3f}"}
        try:
            with self._client.stream("GET", "/api/v1/query", params=params, timeout=timeout_s) as response:
                content = _read_capped(response, where)
        except httpx.TimeoutException as exc:
            raise MetricsUnavailable(f"{where}: time-out after {timeout_s:.3g} s") from exc
        except httpx.HTTPError as exc:
            raise MetricsUnavailable(self._scrub(f"{where}: {_unreachable(exc)}")) from exc
        body = _json_or_none(content)
        if response.status_code != 200:
            detail = ""
            if isinstance(body, dict) and isinstance(body.get("error"), str):
                detail = f": {_short(body.get('errorType', 'error'))}: {_short(body['error'])}"
            elif response.status_code in (401, 403):
                detail = f" (refused with {self.credentials.describe()}: check the credentials)"
            raise MetricsUnavailable(self._scrub(f"{where}: HTTP {response.status_code}{detail}"))
        return _single_value(body, where)

    def _first(self, candidates: Sequence[str], at_s: float, what: str, deadline_s: float) -> float | None:
        """The first alternative that returns a series (e.g. ``inter_token_latency`` before ``tpot``)."""
        for promql in candidates:
            value = self.query(promql, at_s, what, deadline_s)
            if value is not None:
                return value
        return None

    # --- the observation ------------------------------------------------------------------------

    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        if window_s <= 0:
            raise MetricsUnavailable(f"observation window must be > 0 s, got {window_s}")
        deadline_s = self.clock.now_s() + self.budget_s
        q = Queries(self.mapping_for(service), service, window_s, self.staleness_s)
        missing: list[str] = []
        stale = False

        def number(
            name: str, value: float | None, note_absent: bool = False, bounds: tuple[float, float] = NON_NEGATIVE
        ) -> float | None:
            if value is None:
                if note_absent:
                    missing.append(f"{name}: no series")
                return None
            if not math.isfinite(value):
                missing.append(f"{name}: {value} (not a finite number)")
                return None
            low, high = bounds
            if not low <= value <= high:
                missing.append(f"{name}: {value:g} is outside [{low:g}, {high:g}], not used (a wrong answer)")
                return None
            return value

        def count(name: str, value: float | None) -> int:
            """An instance count; anything else reads 0, i.e. not measured (policies then fall back
            on the cluster's own count)."""
            if value is None:
                return 0
            if not (math.isfinite(value) and 0 <= value <= MAX_INSTANCES and value.is_integer()):
                missing.append(f"{name}: {value:g} is not an instance count, not used")
                return 0
            return int(value)

        newest: dict[Role, float | None] = {}
        for role in Role:
            newest_s = self.query(q.freshest_sample(role), now_s, f"{role.value} freshness", deadline_s)
            if newest_s is not None and not math.isfinite(newest_s):
                # no usable time for the newest sample: as good as no sample at all
                missing.append(f"{role.value}: newest sample time {newest_s} is not a finite number")
                newest_s = None
            newest[role] = newest_s
        seen = [t for t in newest.values() if t is not None]
        # Rates are taken over a window that ends at the newest sample, not at now: when scrapes stop,
        # a window ending at now would be partly empty and rate() would read low (a false scale-in)
        # until the samples count as stale. The window moves back at most staleness_s.
        at_s = min(now_s, max(seen)) if seen else now_s
        roles: dict[Role, RoleSignals] = {}
        for role in Role:
            p = role.value
            newest_s = newest[role]
            if newest_s is None:
                selector = q.engine_metric(q.names.running, role)
                missing.append(f"{p}: no series matching {selector} (target down, series gone or never scraped)")
                roles[role] = RoleSignals(instances_ready=0, tps=None)
                continue
            age_s = now_s - newest_s
            if age_s > self.staleness_s:
                stale = True
                missing.append(f"{p}: newest sample is {age_s:.1f} s old (staleness limit {self.staleness_s:g} s)")
            ready = self.query(q.reporting_instances(role), at_s, f"{p} instances", deadline_s)
            tps = number(
                f"{p}.tps", self.query(q.tps(role), at_s, f"{p} tps", deadline_s), note_absent=True, bounds=ANY_REAL
            )
            if tps is not None and tps < 0:  # counters scraped a moment apart: hits may lead prompts briefly
                tps = 0.0
            legacy_q = q.legacy_prefix_cache_pods() if role is Role.PREFILL else None
            if tps is not None and legacy_q is not None:
                legacy = self.query(legacy_q, at_s, f"{p} prefix-cache metric", deadline_s)
                if legacy is not None and not (math.isfinite(legacy) and legacy >= 0):
                    missing.append(f"{p}.tps: not used: prefix-cache metric pod count {legacy} is impossible")
                    tps = None
                elif legacy:  # hits only under the old name: prompt − 0 would overstate the cache-missed TPS
                    missing.append(_legacy_prefix_cache_note(q, int(legacy)))
                    log.warning("%s: %s", service, missing[-1])
                    tps = None
            gpu_util = sm_activity = None
            gpu_newest_s = self.query(q.gpu_freshest_sample(role), now_s, f"{p} DCGM freshness", deadline_s)
            if gpu_newest_s is None:
                missing.append(f"{p}.gpu_util: no DCGM series")
            elif not math.isfinite(gpu_newest_s):
                missing.append(f"{p}.gpu_util: DCGM sample time {gpu_newest_s} is not a finite number")
            elif now_s - gpu_newest_s > self.staleness_s:
                missing.append(f"{p}.gpu_util: DCGM samples {now_s - gpu_newest_s:.1f} s old, dropped")
            else:
                gpu_at_s = min(now_s, gpu_newest_s)
                gpu_util = number(
                    f"{p}.gpu_util", self.query(q.gpu_util(role), gpu_at_s, f"{p} GPU util", deadline_s), bounds=UNIT
                )
                sm_activity = number(
                    f"{p}.sm_activity",
                    self.query(q.sm_activity(role), gpu_at_s, f"{p} SM activity", deadline_s),
                    bounds=UNIT,
                )
            roles[role] = RoleSignals(
                instances_ready=count(f"{p}.instances_ready", ready),
                tps=tps,
                gpu_util=gpu_util,
                sm_activity=sm_activity,
                queue_len=number(f"{p}.queue_len", self.query(q.queue_len(role), at_s, f"{p} queue", deadline_s)),
                running=number(f"{p}.running", self.query(q.running(role), at_s, f"{p} running", deadline_s)),
                kv_usage=number(
                    f"{p}.kv_usage", self._first(q.kv_usage(role), at_s, f"{p} KV usage", deadline_s), bounds=UNIT
                ),
            )
        latency: dict[str, float | None] = {}
        for label, quantile in QUANTILES:
            for name, candidates in (("ttft", q.ttft(quantile)), ("tbt", q.tbt(quantile))):
                key = f"{name}_{label}_s"
                latency[key] = number(key, self._first(candidates, at_s, f"{name} {label}", deadline_s))
        mean_in_q, mean_out_q = q.mean_input_tokens(), q.mean_output_tokens()
        requests_per_s = number("requests_per_s", self.query(q.requests_per_s(), at_s, "request rate", deadline_s))
        mean_in = None if mean_in_q is None else self.query(mean_in_q, at_s, "mean input tokens", deadline_s)
        mean_out = None if mean_out_q is None else self.query(mean_out_q, at_s, "mean output tokens", deadline_s)
        return Observation(
            service=service,
            window_start_s=at_s - window_s,
            window_end_s=at_s,
            prefill=roles[Role.PREFILL],
            decode=roles[Role.DECODE],
            ttft_p50_s=latency["ttft_p50_s"],
            ttft_p90_s=latency["ttft_p90_s"],
            ttft_p99_s=latency["ttft_p99_s"],
            tbt_p50_s=latency["tbt_p50_s"],
            tbt_p90_s=latency["tbt_p90_s"],
            tbt_p99_s=latency["tbt_p99_s"],
            requests_per_s=requests_per_s,
            mean_input_tokens=number("mean_input_tokens", mean_in),
            mean_output_tokens=number("mean_output_tokens", mean_out),
            stale=stale,
            missing=tuple(missing),
        )


def _legacy_prefix_cache_note(q: Queries, pods: int) -> str:
    legacy = q.names.legacy_cached_prompt_tokens
    return (
        f"prefill.tps: not used: {pods} prefill pod(s) expose prefix-cache hits only as "
        f"{q.mapping.engine.value}:{legacy} (vLLM before v0.9.1), not {q.names.cached_prompt_tokens}, so the "
        "cache-missed prompt tokens cannot be told apart: upgrade the engine (v0.10 or newer)"
    )


def _read_capped(response: httpx.Response, where: str) -> bytes:
    """The body, refused once it grows past ``MAX_ANSWER_BYTES`` (never read to the end)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise MetricsUnavailable(f"{where}: answer larger than {MAX_ANSWER_BYTES} bytes, not read")
        chunks.append(chunk)
    return b"".join(chunks)


def _unreachable(exc: httpx.HTTPError) -> str:
    """Why a request got no answer, TLS verification failures spelled out."""
    text = f"{type(exc).__name__}: {exc}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"TLS verification failed ({text}): the server's certificate is not trusted; "
            "give the CA that signed it as prometheus.tls.ca_file"
        )
    if "[SSL" in text:
        return (
            f"TLS handshake failed ({text}); if the server wants a client certificate, "
            "give it as prometheus.tls.cert_file and key_file"
        )
    return f"cannot reach the server ({text})"


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):  # not JSON, bad UTF-8, huge integers, or nested past the stack
        return None


def _short(value: object) -> str:
    """A value from an answer, cut for a one-line message."""
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def _single_value(body: Any, where: str) -> float | None:
    """The one sample value of a successful instant-query answer, or None for an empty vector."""
    if not isinstance(body, dict):
        raise MetricsUnavailable(f"{where}: malformed answer (not a JSON object)")
    if body.get("status") != "success":
        raise MetricsUnavailable(
            f"{where}: query failed: {_short(body.get('errorType', '?'))}: {_short(body.get('error', '?'))}"
        )
    data = body.get("data")
    if not isinstance(data, dict) or "result" not in data:
        raise MetricsUnavailable(f"{where}: malformed answer (no data.result)")
    kind = data.get("resultType")
    result = data["result"]
    if kind == "scalar":
        return _sample_value(result, where)
    if kind != "vector" or not isinstance(result, list):
        raise MetricsUnavailable(f"{where}: malformed answer (resultType {_short(kind)}, expected a vector)")
    if not result:
        return None
    if len(result) > 1:
        raise MetricsUnavailable(f"{where}: {len(result)} series where one aggregate was expected")
    entry = result[0]
    if not isinstance(entry, dict) or "value" not in entry:
        raise MetricsUnavailable(f"{where}: malformed answer (a series without a value)")
    return _sample_value(entry["value"], where)


def _sample_value(pair: Any, where: str) -> float:
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        raise MetricsUnavailable(f"{where}: malformed sample {_short(pair)}")
    text = pair[1]
    try:
        if "_" in text or text != text.strip():  # Python's float() takes "1_0" and " 1"; Prometheus never sends them
            raise ValueError(text)
        return float(text)  # "NaN", "+Inf" and "-Inf" parse; callers decide what they mean
    except ValueError as exc:
        raise MetricsUnavailable(f"{where}: malformed sample value {_short(text)}") from exc
