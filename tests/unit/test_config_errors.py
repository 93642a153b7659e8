"""Bad scenario and topology files: one line naming the file, the field and the problem (heteroscale.config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.config import (
    load_scenario,
    load_topology,
)
from heteroscale.domain.service import AffinityLevel
from heteroscale.errors import ConfigError
from heteroscale.sim.scenario import SimSettings
from tests.unit.config_builders import (
    DELETE,
    S0_A1,
    S0_A1_LOC,
    one_line_error,
    scenario_dict,
    topology_dict,
    write,
)

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
