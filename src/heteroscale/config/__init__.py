"""Configuration at the edge: pydantic-validated YAML → the simulator's resolved ``Scenario``.

Public API::

    load_scenario(ref) -> Scenario                 # embedded name (`suite/<name>` too) or YAML path
    load_suite(ref) -> Suite                       # embedded suite name (`policies`) or YAML path
    list_embedded_scenarios() -> [(name, description)]
    load_topology(ref, catalog=None) -> Topology   # embedded name or YAML path
    validate_file(path) -> ValidationReport        # any scenario / suite / topology / catalog file
    resolved_config_dict(scenario) -> dict         # plain, YAML-dumpable, fully resolved
    write_resolved_config(scenario, path) -> Path
    load_catalog() -> Catalog; resolve_sku(name); resolve_model(name); calibration()
"""

from __future__ import annotations

from heteroscale.config.catalog import Catalog, calibration, load_catalog, resolve_model, resolve_sku
from heteroscale.config.loader import (
    ValidationReport,
    list_embedded_scenarios,
    load_scenario,
    load_suite,
    load_topology,
    validate_file,
)
from heteroscale.config.resolved import resolved_config_dict, write_resolved_config

__all__ = [
    "Catalog",
    "ValidationReport",
    "calibration",
    "list_embedded_scenarios",
    "load_catalog",
    "load_scenario",
    "load_suite",
    "load_topology",
    "resolve_model",
    "resolve_sku",
    "resolved_config_dict",
    "validate_file",
    "write_resolved_config",
]
