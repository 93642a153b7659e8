"""Every policy by name: ``make_policy(name, options)``, built with the wrapper settings its options give.

Each policy returns only its raw recommendation; the registry hands it the :class:`Shaping` (stages and
their settings, :mod:`.wrapper`) that its params give — HeteroScale's stability defaults, each peer's
upstream ones.

Options are plain values (as read from a YAML file): the fields of the policy's params dataclass by
name; for policies with a ``stability`` group, its fields may also be given flat (``theta_out``,
``scale_in_cooldown_s`` …); ``scale_in`` accepts ``"drain"`` / ``"kill"`` or a mapping
``{mode, grace_s}``. Unknown names and options raise ``ValueError`` naming what is known.

``periodic`` takes ``entries`` (each ``{weekdays, start, end, prefill, decode, label?}``, weekdays as
0–6 or ``mon``…``sun`` or ``"mon-fri"``, times as ``"HH:MM"`` or seconds), ``default`` (``{prefill,
decode}`` or ``[p, d]``; else top-level ``prefill``/``decode``) and ``start_weekday`` — or a ready
``schedule``. ``static`` / ``fixed`` take ``prefill`` and ``decode``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from heteroscale.domain.state import ScaleInMode
from heteroscale.policy.ablations import (
    IndependentTpsParams,
    IndependentTpsPolicy,
    PureLatencyParams,
    PureLatencyPolicy,
    independent_shaping,
    pure_latency_shaping,
)
from heteroscale.policy.baselines import (
    ApaParams,
    ApaPolicy,
    HpaParams,
    HpaPolicy,
    KthenaParams,
    KthenaPolicy,
    apa_shaping,
    hpa_shaping,
    kthena_shaping,
)
from heteroscale.policy.context import Policy
from heteroscale.policy.defaults import DRAIN_GRACE_S, KILL_GRACE_S
from heteroscale.policy.demand import DemandParams
from heteroscale.policy.dynamo import DynamoParams, DynamoSlaPolicy, dynamo_shaping
from heteroscale.policy.forecast import ForecastParams
from heteroscale.policy.heteroscale import HeteroScaleParams, HeteroScalePolicy, LatencyTier, heteroscale_shaping
from heteroscale.policy.normalize import Stability
from heteroscale.policy.outcome import ScaleIn
from heteroscale.policy.periodic import DAY_S, PeriodicPolicy, Schedule, ScheduleEntry, StaticPolicy, unobserved_shaping
from heteroscale.policy.ratio import AdaptiveRatio
from heteroscale.policy.signals import Signal, SignalParams, SingleSignalPolicy, signal_shaping
from heteroscale.policy.wrapper import Shaping

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

P = TypeVar("P", bound="DataclassInstance")

SIGNAL_POLICY_NAMES = tuple(f"signal:{s.value}" for s in Signal)
POLICY_NAMES: tuple[str, ...] = (
    "heteroscale",
    "periodic",
    *SIGNAL_POLICY_NAMES,
    "hpa",
    "aibrix-apa",
    "kthena",
    "independent-tps",
    "pure-latency",
    "dynamo-sla",
    "static",
    "fixed",
)
# options that are groups of their own (``None``: the feature is off), by option name
_NESTED: dict[str, type] = {"adaptive_ratio": AdaptiveRatio, "predictive": ForecastParams, "demand": DemandParams}
# policies that read no targets; every other policy gets its targets from a pressure test (or pinned ones)
TARGET_FREE_POLICIES = frozenset({"fixed", "static", "periodic"})
# policies that hold the counts the user gave: their P:D split is the user's choice, never gated
FIXED_COUNT_POLICIES = frozenset({"fixed", "static"})
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number, got {value!r}")
    # an int beyond float range, or .inf / .nan from YAML: no option means either
    if isinstance(value, int) and abs(value) > 2**63:
        raise ValueError(f"{where} must be a finite number, got an integer of {value.bit_length()} bits")
    if not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _integer(value: object, where: str) -> int:
    number = _number(value, where)
    if not number.is_integer():
        raise ValueError(f"{where} must be a whole number, got {value!r}")
    return int(number)


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _scale_in(value: object, where: str) -> ScaleIn:
    if isinstance(value, ScaleIn):
        return value
    if isinstance(value, str):
        mode = ScaleInMode(value)
        return ScaleIn(mode, DRAIN_GRACE_S if mode is ScaleInMode.DRAIN else KILL_GRACE_S)
    given = _mapping(value, where)
    unknown = set(given) - {"mode", "grace_s"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: mode, grace_s)")
    mode = ScaleInMode(str(given.get("mode", "drain")))
    default_grace = DRAIN_GRACE_S if mode is ScaleInMode.DRAIN else KILL_GRACE_S
    return ScaleIn(mode, _number(given.get("grace_s", default_grace), f"{where}.grace_s"))


def _tiers(value: object, where: str) -> tuple[LatencyTier, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError(f"{where} must be a list of [slo_factor, step_fraction]")
    tiers: list[LatencyTier] = []
    for i, item in enumerate(value):
        if isinstance(item, LatencyTier):
            tiers.append(item)
        elif isinstance(item, Mapping):
            tiers.append(LatencyTier(_number(item.get("slo_factor"), where), _number(item.get("step_fraction"), where)))
        elif isinstance(item, Sequence) and len(item) == 2:
            tiers.append(LatencyTier(_number(item[0], f"{where}[{i}]"), _number(item[1], f"{where}[{i}]")))
        else:
            raise ValueError(f"{where}[{i}] must be [slo_factor, step_fraction], got {item!r}")
    return tuple(tiers)


def _coerce(default: object, value: object, where: str) -> object:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        return _integer(value, where)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    nested = _NESTED.get(where.rsplit(".", 1)[-1])
    if nested is not None:
        if value is None or isinstance(value, nested):
            return value
        try:
            return build_params(nested, _mapping(value, where), where)
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if message.startswith(where) else f"{where}: {message}") from exc
    if isinstance(default, float) or default is None:
        return None if value is None else _number(value, where)
    if isinstance(default, Stability):
        return value if isinstance(value, Stability) else build_params(Stability, _mapping(value, where), where)
    if isinstance(default, ScaleIn):
        return _scale_in(value, where)
    if where.endswith("latency_tiers"):
        return _tiers(value, where)
    raise ValueError(f"{where}: cannot set an option of type {type(default).__name__}")


def build_params(factory: Callable[..., P], options: Mapping[str, object], where: str) -> P:
    """A params dataclass from plain options (see module doc)."""
    default = factory()
    names = [f.name for f in dataclasses.fields(default)]
    flat_stability = "stability" in names
    stability_names = [f.name for f in dataclasses.fields(Stability)] if flat_stability else []
    kwargs: dict[str, object] = {}
    stability: dict[str, object] = {}
    for key, value in options.items():
        if key in names:
            kwargs[key] = _coerce(getattr(default, key), value, f"{where}.{key}")
        elif key in stability_names:
            stability[key] = value
        else:
            known = ", ".join(sorted([*names, *stability_names]))
            raise ValueError(f"{where}: unknown option {key!r}; known options: {known}")
    if stability:
        group = "stability"
        base = kwargs.get(group, getattr(default, group))
        merged = {**dataclasses.asdict(base), **stability} if isinstance(base, Stability) else stability
        kwargs["stability"] = build_params(Stability, merged, where)
    return factory(**kwargs)


def _weekdays(value: object, where: str) -> frozenset[int]:
    items = [value] if isinstance(value, str | int) else value
    if not isinstance(items, Sequence):
        raise ValueError(f"{where} must be a list of weekdays")
    days: set[int] = set()
    for item in items:
        if isinstance(item, str) and "-" in item:
            first, last = (DAYS.index(part.strip().lower()[:3]) for part in item.split("-", 1))
            days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
        elif isinstance(item, str):
            if item.strip().lower()[:3] not in DAYS:
                raise ValueError(f"{where}: unknown weekday {item!r}")
            days.add(DAYS.index(item.strip().lower()[:3]))
        else:
            days.add(_integer(item, where))
    return frozenset(days)


def _time_of_day(value: object, where: str) -> float:
    if isinstance(value, str):
        hours, _, minutes = value.partition(":")
        try:
            return int(hours) * 3600.0 + int(minutes or 0) * 60.0
        except ValueError:
            raise ValueError(f"{where} must be HH:MM or seconds, got {value!r}") from None
    return _number(value, where)


def _schedule(options: Mapping[str, object]) -> Schedule:
    if "schedule" in options:
        given = options["schedule"]
        if not isinstance(given, Schedule) or len(options) > 1:
            raise ValueError("periodic: 'schedule' must be a Schedule and the only option")
        return given
    known = {"entries", "default", "start_weekday", "prefill", "decode"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"periodic: unknown options {sorted(unknown)}; known options: {', '.join(sorted(known))}")
    raw_entries = options.get("entries", ())
    if not isinstance(raw_entries, Sequence):
        raise ValueError("periodic.entries must be a list")
    entries: list[ScheduleEntry] = []
    for i, raw in enumerate(raw_entries):
        where = f"periodic.entries[{i}]"
        item = _mapping(raw, where)
        end = _time_of_day(item.get("end", DAY_S), f"{where}.end")
        entries.append(
            ScheduleEntry(
                weekdays=_weekdays(item.get("weekdays", list(range(7))), f"{where}.weekdays"),
                start_s=_time_of_day(item.get("start", 0.0), f"{where}.start"),
                end_s=DAY_S if end == 0 else end,
                prefill=_integer(item.get("prefill"), f"{where}.prefill"),
                decode=_integer(item.get("decode"), f"{where}.decode"),
                label=str(item.get("label", "")),
            )
        )
    default = options.get("default")
    if default is None:
        if "prefill" not in options or "decode" not in options:
            raise ValueError("periodic needs a 'default' {prefill, decode} (or top-level prefill and decode)")
        pair = (_integer(options["prefill"], "periodic.prefill"), _integer(options["decode"], "periodic.decode"))
    elif isinstance(default, Mapping):
        pair = (_integer(default.get("prefill"), "default.prefill"), _integer(default.get("decode"), "default.decode"))
    elif isinstance(default, Sequence) and len(default) == 2:
        pair = (_integer(default[0], "default[0]"), _integer(default[1], "default[1]"))
    else:
        raise ValueError(f"periodic.default must be {{prefill, decode}} or [p, d], got {default!r}")
    start = _integer(options.get("start_weekday", 0), "periodic.start_weekday")
    return Schedule.of(entries, pair, start)


def _static(name: str, options: Mapping[str, object]) -> StaticPolicy:
    unknown = set(options) - {"prefill", "decode"}
    if unknown:
        raise ValueError(f"{name}: unknown options {sorted(unknown)}; known options: decode, prefill")
    if "prefill" not in options or "decode" not in options:
        raise ValueError(f"{name} needs 'prefill' and 'decode' counts")
    prefill, decode = _integer(options["prefill"], f"{name}.prefill"), _integer(options["decode"], name)
    return StaticPolicy(prefill, decode, name, shaping=unobserved_shaping())


def _shaped(params: P, shaping: Callable[[P], Shaping], make: Callable[..., Policy]) -> Policy:
    """A policy built with its params and the wrapper settings those params give it."""
    return make(params, shaping=shaping(params))


_BUILDERS: dict[str, Callable[[Mapping[str, object]], Policy]] = {
    "heteroscale": lambda o: _shaped(
        build_params(HeteroScaleParams, o, "heteroscale"), heteroscale_shaping, HeteroScalePolicy
    ),
    "periodic": lambda o: PeriodicPolicy(_schedule(o), shaping=unobserved_shaping()),
    "hpa": lambda o: _shaped(build_params(HpaParams, o, "hpa"), hpa_shaping, HpaPolicy),
    "aibrix-apa": lambda o: _shaped(build_params(ApaParams, o, "aibrix-apa"), apa_shaping, ApaPolicy),
    "kthena": lambda o: _shaped(build_params(KthenaParams, o, "kthena"), kthena_shaping, KthenaPolicy),
    "independent-tps": lambda o: _shaped(
        build_params(IndependentTpsParams, o, "independent-tps"), independent_shaping, IndependentTpsPolicy
    ),
    "pure-latency": lambda o: _shaped(
        build_params(PureLatencyParams, o, "pure-latency"), pure_latency_shaping, PureLatencyPolicy
    ),
    "dynamo-sla": lambda o: _shaped(build_params(DynamoParams, o, "dynamo-sla"), dynamo_shaping, DynamoSlaPolicy),
    "static": lambda o: _static("static", o),
    "fixed": lambda o: _static("fixed", o),
}


def make_policy(name: str, options: Mapping[str, object] | None = None) -> Policy:
    """The policy called ``name`` (one of ``POLICY_NAMES``), built with ``options``."""
    given: Mapping[str, object] = dict(options or {})
    if name in SIGNAL_POLICY_NAMES:
        signal = Signal(name.split(":", 1)[1])
        params = build_params(SignalParams, given, name)
        return SingleSignalPolicy(signal, params, shaping=signal_shaping(signal, params))
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(repr(n) for n in POLICY_NAMES)})")
    return builder(given)
