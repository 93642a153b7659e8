"""Configuration layer: embedded scenarios, aliases, one-line errors, validate_file, resolved config."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.config import (
    ValidationReport,
    calibration,
    list_embedded_scenarios,
    load_catalog,
    load_scenario,
    load_topology,
    resolve_model,
    resolve_sku,
    resolved_config_dict,
    validate_file,
    write_resolved_config,
)
from heteroscale.config.bundled import embedded_scenarios, embedded_topologies
from heteroscale.domain.hardware import Role
from heteroscale.domain.service import AffinityLevel
from heteroscale.errors import ConfigError
from heteroscale.perf import Calibration
from heteroscale.sim.scenario import Fidelity, LoadKind, Scenario, SimSettings

DELETE = object()

# --- builders -------------------------------------------------------------------------------


def topology_dict(**overrides: Any) -> dict[str, Any]:
    """A small inline topology: one S2 with an H800 mini-pod (2 nodes) and an H20 mini-pod (2 nodes)."""
    base: dict[str, Any] = {
        "kind": "topology",
        "name": "tiny",
        "vdcs": [
            {
                "name": "vdc-1",
                "physical_clusters": [
                    {
                        "name": "pc-1",
                        "logical_clusters": [
                            {
                                "name": "lc-1",
                                "big_pods": [
                                    {
                                        "name": "s2-a",
                                        "mini_pods": [
                                            {
                                                "name": "s1-a1",
                                                "s0s": [
                                                    {
                                                        "name": "s0-a1",
                                                        "nodes": [
                                                            {"name": "p1", "sku": "h800", "gpus": 8},
                                                            {"name": "p2", "sku": "h800", "gpus": 8},
                                                        ],
                                                    }
                                                ],
                                            },
                                            {
                                                "name": "s1-a2",
                                                "s0s": [
                                                    {
                                                        "name": "s0-a2",
                                                        "nodes": [
                                                            {
                                                                "count": 2,
                                                                "sku": "h20",
                                                                "gpus": 8,
                                                                "prefix": "d",
                                                            }
                                                        ],
                                                    }
                                                ],
                                            },
                                        ],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    return with_changes(base, overrides)


S0_A1 = "vdcs.0.physical_clusters.0.logical_clusters.0.big_pods.0.mini_pods.0.s0s.0"
S0_A1_LOC = "vdcs[0].physical_clusters[0].logical_clusters[0].big_pods[0].mini_pods[0].s0s[0]"


def scenario_dict(**overrides: Any) -> dict[str, Any]:
    """A valid one-service scenario; ``overrides`` maps dotted paths (``services.0.pd_ratio``) to values."""
    base: dict[str, Any] = {
        "kind": "scenario",
        "name": "t",
        "topology": "two-bigpods",
        "services": [
            {
                "name": "chat",
                "model": "llama-3.1-70b",
                "roles": {
                    "prefill": {"shapes": [{"sku": "h800", "tp": 4}], "min": 1, "max": 8},
                    "decode": {"shapes": [{"sku": "h20", "tp": 4}], "min": 1, "max": 8},
                },
                "pd_ratio": 1.0,
                "slo": {"ttft_s": 2.0, "tbt_s": 0.1},
                "load": {"kind": "trace", "trace": "azure-conv"},
                "policy": {"name": "fixed", "prefill": 2, "decode": 2},
            }
        ],
    }
    return with_changes(base, overrides)


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for dotted, value in changes.items():
        keys: list[Any] = [int(k) if k.isdigit() else k for k in dotted.split(".")]
        target: Any = out
        for key in keys[:-1]:
            target = target[key]
        if value is DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return out


def write(folder: Path, name: str, content: dict[str, Any] | str) -> Path:
    path = folder / name
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    return message


# --- embedded scenarios ---------------------------------------------------------------------


EMBEDDED = ["default", "h100-speed", "fluid-day", "small-mixed"]


@pytest.mark.parametrize("name", EMBEDDED)
def test_every_embedded_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.source == f"embedded:{name}"
    assert scenario.services
    for run in scenario.services:
        assert run.spec.model in scenario.models
        for role in Role:
            for shape in run.spec.shapes(role):
                assert shape.sku in scenario.skus
                assert shape.sku in scenario.topology.gpus_by_sku()
        assert Path(run.load.trace_path).is_absolute()
        assert Path(run.load.trace_path).is_file()


def test_list_embedded_scenarios_names_all_with_one_line_descriptions() -> None:
    listed = dict(list_embedded_scenarios())
    assert set(EMBEDDED) <= set(listed)
    assert set(listed) == set(embedded_scenarios())
    for description in listed.values():
        assert description
        assert "\n" not in description


@pytest.mark.parametrize("name", sorted(embedded_topologies()))
def test_every_embedded_topology_is_valid(name: str) -> None:
    report = validate_file(embedded_topologies()[name])
    assert report == ValidationReport(kind="topology", ok=True, message=report.message)
    assert load_topology(name).name == name


def test_default_scenario_is_what_make_run_expects() -> None:
    s = load_scenario("default")
    (run,) = s.services
    assert run.spec.model == "llama-3.1-70b"
    assert [(x.sku, x.tp) for x in run.spec.prefill_shapes] == [("h800", 4)]
    assert [(x.sku, x.tp) for x in run.spec.decode_shapes] == [("h20", 4)]
    assert (run.policy.prefill, run.policy.decode) == (3, 3)
    assert run.load.trace_path.endswith("AzureLLMInferenceTrace_conv.csv")
    assert (run.load.copies, run.load.copy_shift_s) == (10, 350.0)
    assert s.settings.fidelity is Fidelity.REQUEST
    assert s.topology.name == "two-bigpods"
    s2_skus: dict[str, set[str]] = {}
    for node in s.topology.nodes:
        s2_skus.setdefault(node.path[3], set()).add(node.sku)
    assert sorted(map(sorted, s2_skus.values())) == [["h20", "h800"], ["h800"]]


def test_fluid_day_is_a_day_of_poisson_load_at_fleet_scale() -> None:
    s = load_scenario("fluid-day")
    (run,) = s.services
    assert s.settings.fidelity is Fidelity.FLUID
    assert s.settings.duration_s == 86400
    assert run.load.kind is LoadKind.POISSON
    assert run.load.rate_curve_path is not None
    assert run.load.rate_curve_path.endswith("servegen_language_m-large_rate.csv")
    assert run.load.rate_curve_day == 0
    assert run.policy.prefill + run.policy.decode == 200


# --- aliases --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("h100-80gb", "h100-sxm"),
        ("H100_SXM", "h100-sxm"),
        ("h100-sxm", "h100-sxm"),
        ("A100-80GB", "a100-80g"),
        ("NVIDIA H20", "h20"),
        ("l40s", "l40s"),
    ],
)
def test_sku_aliases_resolve(alias: str, canonical: str) -> None:
    assert resolve_sku(alias) == canonical


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("Llama_3.1_70B", "llama-3.1-70b"),
        ("Qwen/Qwen3-32B", "qwen3-32b"),
        ("llama2-70b", "llama2-70b"),
    ],
)
def test_model_aliases_resolve(alias: str, canonical: str) -> None:
    assert resolve_model(alias) == canonical


@pytest.mark.parametrize(
    ("resolve", "name", "fragment"),
    [
        (resolve_sku, "h999", "unknown GPU SKU 'h999' (known: a100-80g"),
        (resolve_model, "gpt-5", "unknown model 'gpt-5' (known: "),
    ],
)
def test_unknown_names_are_config_errors(resolve: Any, name: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"^unknown") as info:
        resolve(name)
    assert fragment in str(info.value)


def test_scenario_resolves_aliases_to_canonical_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        scenario_dict(
            **{
                "services.0.model": "meta-llama/Llama-3.1-70B",
                "services.0.roles.prefill.shapes": [{"sku": "H800_SXM", "tp": 4}],
            }
        ),
    )
    (run,) = load_scenario(str(path)).services
    assert run.spec.model == "llama-3.1-70b"
    assert run.spec.prefill_shapes[0].sku == "h800"


def test_catalog_and_calibration_are_loaded_once() -> None:
    assert load_catalog() is load_catalog()
    assert calibration() is calibration()
    assert calibration() != Calibration.default()  # fitted on perf_model.csv, not the priors


# --- one-line errors ------------------------------------------------------------------------

SHAPE0 = "services[0].roles.prefill.shapes[0]"


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"extra": 1}, "extra", "unknown field"),
        ({"services.0.load.rate_scal": 2.0}, "services[0].load.rate_scal", "did you mean 'rate_scale'"),
        (
            {"services.0.roles.prefill.min": 5, "services.0.roles.prefill.max": 3},
            "services[0].roles.prefill",
            "min (5) must not exceed max (3)",
        ),
        ({"services.0.roles.prefill.shapes.0.sku": "h999"}, f"{SHAPE0}.sku", "unknown GPU SKU 'h999'"),
        ({"services.0.model": "gpt-5"}, "services[0].model", "unknown model 'gpt-5'"),
        (
            {"services.0.roles.prefill.shapes.0.sku": "h100-sxm"},
            f"{SHAPE0}.sku",
            "no node of SKU 'h100-sxm' in topology 'two-bigpods'",
        ),
        (
            {
                "topology": "small-mixed",
                "services.0.roles.prefill.shapes.0": {"sku": "l40s", "tp": 1},
                "services.0.roles.decode.shapes.0.sku": "a100-80g",
            },
            SHAPE0,
            "does not fit l40s tp1",
        ),
        ({"services.0.roles.prefill.shapes.0.tp": 16}, f"{SHAPE0}.tp", "exceeds the largest 'h800' node"),
        (
            {"services.0.roles.prefill.shapes.0.tp": 3},
            f"{SHAPE0}.tp",
            "does not divide the 64 attention heads",
        ),
        ({"services.0.roles.prefill.shapes.0.tp": "four"}, f"{SHAPE0}.tp", "valid integer"),
        (
            {"services.0.roles.prefill.shapes": [{"sku": "h800", "tp": 4}, {"sku": "H800", "tp": 4}]},
            "services[0].roles.prefill.shapes[1]",
            "listed twice",
        ),
        ({"services.0.policy.prefill": 20}, "services[0]", "policy.prefill (20) is outside roles.prefill"),
        ({"services.0.policy.name": "magic"}, "services[0].policy.name", "'fixed'"),
        ({"services.0.pd_ratio": 0}, "services[0].pd_ratio", "greater than 0"),
        ({"services.0.slo": DELETE}, "services[0].slo", "required field is missing"),
        (
            {"services.0.prefix_cache_hit_rate": 1.5},
            "services[0].prefix_cache_hit_rate",
            "less than or equal to 1",
        ),
        ({"services.0.load.kind": "poisson"}, "services[0].load", "needs a rate_curve"),
        (
            {"services.0.load.rate_curve": "servegen-m-large"},
            "services[0].load",
            "only used by kind 'poisson'",
        ),
        ({"services.0.load.trace": "servegen-m-large"}, "services[0].load.trace", "is a bundled rate curve"),
        ({"services.0.load.trace": "missing.csv"}, "services[0].load.trace", "neither a bundled name"),
        ({"topology": "nowhere"}, "topology", "unknown topology 'nowhere'"),
        ({"simulation": {"fidelity": "exact"}}, "simulation.fidelity", "'request' or 'fluid'"),
        ({"simulation": {"kv_activation_reserve": 1.0}}, "simulation.kv_activation_reserve", "less than 1"),
        ({"kind": "scenery"}, "kind", "unknown kind 'scenery'"),
        ({"kind": "topology"}, "kind", "expected 'scenario', got 'topology'"),
        (
            {"topology": topology_dict(**{f"{S0_A1}.nodes.1.name": "p1"})},
            f"topology.{S0_A1_LOC}.nodes[1].name",
            "duplicate node name 'p1'",
        ),
        (
            {"topology": topology_dict(**{f"{S0_A1}.nodes.1.gpus_free": 9})},
            f"topology.{S0_A1_LOC}.nodes[1]",
            "gpus_free (9) exceeds gpus (8)",
        ),
        (
            {"topology": topology_dict(**{f"{S0_A1}.nodes.1.sku": "tpu"})},
            f"topology.{S0_A1_LOC}.nodes[1].sku",
            "unknown GPU SKU 'tpu'",
        ),
        (
            {"topology": topology_dict(**{f"{S0_A1}.nodes.1.colour": "red"})},
            f"topology.{S0_A1_LOC}.nodes[1].colour",
            "unknown field",
        ),
        (
            {"topology": topology_dict(**{"kv_bandwidth": {"same_s2": -1}})},
            "topology.kv_bandwidth.same_s2",
            "greater than 0",
        ),
    ],
)
def test_bad_scenario_gives_one_line_naming_file_and_field(
    tmp_path: Path, changes: dict[str, Any], field: str, problem: str
) -> None:
    path = write(tmp_path, "bad.yaml", scenario_dict(**changes))
    message = one_line_error(path)
    assert message.startswith(f"{path}: {field}: "), message
    assert problem in message


def test_several_errors_are_counted_and_named_on_the_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", scenario_dict(extra=1, name=""))
    message = one_line_error(path)
    assert message.endswith("(and 1 more: extra)")


def test_error_names_the_line_of_the_field(tmp_path: Path) -> None:
    text = yaml.safe_dump(scenario_dict(**{"services.0.load.rate_scal": 2.0}), sort_keys=False)
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if "rate_scal:" in t)
    message = one_line_error(write(tmp_path, "bad.yaml", text))
    assert message.endswith(f"(line {line})")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: scenario\nname: [t\n", "line 3, column 1: invalid YAML"),
        (
            "kind: scenario\nservices:\n  - name: a\n    name: b\n",
            "line 4: duplicate key 'name' (first on line 3)",
        ),
        ("kind: scenario\n\tname: t\n", "line 2, column 1: invalid YAML"),
        ("", "empty file"),
        ("- kind: scenario\n", "expected a mapping at the top level, got a list"),
        ("name: t\n", "kind: missing (expected one of: catalog, scenario, suite, topology)"),
    ],
)
def test_unparsable_files_give_one_line(tmp_path: Path, text: str, problem: str) -> None:
    message = one_line_error(write(tmp_path, "bad.yaml", text))
    assert problem in message


def test_missing_file_and_unknown_scenario_name() -> None:
    with pytest.raises(ConfigError, match=r"^/nonexistent/s\.yaml: file not found$"):
        load_scenario("/nonexistent/s.yaml")
    with pytest.raises(ConfigError, match=r"^no-such-scenario: unknown scenario \(embedded: budget, bursty, default"):
        load_scenario("no-such-scenario")


def test_errors_in_a_referenced_topology_name_that_file(tmp_path: Path) -> None:
    topo = write(tmp_path, "topo.yaml", topology_dict(**{f"{S0_A1}.nodes.1.name": "p1"}))
    path = write(tmp_path, "s.yaml", scenario_dict(topology="topo.yaml"))
    with pytest.raises(ConfigError) as info:
        load_scenario(str(path))
    assert str(info.value).startswith(f"{topo}: {S0_A1_LOC}.nodes[1].name: duplicate node name 'p1'")


def test_a_referenced_topology_file_that_is_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", scenario_dict(topology="sub/topo.yaml"))
    with pytest.raises(ConfigError, match=r"sub/topo\.yaml: file not found$"):
        load_scenario(str(path))


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"vdcs.0.name": "Bad Name"}, "vdcs[0].name", "should match pattern"),
        ({f"{S0_A1}.nodes.0.gpus": 0}, f"{S0_A1_LOC}.nodes[0].gpus", "greater than or equal to 1"),
        ({f"{S0_A1}.nodes.1.name": "d1"}, "nodes[0].prefix", "duplicate node name 'd1'"),
        (
            {"vdcs.0.physical_clusters.0.logical_clusters.0.big_pods.0.mini_pods.1.name": "s1-a1"},
            "big_pods[0].mini_pods[1].name",
            "duplicate mini-pod name 's1-a1'",
        ),
        ({"vdcs": []}, "vdcs", "at least 1 item"),
    ],
)
def test_bad_topology_file(tmp_path: Path, changes: dict[str, Any], field: str, problem: str) -> None:
    path = write(tmp_path, "topo.yaml", topology_dict(**changes))
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert field in message and problem in message, message


# --- topology -------------------------------------------------------------------------------


def test_topology_tree_becomes_node_paths(tmp_path: Path) -> None:
    changes = {f"{S0_A1}.nodes.1.gpus_free": 2, f"{S0_A1}.nodes.1.labels": {"rack": "r7"}}
    topo = load_topology(write(tmp_path, "t.yaml", topology_dict(**changes)))
    assert [n.name for n in topo.nodes] == ["p1", "p2", "d1", "d2"]
    assert topo.nodes[0].path == ("vdc-1", "pc-1", "lc-1", "s2-a", "s1-a1", "s0-a1", "p1")
    assert topo.nodes[2].path == ("vdc-1", "pc-1", "lc-1", "s2-a", "s1-a2", "s0-a2", "d1")
    assert (topo.nodes[0].gpus_total, topo.nodes[0].gpus_free) == (8, 8)
    assert (topo.nodes[1].gpus_free, topo.nodes[1].labels) == (2, (("rack", "r7"),))
    assert topo.gpus_by_sku() == {"h800": 16, "h20": 16}
    assert topo.kv_bandwidth.same_s2 == 0.8


def test_inline_topology_with_sku_alias(tmp_path: Path) -> None:
    inline = topology_dict(**{f"{S0_A1}.nodes.0.sku": "H800_SXM"})
    scenario = load_scenario(str(write(tmp_path, "s.yaml", scenario_dict(topology=inline))))
    assert scenario.topology.nodes[0].sku == "h800"
    assert set(scenario.skus) == {"h800", "h20"}


# --- loads ----------------------------------------------------------------------------------


def test_trace_path_is_relative_to_the_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    trace = write(tmp_path / "data", "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n")
    path = write(tmp_path, "s.yaml", scenario_dict(**{"services.0.load.trace": "data/t.csv"}))
    (run,) = load_scenario(str(path)).services
    assert run.load.trace_path == str(trace.resolve())


def test_defaults_come_from_the_domain_types(tmp_path: Path) -> None:
    scenario = load_scenario(str(write(tmp_path, "s.yaml", scenario_dict())))
    assert scenario.settings == SimSettings()
    (run,) = scenario.services
    assert run.spec.affinity is AffinityLevel.S2
    assert run.spec.max_decode_batch == 256
    assert run.load.copies == 1 and run.load.rate_scale == 1.0


# --- catalog overrides and precision ---------------------------------------------------------

NEW_GPU = {
    "id": "x9",
    "name": "Example X9",
    "bf16_tflops": 500,
    "mem_gb": 100,
    "mem_bw_tbps": 5,
    "interconnect_gbps": 400,
    "nic_gbit_per_gpu": 400,
    "tdp_w": 600,
    "cost_per_gpu_hour": 1.5,
    "aliases": ["x9-100gb"],
}


def test_catalog_override_changes_one_field_and_adds_a_sku(tmp_path: Path) -> None:
    inline = topology_dict(**{f"{S0_A1}.nodes.1.sku": "x9-100gb"})
    data = scenario_dict(
        topology=inline,
        catalog={"gpus": [{"id": "H800", "cost_per_gpu_hour": 3.0}, NEW_GPU]},
        **{"services.0.roles.prefill.shapes": [{"sku": "h800", "tp": 4}, {"sku": "x9", "tp": 2}]},
    )
    scenario = load_scenario(str(write(tmp_path, "s.yaml", data)))
    assert scenario.skus["h800"].cost_per_gpu_hour == 3.0
    assert scenario.skus["h800"].bf16_tflops == load_catalog().skus["h800"].bf16_tflops
    assert scenario.skus["x9"].mem_gb == 100
    assert load_catalog().skus["h800"].cost_per_gpu_hour != 3.0  # the packaged catalog is untouched


@pytest.mark.parametrize(
    ("catalog", "field", "problem"),
    [
        (
            {"gpus": [{"id": "x9", "mem_gb": 100}]},
            "catalog.gpus[0]",
            "new GPU SKU 'x9' must give: name, bf16_tflops",
        ),
        (
            {"gpus": [{"id": "h800", "cost_per_gpu_hour": -1}]},
            "catalog.gpus[0].cost_per_gpu_hour",
            "greater than or equal to 0",
        ),
        (
            {"gpus": [{"id": "h800", "aliases": ["h20"]}]},
            "catalog.gpus[0].aliases[0]",
            "alias 'h20' already names GPU SKU 'h20'",
        ),
        (
            {"models": [{"id": "llama-3.1-70b", "kv_heads": 7}]},
            "catalog.models[0]",
            "heads (64) must be a multiple of kv_heads (7)",
        ),
    ],
)
def test_bad_catalog_override(tmp_path: Path, catalog: dict[str, Any], field: str, problem: str) -> None:
    message = one_line_error(write(tmp_path, "bad.yaml", scenario_dict(catalog=catalog)))
    assert message.startswith(f"{tmp_path / 'bad.yaml'}: {field}: "), message
    assert problem in message


def test_fp8_halves_the_weights_and_lets_a_bigger_model_fit(tmp_path: Path) -> None:
    changes = {
        "topology": "small-mixed",
        "services.0.roles.prefill.shapes": [{"sku": "h100-sxm", "tp": 1}],
        "services.0.roles.decode.shapes": [{"sku": "h100-sxm", "tp": 2}],
    }
    path = write(tmp_path, "bf16.yaml", scenario_dict(**changes))
    assert "does not fit h100-sxm tp1" in one_line_error(path)
    path = write(tmp_path, "fp8.yaml", scenario_dict(**changes, **{"services.0.precision": "fp8"}))
    scenario = load_scenario(str(path))
    assert scenario.models["llama-3.1-70b"].bytes_per_param == 1.0


def test_one_model_at_two_precisions_is_rejected(tmp_path: Path) -> None:
    data = scenario_dict()
    second = copy.deepcopy(data["services"][0]) | {"name": "chat-fp8", "precision": "fp8"}
    data["services"].append(second)
    message = one_line_error(write(tmp_path, "bad.yaml", data))
    assert "services[1].precision: model 'llama-3.1-70b' is already served at bf16" in message


def test_duplicate_service_names(tmp_path: Path) -> None:
    data = scenario_dict()
    data["services"].append(copy.deepcopy(data["services"][0]))
    message = one_line_error(write(tmp_path, "bad.yaml", data))
    assert "services[1].name: duplicate service name 'chat'" in message


# --- validate_file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "kind", "ok"),
    [
        ("s.yaml", scenario_dict(), "scenario", True),
        ("s.yaml", scenario_dict(**{"services.0.policy.decode": 99}), "scenario", False),
        ("t.yaml", topology_dict(), "topology", True),
        ("t.yaml", topology_dict(name=""), "topology", False),
        ("c.yaml", {"kind": "catalog", "gpus": [NEW_GPU]}, "catalog", True),
        ("c.yaml", {"kind": "catalog", "gpus": [{"id": "x9"}]}, "catalog", False),
        ("u.yaml", {"kind": "recipe"}, None, False),
        ("y.yaml", "kind: scenario\nname: [\n", None, False),
    ],
)
def test_validate_file_reports_kind_and_validity(
    tmp_path: Path, name: str, content: dict[str, Any] | str, kind: str | None, ok: bool
) -> None:
    path = write(tmp_path, name, content)
    report = validate_file(path)
    assert (report.kind, report.ok) == (kind, ok), report.message
    assert report.message.startswith(f"{path}: ")
    assert "\n" not in report.message
    if ok:
        assert f"valid {kind}" in report.message


def test_validate_file_on_a_missing_file() -> None:
    report = validate_file("/nonexistent/x.yaml")
    assert report == ValidationReport(kind=None, ok=False, message="/nonexistent/x.yaml: file not found")


# --- resolved config ------------------------------------------------------------------------


def _round_trip(scenario: Scenario, folder: Path) -> Scenario:
    path = write_resolved_config(scenario, folder / "resolved" / "config.yaml")
    return load_scenario(str(path))


@pytest.mark.parametrize("name", EMBEDDED)
def test_resolved_config_round_trips_through_yaml(tmp_path: Path, name: str) -> None:
    scenario = load_scenario(name)
    data = resolved_config_dict(scenario)
    yaml.safe_dump(data)  # plain data only: safe_dump refuses anything else
    again = _round_trip(scenario, tmp_path)
    assert dataclasses.replace(again, source=scenario.source) == scenario


def test_resolved_config_is_explicit(tmp_path: Path) -> None:
    data = resolved_config_dict(load_scenario("small-mixed"))
    service = data["services"][0]
    assert service["model"] == "llama-3.1-8b"
    assert Path(service["load"]["trace"]).is_absolute()
    assert service["affinity"] == "s2" and service["precision"] == "bf16"
    assert set(data["simulation"]) == {f.name for f in dataclasses.fields(SimSettings)}
    assert {g["id"] for g in data["catalog"]["gpus"]} == {"l40s", "a100-80g", "h100-sxm"}
    nodes = data["topology"]["vdcs"][0]["physical_clusters"][0]["logical_clusters"][0]["big_pods"][0]
    assert nodes["mini_pods"][0]["s0s"][0]["nodes"][0] == {
        "name": "l40s-1",
        "sku": "l40s",
        "gpus": 8,
        "gpus_free": 8,
        "schedulable": True,
    }


def test_resolved_config_round_trips_overrides_and_fp8(tmp_path: Path) -> None:
    data = scenario_dict(
        catalog={"gpus": [{"id": "h800", "cost_per_gpu_hour": 3.0}]},
        **{"services.0.precision": "fp8", "services.0.load.copies": 2},
    )
    scenario = load_scenario(str(write(tmp_path, "s.yaml", data)))
    again = _round_trip(scenario, tmp_path)
    assert dataclasses.replace(again, source=scenario.source) == scenario
    assert again.skus["h800"].cost_per_gpu_hour == 3.0


# --- upper bounds on counts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"services.0.load.copies": 2**62}, "services[0].load.copies"),
        ({"services.0.roles.prefill.max": 10**9}, "services[0].roles.prefill.max"),
        ({"services.0.roles.decode.min": 10**9}, "services[0].roles.decode.min"),
        ({"services.0.policy.prefill": 10**9}, "services[0].policy.prefill"),
        ({"services.0.policy.decode": 10**9}, "services[0].policy.decode"),
        ({"services.0.max_prefill_tokens": 2**40}, "services[0].max_prefill_tokens"),
        ({"services.0.max_decode_batch": 2**40}, "services[0].max_decode_batch"),
        ({"simulation": {"seed": 2**62}}, "simulation.seed"),
        ({"budget": {"total_gpus": 2**62}}, "budget.total_gpus"),
        ({"budget": {"by_sku": {"h800": 2**62}}}, "budget.by_sku.h800"),
    ],
)
def test_absurd_counts_are_one_line_naming_the_field(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    path = write(tmp_path, "bad.yaml", scenario_dict(**changes))
    message = one_line_error(path)
    assert message.startswith(f"{path}: {field}: "), message
    assert "less than or equal to" in message


@pytest.mark.parametrize(
    "changes",
    [
        {"services.0.load.copies": 1_000},
        {"services.0.roles.prefill.max": 10_000, "services.0.roles.decode.max": 10_000},
        {"simulation": {"seed": 2**32 - 1}},
    ],
)
def test_counts_at_their_upper_bound_are_accepted(tmp_path: Path, changes: dict[str, Any]) -> None:
    load_scenario(str(write(tmp_path, "ok.yaml", scenario_dict(**changes))))
