r"""A chunk of descent steps as one function, the unit :func:`~hopfield.dynamics.descend_compiled`
hands to ``torch.compile`` (docs/concepts/dynamics.md#compiled-descent).

``chunk(xs, cur, done, tol) -> (xs, cur, done, out)`` runs ``length`` steps of exactly the
dynamics of :func:`~hopfield.dynamics.descend` (the one step rule of
:func:`~hopfield.dynamics.steps.step`, slow layers together, then fast layers in turn) from states
``xs`` whose currents are ``cur``, and returns the new states with their currents, so the next
chunk starts without recomputing them. It has no data-dependent Python branch, so one graph
serves every call:

* stats (``record=True``) are computed inside the chunk from the currents the step needs anyway:
  the gradient norm $\lVert x - I\rVert$ and each energy term, bilinear synapses reading their
  energy off their current (:meth:`~hopfield.core.graph.EnergyGraph.currents_and_energies`);
* a tolerance (``with_tol=True``) is checked inside the chunk: once the largest gradient norm falls
  below ``tol`` the flag ``done`` is set and the remaining steps of the chunk leave the states
  unchanged (``torch.where``), so the result equals the eager descent that stops at that step;
  ``out["active"]`` marks the steps that ran.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch

from ..core.graph import EnergyGraph
from .descent import _grad_norm, advance, descent_layers

__all__ = ["make_descent_chunk", "currents_and_terms"]


def currents_and_terms(graph: EnergyGraph, xs: dict, *, method: str = "auto"):
    """``(currents, energy terms)`` at states ``xs``: the terms of
    :meth:`~hopfield.core.graph.EnergyGraph.energy_terms` (neurons, then synapses), with the
    synapse energies read off the currents where a synapse allows it."""
    gs = graph.activations(xs)
    cur, syn_e = graph.currents_and_energies(gs, method=method)
    terms = {n: layer.energy(xs[n], gs[n], graph.lagrangian_of(n))
             for n, layer in graph.neurons.items()}
    terms.update(syn_e)
    return cur, terms


def make_descent_chunk(graph: EnergyGraph, *, length: int, step_size: float, rule: str = "leaky",
                       method: str = "auto", record: bool = True,
                       with_tol: bool = False) -> Callable:
    """The function running ``length`` descent steps (see the module docstring)."""
    movable, fast = descent_layers(graph)
    moving = movable + fast
    taus = {n: graph.neurons[n].tau for n in movable}

    def one_step(xs, cur):
        new = advance(graph, xs, cur, movable, fast, taus, rule=rule, step_size=step_size,
                      method=method, checked=False)
        if record:
            new_cur, terms = currents_and_terms(graph, new, method=method)
        else:
            new_cur, terms = graph.currents(gs=graph.activations(new), method=method), None
        return new, new_cur, terms

    def chunk(xs, cur, done=None, tol=None):
        rec: dict[str, list] = {"active": [], "grad_norm": [], "energy": []}
        rec_terms: dict[str, list] = {}
        for _ in range(length):
            new, new_cur, terms = one_step(xs, cur)
            gn = _grad_norm(new, new_cur, moving) if (record or with_tol) else None
            if with_tol:
                rec["active"].append(~done)
                xs = {n: torch.where(done, xs[n], new[n]) for n in new}
                cur = {n: torch.where(done, cur[n], new_cur[n]) for n in new_cur}
                done = done | (gn.max() < tol)
            else:
                xs, cur = new, new_cur
            if record:
                for k, v in terms.items():
                    rec_terms.setdefault(k, []).append(v.detach())
                rec["energy"].append(sum(terms.values()).detach())
                rec["grad_norm"].append(gn.detach())
        out = {k: torch.stack(v) for k, v in rec.items() if v}
        if rec_terms:
            out["energy_terms"] = {k: torch.stack(v) for k, v in rec_terms.items()}
        return xs, cur, done, out

    # a code object of its own: torch.compile keeps one cache (and one recompile limit) per code
    # object, and every graph, length and setting is a different chunk
    return types.FunctionType(chunk.__code__.replace(), chunk.__globals__,
                              f"descent_chunk_{length}", chunk.__defaults__, chunk.__closure__)
