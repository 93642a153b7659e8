"""Engine quirks read right from a real Prometheus: SGLang's per-step throughput, data-parallel ranks on
their own ports, vLLM's pre-v0.9.1 prefix-cache metric, and DCGM series that carry no role label."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from heteroscale.clock import WallClock
from heteroscale.config.presets import MappingConfig
from heteroscale.metrics.prometheus import PrometheusSource
from heteroscale.metrics.promql import Engine, MetricMapping, PodJoin
from tests.support.engine_exporter import EngineExporter, RoleLoad, ServiceLoad
from tests.support.prometheus_server import PrometheusServer, prometheus_binary, wait_until

pytestmark = pytest.mark.integration

CLOCK = WallClock()
WINDOW_S = 6.0
STACKS = ("llm-d", "aibrix", "kthena", "dynamo")


class Fleet:
    """Three exporters behind one Prometheus: rank 0 of every engine (and every single-rank engine),
    rank 1 of the data-parallel one on its own port, and a DCGM exporter whose pod labels Prometheus
    renamed (exported_pod)."""

    def __init__(self, tmp: Path) -> None:
        loads = [
            # SGLang decode: 600 tokens/s, but requests finish only every 10 minutes
            ServiceLoad("sg", engine="sglang", decode=RoleLoad(2, 600.0, 1000.0), finish_every_s=600.0),
            ServiceLoad("old", prefill=RoleLoad(2, 8000.0, 6000.0), legacy_prefix_metric=True),
            ServiceLoad("dp", prefill=RoleLoad(1, 2000.0, 4000.0), decode=RoleLoad(2, 1200.0, 1000.0), dp_ranks=2),
            # one service per serving stack, labelled as that stack labels its series and pods
            *(ServiceLoad(f"svc-{stack}", decode=RoleLoad(2, 1000.0, 1250.0), stack=stack) for stack in STACKS),
        ]
        self.exporters = [
            EngineExporter(loads, rank=0).start(),
            EngineExporter([replace(load) for load in loads], rank=1).start(),
            EngineExporter([ServiceLoad("ex", decode=RoleLoad(2, 1000.0, 1500.0))], dcgm_exported_labels=True).start(),
        ]
        targets = [f"127.0.0.1:{e.port}" for e in self.exporters]
        try:
            self.prometheus = PrometheusServer(tmp / "prom", targets).start()
        except BaseException:
            self.stop_exporters()
            raise
        query = f'rate({{__name__="vllm:generation_tokens_total", service="dp"}}[{int(WINDOW_S)}s])'
        assert wait_until(lambda: self.prometheus.has_data(query), 30.0, 0.25)
        CLOCK.sleep_s(WINDOW_S)  # a rate over the whole window is defined

    def stop_exporters(self) -> None:
        for exporter in self.exporters:
            exporter.stop()

    def stop(self) -> None:
        self.prometheus.stop()
        self.stop_exporters()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if prometheus_binary() is None:
        pytest.skip("prometheus not on PATH: `make test` installs Debian's package")
    running = Fleet(tmp_path_factory.mktemp("quirks"))
    try:
        yield running
    finally:
        running.stop()


def _source(fleet: Fleet, mapping: MetricMapping | None = None, **services: MetricMapping) -> PrometheusSource:
    return PrometheusSource(
        fleet.prometheus.url,
        mapping or MetricMapping(),
        timeout_s=2.0,
        staleness_s=10.0,
        clock=CLOCK,
        service_mappings=services,
    )


def test_sglang_decode_tps_is_the_per_step_throughput_not_the_finished_requests_counter(fleet: Fleet) -> None:
    """The finished-request counter has not moved yet (0 tokens/s over the window), the load is 600."""
    obs = _source(fleet, sg=MetricMapping(engine=Engine.SGLANG)).observe("sg", CLOCK.now_s(), WINDOW_S)
    assert obs.decode.instances_ready == 2
    assert obs.decode.tps == pytest.approx(600.0, rel=0.1)


def test_data_parallel_ranks_on_their_own_ports_count_once_per_pod(fleet: Fleet) -> None:
    """2 decode pods × 2 ranks, each rank its own scrape target: 2 instances, all of the TPS."""
    obs = _source(fleet).observe("dp", CLOCK.now_s(), WINDOW_S)
    assert obs.decode.instances_ready == 2 and obs.prefill.instances_ready == 1
    assert obs.decode.tps == pytest.approx(1200.0, rel=0.1)
    assert obs.decode.kv_usage == pytest.approx(0.8 * 600.0 / 1000.0, rel=0.05)  # per pod, not per rank × ranks


def test_the_pre_v0_9_1_prefix_cache_metric_refuses_the_prefill_tps_with_one_line(fleet: Fleet) -> None:
    """Prompt tokens alone (8000/s) would overstate the cache-missed prefill TPS (6000/s)."""
    obs = _source(fleet).observe("old", CLOCK.now_s(), WINDOW_S)
    assert obs.prefill.tps is None
    (note,) = [m for m in obs.missing if m.startswith("prefill.tps: not used")]
    assert "2 prefill pod(s)" in note and "gpu_prefix_cache_hits_total" in note and "\n" not in note
    assert obs.decode.tps == pytest.approx(500.0, rel=0.1)  # the decode role is read as usual


def test_dcgm_series_without_a_role_label_are_joined_to_the_pods_labels(fleet: Fleet) -> None:
    obs = _source(fleet).observe("dp", CLOCK.now_s(), WINDOW_S)
    # decode pressure 600/1000 per pod → 60 % GPU util, SM 0.8 × that
    assert obs.decode.gpu_util == pytest.approx(0.6, rel=0.05)
    assert obs.decode.sm_activity == pytest.approx(0.48, rel=0.05)
    assert obs.prefill.gpu_util == pytest.approx(0.5, rel=0.05)  # 2000/4000


def test_dcgm_pod_labels_renamed_by_prometheus_are_joined_through_exported_pod(fleet: Fleet) -> None:
    plain = _source(fleet).observe("ex", CLOCK.now_s(), WINDOW_S)
    assert plain.decode.gpu_util is None  # its DCGM series say exported_pod, not pod
    exported = MetricMapping(gpu_join=PodJoin(pod_label="exported_pod", namespace_label="exported_namespace"))
    obs = _source(fleet, exported).observe("ex", CLOCK.now_s(), WINDOW_S)
    assert obs.decode.gpu_util == pytest.approx(500.0 / 1500.0, rel=0.05)


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_preset_reads_its_stack_series_and_gpus(fleet: Fleet, stack: str) -> None:
    """Series labelled as the stack labels them: the default selectors find nothing, the preset all of it."""
    service = f"svc-{stack}"
    plain = _source(fleet).observe(service, CLOCK.now_s(), WINDOW_S)
    assert plain.decode.tps is None and plain.decode.gpu_util is None
    preset = MappingConfig.model_validate({"preset": stack}).to_mapping()
    obs = _source(fleet, preset).observe(service, CLOCK.now_s(), WINDOW_S)
    assert obs.complete, obs.missing
    assert obs.prefill.instances_ready == 1 and obs.decode.instances_ready == 2
    assert obs.decode.tps == pytest.approx(1000.0, rel=0.1)
    assert obs.prefill.tps == pytest.approx(1500.0, rel=0.1)  # 2000 prompt tokens/s less 25 % cache hits
    assert obs.decode.gpu_util == pytest.approx(500.0 / 1250.0, rel=0.05)  # joined through kube_pod_labels
