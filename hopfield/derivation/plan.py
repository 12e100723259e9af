"""Planning a derivation: which layers of a group are fast, how they split into explicit and
implicit components, in what order an implicit component is iterated (THEORY §4).

Used by :func:`hopfield.derive`; the classes here are the plan a :class:`~hopfield.DerivedBlock`
executes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.errors import WiringError
from ..core.lagrangians import Lagrangian
from ..core.synapses import Bias
from ..dynamics.implicit import GRAD_MODES
from ..dynamics.solvers import get_solver

if TYPE_CHECKING:
    from ..core.graph import EnergyGraph

__all__ = ["Group", "STEPS"]

STEPS = ("residual", "leaky")


@dataclass
class Group:
    """One operator-splitting group: the synapses it owns and how the visible layer steps.

    Args:
        synapses: names of the group's synapses (those touching the visible layer and those
            among the group's fast layers).
        name: a label for ``describe()`` (default ``group<i>``).
        step: ``"residual"`` ($x \\leftarrow x + \\alpha I$) or ``"leaky"``
            ($x \\leftarrow x + (\\alpha/\\tau)(I - x)$).
        step_size: $\\alpha$.
        lagrangian: the visible layer's Lagrangian as this group sees it (e.g. the Mixer's
            separate ``norm1``/``norm2``); ``None`` uses the graph's. A per-group Lagrangian is a
            splitting relaxation: the block then has no single energy.
        solver, max_iter, tol, grad, solver_options: how implicit components are solved
            (``None`` inherits :func:`derive`'s).
    """

    synapses: Sequence[str]
    name: str | None = None
    step: str | None = None
    step_size: float | None = None
    lagrangian: Lagrangian | None = None
    solver: str | None = None
    max_iter: int | None = None
    tol: float | None = None
    grad: str | None = None
    solver_options: dict | None = None


@dataclass
class _Component:
    layers: list[str]
    implicit: bool
    state: list[str] = field(default_factory=list)  # iterated layers (roots first)
    eliminated: list[str] = field(default_factory=list)  # recomputed inside the map
    order: list[str] = field(default_factory=list)  # init order (ascending distance)
    sweep: list[str] = field(default_factory=list)  # map order (descending distance)
    external: dict = field(default_factory=dict)  # layer -> [(syn, slot)] from slow layers only
    internal: dict = field(default_factory=dict)  # layer -> [(syn, slot)] among component layers
    lower: dict = field(default_factory=dict)  # layer -> [(syn, slot)] to lower-distance layers


@dataclass
class _Plan:
    name: str
    synapses: list[str]
    step: str
    step_size: float
    lagrangian: Lagrangian | None
    copies: list[str]
    components: list[_Component]
    into_visible: list  # [(syn, slot)]
    solver: str
    max_iter: int
    tol: float | None
    grad: str
    solver_options: dict


def _self_coupled(graph: EnergyGraph, syn_name: str, layer: str) -> bool:
    edge, syn = graph.edges[syn_name], graph.synapses[syn_name]
    if edge.count(layer) > 1:
        return True
    return len(edge) == 1 and not isinstance(syn, Bias)


def _plan_group(graph, visible, group: Group, index: int, defaults: dict, owned: dict) -> _Plan:
    name = group.name or f"group{index}"
    syns = list(group.synapses)
    if not syns:
        raise WiringError(f"derive: {name} lists no synapses.")
    for s in syns:
        if s not in graph.edges:
            raise WiringError(f"derive: {name} names unknown synapse {s!r}; declared synapses: "
                              f"{sorted(graph.edges)}.")
        if s in owned:
            raise WiringError(f"derive: synapse {s!r} is in both {owned[s]} and {name}; each "
                              f"synapse belongs to one group.")
        owned[s] = name
    touched = {n for s in syns for n in graph.edges[s]}
    if visible not in touched:
        raise WiringError(f"derive: no synapse of {name} ({syns}) touches the visible layer "
                          f"{visible!r}; a group must drive the visible layer.")
    fast, copies = [], []
    for n in sorted(touched - {visible}):
        layer = graph.neurons[n]
        if layer.is_fast:
            fast.append(n)
        elif layer.copy_of is not None:
            if layer.copy_of != visible:
                raise WiringError(f"derive: layer {n!r} copies {layer.copy_of!r}, but only copies "
                                  f"of the visible layer {visible!r} are supported.")
            copies.append(n)
        elif not layer.clamped:
            raise WiringError(f"derive: layer {n!r} in {name} is neither the visible layer, fast "
                              f"(tau=0) nor clamped; derive updates only {visible!r}. Declare "
                              f"{n!r} with tau=0 (fast) or clamped=True.")
    fast_set = set(fast)
    # connected components among fast layers (through the group's synapses)
    adj = {n: set() for n in fast}
    for s in syns:
        fe = [n for n in graph.edges[s] if n in fast_set]
        for a in fe:
            adj[a] |= set(fe) - {a}
    seen, comps = set(), []
    for n in fast:
        if n in seen:
            continue
        stack, comp = [n], []
        while stack:
            m = stack.pop()
            if m in seen:
                continue
            seen.add(m)
            comp.append(m)
            stack.extend(adj[m] - seen)
        comps.append(sorted(comp))
    components = [_plan_component(graph, syns, c, fast_set, name) for c in comps]
    into_visible = [(s, i) for s in syns for i, n in enumerate(graph.edges[s]) if n == visible]
    opt = {k: getattr(group, k) if getattr(group, k) is not None else defaults[k]
           for k in ("step", "step_size", "solver", "max_iter", "tol", "grad", "solver_options")}
    if opt["step"] not in STEPS:
        raise ValueError(f"derive: {name}: unknown step {opt['step']!r}; valid: {', '.join(STEPS)}.")
    if not opt["step_size"] > 0:
        raise ValueError(f"derive: {name}: step_size must be positive, got {opt['step_size']!r}.")
    if opt["step"] == "leaky" and graph.neurons[visible].tau == 0:
        raise ValueError(f"derive: the visible layer {visible!r} is fast (tau=0); it needs tau > 0.")
    if opt["grad"] not in GRAD_MODES:
        raise ValueError(f"derive: {name}: unknown grad {opt['grad']!r}; valid: "
                         f"{', '.join(GRAD_MODES)}.")
    get_solver(opt["solver"])  # validates the name
    if group.lagrangian is not None and not isinstance(group.lagrangian, Lagrangian):
        raise TypeError(f"derive: {name}: lagrangian must be a Lagrangian, got "
                        f"{type(group.lagrangian).__name__}.")
    return _Plan(name=name, synapses=syns, lagrangian=group.lagrangian, copies=copies,
                 components=components, into_visible=into_visible,
                 solver_options=dict(opt.pop("solver_options") or {}), **opt)


def _plan_component(graph, syns, layers, fast_set, group_name) -> _Component:
    comp_set = set(layers)
    self_coupled = any(_self_coupled(graph, s, n) for s in syns for n in layers
                       if n in graph.edges[s])
    implicit = len(layers) > 1 or self_coupled
    slots = {n: [(s, i) for s in syns for i, m in enumerate(graph.edges[s]) if m == n]
             for n in layers}
    external, internal = {}, {}
    for n in layers:
        external[n] = [(s, i) for s, i in slots[n]
                       if not (set(graph.edges[s]) - {n}) & comp_set and not _self_coupled(graph, s, n)]
        internal[n] = [p for p in slots[n] if p not in external[n]]
    roots = [n for n in layers
             if any(set(graph.edges[s]) - comp_set for s, _ in slots[n])]
    if not roots:
        raise WiringError(f"derive: fast layer(s) {layers} in {group_name} connect to no slow "
                          f"layer, so their equilibrium does not depend on the visible layer.")
    dist = dict.fromkeys(roots, 0)
    frontier = list(roots)
    while frontier:
        nxt = []
        for n in frontier:
            for s, _ in internal[n]:
                for m in graph.edges[s]:
                    if m in comp_set and m not in dist:
                        dist[m] = dist[n] + 1
                        nxt.append(m)
        frontier = nxt
    order = sorted(layers, key=lambda n: (dist[n], n))
    lower = {n: [(s, i) for s, i in internal[n]
                 if all(dist[m] < dist[n] for m in graph.edges[s] if m in comp_set and m != n)
                 and graph.edges[s].count(n) == 1]
             for n in layers}
    top = max(dist.values())
    far = [n for n in layers if dist[n] == top]
    far_coupled = any(m in far and m != n for n in far for s, _ in internal[n]
                      for m in graph.edges[s]) or any(
        _self_coupled(graph, s, n) for n in far for s, _ in slots[n])
    if top > 0 and not far_coupled:
        state = [n for n in order if dist[n] < top]
        eliminated = far
    else:
        state, eliminated = list(order), []
    sweep = sorted(eliminated) + sorted(state, key=lambda n: (-dist[n], n))
    return _Component(layers=list(layers), implicit=implicit, state=state, eliminated=eliminated,
                      order=order, sweep=sweep, external=external, internal=internal, lower=lower)
