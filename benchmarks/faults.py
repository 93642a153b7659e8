"""Fault benchmark for the live controller: one line per fault.

Each fault (Prometheus down, stale or NaN metrics, a partial scrape, Kubernetes API errors, …) runs in
a fresh local stack on 127.0.0.1 — a real Prometheus (Debian's binary) scraping the
test exporter, the Kubernetes API fake (kmock + tests/support/kube_fake.py) and ``heteroscale controller``
as a subprocess reconciling every INTERVAL_S — and prints:

    <fault>  outcome=<what the controller did>  recover=<s after the fault cleared> (target ≤ 2 intervals)
             records=<n> lost=<0|n>

"recover" is the time from the moment the fault clears to the first DecisionRecord that is again a
normal decision (observation read, cluster written). "lost" counts cycles that should have produced a
record but left none in the journal: a cycle with a readable cluster always writes one record per
service, so between the first and last record the gaps must be one interval (a journal line must parse,
too). While the Kubernetes API itself is down no decision can be made; those cycles are logged and counted
as "no-decision", not as lost records.

Run: ``.venv/bin/python benchmarks/faults.py`` (needs ``prometheus`` on PATH: ``make system-deps``).
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.engine_exporter import EngineExporter, RoleLoad, ServiceLoad  # noqa: E402
from tests.support.kube_fake import Fault, KubeFakeServer  # noqa: E402
from tests.support.live_env import (  # noqa: E402
    NAMESPACE,
    controller_config,
    gpu_nodes,
    role_replicas,
    run_controller,
    start_controller,
    stop_process,
)
from tests.support.prometheus_server import PrometheusServer, prometheus_binary, wait_until  # noqa: E402

from heteroscale.clock import WallClock  # noqa: E402

INTERVAL_S = 1.0
FAULT_S = 6.0
CLOCK = WallClock()
HOLDS = {"hold-stale-observation", "hold-missing-observation", "hold-partial-observation", "hold-missing-signal"}


@dataclass
class Stack:
    workdir: Path
    kube: KubeFakeServer
    exporter: EngineExporter
    prometheus: PrometheusServer
    config: Path

    def counts(self) -> tuple[int, int]:
        deployments = self.kube.deployments(NAMESPACE)
        return role_replicas(deployments, "prefill"), role_replicas(deployments, "decode")

    def stop(self) -> None:
        self.prometheus.stop()
        self.exporter.stop()
        self.kube.stop()


def stack(workdir: Path, *, explicit_timestamps: bool = False) -> Stack:
    kube = KubeFakeServer(gpu_nodes(), ready_after_s=0.3).start()
    load = ServiceLoad("chat", prefill=RoleLoad(1, 8000.0, 6000.0), decode=RoleLoad(1, 2800.0, 1500.0), base_tbt_s=0.02)
    # explicit timestamps only where a stale (frozen) exporter is the fault: Prometheus then keeps old
    # samples instead of marking the series stale, as with a lagging federation or remote-write source
    exporter = EngineExporter(
        [load], explicit_timestamps=explicit_timestamps, instances_source=lambda: kube.ready_counts(NAMESPACE)
    )
    exporter.start()
    prometheus = PrometheusServer(workdir / "prometheus", [f"127.0.0.1:{exporter.port}"]).start()
    config = controller_config(
        workdir, prometheus.url, kube.url, identity="bench-a", staleness_s=3.0, interval_s=INTERVAL_S
    )
    s = Stack(workdir, kube, exporter, prometheus, config)
    result = run_controller(config, "--once")  # raises both roles to their minimum
    if result.returncode != 0:
        s.stop()
        raise RuntimeError(result.stderr[-2000:])
    wait_until(lambda: prometheus.has_data('rate({__name__="vllm:generation_tokens_total"}[5s])'), 30.0, 0.25)
    return s


def records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(complete records, unparseable lines)."""
    out, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            bad += 1
    return out, bad


def normal(record: dict[str, Any]) -> bool:
    outcome = record.get("outcome", {})
    return (
        "error" not in record["observation"]
        and record["recommendation"]["reason"] not in HOLDS
        and not [e for e in outcome.get("errors", []) if not str(e).startswith("unplaced")]
    )


def lost_records(recs: list[dict[str, Any]], allowed_gaps: list[tuple[float, float]]) -> int:
    """Cycles without a record between consecutive records (outside windows where none can be made)."""
    lost = 0
    for a, b in itertools.pairwise(recs):
        gap = b["at_s"] - a["at_s"]
        if any(lo - INTERVAL_S <= a["at_s"] and b["at_s"] <= hi + 2 * INTERVAL_S for lo, hi in allowed_gaps):
            continue
        lost += max(0, round(gap / INTERVAL_S) - 1)
    return lost


FRESH = 'max(timestamp({__name__=~"vllm[:_]num_requests_running"})) > time() - 1.5'
FINITE = 'sum(rate({__name__=~"vllm[:_]generation_tokens_total"}[5000ms])) >= 0'
# every decode pod has a rate again (two fresh samples): what a coverage check needs
ALL_DECODE_RATES = 'count(rate({__name__=~"vllm[:_]generation_tokens_total", role="decode"}[5000ms])) >= 3'


def run_fault(
    name: str,
    inject: Callable[[Stack], Callable[[], None]],
    *,
    cluster_down: bool = False,
    explicit: bool = False,
    clean: str | None = None,
) -> str:
    """``clean``: a PromQL query that answers once Prometheus holds usable data again (fresh samples, a
    rate window free of NaN); recovery is then also timed from that moment, which is what the
    controller can react to."""
    with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
        s = stack(Path(tmp), explicit_timestamps=explicit)
        log = Path(tmp) / "controller.log"
        loop_start_s = CLOCK.now_s()
        process = start_controller(s.config, "--duration-s", "120", log_path=log)
        try:
            if not wait_until(lambda: s.counts() == (3, 3), 40.0, 0.5):
                return f"{name:<22} outcome=did not reach 3P/3D before the fault ({s.counts()})"
            CLOCK.sleep_s(2.0)
            before = s.counts()
            start_s = CLOCK.now_s()
            clear = inject(s)
            CLOCK.sleep_s(FAULT_S)
            during = s.counts()
            clear()
            cleared_s = CLOCK.now_s()
            clean_s = cleared_s
            if clean is not None:
                wait_until(lambda: s.prometheus.has_data(clean), 20.0, 0.1)
                clean_s = CLOCK.now_s()
            CLOCK.sleep_s(4.0 * INTERVAL_S + 2.0)
        finally:
            stop_process(process)
        recs, bad = records(Path(tmp) / "journal.jsonl")
        s.stop()
        during_recs = [r for r in recs if start_s + INTERVAL_S < r["at_s"] < cleared_s]
        held = [r for r in during_recs if not normal(r)]
        after = [r for r in recs if r["at_s"] >= cleared_s and normal(r)]
        recover = f"{after[0]['at_s'] - cleared_s:.2f} s" if after else "never"
        if after and clean is not None:
            recover += (
                f" ({after[0]['at_s'] - clean_s:.2f} s after usable data, {clean_s - cleared_s:.1f} s after the clear)"
            )
        ok = after and after[0]["at_s"] - clean_s <= 2 * INTERVAL_S
        repeated = sum(len(r["outcome"].get("launched", [])) + len(r["outcome"].get("removed", [])) for r in after)
        if cluster_down:
            silent = lost_records([r for r in recs if r["at_s"] >= loop_start_s], [])
            what = f"no decision for {silent} cycle(s) while the API failed, {repeated} action(s) after it"
        else:
            refused = [r for r in held if r["outcome"].get("errors")]
            reasons = sorted({r["recommendation"]["reason"] for r in held})
            what = f"held {len(held)}/{len(during_recs)} cycles ({', '.join(reasons) or 'none'})"
            if refused:
                what = f"actuation refused and reported (transient) in {len(refused)}/{len(during_recs)} cycles"
        scaled = "" if during == before else f" counts moved {before}→{during}!"
        loop = [r for r in recs if r["at_s"] >= loop_start_s]
        lost = lost_records(loop, [(start_s, cleared_s)] if cluster_down else []) + bad
        return (
            f"{name:<22} outcome={what}{scaled}  recover={recover} "
            f"({'within' if ok else 'OVER'} 2×{INTERVAL_S:g} s)  records={len(recs)} lost={lost}"
        )


def prometheus_down(s: Stack) -> Callable[[], None]:
    s.prometheus.stop()
    return lambda: s.prometheus.start() and None


def stale(s: Stack) -> Callable[[], None]:
    s.exporter.freeze()
    return s.exporter.thaw


def nan(s: Stack) -> Callable[[], None]:
    s.exporter.nan = True

    def clear() -> None:
        s.exporter.nan = False

    return clear


def partial_scrape(s: Stack) -> Callable[[], None]:
    """Only 1 of the 3 decode pods is scraped: a third of the decode TPS is seen (a scale-in, were it
    believed); the controller holds on coverage instead."""
    s.exporter.serve_only("chat", "decode", 1)
    return lambda: s.exporter.serve_only("chat", "decode", None)


def api(status: int, delay_s: float = 0.0) -> Callable[[Stack], Callable[[], None]]:
    def inject(s: Stack) -> Callable[[], None]:
        fault = s.kube.inject(Fault("GET", r"^/api", status=status, count=10_000, delay_s=delay_s))
        return lambda: setattr(fault, "count", fault.hits)

    return inject


def kill_restart() -> str:
    """SIGKILL the controller, restart it: state from the cluster, journal intact, nothing repeated."""
    with tempfile.TemporaryDirectory(prefix="faults-kill-") as tmp:
        s = stack(Path(tmp))
        log = Path(tmp) / "controller.log"
        process = start_controller(s.config, "--duration-s", "120", log_path=log)
        try:
            wait_until(lambda: s.counts() == (3, 3), 40.0, 0.5)
            CLOCK.sleep_s(1.5)
        finally:
            stop_process(process, kill=True)
        journal = Path(tmp) / "journal.jsonl"
        before_text = journal.read_text(encoding="utf-8")
        before, bad = records(journal)
        restarted_s = CLOCK.now_s()
        process = start_controller(s.config, "--duration-s", "120", log_path=log)
        try:
            wait_until(lambda: len(records(journal)[0]) > len(before) + 2, 15.0, 0.2)
        finally:
            stop_process(process)
        after, bad_after = records(journal)
        s.stop()
        intact = journal.read_text(encoding="utf-8").startswith(before_text)
        new = after[len(before) :]
        repeated = sum(len(r["outcome"].get("launched", [])) + len(r["outcome"].get("removed", [])) for r in new)
        recover = f"{new[0]['at_s'] - restarted_s:.2f} s" if new else "never"
        return (
            f"{'controller-kill-restart':<22} outcome=state rebuilt ({new[0]['decision']['current_prefill']}P/"
            f"{new[0]['decision']['current_decode']}D), {repeated} action(s) repeated, journal "
            f"{'intact' if intact else 'REWRITTEN'}  recover={recover} (from restart, incl. start-up)  "
            f"records={len(after)} lost={bad + bad_after}"
        )


def leader_failover() -> str:
    """Two controllers; SIGKILL the leader: the standby takes over once the lease (3 s) expires."""
    with tempfile.TemporaryDirectory(prefix="faults-leader-") as tmp:
        s = stack(Path(tmp))
        config_b = controller_config(
            Path(tmp),
            s.prometheus.url,
            s.kube.url,
            identity="bench-b",
            journal="b.jsonl",
            name="b.yaml",
            staleness_s=3.0,
            interval_s=INTERVAL_S,
        )
        a = start_controller(s.config, "--duration-s", "120", log_path=Path(tmp) / "a.log")
        b = start_controller(config_b, "--duration-s", "120", log_path=Path(tmp) / "b.log")
        try:
            wait_until(lambda: s.counts() == (3, 3), 40.0, 0.5)
            b_before = len(records(Path(tmp) / "b.jsonl")[0]) if (Path(tmp) / "b.jsonl").exists() else 0
            stop_process(a, kill=True)
            killed_s = CLOCK.now_s()
            wait_until(lambda: (Path(tmp) / "b.jsonl").exists() and bool(records(Path(tmp) / "b.jsonl")[0]), 15.0, 0.1)
        finally:
            stop_process(b)
            stop_process(a)
        rb, bad = records(Path(tmp) / "b.jsonl")
        s.stop()
        took = f"{rb[0]['at_s'] - killed_s:.2f} s" if rb else "never"
        return (
            f"{'leader-failover':<22} outcome=standby wrote {b_before} record(s) while not leading, then took over  "
            f"recover={took} (lease 3 s + ≤1 interval)  records={len(rb)} lost={bad}"
        )


def main() -> int:
    if prometheus_binary() is None:
        print("prometheus is not on PATH: run `make system-deps` first")
        return 2
    print(f"live-controller faults: interval {INTERVAL_S:g} s, each fault held {FAULT_S:g} s")
    print(run_fault("prometheus-down", prometheus_down, clean=FRESH), flush=True)
    print(run_fault("stale-metrics", stale, explicit=True, clean=FRESH), flush=True)
    print(run_fault("nan-metrics", nan, clean=FINITE), flush=True)
    print(run_fault("partial-scrape-1-of-3", partial_scrape, clean=ALL_DECODE_RATES), flush=True)
    print(run_fault("api-500", api(500), cluster_down=True), flush=True)
    print(run_fault("api-timeouts", api(0, delay_s=1.5), cluster_down=True), flush=True)
    print(run_fault("api-409-on-scale", _conflicts), flush=True)
    print(kill_restart(), flush=True)
    print(leader_failover(), flush=True)
    return 0


def _conflicts(s: Stack) -> Callable[[], None]:
    """409 on every scale write while the load doubles: the scale-out waits, then goes through once."""
    fault = s.kube.inject(Fault("PATCH", r"/scale$", status=409, count=10_000))
    s.exporter.set_load("chat", decode_tps=5600.0, prefill_tps=16000.0)
    return lambda: setattr(fault, "count", fault.hits)


if __name__ == "__main__":
    sys.exit(main())
