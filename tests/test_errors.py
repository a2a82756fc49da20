import pytest

from forecast.errors import DataValidationError, Problem, UserInputError


def test_problem_names_file_line_column_value_and_fix():
    p = Problem("data/obs.csv", 7, "date", "2021-02-30", "not a calendar day", "use YYYY-MM-DD")
    text = str(p)
    for part in ("data/obs.csv", "line 7", "'date'", "2021-02-30", "not a calendar day", "Fix: use YYYY-MM-DD"):
        assert part in text


def test_validation_error_lists_every_problem_and_is_a_user_error():
    problems = [Problem("a.csv", i, "value", "-1", "negative count", "counts are >= 0") for i in (2, 5, 9)]
    err = DataValidationError(problems)
    assert isinstance(err, UserInputError)
    assert str(err).count("negative count") == 3
    assert "3 problems in a.csv" in str(err)
    with pytest.raises(ValueError):
        DataValidationError([])
