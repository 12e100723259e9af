"""The library's one exception type for wiring errors (a ``ValueError``, so callers may catch either)."""

__all__ = ["WiringError"]


class WiringError(ValueError):
    """A declaration does not fit together: an edge names an unknown neuron, a synapse's sizes do
    not match the neuron shapes, a state dict has missing or extra names, and so on. The message
    names the culprit, says what was expected and what was received, and how to fix it."""
