"""The evaluation suite's workloads: the embedded `policies` suite, its scenarios, and `kind: suite` files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from heteroscale.cli.main import main
from heteroscale.config import load_scenario
from heteroscale.config.bundled import embedded_scenarios, embedded_suites
from heteroscale.config.loader import load_suite, validate_file
from heteroscale.errors import ConfigError
from heteroscale.sim.parts import load_window, raw_curve
from heteroscale.sim.runner import build_trace
from heteroscale.sim.scenario import LoadKind
from heteroscale.sim.suite import SuitePart, apply_part
from heteroscale.sim.windows import LoadWindow, WindowKind

SUITE_SCENARIOS = sorted(name for name in embedded_scenarios() if name.startswith("suite/"))


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite("policies")


@pytest.mark.parametrize("name", SUITE_SCENARIOS)
def test_heteroscale_validate_passes_every_suite_scenario(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(embedded_scenarios()[name])]) == 0
    assert "valid scenario" in capsys.readouterr().out


def test_heteroscale_validate_passes_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(embedded_suites()["policies"])]) == 0
    assert "valid suite: 'policies', 8 scenario(s), 8 tune and 10 score part(s)" in capsys.readouterr().out


def test_the_suite_covers_every_regime_once_with_no_policy_options(suite: Any) -> None:
    names = [entry.scenario.name for entry in suite.entries]
    assert names == [
        "suite-conversation",
        "suite-prefix-reuse",
        "suite-reasoning",
        "suite-bursty",
        "suite-step",
        "suite-diurnal-days",
        "suite-budget",
        "suite-gpu-mix",
    ]
    assert sorted(f"suite/{n.removeprefix('suite-')}" for n in names) == SUITE_SCENARIOS
    for entry in suite.entries:
        scenario = entry.scenario
        assert all(run.policy.options == () for run in scenario.services), scenario.name
        assert scenario.variants == {} and scenario.compare_policies == ()
        assert scenario.settings.duration_s is None
        assert scenario.settings.fidelity.value == "request"
    by_name = {entry.scenario.name: entry.scenario for entry in suite.entries}
    assert len(by_name["suite-budget"].services) == 2 and by_name["suite-budget"].budget is not None
    (mix,) = by_name["suite-gpu-mix"].services
    assert len(mix.spec.prefill_shapes) == 3 and mix.spec.gpu_mix.value == "cost"
    (docs,) = by_name["suite-prefix-reuse"].services
    assert docs.load.trace_path.endswith("prefix_reuse_code.jsonl") and len(docs.load.rate_steps) == 4
    (reason,) = by_name["suite-reasoning"].services
    assert reason.load.lengths.output_scale == 8.0 and reason.load.lengths.output_cap_tokens == 8192


def test_every_part_cuts_every_source_of_every_service(suite: Any) -> None:
    for entry in suite.entries:
        parts = [(entry.tune, entry.tune_scenario()), *zip(entry.score, entry.score_scenarios(), strict=True)]
        for part, scenario in parts:
            assert scenario.name == f"{entry.scenario.name}@{part.name}"
            for run in scenario.services:
                assert run.load.window == part.window
                if part.rate_curve_day is not None and run.load.kind is LoadKind.POISSON:
                    assert run.load.rate_curve_day == part.rate_curve_day


def test_the_steepest_part_of_the_reasoning_day_is_fixed_by_the_curve(suite: Any) -> None:
    entry = next(e for e in suite.entries if e.scenario.name == "suite-reasoning")
    steepest = entry.score_scenarios()[1]
    (run,) = steepest.services
    part = load_window(run.load, None, raw_curve(run.load, "reason"))
    # day 8 of m-large rises fastest from 10:20 (Theil–Sen over 18 windows); ×8 compression
    assert part is not None and (part.start_s, part.end_s) == (37_200 / 8, 37_200 / 8 + 1350)


def test_the_step_scenarios_halves_each_hold_a_doubling(suite: Any) -> None:
    entry = next(e for e in suite.entries if e.scenario.name == "suite-step")
    for scenario in (entry.tune_scenario(), *entry.score_scenarios()):
        (run,) = scenario.services
        stepped = build_trace(run.load, np.random.default_rng(0), "chat")
        plain = build_trace(dataclasses.replace(run.load, rate_steps=()), np.random.default_rng(0), "chat")
        bins = np.arange(0.0, 1800.0, 60.0)
        ratio = np.histogram(stepped.arrival_s, bins)[0] / np.histogram(plain.arrival_s, bins)[0]
        # each half: ×1 for its first 10 minutes, ×2 for 10 minutes from 11 minutes in (after the 60 s ramp)
        assert ratio[:10].tolist() == [1.0] * 10, scenario.name
        assert float(np.mean(ratio[12:20])) == pytest.approx(2.0, abs=0.05), (scenario.name, ratio.tolist())
        assert float(np.mean(ratio[22:])) == pytest.approx(1.0, abs=0.1), (scenario.name, ratio.tolist())


def test_apply_part_reaches_the_sources_mixed_into_a_load() -> None:
    scenario = load_scenario("mix-shift")
    part = SuitePart("day1", rate_curve_day=1, window=LoadWindow(WindowKind.FIRST_HALF))
    (run,) = apply_part(scenario, part).services
    assert run.load.rate_curve_day == 1 and run.load.window == part.window
    (other,) = run.load.mixed_with
    assert other.rate_curve_day == 1 and other.window == part.window


# --- suite files --------------------------------------------------------------------------------------


def suite_dict(**entry: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scenario": "suite/diurnal-days",
        "tune": {"name": "day0", "rate_curve_day": 0},
        "score": [{"name": "day1", "rate_curve_day": 1}],
    }
    return {"kind": "suite", "name": "mine", "scenarios": [base | entry]}


def write(folder: Path, content: dict[str, Any], name: str = "suite.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


def suite_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    report = validate_file(path)
    assert not report.ok and report.kind == "suite" and report.message == message
    return message


def test_a_suite_file_may_name_scenarios_by_path(tmp_path: Path) -> None:
    scenario = yaml.safe_load(embedded_scenarios()["suite/step"].read_text(encoding="utf-8"))
    write(tmp_path, scenario, "step.yaml")
    path = write(
        tmp_path,
        suite_dict(
            scenario="step.yaml",
            tune={"name": "a", "window": {"start_s": 0, "end_s": 900}},
            score=[{"name": "b", "window": {"start_s": 900, "end_s": 1800}}],
        ),
    )
    (entry,) = load_suite(path).entries
    assert entry.scenario.name == "suite-step" and entry.scenario.source == str((tmp_path / "step.yaml").resolve())
    (run,) = entry.score_scenarios()[0].services
    assert run.load.window == LoadWindow(WindowKind.RANGE, start_s=900.0, end_s=1800.0)


@pytest.mark.parametrize(
    ("entry", "where", "problem", "needle"),
    [
        (
            {"score": [{"name": "day20", "rate_curve_day": 20}]},
            "scenarios[0].score[0].rate_curve_day",
            "day 20 is outside the curve (days 0..13)",
            "rate_curve_day: 20",
        ),
        (
            {"score": [{"name": "late", "window": {"start_s": 0, "end_s": 20_000}}]},
            "scenarios[0].score[0].window",
            "end_s 20000 s is past the end of the load (10800 s)",
            "window:",
        ),
        (
            {"score": [{"name": "again", "rate_curve_day": 0}]},
            "scenarios[0].score[0]",
            "score part 'again' is the tune part: score on another part",
            "name: again",
        ),
        (
            {"score": [{"name": "day0", "rate_curve_day": 1}]},
            "scenarios[0].score[0].name",
            "part name 'day0' is used twice",
            "- name: day0",
        ),
        ({"score": [{"name": "all"}]}, "scenarios[0].score[0]", "a part needs rate_curve_day and/or window", "all"),
        ({"score": []}, "scenarios[0].score", "at least 1 item", "score"),
        (
            {"scenario": "suite/step"},
            "scenarios[0].tune.rate_curve_day",
            "scenario 'suite-step' has no rate curve to take a day of",
            "rate_curve_day: 0",
        ),
        (
            {"scenario": "suite/step", "tune": {"name": "t", "window": {"steepest_s": 600}}},
            "scenarios[0].tune.window",
            "steepest_s needs a rate curve",
            "window:",
        ),
        ({"scenario": "nosuch"}, "scenarios[0].scenario", "unknown embedded scenario 'nosuch'", "nosuch"),
        ({"scenario": "nosuch.yaml"}, "scenarios[0].scenario", "no scenario file", "nosuch"),
        (
            {"scenario": "diurnal-ramp"},
            "scenarios[0].scenario",
            "sets simulation.duration_s; a suite scenario leaves it unset",
            "diurnal-ramp",
        ),
        ({"scenario": "ramps"}, "scenarios[0].scenario", "has variants or a compare list", "ramps"),
        ({"scenario": "budget"}, "scenarios[0].scenario", "gives service 'chat' policy options", "budget"),
    ],
)
def test_a_bad_suite_is_one_line_naming_the_field(
    tmp_path: Path, entry: dict[str, Any], where: str, problem: str, needle: str
) -> None:
    path = write(tmp_path, suite_dict(**entry))
    message = suite_error(path)
    assert f": {where}: " in message and problem in message, message
    assert message.endswith(f"(line {line_of(path, needle)})"), message


def test_a_suite_scenario_runs_each_part_to_its_end(tmp_path: Path) -> None:
    scenario = yaml.safe_load(embedded_scenarios()["suite/diurnal-days"].read_text(encoding="utf-8"))
    scenario["simulation"]["duration_s"] = 3600
    write(tmp_path, scenario, "days.yaml")
    message = suite_error(write(tmp_path, suite_dict(scenario="days.yaml")))
    assert "sets simulation.duration_s; a suite scenario leaves it unset" in message


def test_a_scenario_appears_once_in_a_suite(tmp_path: Path) -> None:
    doc = suite_dict()
    doc["scenarios"].append(doc["scenarios"][0])
    message = suite_error(write(tmp_path, doc))
    assert ": scenarios[1].scenario: scenario 'suite-diurnal-days' is already in the suite" in message
