"""The memories by name: ``store("exp", patterns, beta=2.0)`` (docs/concepts/memory.md)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import AssociativeMemory
from .binary import classical, exponential, polynomial
from .continuous import hierarchical, modern, tanh

__all__ = ["ENERGIES", "BINARY", "energy_names", "store"]

ENERGIES: dict[str, Callable[..., AssociativeMemory]] = {
    "classical": classical,
    "tanh": tanh,
    "poly": polynomial,
    "exp": exponential,
    "lse": modern,
    "ham": hierarchical,
}
BINARY = ("classical", "poly", "exp")  # the memories of ±1 patterns


def energy_names() -> list[str]:
    """The names :func:`store` knows, in the order of the docs."""
    return list(ENERGIES)


def store(energy: str, patterns: torch.Tensor, **kwargs) -> AssociativeMemory:
    """Build the memory ``energy`` holding ``patterns`` ``(K, N)``; ``kwargs`` go to its constructor.

    Example:
        >>> import torch, hopfield as hf
        >>> xi = torch.sign(torch.randn(3, 32))
        >>> mem = hf.memory.store("poly", xi, n=3)
        >>> bool((mem.recall(xi).output == xi).all())
        True
    """
    if energy not in ENERGIES:
        raise ValueError(f"store: unknown energy {energy!r}; valid: {', '.join(ENERGIES)}.")
    return ENERGIES[energy](patterns, **kwargs)
