"""What ``heteroscale bench --retune`` searches: each contender's own stability knobs, and the margin.

One procedure, the same budget for every contender: ``CONFIGS`` configurations per contender and
scenario, drawn by a fixed-seed random search over the contender's knob grid (:data:`KNOBS`, each grid
holds the shipped value) and the margin ∈ :data:`MARGINS`. Configuration 0 is the contender as shipped
(its defaults, margin 0.75), so tuning can only keep or improve on it. A contender whose space holds
fewer configurations than the budget (``static-peak``: the margin alone, 3) tries all of them. The knobs
are the options of each policy's params (``heteroscale.policy.registry``); the scale-in mode and the
signals are the algorithm, not a knob, and stay as shipped.

Targets at another margin: every target the pressure test gives is the knee's value × the margin, or
does not depend on it (:func:`heteroscale.experiments.pressure.targets_from_knee`), so
:func:`targets_at_margin` rescales the margin's share exactly, with no second pressure test.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from heteroscale.experiments.pressure import DEFAULT_MARGIN
from heteroscale.policy.ablations import IndependentTpsParams, PureLatencyParams
from heteroscale.policy.baselines import ApaParams, HpaParams, KthenaParams
from heteroscale.policy.context import Targets
from heteroscale.policy.dynamo import DynamoParams
from heteroscale.policy.heteroscale import HeteroScaleParams
from heteroscale.policy.registry import make_policy

CONFIGS = 12
MARGINS = (0.65, 0.75, 0.85)
SEARCH_SEED = 0
Knob = tuple[str, tuple[Any, ...]]

_STABILITY: tuple[Knob, ...] = (
    ("theta_out", (0.05, 0.1, 0.2)),
    ("theta_in", (0.05, 0.1, 0.2)),
    ("scale_out_cooldown_s", (60.0, 120.0, 180.0, 300.0)),
    ("scale_in_cooldown_s", (120.0, 300.0, 600.0, 900.0)),
    ("scale_in_step_s", (120.0, 300.0, 600.0)),
    ("scale_in_window_s", (0.0, 120.0, 300.0, 600.0)),
    ("max_down_fraction", (0.1, 0.25, 0.5)),
)
# per contender, its knobs and the values tried (each grid holds the shipped default; scale_in_step_s's
# default follows scale_in_cooldown_s, whose shipped 600 s its grid holds)
KNOBS: dict[str, tuple[Knob, ...]] = {
    "heteroscale": _STABILITY,
    "independent-tps": _STABILITY,
    "hpa": (
        ("tolerance", (0.05, 0.1, 0.2)),
        ("scale_down_stabilisation_s", (60.0, 120.0, 300.0, 600.0)),
        ("scale_up_percent", (50.0, 100.0, 200.0)),
        ("scale_up_pods", (1, 2, 4, 8)),
    ),
    "aibrix-apa": (
        ("up_tolerance", (0.05, 0.1, 0.2)),
        ("down_tolerance", (0.05, 0.1, 0.2)),
        ("max_scale_up_rate", (1.5, 2.0, 4.0)),
        ("max_scale_down_rate", (1.5, 2.0, 4.0)),
        ("scale_down_cooldown_s", (60.0, 120.0, 300.0, 600.0)),
        ("stable_window_s", (60.0, 180.0, 300.0)),
    ),
    "kthena": (
        ("tolerance", (0.05, 0.1, 0.2)),
        ("scale_down_stabilisation_s", (60.0, 120.0, 300.0, 600.0)),
        ("scale_up_percent", (50.0, 100.0, 200.0)),
        ("scale_up_instances", (1, 2, 4)),
        ("panic_threshold_percent", (150.0, 200.0, 300.0)),
        ("panic_hold_s", (30.0, 60.0, 120.0)),
    ),
    "dynamo-sla": (
        ("adjustment_interval_s", (60.0, 120.0, 180.0, 300.0)),
        ("load_predictor", ("arima", "constant")),
        ("prediction_window", (10, 50)),
        ("no_correction", (False, True)),
    ),
    "pure-latency": (
        ("step", (1, 2, 4)),
        ("in_factor", (0.3, 0.5, 0.7)),
        ("scale_out_cooldown_s", (60.0, 120.0, 180.0, 300.0)),
        ("scale_in_cooldown_s", (120.0, 300.0, 600.0, 900.0)),
        ("scale_in_step_s", (120.0, 300.0, 600.0)),
    ),
    "static-peak": (),  # sized at the ratio-oracle's peak: the margin is its only knob
}
_PARAMS: dict[str, object] = {
    "heteroscale": HeteroScaleParams().stability,
    "independent-tps": IndependentTpsParams().stability,
    "hpa": HpaParams(),
    "aibrix-apa": ApaParams(),
    "kthena": KthenaParams(),
    "dynamo-sla": DynamoParams(),
    "pure-latency": PureLatencyParams(),
}
# the targets that are the knee's value × the margin (the others do not depend on it)
_SCALED = (
    "prefill_gpu_util",
    "decode_gpu_util",
    "prefill_sm_activity",
    "decode_sm_activity",
    "ttft_s",
    "tbt_s",
    "requests_per_s_per_prefill",
    "requests_per_s_per_decode",
    "prefill_queue_per_instance",
    "decode_batch_util",
)


@dataclass(frozen=True, slots=True)
class Config:
    """One point of a contender's search: its options (empty: as shipped) and the margin of its targets."""

    margin: float
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def as_shipped(self) -> bool:
        return not self.options and self.margin == DEFAULT_MARGIN

    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def as_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "options": self.options_dict()}

    @staticmethod
    def of(margin: float, options: Mapping[str, Any]) -> Config:
        return Config(float(margin), tuple(sorted(options.items())))


SHIPPED = Config(DEFAULT_MARGIN)


def tunable(contender: str) -> bool:
    return contender in KNOBS


def shipped_values(contender: str) -> dict[str, Any]:
    """The shipped value of each of ``contender``'s knobs."""
    params = _PARAMS.get(contender)
    return {name: getattr(params, name) for name, _ in KNOBS[contender]} if params is not None else {}


def draw_configs(contender: str, *, budget: int = CONFIGS, seed: int = SEARCH_SEED) -> tuple[Config, ...]:
    """``budget`` distinct configurations of ``contender``: as shipped first, then a fixed-seed random
    search over its knobs and the margins (fewer where its space is smaller than the budget)."""
    if contender not in KNOBS:
        raise ValueError(f"bench: no search space for contender {contender!r} (known: {', '.join(KNOBS)})")
    knobs = KNOBS[contender]
    rng = random.Random(f"bench-tune:{seed}:{contender}")  # a string seed: the same draw on every machine
    size = len(MARGINS)
    for _, grid in knobs:
        size *= len(grid)
    shipped = (DEFAULT_MARGIN, tuple(sorted(shipped_values(contender).items())))
    seen = {shipped}
    out = [SHIPPED]
    for _ in range(1000 * budget):  # bounded: a space barely larger than the budget takes a few redraws
        if len(out) >= min(budget, size):
            break
        values = tuple(sorted((name, rng.choice(grid)) for name, grid in knobs))
        point = (rng.choice(MARGINS), values)
        if point in seen:
            continue
        seen.add(point)
        config = Config(point[0], values)
        if contender != "static-peak":
            make_policy(contender, config.options_dict())  # an option its params refuse fails here, not mid-run
        out.append(config)
    return tuple(out)


def targets_at_margin(targets: Targets, margin: float) -> Targets:
    """``targets`` as the same pressure test gives them at ``margin`` instead of ``targets.margin``."""
    if not margin > 0 or not targets.margin > 0:
        raise ValueError(f"a margin must be > 0, got {margin} (targets at {targets.margin})")
    k = margin / targets.margin
    scaled: dict[str, Any] = {
        name: None if getattr(targets, name) is None else getattr(targets, name) * k for name in _SCALED
    }
    return dataclasses.replace(
        targets,
        decode_tps_per_instance=tuple((key, v * k) for key, v in targets.decode_tps_per_instance),
        prefill_tps_per_instance=tuple((key, v * k) for key, v in targets.prefill_tps_per_instance),
        margin=margin,
        **scaled,
    )
