"""The load part of a scenario: a service's ``load`` block → a :class:`~heteroscale.sim.scenario.LoadSpec`.

Bundled trace and rate-curve names and paths relative to the YAML file resolve to absolute paths; a
day or window outside the load is the file's error, found at load time. Every failure is one
``ConfigError`` line naming file and field (:mod:`heteroscale.config.build` builds the rest).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from heteroscale.config.bundled import RATE_CURVES, TRACES, data_path
from heteroscale.config.schema import LoadConfig, LoadWindowConfig, ServiceConfig
from heteroscale.config.source import Document, Loc
from heteroscale.errors import ConfigError, TraceError
from heteroscale.sim.parts import check_day, check_window
from heteroscale.sim.scenario import LoadKind, LoadSpec
from heteroscale.sim.transforms import LengthScale, RateStep
from heteroscale.sim.windows import LoadWindow, WindowKind


def relative_path(ref: str, doc: Document) -> Path:
    """``ref`` as given when absolute, else relative to the document's folder."""
    path = Path(ref).expanduser()
    return path if path.is_absolute() else doc.base_dir / path


def load_spec(service: ServiceConfig, doc: Document, loc: Loc) -> LoadSpec:
    load_loc: Loc = (*loc, "load")
    main = _one_load(service.load, doc, load_loc)
    parts = tuple(_one_load(part, doc, (*load_loc, "mix", j)) for j, part in enumerate(service.load.mix))
    return dataclasses.replace(main, mixed_with=parts) if parts else main


def _one_load(load: LoadConfig, doc: Document, load_loc: Loc) -> LoadSpec:
    trace = _data_file(load.trace, TRACES, RATE_CURVES, "request trace", "rate curve", doc, (*load_loc, "trace"))
    curve = (
        None
        if load.rate_curve is None
        else _data_file(
            load.rate_curve,
            RATE_CURVES,
            TRACES,
            "rate curve",
            "request trace",
            doc,
            (*load_loc, "rate_curve"),
        )
    )
    spec = LoadSpec(
        kind=LoadKind(load.kind),
        trace_path=trace,
        trace_format=load.format,
        rate_curve_path=curve,
        rate_curve_day=load.rate_curve_day,
        rate_curve_smoothing_s=load.rate_curve_smoothing_s,
        rate_scale=load.rate_scale,
        time_compression=load.time_compression,
        copies=load.copies,
        copy_shift_s=load.copy_shift_s,
        start_s=load.start_s,
        skip_bad_rows=load.skip_bad_rows,
        lengths=LengthScale(
            input_scale=load.input_scale,
            input_cap_tokens=load.input_cap_tokens,
            output_scale=load.output_scale,
            output_cap_tokens=load.output_cap_tokens,
        ),
        rate_steps=tuple(RateStep(at_s=s.at_s, factor=s.factor, ramp_s=s.ramp_s) for s in load.rate_steps),
        window=None if load.window is None else load_window_spec(load.window),
    )
    check_part(spec, doc, load_loc)
    return spec


def load_window_spec(window: LoadWindowConfig) -> LoadWindow:
    if window.half is not None:
        return LoadWindow(WindowKind.FIRST_HALF if window.half == "first" else WindowKind.SECOND_HALF)
    if window.steepest_s is not None:
        return LoadWindow(WindowKind.STEEPEST, length_s=window.steepest_s)
    if window.start_s is None or window.end_s is None:  # the schema requires both; narrowed for mypy
        raise ConfigError("a window by time needs both start_s and end_s")
    return LoadWindow(WindowKind.RANGE, start_s=window.start_s, end_s=window.end_s)


def check_part(load: LoadSpec, doc: Document, load_loc: Loc) -> None:
    """A day or a window outside the load is the file's error, found now rather than mid-run."""
    for field, check in (("rate_curve_day", check_day), ("window", check_window)):
        try:
            check(load)
        except ConfigError as exc:
            raise doc.error((*load_loc, field), str(exc).removeprefix("window: ")) from exc
        except TraceError:
            return  # a malformed data file is the run's to report (by line, or skipped with --skip-bad-rows)


def _data_file(
    ref: str,
    bundled: dict[str, str],
    other: dict[str, str],
    what: str,
    other_what: str,
    doc: Document,
    loc: Loc,
) -> str:
    """Absolute path of a bundled name or of a path relative to the YAML file."""
    if ref in bundled:
        path = data_path("traces", bundled[ref])
        if not path.is_file():
            raise doc.error(loc, f"bundled {what} {ref!r} is missing from the package (expected {path})")
        return str(path)
    if ref in other:
        raise doc.error(loc, f"{ref!r} is a bundled {other_what}, not a {what}")
    path = relative_path(ref, doc)
    if not path.is_file():
        raise doc.error(
            loc,
            f"{what} {ref!r} is neither a bundled name ({', '.join(bundled)}) nor an existing file ({path})",
        )
    return str(path.resolve())
