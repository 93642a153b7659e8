"""Human-readable summary tables for the terminal."""

from __future__ import annotations

from typing import Any

from heteroscale.sim.scenario import EngineSettings


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


def _failed(summary: dict[str, Any]) -> str:
    """Failed requests, with how many failed by scale-in (when the summary says)."""
    text = f"{_fmt(summary['requests_failed'])} failed"
    by_scale_in = summary.get("requests_failed_by_scale_in")
    if by_scale_in is not None:
        text += f" ({_fmt(by_scale_in)} by scale-in)"
    return text


def _bound(summary: dict[str, Any]) -> str:
    """The saturation bound of the work the run completed, and the run's GPU-hours over it."""
    bound = summary.get("lower_bound")
    if not bound:
        return "—"
    hours = float(bound["gpu_hours"])
    ratio = f" (the run: {float(summary['gpu_hours']) / hours:.2f}×)" if hours > 0 else ""
    return f"{hours:,.1f} GPU-h, cost {float(bound['cost']):,.1f}{ratio}"


def _gated(summary: dict[str, Any]) -> str:
    """Ready instances held out of service discovery by ratio gating, and for how long."""
    events = summary.get("instances_gated")
    if events is None:
        return "—"
    if not events:
        return "none"
    return (
        f"{_fmt(events)} time(s), {float(summary['instances_gated_s']) / 3600.0:,.2f} instance-h, "
        f"{_fmt(summary['gpu_hours_gated'], digits=1)} GPU-h billed while serving nothing (ready P:D off ratio)"
    )


def _fluid_trust(summary: dict[str, Any]) -> str:
    """At fluid fidelity: the run's peak load over the SLO knee, and which latency figures are estimates."""
    labels = summary.get("fluid_estimates")
    if not labels:
        return "—"
    fraction = summary.get("fluid_load_fraction")
    load = "peak load unknown (targets not from a pressure test)"
    if fraction is not None:
        load = f"peak load {100 * float(fraction):.0f} % of the SLO knee ({summary.get('fluid_regime')})"
    trusted = [k for k, v in sorted(labels.items()) if v == "trusted"]
    return f"{load}; trusted: {', '.join(trusted) or 'throughput and utilisation only'}"


def _p3(summary: dict[str, Any], name: str) -> str:
    return " / ".join(_ms(summary.get(f"{name}_{q}_s")) for q in ("p50", "p90", "p99"))


def _lat(summary: dict[str, Any], key: str, only: str | None = None) -> str:
    """A latency's percentiles from the summary's ``latency`` (— where the engine has none)."""
    pcts = (summary.get("latency") or {}).get(key) or {}
    qs = (only,) if only else ("p50", "p90", "p99")
    return " / ".join(_ms(pcts.get(q)) for q in qs)


def _engine(summary: dict[str, Any]) -> str:
    """The request engine's settings that differ from their defaults ("defaults" when none do)."""
    settings = summary.get("engine_settings") or {}
    defaults = EngineSettings()
    changed = [
        f"{k} {v}" for k, v in settings.items() if v != getattr(getattr(defaults, k), "value", getattr(defaults, k))
    ]
    return ", ".join(changed) or "defaults"


def summary_table(summary: dict[str, Any]) -> str:
    est = " (estimated)" if summary.get("latency_estimated") else ""
    rows: list[tuple[str, str]] = [
        ("scenario", f"{summary['scenario']}  [{summary['fidelity']} fidelity, seed {summary['seed']}]"),
        ("simulated time", f"{float(summary['simulated_s']) / 3600.0:.2f} h"),
        (
            "requests",
            f"{_fmt(summary['requests_total'])} total, {_fmt(summary['requests_completed'])} completed, "
            f"{_failed(summary)}, {_fmt(summary['requests_unfinished'])} unfinished",
        ),
        ("SLO attainment", _pct(summary["slo_attainment"])),
        ("TTFT p50 / p90 / p99" + est, _p3(summary, "ttft")),
        ("TBT p50 / p90 / p99" + est, _p3(summary, "tbt")),
        ("end-to-end p50 / p90 / p99", _lat(summary, "e2e_s")),
        ("queueing / transfer p99", f"{_lat(summary, 'queueing_s', 'p99')} / {_lat(summary, 'transfer_s', 'p99')}"),
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
        ("lower bound of the work done", _bound(summary)),
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
        ("held out by discovery gating", _gated(summary)),
        ("fluid latency figures", _fluid_trust(summary)),
        ("wall time", f"{_fmt(summary['wall_s'], 's', 2)}"),
        ("perf engine", summary.get("perf_engine_assumptions") or "—"),
        ("engine settings", _engine(summary)),
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
                f"{_failed(s)}, SLO {_pct(s['slo_attainment'])}, "
                f"TTFT p99 {_ms(s['ttft_p99_s'])}, TBT p99 {_ms(s['tbt_p99_s'])}"
            )
    return "\n".join(lines)


def _v(value: Any) -> Any:
    """A figure, or the mean of a {mean, ci95, n} aggregate."""
    if isinstance(value, dict) and "mean" in value:
        return value["mean"]
    return value


def _with_ci(value: Any, digits: int) -> str:
    """A figure with its 95 % interval when it has one (several distinct runs)."""
    ci = value.get("ci95") if isinstance(value, dict) else None
    text = _fmt(_v(value), digits=digits)
    return f"{text}±{ci:,.{digits}f}" if isinstance(ci, float) else text


def _ramps(summary: dict[str, Any]) -> tuple[float | None, int | None]:
    """SLO attainment and misses during ramp-ups of the offered load, over all services."""
    per_service = summary.get("ramps") or {}
    requests = sum(float(_v(r["ramp_requests"])) for r in per_service.values())
    missed = sum(float(_v(r["ramp_missed"])) for r in per_service.values())
    if not per_service:
        return None, None
    return (1.0 - missed / requests if requests > 0 else None), round(missed)


def _seeds_line(result: dict[str, Any]) -> str:
    line = f"  scenario {result.get('scenario')}  (seeds: {result.get('seeds', 1)}"
    if result.get("seeds_identical"):
        line += f"; identical — {result.get('seeds_note', 'one load under every seed')}"
    return line + ")"


def compare_table(result: dict[str, Any]) -> str:
    """One line per policy; ``× LB``: GPU-hours (cost, in a GPU-mix scenario) ÷ the true lower bound;
    ``r-oracle``: GPU-hours ÷ the ratio-oracle's (a reference, not a bound); ``failed`` counts every
    failed request, ``killed`` those failed by scale-in; ``ramp SLO`` / ``ramp miss``: SLO attainment
    and misses in the windows where the offered load ramps up."""
    by_cost = bool(result.get("gpu_mix"))
    lb_key = "cost_vs_lower_bound" if by_cost else "gpu_hours_vs_lower_bound"
    lb_head = "cost×LB" if by_cost else "× LB"
    width = max([9, *(len(_with_ci(s["gpu_hours"], 1)) for s in result["policies"].values())])
    head = (
        f"  {'policy':18s} {'GPU-h':>{width}s} {lb_head:>7s} {'r-oracle':>8s} {'cost':>9s} {'SLO':>7s} "
        f"{'TTFT p99':>9s} {'TBT p99':>8s} {'util':>6s} {'util P':>6s} {'SM':>6s} {'act/h':>6s} {'P/D dev':>7s} "
        f"{'failed':>7s} {'killed':>7s} {'ramp SLO':>8s} {'ramp miss':>9s}"
    )
    lines = [_seeds_line(result)]
    engine = next((s.get("perf_engine_assumptions") for s in result["policies"].values()), None)
    if engine:
        lines.append(f"  perf engine {engine}")
    lines.append(head)
    for name, s in result["policies"].items():
        ramp_slo, ramp_missed = _ramps(s)
        lines.append(
            f"  {name:18s} {_with_ci(s['gpu_hours'], 1):>{width}s} {_fmt(_v(s.get(lb_key)), digits=3):>7s} "
            f"{_fmt(_v(s.get('gpu_hours_vs_oracle')), digits=3):>8s} "
            f"{_fmt(_v(s['cost']), digits=1):>9s} {_pct(_v(s['slo_attainment'])):>7s} {_ms(_v(s['ttft_p99_s'])):>9s} "
            f"{_ms(_v(s['tbt_p99_s'])):>8s} {_pct(_v(s['avg_gpu_util'])):>6s} "
            f"{_pct(_v(s['avg_gpu_util_by_role']['prefill'])):>6s} {_pct(_v(s['avg_sm_activity'])):>6s} "
            f"{_fmt(_v(s['scale_actions_per_hour']), digits=1):>6s} {_fmt(_v(s['pd_ratio_deviation']), digits=3):>7s} "
            f"{_fmt(_v(s['requests_failed'])):>7s} {_fmt(_v(s.get('requests_failed_by_scale_in'))):>7s} "
            f"{_pct(ramp_slo):>8s} {_fmt(ramp_missed):>9s}"
        )
    for name, b in result.get("lower_bound", {}).items():
        roles = b["gpu_hours_by_role"]
        lines.append(
            f"  lower bound[{name}]: {b['gpu_hours']:,.1f} GPU-h (prefill {roles['prefill']:,.1f}, decode "
            f"{roles['decode']:,.1f}), cost {b['cost']:,.1f}; peak {b['peak_gpus']:,.1f} GPUs busy at saturation "
            f"({b['window_s']:g} s windows)"
        )
    for name, o in result.get("oracle", {}).items():
        lines.append(f"  ratio-oracle[{name}]: {o['gpu_hours']:,.1f} GPU-h, peak {o['peak'][0]}P/{o['peak'][1]}D")
    for name, s in result["policies"].items():
        services = s.get("services") or {}
        budget = _v(s.get("gpu_budget"))
        if len(services) > 1 or budget is not None:
            per = ", ".join(f"{svc} SLO {_pct(_v(x['slo_attainment']))}" for svc, x in services.items())
            held = f"peak GPUs held {_fmt(_v(s.get('peak_gpus_held')))}"
            of_budget = f" of a {_fmt(budget)}-GPU budget" if budget is not None else ""
            lines.append(f"  {name}: {per}; {held}{of_budget}")
    return "\n".join(lines)


def study_table(result: dict[str, Any]) -> str:
    base = result["no_autoscaling"]["summary"]
    lines = [
        f"  no autoscaling: {base['gpu_hours']:,.1f} GPU-h, "
        f"util prefill {_pct(base['avg_gpu_util_by_role']['prefill'])} "
        f"decode {_pct(base['avg_gpu_util_by_role']['decode'])}",
        f"  {'signal':22s} {'GPU-h':>9s} {'vs static':>9s} {'min/peak':>9s} {'reversals':>9s} {'SLO':>7s}",
    ]
    for name, s in result["signals"].items():
        lines.append(
            f"  {name:22s} {s['summary']['gpu_hours']:>9,.1f} {_fmt(s['gpu_hours_vs_no_autoscaling'], digits=3):>9s} "
            f"{_fmt(s['min_over_peak'], digits=3):>9s} {s['direction_reversals']:>9d} "
            f"{_pct(s['summary']['slo_attainment']):>7s}"
        )
    return "\n".join(lines)


def sweep_table(result: dict[str, Any]) -> str:
    lines = [
        f"  scenario {result['scenario']}, {result['service']} on {result['instances']} instances "
        f"(SLO TTFT {result['slo']['ttft_s']} s, "
        f"TBT {result['slo']['tbt_s']} s)",
        f"  {'split':8s} {'req/s':>8s} {'prefill TPS':>12s} {'decode TPS':>11s} {'util P':>7s} {'util D':>7s} "
        f"{'SM P':>6s} {'SM D':>6s}",
    ]
    for s in result["splits"]:
        mark = "  <- best" if s["split"] == result["best"] else ""
        if s.get("knee_is_lower_estimate"):  # the highest load probed still met the SLO
            mark += "  (knee ≥ this: a lower estimate)"
        lines.append(
            f"  {s['split']:8s} {s['max_rate_rps']:>8.2f} {s['max_prefill_tps']:>12,.0f} {s['max_decode_tps']:>11,.0f} "
            f"{_pct(s['prefill_gpu_util']):>7s} {_pct(s['decode_gpu_util']):>7s} {_pct(s['prefill_sm_activity']):>6s} "
            f"{_pct(s['decode_sm_activity']):>6s}{mark}"
        )
    lines.append(f"  unimodal: {result['unimodal']}")
    return "\n".join(lines)


def tune_table(result: dict[str, Any]) -> str:
    lines = [
        f"  scenario {result['scenario']}, {result['service']}: best ratio r_opt = {result['r_opt']} "
        f"({result['ratio_sweep']['best']} of "
        f"{result['ratio_sweep']['instances']}), decode-TPS target per instance "
        + ", ".join(f"{k} {v:,.0f}" for k, v in result["m_hat_decode_tps_per_instance"].items()),
        f"  {'policy':22s} {'GPU-h':>9s} {'× LB':>7s} {'r-oracle':>8s} {'SLO':>7s} {'act/h':>6s}",
    ]
    for name, s in result["scores"].items():
        mark = "  <- best" if name == result["best"] else ""
        lines.append(
            f"  {name:22s} {_fmt(s['gpu_hours'], digits=1):>9s} "
            f"{_fmt(s.get('gpu_hours_vs_lower_bound'), digits=3):>7s} {_fmt(s['gpu_hours_vs_oracle'], digits=3):>8s} "
            f"{_pct(s['slo_attainment']):>7s} {_fmt(s['scale_actions_per_hour'], digits=1):>6s}{mark}"
        )
    lines.append(f"  best: {result['best']} ({result['why']})")
    return "\n".join(lines)
