import pytest

from minipeft.exercises import check, show_solution, solution

KEY = "99.1"  # a key of these tests' own, so that no notebook's exercise is the fixture


@solution(KEY)
def count_parameters(model) -> int:
    """The reference solution of the tests' own exercise."""
    return sum(p.numel() for p in model.parameters())


def unwritten(model):
    raise NotImplementedError


def test_unwritten_exercise_is_reported_not_failed(capsys, monkeypatch):
    monkeypatch.delenv("MINIPEFT_SOLUTIONS", raising=False)
    check(KEY, unwritten, lambda f: f(__import__("torch").nn.Linear(3, 2)) == 8)
    assert "Exercise 99.1: not written yet" in capsys.readouterr().out


def test_solutions_mode_fills_in(capsys, monkeypatch):
    monkeypatch.setenv("MINIPEFT_SOLUTIONS", "1")
    check(KEY, unwritten, lambda f: f(__import__("torch").nn.Linear(3, 2)) == 8)
    assert "Exercise 99.1: solution filled in" in capsys.readouterr().out


def test_wrong_answer_fails_and_right_answer_passes(capsys):
    import torch

    with pytest.raises(AssertionError, match="not quite"):
        check(KEY, lambda m: 7, lambda f: f(torch.nn.Linear(3, 2)) == 8)
    check(KEY, lambda m: sum(p.numel() for p in m.parameters()), lambda f: f(torch.nn.Linear(3, 2)) == 8)
    assert "Exercise 99.1: correct!" in capsys.readouterr().out


def test_a_broken_check_is_caught_on_the_reference():
    with pytest.raises(AssertionError, match="reference solution fails"):
        check(KEY, unwritten, lambda f: f(__import__("torch").nn.Linear(3, 2)) == 9)


def test_show_solution_prints_source_and_unknown_key_is_clear(capsys):
    show_solution(KEY)
    assert "def count_parameters" in capsys.readouterr().out
    with pytest.raises(KeyError, match="No reference solution for exercise '99.9'"):
        show_solution("99.9")


def test_a_check_that_returns_none_fails():
    """A check that compares but forgets to return the comparison proves nothing, even for a wrong answer."""
    import torch

    def forgets_to_return(f):
        f(torch.nn.Linear(3, 2)) == 8  # noqa: B015  (the bug under test)

    with pytest.raises(AssertionError, match="returned None"):
        check(KEY, lambda m: 7, forgets_to_return)


def test_solutions_mode_puts_the_reference_in_the_notebooks_namespace(monkeypatch):
    """The cells after an unwritten exercise run with the reference solution, as `make solutions` promises."""
    monkeypatch.setenv("MINIPEFT_SOLUTIONS", "1")
    namespace = {"check": check}
    exec("def count_parameters(model):\n    raise NotImplementedError\n\n"  # the exercise cell, as a notebook has it
         "check('99.1', count_parameters, lambda f: f(__import__('torch').nn.Linear(3, 2)) == 8)", namespace)
    exec("n = count_parameters(__import__('torch').nn.Linear(3, 2))", namespace)  # a cell downstream of it
    assert namespace["n"] == 8


def test_without_solutions_mode_the_learners_function_stays(monkeypatch):
    monkeypatch.delenv("MINIPEFT_SOLUTIONS", raising=False)
    namespace = {"check": check}
    exec("def count_parameters(model):\n    raise NotImplementedError\n\n"
         "check('99.1', count_parameters, lambda f: f(__import__('torch').nn.Linear(3, 2)) == 8)", namespace)
    with pytest.raises(NotImplementedError):
        namespace["count_parameters"](None)


def test_a_prediction_is_compared_with_the_learners_function_and_a_miss_is_reported_not_failed(capsys):
    import torch

    def right(m):
        return sum(p.numel() for p in m.parameters())

    layer = torch.nn.Linear(3, 2)
    for prediction, said in ((8, "8 agrees with your function: 8"), (8.05, "agrees"),
                             (9, "9, but your function gives 8"), (None, "none written"),
                             ("eight", "'eight', but your function gives 8"), ((1e4, True), "(1e+04, True), but")):
        check(KEY, right, lambda f: f(layer) == 8, prediction=prediction, measured=lambda f: f(layer))
        out = capsys.readouterr().out
        assert "Exercise 99.1: correct!" in out and "Exercise 99.1, prediction: " in out and said in out, out


def test_predictions_agree_within_one_percent_and_words_and_yes_no_exactly():
    from minipeft.exercises import agrees

    assert agrees(112, 112.0) and agrees(111, 112.0) and not agrees(110, 112.0)
    assert agrees(("Smaller ", False), ("smaller", False)) and not agrees(("smaller", 0), ("smaller", False))
    assert not agrees(True, 1) and not agrees((112,), (112, False)) and not agrees("larger", "smaller")


def test_an_unwritten_exercise_reveals_no_measured_answer(capsys, monkeypatch):
    monkeypatch.delenv("MINIPEFT_SOLUTIONS", raising=False)

    def still_unwritten(model):  # local: solutions mode replaced the module's `unwritten` in an earlier test
        raise NotImplementedError

    check(KEY, still_unwritten, lambda f: f(__import__("torch").nn.Linear(3, 2)) == 8, prediction=7,
          measured=lambda f: f(__import__("torch").nn.Linear(3, 2)))
    out = capsys.readouterr().out
    assert "not written yet" in out and "prediction" not in out
