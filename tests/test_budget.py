"""Budget with a fake clock: every figure is checked against its closed form."""

from __future__ import annotations

import math

import pytest

from kagglekit.errors import InvalidArgumentError, KagglekitError
from kagglekit.kaggle.budget import Budget


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_elapsed_remaining_and_can_afford():
    clock = FakeClock()
    budget = Budget(total=100, reserve=10, clock=clock)
    clock.now += 30
    assert budget.elapsed == 30 and budget.remaining == 100 - 10 - 30
    assert budget.can_afford(60) and not budget.can_afford(60.5)
    early = Budget(total=100, reserve=10, started_at=clock.now - 95, clock=clock)
    assert early.remaining == -5 and not early.can_afford(0)


def test_steps_are_timed_even_when_they_raise():
    clock = FakeClock()
    budget = Budget(total=100, clock=clock)
    for seconds in (2.0, 4.0):
        with budget.step("model a"):
            clock.now += seconds
    with pytest.raises(RuntimeError):
        with budget.step("model b"):
            clock.now += 7
            raise RuntimeError
    assert budget.steps["model a"] == [2.0, 4.0] and budget.steps["model b"] == [7.0]
    assert budget.mean_step("model a") == 3.0 and math.isnan(budget.mean_step("never"))
    assert "model a: 2 x 3.00 s = 6.0 s" in budget.summary()


def test_projected_finish_from_the_measured_rate():
    clock = FakeClock()
    budget = Budget(total=1000, reserve=100, clock=clock)
    clock.now += 50  # model loading before the loop does not count in the rate
    assert math.isnan(budget.projected_finish(0, 40))  # first call: origin only
    clock.now += 80
    # 10 units in 80 s: 30 more units take 240 s; now is 130 s after the start.
    assert budget.projected_finish(10, 40) == pytest.approx(130 + 240)
    assert not budget.will_overrun(10, 40)
    clock.now += 320  # 20 units in 400 s: 20 more take 400 s -> 850 + ... = 450 + 400 = 850 <= 900
    assert budget.projected_finish(20, 40) == pytest.approx(450 + 400) and not budget.will_overrun(20, 40)
    clock.now += 100  # 21 units in 500 s: 19 more take 452.4 s -> 1002 > 900
    assert budget.will_overrun(21, 40)
    assert budget.projected_finish(21, 40) == pytest.approx(550 + 19 * 500 / 21)
    assert math.isnan(budget.projected_finish(3, 9, key="other loop"))  # separate origin per key


def test_bad_arguments_raise():
    for kwargs in ({"total": 0}, {"total": math.inf}, {"total": 10, "reserve": 10}, {"total": 10, "reserve": -1},
                   {"total": "9"}, {"total": 10, "reserve": None}):
        with pytest.raises(InvalidArgumentError) as info:
            Budget(**kwargs)
        assert isinstance(info.value, KagglekitError)
    with pytest.raises(InvalidArgumentError, match="done"):
        Budget(10).projected_finish(5, 4)


def test_real_clock_runs_forward():
    budget = Budget(total=60)
    assert 0 <= budget.elapsed < 60 and budget.remaining <= 60
