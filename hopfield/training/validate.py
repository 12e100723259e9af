"""``argparse`` types for the numeric flags: a value is checked when it is parsed, so ``--lr inf``
or ``--ema 1`` ends in a usage line (exit status 2) before anything is loaded.

Each type returns the parsed number or raises ``argparse.ArgumentTypeError`` saying what was
expected. :class:`~hopfield.training.config.TrainConfig` repeats the checks for callers that do
not go through the command line.

Example:
    >>> finite_positive_float("3e-4")
    0.0003
    >>> finite_positive_float("inf")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: expected a finite number > 0, got 'inf'
"""

from __future__ import annotations

import argparse
import math

__all__ = ["finite_float", "finite_positive_float", "finite_nonnegative_float", "probability",
           "fraction_below_one", "positive_int", "nonnegative_int"]


def _number(text: str, kind: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (no ``inf``/``nan``)."""
    return _number(text, "a finite number")


def finite_positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    kind = "a finite number > 0"
    if (value := _number(text, kind)) <= 0:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return value


def finite_nonnegative_float(text: str) -> float:
    """A finite number ≥ 0 (weight decay, a floor, 0 meaning off)."""
    kind = "a finite number >= 0"
    if (value := _number(text, kind)) < 0:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    kind = "a probability in [0, 1]"
    if not 0 <= (value := _number(text, kind)) <= 1:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return value


def fraction_below_one(text: str) -> float:
    """A number in [0, 1) (label smoothing, stochastic depth, EMA decay)."""
    kind = "a number in [0, 1)"
    if not 0 <= (value := _number(text, kind)) < 1:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return value


def _integer(text: str, low: int, kind: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    return _integer(text, 1, "an integer >= 1")


def nonnegative_int(text: str) -> int:
    """An integer ≥ 0."""
    return _integer(text, 0, "an integer >= 0")
