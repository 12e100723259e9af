r"""Continuous memories: graded units descending the graph's energy with the leaky step
(docs/concepts/memory.md#continuous-memories).

* **tanh**: the classical couplings on tanh units of gain $\beta$,
  $E_\beta = \sum_i\big(x_i g_i - \beta^{-1}\log\cosh\beta x_i\big) - \tfrac12 g^\top W g$,
  $g = \tanh(\beta x)$. The graph holds it in the state $u = \beta x$: a ``Tanh`` layer and a
  ``Dense`` self-coupling $\beta W/2$, so its energy is $\beta E_\beta$ and its flow
  $\dot u = \beta W g - u$ is the same flow;
* **lse** (Ramsauer et al. 2021): an identity layer and ``HopfieldMemory``,
  $E = \tfrac12\lVert g\rVert^2 - \beta^{-1}\log\sum_\mu e^{\beta\langle\xi_\mu, g\rangle}$; the step
  of size 1 is $g \leftarrow \Xi^\top\mathrm{softmax}(\beta\Xi g)$;
* **ham**: the same memory with its hidden layer kept: visible $v$, a fast hidden layer $h$
  ($\tau = 0$) with a ``Softmax`` Lagrangian, a ``Dense`` coupling $\Xi$. Eliminating $h$ gives the
  lse energy back (docs/concepts/synapses.md#hopfield-memory). ``hidden="relu"`` uses a ``ReLU``
  hidden layer behind tanh units of gain $\beta$, couplings $\Xi\sqrt{\beta/N}$, so that
  eliminating $h$ leaves $-\tfrac{\beta}{2N}\sum_\mu\mathrm{relu}(\langle\xi_\mu, g\rangle)^2$.

A step moves the visible layer by the library's one step rule
(:func:`hopfield.dynamics.steps.step`, ``rule="leaky"``), puts the known entries back, then settles
the fast layers, exactly as :func:`hopfield.dynamics.descend` does without a mask. Default step
sizes never raise the energy (docs/concepts/memory.md#step-sizes): $2/(2+\beta\lVert W\rVert_2)$
for tanh (docs/concepts/dynamics.md#step-size), 1 for lse and ham (their synapse energy is concave
in $g$ once $h$ is eliminated: the step is the concave-convex procedure).
"""

from __future__ import annotations

import math
from functools import partial

import torch

from ..core.graph import EnergyGraph
from ..core.lagrangians import Identity, ReLU, Softmax, Tanh
from ..core.neurons import NeuronLayer
from ..core.synapses import Dense, HopfieldMemory
from ..core.validate import check_positive
from ..dynamics.descent import descent_layers
from ..dynamics.steps import step
from .base import (
    AssociativeMemory,
    RecallResult,
    check_choice,
    check_patterns,
    default_steps,
    hebbian_weight,
)

__all__ = ["ContinuousMemory", "tanh", "modern", "hierarchical"]


class ContinuousMemory(AssociativeMemory):
    """A memory recalled by leaky descent of its graph (build one with :func:`tanh`,
    :func:`modern` or :func:`hierarchical`).

    A query $q$ sets the visible state $x_v = \\text{gain}\\cdot q$ (gain $\\beta$ for tanh units,
    1 for identity units); known entries stay there.
    """

    def __init__(self, graph: EnergyGraph, patterns: torch.Tensor, *, name: str, gain: float,
                 step_size: float, steps: int, tol: float, beta: float, rebuild=None):
        super().__init__(graph, patterns, name=name, beta=beta, rebuild=rebuild)
        self.gain, self.step_size, self.steps, self.tol = gain, step_size, steps, tol

    def start(self, query: torch.Tensor) -> dict[str, torch.Tensor]:
        """The states a recall starts from: $x_v = \\text{gain}\\cdot q$, fast layers settled."""
        xs = self.graph.init_states(query.shape[0], dtype=query.dtype)
        xs[self.visible] = self.gain * query
        return self._settle(xs)

    def _settle(self, xs):
        for n in descent_layers(self.graph)[1]:
            xs[n] = self.graph.currents(xs, targets=[n], method="auto")[n]
        return xs

    def _recall(self, query, mask, steps, tol, keep_history, generator, records_per_sweep):
        graph, v = self.graph, self.visible
        movable = descent_layers(graph)[0]
        xs = self.start(query)
        clamp = xs[v]
        tol = self.tol if tol is None else tol
        energies = [graph.energy(xs, check=False)]
        history = [graph.activations({v: xs[v]})[v]] if keep_history else []
        moved = torch.full((query.shape[0],), math.inf, dtype=query.dtype)
        done = 0
        cur = graph.currents(xs, method="auto")
        for done in range(1, default_steps(steps, self.steps) + 1):  # noqa: B007
            new = dict(xs)
            for n in movable:
                new[n] = step(xs[n], cur[n], rule="leaky", step_size=self.step_size,
                              tau=graph.neurons[n].tau)
            if mask is not None:
                new[v] = torch.where(mask, clamp, new[v])
            moved = (new[v] - xs[v]).abs().amax(-1)
            xs = self._settle(new)
            energies.append(graph.energy(xs, check=False))
            if keep_history:
                history.append(graph.activations({v: xs[v]})[v])
            if float(moved.max()) < tol:
                break
            cur = graph.currents(xs, method="auto")
        output = graph.activations({v: xs[v]})[v]
        return RecallResult(states=xs, output=output, energy=torch.stack(energies), steps=done,
                            converged=moved < tol,
                            history=torch.stack(history) if keep_history else None)


def _spectral_norm(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.double(), ord=2))


def tanh(patterns: torch.Tensor, *, beta: float = 8.0, step_size: float | None = None,
         steps: int = 300, tol: float = 1e-4, dtype: torch.dtype = torch.float32
         ) -> ContinuousMemory:
    r"""The classical Hebbian couplings on tanh units of gain ``beta`` (the graded-response network).

    As $\beta\to\infty$ it becomes the binary classical memory. The default step
    $\alpha = 2/(2+\beta\lVert W\rVert_2)$ never raises the energy
    (docs/concepts/dynamics.md#step-size, with $\ell = 1$ for tanh).
    """
    check_positive("tanh", "beta", beta)
    check_positive("tanh", "step_size", step_size, none_ok=True)
    xi = check_patterns("tanh", patterns, binary=False, dtype=dtype)
    n = xi.shape[1]
    weight = hebbian_weight(xi)
    synapse = Dense(n, n, bias=False).to(dtype)
    with torch.no_grad():
        synapse.weight.copy_(beta * weight / 2)
    graph = EnergyGraph({"v": NeuronLayer(n, Tanh())}, {"W": synapse}, {"W": ("v", "v")}).to(dtype)
    alpha = 2.0 / (2.0 + beta * _spectral_norm(weight)) if step_size is None else step_size
    _check_leaky("tanh", alpha)
    return ContinuousMemory(graph, xi, name="tanh", gain=float(beta), step_size=alpha, steps=steps,
                            tol=tol, beta=float(beta),
                            rebuild=partial(_again, tanh, xi, step_size=step_size, steps=steps,
                                            tol=tol, dtype=dtype))


def modern(patterns: torch.Tensor, *, beta: float = 1.0, step_size: float = 1.0, steps: int = 20,
           tol: float = 1e-5, dtype: torch.dtype = torch.float32) -> ContinuousMemory:
    r"""The continuous modern Hopfield memory (Ramsauer et al. 2021), a ``HopfieldMemory`` synapse:

    $E = \tfrac12\lVert g\rVert^2 - \beta^{-1}\log\sum_\mu e^{\beta\langle\xi_\mu, g\rangle}$; the step
    $\alpha = 1$ is the update $g \leftarrow \Xi^\top\mathrm{softmax}(\beta\Xi g)$, any
    $\alpha\in(0, 1]$ lowers the energy (docs/concepts/memory.md#step-sizes).
    """
    check_positive("modern", "beta", beta)
    xi = check_patterns("modern", patterns, binary=False, dtype=dtype)
    _check_leaky("modern", step_size)
    synapse = HopfieldMemory(xi.shape[1], xi.shape[0], beta=float(beta)).to(dtype)
    with torch.no_grad():
        synapse.patterns.copy_(xi)
    graph = EnergyGraph({"v": NeuronLayer(xi.shape[1], Identity())}, {"xi": synapse},
                        {"xi": ("v",)}).to(dtype)
    return ContinuousMemory(graph, xi, name="lse", gain=1.0, step_size=step_size, steps=steps,
                            tol=tol, beta=float(beta),
                            rebuild=partial(_again, modern, xi, step_size=step_size, steps=steps,
                                            tol=tol, dtype=dtype))


def hierarchical(patterns: torch.Tensor, *, hidden: str = "softmax", beta: float = 1.0,
                 step_size: float = 1.0, steps: int = 20, tol: float = 1e-5,
                 dtype: torch.dtype = torch.float32) -> ContinuousMemory:
    r"""A two-layer memory: visible $v$ (N units), fast hidden $h$ (one unit per pattern), a
    ``Dense`` coupling whose rows are the patterns.

    ``hidden="softmax"``: identity visible units, $\mathrm{softmax}(\beta x_h)$ hidden units,
    couplings $\Xi$; at the hidden layer's equilibrium the energy equals :func:`modern`'s.
    ``hidden="relu"``: tanh visible units of gain $\beta$ (bounded, so the energy is bounded
    below), ReLU hidden units, couplings $\Xi\sqrt{\beta/N}$. The step $\alpha\in(0, 1]$ moves $v$
    with $h$ settled after every step (docs/concepts/memory.md#step-sizes).
    """
    check_choice("hierarchical", "hidden", hidden, ("softmax", "relu"))
    check_positive("hierarchical", "beta", beta)
    xi = check_patterns("hierarchical", patterns, binary=False, dtype=dtype)
    _check_leaky("hierarchical", step_size)
    k, n = xi.shape
    if hidden == "softmax":
        layers = {"v": NeuronLayer(n, Identity()), "h": NeuronLayer(k, Softmax(beta=beta), tau=0)}
        scale, gain = 1.0, 1.0
    else:
        layers = {"v": NeuronLayer(n, Tanh()), "h": NeuronLayer(k, ReLU(), tau=0)}
        scale, gain = math.sqrt(beta / n), float(beta)
    synapse = Dense(n, k, bias=False).to(dtype)
    with torch.no_grad():
        synapse.weight.copy_(scale * xi)
    graph = EnergyGraph(layers, {"xi": synapse}, {"xi": ("v", "h")}).to(dtype)
    return ContinuousMemory(graph, xi, name="ham" if hidden == "softmax" else "ham_relu",
                            gain=gain, step_size=step_size, steps=steps, tol=tol, beta=float(beta),
                            rebuild=partial(_again, hierarchical, xi, hidden=hidden,
                                            step_size=step_size, steps=steps, tol=tol,
                                            dtype=dtype))


def _check_leaky(who: str, step_size) -> None:
    check_positive(who, "step_size", step_size)
    if step_size > 1:
        raise ValueError(f"{who}: expected step_size <= 1 (tau = 1: a larger leaky step "
                         f"overshoots), got step_size={step_size!r}.")


def _again(constructor, xi, beta, **kwargs):
    return constructor(xi, beta=beta, **kwargs)

