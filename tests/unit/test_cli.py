"""The command line: simulate --json contract, determinism, outputs, clear errors with exit code 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from heteroscale.cli.main import main

REQUIRED_KEYS = {
    "requests_total", "requests_completed", "requests_failed", "ttft_p50_s", "ttft_p99_s", "tbt_p50_s",
    "tbt_p99_s", "slo_attainment", "gpu_hours", "gpu_hours_by_role", "gpu_hours_by_sku", "cost", "avg_gpu_util",
    "avg_gpu_util_by_role", "avg_sm_activity", "avg_sm_activity_by_role", "scale_actions", "simulated_s", "wall_s",
}  # fmt: skip


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    rc = main(["simulate", "--json", *args])
    out = capsys.readouterr().out
    assert rc == 0
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, "exactly one JSON object on stdout"
    return json.loads(lines[0])


def _walk_numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _walk_numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _walk_numbers(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


@pytest.mark.parametrize("fidelity", ["request", "fluid"])
def test_simulate_json_has_the_contract_keys_and_sane_values(capsys, fidelity) -> None:
    s = run_json(capsys, "--scenario", "small-mixed", "--fidelity", fidelity)
    assert s.keys() >= REQUIRED_KEYS
    assert all(math.isfinite(x) for x in _walk_numbers(s))
    for key in ("avg_gpu_util", "avg_sm_activity", "slo_attainment"):
        assert 0.0 <= s[key] <= 1.0
    for key in ("avg_gpu_util_by_role", "avg_sm_activity_by_role", "gpu_hours_by_role"):
        assert set(s[key]) == {"prefill", "decode"}
    assert min(s["avg_gpu_util_by_role"].values()) >= 0.0 and max(s["avg_gpu_util_by_role"].values()) <= 1.0
    assert set(s["gpu_hours_by_sku"]) <= {"h100-sxm", "a100-80g", "l40s"}
    assert s["gpu_hours"] == pytest.approx(sum(s["gpu_hours_by_sku"].values()), rel=1e-4)
    assert s["requests_total"] > 0
    assert s["latency_estimated"] is (fidelity == "fluid")


def test_default_scenario_completes_every_request(capsys) -> None:
    s = run_json(capsys)
    assert s["requests_total"] == s["requests_completed"] > 50_000
    assert s["requests_failed"] == 0
    assert s["slo_attainment"] >= 0.99
    assert set(s["gpu_hours_by_sku"]) == {"h800", "h20"}


def test_same_seed_same_summary_apart_from_wall_time(capsys) -> None:
    a = run_json(capsys, "--scenario", "small-mixed", "--seed", "3")
    b = run_json(capsys, "--scenario", "small-mixed", "--seed", "3")
    a.pop("wall_s")
    b.pop("wall_s")
    assert a == b


def test_out_dir_gets_summary_records_timeseries_config_and_journal(capsys, tmp_path: Path) -> None:
    s = run_json(capsys, "--scenario", "small-mixed", "--out", str(tmp_path))
    assert json.loads((tmp_path / "summary.json").read_text())["requests_total"] == s["requests_total"]
    records = (tmp_path / "requests.csv").read_text().splitlines()
    assert len(records) == s["requests_total"] + 1  # header + one line per request
    assert (tmp_path / "timeseries.csv").read_text().startswith("t_s,")
    assert main(["validate", str(tmp_path / "resolved.yaml")]) == 0
    assert (tmp_path / "journal.jsonl").exists()


def _one_line_error(capsys, argv: list[str], needle: str) -> None:
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2
    err = [ln for ln in captured.err.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    assert len(err) == 1, captured.err
    assert needle in err[0]
    assert "Traceback" not in captured.err


def test_bad_scenario_file_is_one_clear_line(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: scenario\nname: x\nservices: []\nbogus: 1\n")
    _one_line_error(capsys, ["simulate", "--scenario", str(bad)], str(bad))


def test_unknown_scenario_name_is_one_clear_line(capsys) -> None:
    _one_line_error(capsys, ["simulate", "--scenario", "no-such-scenario"], "no-such-scenario")


def _scenario_with_trace(tmp_path: Path, trace: Path) -> Path:
    from importlib import resources

    text = resources.files("heteroscale").joinpath("data", "scenarios", "default.yaml").read_text()
    path = tmp_path / "s.yaml"
    assert "trace: azure-conv" in text and "topology: two-bigpods" in text  # embedded names resolve anywhere
    path.write_text(text.replace("trace: azure-conv", f"trace: {trace}"))
    return path


def test_malformed_trace_row_names_file_and_line_unless_skipped(capsys, tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,100,5\n"
        "2023-11-16 18:17:04.0000000,abc,5\n"
        "2023-11-16 18:17:05.0000000,200,7\n"
    )
    scenario = _scenario_with_trace(tmp_path, trace)
    _one_line_error(capsys, ["simulate", "--scenario", str(scenario)], f"{trace}:3")
    s = run_json(capsys, "--scenario", str(scenario), "--skip-bad-rows")
    assert s["trace_rows_skipped"] == 1
    assert s["requests_total"] == 10 * 2  # two good rows, ten copies


def test_scenarios_lists_every_embedded_scenario(capsys) -> None:
    assert main(["scenarios"]) == 0
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()]
    assert {"default", "h100-speed", "fluid-day", "small-mixed"} <= set(names)


def test_validate_says_what_the_file_is(capsys, tmp_path: Path) -> None:
    from importlib import resources

    topo = resources.files("heteroscale").joinpath("data", "topologies", "two-bigpods.yaml")
    assert main(["validate", str(topo)]) == 0
    assert "topology" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: topology\nname: t\nvdcs: [{name: v}]\nextra: 1\n")
    assert main(["validate", str(bad)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("topology file is INVALID")
    assert f"{bad}: vdcs[0]" in out


def test_compare_json_has_every_policy_with_the_extra_figures(capsys, tmp_path: Path) -> None:
    rc = main(["compare", "--scenario", "small-mixed", "--policies", "heteroscale,static-peak", "--json",
               "--out", str(tmp_path)])  # fmt: skip
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["policies"]) == {"heteroscale", "static-peak"}
    assert result["schema_version"] == 2
    for summary in result["policies"].values():
        assert summary.keys() >= REQUIRED_KEYS - {"wall_s"}  # a comparison leaves the machine's speed out
        extra = ("scale_actions_per_hour", "pd_ratio_deviation", "gpu_hours_vs_oracle", "gpu_hours_vs_lower_bound")
        for key in extra:
            assert key in summary
        # one schema with or without --seeds: every figure is {mean, ci95, n}
        assert summary["gpu_hours"] == {"mean": summary["gpu_hours"]["mean"], "ci95": None, "n": 1}
        assert summary["gpu_hours_vs_lower_bound"]["mean"] >= 1.0
    # targets come from one pressure test per service and are shown
    assert set(result["targets"]) == {"chat-8b", "code-32b"}
    assert all(t["source"].startswith("pressure-test") for t in result["targets"].values())
    # the peers' own terms and Dynamo's profile come from the same pressure test (and perf model)
    peer_terms = ("prefill_queue_per_instance", "decode_batch_util", "prefill_s_per_input_token",
                  "decode_itl_floor_s", "decode_itl_s_per_kv_token", "decode_kv_capacity_tokens")  # fmt: skip
    for t in result["targets"].values():
        assert all(t[name] > 0 for name in peer_terms), t
        assert t["decode_batch_util"] <= t["margin"]
    html = (tmp_path / "report.html").read_text()
    for png in ("load_and_instances.png", "utilisation.png", "latency.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG")
        assert png in html
    assert (tmp_path / "heteroscale" / "timeseries.csv").exists()
    journal = (tmp_path / "heteroscale" / "journal.jsonl").read_text().splitlines()
    assert journal and all(json.loads(line)["decision"]["steps"] for line in journal)


def test_compare_with_seeds_on_a_trace_replay_says_the_seeds_are_identical(capsys) -> None:
    rc = main(["compare", "--scenario", "small-mixed", "--policies", "static-peak", "--seeds", "2", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    s = result["policies"]["static-peak"]
    assert set(s["gpu_hours"]) == {"mean", "ci95", "n"}
    # a trace replay is one load under every seed: one run, no interval, and said so (not a 0-width CI)
    assert (s["gpu_hours"]["n"], s["gpu_hours"]["ci95"], s["seeds"]) == (1, None, [0])
    assert result["seeds"] == 2 and result["seeds_identical"] is True
    assert "same requests" in result["seeds_note"]


def test_compare_unknown_policy_is_one_clear_line(capsys) -> None:
    _one_line_error(capsys, ["compare", "--scenario", "small-mixed", "--policies", "magic"], "unknown policy")


def test_sweep_ratio_lists_every_split_and_the_best(capsys) -> None:
    rc = main(["sweep-ratio", "--scenario", "small-mixed", "--instances", "4", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["split"] for s in result["splits"]] == ["1P3D", "2P2D", "3P1D"]
    assert result["best"] in {"1P3D", "2P2D", "3P1D"}
    assert isinstance(result["unimodal"], bool)


def test_compare_writes_targets_into_a_resolved_config_that_reruns_with_them(capsys, tmp_path: Path) -> None:
    rc = main(["compare", "--scenario", "small-mixed", "--policies", "heteroscale", "--json", "--out", str(tmp_path)])
    assert rc == 0
    first = json.loads(capsys.readouterr().out)
    resolved = tmp_path / "resolved.yaml"
    text = resolved.read_text()
    assert "targets:" in text and "decode_tps_per_instance" in text
    assert main(["validate", str(resolved)]) == 0
    capsys.readouterr()
    rc = main(["compare", "--scenario", str(resolved), "--policies", "heteroscale", "--json"])
    assert rc == 0
    again = json.loads(capsys.readouterr().out)
    assert again["pressure_test"] == {}  # pinned targets: no pressure test this time
    assert again["targets"] == first["targets"]
    a, b = first["policies"]["heteroscale"], again["policies"]["heteroscale"]
    assert a["gpu_hours"] == b["gpu_hours"] and a["slo_attainment"] == b["slo_attainment"]


def _data(*parts: str) -> str:
    from importlib import resources

    return str(resources.files("heteroscale").joinpath("data", *parts))


def test_topology_command_shows_subgroups_with_priority(capsys) -> None:
    assert main(["topology", _data("topologies", "three-tiers.yaml")]) == 0
    out = capsys.readouterr().out
    for word in ("LOW", "MEDIUM", "HIGH", "h800", "h20"):
        assert word in out
    assert main(["topology", _data("topologies", "three-tiers.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_schedule_command_places_and_explains_what_it_cannot(capsys) -> None:
    topo = _data("topologies", "three-tiers.yaml")
    demands = _data("topologies", "demands", "demands-example.yaml")
    assert main(["schedule", "--topology", topo, "--demands", demands, "--json"]) == 3  # pods left unplaced
    result = json.loads(capsys.readouterr().out)
    text = json.dumps(result)
    assert "launches" in text and "unplaced" in text
    assert main(["schedule", "--topology", topo, "--demands", demands]) == 3
    assert "not placed" in capsys.readouterr().out


def test_schedule_with_a_bad_demands_file_is_one_clear_line(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "d.yaml"
    bad.write_text("kind: demands\nservices: [{name: x}]\n")
    _one_line_error(
        capsys, ["schedule", "--topology", _data("topologies", "three-tiers.yaml"), "--demands", str(bad)], str(bad)
    )
