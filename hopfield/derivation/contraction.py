r"""Contraction of implicit fast groups (docs/concepts/guarantees.md#contraction).

An implicit component solves $z = y + F(z)$. When $\mathrm{Lip}(F) < 1$ the residual map
$1 - F$ is invertible and plain iteration converges (Banach). Two numbers are reported:

* a **rigorous bound** (:func:`contraction_bound`): operator norms of the couplings times the
  activations' slopes, propagated along the map's sweep — it generalises the two-layer
  $\ell_2\ell_3\lVert W_{32}\rVert\lVert W_{23}\rVert$ of iMixer to any component of built-in
  bilinear synapses;
* an **estimate** (:func:`contraction_estimate`): $\lVert\partial F/\partial z\rVert_2$ at the
  solution for a given input, by power iteration with Jacobian-vector products. Local, and never
  a proof.
"""

from __future__ import annotations

import math

import torch

from ..dynamics.spectral import frozen_spectral_norms
from . import checks as C
from .bounds import activation_lipschitz, builtin_lagrangian, slot_norm

__all__ = ["contraction_bound", "contraction_estimate", "contraction_check"]


def contraction_bound(graph, comp, cache: dict | None = None
                      ) -> tuple[float | None, str, bool]:
    r"""A rigorous bound on $\mathrm{Lip}(F)$ of an implicit component's fixed-point map.

    Mirrors the map's sweep: the iterated layers' activations have slope $\ell_n$; each layer
    computed in the sweep gets $\mathrm{Lip}(c_n) \le \sum \lVert W\rVert\,\mathrm{Lip}(g_m)$
    over its internal couplings, and $\mathrm{Lip}(g_n) \le \ell_n\mathrm{Lip}(c_n)$ when the
    sweep re-activates it. Then $\mathrm{Lip}(F) \le (\sum_{n\in\text{state}}
    \mathrm{Lip}(c_n)^2)^{1/2}$. For iMixer's chain this is
    $\ell_2\ell_3\lVert W_{32}\rVert\lVert W_{23}\rVert$. Returns ``(bound, how, rigorous)``:
    ``bound`` is ``None`` (``how`` says why) when a coupling is not a built-in bilinear synapse or
    a slope is unknown; ``rigorous`` is ``False`` when a user Lagrangian's declared slope was used.
    """
    layers = set(comp.layers)
    lip = {}
    for n in comp.state:
        ell = activation_lipschitz(graph.lagrangian_of(n))
        if ell is None:
            return None, f"the slope of {n!r}'s activation is unknown", False
        lip[n] = ell
    needs_act = set(comp.eliminated) | (set(comp.state) if len(comp.state) > 1 else set())
    out = {}
    for n in comp.sweep:
        total = 0.0
        for s, i in comp.internal[n]:
            edge, syn = graph.edges[s], graph.synapses[s]
            norm = slot_norm(syn, i, cache) if len(edge) == 2 else None
            if norm is None:
                return None, (f"synapse {s!r} ({type(syn).__name__}) inside the group is not a "
                              f"built-in bilinear synapse"), False
            other = edge[1 - i]
            total += norm * lip.get(other, 0.0) if other in layers else 0.0
        out[n] = total
        if n in needs_act:
            ell = activation_lipschitz(graph.lagrangian_of(n))
            if ell is None:
                return None, f"the slope of {n!r}'s activation is unknown", False
            lip[n] = ell * total
    rigorous = all(builtin_lagrangian(graph.lagrangian_of(n)) for n in comp.layers)
    how = "operator norms × activation slopes" + ("" if rigorous else
                                                   ", with a user Lagrangian's declared slope")
    return math.sqrt(sum(out[n] ** 2 for n in comp.state)), how, rigorous


def contraction_check(block, implicit, x, clamped, cache) -> C.Check:
    """The ``contraction`` check: a rigorous bound per implicit component (proved when < 1),
    and, given an input ``x``, a power-iteration ESTIMATE at the solution (never a proof)."""
    parts = []
    counters: dict = {}
    for gi, p, comp in implicit:
        ci = counters[gi] = counters.get(gi, -1) + 1
        bound, how, rigorous = contraction_bound(block.graph, comp, cache)
        trusted = rigorous and bound is not None and bound < 1.0
        if bound is None:
            text = f"{p.name}/{ci}: no rigorous bound ({how})"
        else:
            verdict = " < 1: (1 − F) is invertible" if trusted else \
                " ≥ 1: not a guaranteed contraction" if bound >= 1.0 else ""
            text = f"{p.name}/{ci}: Lip(F) ≤ {bound:.4g}{verdict} ({how})"
        status = "proved" if trusted else "unverified"
        if x is not None:
            est = contraction_estimate(block, x, group=gi, component=ci, **clamped)
            text += f"; ESTIMATE ‖∂F/∂z‖ ≈ {est:.4g} at the solution (power iteration, not a proof)"
            status = "estimated" if status != "proved" and est < 1.0 else status
        parts.append((status, text))
    return C.combine("contraction", parts, "; ".join(t for _, t in parts))


def contraction_estimate(block, x, *, group: int = 0, component: int = 0, iters: int = 30,
                         seed: int = 0, **clamped) -> float:
    r"""ESTIMATE of $\lVert\partial F/\partial z\rVert_2$ at the solution $z^\star$ of an implicit
    component (the largest over the batch), by power iteration on $J^\top J$ with Jacobian-vector
    products (double backward through ``block.residual_map``). A local estimate at one input,
    never a proof; it changes nothing in the block (private generator, frozen spectral norms)."""
    with frozen_spectral_norms(block):
        with torch.no_grad():
            z, _, _ = block.solve_implicit(x, group, component, **clamped)
        z = z.detach()
        batch = z.shape[0]
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(z.shape, generator=gen, dtype=torch.float64).to(z)

        def unit(t):
            norm = t.reshape(batch, -1).norm(dim=1).clamp_min(1e-30)
            return t / norm.reshape(batch, *([1] * (t.dim() - 1)))

        v, sigma = unit(v), torch.zeros(batch)
        with torch.enable_grad():
            zz = z.clone().requires_grad_(True)
            fz = zz - block.residual_map(zz, x, group, component, **clamped)
            for _ in range(iters):
                u = torch.zeros_like(fz, requires_grad=True)
                (jtu,) = torch.autograd.grad(fz, zz, u, create_graph=True)
                (jv,) = torch.autograd.grad(jtu, u, v)
                sigma = jv.reshape(batch, -1).norm(dim=1)
                (jtjv,) = torch.autograd.grad(fz, zz, jv, retain_graph=True)
                v = unit(jtjv)
    return float(sigma.max())
