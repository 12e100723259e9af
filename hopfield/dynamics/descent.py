r"""Energy descent of a whole graph (docs/concepts/dynamics.md#discrete-steps).

Continuous dynamics $\tau_A \dot x_A = I_A - x_A$ discretised with step $\alpha$:

* ``rule="leaky"``: $x_A \leftarrow x_A + (\alpha/\tau_A)(I_A - x_A)$;
* ``rule="residual"``: $x_A \leftarrow x_A + \alpha I_A$ (the Energy Transformer's step on $g$).

Fast layers ($\tau=0$) are set to their current after each step, one after another (exact
coordinate minimisation when their synapses are linear in them); clamped layers never move.
With convex Lagrangians, tied synapses and a small enough step the total energy never increases;
``hf.lyapunov_report(graph, step_size=α, rule=rule)`` checks exactly these steps, with the same
``step_size`` and ``rule`` (docs/concepts/guarantees.md#theorem).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.graph import EnergyGraph
from ..core.validate import is_finite_real, is_int
from .steps import RULES, step

__all__ = ["DescentStats", "descend", "RULES"]



@dataclass
class DescentStats:
    """Per-step record of a descent: energies (total and per term) and gradient norms.

    Each list has ``steps + 1`` entries (the initial state first); each entry is a ``(batch,)``
    tensor, or a dict of them for ``energy_terms``.
    """

    energy: list = field(default_factory=list)
    energy_terms: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    steps: int = 0
    converged: bool = False

    def energy_matrix(self) -> torch.Tensor:
        """Energies as a ``(steps + 1, batch)`` tensor."""
        return torch.stack(self.energy)


def _grad_norm(xs, cur, names):
    sq = sum(((xs[n] - cur[n]) ** 2).reshape(xs[n].shape[0], -1).sum(-1) for n in names)
    return torch.sqrt(sq)


def descent_layers(graph: EnergyGraph) -> tuple[list[str], list[str]]:
    """``(movable, fast)``: the slow, unclamped layers that step, and the fast ones that settle."""
    movable = [n for n, l in graph.neurons.items() if not l.clamped and not l.is_fast]
    fast = [n for n, l in graph.neurons.items() if l.is_fast]
    return movable, fast


def advance(graph: EnergyGraph, xs: dict, cur: dict, movable, fast, taus: dict, *, rule: str,
            step_size: float, method: str, checked: bool = True) -> dict:
    """One descent step from states ``xs`` with currents ``cur``: every movable layer by the one
    step rule (together), memory copies refilled, then each fast layer set to its current in
    turn. ``checked`` asks each fast current from the states, which checks them (a NaN raises,
    naming its layer, at the step where it appears); the compiled chunk passes activations."""
    new = dict(xs)
    for n in movable:
        new[n] = step(xs[n], cur[n], rule=rule, step_size=step_size, tau=taus[n])
    new = graph.fill_copies(new)
    for n in fast:
        into = graph.currents(new, targets=[n], method=method) if checked else \
            graph.currents(gs=graph.activations(new), targets=[n], method=method)
        new[n] = into[n]
    return new


def check_descent_args(who, graph, xs, steps, step_size, rule, tol=None):
    """Validate a descent's settings and states; returns ``(xs with copies filled, movable, fast)``."""
    if rule not in RULES:
        raise ValueError(f"{who}: unknown rule {rule!r}; valid: {', '.join(RULES)}.")
    if not (is_finite_real(step_size) and step_size > 0):
        raise ValueError(f"{who}: step_size must be positive and finite, got {step_size!r}.")
    if not (is_int(steps) and steps >= 0):
        raise ValueError(f"{who}: steps must be an int >= 0, got {steps!r}.")
    if tol is not None and not (is_finite_real(tol) and tol > 0):
        raise ValueError(f"{who}: tol must be a positive number (finite, or None), got {tol!r}.")
    graph.check_states(xs)
    movable, fast = descent_layers(graph)
    for n in movable:
        if rule == "leaky" and step_size > graph.neurons[n].tau:
            raise ValueError(f"{who}: step_size={step_size:g} exceeds tau={graph.neurons[n].tau:g} "
                             f"of neuron {n!r}; the leaky Euler step overshoots (use "
                             f"step_size <= tau).")
    return graph.fill_copies(xs), movable, fast


def descend(graph: EnergyGraph, xs: dict[str, torch.Tensor], *, steps: int = 100,
            step_size: float = 0.1, rule: str = "leaky", tol: float | None = None,
            record: bool = True, method: str = "auto") -> tuple[dict, DescentStats]:
    r"""Run ``steps`` descent steps from ``xs``; stop early once the largest gradient norm
    $\max_A \lVert\partial E/\partial g_A\rVert$ falls below ``tol``.

    Returns ``(xs, stats)``. ``method`` picks how currents are computed (see
    :meth:`EnergyGraph.currents`). Gradients flow through the steps when grad mode is on.

    Example:
        >>> import hopfield as hf, torch
        >>> g = hf.EnergyGraph({"v": hf.NeuronLayer(4, hf.lagrangians.Identity()),
        ...                     "h": hf.NeuronLayer(3, hf.lagrangians.ReLU())},
        ...                    {"W": hf.synapses.Dense(4, 3)}, {"W": ("v", "h")})
        >>> xs, st = hf.dynamics.descend(g, g.init_states(2, std=1.0), steps=5)
        >>> len(st.energy)
        6
    """
    xs, movable, fast = check_descent_args("descend", graph, xs, steps, step_size, rule, tol)
    stats = DescentStats()

    def log(cur):
        if record:
            terms = {k: v.detach() for k, v in graph.energy_terms(xs, check=False).items()}
            stats.energy_terms.append(terms)
            stats.energy.append(sum(terms.values()))
            stats.grad_norm.append(_grad_norm(xs, cur, movable + fast).detach())

    taus = {n: graph.neurons[n].tau for n in movable}
    cur = graph.currents(xs, method=method)
    log(cur)
    for _ in range(steps):
        xs = advance(graph, xs, cur, movable, fast, taus, rule=rule, step_size=step_size,
                     method=method)
        cur = graph.currents(xs, method=method)
        stats.steps += 1
        log(cur)
        if tol is not None:
            gn = stats.grad_norm[-1] if record else _grad_norm(xs, cur, movable + fast)
            if float(gn.detach().max()) < tol:
                stats.converged = True
                break
    return xs, stats
