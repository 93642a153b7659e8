"""The demo's parts without servers: the ramp, the bridge from pods to simulated instances, the engine
metrics it renders, the request tally and the journal tail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario
from heteroscale.demo.bridge import RequestTally, SimBridge, pod_view
from heteroscale.demo.exporter import render
from heteroscale.demo.load import Ramp, ramp_curve, ramp_load
from heteroscale.demo.run import JournalTail
from heteroscale.domain.state import Lifecycle
from heteroscale.sim.request_engine import RequestEngine
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.traces import bundled_trace_path, read_trace

SPEEDUP = 10.0


def pod(name: str, role: str, node: str, *, ready: bool = True, discovery: str = "on") -> dict[str, Any]:
    sku = "h800" if role == "prefill" else "h20"
    return {
        "metadata": {
            "name": name,
            "labels": {
                "heteroscale.io/service": "chat",
                "heteroscale.io/role": role,
                "heteroscale.io/sku": sku,
                "heteroscale.io/tp": "4",
                "heteroscale.io/dg": "chat-dg0",
                "heteroscale.io/discovery": discovery,
            },
        },
        "spec": {"nodeName": node},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


@pytest.fixture
def world() -> tuple[SimBridge, list[dict[str, Any]]]:
    scenario = load_scenario("default")
    spec = scenario.services[0].spec
    lengths = read_trace(bundled_trace_path("AzureLLMInferenceTrace_conv.csv"))
    load = ramp_load(spec, lengths, Ramp(4.0, 4.0), 600.0, 120.0, seed=0)
    sim = SimulationRun(scenario, calibration_for(scenario), loads=[load])
    assert isinstance(sim.engine, RequestEngine)
    tally = RequestTally()
    sim.engine.records = tally
    pods: list[dict[str, Any]] = []
    bridge = SimBridge(sim.engine, 0, spec, "demo", lambda: pods, SPEEDUP, tally, util_span_s=10.0)
    return bridge, pods


def samples(text: str) -> dict[tuple[str, str], float]:
    """(sample name, pod) → value, parsed by prometheus_client's text-format parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "le" not in s.labels and "gpu" not in s.labels:
                out[s.name, s.labels["pod"]] = s.value
    return out


def test_the_ramp_rises_holds_and_falls() -> None:
    ramp = Ramp(3.0, 30.0)
    assert ramp.rate_at(0.0) == 3.0 and ramp.rate_at(0.55) == 30.0 and ramp.rate_at(1.0) == 3.0
    assert 3.0 < ramp.rate_at(0.3) < 30.0 and ramp.rate_at(0.3) < ramp.rate_at(0.4)
    curve = ramp_curve(ramp, 2100.0, 10.0)
    assert len(curve) == 210 and curve.peak_rps == 30.0
    with pytest.raises(ValueError, match="base ≤ peak"):
        Ramp(5.0, 1.0)


def test_ready_pods_serve_the_load_and_the_metrics_read_per_simulated_second(
    world: tuple[SimBridge, list[dict[str, Any]]],
) -> None:
    bridge, pods = world
    pods += [pod("p-0", "prefill", "a1n1"), pod("d-0", "decode", "a2n1"), pod("d-1", "decode", "a2n2", ready=False)]
    bridge.step(0.0)
    assert sorted(bridge.mapped) == ["d-0", "p-0"]  # the pod that is not Ready serves nothing yet
    text = bridge.step(120.0)
    values = samples(text)
    decode = bridge.engine.cluster.instances[bridge.mapped["d-0"]]
    prefill = bridge.engine.cluster.instances[bridge.mapped["p-0"]]
    assert decode.acc_tokens > 10_000  # 4 requests/s for two simulated minutes
    # counters are divided by the speed-up: a rate over wall seconds reads per simulated second
    assert values["vllm:generation_tokens_total", "d-0"] == pytest.approx(decode.acc_tokens / SPEEDUP)
    assert values["vllm:prompt_tokens_total", "p-0"] == pytest.approx(prefill.acc_tokens / SPEEDUP)
    assert values["vllm:request_success_total", "d-0"] == pytest.approx(bridge.tally.finished / SPEEDUP)
    assert bridge.tally.finished > 300
    assert values["vllm:num_requests_running", "d-0"] > 0.0
    assert ("vllm:generation_tokens_total", "p-0") not in values  # a prefill engine generates nothing here
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "DCGM_FI_DEV_GPU_UTIL"} <= families


def test_discovery_off_stops_routing_and_a_deleted_pod_is_gone(world: tuple[SimBridge, list[dict[str, Any]]]) -> None:
    bridge, pods = world
    pods += [pod("p-0", "prefill", "a1n1"), pod("d-0", "decode", "a2n1"), pod("d-1", "decode", "a2n2")]
    bridge.step(30.0)
    engine = bridge.engine
    assert isinstance(engine, RequestEngine)
    assert len(engine.services[0].d_routable) == 2 and bridge.ready_counts() == (1, 2)
    pods[2] = pod("d-1", "decode", "a2n2", discovery="off")  # the controller drains it
    bridge.step(60.0)
    assert [d.id for d in engine.services[0].d_routable] == [bridge.mapped["d-0"]] and bridge.ready_counts() == (1, 1)
    drained = bridge.mapped["d-1"]
    bridge.step(120.0)  # a minute for its in-flight requests to finish
    finished = engine.cluster.instances[drained].acc_tokens
    assert engine.cluster.instances[drained].b == 0
    bridge.step(180.0)
    assert engine.cluster.instances[drained].acc_tokens == finished  # no new work reached it
    del pods[2]  # the Deployment scaled down: the fake deleted the pod
    bridge.step(181.0)
    assert "d-1" not in bridge.mapped and engine.cluster.instances[drained].lifecycle is Lifecycle.GONE
    assert "d-1" not in {key[1] for key in samples(bridge.step(182.0))}  # its series stop


def test_pods_of_other_services_or_unknown_shapes_are_not_instances() -> None:
    scenario = load_scenario("default")
    spec = scenario.services[0].spec
    other = pod("x", "decode", "a2n1")
    other["metadata"]["labels"]["heteroscale.io/service"] = "batch"
    odd = pod("y", "decode", "a2n1")
    odd["metadata"]["labels"]["heteroscale.io/tp"] = "8"
    assert pod_view(other, spec) is None and pod_view(odd, spec) is None
    view = pod_view(pod("z", "decode", "a2n1"), spec)
    assert view is not None and view.shape.sku == "h20" and view.ready and view.in_discovery


def test_the_request_tally_counts_where_an_engine_would() -> None:
    tally = RequestTally()
    tally.write("7,chat,1.0,1000,11,200,chat-p0,chat-d0,0.400000,0.020000,1.700000,ok\n")
    tally.write("8,chat,1.1,1000,5,0,chat-p0,chat-d0,,,2.0,failed:scale-in\n")
    tally.write("9,chat,1.2,1000,5,0,chat-p0,chat-d0,,,,unfinished\n")
    prefill, decode = tally.series("chat-p0"), tally.series("chat-d0")
    assert tally.finished == 1 and decode.finished == 1.0
    assert prefill.ttft.total == pytest.approx(0.4) and sum(prefill.ttft.counts) == 1.0
    assert sum(decode.tbt.counts) == 10.0  # once per output token after the first
    assert decode.generation_tokens.total == 11.0 and prefill.prompt_tokens.total == 1000.0


def test_render_groups_each_family_once() -> None:
    text = render([], SPEEDUP)
    assert text == "\n"
    tally = RequestTally()
    from heteroscale.demo.exporter import PodMetrics

    pods = [
        PodMetrics("a", "chat", "decode", "demo", "m", 2, 0.0, 0.0, 500.0, 3.0, 1.0, 0.5, 0.8, 0.5, tally.series("a")),
        PodMetrics("b", "chat", "decode", "demo", "m", 2, 0.0, 0.0, 700.0, 3.0, 1.0, 0.5, 0.8, 0.5, tally.series("b")),
    ]
    text = render(pods, SPEEDUP)
    type_lines = [line for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(type_lines) == len(set(type_lines))
    values = samples(text)
    assert values["vllm:generation_tokens_total", "b"] == 70.0
    gpu = [line for line in text.splitlines() if line.startswith("DCGM_FI_DEV_GPU_UTIL{")]
    assert len(gpu) == 4 and all(line.endswith(" 80.0") for line in gpu)  # one series per GPU, in percent


def test_the_journal_tail_reads_whole_outcome_lines_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    tail = JournalTail(path)
    assert tail.read() == []
    outcome = {"phase": "outcome", "service": "chat"}
    path.write_text(json.dumps({"phase": "intent"}) + "\n" + json.dumps(outcome) + "\n" + '{"phase": "out', "utf-8")
    assert tail.read() == [outcome]
    with path.open("a", encoding="utf-8") as f:
        f.write('come", "service": "x"}\n')
    assert tail.read() == [{"phase": "outcome", "service": "x"}] and tail.read() == []
