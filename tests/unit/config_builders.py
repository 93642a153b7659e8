"""Builders shared by the config tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.config import (
    load_scenario,
)
from heteroscale.errors import ConfigError

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


EMBEDDED = ["default", "h100-speed", "fluid-day", "small-mixed"]
