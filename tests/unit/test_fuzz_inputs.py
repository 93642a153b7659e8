"""Fuzz every file loader and the Prometheus answer parser: no crash, no hang, whatever the input.

Inputs are valid files mutated by hypothesis (values swapped for hostile ones, text spliced with
hostile snippets, rows and cells broken) plus raw bytes. Each input runs in a worker process
(tests/support/fuzz_worker.py) bounded by a time-out: a hang kills the worker and fails the example,
it is never waited out. An input may load or fail with a one-line HeteroScale error; anything else
(another exception, a message of several lines, a Prometheus value used that no signal can take)
fails. The inputs that once crashed or hung are explicit examples.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import heteroscale
from heteroscale.clock import WallClock
from heteroscale.config.bundled import data_path
from tests.unit.config_builders import scenario_dict, topology_dict

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SRC = Path(heteroscale.__file__).resolve().parents[1]
TIMEOUT_S = 20.0  # one input takes milliseconds; only a hang comes near this
QUIET = list(HealthCheck)  # slow, large examples are the point here


# --- the worker ---------------------------------------------------------------------------------


class Worker:
    """One ``python -m tests.support.fuzz_worker`` process; killed and restarted after a hang."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.pending = b""
        self.clock = WallClock()

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.pending = b""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fuzz_worker"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # trace readers log skipped rows; nothing here reads it
            env=env,
        )
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def run(self, target: str, name: str, data: bytes, timeout_s: float = TIMEOUT_S) -> dict[str, str]:
        process = self.process if self.process is not None and self.process.poll() is None else self._start()
        assert process.stdin is not None and process.stdout is not None
        request = {"target": target, "name": name, "data": base64.b64encode(data).decode("ascii")}
        try:
            process.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
            process.stdin.flush()
        except BrokenPipeError:
            self.stop()
            return {"outcome": "crash", "detail": "the worker died before reading the input"}
        line = self._line(process.stdout.fileno(), timeout_s)
        if line is None:
            self.stop()
            return {"outcome": "hang", "detail": f"no answer within {timeout_s:g} s"}
        if not line:
            code = process.wait(timeout=30)
            self.process = None
            return {"outcome": "crash", "detail": f"the worker died (exit code {code})"}
        answer: dict[str, str] = json.loads(line)
        return answer

    def _line(self, fd: int, timeout_s: float) -> bytes | None:
        """One answer line; None on a time-out, b"" when the worker is gone."""
        deadline_s = self.clock.monotonic_s() + timeout_s
        while b"\n" not in self.pending:
            left_s = deadline_s - self.clock.monotonic_s()
            if left_s <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left_s)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b""
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    try:
        yield w
    finally:
        w.stop()


def check(worker: Worker, target: str, name: str, data: bytes) -> None:
    answer = worker.run(target, name, data)
    shown = data[:300] + (b"..." if len(data) > 300 else b"")
    assert answer["outcome"] in ("ok", "error"), f"{target} on {name} {shown!r}: {answer}"


# --- hostile pieces -----------------------------------------------------------------------------

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)
DEEP = "[" * 5000 + "]" * 5000
NASTY_VALUES: list[Any] = [
    float("inf"), float("-inf"), float("nan"), 10**400, -(10**400), 2**63, 99999999999999999999, 0, -1, 1e308,
    5e-324, "", " ", "h800", "H20", "llama-3.1-70b", "http://[::1", "http://host:99999", "http://a b", "http://",
    "azure-conv", "/etc/passwd", "two-bigpods", "fixed", "heteroscale", "prefill", "decode", "\x07", "a\x00b",
    "{service}", "~", True, False, None, "9" * 5000, "s2", "h800:tp4",
]  # fmt: skip
YAML_SNIPPETS = [
    "&a ", "*a", "[*a]", "x: &a [*a]\n", LAUGHS, "[" * 300, "{a: " * 100, "\x07", "\x00", "\t", ".inf", "-.inf",
    ".nan", "!!python/object/apply:os.system ['true']", "!!binary AAAA", "!!set {a}", "!!omap [a: 1]",
    "!!timestamp 2001-12-14", "!!float", "!!int 0x1F", "? ", "<<: *a\n", "<<: [*a, *a]\n", "---\n", "...\n",
    "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "'", '"', "\ufeff", "9" * 5000, "\r", ": ", "- ", "\\", "#", "|\n",
    ">-\n", "\u2028", "\x85", "0o17", "1_000", "1e400", "\n  ", "&a [1, *a]", "\n- ", "\n  - ",
]  # fmt: skip
CELLS = [
    "", "-1", "0", "1", "1e400", "inf", "-inf", "nan", "NaN", "Infinity", "9" * 5000, "99999999999999999999",
    str(10**400), "1_000", " 5", "\u0663", "\u00b2", "1e308", "0x10", "+5", "--5", "5.5", "1e-400", "20000000",
    "2023-13-45 25:61:61", "9999-12-31 23:59:60.999999999", "0001-01-01 00:00:00", "2023-11-16T18:17:03Z",
    "2023-11-16 18:17:03+99:99", "2023-11-16 18:17:03.", "2023-11-16 18:17:03.1234567890", '"', "{", "[" * 500,
]  # fmt: skip
JSON_TOKENS = [
    "Infinity", "-Infinity", "NaN", "1e400", "-1", "0", "1.5", "true", "null", '"7"', "[]", "[1, true]", "{}",
    "9" * 5000, str(10**400), "99999999999999999999", DEEP, "[" * 40 + "]" * 40, "[18446744073709551616]",
    "[-1]", "20000000", "1e20",
]  # fmt: skip

printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)  # control characters
# stop YAML at the reader; the snippets bring them in often enough
leaf = st.one_of(st.sampled_from(NASTY_VALUES), st.integers(), st.floats(), printable, st.booleans(), st.none())
values = st.recursive(
    leaf,
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(printable, kids, max_size=3)),
    max_leaves=6,
)


def _read(*parts: str) -> str:
    return data_path(*parts).read_text(encoding="utf-8")


def _controller_seed() -> str:
    return (REPO / "deploy" / "examples" / "controller.yaml").read_text(encoding="utf-8")


SMALL_CATALOG = yaml.safe_dump(
    {
        "kind": "catalog",
        "gpus": [{"id": "h800", "cost_per_gpu_hour": 2.0}, {"id": "h20", "aliases": ["my-h20"]}],
        "models": [{"id": "llama-3.1-8b", "params_b": 8.0}],
    }
)
YAML_SEEDS: dict[str, list[str]] = {
    "scenario": [yaml.safe_dump(scenario_dict()), _read("scenarios", "small-mixed.yaml")],
    "topology": [yaml.safe_dump(topology_dict()), _read("topologies", "two-bigpods.yaml")],
    "catalog": [SMALL_CATALOG, "kind: catalog\n" + _read("catalog", "models.yaml")],
    "demands": [_read("topologies", "demands", "demands-example.yaml")],
    "controller": [_controller_seed()],
}
YAML_TARGETS = sorted(YAML_SEEDS)


# --- YAML inputs --------------------------------------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, (*prefix, index)))
    return out


@st.composite
def structured_yaml(draw: st.DrawFn, target: str) -> bytes:
    """A seed with 1–3 values replaced, removed or added, dumped back to YAML."""
    data = yaml.safe_load(draw(st.sampled_from(YAML_SEEDS[target])))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        if not path:
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(printable)] = draw(values)
        else:
            parent.append(draw(values))
    return yaml.safe_dump(data, sort_keys=False).encode("utf-8")


@st.composite
def spliced_text(draw: st.DrawFn, seeds: list[str], snippets: list[str]) -> bytes:
    """A seed with 1–4 edits: a hostile snippet or random text inserted, a slice cut or a line replaced."""
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.integers(0, 3))
        if edit == 0:
            text = text[:at] + draw(st.sampled_from(snippets)) + text[at:]
        elif edit == 1:
            text = text[:at] + draw(printable) + text[at:]
        elif edit == 2:
            text = text[:at] + text[at + draw(st.integers(1, 60)) :]
        else:
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            text = text[:start] + draw(st.sampled_from(snippets)) + text[end:]
    return text.encode("utf-8", errors="surrogatepass")


def yaml_inputs(target: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        structured_yaml(target),
        structured_yaml(target),
        spliced_text(YAML_SEEDS[target], YAML_SNIPPETS),
        spliced_text(YAML_SEEDS[target], YAML_SNIPPETS),
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    )


yaml_cases = st.sampled_from(YAML_TARGETS).flatmap(lambda t: st.tuples(st.just(t), yaml_inputs(t)))


def _with(target: str, old: str, new: str) -> tuple[str, bytes]:
    seed = YAML_SEEDS[target][0]
    assert old in seed
    return target, seed.replace(old, new, 1).encode("utf-8")


@settings(derandomize=True, deadline=None, max_examples=400, database=None, suppress_health_check=QUIET)
@given(case=yaml_cases)
@example(case=("scenario", b"kind: scenario\nx: &a [*a]\n"))
@example(case=("topology", b"kind: topology\n" + LAUGHS.encode()))
@example(case=("catalog", b"kind: catalog\ngpus: " + DEEP.encode() + b"\n"))
@example(case=("demands", b"kind: demands\nx: \x07\n"))
@example(case=("controller", b"kind: controller\nx: &a {y: [*a]}\n"))
@example(case=("scenario", b"kind: scenario\ndescription: 2001-02-30\n"))
@example(case=("topology", b"kind: topology\nx: !!timestamp soon\n"))
@example(case=("catalog", b"kind: catalog\nx: " + b"9" * 5000 + b"\n"))
@example(case=_with("scenario", "ttft_s: 2.0", "ttft_s: .inf"))
@example(case=_with("scenario", "pd_ratio: 1.0", "pd_ratio: .nan"))
@example(case=_with("topology", "gpus: 8", "gpus: 99999999999999999999"))
@example(case=_with("controller", "staleness_s: 60", "staleness_s: .inf"))
@example(case=_with("controller", "url: https://prometheus-operated.monitoring.svc:9090", "url: http://[::1"))
@example(case=_with("controller", "url: https://prometheus-operated.monitoring.svc:9090", "url: http://host:99999"))
@example(case=_with("controller", "url: https://prometheus-operated.monitoring.svc:9090", "url: http://a b"))
@example(case=_with("demands", "launched_at_s: 100", "launched_at_s: .inf"))
def test_yaml_loaders_never_crash_or_hang(worker: Worker, case: tuple[str, bytes]) -> None:
    target, data = case
    check(worker, target, f"{target}.yaml", data)


# --- trace rows ---------------------------------------------------------------------------------


def _head(name: str, rows: int) -> str:
    return "\n".join(_read("traces", name).splitlines()[: rows + 1]) + "\n"


TRACE_SEEDS: dict[str, tuple[str, str]] = {
    "azure": ("a.csv", _head("AzureLLMInferenceTrace_conv.csv", 8)),
    "burstgpt": (
        "b.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,472,18,490,Conversation log\n9,GPT-4,1087,0,1087,Conversation log\n12,ChatGPT,300,40,340,API log\n",
    ),
    "mooncake": (
        "m.jsonl",
        '{"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [0, 1, 2]}\n'
        '{"timestamp": 15, "input_length": 600, "output_length": 10, "hash_ids": [0, 3]}\n'
        '{"timestamp": 20, "input_length": 1000, "output_length": 100}\n',
    ),
    "rate_curve": ("r.csv", _head("servegen_language_m-large_rate.csv", 8)),
}


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # an earlier edit broke it (or nested it past the stack)
        return None
    return record if isinstance(record, dict) else None


@st.composite
def trace_inputs(draw: st.DrawFn, target: str) -> tuple[str, bytes]:
    """A seed trace with 1–4 broken cells, JSON values, lines or bytes (gzip-compressed now and then)."""
    kind = draw(st.sampled_from(["azure", "burstgpt", "mooncake"])) if target == "trace" else target
    name, text = TRACE_SEEDS[kind]
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.integers(0, 4))
        record = _json_object(lines[i]) if kind == "mooncake" else None
        if edit == 0 and record is not None:
            key = draw(st.sampled_from([*record, "timestamp", "input_length", "output_length", "hash_ids"]))
            record[key] = "__RAW__"
            raw = draw(st.one_of(st.sampled_from(JSON_TOKENS), st.text(max_size=6).map(json.dumps)))
            lines[i] = json.dumps(record).replace('"__RAW__"', raw)
        elif edit in (0, 1):
            cells = lines[i].split(",")
            j = draw(st.integers(0, len(cells) - 1))
            cells[j] = draw(st.one_of(st.sampled_from(CELLS), st.text(max_size=8)))
            lines[i] = ",".join(cells)
        elif edit == 2:
            del lines[i]
            lines = lines or [""]
        elif edit == 3:
            lines.insert(i, lines[i] if draw(st.booleans()) else draw(st.text(max_size=30)))
        else:
            lines[i] = draw(st.sampled_from(CELLS + JSON_TOKENS))
    data = "\n".join(lines).encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\x00"])) + data[at:]
    if target == "trace" and draw(st.integers(0, 4)) == 0:
        name = draw(st.sampled_from(["x.txt", "x.ndjson", "x"]))
    if draw(st.integers(0, 9)) == 0:
        return name + ".gz", gzip.compress(data, mtime=0) if draw(st.booleans()) else data
    return name, data


def _raw(target: str) -> st.SearchStrategy[tuple[str, bytes]]:
    names = {"azure": "a.csv", "burstgpt": "b.csv", "mooncake": "m.jsonl", "rate_curve": "r.csv", "trace": "t.csv"}
    return st.tuples(st.just(names[target]), st.binary(max_size=120))


TRACE_TARGETS = ["azure", "burstgpt", "mooncake", "rate_curve", "trace"]
trace_cases = st.sampled_from(TRACE_TARGETS).flatmap(
    lambda t: st.tuples(st.just(t), st.one_of(trace_inputs(t), trace_inputs(t), trace_inputs(t), _raw(t)))
)
AZURE_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
BURSTGPT_HEAD = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


def _row(target: str, name: str, text: str) -> tuple[str, tuple[str, bytes]]:
    return target, (name, text.encode("utf-8"))


@settings(derandomize=True, deadline=None, max_examples=500, database=None, suppress_health_check=QUIET)
@given(case=trace_cases)
@example(case=_row("azure", "a.csv", f"{AZURE_HEAD}2023-11-16 18:17:03.97,{'9' * 5000},5\n"))
@example(case=_row("azure", "a.csv", f"{AZURE_HEAD}2023-11-16 18:17:03.97,99999999999999999999,5\n"))
@example(case=_row("burstgpt", "b.csv", f"{BURSTGPT_HEAD}1,m,{10**400},5,10,x\n2,m,5,5,10,x\n"))
@example(case=_row("burstgpt", "b.csv", f"{BURSTGPT_HEAD}99999999999999999999,m,5,5,10,x\n"))
@example(case=_row("mooncake", "m.jsonl", f'{{"timestamp": 1, "input_length": {"9" * 5000}, "output_length": 3}}\n'))
@example(case=_row("mooncake", "m.jsonl", f'{{"timestamp": 1, "input_length": {10**400}, "output_length": 3}}\n'))
@example(case=_row("mooncake", "m.jsonl", f'{{"timestamp": 1, "input_length": 3, "output_length": 3, "x": {DEEP}}}\n'))
@example(case=_row("rate_curve", "r.csv", f"window_start_s,total_rate_rps,active_clients\n0,1,{'9' * 5000}\n"))
@example(case=_row("rate_curve", "r.csv", "window_start_s,total_rate_rps\n0,1e300\n600,1\n"))
@example(case=_row("trace", "passwd", "root:x:0:0:root:/root:/bin/bash\n"))
def test_trace_readers_never_crash_or_hang(worker: Worker, case: tuple[str, tuple[str, bytes]]) -> None:
    target, (name, data) = case
    check(worker, target, name, data)


# --- Prometheus answers -------------------------------------------------------------------------

SAMPLES = [
    "0", "1", "-3", "1.5", "150", "NaN", "+Inf", "-Inf", "1e400", "9" * 400, "1_0", " 5", "", "x", "0x10",
    "1e-320", "-0", "2.5", "1000001", "nan", "infinity", "999.5",
]  # fmt: skip


def _vector(*samples: str) -> bytes:
    result = [{"metric": {}, "value": [1000, v]} for v in samples]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


SHAPES = [
    _vector(),
    _vector("1", "2"),
    b'{"status":"success","data":{"resultType":"scalar","result":[1000,"5"]}}',
    b'{"status":"success","data":{"resultType":"scalar","result":"5"}}',
    b'{"status":"success","data":{"resultType":"matrix","result":[]}}',
    b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,5]}]}}',
    b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1]}]}}',
    b'{"status":"success","data":{"resultType":"vector","result":[null]}}',
    b'{"status":"success","data":{"resultType":"vector"}}',
    b'{"status":"error","errorType":"bad_data","error":"parse error\nat line 2"}',
    b'{"status":"success"}',
    b"null",
    b"[]",
    b"<html>down</html>",
    b'{"status":"success","data":' + DEEP.encode() + b"}",
]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids, max_size=3)),
    max_leaves=8,
)
sample_values = st.one_of(st.sampled_from(SAMPLES), st.floats().map(repr), st.integers().map(str), st.text(max_size=8))
bodies = st.one_of(
    sample_values.map(_vector),
    sample_values.map(_vector),
    sample_values.map(_vector),
    st.sampled_from(SHAPES),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
)
statuses = st.sampled_from([200] * 12 + [400, 422, 503])
# "override": query i gets the answer listed for i, every other query a healthy one, so that one wrong
# answer reaches its signal; "cycle": query i gets answer i mod n, so that many wrong answers meet
answers = st.one_of(
    st.tuples(
        st.just("override"),
        st.lists(st.tuples(st.integers(0, 40), statuses, bodies), min_size=1, max_size=4),
    ),
    st.tuples(
        st.just("cycle"),
        st.lists(st.tuples(st.just(0), statuses, bodies), min_size=1, max_size=4),
    ),
)
Answers = tuple[str, list[tuple[int, int, bytes]]]


def _every(*bodies: bytes) -> Answers:
    return "cycle", [(0, 200, body) for body in bodies]


def _only(index: int, body: bytes) -> Answers:
    return "override", [(index, 200, body)]


@settings(derandomize=True, deadline=None, max_examples=300, database=None, suppress_health_check=QUIET)
@given(case=answers)
@example(case=_every(_vector("999.5"), _vector("-3")))  # negative queues, counts, latencies
@example(case=_every(_vector("999.5"), _vector("1.5")))  # utilisation above 1
@example(case=_every(_vector("999.5"), _vector("-2"), _vector("150")))
@example(case=_every(_vector("999.5"), _vector("NaN"), _vector("+Inf")))
@example(case=_only(2, _vector("-2")))  # the first role's instance count
@example(case=_every(SHAPES[-1]))  # nested past the stack
@example(case=_every(_vector("1_0")))
@example(case=_every(b"[" + b"0," * (1 << 20) + b"0]"))  # larger than MAX_ANSWER_BYTES
def test_prometheus_answers_never_crash_hang_or_get_used_when_impossible(worker: Worker, case: Answers) -> None:
    mode, listed = case
    plain = [[index, status, base64.b64encode(body).decode("ascii")] for index, status, body in listed]
    check(worker, "prometheus", "answers.json", json.dumps({"mode": mode, "answers": plain}).encode())


def test_the_harness_catches_hangs_and_crashes_and_goes_on(worker: Worker) -> None:
    """The protection is real: a target that never returns is reported as a hang (the worker killed and
    restarted), one that raises something else as a crash; the next input runs either way."""
    assert worker.run("_spin", "x", b"", timeout_s=1.0)["outcome"] == "hang"
    assert worker.run("_raise", "x", b"")["outcome"] == "crash"
    assert worker.run("scenario", "s.yaml", YAML_SEEDS["scenario"][0].encode())["outcome"] == "ok"
