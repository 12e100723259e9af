"""Argument checks shared by constructors, block builders and solvers: one message style.

Every message names the owner (a class, a builder, a solver), the argument and the value received,
says what was expected and how to fix it. A wrong type raises ``TypeError``, a wrong value
``ValueError``. A ``bool`` is not accepted as a number here: ``Dense(True, 3)`` is a slip, not a
size of 1.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["is_int", "is_real", "is_finite_real", "check_size", "check_int", "check_positive",
           "check_axis"]


def is_int(value) -> bool:
    """An integer that is not a ``bool`` (Python or NumPy ints)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A real number that is not a ``bool`` (Python or NumPy ints and floats)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_real(value) -> bool:
    """A real number (not a ``bool``) that is neither NaN nor infinite."""
    return is_real(value) and (isinstance(value, numbers.Integral) or math.isfinite(value))


def _got(name, value) -> str:
    return f"got {name}={value!r} ({type(value).__name__})"


def check_size(who: str, name: str, value, *, none_ok: bool = False):
    """A size: an int >= 1 (or ``None`` when ``none_ok``). Returns the value unchanged."""
    if value is None and none_ok:
        return value
    if not is_int(value) or value < 1:
        cls = TypeError if not is_int(value) else ValueError
        alt = " or None (for the default)" if none_ok else ""
        raise cls(f"{who}: expected positive sizes, i.e. {name} >= 1 as an int, "
                  f"{_got(name, value)}. Pass a whole number >= 1{alt}.")
    return value


def check_int(who: str, name: str, value, *, minimum: int = 0, none_ok: bool = False):
    """An int >= ``minimum`` (or ``None`` when ``none_ok``). Returns the value unchanged."""
    if value is None and none_ok:
        return value
    if not is_int(value) or value < minimum:
        cls = TypeError if not is_int(value) else ValueError
        alt = " or None (for the default)" if none_ok else ""
        raise cls(f"{who}: expected {name} >= {minimum} as an int, {_got(name, value)}. "
                  f"Pass a whole number >= {minimum}{alt}.")
    return value


def check_positive(who: str, name: str, value, *, none_ok: bool = False):
    """A finite real number > 0 (or ``None`` when ``none_ok``). Returns the value unchanged."""
    if value is None and none_ok:
        return value
    if not is_real(value) or not (is_finite_real(value) and value > 0):
        cls = TypeError if not is_real(value) else ValueError
        alt = " or None (for the default)" if none_ok else ""
        raise cls(f"{who}: expected a positive finite {name}, {_got(name, value)}. "
                  f"Pass a number > 0 (not NaN or Inf){alt}.")
    return value


def check_axis(who: str, value) -> int:
    """A per-sample axis: an int (negative counts from the end). Returns it unchanged."""
    if not is_int(value):
        raise TypeError(f"{who}: expected axis as an int (negative counts from the end), "
                        f"{_got('axis', value)}.")
    return value
