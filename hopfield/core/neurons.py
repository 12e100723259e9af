r"""Neuron layers: a state shape, a Lagrangian, a time constant, and the Legendre energy.

The neuron energy of layer $A$ is the Legendre term (docs/concepts/legendre.md#legendre-term)

$$E_A = \langle x_A, g_A\rangle - L_A(x_A), \qquad g_A = \nabla L_A(x_A).$$

Holding the Legendre relation, $\partial E_A/\partial g_A = x_A$, so the dynamics never need the
Hessian of $L$. The derivative with respect to $x_A$ is $\nabla^2 L_A\, x_A$ and is exact here,
because the activation is computed differentiably (not detached) before the inner product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .lagrangians import Lagrangian

__all__ = ["NeuronLayer"]


def _as_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, Sequence) or not all(isinstance(s, int) for s in shape):
        raise TypeError(f"NeuronLayer: shape must be an int or a tuple of ints, got {shape!r}.")
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"NeuronLayer: every size in shape must be positive, got {tuple(shape)}.")
    return tuple(shape)


class NeuronLayer(nn.Module):
    r"""A layer of neurons with per-sample state shape ``shape`` and Lagrangian ``lagrangian``.

    Args:
        shape: per-sample state shape, an int or a tuple (e.g. ``(num_tokens, dim)``).
        lagrangian: a :class:`~hopfield.lagrangians.Lagrangian`; may be ``None`` only for a copy
            layer (``copy_of``), which then uses the Lagrangian of the layer it copies.
        tau: time constant $\tau>0$; ``tau=0`` declares a *fast* layer that sits at equilibrium
            (adiabatic elimination, docs/concepts/fast_layers.md#elimination).
        clamped: the dynamics never change this layer's state (an input, a memory copy).
        copy_of: name of another layer whose state this clamped layer copies at the start of each
            update (the clamped memory of the Transformer's attention,
            docs/concepts/fast_layers.md#transformer).

    Example:
        >>> import hopfield as hf
        >>> v = hf.NeuronLayer((49, 64), hf.lagrangians.LayerNorm(64))
        >>> v.shape, v.is_fast
        ((49, 64), False)
    """

    def __init__(self, shape, lagrangian: Lagrangian | None = None, *, tau: float = 1.0,
                 clamped: bool = False, copy_of: str | None = None):
        super().__init__()
        self.shape = _as_shape(shape)
        if lagrangian is None and copy_of is None:
            raise TypeError("NeuronLayer: a Lagrangian is required (only a copy layer, "
                            "copy_of=..., may omit it).")
        if lagrangian is not None and not isinstance(lagrangian, Lagrangian):
            raise TypeError(f"NeuronLayer: lagrangian must be a hopfield.lagrangians.Lagrangian, "
                            f"got {type(lagrangian).__name__}.")
        if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau >= 0):
            raise ValueError(f"NeuronLayer: tau must be a finite number >= 0 (0 = fast layer), "
                             f"got tau={tau!r}.")
        if copy_of is not None:
            clamped = True
        if clamped and tau == 0:
            raise ValueError("NeuronLayer: a clamped layer cannot also be fast (tau=0).")
        self.lagrangian = lagrangian
        self.tau = float(tau)
        self.clamped = bool(clamped)
        self.copy_of = copy_of

    @property
    def is_fast(self) -> bool:
        return self.tau == 0.0

    def activation(self, x: torch.Tensor, lagrangian: Lagrangian | None = None) -> torch.Tensor:
        return (lagrangian or self.lagrangian).activation(x)

    def energy(self, x: torch.Tensor, g: torch.Tensor | None = None,
               lagrangian: Lagrangian | None = None) -> torch.Tensor:
        r"""Legendre energy $\langle x, g\rangle - L(x)$ per sample, shape ``(batch,)``."""
        lag = lagrangian or self.lagrangian
        if g is None:
            g = lag.activation(x)
        return (x * g).reshape(x.shape[0], -1).sum(-1) - lag(x)

    def extra_repr(self) -> str:
        bits = [f"shape={self.shape}", "fast" if self.is_fast else f"tau={self.tau:g}"]
        if self.clamped:
            bits.append("clamped" if self.copy_of is None else f"copy_of={self.copy_of!r}")
        return ", ".join(bits)
