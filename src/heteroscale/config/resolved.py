"""The resolved configuration: a :class:`Scenario` written back as plain, YAML-dumpable data.

Everything is explicit: canonical ids, absolute trace paths, every default, the full topology (no
node generators) and the catalog entries actually used. The result is itself a valid ``kind:
scenario`` document, so loading it again gives the same ``Scenario`` (apart from ``source``).
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from heteroscale.config.catalog import PRECISION_BYTES
from heteroscale.config.topology import topology_to_dict
from heteroscale.domain.hardware import InstanceShape
from heteroscale.domain.service import ServiceSpec
from heteroscale.errors import ConfigError
from heteroscale.policy.context import Targets
from heteroscale.scheduling.budget import GpuBudget
from heteroscale.sim.scenario import LoadKind, LoadSpec, Scenario, ServiceRun, Variant
from heteroscale.sim.windows import LoadWindow, WindowKind


def resolved_config_dict(scenario: Scenario) -> dict[str, Any]:
    """Plain data (dicts, lists, str, int, float, bool, None) describing ``scenario`` completely."""
    settings = scenario.settings
    return {
        "kind": "scenario",
        "name": scenario.name,
        "description": scenario.description,
        "catalog": {
            "gpus": [dataclasses.asdict(scenario.skus[k]) for k in sorted(scenario.skus)],
            "models": [dataclasses.asdict(scenario.models[k]) for k in sorted(scenario.models)],
        },
        "topology": topology_to_dict(scenario.topology),
        "simulation": {
            "fidelity": settings.fidelity.value,
            "duration_s": settings.duration_s,
            "seed": settings.seed,
            "tick_s": settings.tick_s,
            "cold_start_s": settings.cold_start_s,
            "drain_grace_s": settings.drain_grace_s,
            "scale_in_mode": settings.scale_in_mode.value,
            "fluid_step_s": settings.fluid_step_s,
            "telemetry_window_s": settings.telemetry_window_s,
            "kv_activation_reserve": settings.kv_activation_reserve,
            "max_tail_s": settings.max_tail_s,
            "perf_engine": settings.perf_engine,
            "ratio_tolerance": settings.ratio_tolerance,
            "soft_scale_in_s": settings.soft_scale_in_s,
            "role_wise_targets": settings.role_wise_targets,
            "engine": {
                f.name: (v.value if isinstance(v := getattr(settings.engine, f.name), StrEnum) else v)
                for f in dataclasses.fields(settings.engine)
            },
        },
        "services": [_service_dict(run, scenario) for run in scenario.services],
        "variants": {name: _variant_dict(v) for name, v in scenario.variants.items()},
        "compare": list(scenario.compare_policies),
    } | ({"budget": _budget_dict(scenario.budget)} if scenario.budget is not None else {})


def _budget_dict(budget: GpuBudget) -> dict[str, Any]:
    return {"total_gpus": budget.total_gpus, "by_sku": dict(budget.by_sku)}


def _variant_dict(variant: Variant) -> dict[str, Any]:
    return {
        "policy": variant.policy,
        "options": dict(variant.options),
        "shapes": {service: {"prefill": _shapes(p), "decode": _shapes(d)} for service, p, d in variant.shapes},
        "description": variant.description,
        "ignore_budget": variant.ignore_budget,
    } | ({"gpu_mix": variant.gpu_mix.value} if variant.gpu_mix is not None else {})


def write_resolved_config(scenario: Scenario, path: Path) -> Path:
    """Write :func:`resolved_config_dict` as YAML to ``path`` (parent folders created)."""
    text = (
        "# Resolved HeteroScale configuration: every default filled in, every name canonical.\n"
        f"# Source: {scenario.source}\n"
    )
    text += yaml.safe_dump(resolved_config_dict(scenario), sort_keys=False, allow_unicode=True, width=110)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the resolved config: {exc}") from exc
    return path


def _precision(spec: ServiceSpec, scenario: Scenario) -> str:
    value = spec.extra.get("precision")
    if isinstance(value, str) and value in PRECISION_BYTES:
        return value
    # A Scenario built in code may not say; read it off the model's weight width.
    bytes_per_param = scenario.models[spec.model].bytes_per_param
    for name, width in PRECISION_BYTES.items():
        if width == bytes_per_param:
            return name
    raise ConfigError(f"service '{spec.name}': no precision has {bytes_per_param} bytes per parameter")


def _shapes(shapes: tuple[InstanceShape, ...]) -> list[dict[str, Any]]:
    return [{"sku": s.sku, "tp": s.tp} for s in shapes]


def _load_dict(load: LoadSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": load.kind.value,
        "trace": load.trace_path,
        "format": load.trace_format,
    }
    if load.kind is LoadKind.POISSON:
        out["rate_curve"] = load.rate_curve_path
        out["rate_curve_day"] = load.rate_curve_day
        out["rate_curve_smoothing_s"] = load.rate_curve_smoothing_s
    out |= {
        "rate_scale": load.rate_scale,
        "time_compression": load.time_compression,
        "copies": load.copies,
        "copy_shift_s": load.copy_shift_s,
        "start_s": load.start_s,
        "skip_bad_rows": load.skip_bad_rows,
        "input_scale": load.lengths.input_scale,
        "input_cap_tokens": load.lengths.input_cap_tokens,
        "output_scale": load.lengths.output_scale,
        "output_cap_tokens": load.lengths.output_cap_tokens,
        "rate_steps": [{"at_s": s.at_s, "factor": s.factor, "ramp_s": s.ramp_s} for s in load.rate_steps],
    }
    if load.window is not None:
        out["window"] = window_dict(load.window)
    if load.mixed_with:
        out["mix"] = [_load_dict(part) for part in load.mixed_with]
    return out


def window_dict(window: LoadWindow) -> dict[str, Any]:
    """A load window as the file writes it."""
    if window.kind is WindowKind.FIRST_HALF:
        return {"half": "first"}
    if window.kind is WindowKind.SECOND_HALF:
        return {"half": "second"}
    if window.kind is WindowKind.STEEPEST:
        return {"steepest_s": window.length_s}
    return {"start_s": window.start_s, "end_s": window.end_s}


def _service_dict(run: ServiceRun, scenario: Scenario) -> dict[str, Any]:
    spec = run.spec
    return {
        "name": spec.name,
        "model": spec.model,
        "precision": _precision(spec, scenario),
        "roles": {
            "prefill": {
                "shapes": _shapes(spec.prefill_shapes),
                "min": spec.min_prefill,
                "max": spec.max_prefill,
            },
            "decode": {"shapes": _shapes(spec.decode_shapes), "min": spec.min_decode, "max": spec.max_decode},
        },
        "pd_ratio": spec.pd_ratio,
        "slo": {"ttft_s": spec.slo.ttft_s, "tbt_s": spec.slo.tbt_s},
        "priority": spec.priority,
        "affinity": spec.affinity.value,
        "prefix_cache_hit_rate": spec.prefix_cache_hit_rate,
        "max_prefill_tokens": spec.max_prefill_tokens,
        "max_decode_batch": spec.max_decode_batch,
        "gpu_mix": spec.gpu_mix.value,
        "gpu_mix_time_limit_s": spec.gpu_mix_time_limit_s,
        "load": _load_dict(run.load),
        "policy": {
            "name": run.policy.name,
            "prefill": run.policy.prefill,
            "decode": run.policy.decode,
            "options": dict(run.policy.options),
        },
    } | ({"targets": _targets_dict(run.targets)} if run.targets is not None else {})


def _targets_dict(t: Targets) -> dict[str, Any]:
    out = dataclasses.asdict(t)
    out["decode_tps_per_instance"] = dict(t.decode_tps_per_instance)
    out["prefill_tps_per_instance"] = dict(t.prefill_tps_per_instance)
    return out
