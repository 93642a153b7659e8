"""The one wrapper: a policy returns its raw recommendation, the Shaping's stages do the rest, in order."""

from __future__ import annotations

import pytest

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.policy.context import PolicyContext
from heteroscale.policy.normalize import PD
from heteroscale.policy.outcome import KILL
from heteroscale.policy.registry import POLICY_NAMES, make_policy
from heteroscale.policy.stages import Bounds, Cooldown, Damping, Hysteresis, Interval, Stabilise
from heteroscale.policy.wrapper import Raw, Seen, ShapedPolicy, Shaping
from tests.unit.policy_builders import NOW, counts, ctx, memory, observation, spec

STEP_NAMES = {
    "Stabilise": "stabilisation",
    "Hysteresis": "hysteresis",
    "Tolerance": "tolerance",
    "Coordinate": "pd-ratio",
    "LatencyFloor": "latency",
    "WarmUp": "warm-up",
    "Cooldown": "cooldown",
    "Damping": "damping",
    "RateLimit": "rate-limit",
    "Panic": "panic",
    "RatioBand": "ratio-band",
    "Interval": "interval",
    "Bounds": "bounds",
}


class FakePolicy(ShapedPolicy):
    """A fake that recommends fixed counts and records what the wrapper showed it."""

    def __init__(self, want: PD, shaping: Shaping, own: tuple[Step, ...] = ()) -> None:
        self.name = "fake"
        self.want = want
        self.shaping = shaping
        self.own = own
        self.seen: list[Seen | None] = []

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        self.seen.append(seen)
        return Raw(self.want, Reason.PROPORTIONAL, "fake", steps=self.own)


def names(policy: ShapedPolicy, context: PolicyContext) -> list[str]:
    return [s.name for s in policy.decide(context).decision.steps]


def test_stages_run_in_the_order_the_shaping_lists_them() -> None:
    one = Shaping((Hysteresis(), Cooldown(), Damping(), Bounds()), ("decode.tps",))
    other = Shaping((Damping(), Hysteresis(), Bounds()), ("decode.tps",))
    own = (Step("mine", 10, 20, Reason.RATIO_HELD, "the policy's own step"),)
    assert names(FakePolicy(PD(10, 40), one, own), ctx()) == [
        "observation",
        "mine",
        "hysteresis",
        "cooldown",
        "damping",
        "bounds",
    ]
    assert names(FakePolicy(PD(10, 40), other), ctx()) == ["observation", "damping", "hysteresis", "bounds"]


def test_each_stage_starts_from_the_step_before_it() -> None:
    # 20 → 40 decode: damping (+50 %) limits it to 30, then bounds clamp that to 26
    capped = FakePolicy(PD(10, 40), Shaping((Damping(max_up_fraction=0.5), Bounds()), ("decode.tps",)))
    result = capped.decide(ctx(spec=spec(max_decode=26)))
    assert [(s.name, s.decode) for s in result.decision.steps] == [("observation", 20), ("damping", 30), ("bounds", 26)]
    assert result.recommendation.decode == 40  # the raw recommendation stays what the policy said


def test_a_bad_observation_holds_before_the_policy_is_asked() -> None:
    policy = FakePolicy(PD(1, 1), Shaping((Cooldown(), Bounds()), ("decode.tps",)))
    result = policy.decide(ctx(obs=None, error="fake source timed out"))
    assert policy.seen == []
    assert [s.reason for s in result.decision.steps] == [Reason.HOLD_MISSING, Reason.WITHIN_BOUNDS]
    assert (result.decision.desired_prefill, result.decision.desired_decode) == (10, 20)


def test_no_observation_check_when_the_shaping_reads_none() -> None:
    policy = FakePolicy(PD(3, 4), Shaping((Bounds(),), None))
    result = policy.decide(ctx(obs=None))
    assert policy.seen == [None]
    assert (result.decision.desired_prefill, result.decision.desired_decode) == (3, 4)


def test_stabilisation_records_what_reaches_it_and_cooldowns_read_the_stamps() -> None:
    policy = FakePolicy(PD(10, 10), Shaping((Stabilise(300.0), Cooldown(0.0, 600.0), Bounds()), ("decode.tps",)))
    first = policy.decide(ctx(now_s=NOW, memory=memory(recommendations=((NOW - 60.0, 10, 19),))))
    # 20 → 10 decode, but 19 was recommended 60 s ago: the scale-in goes to 19, and is stamped
    assert first.decision.desired_decode == 19
    assert first.memory.recommendations[-1] == (NOW, 10, 10)
    assert first.memory.last_scale_in_s == NOW
    # 400 s later the 19 has left the window, but the scale-in cooldown (600 s) still holds
    second = policy.decide(ctx(now_s=NOW + 400.0, counts=counts(10, 19), memory=first.memory))
    assert second.decision.steps[1].decode == 10
    assert second.decision.desired_decode == 19
    assert [s.reason for s in second.decision.steps][-2] == Reason.COOLDOWN_IN


def test_an_interval_stage_adjusts_then_holds_until_the_interval_has_passed() -> None:
    policy = FakePolicy(PD(12, 30), Shaping((Interval(180.0), Bounds()), ("decode.tps",)))
    first = policy.decide(ctx(now_s=NOW))
    assert (first.decision.desired_prefill, first.decision.desired_decode) == (12, 30)
    again = policy.decide(ctx(now_s=NOW + 150.0, memory=first.memory))
    assert again.decision.steps[1].reason is Reason.ADJUSTMENT_INTERVAL
    assert (again.decision.desired_prefill, again.decision.desired_decode) == (10, 20)
    later = policy.decide(ctx(now_s=NOW + 180.0, memory=again.memory))
    assert later.decision.steps[1].reason is Reason.ADJUSTED


def test_scale_in_mode_comes_from_the_shaping() -> None:
    policy = FakePolicy(PD(5, 10), Shaping((Bounds(),), ("decode.tps",), KILL))
    result = policy.decide(ctx())
    assert (result.scale_in_mode, result.drain_grace_s) == (KILL.mode, KILL.grace_s)


def test_a_shaping_must_end_with_bounds() -> None:
    with pytest.raises(ValueError, match="bounds"):
        Shaping((Cooldown(),))
    with pytest.raises(ValueError, match="bounds"):
        Shaping(())


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_registry_policy_is_shaped_by_the_wrapper(name: str) -> None:
    options: dict[str, object] = {}
    if name == "periodic":
        options = {"default": [2, 3]}
    elif name in ("static", "fixed"):
        options = {"prefill": 2, "decode": 3}
    policy = make_policy(name, options)
    assert isinstance(policy, ShapedPolicy)
    result = policy.decide(ctx(obs=observation()))
    listed = [STEP_NAMES[type(stage).__name__] for stage in policy.shaping.stages]
    assert [s.name for s in result.decision.steps][-len(listed) :] == listed


def test_registry_options_reach_the_stages() -> None:
    policy = make_policy("heteroscale", {"theta_out": 0.3, "scale_in_cooldown_s": 900})
    assert isinstance(policy, ShapedPolicy)
    hysteresis = next(s for s in policy.shaping.stages if isinstance(s, Hysteresis))
    cool = next(s for s in policy.shaping.stages if isinstance(s, Cooldown))
    assert (hysteresis.theta_out, hysteresis.driver, cool.scale_in_s) == (0.3, Role.DECODE, 900.0)
