"""``heteroscale demo``: start the pieces, run the unchanged live controller through a load ramp, show
what it decided, stop everything.

Order: the targets from a pressure test of the simulated service (as ``simulate`` gets them); the
Kubernetes API fake with the scenario's nodes; the simulated engines' metrics server; a real
Prometheus scraping it; the controller (``heteroscale controller``, its own process, with a config the
demo writes); the controller's first cycle raises both roles to their minimum — those first pods turn
Ready at once (a service already running), later ones after the cold start — and then the bridge
starts the simulated clock and the load. While it runs, every decision that changes the counts is
printed as the journal records it, with a status line now and then. At the end (or on Ctrl-C or an
error) the controller gets SIGTERM and everything else is stopped by its handle, each wait bounded;
then the run's report is written.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

import heteroscale
from heteroscale.clock import Clock, WallClock
from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario
from heteroscale.demo.bridge import BridgeThread, RequestTally, SimBridge
from heteroscale.demo.exporter import MetricsServer
from heteroscale.demo.load import Ramp, ramp_load
from heteroscale.demo.prometheus import INSTALL_HINT, PrometheusProcess, free_port, prometheus_binary
from heteroscale.demo.report import summary_line, write_report
from heteroscale.demo.setup import (
    IDENTITY,
    NAMESPACE,
    DemoSettings,
    controller_config,
    node_objects,
    service_entry,
    write_kubeconfig,
)
from heteroscale.errors import HeteroScaleError
from heteroscale.experiments.pressure import pressure_test
from heteroscale.reports.decisions import decision_text, moves_counts
from heteroscale.sim.request_engine import RequestEngine
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.scenario import Fidelity
from heteroscale.sim.traces import bundled_trace_path, read_trace

log = logging.getLogger(__name__)

Say = Callable[[str], None]
CONTROLLER_STOP_TIMEOUT_S = 20.0
POLL_S = 0.5
STATUS_EVERY_S = 20.0
DEMO_EXTRA_HINT = "the demo needs its extra: pip install 'heteroscale[demo]' (kmock, for the Kubernetes API fake)"
ACCESS_ENV = ("HETEROSCALE_KUBECONFIG", "HETEROSCALE_CONTEXT", "HETEROSCALE_NAMESPACE")


class DemoUnavailable(HeteroScaleError):
    """Something the demo needs is not installed; the message says how to install it."""


@dataclass(slots=True)
class DemoOutcome:
    exit_code: int
    run_dir: Path
    decisions: list[dict[str, Any]] = field(default_factory=list)
    controller_exit: int | None = None
    controller_pid: int | None = None
    prometheus_pid: int | None = None
    prometheus_version: str = "unknown"
    interrupted: bool = False
    problem: str | None = None
    files: dict[str, Path] = field(default_factory=dict)


def check_prerequisites() -> None:
    """One line saying what to install when Prometheus or the demo extra is missing."""
    if prometheus_binary() is None:
        raise DemoUnavailable(INSTALL_HINT)
    try:
        import heteroscale.demo.kube_fake  # noqa: F401  (kmock and aiohttp come with the demo extra)
    except ImportError as exc:
        raise DemoUnavailable(DEMO_EXTRA_HINT) from exc


class JournalTail:
    """The decisions (outcome lines) appended to the controller's journal since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        out = []
        for raw in data[:end].splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("phase") == "outcome":
                out.append(line)
        return out


class Demo:
    """One run of the demo (module doc). ``run()`` always stops what it started."""

    def __init__(self, settings: DemoSettings, run_dir: Path, say: Say, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.say = say
        self.stop_requested = stop or threading.Event()
        self.clock: Clock = WallClock()
        self.outcome = DemoOutcome(exit_code=1, run_dir=run_dir)
        self._cleanup: list[tuple[str, Callable[[], object]]] = []
        self.controller: subprocess.Popen[bytes] | None = None
        self._served = False  # the simulated clock started: there is a run to report
        self._load_epoch_s = 0.0  # wall time (epoch) when the load began

    # --- start-up ------------------------------------------------------------------------------

    def _prepare_simulation(self) -> tuple[SimulationRun, RequestTally, Any]:
        s = self.settings
        scenario = load_scenario(s.scenario)
        if scenario.settings.fidelity is not Fidelity.REQUEST:
            raise HeteroScaleError(f"scenario {s.scenario}: the demo needs request fidelity")
        service = scenario.services[0]
        calibration = calibration_for(scenario)
        self.say(f"pressure-testing {service.spec.name} in the simulator for its targets (as `simulate` does) …")
        targets = pressure_test(scenario, service.spec.name, calibration, seed=s.seed).targets
        lengths = read_trace(bundled_trace_path("AzureLLMInferenceTrace_conv.csv"))
        load = ramp_load(
            service.spec,
            lengths,
            Ramp(s.base_rps, s.peak_rps),
            s.horizon_s,
            scenario.settings.cold_start_s,
            seed=s.seed,
        )
        sim = SimulationRun(scenario, calibration, loads=[load], targets={service.spec.name: targets})
        if not isinstance(sim.engine, RequestEngine):
            raise HeteroScaleError("the demo needs the request-level engine")
        tally = RequestTally()
        sim.engine.records = tally  # the engine's per-request records become the pods' histograms
        return sim, tally, targets

    def _start_controller(self, config_path: Path) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k not in ACCESS_ENV and k != "POD_NAME"}
        # the controller runs the same heteroscale as this process, wherever it was imported from
        package_root = str(Path(heteroscale.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        bound_s = self.settings.duration_s + self.settings.bootstrap_timeout_s + 60.0  # its own stop, if ours fails
        command = [sys.executable, "-m", "heteroscale.cli.main", "controller", "--config", str(config_path)]
        command += ["--duration-s", f"{bound_s:g}"]
        with (self.run_dir / "controller.log").open("ab") as log_file:
            return subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def _stop_controller(self) -> None:
        process, self.controller = self.controller, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            self.outcome.controller_exit = process.wait(timeout=CONTROLLER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            self.outcome.controller_exit = process.wait(timeout=CONTROLLER_STOP_TIMEOUT_S)

    def _controller_log_tail(self) -> str:
        lines = (self.run_dir / "controller.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> DemoOutcome:
        check_prerequisites()
        from heteroscale.demo.kube_server import KubeFakeServer

        s = self.settings
        self.run_dir.mkdir(parents=True, exist_ok=True)
        sim, tally, targets = self._prepare_simulation()
        spec = sim.scenario.services[0].spec
        try:
            if self.stop_requested.is_set():  # asked to stop while the targets were computed
                raise KeyboardInterrupt
            kube = KubeFakeServer(node_objects(sim.scenario.topology, _label_keys()), ready_after_s=0.0).start()
            self._cleanup.append(("the Kubernetes API fake", kube.stop))
            metrics = MetricsServer().start()
            self._cleanup.append(("the engine metrics server", metrics.stop))
            prometheus = PrometheusProcess(
                self.run_dir / "prometheus", [f"127.0.0.1:{metrics.port}"], s.scrape_interval_s, self.clock
            ).start()
            self._cleanup.append(("prometheus", prometheus.stop))
            self.outcome.prometheus_pid = prometheus.pid
            self.outcome.prometheus_version = prometheus.version()
            http_port = free_port()
            write_kubeconfig(self.run_dir / "kubeconfig.yaml", kube.url)
            config = controller_config(s, service_entry(s.scenario, spec.name), targets, prometheus.url, http_port)
            config_path = self.run_dir / "controller.yaml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
            self._intro(kube.url, len(kube.nodes), prometheus, http_port, targets)
            self.controller = self._start_controller(config_path)
            self._cleanup.append(("the controller", self._stop_controller))
            self.outcome.controller_pid = self.controller.pid
            self._bootstrap(kube, spec.min_prefill, spec.min_decode, sim.scenario.settings.cold_start_s)
            bridge = SimBridge(
                sim.engine,  # type: ignore[arg-type]  # checked in _prepare_simulation
                0,
                spec,
                NAMESPACE,
                lambda: kube.pods(NAMESPACE),
                s.speedup,
                tally,
                util_span_s=s.speedup * s.scrape_interval_s,
            )
            ticker = BridgeThread(bridge, metrics, self.clock, s.tick_s, s.horizon_s).start()
            self._load_epoch_s = self.clock.now_s()
            self._served = True
            self._cleanup.append(("the simulation bridge", ticker.stop))
            self._watch(ticker, http_port)
            self._snapshot_metrics(http_port)
        except KeyboardInterrupt:
            self.outcome.interrupted = True
            self.say("interrupted: stopping everything …")
        finally:
            self._stop_all()
        self.outcome.decisions = JournalTail(self.run_dir / "journal.jsonl").read()
        if self._served:
            files, summary = write_report(self.run_dir, sim, min(s.horizon_s, sim.engine.now_s), self.outcome.decisions)
            self.outcome.files.update(files)
            self.say(summary_line(summary))
        self._conclude()
        return self.outcome

    def _intro(self, kube_url: str, nodes: int, prometheus: PrometheusProcess, http_port: int, targets: Any) -> None:
        s = self.settings
        decode_target = ", ".join(f"{k} {v:.0f} tok/s" for k, v in targets.decode_tps_per_instance)
        self.say(f"run directory: {self.run_dir}")
        self.say(
            f"Kubernetes API: a fake (kmock; {nodes} nodes of the {s.scenario} scenario's topology) at {kube_url}, "
            f"namespace {NAMESPACE}; its pods run nothing, the simulator serves their load"
        )
        self.say(
            f"Prometheus {self.outcome.prometheus_version} (the real binary) at {prometheus.url}, "
            f"scraping the simulated engines every {s.scrape_interval_s:g} s"
        )
        self.say(
            f"time: the simulator runs ×{s.speedup:g} (one wall second = {s.speedup:g} simulated seconds); the "
            f"controller's interval, window and cooldowns and the pods' cold start are divided by {s.speedup:g}"
        )
        self.say(f"targets (pressure test): decode {decode_target} per instance")
        self.say(
            f"load: {s.base_rps:g} → {s.peak_rps:g} → {s.base_rps:g} requests per simulated second over "
            f"{s.duration_s:g} s of wall time ({s.horizon_s / 60:.0f} simulated minutes)"
        )
        self.say(
            f"controller: /metrics and /healthz at http://127.0.0.1:{http_port}, log {self.run_dir}/controller.log"
        )

    def _bootstrap(self, kube: Any, min_prefill: int, min_decode: int, cold_start_s: float) -> None:
        """Wait (bounded) for the controller's first pods to turn Ready, then give new pods the cold start."""
        s = self.settings
        deadline = self.clock.monotonic_s() + s.bootstrap_timeout_s
        for _ in range(int(s.bootstrap_timeout_s / POLL_S) + 2):
            if self.stop_requested.is_set():
                raise KeyboardInterrupt
            if self.controller is not None and self.controller.poll() is not None:
                raise HeteroScaleError(f"the controller exited at start: {self._controller_log_tail()}")
            ready = kube.ready_counts(NAMESPACE)
            if any(p >= min_prefill and d >= min_decode for p, d in ready.values()):
                kube.call(functools.partial(_set_ready_after, ready_after_s=s.wall_s(cold_start_s)))
                self.say(f"the controller created {min_prefill}P/{min_decode}D; the load starts now")
                return
            if self.clock.monotonic_s() >= deadline:
                break
            self.clock.sleep_s(POLL_S)
        raise HeteroScaleError(f"no Ready pods within {s.bootstrap_timeout_s:g} s: {self._controller_log_tail()}")

    def _watch(self, ticker: BridgeThread, http_port: int) -> None:
        """Print decisions as the journal records them until the run's end (bounded)."""
        s = self.settings
        tail = JournalTail(self.run_dir / "journal.jsonl")
        start = self.clock.monotonic_s()
        next_status = start + STATUS_EVERY_S
        for _ in range(int(s.duration_s / POLL_S) + 10):
            for record in tail.read():
                if moves_counts(record):
                    self.say(decision_text(record, at=self._sim_label(record)))
            now = self.clock.monotonic_s()
            if now >= next_status:
                self.say(self._status(ticker))
                next_status = now + STATUS_EVERY_S
            if self.stop_requested.is_set():  # first: a Ctrl-C in a terminal also reaches the controller
                raise KeyboardInterrupt
            if ticker.error is not None:
                raise HeteroScaleError(f"the simulation bridge stopped: {ticker.error}")
            if self.controller is not None and self.controller.poll() is not None:
                raise HeteroScaleError(f"the controller exited early: {self._controller_log_tail()}")
            if now - start >= s.duration_s:
                return
            self.clock.sleep_s(min(POLL_S, max(0.0, start + s.duration_s - now)))

    def _sim_label(self, record: dict[str, Any]) -> str:
        """``t+12m30s``: a journal record's wall time as simulated time since the load began."""
        t = max(0.0, (float(record.get("at_s") or 0.0) - self._load_epoch_s) * self.settings.speedup)
        return _sim_clock(t)

    def _status(self, ticker: BridgeThread) -> str:
        def read(bridge: SimBridge) -> tuple[float, tuple[int, int], float, int]:
            rows = bridge.engine.telemetry.series(bridge.spec.name)
            last = rows[-1] if rows else None
            return (
                bridge.t_s,
                bridge.ready_counts(),
                0.0 if last is None else last.decode.tps,
                bridge.tally.finished,
            )

        t, (p, d), decode_tps, finished = ticker.read(read)
        rate = Ramp(self.settings.base_rps, self.settings.peak_rps).rate_at(t / self.settings.horizon_s)
        return (
            f"  … {_sim_clock(t)}  offered {rate:.1f} req/s  serving {p}P/{d}D  "
            f"decode {decode_tps:.0f} tok/s  {finished} requests done"
        )

    def _snapshot_metrics(self, http_port: int) -> None:
        try:
            text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=2.0).text
        except httpx.HTTPError as exc:
            log.warning("the controller's /metrics could not be read: %s", exc)
            return
        path = self.run_dir / "controller-metrics.txt"
        path.write_text(text, encoding="utf-8")
        self.outcome.files["controller /metrics at the end"] = path

    def _stop_all(self) -> None:
        """Stop everything started, last first; one failing stop does not keep the others running."""
        while self._cleanup:
            what, stop = self._cleanup.pop()
            try:
                stopped = stop()
            except (OSError, RuntimeError, subprocess.SubprocessError, TimeoutError) as exc:
                log.warning("stopping %s: %s", what, exc)
                self.outcome.problem = self.outcome.problem or f"stopping {what}: {exc}"
                continue
            if stopped is False:  # a thread that did not end within its bounded wait
                self.outcome.problem = self.outcome.problem or f"{what} did not stop in time"

    def _conclude(self) -> None:
        o = self.outcome
        moved = [d for d in o.decisions if moves_counts(d)]
        self.say("")
        self.say(f"the controller made {len(o.decisions)} decisions; {len(moved)} changed the counts:")
        for record in moved:
            self.say("  " + decision_text(record, at=self._sim_label(record) if self._served else None))
        self.say(f"journal {self.run_dir / 'journal.jsonl'}; controller log {self.run_dir / 'controller.log'}")
        for label, path in o.files.items():
            self.say(f"{label}: {path}")
        self.say(
            f"stopped: the controller (exit {o.controller_exit}), Prometheus, the Kubernetes API fake, the engines"
        )
        ok = o.controller_exit == 0 and o.problem is None and not o.interrupted
        o.exit_code = 0 if ok else (130 if o.interrupted else 1)


def _sim_clock(t_s: float) -> str:
    return f"t+{int(t_s // 60):02d}m{int(t_s % 60):02d}s"


def _set_ready_after(fake: Any, ready_after_s: float) -> None:
    fake.ready_after_s = ready_after_s  # pods created from now on turn Ready after the cold start


def _label_keys() -> Any:
    from heteroscale.actuators.kube.api import LabelKeys

    return LabelKeys()


__all__ = ["IDENTITY", "Demo", "DemoOutcome", "DemoSettings", "DemoUnavailable", "check_prerequisites"]
