"""The calibration scorecard as text (one block per source) and as one JSON-ready object."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from heteroscale.perf.scorecard import TARGET_MEDIAN, TARGET_P90, Scorecard, SourceScore, Stats


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100.0 * value:.1f} %"


def _signed(value: float) -> str:
    return "—" if math.isnan(value) else f"{100.0 * value:+.1f} %"


def _stats_line(label: str, stats: Stats) -> str:
    return (
        f"    {label:34s} {stats.n:>5d} {_pct(stats.median):>8s} {_pct(stats.p90):>8s} {_pct(stats.max):>8s} "
        f"{_signed(stats.median_signed):>8s}"
    )


def verdict(score: SourceScore) -> str:
    """``met``, or ``MISSED`` with by how much, for a source in the target; ``outside the target``."""
    if score.target_met is None:
        return "outside the target"
    if score.target_met:
        return "met"
    misses = []
    if score.overall.median > TARGET_MEDIAN:
        misses.append(f"median {_pct(score.overall.median)} > {_pct(TARGET_MEDIAN)}")
    if score.overall.p90 > TARGET_P90:
        misses.append(f"p90 {_pct(score.overall.p90)} > {_pct(TARGET_P90)}")
    return "MISSED (" + ", ".join(misses) + ")"


def _block(score: SourceScore, *, show_engine: bool = True) -> list[str]:
    lines = [f"  {score.source} [{score.kind}] — {score.description}"]
    if show_engine:
        lines.append(f"    engine profile {score.engine_summary}")
    lines.append(f"    split: {score.split}")
    if score.folds:
        held = ", ".join(f"{name} {_pct(stats.median)}" for name, stats in score.folds)
        lines.append(f"    held-out groups (median error): {held}")
    if score.excluded:
        dropped = "; ".join(f"{n} {reason}" for reason, n in score.excluded)
        lines.append(f"    scored {score.overall.n} rows; left out: {dropped}")
    lines.append(f"    {'regime':34s} {'n':>5s} {'median':>8s} {'p90':>8s} {'max':>8s} {'signed':>8s}")
    lines.extend(_stats_line(name, stats) for name, stats in score.by_regime)
    lines.append(_stats_line("all rows", score.overall) + f"   target: {verdict(score)}")
    if score.strict is not None:
        lines.append(
            f"    strict split (leave one model out, information): median {_pct(score.strict.median)}, "
            f"p90 {_pct(score.strict.p90)}"
        )
    for r in score.efficiencies:
        lines.append(
            f"    {r.sku_id} efficiency (fit on all rows [range over folds]): "
            f"compute {r.fitted.compute:.2f} [{r.low.compute:.2f}–{r.high.compute:.2f}], "
            f"attention {r.fitted.attention:.2f} [{r.low.attention:.2f}–{r.high.attention:.2f}], "
            f"HBM {r.fitted.hbm:.2f} [{r.low.hbm:.2f}–{r.high.hbm:.2f}]"
        )
    return lines


def scorecard_text(card: Scorecard) -> str:
    lines = [
        "calibration scorecard: relative error of the performance model on rows its fit never saw "
        f"(target per measured source, for its engine profile: median ≤ {_pct(TARGET_MEDIAN)}, "
        f"p90 ≤ {_pct(TARGET_P90)})",
    ]
    if card.held_out:
        lines.append("")
        lines.append("measured sources (held out):")
        for score in card.held_out:
            lines.extend(_block(score))
    if card.estimates:
        lines.append("")
        lines.append("estimates (not measurements; scored outside the target, no fit):")
        for score in card.estimates:
            lines.extend(_block(score))
    if card.current_on_measured:
        lines.append("")
        lines.append("the simulator's default profile on the measured rows (information; no fit):")
        lines.append(f"  engine profile {card.current_on_measured[0].engine_summary}")
        for score in card.current_on_measured:
            lines.extend(_block(score, show_engine=False))
    lines.append("")
    summary = ", ".join(f"{s.source} {verdict(s)}" for s in card.held_out) or "no measured source"
    lines.append(f"target: {summary}")
    return "\n".join(lines)


def _stats_json(stats: Stats | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dataclasses.asdict(stats).items()}


def _score_json(score: SourceScore) -> dict[str, Any]:
    return {
        "source": score.source,
        "description": score.description,
        "kind": score.kind,
        "engine": score.engine,
        "engine_assumptions": score.engine_summary,
        "split": score.split,
        "folds": {name: _stats_json(stats) for name, stats in score.folds},
        "in_target": score.in_target,
        "target_met": score.target_met,
        "overall": _stats_json(score.overall),
        "by_regime": {name: _stats_json(stats) for name, stats in score.by_regime},
        "excluded": dict(score.excluded),
        "strict_leave_one_model_out": _stats_json(score.strict),
        "efficiencies": [
            {
                "sku": r.sku_id,
                "fitted": {"compute": r.fitted.compute, "attention": r.fitted.attention, "hbm": r.fitted.hbm},
                "low": {"compute": r.low.compute, "attention": r.low.attention, "hbm": r.low.hbm},
                "high": {"compute": r.high.compute, "attention": r.high.attention, "hbm": r.high.hbm},
            }
            for r in score.efficiencies
        ],
        "calibration": dataclasses.asdict(score.calibration) if score.calibration is not None else None,
    }


def scorecard_json(card: Scorecard) -> dict[str, Any]:
    """The scorecard as one plain object (``--json``)."""
    return {
        "target": {"median": TARGET_MEDIAN, "p90": TARGET_P90},
        "held_out": [_score_json(s) for s in card.held_out],
        "estimates": [_score_json(s) for s in card.estimates],
        "current_on_measured": [_score_json(s) for s in card.current_on_measured],
        "targets_met": all(s.target_met for s in card.held_out if s.target_met is not None),
    }
