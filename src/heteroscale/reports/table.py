"""Human-readable summary tables for the terminal."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100.0 * float(value):.1f} %"


def _ms(value: Any) -> str:
    return "—" if value is None else f"{1000.0 * float(value):,.0f} ms"


def summary_table(summary: dict[str, Any]) -> str:
    est = " (estimated)" if summary.get("latency_estimated") else ""
    rows: list[tuple[str, str]] = [
        ("scenario", f"{summary['scenario']}  [{summary['fidelity']} fidelity, seed {summary['seed']}]"),
        ("simulated time", f"{float(summary['simulated_s']) / 3600.0:.2f} h"),
        (
            "requests",
            f"{_fmt(summary['requests_total'])} total, {_fmt(summary['requests_completed'])} completed, "
            f"{_fmt(summary['requests_failed'])} failed, {_fmt(summary['requests_unfinished'])} unfinished",
        ),
        ("SLO attainment", _pct(summary["slo_attainment"])),
        ("TTFT p50 / p99" + est, f"{_ms(summary['ttft_p50_s'])} / {_ms(summary['ttft_p99_s'])}"),
        ("TBT p50 / p99" + est, f"{_ms(summary['tbt_p50_s'])} / {_ms(summary['tbt_p99_s'])}"),
        (
            "GPU-hours",
            f"{_fmt(summary['gpu_hours'], digits=1)}  "
            f"(prefill {_fmt(summary['gpu_hours_by_role']['prefill'], digits=1)}, "
            f"decode {_fmt(summary['gpu_hours_by_role']['decode'], digits=1)})",
        ),
        (
            "GPU-hours by SKU",
            ", ".join(f"{k} {v:,.1f}" for k, v in summary["gpu_hours_by_sku"].items()) or "—",
        ),
        ("cost (A100 GPU-hour units)", _fmt(summary["cost"], digits=1)),
        (
            "GPU utilisation",
            f"{_pct(summary['avg_gpu_util'])}  (prefill {_pct(summary['avg_gpu_util_by_role']['prefill'])}, "
            f"decode {_pct(summary['avg_gpu_util_by_role']['decode'])})",
        ),
        (
            "SM activity",
            f"{_pct(summary['avg_sm_activity'])}  (prefill {_pct(summary['avg_sm_activity_by_role']['prefill'])}, "
            f"decode {_pct(summary['avg_sm_activity_by_role']['decode'])})",
        ),
        ("scale actions", _fmt(summary["scale_actions"])),
        ("wall time", f"{_fmt(summary['wall_s'], 's', 2)}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k.ljust(width)}  {v}" for k, v in rows]
    services = summary.get("services", {})
    if len(services) > 1:
        lines.append("")
        lines.append("  per service:")
        for name, s in services.items():
            lines.append(
                f"    {name}: {s['requests_completed']:,}/{s['requests_total']:,} done, "
                f"SLO {_pct(s['slo_attainment'])}, "
                f"TTFT p99 {_ms(s['ttft_p99_s'])}, TBT p99 {_ms(s['tbt_p99_s'])}"
            )
    return "\n".join(lines)
