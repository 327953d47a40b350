"""The shared argument checks in kagglekit._checks: what they accept and the errors they raise."""

from __future__ import annotations

import math

import pytest

from kagglekit._checks import one_of, positive_int, positive_weights
from kagglekit.errors import InvalidArgumentError


def test_positive_weights_refuses_what_is_not_a_finite_positive_number():
    assert positive_weights(None, 3, "merge") == [1.0, 1.0, 1.0]
    assert positive_weights([2, 0.5], 2, "merge") == [2.0, 0.5]
    for bad in ([1.0], [1.0, 0.0], [1.0, -2.0], [math.nan, 1.0], [1.0, math.inf]):
        with pytest.raises(InvalidArgumentError, match="2 positive numbers"):
            positive_weights(bad, 2, "merge")


def test_one_of_and_positive_int_refuse_unhashable_and_non_integer_values():
    assert one_of("view", "d4", {"d4", "flips"}) == "d4"
    with pytest.raises(InvalidArgumentError, match=r"unknown view \['d4'\]; choose one of \['d4', 'flips'\]"):
        one_of("view", ["d4"], {"d4", "flips"})
    assert positive_int("start", 0, minimum=0) == 0
    for bad in (1.0, True, "3", -1):
        with pytest.raises(InvalidArgumentError, match="start must be an integer >= 0"):
            positive_int("start", bad, minimum=0)
