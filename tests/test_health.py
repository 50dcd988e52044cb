"""Training health: loss spikes against a robust running median, non-finite steps and their streak."""

from __future__ import annotations

import math

import pytest

from model.health import Health


def _feed(health: Health, losses: list[float]) -> list[bool]:
    return [health.observe(x, math.isfinite(x)) for x in losses]


def test_no_spike_before_half_a_window_of_history() -> None:
    h = Health(factor=3.0, window=10)
    assert _feed(h, [1.0, 1.0, 1.0, 1.0, 100.0]) == [False] * 5  # only 4 losses seen before the 100
    assert h.spike_count == 0


def test_spike_is_a_loss_above_factor_times_the_median() -> None:
    h = Health(factor=3.0, window=10)
    _feed(h, [1.0, 1.2, 0.8, 1.0, 1.0])  # median 1.0
    assert h.observe(3.0, True) is False  # exactly factor x median is not a spike
    assert h.observe(3.01, True) is True  # the median is still 1.0
    assert h.spike_count == 1
    h2 = Health(factor=3.0, window=10)
    _feed(h2, [1.0, 1.2, 0.8, 1.0, 1.1, 50.0])  # median 1.05: a mean (9.2) would hide the next spike
    assert h2.observe(3.2, True) is True


def test_one_spike_does_not_raise_the_bar_for_the_next() -> None:
    h = Health(factor=3.0, window=10)
    _feed(h, [1.0] * 5)
    assert _feed(h, [10.0, 10.0, 1.0, 10.0]) == [True, True, False, True]  # the median stays at 1
    assert h.spike_count == 3


def test_the_baseline_follows_a_lasting_change() -> None:
    """After a window of higher losses the median has moved: the new level is no longer a spike."""
    h = Health(factor=3.0, window=10)
    _feed(h, [1.0] * 10)
    flags = _feed(h, [5.0] * 10)
    assert flags[0] and not flags[-1]
    assert len(h.recent) == 10
    assert h.observe(5.0, True) is False


def test_a_falling_loss_is_never_a_spike() -> None:
    h = Health(factor=2.0, window=6)
    assert not any(_feed(h, [10.0 / (i + 1) for i in range(50)]))


def test_non_finite_steps_count_and_the_streak_resets() -> None:
    h = Health(factor=3.0, window=10)
    _feed(h, [1.0] * 6)
    assert _feed(h, [math.nan, math.inf, -math.inf]) == [False] * 3
    assert (h.nan_count, h.nonfinite_streak) == (3, 3)
    h.observe(1.0, True)
    assert (h.nan_count, h.nonfinite_streak) == (3, 0)
    h.observe(0.5, False)  # a finite loss with a non-finite gradient counts too
    assert (h.nan_count, h.nonfinite_streak) == (4, 1)
    assert h.spike_count == 0


def test_non_finite_losses_do_not_enter_the_baseline() -> None:
    h = Health(factor=3.0, window=10)
    _feed(h, [1.0] * 5 + [math.nan] * 20)
    assert list(h.recent) == [1.0] * 5
    assert h.observe(4.0, True) is True


def test_state_round_trip_continues_identically() -> None:
    a = Health(factor=2.5, window=8)
    _feed(a, [1.0, 1.1, math.nan, 0.9, 3.0, 1.0, math.nan, math.nan])
    b = Health(factor=2.5, window=8)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    tail = [1.0, 5.0, math.nan, 0.8, 9.0, 1.2]
    assert _feed(a, tail) == _feed(b, tail)
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize("window", [2, 3, 50])
def test_window_is_respected(window: int) -> None:
    h = Health(factor=3.0, window=window)
    _feed(h, [float(i % 7 + 1) for i in range(200)])
    assert len(h.recent) == window
