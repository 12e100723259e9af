r"""Planning a derivation from the energy (docs/concepts/fast_layers.md).

For each operator-splitting :class:`Group` the planner finds

1. the slow layers the group steps (those of :func:`~hopfield.derive`'s ``slow`` list it
   touches), its clamped inputs and memory copies, and its fast layers ($\tau = 0$);
2. the *dependency structure* among the fast layers: layer $A$ reads $B$ when the current
   $I_A$ changes with $g_B$. It comes from what each synapse declares
   (:meth:`~hopfield.synapses.Synapse.affine_slots`), verified once by Jacobian-vector products
   at random float64 activations (:mod:`hopfield.derivation.structure`);
3. its strongly connected components, in dependency order: a fast layer that reads no fast
   activation (its own included) is **explicit** (one evaluation of its current); a set of fast
   layers that read each other's (or their own) activations is **implicit**: a fixed point,
   solved iteratively.

Inside an implicit component the layers are ordered by their distance from the slow layers;
the farthest layers are eliminated inside the fixed-point map, the iteration starts from the
currents of the slow layers, and each iteration sweeps from the farthest layer back to the
roots, which reproduces the published iMixer loop $x_2 \leftarrow y + F(x_2)$ exactly.

The result is a frozen :class:`Plan` per group, which :class:`~hopfield.DerivedBlock` executes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import WiringError
from ..core.lagrangians import Lagrangian
from ..dynamics.guards import check_solver_options
from ..dynamics.implicit import GRAD_MODES
from ..dynamics.solvers import get_solver
from ..dynamics.steps import RULES
from .structure import probe_synapse

if TYPE_CHECKING:
    from ..core.graph import EnergyGraph

__all__ = ["Group", "Plan", "Component", "STEPS", "SCHEDULES"]

STEPS = RULES
SCHEDULES = ("sequential", "simultaneous")
Pairs = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Group:
    """One operator-splitting group: the synapses it owns and how its slow layers step.

    Args:
        synapses: names of the group's synapses (those touching its slow layers and those
            among its fast layers).
        name: a label for ``describe()`` (default ``group<i>``).
        step: ``"residual"`` ($x \\leftarrow x + \\alpha I$) or ``"leaky"``
            ($x \\leftarrow x + (\\alpha/\\tau)(I - x)$).
        step_size: $\\alpha$.
        lagrangian: the slow layer's Lagrangian as this group sees it (e.g. the Mixer's
            separate ``norm1``/``norm2``); ``None`` uses the graph's. A per-group Lagrangian is a
            splitting relaxation: the block then has no single energy. Only for a group that
            steps one slow layer.
        schedule: with several slow layers, ``"sequential"`` (block-coordinate: the fast layers
            settle, one slow layer steps, in the order given to ``derive``) or
            ``"simultaneous"`` (the fast layers settle once, every slow layer steps).
        solver, max_iter, tol, grad, solver_options, backward_tol, backward_max_iter: how
            implicit components are solved and differentiated (``None`` inherits
            :func:`~hopfield.derive`'s).
    """

    synapses: Sequence[str]
    name: str | None = None
    step: str | None = None
    step_size: float | None = None
    lagrangian: Lagrangian | None = None
    schedule: str | None = None
    solver: str | None = None
    max_iter: int | None = None
    tol: float | None = None
    grad: str | None = None
    solver_options: dict | None = None
    backward_tol: float | None = None
    backward_max_iter: int | None = None


@dataclass(frozen=True)
class Component:
    """A set of fast layers that settle together.

    ``implicit``: they read each other's or their own activations (a fixed point). ``state``:
    the iterated layers (roots first); ``eliminated``: recomputed inside the map; ``order``:
    initialisation order (ascending distance from the slow layers); ``sweep``: the map's
    evaluation order. ``external[n]``/``internal[n]``: the ``(synapse, slot)`` pairs into ``n``
    whose currents read no / some activation of this component; ``lower[n]``: internal pairs
    reaching only layers closer to the slow layers (used to start the iteration). ``frame``: the
    per-sample axis the block moves last while it iterates (``None``: the declared layout;
    docs/concepts/fast_layers.md#iteration-layout).
    """

    layers: tuple[str, ...]
    implicit: bool
    state: tuple[str, ...]
    eliminated: tuple[str, ...]
    order: tuple[str, ...]
    sweep: tuple[str, ...]
    external: Mapping[str, Pairs]
    internal: Mapping[str, Pairs]
    lower: Mapping[str, Pairs]
    # implicit, every layer pointwise and every internal coupling acting on this one per-sample
    # axis (not the last): the block iterates with the axis moved last (None: as declared)
    frame: int | None = None


@dataclass(frozen=True)
class Plan:
    """What a :class:`~hopfield.DerivedBlock` executes for one group (frozen: recording and
    reporting never edit it; :meth:`replace` makes a changed copy)."""

    name: str
    synapses: tuple[str, ...]
    slow: tuple[str, ...]
    into: Mapping[str, Pairs]
    copies: tuple[str, ...]
    clamped: tuple[str, ...]
    components: tuple[Component, ...]
    step: str
    step_size: float
    lagrangian: Lagrangian | None
    schedule: str
    solver: str
    max_iter: int
    tol: float | None
    grad: str
    solver_options: Mapping
    backward_tol: float | None
    backward_max_iter: int | None

    @property
    def into_visible(self) -> Pairs:
        """The pairs driving the first slow layer (the only one, for a one-layer block)."""
        return self.into[self.slow[0]]

    def replace(self, **changes) -> Plan:
        return dataclasses.replace(self, **changes)


def _freeze(d: dict) -> Mapping:
    # a plain dict of tuples: the dataclass is frozen; a MappingProxyType would make
    # torch.compile break the graph
    return {k: tuple(v) for k, v in d.items()}


def check_options(name: str, opt: dict, graph, slow_here) -> None:
    if opt["step"] not in STEPS:
        raise ValueError(f"{name}: unknown step {opt['step']!r}; valid: {', '.join(STEPS)}.")
    size = opt["step_size"]
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size < float("inf"):
        raise ValueError(f"{name}: step_size must be a positive finite number, got "
                         f"{size!r}.")
    if opt["step"] == "leaky":
        for n in slow_here:
            if graph.neurons[n].tau == 0:
                raise ValueError(f"{name}: the slow layer {n!r} is fast (tau=0); it needs tau > 0.")
    if opt["schedule"] not in SCHEDULES:
        raise ValueError(f"{name}: unknown schedule {opt['schedule']!r}; valid: "
                         f"{', '.join(SCHEDULES)}.")
    if opt["grad"] not in GRAD_MODES:
        raise ValueError(f"{name}: unknown grad {opt['grad']!r}; valid: "
                         f"{', '.join(GRAD_MODES)}.")
    get_solver(opt["solver"])  # validates the name
    mi = opt["max_iter"]
    if isinstance(mi, bool) or not isinstance(mi, int) or mi < 0:
        raise ValueError(f"{name}: max_iter must be an int >= 0, got {mi!r}.")
    for key in ("tol", "backward_tol"):
        v = opt[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not 0 < v < float("inf")):
            raise ValueError(f"{name}: {key} must be a positive finite number or None, "
                             f"got {v!r}.")
    bm = opt["backward_max_iter"]
    if bm is not None and (isinstance(bm, bool) or not isinstance(bm, int) or bm < 1):
        raise ValueError(f"{name}: backward_max_iter must be an int >= 1 or None, got "
                         f"{bm!r}.")
    if opt.get("solver_options"):  # checked against the solver now, not at the first solve
        check_solver_options(opt["solver"], get_solver(opt["solver"]), opt["solver_options"],
                             who=name)


def plan_group(graph: EnergyGraph, slow: Sequence[str], group: Group, index: int,
               defaults: dict, owned: dict) -> Plan:
    """Plan one group (see the module docs); ``owned`` maps synapse -> group name so far."""
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
    slow_here = tuple(n for n in slow if n in touched)
    if not slow_here:
        which = f"the visible layer {slow[0]!r}" if len(slow) == 1 else f"any slow layer {list(slow)}"
        raise WiringError(f"derive: no synapse of {name} ({syns}) touches {which}; a group must "
                          f"drive a slow layer.")
    fast, copies, clamped = [], [], []
    for n in sorted(touched - set(slow)):
        layer = graph.neurons[n]
        if layer.is_fast:
            fast.append(n)
        elif layer.copy_of is not None:
            if layer.copy_of not in slow:
                raise WiringError(f"derive: layer {n!r} copies {layer.copy_of!r}, but only copies "
                                  f"of the slow layers {list(slow)} are supported.")
            copies.append(n)
        elif layer.clamped:
            clamped.append(n)
        else:
            raise WiringError(f"derive: layer {n!r} in {name} is neither a slow layer the block "
                              f"updates ({list(slow)}), fast (tau=0) nor clamped. Declare {n!r} "
                              f"with tau=0 (fast) or clamped=True, or add it to the slow layers.")
    opt = {k: getattr(group, k) if getattr(group, k) is not None else defaults[k]
           for k in ("step", "step_size", "schedule", "solver", "max_iter", "tol", "grad",
                     "solver_options", "backward_tol", "backward_max_iter")}
    check_options(f"derive: {name}", opt, graph, slow_here)
    if group.lagrangian is not None:
        if not isinstance(group.lagrangian, Lagrangian):
            raise TypeError(f"derive: {name}: lagrangian must be a Lagrangian, got "
                            f"{type(group.lagrangian).__name__}.")
        if len(slow_here) != 1:
            raise WiringError(f"derive: {name}: a per-group lagrangian needs a group that steps "
                              f"one slow layer; this one steps {list(slow_here)}.")
    components = _components(graph, syns, fast, name)
    into = {v: [(s, i) for s in syns for i, n in enumerate(graph.edges[s]) if n == v]
            for v in slow_here}
    return Plan(name=name, synapses=tuple(syns), slow=slow_here, into=_freeze(into),
                copies=tuple(copies), clamped=tuple(clamped), components=tuple(components),
                lagrangian=group.lagrangian,
                solver_options=dict(opt.pop("solver_options") or {}), **opt)


def _reads(graph, syns, fast_set, name):
    """``{fast layer: {fast layers its current reads}}`` and the per-synapse dependences."""
    deps = {n: set() for n in fast_set}
    probes = {}
    for s in syns:
        edge = graph.edges[s]
        targets = {i for i, n in enumerate(edge) if n in fast_set}
        probes[s] = probe_synapse(s, graph.synapses[s], [graph.neurons[n].shape for n in edge],
                                  targets)
        for i in targets:
            for j in probes[s].reads[i]:
                if edge[j] in fast_set:
                    deps[edge[i]].add(edge[j])
    return deps, probes


def _strongly_connected(nodes: list[str], deps: dict) -> list[list[str]]:
    """Tarjan's algorithm; components come out dependencies first."""
    index, low, on, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def _components(graph, syns, fast, group_name) -> list[Component]:
    fast_set = set(fast)
    deps, probes = _reads(graph, syns, fast_set, group_name)
    comps = []
    for layers in _strongly_connected(sorted(fast), deps):
        comps.append(_plan_component(graph, syns, layers, deps, probes, group_name))
    return comps


def _plan_component(graph, syns, layers, deps, probes, group_name) -> Component:
    comp_set = set(layers)
    implicit = len(layers) > 1 or layers[0] in deps[layers[0]]
    slots = {n: [(s, i) for s in syns for i, m in enumerate(graph.edges[s]) if m == n]
             for n in layers}

    def reads_component(s, i):
        edge = graph.edges[s]
        return any(edge[j] in comp_set for j in probes[s].reads[i])

    external = {n: [(s, i) for s, i in slots[n] if not reads_component(s, i)] for n in layers}
    internal = {n: [p for p in slots[n] if p not in external[n]] for n in layers}
    roots = [n for n in layers if any(set(graph.edges[s]) - comp_set for s, _ in slots[n])]
    if not roots:
        raise WiringError(f"derive: fast layer(s) {layers} in {group_name} connect to no slow "
                          f"or clamped layer, so their equilibrium does not depend on the input.")
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
    for n in layers:  # reached only through couplings that do not feed back: start at 0
        dist.setdefault(n, 0)
    order = sorted(layers, key=lambda n: (dist[n], n))
    lower = {n: [(s, i) for s, i in internal[n]
                 if all(dist[m] < dist[n] for m in graph.edges[s] if m in comp_set and m != n)
                 and graph.edges[s].count(n) == 1]
             for n in layers}
    top = max(dist.values())
    far = [n for n in layers if dist[n] == top]
    far_coupled = any(m in far for n in far for m in deps[n])
    if implicit and top > 0 and not far_coupled:
        state = [n for n in order if dist[n] < top]
        eliminated = far
    else:
        state, eliminated = list(order), []
    sweep = sorted(eliminated) + sorted(state, key=lambda n: (-dist[n], n))
    frame = _frame_axis(graph, layers, internal) if implicit else None
    return Component(layers=tuple(layers), implicit=implicit, state=tuple(state),
                     eliminated=tuple(eliminated), order=tuple(order), sweep=tuple(sweep),
                     external=_freeze(external), internal=_freeze(internal), lower=_freeze(lower),
                     frame=frame)


def _frame_axis(graph, layers, internal) -> int | None:
    """The per-sample axis (counted from 0) in which an implicit component is iterated, moved
    last: every layer has a pointwise activation and one number of axes, and every internal
    coupling reads only the component's layers and declares this same
    :meth:`~hopfield.synapses.Synapse.frame_axis`, not the last (the token axis of iMixer's
    chain). ``None``: iterate as declared (docs/concepts/fast_layers.md#iteration-layout)."""
    ndims = {len(graph.neurons[n].shape) for n in layers}
    if len(ndims) != 1 or not all(graph.lagrangian_of(n).pointwise for n in layers):
        return None
    nd = ndims.pop()
    axes = set()
    for n in layers:
        for s, _ in internal[n]:
            ax = graph.synapses[s].frame_axis()
            if ax is None or not -nd <= ax < nd or not set(graph.edges[s]) <= set(layers):
                return None
            axes.add(ax % nd)
    if len(axes) != 1:
        return None
    ax = axes.pop()
    return ax if ax != nd - 1 else None
