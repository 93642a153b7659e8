"""A ``kind: suite`` file: the evaluation suite's scenarios, each tuned on one part of its load and
scored on others.

Layout::

    kind: suite
    name: policies
    description: one line
    scenarios:
      - scenario: ../scenarios/suite/diurnal-days.yaml   # a path relative to this file, or an embedded name
        tune: {name: day0, rate_curve_day: 0}
        score:
          - {name: day1, rate_curve_day: 1}
          - {name: day1-steepest-3h, rate_curve_day: 1, window: {steepest_s: 1350}}

A part sets ``rate_curve_day`` and/or ``window`` on every load source of every service (see
:mod:`heteroscale.sim.suite`). The checks, each one line naming the suite file's field: a part must
select something and lie within every load it cuts; a score part must differ from the tune part; a
suite scenario gives no policy options, variants or compare list (every contender gets the same
service settings and its own defaults) and no ``simulation.duration_s`` (each part runs to its end).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field, model_validator

from heteroscale.config.build_loads import load_window_spec
from heteroscale.config.schema import LoadWindowConfig, ServiceName
from heteroscale.config.source import Document, Loc, StrictModel
from heteroscale.errors import ConfigError, TraceError
from heteroscale.sim.parts import check_day, check_window
from heteroscale.sim.scenario import LoadSpec, Scenario
from heteroscale.sim.suite import Suite, SuiteEntry, SuitePart, apply_part

ScenarioLoader = Callable[[str, Document, Loc], Scenario]


class SuitePartConfig(StrictModel):
    name: ServiceName
    rate_curve_day: int | None = Field(default=None, ge=0)
    window: LoadWindowConfig | None = None

    @model_validator(mode="after")
    def _selects_something(self) -> SuitePartConfig:
        if self.rate_curve_day is None and self.window is None:
            raise ValueError("a part needs rate_curve_day and/or window (the whole load is no part)")
        return self


class SuiteEntryConfig(StrictModel):
    scenario: str = Field(min_length=1)
    tune: SuitePartConfig
    score: list[SuitePartConfig] = Field(min_length=1)


class SuiteConfig(StrictModel):
    kind: Literal["suite"]
    name: ServiceName
    description: str = ""
    scenarios: list[SuiteEntryConfig] = Field(min_length=1)


def build_suite(config: SuiteConfig, doc: Document, load_scenario: ScenarioLoader, source: str) -> Suite:
    entries: list[SuiteEntry] = []
    names: set[str] = set()
    for i, entry in enumerate(config.scenarios):
        loc: Loc = ("scenarios", i)
        scenario = load_scenario(entry.scenario, doc, (*loc, "scenario"))
        if scenario.name in names:
            raise doc.error((*loc, "scenario"), f"scenario '{scenario.name}' is already in the suite")
        names.add(scenario.name)
        _check_fair(scenario, doc, (*loc, "scenario"))
        tune = _part(entry.tune, scenario, doc, (*loc, "tune"))
        score: list[SuitePart] = []
        for j, part_config in enumerate(entry.score):
            part_loc: Loc = (*loc, "score", j)
            part = _part(part_config, scenario, doc, part_loc)
            if (part.rate_curve_day, part.window) == (tune.rate_curve_day, tune.window):
                raise doc.error(part_loc, f"score part '{part.name}' is the tune part: score on another part")
            if part.name in {tune.name, *(p.name for p in score)}:
                raise doc.error((*part_loc, "name"), f"part name '{part.name}' is used twice")
            score.append(part)
        entries.append(SuiteEntry(scenario=scenario, tune=tune, score=tuple(score)))
    return Suite(name=config.name, description=config.description, entries=tuple(entries), source=source)


def _check_fair(scenario: Scenario, doc: Document, loc: Loc) -> None:
    """Every contender gets the same service settings and its own defaults, and runs each part to its end."""
    for run in scenario.services:
        if run.policy.options:
            names = ", ".join(name for name, _ in run.policy.options)
            raise doc.error(
                loc,
                f"scenario '{scenario.name}' gives service '{run.spec.name}' policy options ({names}); "
                "a suite scenario gives none (each contender runs with its own defaults)",
            )
    if scenario.variants or scenario.compare_policies:
        raise doc.error(loc, f"scenario '{scenario.name}' has variants or a compare list; a suite scenario has none")
    if scenario.settings.duration_s is not None:
        raise doc.error(
            loc,
            f"scenario '{scenario.name}' sets simulation.duration_s; a suite scenario leaves it unset "
            "(each part runs to the end of its load)",
        )


def _part(config: SuitePartConfig, scenario: Scenario, doc: Document, loc: Loc) -> SuitePart:
    part = SuitePart(
        name=config.name,
        rate_curve_day=config.rate_curve_day,
        window=None if config.window is None else load_window_spec(config.window),
    )
    loads = [source for run in apply_part(scenario, part).services for source in _sources(run.load)]
    if part.rate_curve_day is not None and not any(load.rate_curve_path is not None for load in loads):
        raise doc.error((*loc, "rate_curve_day"), f"scenario '{scenario.name}' has no rate curve to take a day of")
    for field, check in (("rate_curve_day", check_day), ("window", check_window)):
        for load in loads:
            try:
                check(load)
            except ConfigError as exc:
                raise doc.error((*loc, field), str(exc).removeprefix("window: ")) from exc
            except TraceError as exc:
                raise doc.error(loc, f"cannot read the load of scenario '{scenario.name}': {exc}") from exc
    return part


def _sources(load: LoadSpec) -> list[LoadSpec]:
    return [load, *load.mixed_with]
