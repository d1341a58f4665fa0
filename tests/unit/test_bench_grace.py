"""The benchmark's grace period is derived from the measured drain rate (bench/grace.py)."""

from __future__ import annotations

import pytest

from bench.grace import Grace
from bench.run import parse


def test_the_wait_scales_with_what_the_measured_rate_says_the_rest_needs() -> None:
    grace = Grace(floor_s=5, factor=3, cap_s=1000)
    # 100 drained in 10 s (10/s): 400 more need 40 s, so 120 s with the headroom.
    assert grace.wait_s(remaining=400, received=100, drain_seconds=10) == pytest.approx(120)
    # A slower run waits longer for the same remainder, instead of failing outright.
    assert grace.wait_s(remaining=400, received=100, drain_seconds=40) == pytest.approx(480)


def test_the_wait_is_never_below_the_floor_nor_above_the_cap() -> None:
    grace = Grace(floor_s=20, factor=3, cap_s=300)
    assert grace.wait_s(remaining=1, received=1000, drain_seconds=10) == 20
    assert grace.wait_s(remaining=10_000, received=1, drain_seconds=100) == 300


def test_nothing_received_yet_waits_the_floor_and_nothing_missing_waits_nothing() -> None:
    grace = Grace(floor_s=20, factor=3, cap_s=300)
    assert grace.wait_s(remaining=50, received=0, drain_seconds=0) == 20
    assert grace.wait_s(remaining=0, received=50, drain_seconds=5) == 0


def test_the_deadline_restarts_at_each_arrival_but_never_passes_the_cap_after_the_last_send() -> None:
    grace = Grace(floor_s=10, factor=2, cap_s=100)
    # Sends done at t=5; 50 of 100 seen by t=15 (5/s from the first send at t=5): 50 more
    # need 10 s, 20 s with the headroom, counted from the latest arrival.
    assert grace.deadline(sends_done=5, first_send=5, last_arrival=15, received=50, expected=100) == 35
    # Nothing seen yet: the floor from the end of the sends.
    assert grace.deadline(sends_done=5, first_send=0, last_arrival=None, received=0, expected=100) == 15
    # A trickle: 1 of 100 in 90 s would allow 2 x 99 x 90 s, but the cap after the sends holds.
    assert grace.deadline(sends_done=5, first_send=0, last_arrival=90, received=1, expected=100) == 105


@pytest.mark.parametrize(("floor", "factor", "cap", "field"), [
    (0, 3, 100, "floor"), (200, 3, 100, "floor"), (10, 0.5, 100, "factor")])
def test_nonsense_settings_are_refused_naming_the_option(floor: float, factor: float, cap: float,
                                                         field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Grace(floor, factor, cap)


def test_the_command_line_builds_the_grace_and_refuses_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["--grace-floor", "7", "--grace-factor", "4", "--grace-max", "70"])
    assert args.grace == Grace(7, 4, 70)
    with pytest.raises(SystemExit):
        parse(["--grace-factor", "0.1"])
    assert "--grace-factor" in capsys.readouterr().err
