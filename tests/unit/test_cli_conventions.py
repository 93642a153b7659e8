"""One CLI: defaults said, did-you-mean, validate for every kind of file and its data files, --json and
--out, exit codes (2 bad input, 3 incomplete, 1 internal error), a quiet broken pipe, completion, progress."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from heteroscale.cli import main as cli_main
from heteroscale.cli.main import main
from heteroscale.cli.progress import ProgressBar, StepPrinter, eta_s
from heteroscale.clock import ManualClock
from heteroscale.experiments.parallel import Step

SRC = Path(__file__).resolve().parents[2] / "src"


def _data(*parts: str) -> str:
    return str(resources.files("heteroscale").joinpath("data", *parts))


def _error_line(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1, err
    return err[0]


# -- names: did you mean --------------------------------------------------------------------------


def test_sweep_ratio_with_an_unknown_service_is_one_line_and_exit_2(capsys) -> None:
    line = _error_line(capsys, ["sweep-ratio", "--scenario", "small-mixed", "--service", "chat8b"])
    assert "no service 'chat8b' (did you mean 'chat-8b'?)" in line and "chat-8b, code-32b" in line


def test_an_unknown_policy_gets_a_suggestion_and_the_list_has_static_peak(capsys) -> None:
    line = _error_line(capsys, ["compare", "--scenario", "small-mixed", "--policies", "heteroscal"])
    assert "(did you mean 'heteroscale'?)" in line and "static-peak" in line


def test_an_unknown_scenario_gets_a_suggestion(capsys) -> None:
    line = _error_line(capsys, ["simulate", "--scenario", "defualt"])
    assert "(did you mean 'default'?)" in line


def test_a_command_says_which_scenario_it_used_when_not_told(capsys) -> None:
    assert main(["sweep-ratio", "--service", "nope"]) == 2
    err = capsys.readouterr().err
    assert "scenario default (the default" in err


# -- validate -------------------------------------------------------------------------------------


def _scenario_with_trace(tmp_path: Path, name: str, text: str) -> Path:
    trace = tmp_path / f"{name}.csv"
    trace.write_text(text, encoding="utf-8")
    base = Path(_data("scenarios", "default.yaml")).read_text(encoding="utf-8")
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(base.replace("trace: azure-conv", f"trace: {trace}\n      format: azure"), encoding="utf-8")
    return scenario


RATE_CURVE = "window_start_s,total_rate_rps,active_clients\n0,212.78,43\n600,179.69,40\n"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
NEGATIVE = AZURE_HEADER + "2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,-396,109\n"


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("empty", "", "empty file"),
        ("garbage", "\x01\x02 junk\n;;;\n", "missing header"),
        (
            "negative",
            NEGATIVE,
            "≥ 1, got -396",
        ),
        ("rate-curve", RATE_CURVE, "is a rate curve (window_start_s, total_rate_rps), not a request trace"),
    ],
)
def test_validate_reads_the_trace_a_scenario_names(capsys, tmp_path: Path, name: str, text: str, says: str) -> None:
    scenario = _scenario_with_trace(tmp_path, name, text)
    assert main(["validate", str(scenario)]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and says in out[0] and "service chat" in out[0], out


def test_validate_names_a_misspelt_required_key(capsys, tmp_path: Path) -> None:
    base = Path(_data("scenarios", "default.yaml")).read_text(encoding="utf-8")
    bad = tmp_path / "typo.yaml"
    bad.write_text(base.replace("    slo: {ttft_s", "    sloo: {ttft_s"), encoding="utf-8")
    assert main(["validate", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "services[0].sloo: unknown key 'sloo': did you mean 'slo' (required, missing)?" in out
    assert "(and 1 more)" not in out


def test_validate_knows_controller_and_demands_files_and_speaks_json(capsys, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    assert main(["validate", str(root / "deploy" / "examples" / "controller-local.yaml")]) == 0
    assert "valid controller" in capsys.readouterr().out
    demands = _data("topologies", "demands", "demands-example.yaml")
    assert main(["validate", demands, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["kind"], result["valid"]) == ("demands", True)
    bad = tmp_path / "d.yaml"
    bad.write_text("kind: demands\nservices: [{name: x}]\n", encoding="utf-8")
    assert main(["validate", str(bad), "--json"]) == 2
    result = json.loads(capsys.readouterr().out)
    assert (result["kind"], result["valid"]) == ("demands", False) and str(bad) in result["message"]


def test_scenarios_speaks_json_and_marks_the_default(capsys) -> None:
    assert main(["scenarios", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["default"] == "default"
    assert [s["name"] for s in result["scenarios"] if s["default"]] == ["default"]


# -- --out, exit codes ----------------------------------------------------------------------------


def test_compare_out_onto_a_file_fails_before_any_simulation(capsys, tmp_path: Path, monkeypatch) -> None:
    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr("heteroscale.cli.experiments.compare", never)
    taken = tmp_path / "taken"
    taken.write_text("x", encoding="utf-8")
    line = _error_line(capsys, ["compare", "--scenario", "small-mixed", "--out", str(taken)])
    assert f"--out {taken}: exists and is not a folder" in line


def test_schedule_with_pods_unplaced_exits_3_and_writes_out(capsys, tmp_path: Path) -> None:
    topo = _data("topologies", "three-tiers.yaml")
    demands = _data("topologies", "demands", "demands-example.yaml")
    rc = main(["schedule", "--topology", topo, "--demands", demands, "--json", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["totals"]["unplaced_pods"] > 0 and rc == 3
    assert "not placed (exit 3)" in captured.err
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8")) == result


def test_an_internal_error_is_one_line_and_exit_1(capsys, monkeypatch) -> None:
    def broken(_args: object) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr(cli_main, "_cmd_scenarios", broken)
    line = _error_line(capsys, ["scenarios"], code=1)
    assert line == "heteroscale scenarios: internal error: KeyError: 'a bug' (run with -v for the traceback)"


def test_a_closed_pipe_ends_quietly_with_0() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write meets a closed pipe
    try:
        done = subprocess.run(
            [sys.executable, "-m", "heteroscale.cli.main", "scenarios"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(SRC)},
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr.decode()) == (0, "")


# -- completion -----------------------------------------------------------------------------------


def test_completion_lists_commands_and_options_and_is_valid_bash(capsys, tmp_path: Path) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    for word in ("compare", "sweep-ratio", "validate", "--requests-csv", "--kubeconfig", "complete -o filenames"):
        assert word in script
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash to check the script's syntax")
    path = tmp_path / "heteroscale.bash"
    path.write_text(script, encoding="utf-8")
    assert subprocess.run([bash, "-n", str(path)], capture_output=True, timeout=30, check=False).returncode == 0


# -- progress -------------------------------------------------------------------------------------


def test_the_first_eta_is_measured_from_the_first_report_not_from_the_start() -> None:
    clock = ManualClock()
    stream = io.StringIO()
    bar = ProgressBar("simulating", enabled=True, stream=stream, delay_s=2.0, clock=clock, force=True)
    clock.advance(30.0)  # loading the trace and pressure testing: no progress yet
    bar(0.0)
    clock.advance(1.0)
    bar(0.03)
    shown = stream.getvalue()
    # 3 % in 1 s: ≈32 s left (from the start it would read 31 / 0.03 − 31 ≈ 1,000 s)
    assert "eta 32 s" in shown, shown


def test_no_eta_until_some_progress_was_seen() -> None:
    assert eta_s(5.0, 0.001) is None
    assert eta_s(10.0, 0.5) == pytest.approx(10.0)


def test_steps_show_count_total_and_eta() -> None:
    clock = ManualClock()
    stream = io.StringIO()
    printer = StepPrinter("compare", enabled=True, stream=stream, clock=clock, force=True)
    printer(Step("heteroscale (seed 0)", 0, 4))
    clock.advance(10.0)
    printer(Step("hpa (seed 0)", 1, 4))
    clock.advance(10.0)
    printer(Step("done", 4, 4))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "  compare: [0/4] heteroscale (seed 0)  eta …",
        "  compare: [1/4] hpa (seed 0)  eta 30 s",
        "  compare: [4/4] done",
    ]


def test_compare_reports_counted_steps_and_logs_the_pressure_test(caplog, tmp_path: Path) -> None:
    from heteroscale.cli.experiments import run_compare

    steps: list[Step] = []
    with caplog.at_level(logging.INFO, logger="heteroscale.experiments"):
        run_compare("small-mixed", ["static-peak", "heteroscale"], progress=steps.append, out_dir=tmp_path)
    probes = [s for s in steps if s.phase == "pressure test"]
    runs = [s for s in steps if s.phase == "runs"]
    assert probes and all(0 <= s.done < s.total for s in probes)
    assert [(s.done, s.total) for s in runs] == [(0, 2), (1, 2), (2, 2)]
    assert any("pressure test chat-8b: probe 1 of" in r.getMessage() for r in caplog.records)
    assert any(r.getMessage().startswith("static-peak (seed 0): ") for r in caplog.records)
    # per-request records are opt-in: the folder stays small by default
    assert not list(tmp_path.rglob("requests.csv*"))
    assert (tmp_path / "heteroscale" / "journal.jsonl").exists()


def test_controller_check_speaks_json(capsys) -> None:
    config = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "controller-local.yaml"
    assert main(["controller", "--config", str(config), "--check", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["valid"], result["name"], result["services"]) == (True, "llm-serving-local", ["chat"])


def test_sweep_and_tune_tables_name_their_scenario() -> None:
    from heteroscale.reports.table import sweep_table, tune_table

    sweep = {"scenario": "default", "service": "chat", "instances": 2, "slo": {"ttft_s": 2.0, "tbt_s": 0.1},
             "splits": [], "best": "1P1D", "unimodal": True}  # fmt: skip
    tune = {"scenario": "default", "service": "chat", "r_opt": 1.0, "ratio_sweep": {"best": "1P1D", "instances": 2},
            "m_hat_decode_tps_per_instance": {}, "scores": {}, "best": "heteroscale", "why": "cheapest"}  # fmt: skip
    assert sweep_table(sweep).startswith("  scenario default, chat on 2 instances")
    assert tune_table(tune).startswith("  scenario default, chat: best ratio")


def test_simulate_reports_its_pressure_test_probes(tmp_path: Path) -> None:
    from heteroscale.cli.wiring import simulate

    base = Path(_data("scenarios", "small-mixed.yaml")).read_text(encoding="utf-8")
    scenario = tmp_path / "s.yaml"  # chat-8b under a policy that needs targets: a pressure test first
    scenario.write_text(base.replace("{name: fixed, prefill: 2", "{name: heteroscale, prefill: 2", 1), encoding="utf-8")
    steps: list[Step] = []
    simulate(str(scenario), duration_s=120.0, steps=steps.append)
    probes = [s for s in steps if s.phase == "pressure test"]
    assert probes and {s.label.split(":")[0] for s in probes} == {"chat-8b"}
    assert all(0 <= s.done < s.total for s in probes)
