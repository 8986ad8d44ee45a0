"""Argument checks used across the package: what a count, a finite number and a probability are, said once.

Each returns the value it accepts and otherwise raises a one-line ``ValueError`` (``TypeError`` for a flag that is not
``True``/``False``) that names the argument, the value it got and the fix (``fix``), e.g.
``positive_int(r, "LoRA rank r", "Try r=4 or r=8.")``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


def _refuse(name: str, wanted: str, value: object, fix: str) -> ValueError:
    return ValueError(f"{name} must be {wanted}, got {value!r}. {fix}".rstrip())


def _is_real(value: object) -> bool:
    """A real number: ``int``, ``float`` or NumPy's, but not ``True`` (a ``bool``) nor ``"3"`` (a string)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def positive_int(value: object, name: str, fix: str = "", allow_none: bool = False) -> int | None:
    """``value`` if it is an ``int`` >= 1 (or ``None`` when ``allow_none``); refuses 0, 2.5, 5.0, ``True`` and "3"."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise _refuse(name, "a positive integer" + (" or None" if allow_none else ""), value, fix)
    return int(value)


def finite_float(value: object, name: str, fix: str = "", positive: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number (and > 0 when ``positive``); refuses nan, inf, "1"."""
    if not _is_real(value) or not math.isfinite(value) or (positive and value <= 0):
        raise _refuse(name, "a finite number" + (" > 0" if positive else ""), value, fix)
    return float(value)


def probability(value: object, name: str, fix: str = "", below_one: bool = False) -> float:
    """``value`` as a ``float`` if it lies in [0, 1] (in [0, 1) when ``below_one``, e.g. a dropout rate)."""
    if not _is_real(value) or not (0 <= value < 1 if below_one else 0 <= value <= 1):
        raise _refuse(name, "in [0, 1)" if below_one else "in [0, 1]", value, fix)
    return float(value)


def flag(value: object, name: str, fix: str = "") -> bool:
    """``value`` if it is ``True`` or ``False``; refuses 1, "yes" and None (a ``TypeError``: a flag has no range)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}. {fix}".rstrip())
    return value
