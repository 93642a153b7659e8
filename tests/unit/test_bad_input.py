"""Bad input never hangs or crashes: each input here once did (a fuzzer found them).

Files: one ``ConfigError`` / ``TraceError`` line naming the file and the line or field, exit code 2
from the command line (Prometheus answers: test_bad_prometheus_input.py). Calls that once hung run
under a SIGALRM bound, so the old code fails here instead of hanging.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import heteroscale
from heteroscale.cli.main import main
from heteroscale.config import load_topology, validate_file
from heteroscale.config.bundled import data_path
from heteroscale.config.controller import load_controller_config
from heteroscale.config.demands import load_demands
from heteroscale.errors import ConfigError, TraceError
from heteroscale.policy.registry import make_policy
from heteroscale.sim.traces import read_azure, read_burstgpt, read_mooncake, read_rate_curve, read_trace
from tests.unit.bad_input_builders import controller_file, no_hang, one_line, write
from tests.unit.config_builders import scenario_dict, topology_dict

# --- the YAML loaders ---------------------------------------------------------------------------


def _validated(path: Path) -> None:
    report = validate_file(path)
    if not report.ok:
        raise ConfigError(report.message)


def _demands(path: Path) -> None:
    load_demands(path, load_topology("three-tiers"))


def _controller(path: Path) -> None:
    load_controller_config(path)


LOADERS: dict[str, Callable[[Path], object]] = {
    "scenario": _validated,
    "topology": load_topology,
    "catalog": _validated,
    "demands": _demands,
    "controller": _controller,
}

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)

YAML_CASES = {
    # (text after the kind line, line named, problem)
    "alias-cycle": ("x: &a [*a]\n", 2, "recursive alias"),
    "alias-cycle-in-mapping": ("x: &a {y: [1, {z: *a}]}\n", 2, "recursive alias"),
    "billion-laughs": (LAUGHS, 7, "expands to more than"),
    "deep-flow-nesting": ("x: " + "[" * 5000 + "]" * 5000 + "\n", 2, "nested more than 64 levels"),
    "deep-block-nesting": ("x:\n" + "".join(" " * i + "a:\n" for i in range(1, 3000)), 65, "nested more than 64"),
    "control-character": ("x: \x07\n", 2, "unacceptable character #x0007"),
    "nul-character": ("description: a\x00b\n", 2, "unacceptable character #x0000"),
    "impossible-date": ("description: 2001-02-30\n", 2, "cannot read this timestamp (day is out of range"),
    "bad-timestamp-tag": ("x: !!timestamp soon\n", 2, "cannot read this timestamp"),
    "bad-bool-tag": ("x: !!bool maybe\n", 2, "cannot read this bool"),
    "empty-int-tag": ("x: !!int ''\n", 2, "cannot read this int"),
    "5000-digit-int": (f"x: {'9' * 5000}\n", 2, "cannot read this int"),
    "20-nines": ("x: 99999999999999999999\n", 2, "an integer of 67 bits"),
}


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_hostile_yaml_is_one_line_naming_file_and_line(tmp_path: Path, kind: str, case: str) -> None:
    text, line, problem = YAML_CASES[case]
    path = write(tmp_path, f"{kind}.yaml", f"kind: {kind}\n{text}")
    with no_hang(), pytest.raises(ConfigError) as caught:
        LOADERS[kind](path)
    message = one_line(str(caught.value), path)
    assert problem in message
    assert f"line {line}" in message


def test_aliases_that_stay_small_still_load(tmp_path: Path) -> None:
    """The policy bounds aliases; it does not ban them."""
    rest = yaml.safe_dump(topology_dict()).split("\n", 2)[2]  # sorted keys: kind, name, then vdcs
    path = write(tmp_path, "t.yaml", f"kind: topology\nname: &n tiny\ndescription: *n\n{rest}")
    assert load_topology(path).name == "tiny"


@pytest.mark.parametrize(
    ("command", "case"),
    [
        (["validate"], "alias-cycle"),
        (["validate"], "billion-laughs"),
        (["validate"], "deep-flow-nesting"),
        (["validate"], "control-character"),
        (["simulate", "--scenario"], "alias-cycle"),
        (["simulate", "--scenario"], "control-character"),
        (["controller", "--check", "--config"], "alias-cycle"),
        (["controller", "--check", "--config"], "deep-flow-nesting"),
        (["controller", "--check", "--config"], "nul-character"),
    ],
)
def test_cli_exits_2_on_hostile_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], case: str
) -> None:
    kind = "controller" if command[0] == "controller" else "scenario"
    path = write(tmp_path, "bad.yaml", f"kind: {kind}\n{YAML_CASES[case][0]}")
    with no_hang():
        rc = main([*command, str(path)])
    captured = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in captured.err + captured.out
    assert YAML_CASES[case][2] in captured.err + captured.out


def _limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # an endless read fails fast, not the machine


@pytest.mark.parametrize("how", ["validate", "scenario topology", "scenario catalog"])
def test_an_endless_file_is_refused(tmp_path: Path, how: str) -> None:
    """Reading /dev/zero to the end never ends: it once grew until memory ran out (hence a subprocess)."""
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    target = "/dev/zero"
    if how != "validate":
        target = str(_scenario(tmp_path, **{how.split()[1]: "/dev/zero"}))
    src = Path(heteroscale.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "heteroscale.cli.main", "validate", target],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=_limited_memory,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "/dev/zero: larger than 16 MiB" in done.stdout
    assert "Traceback" not in done.stderr


# --- non-finite numbers in every schema ---------------------------------------------------------


def _scenario(tmp: Path, **changes: Any) -> Path:
    return write(tmp, "s.yaml", yaml.safe_dump(scenario_dict(**changes)))


def _topology(tmp: Path, **changes: Any) -> Path:
    return write(tmp, "t.yaml", yaml.safe_dump(topology_dict(**changes)))


def _catalog(tmp: Path, **changes: Any) -> Path:
    gpu = {"id": "h800", "cost_per_gpu_hour": 2.0, **changes}
    return write(tmp, "c.yaml", yaml.safe_dump({"kind": "catalog", "gpus": [gpu]}))


def _demands_file(tmp: Path, value: object) -> Path:
    data = yaml.safe_load(Path(data_path("topologies", "demands", "demands-example.yaml")).read_text("utf-8"))
    data["services"][0]["instances"][0]["launched_at_s"] = value
    return write(tmp, "d.yaml", yaml.safe_dump(data))


INF, NAN = float("inf"), float("nan")

NON_FINITE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "scenario slo": (lambda t: _scenario(t, **{"services.0.slo.ttft_s": INF}), "services[0].slo.ttft_s"),
    "scenario ratio": (lambda t: _scenario(t, **{"services.0.pd_ratio": NAN}), "services[0].pd_ratio"),
    "scenario duration": (lambda t: _scenario(t, simulation={"duration_s": INF}), "simulation.duration_s"),
    "scenario rate scale": (
        lambda t: _scenario(t, **{"services.0.load.rate_scale": INF}),
        "services[0].load.rate_scale",
    ),
    "topology bandwidth": (lambda t: _topology(t, kv_bandwidth={"same_node": INF}), "kv_bandwidth.same_node"),
    "catalog cost": (lambda t: _catalog(t, cost_per_gpu_hour=INF), "gpus[0].cost_per_gpu_hour"),
    "catalog memory": (lambda t: _catalog(t, mem_gb=NAN), "gpus[0].mem_gb"),
    "controller staleness": (
        lambda t: controller_file(t, "prometheus", "staleness_s", INF),
        "prometheus.staleness_s",
    ),
    "controller interval": (lambda t: controller_file(t, "controller", "interval_s", INF), "controller.interval_s"),
    "controller lease": (
        lambda t: controller_file(t, "leader_election", "lease_duration_s", INF),
        "leader_election.lease_duration_s",
    ),
    "controller target": (
        lambda t: controller_file(t, "services.targets", "ttft_s", INF),
        "services[0].targets.ttft_s",
    ),
    "controller per-instance target": (
        lambda t: controller_file(t, "services.targets.decode_tps_per_instance", "decode:h20:tp1", INF),
        "services[0].targets.decode_tps_per_instance.decode:h20:tp1",
    ),
    "demands launch time": (lambda t: _demands_file(t, INF), "services[0].instances[0].launched_at_s"),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE))
def test_non_finite_numbers_are_refused_naming_the_field(tmp_path: Path, case: str) -> None:
    make, field = NON_FINITE[case]
    path = make(tmp_path)
    kind = case.split(maxsplit=1)[0]
    loader = {"scenario": _validated, "catalog": _validated}.get(kind) or LOADERS[kind]
    with pytest.raises(ConfigError) as caught:
        loader(path)
    message = one_line(str(caught.value), path)
    assert f"{field}: input should be a finite number" in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (INF, "services[0].policy.options: heteroscale.scale_out_cooldown_s must be a finite number"),
        (10**400, "invalid YAML: an integer of 1329 bits"),  # past float range
    ],
    ids=["inf", "10**400"],
)
def test_a_policy_option_beyond_float_range_is_refused(tmp_path: Path, value: float, problem: str) -> None:
    policy = {"name": "heteroscale", "prefill": 1, "decode": 1, "options": {"scale_out_cooldown_s": value}}
    path = _scenario(tmp_path, **{"services.0.policy": policy})
    report = validate_file(path)
    assert not report.ok
    assert problem in one_line(report.message, path)
    with pytest.raises(ValueError, match="finite number"):  # the registry checks on its own too
        make_policy("heteroscale", {"scale_out_cooldown_s": value})


def test_cli_exits_2_on_an_infinite_slo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, **{"services.0.slo.tbt_s": INF})
    assert main(["validate", str(path)]) == 2
    assert main(["simulate", "--scenario", str(path)]) == 2
    assert "services[0].slo.tbt_s: input should be a finite number" in capsys.readouterr().err


# --- trace rows ---------------------------------------------------------------------------------

AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.97,{n},5\n2023-11-16 18:17:04.00,9,5\n"
BURSTGPT = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n{t},m,{n},5,10,x\n2,m,7,5,12,x\n"
MOONCAKE = (
    '{{"timestamp": {t}, "input_length": {n}, "output_length": 3}}\n'
    '{{"timestamp": 9, "input_length": 3, "output_length": 3}}\n'
)
CURVE = "window_start_s,total_rate_rps,active_clients\n0,{r},{n}\n600,1.5,3\n"
DIGITS_5000 = "9" * 5000

TRACE_ROWS: dict[str, tuple[str, str, Callable[..., Any], str]] = {
    # file name, text, reader, column named
    "azure 5000 digits": ("a.csv", AZURE.format(n=DIGITS_5000), read_azure, "ContextTokens"),
    "azure 20 million tokens": ("a.csv", AZURE.format(n="20000000"), read_azure, "ContextTokens"),
    "burstgpt 5000 digits": ("b.csv", BURSTGPT.format(t=1, n=DIGITS_5000), read_burstgpt, "Request tokens"),
    "burstgpt 10**400": ("b.csv", BURSTGPT.format(t=1, n=10**400), read_burstgpt, "Request tokens"),
    "burstgpt huge time": ("b.csv", BURSTGPT.format(t="1e300", n=5), read_burstgpt, "Timestamp"),
    "burstgpt 20 nines time": ("b.csv", BURSTGPT.format(t="99999999999999999999", n=5), read_burstgpt, "Timestamp"),
    "mooncake 5000 digits": ("m.jsonl", MOONCAKE.format(t=1, n=DIGITS_5000), read_mooncake, "invalid JSON"),
    "mooncake 10**400": ("m.jsonl", MOONCAKE.format(t=1, n=10**400), read_mooncake, "input_length"),
    "mooncake 20 million tokens": ("m.jsonl", MOONCAKE.format(t=1, n=20_000_000), read_mooncake, "input_length"),
    "mooncake huge time": ("m.jsonl", MOONCAKE.format(t="1e300", n=5), read_mooncake, "timestamp"),
    "mooncake 20 nines time": ("m.jsonl", MOONCAKE.format(t="99999999999999999999", n=5), read_mooncake, "timestamp"),
    "mooncake deep row": (
        "m.jsonl",
        '{"timestamp": 1, "input_length": 3, "output_length": 3, "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
        '{"timestamp": 2, "input_length": 3, "output_length": 3}\n',
        read_mooncake,
        "nested more than",
    ),
    "rate curve 5000 digits": ("r.csv", CURVE.format(r=1.0, n=DIGITS_5000), read_rate_curve, "active_clients"),
    "rate curve huge rate": ("r.csv", CURVE.format(r="1e300", n=3), read_rate_curve, "total_rate_rps"),
}


def test_overlapping_rate_windows_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "window_start_s,total_rate_rps\n0,1\n300,1\n")
    with pytest.raises(TraceError) as caught:
        read_rate_curve(path, window_s=600.0)
    assert one_line(str(caught.value), path).startswith(f"{path}: windows overlap")


@pytest.mark.parametrize("case", sorted(TRACE_ROWS))
def test_absurd_trace_rows_are_row_problems(tmp_path: Path, case: str) -> None:
    name, text, reader, column = TRACE_ROWS[case]
    path = write(tmp_path, name, text)
    kwargs: dict[str, Any] = {"window_s": 600.0} if reader is read_rate_curve else {}
    with pytest.raises(TraceError) as caught:
        reader(path, **kwargs)
    message = one_line(str(caught.value), path)
    line = 1 if name.endswith(".jsonl") else 2  # the first row: JSONL has no header
    assert message.startswith(f"{path}:{line}: ")
    assert column in message
    assert len(message) < 300  # the bad cell is named, not echoed in full
    kept = reader(path, skip_bad_rows=True, **kwargs)
    assert len(kept) == 1
    if reader is not read_rate_curve:
        assert kept.skipped_rows == 1
        assert read_trace(path, skip_bad_rows=True).skipped_rows == 1


def test_a_trace_that_is_not_a_trace_is_named_not_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write(tmp_path, "passwd", "root:TOPSECRET:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/sh\n")
    path = _scenario(tmp_path, **{"services.0.load": {"kind": "trace", "trace": str(trace)}})
    assert main(["simulate", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{trace}:1: unknown trace format" in err
    assert "TOPSECRET" not in err and "bin/bash" not in err
    for reader in (read_azure, read_burstgpt, read_rate_curve):
        with pytest.raises(TraceError, match="missing header") as caught:
            reader(trace)
        assert "TOPSECRET" not in str(caught.value)
