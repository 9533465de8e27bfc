"""regkit._validate: the shared argument checks return good values and name the bad ones."""

import re

import numpy as np
import pytest

from regkit._validate import check_choice, check_int
from regkit.course.notebook import CourseError


@pytest.mark.parametrize("value, low, high", [(1, 1, None), (10**12, 1, None), (0, 0, None), (-3, -3, 5), (5, -3, 5),
                                              (2, 2, 2)])
def test_check_int_returns_the_value_inside_its_range(value, low, high):
    assert check_int("n", value, low, high) is value


@pytest.mark.parametrize("value, low, high, message", [
    (0, 1, None, "n must be a positive int, got 0"),
    (-1, 1, None, "n must be a positive int, got -1"),
    (1, 2, None, "n must be an int >= 2, got 1"),
    (6, 0, 5, "n must be an int in [0, 5], got 6"),
    (-1, 0, 5, "n must be an int in [0, 5], got -1"),
    (2.0, 1, None, "n must be a positive int, got 2.0"),
    (True, 1, None, "n must be a positive int, got True"),
    (np.int64(3), 1, None, "n must be a positive int, got np.int64(3)"),
    ("3", 1, None, "n must be a positive int, got '3'"),
    (None, 1, None, "n must be a positive int, got None"),
])
def test_check_int_names_the_argument_the_range_and_the_value(value, low, high, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_int("n", value, low, high)


def test_check_int_adds_its_note_and_raises_the_error_class_asked_for():
    with pytest.raises(ValueError, match=re.escape("steps must be an int in [1, 9] (optimizer steps), got 10")):
        check_int("steps", 10, 1, 9, note="optimizer steps")
    with pytest.raises(CourseError, match="--seeds must be a positive int, got 0"):
        check_int("--seeds", 0, error=CourseError)


def test_check_choice_returns_a_member_and_lists_the_choices_otherwise():
    assert check_choice("activation", "relu", ("tanh", "relu")) == "relu"
    with pytest.raises(ValueError, match=re.escape("activation must be one of ['relu', 'tanh'], got 'elu'")):
        check_choice("activation", "elu", ("tanh", "relu"))
