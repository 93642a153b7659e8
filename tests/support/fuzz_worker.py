"""A worker process for the input fuzz test: runs one loader on one input per request.

Run as ``python -m tests.support.fuzz_worker``. Each request is one JSON line on stdin,
``{"target": …, "name": …, "data": <base64>}``; the worker writes ``data`` to a file called ``name`` in
its own temporary folder, runs the target on it and answers one JSON line on stdout,
``{"outcome": "ok" | "error" | "crash", "detail": …}``:

* ``ok``: loaded (or, for Prometheus, observed) and every invariant held;
* ``error``: a HeteroScale error with a one-line message that starts with the file's path;
* ``crash``: any other exception, a message of more than one line or naming no file, or a broken
  invariant.

The test (tests/unit/test_fuzz_inputs.py) bounds each request with a time-out and kills the worker on
a hang, so the worker itself needs no time-outs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import resource
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from heteroscale.clock import ManualClock
from heteroscale.config import load_catalog, load_scenario, load_topology, validate_file
from heteroscale.config.controller import build_service, load_controller_config
from heteroscale.config.demands import load_demands
from heteroscale.domain.observation import Observation, RoleSignals
from heteroscale.domain.topology import Topology
from heteroscale.errors import HeteroScaleError
from heteroscale.metrics.prometheus import PrometheusSource
from heteroscale.metrics.promql import MetricMapping
from heteroscale.sim.traces import read_azure, read_burstgpt, read_mooncake, read_rate_curve, read_trace

PLAUSIBLE_INSTANCES = 1_000_000  # no fleet is larger; a bigger "count" is a wrong answer that got used


class Broken(Exception):
    """An invariant did not hold."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise Broken(what)


def _each(*steps: Callable[[], object]) -> None:
    """Run every step; a crash in any surfaces at once, the first HeteroScale error after all ran."""
    first: HeteroScaleError | None = None
    for step in steps:
        try:
            step()
        except HeteroScaleError as exc:
            first = first or exc
    if first is not None:
        raise first


def _all_finite(value: object, where: str = "") -> None:
    """Every float in what a loader built is finite: .inf or .nan must be refused, never loaded."""
    if isinstance(value, float):
        _check(math.isfinite(value), f"{where or 'value'} = {value!r} loaded")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            _all_finite(getattr(value, field.name), f"{where}.{field.name}")
    elif isinstance(value, BaseModel):
        _all_finite(value.model_dump(), where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _all_finite(item, f"{where}.{key}")
    elif isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            _all_finite(item, f"{where}[{i}]")


def _validate(path: Path) -> None:
    report = validate_file(path)
    if not report.ok:
        _check(report.kind in (None, "scenario", "topology", "catalog"), f"kind {report.kind!r}")
        raise HeteroScaleError(report.message)


def _scenario(path: Path) -> None:
    _each(lambda: _all_finite(load_scenario(path)), lambda: _validate(path))


def _catalog(path: Path) -> None:
    _validate(path)


def _controller(path: Path) -> None:
    config, doc = load_controller_config(path)
    _all_finite(config)
    catalog = load_catalog()
    for i, service in enumerate(config.services):
        _all_finite(build_service(service, doc, ("services", i), catalog))
    p = config.prometheus  # what the controller builds next: the URL must be one the client takes
    PrometheusSource(p.url, MetricMapping(), timeout_s=p.timeout_s, staleness_s=p.staleness_s).close()


_TOPOLOGY: list[Topology] = []


def _demands(path: Path) -> None:
    if not _TOPOLOGY:
        _TOPOLOGY.append(load_topology("three-tiers"))
    _all_finite(load_demands(path, _TOPOLOGY[0]))


def _traces(reader: Callable[..., object]) -> Callable[[Path], None]:
    def run(path: Path) -> None:
        _each(lambda: reader(path, skip_bad_rows=True), lambda: reader(path))

    return run


def _rate_curve(path: Path) -> None:
    _each(lambda: read_rate_curve(path, skip_bad_rows=True, window_s=600.0), lambda: read_rate_curve(path))


# --- Prometheus ---------------------------------------------------------------------------------

FRACTIONS = ("gpu_util", "sm_activity", "kv_usage")
COUNTS = ("queue_len", "running", "tps")
OBSERVATION_VALUES = (
    "ttft_p50_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "tbt_p50_s",
    "tbt_p90_s",
    "tbt_p99_s",
    "requests_per_s",
    "mean_input_tokens",
    "mean_output_tokens",
)


def _check_role(name: str, signals: RoleSignals) -> None:
    ready = signals.instances_ready
    _check(isinstance(ready, int) and 0 <= ready <= PLAUSIBLE_INSTANCES, f"{name}.instances_ready = {ready!r}")
    for field in (*FRACTIONS, *COUNTS):
        value = getattr(signals, field)
        if value is None:
            continue
        _check(math.isfinite(value) and value >= 0, f"{name}.{field} = {value!r} used")
        _check(field not in FRACTIONS or value <= 1 + 1e-9, f"{name}.{field} = {value!r} used")


def _check_observation(obs: Observation) -> None:
    _check_role("prefill", obs.prefill)
    _check_role("decode", obs.decode)
    for field in OBSERVATION_VALUES:
        value = getattr(obs, field)
        _check(value is None or (math.isfinite(value) and value >= 0), f"{field} = {value!r} used")
    _check(math.isfinite(obs.window_start_s) and math.isfinite(obs.window_end_s), "window not finite")
    _check(all("\n" not in note for note in obs.missing), "a note of more than one line")


def _healthy(query: str) -> bytes:
    value = "999.5" if query.startswith("max(timestamp(") else "2" if query.startswith("count(") else "0.5"
    result = [{"metric": {}, "value": [1000, value]}]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def _prometheus(path: Path) -> None:
    """``path`` holds ``{"mode": …, "answers": [[index, status, body (base64)], …]}``. Mode ``cycle``:
    query i gets answer i mod n; ``override``: query i gets the answer listed for i, if any, else a
    healthy one."""
    given = json.loads(path.read_text("utf-8"))
    answers = [(int(index), int(status), base64.b64decode(body)) for index, status, body in given["answers"]]
    by_index = {index: (status, body) for index, status, body in answers}
    asked: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        i = len(asked)
        asked.append(i)
        if given["mode"] == "cycle":
            _, status, body = answers[i % len(answers)]
        else:
            status, body = by_index.get(i, (200, _healthy(request.url.params["query"])))
        return httpx.Response(status, content=body)

    source = PrometheusSource(
        "http://127.0.0.1:9",
        MetricMapping(),
        timeout_s=1.0,
        clock=ManualClock(1000.0),
        transport=httpx.MockTransport(handler),
    )
    try:
        _check_observation(source.observe("chat", 1000.0, 60.0))
    finally:
        source.close()


def _spin(_path: Path) -> None:
    """A hang on purpose: the test of the harness itself."""
    while True:
        pass


def _raise(_path: Path) -> None:
    """A crash on purpose: the test of the harness itself."""
    raise RecursionError("on purpose")


TARGETS: dict[str, Callable[[Path], None]] = {
    "_spin": _spin,
    "_raise": _raise,
    "scenario": _scenario,
    "topology": lambda path: _all_finite(load_topology(path)),
    "catalog": _catalog,
    "demands": _demands,
    "controller": _controller,
    "azure": _traces(read_azure),
    "mooncake": _traces(read_mooncake),
    "burstgpt": _traces(read_burstgpt),
    "trace": _traces(read_trace),
    "rate_curve": _rate_curve,
    "prometheus": _prometheus,
}


def run_one(folder: Path, request: dict[str, Any]) -> dict[str, str]:
    name = Path(str(request["name"])).name or "input"
    path = folder / name
    path.write_bytes(base64.b64decode(request["data"]))
    try:
        TARGETS[request["target"]](path)
    except HeteroScaleError as exc:
        message = str(exc)
        if "\n" in message or not message.strip():
            return {"outcome": "crash", "detail": f"not one line: {message!r}"}
        # a file's error names the file (or another file it names, by its absolute path)
        if request["target"] != "prometheus" and not message.startswith((str(path), "/")):
            return {"outcome": "crash", "detail": f"does not name the file: {message!r}"}
        return {"outcome": "error", "detail": message}
    except Broken as exc:
        return {"outcome": "crash", "detail": f"invariant: {exc}"}
    except BaseException as exc:  # the point of the fuzz test: anything else is a crash
        tail = "".join(traceback.format_exception(exc)[-3:])
        return {"outcome": "crash", "detail": f"{type(exc).__name__}: {tail[-1500:]}"}
    finally:
        path.unlink(missing_ok=True)
    return {"outcome": "ok", "detail": ""}


def main() -> int:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # runaway memory is a MemoryError: a crash
    with tempfile.TemporaryDirectory(prefix="heteroscale-fuzz-") as tmp:
        folder = Path(tmp)
        for line in sys.stdin:
            if not line.strip():
                continue
            answer = run_one(folder, json.loads(line))
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
