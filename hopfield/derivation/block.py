r"""Derive a network block from a declared energy (THEORY §4–5).

:func:`derive` reads the graph and decides, for each *group* of synapses acting on the visible
layer (operator splitting, one residual or leaky step per group, in order):

1. which layers of the group are *fast* ($\tau = 0$) and must sit at equilibrium;
2. how the fast layers fall into connected components (joined by synapses among fast layers);
   a single fast layer not coupled to itself is **explicit** (one evaluation of its current),
   a component of two or more layers (or a self-coupled one) is **implicit**: a fixed point
   solved iteratively, e.g. $x_2 = (1 - F)^{-1}(y)$ for iMixer's token group;
3. the current the settled group sends into the visible layer, and the step it takes.

Inside an implicit component the layers are ordered by their distance from the slow layers.
The farthest layers are eliminated inside the fixed-point map; the iteration starts from the
currents of the slow layers alone (for iMixer: $x_2 = y$, i.e. $\sigma(x_3)$ absent) and each
iteration sweeps from the farthest layer back to the roots, which reproduces the published
iMixer loop $x_2 \leftarrow y + F(x_2)$ exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.errors import WiringError
from ..core.graph import EnergyGraph
from ..dynamics.implicit import solve_fixed_point
from ..dynamics.spectral import SCHEDULES
from ..dynamics.steps import step
from .plan import Group, _Component, _Plan, _plan_group
from .report import LyapunovReport, describe_block, feedback_lipschitz, lyapunov_report

__all__ = ["Group", "derive", "DerivedBlock", "LyapunovReport", "lyapunov_report"]

CURRENT_METHODS = ("auto", "autograd")


class DerivedBlock(nn.Module):
    """An ``nn.Module`` whose forward is the update derived from an :class:`EnergyGraph`.

    ``forward(x, **clamped)`` takes the visible layer's state ``(batch, *shape)`` (and the states
    of other clamped, non-copy layers by name) and returns the updated visible state. After a
    forward, ``last_stats`` holds the solver stats of every implicit component.
    """

    def __init__(self, graph: EnergyGraph, visible: str, plans: list[_Plan], repeats: int,
                 currents: str, tied: bool, spectral_schedule: str = "forward"):
        super().__init__()
        self.graph = graph
        self.visible = visible
        self.plans = plans
        self.repeats = repeats
        self.currents_method = currents
        self.tied = tied
        self.group_lagrangians = nn.ModuleList([p.lagrangian for p in plans if p.lagrangian])
        self.last_stats: dict = {}
        # "forward": spectral norms evaluated once per forward; "iteration": before every
        # fixed-point iteration (the official iMixer hook); see docs/tutorials/interop.md
        self.spectral_schedule = spectral_schedule
        self.drop_path = 0.0  # stochastic depth rate on each group's increment (training only)
        # called as hook(plan, component, {layer: state}) with every iterate an implicit solve
        # evaluates (see hopfield.energy_plot); None in normal use
        self.iterate_hook = None

    # ------------------------------------------------------------------ evaluation helpers
    def _current(self, targets_slots, gs):
        """Sum of currents from ``[(syn, slot)]`` given activations ``gs``."""
        g = self.graph
        out = None
        if self.currents_method == "auto":
            for s, i in targets_slots:
                # a target's own activation may not exist yet (it is being computed); closed
                # forms of synapses linear in the target never read it
                c = g.synapses[s].current(i, *(gs.get(n) for n in g.edges[s]))
                if c is None:
                    c = self._autograd_current(s, i, gs)
                out = c if out is None else out + c
            return out
        for s, i in targets_slots:
            c = self._autograd_current(s, i, gs)
            out = c if out is None else out + c
        return out

    def _autograd_current(self, s, i, gs):
        edge = self.graph.edges[s]
        target = edge[i]
        loc = {n: gs[n] for n in edge if n in gs}
        if target not in loc:  # placeholder: the current of a linear synapse ignores its value
            ref = gs[self.visible]
            loc[target] = ref.new_zeros((ref.shape[0], *self.graph.neurons[target].shape))
        return self.graph.currents(gs=loc, targets=[target], synapses=[s],
                                   method="autograd")[target]

    def _act(self, name, x):
        return self.graph.lagrangian_of(name).activation(x)

    def _init_component(self, comp: _Component, gs: dict, xs: dict):
        """Currents from the slow layers, and the starting states (ascending distance)."""
        ext = {n: self._current(comp.external[n], gs) if comp.external[n] else None
               for n in comp.layers}
        # the eliminated layers are recomputed first thing in every sweep: they need no start
        single = len(comp.state) == 1
        for n in comp.order:
            if comp.implicit and n in comp.eliminated:
                continue
            c = ext[n]
            if comp.lower.get(n):
                low = self._current(comp.lower[n], gs)
                c = low if c is None else c + low
            if c is None:
                ref = xs[self.visible]
                c = ref.new_zeros((ref.shape[0], *self.graph.neurons[n].shape))
            xs[n] = c
            if not (comp.implicit and single):  # else the solve computes it from its iterate
                gs[n] = self._act(n, c)
        return ext

    def _component_map(self, comp: _Component, plan: _Plan, gs: dict, xs: dict, ext: dict):
        """The fixed-point map ``fmap`` on the packed iterate, its start ``z0`` and ``unpack``."""
        shapes = [xs[n].shape for n in comp.state]
        single = len(comp.state) == 1

        def unpack(z):
            if single:
                return {comp.state[0]: z}
            parts = torch.split(z, [s[1:].numel() for s in shapes], dim=1)
            return {n: p.reshape(s) for n, p, s in zip(comp.state, parts, shapes, strict=True)}

        def pack(d):
            if single:
                return d[comp.state[0]]
            return torch.cat([d[n].reshape(d[n].shape[0], -1) for n in comp.state], dim=1)

        hook = self.iterate_hook
        needs_act = set(comp.eliminated) | (set(comp.state) if not single else set())

        def fmap(z):
            loc = dict(gs)
            states = unpack(z)
            if hook is not None:  # observe the iterate (energy recording), never change it
                hook(plan, comp, {n: v.detach() for n, v in states.items()})
            for n, zn in states.items():
                loc[n] = self._act(n, zn)
            new = {}
            for n in comp.sweep:
                c = self._current(comp.internal[n], loc)
                c = c if ext[n] is None else ext[n] + c
                if n in needs_act:  # the last layers' activations are recomputed from z
                    loc[n] = self._act(n, c)
                new[n] = c
            return pack(new)

        y = pack({n: ext[n] if ext[n] is not None else torch.zeros_like(xs[n])
                  for n in comp.state})
        return fmap, pack(xs), unpack, y

    def _scheduled(self, fmap):
        """With ``spectral_schedule="iteration"`` every map evaluation refreshes the spectral
        norms once (power iterations in training mode), as the official iMixer hook does."""
        if self.spectral_schedule != "iteration":
            return fmap

        def refreshed(z):
            with parametrize.cached():
                return fmap(z)

        return refreshed

    def _spectral_scope(self):
        return parametrize.cached() if self.spectral_schedule == "forward" else nullcontext()

    def _prime_parametrizations(self, plan: _Plan):
        if plan.grad != "unrolled" and torch.is_grad_enabled():
            # implicit/phantom solves run under no_grad: evaluate parametrized weights (spectral
            # norms) first, so that parametrize.cached() keeps copies that carry their gradient
            for s in plan.synapses:
                for name in getattr(self.graph.synapses[s], "parametrizations", {}):
                    getattr(self.graph.synapses[s], name)

    def _solve_component(self, comp: _Component, plan: _Plan, gs: dict, xs: dict, key: str,
                         full: bool = False):
        ext = self._init_component(comp, gs, xs)
        if not comp.implicit:
            return
        fmap, z0, unpack, _ = self._component_map(comp, plan, gs, xs, ext)
        self._prime_parametrizations(plan)
        z, stats = solve_fixed_point(self._scheduled(fmap), z0, solver=plan.solver,
                                     grad=plan.grad, max_iter=plan.max_iter, tol=plan.tol,
                                     solver_options=plan.solver_options)
        self.last_stats[key] = stats
        for n, zn in unpack(z).items():
            xs[n], gs[n] = zn, self._act(n, zn)
        if full:  # the eliminated layers at the solution (for energies and plots)
            for n in comp.eliminated:
                c = self._current(comp.internal[n], gs)
                c = c if ext[n] is None else ext[n] + c
                xs[n], gs[n] = c, self._act(n, c)

    def _group_inputs(self, plan: _Plan, x: torch.Tensor, clamped: dict):
        vis = self.visible
        lag = plan.lagrangian or self.graph.lagrangian_of(vis)
        g_v = lag.activation(x)
        xs, gs = {vis: x, **clamped}, {vis: g_v}
        for n, v in clamped.items():
            gs[n] = self._act(n, v)
        for n in plan.copies:  # clamped memory copies of the visible layer
            xs[n] = x
            gs[n] = g_v if self.currents_method == "auto" else lag.activation(x)
        return xs, gs

    def group_step(self, plan: _Plan, x: torch.Tensor, clamped: dict, *, return_states=False):
        """One group's update of the visible state ``x`` (fast layers settled first)."""
        xs, gs = self._group_inputs(plan, x, clamped)
        for ci, comp in enumerate(plan.components):
            self._solve_component(comp, plan, gs, xs, f"{plan.name}/{ci}", full=return_states)
        cur = self._current(plan.into_visible, gs)
        mask, keep = None, 1.0
        if self.drop_path > 0 and self.training and plan.step == "residual":  # stochastic depth
            keep = 1.0 - self.drop_path
            mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        new = step(x, cur, rule=plan.step, step_size=plan.step_size,
                   tau=self.graph.neurons[self.visible].tau, drop_mask=mask, keep_prob=keep)
        if return_states:
            return new, xs, gs, cur
        return new

    # ------------------------------------------------------------------ implicit groups
    def _implicit(self, x, group, component, clamped):
        plans = self.plans
        if not 0 <= group < len(plans):
            raise ValueError(f"group={group} out of range: this block has {len(plans)} group(s).")
        plan = plans[group]
        comps = [c for c in plan.components if c.implicit]
        if not 0 <= component < len(comps):
            raise ValueError(f"{plan.name} has {len(comps)} implicit component(s); got "
                             f"component={component}.")
        comp = comps[component]
        xs, gs = self._group_inputs(plan, x, clamped)
        ext = self._init_component(comp, gs, xs)
        return plan, comp, self._component_map(comp, plan, gs, xs, ext)

    def solve_implicit(self, x, group: int = 0, component: int = 0, **clamped):
        r"""Solve one implicit component for visible state ``x``: returns ``(z, y, stats)`` with
        $z = (1-F)^{-1}(y)$ (packed iterate: the root layer's state for iMixer)."""
        with parametrize.cached():
            plan, _, (fmap, z0, _, y) = self._implicit(x, group, component, clamped)
            self._prime_parametrizations(plan)
            z, stats = solve_fixed_point(fmap, z0, solver=plan.solver, grad=plan.grad,
                                         max_iter=plan.max_iter, tol=plan.tol,
                                         solver_options=plan.solver_options)
        return z, y, stats

    def residual_map(self, z, x, group: int = 0, component: int = 0, **clamped):
        r"""Apply the residual map $(1 - F)(z) = z - F(z)$ of an implicit component, with
        $F(z) = \mathrm{map}(z) - y$. At the solution it returns the input $y$: the block's
        inverse form, made checkable."""
        with parametrize.cached():
            _, _, (fmap, _, _, y) = self._implicit(x, group, component, clamped)
            return z - (fmap(z) - y)

    def forward(self, x: torch.Tensor, **clamped: torch.Tensor) -> torch.Tensor:
        shape = self.graph.neurons[self.visible].shape
        if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise WiringError(f"DerivedBlock: visible layer {self.visible!r} expects input "
                              f"(batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}.")
        self.last_stats = {}
        with self._spectral_scope():  # spectral norms: once per forward, or per iteration
            for _ in range(self.repeats):
                for plan in self.plans:
                    x = self.group_step(plan, x, clamped)
        return x

    # ------------------------------------------------------------------ reports
    def describe(self) -> str:
        """The derived update rules as readable mathematics, and the Lyapunov verdict."""
        return describe_block(self)

    def lyapunov(self) -> LyapunovReport:
        return lyapunov_report(self)

    def feedback_lipschitz(self, *, warn: bool = True) -> dict[str, float | None]:
        r"""Upper bounds on $\mathrm{Lip}(F)$ of every implicit component's feedback map,
        ``{"<group>/<component>": bound}`` (``None`` where no bound is available).

        For iMixer's chain, $\mathrm{Lip}(F) \le s_2 s_3 \lVert W_{32}\rVert \lVert W_{23}\rVert$
        with $s$ the activations' largest slopes. A bound $\ge 1$ means $(1-F)$ may not be
        invertible and plain iteration may not converge; with ``warn`` it is reported as a
        ``UserWarning`` (GELU's slope, up to 1.129, pushes two weights at the spectral-norm
        bound $c = 0.9$ to $1.03$).
        """
        out = {}
        for plan in self.plans:
            for i, comp in enumerate(c for c in plan.components if c.implicit):
                out[f"{plan.name}/{i}"] = bound = feedback_lipschitz(self, comp)
                if warn and bound is not None and bound >= 1.0:
                    acts = ", ".join(type(self.graph.lagrangian_of(n)).__name__
                                     for n in comp.layers)
                    warnings.warn(
                        f"{plan.name}: the feedback map's Lipschitz bound is {bound:.3f} >= 1 "
                        f"(activations {acts}); (1 - F) may not be invertible. Lower the "
                        f"spectral-norm coefficient or use an activation with slope <= 1.",
                        UserWarning, stacklevel=2)
        return out


# ---------------------------------------------------------------------- planning


def derive(graph: EnergyGraph, visible: str, groups: Sequence[Group | Sequence[str]] | None = None,
           *, tied: bool | None = None, step: str = "residual", step_size: float = 1.0,
           repeats: int = 1, solver: str = "fixed_point", max_iter: int = 4,
           tol: float | None = None, grad: str = "unrolled", solver_options: dict | None = None,
           currents: str = "auto", spectral_schedule: str = "forward") -> DerivedBlock:
    """Turn a declared energy into a block whose forward is the derived update.

    Args:
        graph: the energy.
        visible: the slow layer the block updates (its input and output).
        groups: operator-splitting groups, in order: :class:`Group` objects or plain lists of
            synapse names. Default: one group with every synapse.
        tied: ``True`` demands that every synapse be tied (raises otherwise); ``False`` or
            ``None`` accept untied synapses (``describe()`` reports them).
        step, step_size: default step rule and $\\alpha$ for groups that do not set their own.
        repeats: apply the whole group sequence this many times (the Energy Transformer's $T$).
        solver, max_iter, tol, grad, solver_options: defaults for implicit components:
            a registered solver name, its iteration budget (the iMixer $k$ when ``tol=None``),
            tolerance, gradient mode (``"unrolled"``, ``"implicit"``, ``"phantom"``).
        currents: ``"auto"`` (closed forms where the synapse has one, pinned to autograd by the
            tests; autograd elsewhere) or ``"autograd"`` (every current by autograd).
        spectral_schedule: when spectral-normalised weights are refreshed: ``"forward"`` (once
            per forward, the default) or ``"iteration"`` (before every fixed-point iteration,
            as the official iMixer code does; the default for converted official checkpoints).

    Returns:
        A :class:`DerivedBlock`.
    """
    if not isinstance(graph, EnergyGraph):
        raise TypeError(f"derive: expected an EnergyGraph, got {type(graph).__name__}.")
    if visible not in graph.neurons:
        raise WiringError(f"derive: visible={visible!r} is not a declared neuron; declared: "
                          f"{sorted(graph.neurons)}.")
    if graph.neurons[visible].clamped or graph.neurons[visible].is_fast:
        raise WiringError(f"derive: the visible layer {visible!r} must be slow and not clamped.")
    if currents not in CURRENT_METHODS:
        raise ValueError(f"derive: currents must be one of {CURRENT_METHODS}, got {currents!r}.")
    if spectral_schedule not in SCHEDULES:
        raise ValueError(f"derive: spectral_schedule must be one of {SCHEDULES}, got "
                         f"{spectral_schedule!r}.")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"derive: repeats must be an int >= 1, got {repeats!r}.")
    if not (isinstance(max_iter, int) and max_iter >= 0):
        raise ValueError(f"derive: max_iter must be an int >= 0, got {max_iter!r}.")
    untied = sorted(s for s, syn in graph.synapses.items() if not syn.tied)
    if tied and untied:
        raise WiringError(f"derive: tied=True, but synapse(s) {untied} are untied; declare them "
                          f"with tied=True or pass tied=False.")
    if groups is None:
        groups = [Group(list(graph.edges))]
    groups = [g if isinstance(g, Group) else Group(list(g)) for g in groups]
    defaults = dict(step=step, step_size=step_size, solver=solver, max_iter=max_iter, tol=tol,
                    grad=grad, solver_options=solver_options)
    owned: dict = {}
    plans = [_plan_group(graph, visible, g, i + 1, defaults, owned) for i, g in enumerate(groups)]
    fast_owner: dict = {}
    for p in plans:
        for c in p.components:
            for n in c.layers:
                if n in fast_owner:
                    raise WiringError(f"derive: fast layer {n!r} is touched by {fast_owner[n]} "
                                      f"and {p.name}; give each group its own fast layers.")
                fast_owner[n] = p.name
    return DerivedBlock(graph, visible, plans, repeats, currents, tied=not untied,
                        spectral_schedule=spectral_schedule)
