"""Associative memory: store patterns in an energy graph, recall and complete them
(docs/concepts/memory.md).

Binary memories of ±1 patterns (asynchronous sweeps): :func:`classical`, :func:`polynomial`,
:func:`exponential`. Continuous memories (leaky descent): :func:`tanh`, :func:`modern`,
:func:`hierarchical`. :func:`store` builds any of them by name.
"""

from .base import AssociativeMemory, RecallResult, nearest, overlap
from .binary import BinaryMemory, Sign, classical, exponential, polynomial
from .continuous import ContinuousMemory, hierarchical, modern, tanh
from .images import flip_pixels, hide_rows, load_images
from .registry import BINARY, ENERGIES, energy_names, store

__all__ = [
    "AssociativeMemory", "RecallResult", "BinaryMemory", "ContinuousMemory", "Sign",
    "classical", "polynomial", "exponential", "tanh", "modern", "hierarchical",
    "store", "energy_names", "ENERGIES", "BINARY", "overlap", "nearest", "load_images",
    "hide_rows", "flip_pixels",
]
