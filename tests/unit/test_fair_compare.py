"""`compare` made fair and honest: a scenario's policy options only in a marked row, an unreachable SLO
as an error, parallel runs identical to serial (local processes and Ray), seeds that say when they are
the same load, and one JSON schema."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.cli.main import main
from heteroscale.config import load_scenario
from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import list_embedded_scenarios
from heteroscale.errors import ConfigError, HeteroScaleError, SloUnreachable
from heteroscale.experiments import pressure
from heteroscale.experiments.compare import Comparison, check_contenders, default_policies
from heteroscale.experiments.parallel import run_all
from heteroscale.experiments.pressure import KneePoint, pressure_test
from tests.support.tasks import square_plus

MIX_SERVICE: dict[str, Any] = {
    "name": "chat",
    "model": "llama-3.1-8b",
    "roles": {
        "prefill": {"shapes": [{"sku": "l40s", "tp": 1}, {"sku": "a100-80g", "tp": 1}], "min": 1, "max": 8},
        "decode": {"shapes": [{"sku": "a100-80g", "tp": 1}, {"sku": "h100-sxm", "tp": 1}], "min": 1, "max": 8},
    },
    "pd_ratio": 1.0,
    "slo": {"ttft_s": 2.0, "tbt_s": 0.1},
    "affinity": "cluster",
    "gpu_mix": "cost",
    "load": {"kind": "trace", "trace": "azure-conv", "time_compression": 4.0},
    "policy": {"name": "heteroscale", "prefill": 1, "decode": 1},
    # pinned (from one pressure test of this service, rounded), so that these tests run no pressure test
    "targets": {
        "decode_tps_per_instance": {"decode:a100-80g:tp1": 1869.0, "decode:h100-sxm:tp1": 2813.0},
        "prefill_tps_per_instance": {"prefill:l40s:tp1": 10233.0, "prefill:a100-80g:tp1": 8864.0},
        "prefill_gpu_util": 0.687, "decode_gpu_util": 0.617, "prefill_sm_activity": 0.584,
        "decode_sm_activity": 0.426, "ttft_s": 0.775, "tbt_s": 0.0098, "requests_per_s_per_prefill": 8.92,
        "requests_per_s_per_decode": 8.92, "mean_input_tokens": 1154.7, "mean_output_tokens": 211.1,
    },
}  # fmt: skip


def scenario_file(folder: Path, service: dict[str, Any] | None = None, **simulation: Any) -> Path:
    """A two-minute scenario of one Llama-3.1-8B service with a cost-aware GPU mix on `small-mixed`."""
    doc = {
        "kind": "scenario",
        "name": "tiny-mix",
        "topology": "small-mixed",
        "simulation": {"fidelity": "request", "duration_s": 120, "cold_start_s": 30, "seed": 0, **simulation},
        "services": [service or copy.deepcopy(MIX_SERVICE)],
    }
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def with_options(**options: Any) -> dict[str, Any]:
    service = copy.deepcopy(MIX_SERVICE)
    service["policy"]["options"] = options
    return service


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert captured.out == "" and len(err) == 1 and "Traceback" not in captured.err, captured.err
    return err[0]


# --- a scenario's policy options run only in a marked row ------------------------------------------


def test_a_plain_row_of_a_policy_the_scenario_gives_options_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = scenario_file(tmp_path, with_options(scale_in_cooldown_s=300, scale_in_window_s=120))
    line = one_line_error(capsys, ["compare", "--scenario", str(path), "--policies", "heteroscale,hpa", "--jobs", "1"])
    assert "gives heteroscale options (scale_in_cooldown_s, scale_in_window_s) that no other contender gets" in line
    assert "'heteroscale[scenario-options]'" in line


def test_a_marked_row_runs_the_scenarios_options_and_the_plain_row_the_defaults(tmp_path: Path) -> None:
    scenario = load_scenario(str(scenario_file(tmp_path, with_options(theta_out=0.2))))
    names = ("heteroscale", "heteroscale[scenario-options]")
    check_contenders(scenario, names)
    comparison = Comparison(scenario, calibration_for(scenario))
    for name in names:
        comparison.run_policy(name, 0, tmp_path / name)

    def hysteresis(name: str) -> list[str]:
        records = [json.loads(x) for x in (tmp_path / name / "journal.jsonl").read_text().splitlines()]
        return [s["detail"] for r in records for s in r["decision"]["steps"] if s["name"] == "hysteresis"]

    assert hysteresis(names[1]) and all("1.2]" in d for d in hysteresis(names[1]))  # theta_out 0.2
    assert hysteresis(names[0]) and all("1.1]" in d for d in hysteresis(names[0]))  # the default 0.1


def test_a_marked_row_with_nothing_to_mark_is_refused(tmp_path: Path) -> None:
    scenario = load_scenario(str(scenario_file(tmp_path)))
    with pytest.raises(ConfigError, match=r"'hpa\[scenario-options\]': scenario tiny-mix gives hpa no options"):
        check_contenders(scenario, ["hpa[scenario-options]"])


@pytest.mark.parametrize("name", [n for n, _ in list_embedded_scenarios()])
def test_no_embedded_scenario_compares_one_sidedly(name: str) -> None:
    scenario = load_scenario(name)
    check_contenders(scenario, default_policies(scenario))
    if not scenario.compare_policies:  # compared against the built-in peers: no options for one of them
        assert all(not run.policy.options for run in scenario.services), name


# --- an unreachable SLO stops the pressure test ------------------------------------------------------


def test_an_slo_no_load_meets_stops_with_exit_2_naming_the_service_and_the_best_latency(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    service = copy.deepcopy(MIX_SERVICE) | {"slo": {"ttft_s": 0.001, "tbt_s": 0.1}, "gpu_mix": "preference"}
    del service["targets"]  # the pressure test is the point here
    path = scenario_file(tmp_path, service)
    scenario = load_scenario(str(path))
    with pytest.raises(SloUnreachable) as info:
        pressure_test(scenario, "chat", calibration_for(scenario), duration_s=60.0, iterations=3)
    message = str(info.value)
    assert message.startswith("pressure test of service chat: no load meets its SLO (TTFT p90 ≤ 0.001 s")
    assert "the best probe" in message and "reached TTFT p90" in message
    line = one_line_error(capsys, ["compare", "--scenario", str(path), "--policies", "hpa", "--jobs", "1"])
    assert "service chat: no load meets its SLO" in line


def test_a_knee_above_every_probe_is_flagged_as_a_lower_estimate(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    scenario = load_scenario(str(scenario_file(tmp_path, copy.deepcopy(MIX_SERVICE) | {"gpu_mix": "preference"})))

    def always_met(*args: Any) -> KneePoint:  # a fake probe: the service keeps up at any load
        rate = float(args[5])
        return KneePoint(rate, 1.0, 0.1, 0.01, 100.0 * rate, 10.0 * rate, 0.5, 0.5, 0.4, 0.4, True)

    monkeypatch.setattr(pressure, "_probe", always_met)
    with caplog.at_level(logging.WARNING, logger="heteroscale.experiments.pressure"):
        result = pressure_test(scenario, "chat", calibration_for(scenario))
    assert result.knee_is_lower_estimate and result.as_dict()["knee_is_lower_estimate"] is True
    assert any("only a lower estimate" in r.getMessage() for r in caplog.records)


def test_a_knee_below_the_bisections_range_is_searched_for_not_faked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scenario = load_scenario(str(scenario_file(tmp_path, copy.deepcopy(MIX_SERVICE) | {"gpu_mix": "preference"})))
    rates: list[float] = []

    def holds_only_when_nearly_idle(*args: Any) -> KneePoint:  # a fake probe: the SLO holds below 1/1000
        rate = float(args[5])
        rates.append(rate)
        met = rate <= rates[0] / 1000.0  # of the first (highest) probe's load
        return KneePoint(rate, 1.0 if met else 0.5, 0.1, 0.01, 100.0 * rate, 10.0 * rate, 0.5, 0.5, 0.4, 0.4, met)

    monkeypatch.setattr(pressure, "_probe", holds_only_when_nearly_idle)
    result = pressure_test(scenario, "chat", calibration_for(scenario))
    assert result.knee.meets_slo  # a measured knee, not the last failing probe
    assert 0.9 * rates[0] / 1000.0 <= result.knee.rate_rps <= rates[0] / 1000.0


# --- parallel runs give the serial result ------------------------------------------------------------


def test_run_all_keeps_task_order_and_a_tasks_own_error() -> None:
    tasks = [5, 1, 4, 2, 3]
    assert run_all(square_plus, 10, tasks, jobs=2) == [10 + x * x for x in tasks] == run_all(square_plus, 10, tasks)
    with pytest.raises(SloUnreachable, match="task -1"):
        run_all(square_plus, 0, [1, -1, 2], jobs=2)
    with pytest.raises(HeteroScaleError, match="--jobs must be ≥ 1"):
        run_all(square_plus, 0, [1], jobs=0)


def test_compare_on_two_jobs_prints_and_writes_what_one_job_does_byte_for_byte(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = scenario_file(tmp_path, duration_s=450)  # past the 300 s warm-up: heteroscale scales in
    outputs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        argv = ["compare", "--scenario", str(path), "--policies", "heteroscale,hpa,static-peak"]
        assert main([*argv, "--json", "--jobs", jobs, "--out", str(out)]) == 0
        outputs[jobs] = capsys.readouterr().out
    assert outputs["1"] == outputs["2"]
    files = sorted(p.relative_to(tmp_path / "jobs1") for p in (tmp_path / "jobs1").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "jobs2") for p in (tmp_path / "jobs2").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "jobs1" / rel).read_bytes() == (tmp_path / "jobs2" / rel).read_bytes(), rel
    journal = (tmp_path / "jobs1" / "heteroscale" / "journal.jsonl").read_text()
    assert "mix milp (optimal)" in journal  # the node-limited MILP ran, and its line has no wall time


@pytest.mark.slow
def test_compare_on_a_local_ray_instance_gives_the_serial_result(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'heteroscale[ray]'")
    from heteroscale.experiments.compare import compare

    scenario = load_scenario(str(scenario_file(tmp_path, copy.deepcopy(MIX_SERVICE) | {"gpu_mix": "preference"})))
    calibration = calibration_for(scenario)
    serial, _ = compare(scenario, calibration, ["heteroscale", "static-peak"])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        on_ray, _ = compare(scenario, calibration, ["heteroscale", "static-peak"], backend="ray")
    finally:
        ray.shutdown()
    assert on_ray["policies"] == serial["policies"]


# --- seeds and the JSON schema -----------------------------------------------------------------------


def test_seeds_on_a_poisson_load_give_distinct_runs_and_an_interval(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    service = copy.deepcopy(MIX_SERVICE) | {"gpu_mix": "preference"}
    service["load"] = {"kind": "poisson", "trace": "azure-conv", "rate_curve": "servegen-m-large",
                       "time_compression": 8, "rate_scale": 0.002}  # fmt: skip
    path = scenario_file(tmp_path, service, duration_s=60)
    argv = ["compare", "--scenario", str(path), "--policies", "static-peak", "--seeds", "3", "--json", "--jobs", "2"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["schema_version"] == 2 and result["seeds_identical"] is False and "seeds_note" not in result
    s = result["policies"]["static-peak"]
    assert s["seeds"] == [0, 1, 2]
    assert s["requests_total"]["n"] == 3 and s["requests_total"]["ci95"] > 0  # three different loads
    assert s["gpu_hours_vs_lower_bound"]["mean"] >= 1.0
