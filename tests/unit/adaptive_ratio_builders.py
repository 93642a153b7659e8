"""Builders shared by the adaptive_ratio tests."""

from __future__ import annotations

from typing import Any

from heteroscale.policy.context import PolicyMemory, PolicyResult
from heteroscale.policy.heteroscale import HeteroScaleParams, HeteroScalePolicy
from heteroscale.policy.ratio import AdaptiveRatio
from tests.unit.policy_builders import NOW, observation

DECODE_TPS = 20_000.0  # D_need = 20


def prefill_for(ratio: float, decode_tps: float = DECODE_TPS) -> float:
    """The prefill TPS whose demand is ``ratio`` × the decode demand of ``decode_tps``."""
    return 10.0 * ratio * decode_tps


def adaptive(**overrides: Any) -> AdaptiveRatio:
    """Default bounds [0.25, 8], hysteresis 10 %, 10 %/min; no smoothing unless asked for."""
    base: dict[str, Any] = {"smoothing_s": 0.0}
    base.update(overrides)
    return AdaptiveRatio(**base)


def remembered(ratio: float, *, dt: float = 30.0, p_need: float | None = None, d_need: float = 20.0) -> PolicyMemory:
    """Memory of a previous estimate ``dt`` seconds before NOW that settled on ``ratio``."""
    values = {
        "ratio.current": ratio,
        "ratio.at_s": NOW - dt,
        "ratio.p_need": ratio * d_need if p_need is None else p_need,
        "ratio.d_need": d_need,
    }
    return PolicyMemory(values=tuple(sorted(values.items())))


def policy(**overrides: Any) -> HeteroScalePolicy:
    return HeteroScalePolicy(HeteroScaleParams(adaptive_ratio=adaptive(**overrides)))


def step_names(result: PolicyResult) -> tuple[str, ...]:
    return tuple(s.name for s in result.decision.steps)


# the observations on which the policy holds
HOLDS: dict[str, dict[str, Any]] = {
    "stale": {"obs": observation(stale=True)},
    "missing": {"obs": None, "error": "prometheus timed out"},
    "decode TPS missing": {"obs": observation(decode_tps=None)},
    "prefill TPS missing": {"obs": observation(prefill_tps=None)},
}
