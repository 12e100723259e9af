"""The library's exception types: wiring errors (a ``ValueError``, so callers may catch either)
and non-finite values found by an opt-in check (a ``FloatingPointError``)."""

__all__ = ["NonFiniteError", "WiringError"]


class WiringError(ValueError):
    """A declaration does not fit together: an edge names an unknown neuron, a synapse's sizes do
    not match the neuron shapes, a state dict has missing or extra names, and so on. The message
    names the culprit, says what was expected and what was received, and how to fix it."""


class NonFiniteError(FloatingPointError):
    """NaN or Inf where a finite value was required, found by a ``check_finite`` option. The
    message names where (block, group, layer) and the first step at which it appeared."""
