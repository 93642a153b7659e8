"""The evaluation suite as values: scenarios, each with a part of its load to tune on and parts to score on.

A part selects the same piece of every load source of every service: a day of a rate curve
(``rate_curve_day``) and/or a window (:mod:`heteroscale.sim.windows`). It changes the load only, so
every contender tuned or scored on a part serves the very same requests. ``heteroscale.config``
builds a :class:`Suite` from a ``kind: suite`` file and checks each part against its loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from heteroscale.sim.scenario import LoadSpec, Scenario
from heteroscale.sim.windows import LoadWindow


@dataclass(frozen=True, slots=True)
class SuitePart:
    """A named part of a scenario's load; None keeps the load's own setting."""

    name: str
    rate_curve_day: int | None = None
    window: LoadWindow | None = None

    def apply_to_load(self, load: LoadSpec) -> LoadSpec:
        """``load`` and each source mixed into it, cut to this part (a day only where there is a curve)."""
        day = load.rate_curve_day
        if self.rate_curve_day is not None and load.rate_curve_path is not None:
            day = self.rate_curve_day
        return dataclasses.replace(
            load,
            rate_curve_day=day,
            window=self.window if self.window is not None else load.window,
            mixed_with=tuple(self.apply_to_load(source) for source in load.mixed_with),
        )


def apply_part(scenario: Scenario, part: SuitePart) -> Scenario:
    """``scenario`` whose every service load is cut to ``part``; named ``<scenario>@<part>``."""
    services = tuple(dataclasses.replace(run, load=part.apply_to_load(run.load)) for run in scenario.services)
    return dataclasses.replace(scenario, name=f"{scenario.name}@{part.name}", services=services)


@dataclass(frozen=True, slots=True)
class SuiteEntry:
    """One scenario of the suite: the part contenders are tuned on and the parts they are scored on."""

    scenario: Scenario
    tune: SuitePart
    score: tuple[SuitePart, ...]

    def tune_scenario(self) -> Scenario:
        return apply_part(self.scenario, self.tune)

    def score_scenarios(self) -> tuple[Scenario, ...]:
        return tuple(apply_part(self.scenario, part) for part in self.score)


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    description: str
    entries: tuple[SuiteEntry, ...]
    source: str = "<embedded>"
