"""Load scenario, suite, topology and catalog files; validate any of them (and controller and demands
files, and the traces and rate curves a scenario names); list the embedded scenarios.

Every problem surfaces as one :class:`~heteroscale.errors.ConfigError` line, never a traceback:
``<file>: <dotted.field.path>: <problem> (line N)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from heteroscale.config.build import build_scenario, topology_from_document
from heteroscale.config.bundled import embedded_scenarios, embedded_suites, embedded_topologies, looks_like_path
from heteroscale.config.catalog import Catalog, load_catalog_file
from heteroscale.config.resolved import resolved_config_dict, write_resolved_config
from heteroscale.config.schema import ScenarioConfig
from heteroscale.config.source import Document, Loc, check_kind, read_document, require_kind
from heteroscale.config.suite import SuiteConfig, build_suite
from heteroscale.domain.topology import Topology
from heteroscale.errors import ConfigError, HeteroScaleError, TraceError, did_you_mean
from heteroscale.sim.loadgen import read_rate_curve
from heteroscale.sim.scenario import LoadSpec, Scenario
from heteroscale.sim.suite import Suite
from heteroscale.sim.traces import read_trace

__all__ = [
    "ValidationReport",
    "list_embedded_scenarios",
    "load_scenario",
    "load_suite",
    "load_topology",
    "resolved_config_dict",
    "validate_file",
    "write_resolved_config",
]


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """What a file is (its ``kind``: scenario, suite, topology, catalog, controller, demands; None if
    unknown) and whether it is valid (with the data files it names)."""

    kind: str | None
    ok: bool
    message: str


def load_scenario(ref: str | Path) -> Scenario:
    """An embedded scenario by name (``default``, ``fluid-day``, …) or a scenario YAML file by path."""
    path, source = _scenario_path(ref)
    return _scenario_from_document(read_document(path), source)


def load_suite(ref: str | Path) -> Suite:
    """An embedded suite by name (``policies``) or a ``kind: suite`` file by path."""
    suites = embedded_suites()
    if isinstance(ref, str) and not looks_like_path(ref) and ref in suites:
        path, source = suites[ref], f"embedded:{ref}"
    else:
        path, source = Path(ref), str(Path(ref).resolve())
    return _suite_from_document(read_document(path), source)


def _suite_from_document(doc: Document, source: str) -> Suite:
    require_kind(doc, "suite")
    config = doc.validate(SuiteConfig)

    def scenario_at(ref: str, suite_doc: Document, loc: Loc) -> Scenario:
        if ref in embedded_scenarios():
            return load_scenario(ref)
        if not looks_like_path(ref):
            raise suite_doc.error(loc, f"unknown embedded scenario {ref!r} (or give a path relative to this file)")
        path = suite_doc.base_dir / ref
        if not path.is_file():
            raise suite_doc.error(loc, f"no scenario file {path}")
        return _scenario_from_document(read_document(path), str(path.resolve()))

    return build_suite(config, doc, scenario_at, source)


def list_embedded_scenarios() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every embedded scenario, sorted by name."""
    out: list[tuple[str, str]] = []
    for name, path in sorted(embedded_scenarios().items()):
        doc = read_document(path)
        description = doc.data.get("description", "")
        first_line = description.strip().splitlines()[0] if isinstance(description, str) and description.strip() else ""
        out.append((name, first_line))
    return out


def load_topology(ref: str | Path, catalog: Catalog | None = None) -> Topology:
    """A topology by embedded name (``two-bigpods``) or by path; SKUs resolved with ``catalog``."""
    text = str(ref)
    embedded = embedded_topologies()
    if isinstance(ref, str) and not looks_like_path(ref) and ref in embedded:
        path = embedded[ref]
    elif isinstance(ref, str) and not looks_like_path(ref) and not Path(ref).exists():
        known = ", ".join(sorted(embedded)) or "none"
        raise ConfigError(f"{text}: unknown topology (embedded: {known}; or give a path to a YAML file)")
    else:
        path = Path(ref)
    return topology_from_document(read_document(path), catalog)


def validate_file(path: str | Path) -> ValidationReport:
    """Say what kind of file ``path`` is and whether it is valid; never raises ConfigError."""
    try:
        doc = read_document(Path(path))
    except ConfigError as exc:
        return ValidationReport(kind=None, ok=False, message=str(exc))
    given = doc.data.get("kind")
    if given in ("controller", "demands"):  # files of their own commands, with their own loaders
        kind = str(given)
        try:
            summary = _controller_summary(doc) if kind == "controller" else _demands_summary(doc)
        except HeteroScaleError as exc:
            return ValidationReport(kind=kind, ok=False, message=str(exc))
        return ValidationReport(kind=kind, ok=True, message=f"{doc.display}: valid {kind}: {summary}")
    try:
        kind = check_kind(doc)
    except ConfigError as exc:
        return ValidationReport(kind=None, ok=False, message=str(exc))
    try:
        summary = _summarise(doc, kind)
    except HeteroScaleError as exc:  # a bad data file it names (a TraceError) as well as a bad field
        return ValidationReport(kind=kind, ok=False, message=str(exc))
    return ValidationReport(kind=kind, ok=True, message=f"{doc.display}: valid {kind}: {summary}")


# ---------------------------------------------------------------------------------------------


def _scenario_path(ref: str | Path) -> tuple[Path, str]:
    """The file behind a scenario reference and the ``source`` label the Scenario records."""
    if isinstance(ref, str):
        embedded = embedded_scenarios()
        if ref in embedded:  # before the path test: `suite/<name>` is a name
            return embedded[ref], f"embedded:{ref}"
        if not looks_like_path(ref) and not Path(ref).exists():
            known = ", ".join(sorted(embedded)) or "none"
            hint = did_you_mean(ref, embedded)
            raise ConfigError(f"{ref}: unknown scenario{hint} (embedded: {known}; or give a path to a YAML file)")
    path = Path(ref)
    return path, str(path.resolve())


def _scenario_from_document(doc: Document, source: str) -> Scenario:
    require_kind(doc, "scenario")
    config = doc.validate(ScenarioConfig)
    return build_scenario(config, doc, source)


def _summarise(doc: Document, kind: str) -> str:
    if kind == "scenario":
        path = doc.path if doc.path is not None else Path(doc.display)
        scenario = _scenario_from_document(doc, str(path.resolve()))
        services = ", ".join(run.spec.name for run in scenario.services)
        rows = sum(_check_data(run.spec.name, run.load) for run in scenario.services)
        return (
            f"'{scenario.name}', {len(scenario.services)} service(s) ({services}), "
            f"topology '{scenario.topology.name}' with {_gpu_summary(scenario.topology)}; "
            f"data files read: {rows:,} rows"
        )
    if kind == "suite":
        suite = _suite_from_document(doc, str((doc.path or Path(doc.display)).resolve()))
        scores = sum(len(entry.score) for entry in suite.entries)
        rows = sum(_check_data(run.spec.name, run.load) for e in suite.entries for run in e.scenario.services)
        return (
            f"'{suite.name}', {len(suite.entries)} scenario(s), {len(suite.entries)} tune and {scores} score "
            f"part(s); data files read: {rows:,} rows"
        )
    if kind == "topology":
        topology = topology_from_document(doc)
        return f"'{topology.name}' with {_gpu_summary(topology)}"
    require_kind(doc, "catalog")
    catalog = load_catalog_file(doc)
    gpus = len(doc.data.get("gpus") or [])
    models = len(doc.data.get("models") or [])
    return (
        f"{gpus} GPU and {models} model entries; merged catalog has "
        f"{len(catalog.skus)} SKUs and {len(catalog.models)} models"
    )


def _check_data(service: str, load: LoadSpec) -> int:
    """Read the trace and the rate curve a service's load names, as a run would (every row checked: an
    empty file, garbage, a negative value, a rate curve given as a trace each fail in one line);
    return the rows read."""
    try:
        rows = len(read_trace(load.trace_path, load.trace_format, skip_bad_rows=load.skip_bad_rows))
        if load.rate_curve_path is not None:
            rows += len(read_rate_curve(load.rate_curve_path, skip_bad_rows=load.skip_bad_rows).rate_rps)
    except TraceError as exc:
        if _is_rate_curve(load.trace_path):
            raise TraceError(
                f"service {service}: load.trace: {load.trace_path} is a rate curve (window_start_s, total_rate_rps), "
                "not a request trace: name it in load.rate_curve with kind: poisson (lengths still come from a trace)"
            ) from exc
        raise TraceError(f"service {service}: {exc}") from exc
    return rows


def _is_rate_curve(path: str) -> bool:
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as fh:
            return fh.readline(256).strip().lower().startswith("window_start_s,")  # bounded: /dev/zero ends
    except OSError:
        return False


def _controller_summary(doc: Document) -> str:
    from heteroscale.config.controller import ControllerConfig, check_lease_budgets

    # its credential files may exist only where it runs (a Secret's mount): `controller --check` reads them
    config = doc.validate(ControllerConfig)
    check_lease_budgets(config, doc)
    services = ", ".join(s.name for s in config.services)
    return f"'{config.name}', {len(config.services)} service(s) ({services})"


def _demands_summary(doc: Document) -> str:
    from heteroscale.config.demands import check_demands

    return check_demands(doc)


def _gpu_summary(topology: Topology) -> str:
    by_sku = topology.gpus_by_sku()
    parts = ", ".join(f"{count} {sku}" for sku, count in sorted(by_sku.items()))
    return f"{len(topology.nodes)} nodes, {sum(by_sku.values())} GPUs ({parts})"
