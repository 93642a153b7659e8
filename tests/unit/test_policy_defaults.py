"""Policy defaults live in one place (policy/defaults.py): every parameter set that has one takes it
from there, so changing a default there changes it everywhere."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from heteroscale.policy import defaults
from heteroscale.policy.ablations import PureLatencyParams
from heteroscale.policy.context import PolicyResult
from heteroscale.policy.heteroscale import HeteroScaleParams
from heteroscale.policy.normalize import Stability
from heteroscale.policy.outcome import ScaleIn
from heteroscale.policy.signals import SignalParams
from heteroscale.policy.stages import Cooldown, Hysteresis


def default_of(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


@pytest.mark.parametrize(
    ("cls", "field", "constant"),
    [
        (Stability, "theta_out", "THETA_OUT"),
        (Stability, "theta_in", "THETA_IN"),
        (Stability, "scale_out_cooldown_s", "SCALE_OUT_COOLDOWN_S"),
        (Stability, "scale_in_cooldown_s", "SCALE_IN_COOLDOWN_S"),
        (Hysteresis, "theta_out", "THETA_OUT"),
        (Hysteresis, "theta_in", "THETA_IN"),
        (Cooldown, "scale_out_s", "SCALE_OUT_COOLDOWN_S"),
        (Cooldown, "scale_in_s", "SCALE_IN_COOLDOWN_S"),
        (PureLatencyParams, "scale_out_cooldown_s", "SCALE_OUT_COOLDOWN_S"),
        (PureLatencyParams, "scale_in_cooldown_s", "SCALE_IN_COOLDOWN_S"),
        (HeteroScaleParams, "drain_grace_s", "DRAIN_GRACE_S"),
        (SignalParams, "drain_grace_s", "DRAIN_GRACE_S"),
        (PolicyResult, "drain_grace_s", "DRAIN_GRACE_S"),
        (ScaleIn, "grace_s", "DRAIN_GRACE_S"),
    ],
)
def test_every_shared_default_comes_from_policy_defaults(cls: type, field: str, constant: str) -> None:
    assert default_of(cls, field) == getattr(defaults, constant)


def test_the_defaults_are_the_documented_ones() -> None:
    # HETEROSCALE.md §4: θ_out = θ_in = 0.1; cooldown 3 min out / 10 min in
    assert (defaults.THETA_OUT, defaults.THETA_IN) == (0.1, 0.1)
    assert (defaults.SCALE_OUT_COOLDOWN_S, defaults.SCALE_IN_COOLDOWN_S) == (180.0, 600.0)
