"""Bad Prometheus input never hangs or crashes: a URL is checked as the client reads it, a wrong value
is not measured (a policy driven by it holds and says why) and a malformed answer is MetricsUnavailable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from heteroscale.cli.main import main
from heteroscale.clock import ManualClock
from heteroscale.config.controller import load_controller_config
from heteroscale.domain.decision import Reason
from heteroscale.errors import ConfigError, HeteroScaleError, MetricsUnavailable
from heteroscale.metrics.prometheus import MAX_ANSWER_BYTES, PrometheusSource
from heteroscale.metrics.promql import MetricMapping
from heteroscale.policy.normalize import hold_on_bad_observation, read_signal
from tests.unit.bad_input_builders import controller_file, one_line
from tests.unit.policy_builders import counts

# --- the Prometheus URL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://host:99999", "port 99999 is outside"),
        ("http://host:0", "port 0 is outside"),
        ("http://a b", "space"),
        ("http://", "has no host"),
        ("http://bad\\host:9090", "host name"),
        ("http://host:9090/?x=1", "query"),
    ],
)
def test_prometheus_url_is_checked_as_the_client_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, problem: str
) -> None:
    path = controller_file(tmp_path, "prometheus", "url", url)
    with pytest.raises(ConfigError) as caught:
        load_controller_config(path)
    message = one_line(str(caught.value), path)
    assert "prometheus.url: " in message and problem in message
    assert main(["controller", "--config", str(path), "--check"]) == 2
    assert problem in capsys.readouterr().err


# --- Prometheus answers -------------------------------------------------------------------------


def _vector(value: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1000, value]}]}}


def _healthy(query: str) -> str:
    if query.startswith(("max(timestamp(", "max((timestamp(")):  # engine and (joined) DCGM freshness
        return "999.5"  # fresh
    if "gpu_prefix_cache_hits" in query:
        return "0"  # no prefill pod exposes only the pre-v0.9.1 prefix-cache metric
    if query.startswith("count("):
        return "2"  # instances
    return "0.5"


def _source(handler: Callable[[httpx.Request], httpx.Response]) -> PrometheusSource:
    return PrometheusSource(
        "http://127.0.0.1:9",
        MetricMapping(),
        timeout_s=0.5,
        clock=ManualClock(1000.0),
        transport=httpx.MockTransport(handler),
    )


def _answering(needles: tuple[str, ...], value: str) -> PrometheusSource:
    """Healthy answers, except ``value`` for the (non-freshness) query that contains every needle."""

    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        hit = all(n in query for n in needles) and not query.startswith(("max(timestamp(", "max((timestamp("))
        return httpx.Response(200, json=_vector(value if hit else _healthy(query)))

    return _source(handler)


DECODE = 'role="decode"'


@pytest.mark.parametrize(
    ("needles", "value", "signal", "note"),
    [
        (("num_requests_waiting", DECODE), "-3", "decode.queue_len", "decode.queue_len: -3 is outside [0, inf]"),
        (("num_requests_running", DECODE), "-1", "decode.running", "decode.running: -1 is outside [0, inf]"),
        (("DCGM_FI_DEV_GPU_UTIL", DECODE), "1.5", "decode.gpu_util", "decode.gpu_util: 1.5 is outside [0, 1]"),
        (("DCGM_FI_PROF_SM_ACTIVE", DECODE), "37", "decode.sm_activity", "decode.sm_activity: 37 is outside [0, 1]"),
        (("kv_cache_usage_perc", DECODE), "2", "decode.kv_usage", "decode.kv_usage: 2 is outside [0, 1]"),
        (("histogram_quantile(0.9,", "time_to_first"), "-0.2", "ttft_p90_s", "ttft_p90_s: -0.2 is outside [0, inf]"),
        (("request_success_total",), "-4", "requests_per_s", "requests_per_s: -4 is outside [0, inf]"),
    ],
)
def test_impossible_prometheus_values_are_not_measured_and_a_policy_driven_by_them_holds(
    needles: tuple[str, ...], value: str, signal: str, note: str
) -> None:
    obs = _answering(needles, value).observe("chat", 1000.0, 60.0)
    assert read_signal(obs, signal) is None
    assert any(m.startswith(note) for m in obs.missing), obs.missing
    hold, step = hold_on_bad_observation(obs, None, counts(2, 2), driving=(signal,))
    assert hold and step.reason is Reason.HOLD_NO_SIGNAL
    assert signal in step.detail


@pytest.mark.parametrize("value", ["-2", "2.5", "1e300", "NaN", "+Inf"])
def test_an_instance_count_that_is_not_one_is_not_measured(value: str) -> None:
    obs = _answering(("count(", DECODE), value).observe("chat", 1000.0, 60.0)
    assert obs.decode.instances_ready == 0  # not measured: policies fall back on the cluster's count
    assert obs.prefill.instances_ready == 2
    assert any(m.startswith("decode.instances_ready: ") and "not an instance count" in m for m in obs.missing)


def test_a_non_finite_freshness_time_is_no_sample() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        fresh = query.startswith("max(timestamp(") and DECODE in query and "DCGM" not in query
        return httpx.Response(200, json=_vector("+Inf" if fresh else _healthy(query)))

    source = _source(handler)
    obs = source.observe("chat", 1000.0, 60.0)
    assert obs.decode.tps is None and obs.decode.instances_ready == 0
    assert any(m.startswith("decode: newest sample time inf is not a finite number") for m in obs.missing)
    hold, step = hold_on_bad_observation(obs, None, counts(2, 2))
    assert hold and step.reason is Reason.HOLD_PARTIAL


def _deep(depth: int) -> bytes:
    return b'{"status":"success","data":' + b"[" * depth + b"]" * depth + b"}"


def _result(result: bytes, kind: bytes = b"vector") -> bytes:
    return b'{"status":"success","data":{"resultType":"' + kind + b'","result":' + result + b"}}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_deep(100_000), "not a JSON object"),
        (_result(b'[{"value":[1,"1_0"]}]'), "malformed sample value"),
        (_result(b'[{"value":[1," 5"]}]'), "malformed sample value"),
        (b"[" + b"0," * MAX_ANSWER_BYTES + b"0]", f"answer larger than {MAX_ANSWER_BYTES} bytes"),
    ],
)
def test_malformed_prometheus_answers_are_metrics_unavailable(body: bytes, message: str) -> None:
    _assert_unavailable(body, message)


@pytest.mark.parametrize(
    ("body", "message"),
    [  # refused before these fixes too; kept beside them as guards
        (_result(b'[{"value":[1,' + b"9" * 5000 + b"]}]"), "not a JSON object"),
        (_result(b'{"value":[1,"5"]}'), "expected a vector"),
        (_result(b'"5"', b"scalar"), "malformed sample"),
        (_result(b"[7]"), "a series without a value"),
        (b'{"status":"success","data":[]}', "no data.result"),
        (b"\xff\xfe{", "not a JSON object"),
    ],
)
def test_answers_of_the_wrong_shape_stay_metrics_unavailable(body: bytes, message: str) -> None:
    _assert_unavailable(body, message)


def _assert_unavailable(body: bytes, message: str) -> None:
    source = _source(lambda request: httpx.Response(200, content=body))
    with pytest.raises(HeteroScaleError) as caught:
        source.observe("chat", 1000.0, 60.0)
    assert isinstance(caught.value, MetricsUnavailable)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 500
