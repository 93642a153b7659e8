"""Scheduling at the edges: the topology file's subgroup_priority, the demands file, and the
``topology`` / ``schedule`` command functions (on the bundled example and on tmp files)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.cli.scheduling import cmd_schedule, cmd_topology, schedule_text, topology_json
from heteroscale.config import load_topology
from heteroscale.config.demands import load_demands
from heteroscale.config.source import parse_document
from heteroscale.config.topology import TopologyConfig, build_topology, topology_to_dict
from heteroscale.domain.hardware import Role
from heteroscale.domain.topology import SubgroupPriority
from heteroscale.errors import ConfigError

EXAMPLE_DEMANDS = resources.files("heteroscale").joinpath("data", "topologies", "demands", "demands-example.yaml")

# --- builders -------------------------------------------------------------------------------


def big_pod(name: str, *mini_pods: tuple[str, str, int]) -> dict[str, Any]:
    """A big-pod with mini-pods ``(name, sku, gpus_free of each of its 2 nodes)``."""
    return {
        "name": name,
        "mini_pods": [
            {
                "name": s1,
                "s0s": [
                    {
                        "name": f"{s1}-s0",
                        "nodes": [{"count": 2, "sku": sku, "gpus": 8, "gpus_free": free, "prefix": f"{s1}n"}],
                    }
                ],
            }
            for s1, sku, free in mini_pods
        ],
    }


def topology_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "topology",
        "name": "tiny",
        "vdcs": [
            {
                "name": "v",
                "physical_clusters": [
                    {
                        "name": "p",
                        "logical_clusters": [
                            {
                                "name": "lc",
                                "big_pods": [
                                    big_pod("s2-a", ("s1-a1", "h800", 4), ("s1-a2", "h20", 8)),
                                    big_pod("s2-b", ("s1-b1", "h800", 8)),
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    base.update(overrides)
    return base


def service_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "chat",
        "model": "llama-3.1-70b",
        "roles": {
            "prefill": {"shapes": [{"sku": "h800", "tp": 4}], "max": 8},
            "decode": {"shapes": [{"sku": "h20", "tp": 4}], "max": 8},
        },
        "pd_ratio": 1.0,
        "slo": {"ttft_s": 2.0, "tbt_s": 0.1},
        "desired": {"prefill": 2, "decode": 2},
        "instances": [
            {"id": "chat-p0", "role": "prefill", "sku": "H800", "tp": 4, "dg": "chat-dg0", "node": "s1-a1n1"}
        ],
    }
    base.update(overrides)
    return base


def write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --- topology: subgroup_priority ------------------------------------------------------------


def test_subgroup_priority_overrides_by_name_and_by_path(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", topology_dict(subgroup_priority={"s2-b": "medium", "v/p/lc/s2-a/s1-a1": "high"}))
    topology = load_topology(path)
    assert dict(topology.subgroup_priority) == {
        ("v", "p", "lc", "s2-b"): SubgroupPriority.MEDIUM,
        ("v", "p", "lc", "s2-a", "s1-a1"): SubgroupPriority.HIGH,
    }
    groups = {g["name"]: (g["priority"], g["overridden"]) for g in topology_json(str(path))["subgroups"]}
    assert groups == {"s2-a/rest": ("low", False), "s1-a1": ("high", True), "s2-b": ("medium", True)}
    # the resolved topology round-trips
    again = topology_to_dict(topology)
    doc = parse_document(yaml.safe_dump(again), "again.yaml")
    assert build_topology(doc.validate(TopologyConfig), doc, _catalog()) == topology


def _catalog() -> Any:
    from heteroscale.config import load_catalog

    return load_catalog()


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"s2-zz": "high"}, "subgroup_priority.s2-zz", "no big-pod or mini-pod named 's2-zz'"),
        ({"s2-bb": "high"}, "subgroup_priority.s2-bb", "did you mean 's2-b'"),
        ({"s2-a": "urgent"}, "subgroup_priority.s2-a", "input should be 'low', 'medium' or 'high'"),
        ({"s2-a": "low", "v/p/lc/s2-a": "high"}, "subgroup_priority.v/p/lc/s2-a", "name the same domain"),
    ],
)
def test_bad_subgroup_priority_names_file_and_field(
    tmp_path: Path, overrides: dict[str, str], field: str, problem: str
) -> None:
    path = write(tmp_path, "t.yaml", topology_dict(subgroup_priority=overrides))
    with pytest.raises(ConfigError) as exc:
        load_topology(path)
    assert str(exc.value).startswith(f"{path}: {field}: ")
    assert problem in str(exc.value)
    assert "\n" not in str(exc.value)


def test_an_ambiguous_name_asks_for_the_path(tmp_path: Path) -> None:
    data = topology_dict()
    cluster = data["vdcs"][0]["physical_clusters"][0]["logical_clusters"][0]
    twin = copy.deepcopy(cluster)
    twin["name"] = "lc2"
    for bp in twin["big_pods"]:
        for mp in bp["mini_pods"]:
            mp["s0s"][0]["nodes"][0]["prefix"] += "x"
    data["vdcs"][0]["physical_clusters"][0]["logical_clusters"].append(twin)
    data["subgroup_priority"] = {"s2-b": "high"}
    with pytest.raises(ConfigError, match=r"subgroup_priority\.s2-b: 's2-b' names 2 domains .*full path"):
        load_topology(write(tmp_path, "t.yaml", data))
    data["subgroup_priority"] = {"v/p/lc2/s2-b": "high"}
    topology = load_topology(write(tmp_path, "t.yaml", data))
    assert dict(topology.subgroup_priority) == {("v", "p", "lc2", "s2-b"): SubgroupPriority.HIGH}


# --- the topology command -------------------------------------------------------------------


def test_topology_command_on_the_three_tier_example() -> None:
    data = topology_json("three-tiers")
    assert data["priority_counts"] == {"low": 3, "medium": 1, "high": 2}
    assert data["gpus"] == {"h20": 56, "h800": 72}
    by_name = {g["name"]: g for g in data["subgroups"]}
    assert by_name["s1-h1"]["priority"] == "high" and by_name["s1-h1"]["skus"] == ["h20", "h800"]
    assert by_name["s1-r1"]["overridden"] is True
    text = cmd_topology("three-tiers")
    for word in ("LOW", "MEDIUM", "HIGH", "s2-medium", "h800 12/16"):
        assert word in text
    json.dumps(data)


# --- the schedule command -------------------------------------------------------------------


def test_schedule_on_the_bundled_example() -> None:
    result = cmd_schedule("three-tiers", str(EXAMPLE_DEMANDS))
    json.dumps(result)
    launches = {(x["service"], x["role"], x["dg"], x["priority"]) for x in result["launches"]}
    assert launches == {
        ("chat", "prefill", "chat-dg1", "low"),
        ("chat", "decode", "chat-dg1", "low"),
        ("code", "prefill", "code-dg0", "high"),
        ("code", "decode", "code-dg0", "high"),
        ("summarize", "prefill", "summarize-dg0", "low"),
        ("summarize", "decode", "summarize-dg0", "low"),
    }
    assert sorted(r["instance_id"] for r in result["removals"]) == ["batch-d0", "batch-d1", "batch-p0", "batch-p1"]
    assert {(u["service"], u["role"], u["count"]) for u in result["unplaced"]} == {
        ("code", "prefill", 1),
        ("code", "decode", 1),
    }
    assert all("affinity s1" in u["reason"] for u in result["unplaced"])
    assert [s["name"] for s in result["services"]] == ["chat", "code", "summarize", "batch"]  # by priority
    text = schedule_text(result)
    assert "not placed:" in text and "code prefill ×1" in text


def test_schedule_on_tmp_files(tmp_path: Path) -> None:
    topology = write(tmp_path, "topo.yaml", topology_dict())
    demands = write(tmp_path, "demands.yaml", {"kind": "demands", "services": [service_dict()]})
    result = cmd_schedule(str(topology), str(demands))
    assert result["totals"]["launches"] == 3  # +1 P, +2 D; all in s2-a (the only big-pod with h20)
    assert {x["node"][:5] for x in result["launches"]} <= {"s1-a1", "s1-a2"}
    assert {x["dg"] for x in result["launches"]} == {"chat-dg0"}
    assert result["unplaced"] == []
    demands_out, state = load_demands(demands, load_topology(topology))
    assert demands_out[0].spec.prefill_shapes[0].sku == "h800"  # alias resolved
    assert state.instances[0].role is Role.PREFILL


def test_a_mix_in_the_demands_file_launches_exactly_those_shapes(tmp_path: Path) -> None:
    roles = {
        "prefill": {"shapes": [{"sku": "h800", "tp": 4}], "max": 8},
        "decode": {"shapes": [{"sku": "h20", "tp": 4}, {"sku": "h800", "tp": 4}], "max": 8},
    }
    by_shape = [
        {"role": "prefill", "sku": "h800", "tp": 4, "count": 2},
        {"role": "decode", "sku": "h20", "tp": 4, "count": 1},
        {"role": "decode", "sku": "H800", "tp": 4, "count": 1},  # an alias, resolved
    ]
    service = service_dict(roles=roles, desired={"prefill": 2, "decode": 2, "by_shape": by_shape}, affinity="cluster")
    topology = write(tmp_path, "topo.yaml", topology_dict())
    demands = write(tmp_path, "demands.yaml", {"kind": "demands", "services": [service]})
    result = cmd_schedule(str(topology), str(demands))
    launched = sorted((x["role"], x["sku"]) for x in result["launches"])
    assert launched == [("decode", "h20"), ("decode", "h800"), ("prefill", "h800")], result["launches"]
    assert result["unplaced"] == []


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({"kind": "scenario", "services": []}, "kind", "expected 'demands'"),
        (
            {"kind": "demands", "services": [service_dict(desird={})]},
            "services[0].desird",
            "unknown field; did you mean 'desired'?",
        ),
        (
            {"kind": "demands", "services": [service_dict(desired={"prefill": 20, "decode": 1})]},
            "services[0]",
            "desired.prefill (20)",
        ),
        (
            {
                "kind": "demands",
                "services": [
                    service_dict(
                        roles={
                            "prefill": {"shapes": [{"sku": "z9", "tp": 4}]},
                            "decode": {"shapes": [{"sku": "h20", "tp": 4}]},
                        }
                    )
                ],
            },
            "services[0].roles.prefill.shapes[0].sku",
            "z9",
        ),
        (
            {
                "kind": "demands",
                "services": [
                    service_dict(
                        instances=[{"id": "x", "role": "decode", "sku": "h20", "tp": 4, "dg": "d", "node": "nope"}]
                    )
                ],
            },
            "services[0].instances[0].node",
            "no node 'nope'",
        ),
        (
            {
                "kind": "demands",
                "services": [
                    service_dict(
                        instances=[{"id": "x", "role": "prefill", "sku": "h800", "tp": 4, "dg": "d", "node": "s1-b1n1"}]
                    )
                ],
            },
            "services[0].instances[0].node",
            "use 4 GPUs but topology 'tiny' reports 0 in use",
        ),
        (
            {"kind": "demands", "services": [service_dict(), service_dict(instances=[])]},
            "services[1].name",
            "duplicate service name",
        ),
        (
            {
                "kind": "demands",
                "services": [
                    service_dict(
                        desired={
                            "prefill": 2,
                            "decode": 2,
                            "by_shape": [
                                {"role": "prefill", "sku": "h800", "tp": 4, "count": 1},
                                {"role": "decode", "sku": "h20", "tp": 4, "count": 2},
                            ],
                        }
                    )
                ],
            },
            "services[0].desired",
            "prefill",
        ),
        (
            {
                "kind": "demands",
                "services": [
                    service_dict(
                        desired={
                            "prefill": 2,
                            "decode": 2,
                            "by_shape": [
                                {"role": "prefill", "sku": "h9000", "tp": 4, "count": 2},
                            ],
                        }
                    )
                ],
            },
            "services[0].desired.by_shape[0].sku",
            "h9000",
        ),
    ],
)
def test_bad_demands_file_is_one_line_naming_file_and_field(
    tmp_path: Path, data: dict[str, Any], field: str, problem: str
) -> None:
    topology = write(tmp_path, "topo.yaml", topology_dict())
    demands = write(tmp_path, "demands.yaml", data)
    with pytest.raises(ConfigError) as exc:
        cmd_schedule(str(topology), str(demands))
    message = str(exc.value)
    assert message.startswith(f"{demands}: {field}: "), message
    assert problem in message
    assert "\n" not in message


def test_missing_demands_file_is_a_config_error(tmp_path: Path) -> None:
    topology = write(tmp_path, "topo.yaml", topology_dict())
    with pytest.raises(ConfigError, match="file not found"):
        cmd_schedule(str(topology), str(tmp_path / "nope.yaml"))
