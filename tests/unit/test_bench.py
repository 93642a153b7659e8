"""`heteroscale bench`: the suite × contenders as shipped and tuned, its files, its tuned parameters, the
domination rule, fidelity labels, parallel runs equal to serial, and the README block from the results.

The runs use a tiny suite (tests/data/bench/): a request-level scenario cut in halves and a fluid one
cut in days, both with pinned targets, so no test here runs a suite scenario or its pressure tests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from heteroscale.cli.bench import read_tuned, write_tuned
from heteroscale.cli.main import main
from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_suite
from heteroscale.errors import ConfigError
from heteroscale.experiments import bench
from heteroscale.experiments.bench_space import CONFIGS, MARGINS, SHIPPED, Config, draw_configs, targets_at_margin
from heteroscale.experiments.pressure import pressure_test
from heteroscale.reports.bench import add_verdicts, bench_markdown, current_block, read_results, readme_block
from heteroscale.reports.domination import dominates, dominators, pareto_front

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "data" / "bench" / "tiny-suite.yaml"
CONTENDERS = ["heteroscale", "hpa"]
TUNED: dict[str, Any] = {
    "schema_version": 1,
    "suite": "tiny",
    "scenarios": {
        name: {
            "contenders": {
                "heteroscale": {
                    "margin": 0.65,
                    "options": {"theta_out": 0.05, "scale_out_cooldown_s": 60.0, "scale_in_window_s": 60.0},
                },
                "hpa": {"margin": 0.75, "options": {}},
            }
        }
        for name in ("tiny-chat", "tiny-fluid")
    },
}


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(TINY)


@pytest.fixture(scope="module")
def scored(suite: Any) -> dict[str, Any]:
    return add_verdicts(bench.score(suite, calibration_for, TUNED, contenders=CONTENDERS))


# --- the runner and its files ----------------------------------------------------------------------


def test_the_runner_writes_json_markdown_and_a_plot_per_scenario(tmp_path: Path, capsys: Any) -> None:
    tuned = tmp_path / "tuned.yaml"
    write_tuned(tuned, TUNED)
    out = tmp_path / "results"
    argv = ["bench", "--suite", str(TINY), "--contenders", ",".join(CONTENDERS), "--out", str(out), "--jobs", "1"]
    assert main([*argv, "--tuned", str(tuned)]) == 0
    printed = capsys.readouterr().out
    assert "scoring wall" in printed and "bench:begin" in printed
    result = json.loads((out / "bench.json").read_text())
    assert result["schema_version"] == bench.SCHEMA_VERSION and result["suite"] == "tiny"
    assert list(result["scenarios"]) == ["tiny-chat", "tiny-fluid"]
    for name, part in (("tiny-chat", "second-half"), ("tiny-fluid", "day1")):
        scenario = result["scenarios"][name]
        assert set(scenario["rows"]) == {"heteroscale", "heteroscale[tuned]", "hpa", "hpa[tuned]"}
        assert scenario["billed"] == "gpu_hours" and scenario["score_parts"] == [part]
        for row in scenario["rows"].values():
            figures = row["parts"][part]
            assert set(figures) >= {*bench.FIGURES, "fidelity", "fidelity_label"}
            assert figures["gpu_hours_vs_lower_bound"] >= 1.0  # no run beats the bound
        assert set(scenario["verdict"]) == {"as-shipped", "tuned"}
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
        # the ratio-oracle's GPU-hours beside the bound: a clairvoyant fleet at the 0.75-margin targets
        bound = scenario["lower_bound"][part]
        assert bound["ratio_oracle_gpu_hours"] > bound["gpu_hours"] > 0
    # the whole suite's wall time, for the README block (no --retune here, none recorded before)
    wall = result["wall"]
    assert wall["scoring_s"] > 0 and wall["retune_s"] is None and wall["jobs"] == 1 and wall["load_avg"] >= 0
    assert "Wall time of the whole suite with `--jobs 1`" in printed and "the last `--retune`" not in printed
    md = (out / "bench.md").read_text()
    assert "## tiny-chat" in md and "| heteroscale[tuned] | second-half |" in md
    assert "Ratio-oracle (clairvoyant, the shared targets, no cold start): second-half " in md


def test_tuned_rows_run_the_tuned_parameters_and_as_shipped_rows_the_defaults(scored: dict[str, Any]) -> None:
    rows = scored["scenarios"]["tiny-chat"]["rows"]
    assert rows["heteroscale"]["options"] == {} and rows["heteroscale"]["margin"] == 0.75
    assert rows["heteroscale[tuned]"]["options"] == {
        "scale_in_window_s": 60.0,
        "scale_out_cooldown_s": 60.0,
        "theta_out": 0.05,
    }
    assert rows["heteroscale[tuned]"]["margin"] == 0.65
    # another margin and other knobs change the run (else the tuned row would be a copy)
    assert rows["heteroscale[tuned]"]["mean"] != rows["heteroscale"]["mean"]
    # hpa tuned as shipped: the same run, the same figures
    assert rows["hpa[tuned]"]["mean"] == rows["hpa"]["mean"]


def test_parallel_scoring_equals_serial(suite: Any, scored: dict[str, Any]) -> None:
    parallel = add_verdicts(bench.score(suite, calibration_for, TUNED, contenders=CONTENDERS, jobs=2))
    assert parallel == scored


# --- fidelity labels -------------------------------------------------------------------------------


def test_fluid_figures_are_labelled_estimates_and_request_figures_are_not(scored: dict[str, Any]) -> None:
    for row in scored["scenarios"]["tiny-fluid"]["rows"].values():
        assert row["parts"]["day1"]["fidelity"] == "fluid"
        assert row["parts"]["day1"]["fidelity_label"] == row["mean"]["fidelity_label"] == "estimate"
    for row in scored["scenarios"]["tiny-chat"]["rows"].values():
        assert row["mean"]["fidelity_label"] == "request"
    md = bench_markdown(scored)
    fluid, chat = md.split("## tiny-fluid")[1], md.split("## tiny-fluid")[0].split("## tiny-chat")[1]
    table_rows = [line for line in fluid.splitlines() if line.startswith("| heteroscale")]
    assert table_rows and all(line.count(" est.") == 3 and line.endswith("| estimate |") for line in table_rows)
    assert " est." not in chat
    block = readme_block(scored)
    assert "@ " in block and "% est." in block.split("`tiny-fluid`")[1].splitlines()[0]


def test_a_part_mixing_fidelities_is_an_estimate() -> None:
    part = {k: 1.0 for k in bench.FIGURES} | {"requests_total": 10}
    mean = bench.mean_figures([part | {"fidelity": "request", "fidelity_label": "request"},
                               part | {"fidelity": "fluid", "fidelity_label": "estimate"}])  # fmt: skip
    assert mean["fidelity_label"] == "estimate" and mean["fidelity"] == "fluid,request"
    assert bench.fidelity_label("request") == "request" and bench.fidelity_label("fluid") == "estimate"


# --- tuned parameters: the search, the round trip, scoring never tunes ------------------------------


def test_the_search_draws_12_distinct_configs_from_the_shipped_one_with_a_fixed_seed() -> None:
    for name in bench.CONTENDERS:
        configs = draw_configs(name)
        assert configs[0] == SHIPPED and configs[0].as_shipped
        assert len(set(configs)) == len(configs)
        assert all(c.margin in MARGINS for c in configs)
        assert configs == draw_configs(name)  # same seed, same draw
        assert len(configs) == (3 if name == "static-peak" else CONFIGS)
    assert draw_configs("hpa") != draw_configs("hpa", seed=1)


def test_targets_at_another_margin_equal_a_pressure_test_at_that_margin(suite: Any) -> None:
    scenario = suite.entries[0].tune_scenario()
    unpinned = dataclasses.replace(
        scenario, services=tuple(dataclasses.replace(r, targets=None) for r in scenario.services)
    )
    calibration = calibration_for(unpinned)
    at_075 = pressure_test(unpinned, "chat", calibration, margin=0.75, duration_s=120.0, iterations=4).targets
    at_065 = pressure_test(unpinned, "chat", calibration, margin=0.65, duration_s=120.0, iterations=4).targets
    rescaled = targets_at_margin(at_075, 0.65)
    for field in dataclasses.fields(at_065):
        want, got = getattr(at_065, field.name), getattr(rescaled, field.name)
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-12), field.name
        elif isinstance(want, tuple):
            assert [k for k, _ in got] == [k for k, _ in want]
            assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-12), field.name
        else:
            assert got == want, field.name


def test_retuned_parameters_round_trip_through_tuned_yaml(suite: Any, tmp_path: Path) -> None:
    tuned = bench.retune(suite, calibration_for, contenders=["hpa", "static-peak"], scenarios=["tiny-chat"])
    entry = tuned["scenarios"]["tiny-chat"]["contenders"]
    assert len(entry["hpa"]["tried"]) == CONFIGS and len(entry["static-peak"]["tried"]) == 3
    assert {k: entry["hpa"]["tried"][0][k] for k in ("margin", "options")} == SHIPPED.as_dict()
    best = entry["hpa"]["tried"][entry["hpa"]["config"]]
    feasible = [t for t in entry["hpa"]["tried"] if t["slo_attainment"] >= bench.SLO_TARGET]
    if feasible:  # the cheapest among those meeting the SLO
        assert best["gpu_hours"] == min(t["gpu_hours"] for t in feasible)
    else:
        assert best["slo_attainment"] == max(t["slo_attainment"] for t in entry["hpa"]["tried"])
    path = tmp_path / "tuned.yaml"
    write_tuned(path, tuned)
    back = read_tuned(path)
    assert back == tuned
    config = bench.tuned_config(back, "tiny-chat", "hpa", str(path))
    assert config == Config.of(entry["hpa"]["margin"], entry["hpa"]["options"])


def test_retune_runs_on_the_tune_part_and_scoring_only_on_score_parts(suite: Any) -> None:
    score_tasks = bench.plan_score(suite.entries, CONTENDERS, TUNED, "tuned.yaml")
    tune_tasks, _ = bench.plan_retune(suite.entries, CONTENDERS)
    tune_parts = {e.tune_scenario().name for e in suite.entries}
    score_parts = {s.name for e in suite.entries for s in e.score_scenarios()}
    assert {t[0] for t in score_tasks} == score_parts and not tune_parts & score_parts
    assert {t[0] for t in tune_tasks} == tune_parts
    # scoring runs the file's configuration, one per contender and part: no search
    assert len(score_tasks) == 2 * len(CONTENDERS) * len(score_parts)


def test_scoring_fails_in_one_line_when_a_contender_has_no_tuned_parameters(tmp_path: Path, capsys: Any) -> None:
    tuned = tmp_path / "tuned.yaml"
    write_tuned(tuned, TUNED)
    argv = ["bench", "--suite", str(TINY), "--contenders", "heteroscale,kthena", "--out", str(tmp_path / "r"),
            "--tuned", str(tuned), "--jobs", "1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no tuned parameters for contender 'kthena' on scenario 'tiny-chat'" in err[0]
    assert str(tuned) in err[0] and "--retune" in err[0]
    assert not (tmp_path / "r").exists()  # nothing ran, nothing written


def test_tuned_options_a_policy_refuses_fail_in_one_line() -> None:
    bad = {"scenarios": {"s": {"contenders": {"hpa": {"margin": 0.75, "options": {"theta_out": 0.2}}}}}}
    with pytest.raises(ConfigError, match=r"tuned.yaml: scenarios.s.contenders.hpa.options: .*unknown option"):
        bench.tuned_config(bad, "s", "hpa", "tuned.yaml")


# --- domination ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x_slo", "x_billed", "expected"),
    [
        (0.9985, 98.0, True),  # exactly 0.05 pt below: within the slack
        (0.99849, 98.0, False),  # just beyond it
        (0.9999, 98.99, True),  # just under 0.99x
        (0.9999, 99.0, False),  # exactly 0.99x: not enough
        (0.9999, 99.5, False),
        (0.95, 50.0, False),  # cheap but far worse SLO
    ],
)
def test_domination_edges(x_slo: float, x_billed: float, expected: bool) -> None:
    assert dominates(x_slo, x_billed, 0.999, 100.0) is expected


def test_dominators_and_the_pareto_front() -> None:
    scores = {"heteroscale": (0.999, 100.0), "kthena": (0.9988, 90.0), "hpa": (0.9999, 150.0), "apa": (0.5, 10.0)}
    assert dominators(scores, "heteroscale") == ["kthena"]
    assert pareto_front(scores) == ["apa", "kthena", "hpa"]


def test_verdicts_list_the_rows_that_dominate_heteroscale() -> None:
    def row(kind: str, name: str, slo: float, hours: float) -> dict[str, Any]:
        return {"kind": kind, "contender": name, "mean": {"slo_attainment": slo, "gpu_hours": hours}}

    result = {"scenarios": {"s": {"billed": "gpu_hours", "rows": {
        "heteroscale": row("as-shipped", "heteroscale", 0.999, 100.0),
        "kthena": row("as-shipped", "kthena", 0.999, 98.0),
        "heteroscale[tuned]": row("tuned", "heteroscale", 0.999, 90.0),
        "kthena[tuned]": row("tuned", "kthena", 0.999, 95.0),
    }}}}  # fmt: skip
    verdict = add_verdicts(result)["scenarios"]["s"]["verdict"]
    assert verdict["as-shipped"]["dominated_by"] == ["kthena"]
    assert verdict["tuned"]["dominated_by"] == []


# --- the README's results block ---------------------------------------------------------------------


def test_the_readme_results_block_is_what_the_committed_results_generate() -> None:
    result = read_results(ROOT / "results" / "bench.json")
    block = current_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block is not None, "README.md has no results block"
    assert block == readme_block(result), "README.md's results block is stale: run `heteroscale bench --readme`"


def test_readme_rewrites_only_the_block(tmp_path: Path, scored: dict[str, Any], capsys: Any) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bench.json").write_text(json.dumps(scored))
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\nbefore\n\n" + readme_block({**scored, "scenarios": {}}) + "\n\nafter\n")
    argv = ["bench", "--readme", "--out", str(tmp_path / "results"), "--readme-file", str(readme)]
    assert main(argv) == 0
    text = readme.read_text()
    assert text.startswith("# T\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert current_block(text) == readme_block(scored)
    assert main(argv) == 0 and "already up to date" in capsys.readouterr().out.splitlines()[-1]


def test_a_partial_run_keeps_the_other_scenarios_in_suite_order(suite: Any) -> None:
    old = {"schema_version": 1, "suite": "tiny", "scenarios": {"tiny-fluid": {"x": 1}, "tiny-chat": {"x": 2}}}
    new = {"schema_version": 1, "suite": "tiny", "scenarios": {"tiny-chat": {"x": 3}}}
    assert bench.merged(old, new, suite)["scenarios"] == {"tiny-chat": {"x": 3}, "tiny-fluid": {"x": 1}}
    other_suite = {**old, "suite": "policies"}
    assert bench.merged(other_suite, new, suite) == new  # another suite's results are not mixed in


def test_an_unknown_scenario_or_contender_is_one_line(capsys: Any, tmp_path: Path) -> None:
    base = ["bench", "--suite", str(TINY), "--out", str(tmp_path)]
    assert main([*base, "--scenarios", "nope"]) == 2
    assert "no scenario nope in suite tiny (it has: tiny-chat, tiny-fluid)" in capsys.readouterr().err
    assert main([*base, "--contenders", "periodic", "--retune-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "contender 'periodic' has no search space" in err[0]


def test_the_wall_record_keeps_the_last_retune_and_a_partial_run_keeps_the_whole_suites(suite: Any) -> None:
    old = {"suite": "tiny", "schema_version": bench.SCHEMA_VERSION, "scenarios": {}, "wall": {"retune_s": 700.0}}
    assert bench.wall_record(90.04, None, 2, 0.5, old)["retune_s"] == 700.0
    assert bench.wall_record(90.04, 480.26, 2, 0.5, old) | {"cpus": 0} == {
        "scoring_s": 90.0, "retune_s": 480.3, "jobs": 2, "load_avg": 0.5, "cpus": 0,
    }  # fmt: skip
    partial = bench.merged(old, {"suite": "tiny", "schema_version": bench.SCHEMA_VERSION, "scenarios": {}}, suite)
    assert partial["wall"] == {"retune_s": 700.0}
