"""PrometheusSource against a real Prometheus scraping the test exporter, and against malformed answers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from heteroscale.clock import WallClock
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.errors import MetricsUnavailable
from heteroscale.metrics.prometheus import PrometheusSource
from heteroscale.metrics.promql import Engine, MetricMapping, Queries, Spelling
from tests.support.engine_exporter import EngineExporter, RoleLoad, ServiceLoad
from tests.support.prometheus_server import PrometheusServer, prometheus_binary, wait_until

pytestmark = pytest.mark.integration

CLOCK = WallClock()
WINDOW_S = 6.0


def _loads() -> list[ServiceLoad]:
    return [
        ServiceLoad("chat", prefill=RoleLoad(2, 8000.0, 6000.0), decode=RoleLoad(3, 3000.0, 1500.0)),
        ServiceLoad("code", engine="sglang", prefill=RoleLoad(1, 2000.0, 4000.0), decode=RoleLoad(2, 600.0, 1000.0)),
    ]


class Stack:
    def __init__(
        self,
        tmp: Path,
        spelling: str,
        explicit_timestamps: bool = False,
        loads: list[ServiceLoad] | None = None,
        served: tuple[tuple[str, str, int], ...] = (),
    ) -> None:
        exporter = EngineExporter(loads or _loads(), spelling=spelling, explicit_timestamps=explicit_timestamps)
        for service, role, n in served:
            exporter.serve_only(service, role, n)
        self.exporter = exporter.start()
        try:
            self.prometheus = PrometheusServer(tmp / f"prom-{spelling}", [f"127.0.0.1:{self.exporter.port}"]).start()
        except BaseException:
            self.exporter.stop()
            raise
        sep = ":" if spelling == "colon" else "_"
        query = f'rate({{__name__="vllm{sep}generation_tokens_total"}}[{int(WINDOW_S)}s])'
        # enough scrapes that a rate over the whole window is defined
        assert wait_until(lambda: self.prometheus.has_data(query), 30.0, 0.25)
        CLOCK.sleep_s(WINDOW_S)

    def stop(self) -> None:
        self.prometheus.stop()
        self.exporter.stop()


@pytest.fixture(scope="module")
def colon_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if prometheus_binary() is None:
        pytest.skip("prometheus not on PATH: `make test` installs Debian's package")
    stack = Stack(tmp_path_factory.mktemp("colon"), "colon")
    try:
        yield stack
    finally:
        stack.stop()


def _source(url: str, **kw: object) -> PrometheusSource:
    mapping = MetricMapping(spelling=Spelling(str(kw.pop("spelling", "both"))))
    sglang = MetricMapping(engine=Engine.SGLANG, spelling=mapping.spelling)
    return PrometheusSource(
        url,
        mapping,
        timeout_s=2.0,
        staleness_s=float(kw.pop("staleness_s", 10.0)),
        clock=CLOCK,
        service_mappings={"code": sglang},
    )


def test_vllm_signals_match_the_load_model(colon_stack: Stack) -> None:
    obs = _source(colon_stack.prometheus.url).observe("chat", CLOCK.now_s(), WINDOW_S)
    assert obs.complete, obs.missing
    assert obs.prefill.instances_ready == 2 and obs.decode.instances_ready == 3
    # prefill TPS counts cache-missed prompt tokens: 8000 × (1 − 0.25)
    assert obs.prefill.tps == pytest.approx(6000.0, rel=0.1)
    assert obs.decode.tps == pytest.approx(3000.0, rel=0.1)
    # per-instance pressure 1000/1500 → util 66.7 %, SM 0.8 × that; KV 0.8 × pressure
    assert obs.decode.gpu_util == pytest.approx(2 / 3, rel=0.05)
    assert obs.decode.sm_activity == pytest.approx(0.8 * 2 / 3, rel=0.05)
    assert obs.decode.kv_usage == pytest.approx(0.8 * 2 / 3, rel=0.05)
    assert obs.decode.running == pytest.approx(3 * 8 * 2 / 3, rel=0.05)
    assert obs.ttft_p50_s is not None and obs.ttft_p50_s <= obs.ttft_p90_s <= obs.ttft_p99_s  # type: ignore[operator]
    # TTFT = 0.2 × (1 + (4000/6000)²) ≈ 0.289 s: every observation in the (0.25, 0.5] bucket
    assert 0.25 < obs.ttft_p90_s <= 0.5  # type: ignore[operator]
    # TBT = 0.03 × (1 + (1000/1500)²) ≈ 0.043 s: the (0.04, 0.06] bucket
    assert obs.tbt_p90_s is not None and 0.04 < obs.tbt_p90_s <= 0.06
    assert obs.requests_per_s == pytest.approx(2.0, rel=0.15)


def test_sglang_service_maps_through_its_own_mapping(colon_stack: Stack) -> None:
    obs = _source(colon_stack.prometheus.url).observe("code", CLOCK.now_s(), WINDOW_S)
    assert obs.prefill.instances_ready == 1 and obs.decode.instances_ready == 2
    assert obs.prefill.tps == pytest.approx(1500.0, rel=0.1)  # cached_tokens_total subtracted
    assert obs.decode.tps == pytest.approx(600.0, rel=0.1)
    assert obs.decode.kv_usage is not None  # sglang:token_usage


def test_exact_spelling_that_is_not_served_finds_nothing(colon_stack: Stack) -> None:
    obs = _source(colon_stack.prometheus.url, spelling="underscore").observe("chat", CLOCK.now_s(), WINDOW_S)
    assert obs.prefill.tps is None and obs.decode.tps is None
    assert any("vllm_num_requests_running" in m for m in obs.missing)


def test_unknown_service_is_reported_missing_not_an_error(colon_stack: Stack) -> None:
    obs = _source(colon_stack.prometheus.url).observe("nobody", CLOCK.now_s(), WINDOW_S)
    assert obs.prefill.instances_ready == 0 and obs.decode.tps is None
    assert any("prefill: no series" in m for m in obs.missing)


def test_instances_are_counted_by_pod_and_a_partial_scrape_shows(tmp_path: Path) -> None:
    """Only 1 of chat's 3 decode pods is scraped: 1 instance reporting a third of the TPS. The dp service
    runs 2 decode pods of 4 data-parallel ranks each (8 series): 2 instances, all of the TPS."""
    if prometheus_binary() is None:
        pytest.skip("prometheus not on PATH")
    loads = [
        ServiceLoad("chat", prefill=RoleLoad(2, 8000.0, 6000.0), decode=RoleLoad(3, 3000.0, 1500.0)),
        ServiceLoad("dp", prefill=RoleLoad(1, 2000.0, 4000.0), decode=RoleLoad(2, 1200.0, 1000.0), dp_ranks=4),
    ]
    stack = Stack(tmp_path, "colon", loads=loads, served=(("chat", "decode", 1),))
    try:
        source = _source(stack.prometheus.url)
        chat = source.observe("chat", CLOCK.now_s(), WINDOW_S)
        assert chat.decode.instances_ready == 1 and chat.prefill.instances_ready == 2
        assert chat.decode.tps == pytest.approx(1000.0, rel=0.1)  # the one pod's third of 3000
        dp = source.observe("dp", CLOCK.now_s(), WINDOW_S)
        assert dp.decode.instances_ready == 2 and dp.prefill.instances_ready == 1
        assert dp.decode.tps == pytest.approx(1200.0, rel=0.1)
        # a pod whose scrapes stop leaves the TPS and the count together: 2 of 3 report 2 thirds
        stack.exporter.serve_only("dp", "decode", 1)
        assert wait_until(lambda: source.observe("dp", CLOCK.now_s(), WINDOW_S).decode.instances_ready == 1, 10.0)
        dp = source.observe("dp", CLOCK.now_s(), WINDOW_S)
        assert dp.decode.instances_ready == 1 and dp.decode.tps == pytest.approx(600.0, rel=0.1)
    finally:
        stack.stop()


@pytest.mark.parametrize("spelling", ["underscore"])
def test_underscore_spelling_served_and_read_with_both(tmp_path: Path, spelling: str) -> None:
    if prometheus_binary() is None:
        pytest.skip("prometheus not on PATH")
    stack = Stack(tmp_path, spelling)
    try:
        for wanted in ("both", "underscore"):
            obs = _source(stack.prometheus.url, spelling=wanted).observe("chat", CLOCK.now_s(), WINDOW_S)
            assert obs.decode.tps == pytest.approx(3000.0, rel=0.1), wanted
    finally:
        stack.stop()


def test_frozen_samples_are_stale_with_their_age(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        pytest.skip("prometheus not on PATH")
    stack = Stack(tmp_path, "colon", explicit_timestamps=True)
    try:
        source = _source(stack.prometheus.url, staleness_s=3.0)
        assert not source.observe("chat", CLOCK.now_s(), WINDOW_S).stale
        stack.exporter.freeze()
        CLOCK.sleep_s(5.0)
        obs = source.observe("chat", CLOCK.now_s(), WINDOW_S)
        assert obs.stale and not obs.complete
        assert any("old (staleness limit 3 s)" in m for m in obs.missing), obs.missing
        stack.exporter.thaw()
        assert wait_until(lambda: not source.observe("chat", CLOCK.now_s(), WINDOW_S).stale, 10.0, 0.5)
    finally:
        stack.stop()


def test_nan_values_become_none_with_a_note(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        pytest.skip("prometheus not on PATH")
    stack = Stack(tmp_path, "colon")
    try:
        stack.exporter.nan = True
        source = _source(stack.prometheus.url)
        seen: list[Observation] = []

        def nan_scraped() -> bool:  # Prometheus scrapes on its own schedule: wait for it, bounded
            seen.append(source.observe("chat", CLOCK.now_s(), 2.0))
            return any("not a finite number" in m for m in seen[-1].missing)

        assert wait_until(nan_scraped, 20.0, 0.5), seen[-1].missing
        obs = seen[-1]
        assert obs.decode.kv_usage is None and obs.decode.gpu_util is None
        assert obs.decode.tps is None  # a NaN counter makes the rate NaN: a partial observation
        assert any("not a finite number" in m for m in obs.missing), obs.missing
    finally:
        stack.stop()


def test_stopped_prometheus_is_metrics_unavailable_and_recovers(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        pytest.skip("prometheus not on PATH")
    stack = Stack(tmp_path, "colon")
    try:
        source = _source(stack.prometheus.url)
        stack.prometheus.stop()
        with pytest.raises(MetricsUnavailable, match="cannot reach the server"):
            source.observe("chat", CLOCK.now_s(), WINDOW_S)
        stack.prometheus.start()
        assert wait_until(lambda: _tps_or_none(source) is not None, 20.0, 0.5)
    finally:
        stack.stop()


def _tps_or_none(source: PrometheusSource) -> float | None:
    try:
        return source.observe("chat", CLOCK.now_s(), WINDOW_S).decode.tps
    except MetricsUnavailable:
        return None


# --- malformed and failing answers (no server: an httpx MockTransport) ----------------------------


def _mock(handler: object) -> PrometheusSource:
    return PrometheusSource(
        "http://127.0.0.1:9",
        MetricMapping(),
        timeout_s=0.5,
        clock=CLOCK,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (503, b"down for maintenance", "HTTP 503"),
        (422, b'{"status":"error","errorType":"execution","error":"bad query"}', "HTTP 422: execution: bad query"),
        (200, b"<html>not json</html>", "not a JSON object"),
        (200, b'{"status":"error","errorType":"timeout","error":"query timed out"}', "query failed: timeout"),
        (200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "expected a vector"),
        (200, b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}', "malformed sample"),
        (
            200,
            b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}',
            "2 series where one aggregate",
        ),
    ],
)
def test_bad_answers_are_metrics_unavailable(status: int, body: bytes, message: str) -> None:
    source = _mock(lambda request: httpx.Response(status, content=body))
    with pytest.raises(MetricsUnavailable, match=message):
        source.observe("chat", 1000.0, 60.0)


def test_time_out_is_metrics_unavailable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(MetricsUnavailable, match=r"time-out after 0\.5 s"):
        _mock(slow).observe("chat", 1000.0, 60.0)


def test_infinite_quantile_is_dropped_with_a_note() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        value = "+Inf" if "histogram_quantile" in query else "5"
        if query.startswith("max(timestamp("):
            value = "999.5"
        return httpx.Response(
            200,
            json={
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1000, value]}]},
            },
        )

    obs = _mock(answer).observe("chat", 1000.0, 60.0)
    assert obs.ttft_p90_s is None and not obs.stale
    assert obs.decode.tps == 5.0
    assert any(m.startswith("ttft_p90_s: inf") for m in obs.missing)


def test_queries_cover_both_spellings_and_escape_the_service() -> None:
    q = Queries(MetricMapping(), 'we"ird', 30.0)
    assert '__name__=~"vllm[:_]generation_tokens_total"' in q.decode_tps()
    assert 'service="we\\"ird"' in q.decode_tps()
    assert "prefix_cache_hits_total" in q.prefill_tps() and "or vector(0)" in q.prefill_tps()
    assert q.gpu_util(Role.DECODE).endswith("/ 100")
    colon = Queries(MetricMapping(spelling=Spelling.COLON), "chat", 30.0)
    assert '__name__="vllm:generation_tokens_total"' in colon.decode_tps()
    assert math.isclose(float(q.window.removesuffix("ms")), 30000.0)
