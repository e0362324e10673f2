"""The shared option checks: integers, numbers in a range, choices."""

from __future__ import annotations

import numpy as np
import pytest

from bptdask.errors import ConfigurationError
from bptdask.validation import check_choice, check_integer, check_number


def test_integers_are_returned_as_int_and_bools_refused():
    assert check_integer("n", np.int64(4), minimum=1) == 4 and type(check_integer("n", np.int8(4))) is int
    for bad in (True, 2.0, "3", None, 0):
        with pytest.raises(ConfigurationError, match=f"n must be an integer >= 1, got {bad!r}"):
            check_integer("n", bad, minimum=1)


def test_numbers_are_checked_against_open_and_closed_bounds():
    assert check_number("x", np.float32(0.5), above=0, at_most=1) == 0.5
    assert check_number("x", 0, at_least=0, below=1) == 0.0
    for bad in (0, 1.5, float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(ConfigurationError, match=r"x must be a finite number > 0 and <= 1 \(a share\), got"):
            check_number("x", bad, above=0, at_most=1, why=" (a share)")


def test_choices_are_named_in_the_message():
    assert check_choice("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ConfigurationError, match="mode must be one of 'a', 'b', got 3"):
        check_choice("mode", 3, ("a", "b"))
