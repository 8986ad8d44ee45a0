"""Exercises with checks that run, and solutions that stay hidden until asked for.

In a notebook an exercise is a function the learner writes, followed by one ``check`` call::

    def lora_params(d_in: int, d_out: int, r: int) -> int:
        raise NotImplementedError  # your code here

    check("03.1", lora_params, lambda f: f(768, 768, 8) == 12_288)

``check`` always runs the test on the reference solution (so the check itself is proven in CI), then
on the learner's function once it is written, and raises ``AssertionError`` if the learner's answer
fails. A test returns True or False, or asserts; one that returns None is a broken check and fails.
An exercise that asks for a prediction first passes it to ``check`` with what to compare it to::

    check("01.3", prefix_params, test, prediction=prediction, measured=lambda f: f(gpt2_config("gpt2-xl"), 200))

Once the learner's function passes, ``check`` prints the prediction beside ``measured(function)`` and says whether
they agree (numbers within 1%); a prediction that misses is a lesson, reported, never failed.
``show_solution("03.1")`` prints the reference solution. With ``MINIPEFT_SOLUTIONS=1`` the reference
solution takes the place of every unwritten exercise in the notebook's namespace, so every cell after the
check runs with it (``make solutions`` runs every notebook that way).
Reference solutions live in :mod:`minipeft.solutions`, one module per notebook, one function per key.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from typing import Any

SOLUTIONS_ENV = "MINIPEFT_SOLUTIONS"
_SOLUTIONS: dict[str, Callable[..., Any]] = {}


def solution(key: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a reference solution under ``key`` (used in :mod:`minipeft.solutions`)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        _SOLUTIONS[key] = fn
        return fn

    return register


def _reference(key: str) -> Callable[..., Any]:
    from . import solutions  # noqa: F401  (registers every solution)

    if key not in _SOLUTIONS:
        raise KeyError(f"No reference solution for exercise {key!r}; known: {', '.join(sorted(_SOLUTIONS))}")
    return _SOLUTIONS[key]


def show_solution(key: str) -> None:
    """Print the reference solution of exercise ``key``."""
    source = inspect.getsource(_reference(key))
    print("\n".join(line for line in source.splitlines() if not line.startswith("@solution")))


def _passes(key: str, test: Callable[[Callable[..., Any]], Any], fn: Callable[..., Any]) -> bool:
    result = test(fn)
    if result is None:
        raise AssertionError(f"exercise {key}: its check returned None, which proves nothing: a check must return "
                             "True or False (or assert)")
    return bool(result)


def fill_in(answer: Callable[..., Any], reference: Callable[..., Any]) -> None:
    """Put ``reference`` where ``answer`` was defined (a notebook's namespace), under the learner's name."""
    answer.__globals__[answer.__name__] = reference


def agrees(prediction: Any, measured: Any) -> bool:
    """Does a prediction match the measured value? Numbers within 1%, words and yes/no exactly, tuples item by item."""
    if isinstance(measured, tuple | list):
        return (isinstance(prediction, tuple | list) and len(prediction) == len(measured)
                and all(agrees(p, m) for p, m in zip(prediction, measured, strict=True)))
    if isinstance(measured, bool) or isinstance(prediction, bool):
        return prediction is measured
    if isinstance(measured, int | float) and isinstance(prediction, int | float):
        return math.isclose(prediction, measured, rel_tol=0.01)
    if isinstance(measured, str) and isinstance(prediction, str):
        return prediction.strip().lower() == measured.lower()
    return False


def _show(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def _compare(key: str, prediction: Any, measured: Any, source: str = "your function") -> None:
    if prediction is None:
        print(f"Exercise {key}, prediction: none written (set `prediction` before you write the function); "
              f"{source} gives {_show(measured)}.")
    elif agrees(prediction, measured):
        print(f"Exercise {key}, prediction: {_show(prediction)} agrees with {source}: {_show(measured)}.")
    else:
        print(f"Exercise {key}, prediction: {_show(prediction)}, but {source} gives {_show(measured)}: "
              f"worth a minute on why; `show_solution({key!r})` explains it.")


def check(key: str, answer: Callable[..., Any], test: Callable[[Callable[..., Any]], Any], *,
          prediction: Any = None, measured: Callable[[Callable[..., Any]], Any] | None = None) -> None:
    """Check exercise ``key`` and print the verdict; an answer that is written but wrong raises AssertionError.
    With ``measured``, a passing answer's ``measured(answer)`` is printed beside the learner's ``prediction``."""
    assert _passes(key, test, _reference(key)), f"exercise {key}: the reference solution fails its own check"
    # the comparison itself runs on the reference, so a broken one fails in CI
    reference_value = measured(_reference(key)) if measured is not None else None
    try:
        passed = _passes(key, test, answer)
    except NotImplementedError:
        if os.environ.get(SOLUTIONS_ENV) == "1":
            fill_in(answer, _reference(key))
            print(f"Exercise {key}: solution filled in ({SOLUTIONS_ENV}=1) and checked.")
            if measured is not None:
                _compare(key, prediction, reference_value, "the solution")
            return
        print(f"Exercise {key}: not written yet. Write it and run this cell again; "
              f"stuck? `show_solution({key!r})`.")
        return
    assert passed, f"Exercise {key}: not quite. Try again, or compare with `show_solution({key!r})`."
    print(f"Exercise {key}: correct!")
    if measured is not None:
        _compare(key, prediction, measured(answer))
