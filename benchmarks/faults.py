"""Fault benchmark for the live controller: one line per fault.

Each fault runs in a fresh local stack on 127.0.0.1 — a real Prometheus (Debian's binary) scraping the
test exporter, the Kubernetes API fake (kmock + heteroscale/demo/kube_fake.py) and ``heteroscale controller``
as a subprocess (two, leader and standby, where the fault needs them) reconciling every INTERVAL_S —
and prints:

    <fault>  outcome=<what the controller did>  recover=<s> (target ≤ 2 intervals)
             non-holder-writes=<n> (target 0)  unjournaled-actions=<n> (target 0)  records=<n> lost=<n>

* ``recover``: from the moment the fault clears (or, for ``clean`` faults, Prometheus holds usable data
  again) to the first DecisionRecord that is again a normal decision (observation read, cluster
  written); for a killed leader, from the kill to the standby's first decision.
* ``non-holder-writes``: writes the Kubernetes fake applied while their writer (named by its
  ``User-Agent``) did not hold the Lease — split brain.
* ``unjournaled-actions``: applied outcomes with no earlier intent record of the same ``decision_id``,
  plus every cluster write made while the controller's journal could not be written.
* ``lost``: records that should be in a journal and are not — a gap in the per-run decision counter
  (the ``#n`` of ``decision_id``), an intent without its outcome, or a line that does not parse. A slow
  cycle makes no decision id, so it is not a lost record.

A fault is one entry of ``FAULTS``: a name, ``inject(stack)`` returning the function that clears it,
and what the stack needs (two replicas, a short lease, a PromQL query that says the data is clean).

Run: ``.venv/bin/python benchmarks/faults.py [NAME …]`` (needs ``prometheus`` on PATH: ``make system-deps``).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.engine_exporter import EngineExporter, RoleLoad, ServiceLoad  # noqa: E402
from tests.support.journal_audit import decisions, journal_lines, lost_records, unjournaled  # noqa: E402
from tests.support.kube_fake import LEASES, PODS, Fault, KubeFakeServer  # noqa: E402
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
LEASE: Mapping[str, float] = {"lease_duration_s": 6.0, "renew_deadline_s": 4.0, "retry_period_s": 0.5}
SHORT_LEASE: Mapping[str, float] = {
    "lease_duration_s": 3.0,
    "renew_deadline_s": 2.0,
    "retry_period_s": 0.5,
    "prometheus_timeout_s": 0.5,
}
FRESH = 'max(timestamp({__name__=~"vllm[:_]num_requests_running"})) > time() - 1.5'
FINITE = 'sum(rate({__name__=~"vllm[:_]generation_tokens_total"}[5000ms])) >= 0'
# every decode pod has a rate again (two fresh samples): what a coverage check needs
ALL_DECODE_RATES = 'count(rate({__name__=~"vllm[:_]generation_tokens_total", role="decode"}[5000ms])) >= 3'
IMAGE = "vllm/vllm-openai:v0.8.5"  # the image live_env's workload runs
GEN = 'rate({__name__="vllm:generation_tokens_total"}[5s])'


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Replica:
    identity: str
    config: Path
    journal: Path
    log: Path
    process: Popen[bytes] | None = None
    limited_from_s: float | None = None  # its journal could not grow from then …
    limited_until_s: float | None = None  # … until then


@dataclass
class Stack:
    workdir: Path
    kube: KubeFakeServer
    exporter: EngineExporter
    prometheus: PrometheusServer
    replicas: dict[str, Replica] = field(default_factory=dict)

    def counts(self) -> tuple[int, int]:
        deployments = self.kube.deployments(NAMESPACE)
        return role_replicas(deployments, "prefill"), role_replicas(deployments, "decode")

    def ready(self) -> tuple[int, int]:
        return self.kube.ready_counts(NAMESPACE).get("chat", (0, 0))

    def holder(self) -> str | None:
        return self.kube.call(lambda f: f.lease_holder())  # type: ignore[no-any-return]

    def transitions(self) -> int:
        def read(f: Any) -> int:
            leases = f.live_objects(LEASES, NAMESPACE)
            return int((leases[0].get("spec") or {}).get("leaseTransitions") or 0) if leases else 0

        return self.kube.call(read)  # type: ignore[no-any-return]

    def start(self, identity: str, *, file_size_limit_bytes: int | None = None) -> None:
        r = self.replicas[identity]
        r.process = start_controller(
            r.config, "--duration-s", "180", log_path=r.log, file_size_limit_bytes=file_size_limit_bytes
        )

    def stop(self, identity: str, *, kill: bool = False) -> None:
        r = self.replicas[identity]
        if r.process is not None:
            stop_process(r.process, kill=kill)
            r.process = None

    def stop_all(self) -> None:
        for identity in self.replicas:
            self.stop(identity)
        self.prometheus.stop()
        self.exporter.stop()
        self.kube.stop()


def stack(workdir: Path, case: Case) -> Stack:
    kube = KubeFakeServer(gpu_nodes(), ready_after_s=0.3).start()
    load = ServiceLoad("chat", prefill=RoleLoad(1, 8000.0, 6000.0), decode=RoleLoad(1, 2800.0, 1500.0), base_tbt_s=0.02)
    # explicit timestamps only where a stale (frozen) exporter is the fault: Prometheus then keeps old
    # samples instead of marking the series stale, as with a lagging federation or remote-write source
    exporter = EngineExporter(
        [load], explicit_timestamps=case.explicit, instances_source=lambda: kube.ready_counts(NAMESPACE)
    )
    exporter.start()
    prometheus = PrometheusServer(workdir / "prometheus", [f"127.0.0.1:{exporter.port}"]).start()
    s = Stack(workdir, kube, exporter, prometheus)
    for identity in ("bench-a", "bench-b") if case.standby else ("bench-a",):
        config = controller_config(
            workdir,
            prometheus.url,
            kube.url,
            identity=identity,
            staleness_s=3.0,
            interval_s=INTERVAL_S,
            journal=f"{identity}.jsonl",
            name=f"{identity}.yaml",
            extra={k: dict(v) for k, v in case.extra.items()},
            **case.lease,
        )
        s.replicas[identity] = Replica(identity, config, workdir / f"{identity}.jsonl", workdir / f"{identity}.log")
    result = run_controller(s.replicas["bench-a"].config, "--once")  # raises both roles to their minimum
    if result.returncode != 0:
        s.stop_all()
        raise RuntimeError(result.stderr[-2000:])
    wait_until(lambda: prometheus.has_data(GEN), 30.0, 0.25)
    return s


# --- reading the journals (tests/support/journal_audit.py) ----------------------------------------


def normal(record: dict[str, Any]) -> bool:
    outcome = record.get("outcome", {})
    return (
        "error" not in record["observation"]
        and record["recommendation"]["reason"] not in HOLDS
        and not [e for e in outcome.get("errors", []) if not str(e).startswith("unplaced")]
        and "held" not in outcome
    )


# --- one fault -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One fault: ``inject(stack)`` starts it and returns the function that clears it."""

    name: str
    inject: Callable[[Stack], Callable[[], None]]
    clean: str | None = None  # PromQL answering once Prometheus holds usable data again
    cluster_down: bool = False  # the API itself fails: no decision can be made meanwhile
    explicit: bool = False  # the exporter stamps its samples
    standby: bool = False  # a second replica runs
    lease: Mapping[str, float] = field(default_factory=lambda: dict(LEASE))
    fault_s: float = FAULT_S
    recover_from_inject: bool = False  # time recovery from the fault itself (a killed leader)
    recover_note: str | None = None  # what bounds recovery when it is not two intervals
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # config fields per section
    recover_ready: bool = False  # recovery is the service back at its Ready counts (the fault stays)


def run_fault(case: Case) -> str:
    with tempfile.TemporaryDirectory(prefix=f"faults-{case.name}-") as tmp:
        s = stack(Path(tmp), case)
        try:
            for identity in s.replicas:
                s.start(identity)
            journals = [r.journal for r in s.replicas.values()]  # every replica up: its start-up checkpoint
            wait_until(lambda: all(j.exists() and j.stat().st_size > 0 for j in journals), 30.0, 0.2)
            wait_until(lambda: s.holder() is not None, 15.0, 0.2)
            if not wait_until(lambda: s.counts() == (3, 3), 60.0, 0.5):
                return f"{case.name:<24} outcome=did not reach 3P/3D before the fault ({s.counts()})"
            CLOCK.sleep_s(2.0)
            before = s.counts()
            transitions_before = s.transitions()
            start_s = CLOCK.now_s()
            ready_before = s.ready()
            clear = case.inject(s)
            ready_again_s: float | None = None
            # with recover_ready the fault stays: recovery is the Ready capacity back, elsewhere
            if case.recover_ready and wait_until(lambda: s.ready() == ready_before, 120.0, 0.5):
                ready_again_s = CLOCK.now_s() - start_s
            CLOCK.sleep_s(case.fault_s)
            during = s.counts()
            clear()
            cleared_s = CLOCK.now_s()
            clean_s = cleared_s
            if case.clean is not None:
                wait_until(lambda: s.prometheus.has_data(case.clean), 20.0, 0.1)
                clean_s = CLOCK.now_s()
            CLOCK.sleep_s(4.0 * INTERVAL_S + 2.0)
            transitions = s.transitions() - transitions_before  # before a stop hands the Lease on
            for identity in s.replicas:
                s.stop(identity)
            writes = s.kube.writes()
        finally:
            s.stop_all()
        lines: list[dict[str, Any]] = []
        bad = lost = no_intent = 0
        for r in s.replicas.values():
            got, unparsed = journal_lines(r.journal)
            lines += got
            bad += unparsed
            lost += lost_records(got)
            no_intent += unjournaled(got)
            if r.limited_from_s is not None:  # no intent could be made durable then: every write is one
                until = r.limited_until_s or cleared_s
                no_intent += sum(1 for w in writes if w.writer == r.identity and r.limited_from_s <= w.at_s <= until)
        recs = sorted(decisions(lines), key=lambda r: r["at_s"])
        unrecorded = sum(r.log.read_text().count("the intent cannot be journaled") for r in s.replicas.values())
        non_holder = len([w for w in writes if not w.by_holder])
        during_recs = [r for r in recs if start_s + INTERVAL_S < r["at_s"] < cleared_s]
        held = [r for r in during_recs if not normal(r)]
        origin_s = start_s if case.recover_from_inject else clean_s
        after = [r for r in recs if r["at_s"] >= (start_s if case.recover_from_inject else cleared_s) and normal(r)]
        recover = f"{after[0]['at_s'] - origin_s:.2f} s" if after else "never"
        if after and case.clean is not None:
            recover += f" after usable data ({clean_s - cleared_s:.1f} s after the clear)"
        ok = bool(after) and after[0]["at_s"] - origin_s <= 2 * INTERVAL_S
        repeated = sum(len(r["outcome"].get("launched", [])) + len(r["outcome"].get("removed", [])) for r in after)
        refused = [r for r in held if r["outcome"].get("errors")]
        if case.cluster_down:
            what = f"no decision while the API failed, {repeated} action(s) after it"
        elif refused:
            what = f"actuation refused and reported (transient) in {len(refused)}/{len(during_recs)} cycles"
        elif held:
            reasons = sorted({r["recommendation"]["reason"] for r in held})
            what = f"held {len(held)}/{len(during_recs)} cycles ({', '.join(reasons)})"
        else:
            what = f"{len(during_recs)} decision(s) recorded while it lasted, {repeated} action(s) after"
        if unrecorded:
            what += f"; {unrecorded} decision(s) held unrecorded (journal-unwritable, in the log and /metrics)"
        stuck = [x for r in recs if start_s <= r["at_s"] for x in r["plan"].get("stuck", [])]
        if stuck:
            why = sorted({str(x["reason"]) for x in stuck})
            what += f"; {len(stuck)} stuck instance(s) replaced ({', '.join(why)})"
        if case.recover_ready:
            recover = "never" if ready_again_s is None else f"{ready_again_s:.2f} s"
            recover += f" to {ready_before[0]}P/{ready_before[1]}D Ready again, from the fault"
        scaled = "" if during == before else f" counts {before}→{during}"
        target = case.recover_note or f"{'within' if ok else 'OVER'} 2×{INTERVAL_S:g} s"
        return (
            f"{case.name:<24} outcome={what}{scaled}, {transitions} leadership change(s)  recover={recover} "
            f"({target})  non-holder-writes={non_holder}  unjournaled-actions={no_intent}  "
            f"records={len(recs)} lost={lost + bad}"
        )


# --- the faults ----------------------------------------------------------------------------------


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


def never_ready(s: Stack) -> Callable[[], None]:
    """New pods never become Ready (an image that cannot be pulled): two decode pods die and come back
    stuck; past the start time-out they stop counting and are replaced — until the image pulls again."""
    s.kube.call(lambda f: f.never_ready_images.add(IMAGE))
    decode = [p for p in s.kube.pods(NAMESPACE) if p["metadata"]["labels"].get("heteroscale.io/role") == "decode"]
    for pod in sorted(decode, key=lambda p: p["metadata"]["name"])[:2]:
        s.kube.call(lambda f, name=pod["metadata"]["name"]: f.objects[PODS, NAMESPACE, name].delete())
    return lambda: s.kube.call(lambda f: f.never_ready_images.clear())


def cordon_big_pod(s: Stack) -> Callable[[], None]:
    """``kubectl drain`` of every node of the big-pod the service runs in: its deployment groups are
    pinned there, so they must be re-placed in the other big-pod (the nodes stay cordoned)."""
    bound = [p["spec"].get("nodeName") or "" for p in s.kube.pods(NAMESPACE)]
    big_pods = [name.rsplit("-n", 1)[0] for name in bound if name]
    busiest = max(set(big_pods), key=big_pods.count)  # the service's pods: all in one big-pod at 3P/3D
    nodes = [n["metadata"]["name"] for n in gpu_nodes() if n["metadata"]["name"].startswith(f"{busiest}-n")]
    s.kube.drain(nodes)
    return lambda: None


def api(status: int, delay_s: float = 0.0) -> Callable[[Stack], Callable[[], None]]:
    def inject(s: Stack) -> Callable[[], None]:
        fault = s.kube.inject(Fault("GET", r"^/api", status=status, count=10_000, delay_s=delay_s))
        return lambda: setattr(fault, "count", fault.hits)

    return inject


def conflicts(s: Stack) -> Callable[[], None]:
    """409 on every scale write while the load doubles: the scale-out waits, then goes through once."""
    fault = s.kube.inject(Fault("PATCH", r"/scale$", status=409, count=10_000))
    s.exporter.set_load("chat", decode_tps=5600.0, prefill_tps=16000.0)
    return lambda: setattr(fault, "count", fault.hits)


def slow_cycles(s: Stack) -> Callable[[], None]:
    """Every cluster read takes 0.5 s (a cycle outlasts the 3 s lease) while the load doubles."""
    fault = s.kube.inject(Fault("GET", r"/(nodes|pods|deployments)$", status=0, delay_s=0.5, count=100_000))
    s.exporter.set_load("chat", decode_tps=5600.0, prefill_tps=16000.0)
    return lambda: setattr(fault, "count", fault.hits)


def journal_full(s: Stack) -> Callable[[], None]:
    """The leader's journal cannot grow by a byte (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC)
    while the load doubles; then it has room again."""
    leader = s.replicas[s.holder() or "bench-a"]
    s.stop(leader.identity)
    leader.limited_from_s = CLOCK.now_s()
    s.start(leader.identity, file_size_limit_bytes=leader.journal.stat().st_size)
    s.exporter.set_load("chat", decode_tps=5600.0, prefill_tps=16000.0)

    def clear() -> None:
        s.stop(leader.identity)
        leader.limited_until_s = CLOCK.now_s()
        s.start(leader.identity)

    return clear


def kill_restart(s: Stack) -> Callable[[], None]:
    """SIGKILL the controller; restart it: state from the cluster, nothing repeated."""
    leader = s.holder() or "bench-a"
    s.stop(leader, kill=True)
    return lambda: s.start(leader)


def kill_leader(s: Stack) -> Callable[[], None]:
    """SIGKILL whichever replica holds the Lease (read from the Lease first); the standby takes over."""
    leader = s.holder()
    if leader is None:
        raise RuntimeError("nobody leads before the kill")
    s.stop(leader, kill=True)
    return lambda: s.start(leader)


FAULTS = [
    Case("prometheus-down", prometheus_down, clean=FRESH),
    Case("stale-metrics", stale, explicit=True, clean=FRESH),
    Case("nan-metrics", nan, clean=FINITE),
    Case("partial-scrape-1-of-3", partial_scrape, clean=ALL_DECODE_RATES),
    Case(
        "pods-never-ready",
        never_ready,
        extra={"kubernetes": {"start_timeout_s": 4.0}},
        fault_s=12.0,
        recover_note="stuck pods stop counting after start_timeout_s 4 s; back once the image pulls",
    ),
    Case(
        "node-cordon-big-pod",
        cordon_big_pod,
        extra={"kubernetes": {"unschedulable_grace_s": 2.0}},
        recover_ready=True,
        recover_note="Ready capacity back in the other big-pod; the cordon stays",
    ),
    Case("api-500", api(500), cluster_down=True),
    Case("api-timeouts", api(0, delay_s=1.5), cluster_down=True),
    Case("api-409-on-scale", conflicts),
    Case(
        "split-brain-slow-cycle",
        slow_cycles,
        standby=True,
        lease=SHORT_LEASE,
        fault_s=20.0,
        recover_note="the cycle in flight at the clear is still a slow one",
    ),
    Case("journal-disk-full", journal_full, fault_s=8.0, recover_note="from the restart with room, start-up included"),
    Case("controller-kill-restart", kill_restart, fault_s=1.0, recover_note="from the restart, start-up included"),
    Case(
        "leader-failover",
        kill_leader,
        standby=True,
        fault_s=10.0,
        recover_from_inject=True,
        recover_note=f"from the kill: lease {LEASE['lease_duration_s']:g} s + retry {LEASE['retry_period_s']:g} s "
        "+ the standby's next cycle",
    ),
    # room for more, one line each: a partial scrape, pods that never become Ready, a cordoned node …
]


def main() -> int:
    if prometheus_binary() is None:
        print("prometheus is not on PATH: run `make system-deps` first")
        return 2
    chosen = [f for f in FAULTS if len(sys.argv) == 1 or f.name in sys.argv[1:]]
    print(f"live-controller faults: interval {INTERVAL_S:g} s, each fault held {FAULT_S:g} s unless noted")
    for case in chosen:
        print(run_fault(case), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
