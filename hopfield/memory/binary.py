r"""Binary memories: ±1 units updated asynchronously (docs/concepts/memory.md#binary-memories).

The units form one layer with the :class:`Sign` Lagrangian $L(x) = \sum_i |x_i|$, whose activation
is $g = \mathrm{sign}(x)$ and whose Legendre term $\langle x, g\rangle - L(x)$ is zero, so the
graph's energy is the synapse energy alone. Three synapses give three memories:

* **classical** (Hopfield 1982): Hebbian $W = N^{-1}\sum_\mu \xi_\mu\xi_\mu^\top$ with zero
  diagonal, held by a ``Dense`` self-coupling of weight $W/2$ on the edge ``(v, v)``:
  $E = -\tfrac12\sigma^\top W\sigma$;
* **poly** (Krotov & Hopfield 2016): $E = -\sum_\mu F(\langle\xi_\mu,\sigma\rangle)$ with the
  rectified polynomial $F(z) = \mathrm{relu}(z)^n$, a ``FunctionSynapse``;
* **exp** (Demircigil et al. 2017): ``HopfieldMemory`` holds $E = -\beta^{-1}\log\sum_\mu
  e^{\beta\langle\xi_\mu,\sigma\rangle}$, the logarithm of Demircigil's
  $-\sum_\mu e^{\beta\langle\xi_\mu,\sigma\rangle}$ (docs/concepts/memory.md#exp-in-the-log-domain).

Every energy is a function of the overlaps $m_\mu = \langle\xi_\mu, \sigma\rangle$. The
asynchronous update visits the units one at a time in a random order and sets unit $i$ to the sign
that gives the lower energy, $E(\sigma_i{=}{+1})$ against $E(\sigma_i{=}{-1})$ with the other units
held: exact coordinate descent, so the energy never rises (for the classical energy this is
$\sigma_i \leftarrow \mathrm{sign}(W\sigma)_i$). The comparison runs on the overlaps, updated in
place after each flip; ``tests/test_memory.py`` pins :meth:`BinaryMemory.energy_gap` to the
graph's energy.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch.nn import functional as F

from ..core.graph import EnergyGraph
from ..core.lagrangians import Lagrangian
from ..core.neurons import NeuronLayer
from ..core.synapses import Dense, FunctionSynapse, HopfieldMemory
from ..core.validate import check_int, check_positive
from .base import (
    AssociativeMemory,
    RecallResult,
    check_degree,
    check_patterns,
    default_steps,
    hebbian_weight,
)

__all__ = ["Sign", "BinaryMemory", "classical", "polynomial", "exponential"]


class Sign(Lagrangian):
    r"""$L(x) = \sum_i |x_i|$, activation $g = \mathrm{sign}(x)$: a binary ±1 unit.

    The $\beta\to\infty$ limit of $\beta^{-1}\log\cosh(\beta x)$ (a tanh unit of gain $\beta$).
    Convex; its Legendre term $\langle x, \mathrm{sign}(x)\rangle - |x|$ vanishes everywhere.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().reshape(x.shape[0], -1).sum(-1)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x)


class BinaryMemory(AssociativeMemory):
    """A memory of ±1 patterns recalled by asynchronous sweeps (build one with :func:`classical`,
    :func:`polynomial` or :func:`exponential`).

    ``overlap_energy(m)`` gives the energy as a function of the overlaps ``m`` ``(..., K)``, equal
    to the graph's energy up to a constant on the hypercube; it decides every unit update.
    """

    binary = True

    def __init__(self, graph: EnergyGraph, patterns: torch.Tensor, *, name: str,
                 overlap_energy: Callable[[torch.Tensor], torch.Tensor],
                 beta: float | None = None,
                 rebuild: Callable[[float], BinaryMemory] | None = None, sweeps: int = 10):
        super().__init__(graph, patterns, name=name, beta=beta, rebuild=rebuild)
        self.overlap_energy = overlap_energy
        self.sweeps = sweeps

    def _gap(self, a: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        # a: (batch, K) overlaps without unit i; col: (K,) the patterns' entries at unit i
        return self.overlap_energy(a + col) - self.overlap_energy(a - col)

    def energy_gap(self, state: torch.Tensor, unit: int) -> torch.Tensor:
        r"""$E(\sigma_i{=}{+1}) - E(\sigma_i{=}{-1})$ per sample, the other units of ``state``
        ``(batch, N)`` held; the asynchronous update sets $\sigma_i = -\mathrm{sign}$ of it."""
        check_int(f"{self.name} memory energy_gap", "unit", unit)
        if unit >= self.dim:
            raise ValueError(f"{self.name} memory energy_gap: expected unit < N={self.dim}, got "
                             f"unit={unit}.")
        state = state.to(self.patterns.dtype)
        col = self.patterns[:, unit]
        a = state @ self.patterns.T - state[:, unit:unit + 1] * col
        return self._gap(a, col)

    def _recall(self, query, mask, steps, tol, keep_history, generator, records_per_sweep):
        xi = self.patterns  # (K, N)
        s = query.clone()  # (batch, N), entries -1, 0, +1
        free = None if mask is None else ~mask
        m = s @ xi.T  # (batch, K) overlaps, kept up to date after every flip
        n_units = self.dim
        # records inside a sweep: after unit floor(j N / r), j = 1 .. r-1 (r <= N: all distinct)
        marks = {j * n_units // records_per_sweep for j in range(1, records_per_sweep)}
        energies, history = [], []

        def record():
            energies.append(self.graph.energy({"v": s}, check=False))
            if keep_history:
                history.append(s.clone())

        record()
        changed = torch.zeros(s.shape[0], dtype=torch.bool)
        sweeps = 0
        for sweeps in range(1, default_steps(steps, self.sweeps) + 1):  # noqa: B007
            changed = torch.zeros(s.shape[0], dtype=torch.bool)
            order = torch.randperm(n_units, generator=generator).tolist()
            for k, i in enumerate(order):
                col, old = xi[:, i], s[:, i]
                gap = self._gap(m - old[:, None] * col, col)
                new = torch.where(gap < 0, 1.0, torch.where(gap > 0, -1.0, old)).to(s.dtype)
                if free is not None:
                    new = torch.where(free[:, i], new, old)
                delta = new - old
                flipped = delta != 0
                if flipped.any():
                    m.addr_(delta, col)
                    s[:, i] = new
                    changed |= flipped
                if k + 1 in marks:
                    record()
            record()
            if not changed.any():
                break
        return RecallResult(states={"v": s}, output=s, energy=torch.stack(energies),
                            steps=sweeps, converged=~changed,
                            history=torch.stack(history) if keep_history else None)


def _graph(dim: int, name: str, synapse, dtype) -> EnergyGraph:
    return EnergyGraph({"v": NeuronLayer(dim, Sign())}, {name: synapse},
                       {name: ("v",) * synapse.arity}).to(dtype)


def classical(patterns: torch.Tensor, *, sweeps: int = 10,
              dtype: torch.dtype = torch.float64) -> BinaryMemory:
    r"""The classical Hopfield memory of ±1 ``patterns`` ``(K, N)``: $E = -\tfrac12\sigma^\top W\sigma$.

    $W = N^{-1}\sum_\mu\xi_\mu\xi_\mu^\top$ with zero diagonal (Hebb's rule), a ``Dense``
    self-coupling of weight $W/2$, whose current into $v$ is the local field $W\sigma$. Capacity
    about $0.138N$ (Amit, Gutfreund & Sompolinsky 1985; docs/concepts/memory.md#capacity).

    Example:
        >>> import torch, hopfield as hf
        >>> xi = torch.tensor([[1., -1, 1, -1, 1, 1], [1, 1, -1, -1, 1, -1]])
        >>> mem = hf.memory.classical(xi)
        >>> mem.recall(xi).output.equal(xi.double())
        True
    """
    xi = check_patterns("classical", patterns, binary=True, dtype=dtype)
    n = xi.shape[1]
    weight = hebbian_weight(xi)
    synapse = Dense(n, n, bias=False).to(dtype)
    with torch.no_grad():
        synapse.weight.copy_(weight / 2)  # edge (v, v): -<g, (W/2) g> = -1/2 g^T W g
    graph = _graph(n, "W", synapse, dtype)
    return BinaryMemory(graph, xi, name="classical", sweeps=sweeps,
                        overlap_energy=lambda m: -(m * m).sum(-1) / (2 * n))


def polynomial(patterns: torch.Tensor, *, n: int = 3, rectified: bool = True, sweeps: int = 10,
               dtype: torch.dtype = torch.float64) -> BinaryMemory:
    r"""Dense associative memory $E = -\sum_\mu F(\langle\xi_\mu,\sigma\rangle)$ of degree ``n``.

    $F(z) = \mathrm{relu}(z)^n$ by default (``rectified=True``), the rectified polynomial of
    Krotov & Hopfield (2016): convex for every $n$, so odd degrees work, and a pattern with
    negative overlap adds neither energy nor crosstalk (the mirror states $-\xi_\mu$ are no
    attractors). ``rectified=False`` gives the paper's $F(z) = z^n$, for even ``n`` only (for odd
    ``n`` it would make the $-\xi_\mu$ energy maxima). Capacity grows as $N^{n-1}$
    (docs/concepts/memory.md#capacity).
    """
    n = check_degree("polynomial", n)
    if not rectified and n % 2:
        raise ValueError(f"polynomial: F(z) = z^n needs an even degree, got n={n}; pass "
                         f"rectified=True (F(z) = relu(z)^n) or an even n.")
    xi = check_patterns("polynomial", patterns, binary=True, dtype=dtype)
    interaction = (lambda z: F.relu(z) ** n) if rectified else (lambda z: z ** n)

    def fn(g, patterns):  # (batch, N) -> (batch,)
        return -interaction(g @ patterns.T).sum(-1)

    synapse = FunctionSynapse(fn, arity=1, params={"patterns": xi.clone()})
    graph = _graph(xi.shape[1], "xi", synapse, dtype)
    return BinaryMemory(graph, xi, name=f"poly{n}", sweeps=sweeps,
                        overlap_energy=lambda m: -interaction(m).sum(-1))


def exponential(patterns: torch.Tensor, *, beta: float = 1.0, sweeps: int = 10,
                dtype: torch.dtype = torch.float64) -> BinaryMemory:
    r"""Exponential memory (Demircigil et al. 2017) of ±1 ``patterns``, held in the log domain.

    The graph holds $E = -\beta^{-1}\log\sum_\mu e^{\beta\langle\xi_\mu,\sigma\rangle}$ (the
    ``HopfieldMemory`` synapse), a strictly increasing function of Demircigil's energy
    $-\sum_\mu e^{\beta\langle\xi_\mu,\sigma\rangle}$: the unit updates, fixed points and capacity are
    Demircigil's, and the energy stays finite for any $N$. Capacity exponential in $N$.
    """
    check_positive("exponential", "beta", beta)
    xi = check_patterns("exponential", patterns, binary=True, dtype=dtype)
    synapse = HopfieldMemory(xi.shape[1], xi.shape[0], beta=float(beta)).to(dtype)
    with torch.no_grad():
        synapse.patterns.copy_(xi)
    graph = _graph(xi.shape[1], "xi", synapse, dtype)
    return BinaryMemory(graph, xi, name="exp", beta=float(beta), sweeps=sweeps,
                        rebuild=partial(_exp_again, xi, sweeps, dtype),
                        overlap_energy=lambda m: -torch.logsumexp(beta * m, -1) / beta)


def _exp_again(xi, sweeps, dtype, beta):
    return exponential(xi, beta=beta, sweeps=sweeps, dtype=dtype)
