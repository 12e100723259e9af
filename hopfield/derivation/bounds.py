r"""The constants behind the guarantees (docs/concepts/guarantees.md): activation slopes
$\ell_A$, operator norms of couplings, the smoothness $M$ of $\nabla E_\text{syn}$ and Lipschitz
bounds of fixed-point maps.

Every bound here is **rigorous** for the built-in pieces it recognises and ``None`` elsewhere;
a number is trusted only when the code that computes the energy is the built-in code (a subclass
that overrides ``energy``, ``forward`` or ``activation`` is no longer recognised). Weights are
read as they are; callers wrap the whole computation in
:func:`~hopfield.dynamics.spectral.frozen_spectral_norms` so that reading a spectral-normalised
weight never runs a power iteration.
"""

from __future__ import annotations

import math

import torch

from ..core import lagrangians as L
from ..core import synapses as S

__all__ = ["builtin_synapse", "builtin_lagrangian", "activation_lipschitz", "bounded_activation",
           "quadratic_conjugate", "affine_in", "matrix_norm", "conv_norm_bound", "slot_norm",
           "self_coupling", "smoothness"]

_BILINEAR = (S.Dense, S.Conv)
_KNOWN = (S.Dense, S.Conv, S.Bias, S.HopfieldMemory, S.MultiHeadAttention)
_BOUNDED = (L.Tanh, L.Sigmoid, L.Softmax, L.LayerNorm, L.SphericalNorm)


def builtin_synapse(syn) -> type | None:
    """The built-in class whose energy ``syn`` computes unchanged (parametrizations such as a
    spectral norm only rescale its weights), else ``None``."""
    for base in _KNOWN:
        if isinstance(syn, base):
            own = [k for k, v in vars(base).items() if callable(v) and not k.startswith("__")]
            if all(getattr(type(syn), k) is getattr(base, k) for k in own):
                return base
            return None
    return None


def builtin_lagrangian(lag) -> bool:
    """Whether ``lag``'s value, activation and slope declaration are the built-in code."""
    if not isinstance(lag, L.Lagrangian):
        return False
    mro = type(lag).__mro__
    own = mro[:mro.index(L.Lagrangian)]  # the subclasses between the instance and the base
    return bool(own) and not any(
        c.__module__ != L.__name__ and {"forward", "activation", "lipschitz"} & set(vars(c))
        for c in own)


def activation_lipschitz(lag) -> float | None:
    r"""$\ell$: an upper bound on the slope of the activation $g = \nabla L$ (``None``: unknown).

    Layer norm: $\lVert\partial g/\partial x\rVert \le \max|\gamma|/\sqrt{\mathrm{var}+\epsilon}
    \le \max|\gamma|/\sqrt\epsilon$; spherical norm: $|\gamma|/\sqrt\epsilon$ likewise. Others:
    the declared ``lipschitz`` (a user's declaration is taken as given: such a Lagrangian is
    unverified anyway).
    """
    if isinstance(lag, (L.LayerNorm, L.SphericalNorm)) and builtin_lagrangian(lag):
        return float(lag.weight.detach().abs().max()) / math.sqrt(lag.eps)
    value = getattr(lag, "lipschitz", None)
    if value is None:
        return None
    if not builtin_lagrangian(lag) and "lipschitz" not in vars(lag):
        mro = type(lag).__mro__
        declared = next(c for c in mro if "lipschitz" in vars(c))
        computed = next(c for c in mro if {"forward", "activation"} & set(vars(c)))
        if not issubclass(declared, computed):  # inherited from a parent it overrides
            return None
    return float(value)


def bounded_activation(lag) -> bool:
    """Whether the activation's range is bounded (tanh, sigmoid, softmax, layer/spherical norm)."""
    return isinstance(lag, _BOUNDED) and builtin_lagrangian(lag)


def quadratic_conjugate(lag) -> bool:
    r"""$L^*(g) = \tfrac12\lVert g\rVert^2$ on the activation's range: identity, ReLU."""
    return builtin_lagrangian(lag) and (isinstance(lag, L.Identity) or (
        isinstance(lag, L.RectifiedPower) and lag.n == 2.0))


def affine_in(graph, syn_name: str, layer: str) -> str:
    """Is synapse ``syn_name``'s energy affine in ``layer``'s activation? ``"proved"`` (a built-in
    bilinear or bias synapse naming the layer once), ``"declared"`` (the synapse's own
    ``affine_slots()``, checked numerically by the planner), or ``"no"``."""
    edge, syn = graph.edges[syn_name], graph.synapses[syn_name]
    if edge.count(layer) != 1:
        return "no"
    slot = edge.index(layer)
    kind = builtin_synapse(syn)
    if kind in (S.Dense, S.Conv, S.Bias):
        return "proved"
    if kind is not None:
        return "no"
    declared = syn.affine_slots()
    return "declared" if declared is not None and slot in declared else "no"


def matrix_norm(weight: torch.Tensor) -> float:
    """Exact spectral norm $\\lVert W\\rVert_2$ (float64), the weight reshaped to a matrix."""
    w = weight.detach().to(torch.float64)
    w = w.reshape(w.shape[0], -1)
    if w.shape[0] < w.shape[1]:  # same norm; LAPACK's SVD is far slower on wide matrices
        w = w.t()
    return float(torch.linalg.matrix_norm(w.contiguous(), ord=2))


def conv_norm_bound(weight: torch.Tensor) -> float:
    r"""A rigorous bound on the operator norm of a 2-d convolution with kernel ``weight``
    (out, in, k, k), for any stride and padding: $\lVert T\rVert_2 \le
    \sqrt{\lVert T\rVert_1\lVert T\rVert_\infty}$, with the largest row sum
    $\max_o\sum_{c,k,l}|W_{ockl}|$ and the largest column sum $\max_c\sum_{o,k,l}|W_{ockl}|$
    (each input pixel meets each kernel entry at most once)."""
    a = weight.detach().to(torch.float64).abs()
    rows = float(a.sum((1, 2, 3)).max())
    cols = float(a.sum((0, 2, 3)).max())
    return math.sqrt(rows * cols)


def slot_norm(syn, slot: int, cache: dict | None = None) -> float | None:
    """Operator norm (bound) of the linear map from the other endpoint's activation to the
    current into ``slot`` of a built-in bilinear synapse; ``None`` for any other synapse."""
    kind = builtin_synapse(syn)
    if kind not in _BILINEAR:
        return None
    back = slot == 0 and syn.weight_back is not None
    key = (id(syn), back)  # tied: both slots share the norm of W
    if cache is not None and key in cache:
        return cache[key]
    weight = syn.weight_back if back else syn.weight
    value = matrix_norm(weight) if kind is S.Dense else conv_norm_bound(weight)
    if cache is not None:
        cache[key] = value
    return value


def self_coupling(syn, *, nonneg: bool = False) -> float | None:
    r"""For a tied synapse whose every slot is one layer $A$ (a lateral Dense/Conv loop, a
    Hopfield memory): the Lipschitz constant of $g_A \mapsto -\partial E_s/\partial g_A$.

    Dense loop $-\langle g, Wg\rangle$: $\lVert W + W^\top\rVert_2$; Conv loop: twice the
    :func:`conv_norm_bound`; Hopfield memory
    $-\beta^{-1}\sum\log\sum_\mu e^{\beta\xi_\mu\cdot g}$: its Hessian is
    $\beta\xi^\top(\mathrm{diag}\,p - pp^\top)\xi$, whose norm is at most $\beta\lVert\xi\rVert_2^2/2$
    (the variance of a unit vector's entries under $p$ is at most $1/2$). ``None`` otherwise.
    """
    kind = builtin_synapse(syn)
    if not syn.tied:
        return None
    if kind is S.Dense:
        w = syn.weight.detach().to(torch.float64)
        return matrix_norm(w + w.t())
    if kind is S.Conv:
        return 2.0 * conv_norm_bound(syn.weight)
    if kind is S.HopfieldMemory:
        return syn.beta * matrix_norm(syn.patterns) ** 2 / 2.0
    return None


def smoothness(graph, moving, synapses, cache: dict | None = None) -> tuple[float | None, str]:
    r"""$M$: a Lipschitz constant of $g_\text{moving} \mapsto \nabla_{g_\text{moving}}E_\text{syn}$
    with every other layer held, and how it was obtained (or why it is unknown).

    The Hessian restricted to the moving layers is a block matrix with blocks $H_{AB}$; its norm
    is at most $\lambda_{\max}(K)$ of the non-negative matrix $K_{AB} = \sum_s\lVert H^s_{AB}\rVert$
    (a synapse between two moving layers contributes its coupling norm, a loop on one layer its
    :func:`self_coupling`, a synapse affine in every moving endpoint nothing).
    """
    moving = list(dict.fromkeys(moving))
    index = {n: i for i, n in enumerate(moving)}
    K = torch.zeros(len(moving), len(moving), dtype=torch.float64)
    for s in synapses:
        edge, syn = graph.edges[s], graph.synapses[s]
        here = [n for n in edge if n in index]
        if not here:
            continue
        kind = builtin_synapse(syn)
        if kind is S.Bias:
            continue
        if kind in _BILINEAR and len(edge) == 2 and edge[0] != edge[1]:
            if len(here) == 2:
                norm = max(slot_norm(syn, 0, cache), slot_norm(syn, 1, cache))
                a, b = index[edge[0]], index[edge[1]]
                K[a, b] += norm
                K[b, a] += norm
            continue  # affine in a single moving endpoint
        loop = self_coupling(syn) if len(set(edge)) == 1 else None
        if loop is None:
            return None, (f"synapse {s!r} ({type(syn).__name__}) is not bilinear in the moving "
                          f"layer(s) {here}: the Lipschitz constant M of its gradient is unknown")
        K[index[here[0]], index[here[0]]] += loop
    if not len(moving):
        return 0.0, "no moving layer"
    m = float(torch.linalg.eigvalsh(K).max()) if K.abs().max() > 0 else 0.0
    return max(m, 0.0), "λ_max of the coupling-norm matrix"
