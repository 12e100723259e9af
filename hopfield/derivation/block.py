r"""The derived block: executes the plans of :func:`~hopfield.derive` (docs/concepts/fast_layers.md).

For each group (operator splitting, in order) the fast layers settle, component by component
in dependency order: an explicit component is one evaluation of its current, an implicit one a
fixed point $z = y + F(z)$ solved by a registered solver. Then the group's slow layers take the
one step rule of :mod:`hopfield.dynamics.steps`, block-coordinate (one slow layer at a time,
the fast layers settling before each) or simultaneously. Every current comes from the graph
(:meth:`~hopfield.EnergyGraph.slot_currents`); the block never re-derives one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from contextlib import nullcontext

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.dtypes import WeightsDtype
from ..core.errors import NonFiniteError, WiringError
from ..core.graph import EnergyGraph
from ..core.validate import check_int
from ..dynamics.guards import is_tracing
from ..dynamics.implicit import solve_fixed_point
from ..dynamics.steps import step
from .exportable import ExportableBlock, exportable
from .plan import Component, Plan, check_options
from .report import LyapunovReport, describe_block, feedback_lipschitz, lyapunov_report
from .trace import SolveTrace, StepTrace, Trace

__all__ = ["DerivedBlock"]




def _cached_parametrizations():
    """``parametrize.cached()``, except under ``torch.jit.trace``, which refuses the cache: the
    traced graph evaluates each parametrized weight where it is used (equal in eval mode)."""
    return nullcontext() if torch.jit.is_tracing() else parametrize.cached()


class DerivedBlock(WeightsDtype):
    """An ``nn.Module`` whose forward is the update derived from an :class:`EnergyGraph`.

    ``forward(*slow_states, **clamped)`` takes the states of the slow layers ``(batch, *shape)``
    in the order given to :func:`~hopfield.derive` (and the states of clamped, non-copy layers
    by name) and returns the updated slow states in the same order (one tensor for a block
    with one slow layer). After a forward, ``last_stats`` holds the solver stats of every
    implicit component. :meth:`run` also returns a :class:`~hopfield.derivation.trace.Trace`.
    """

    def __init__(self, graph: EnergyGraph, slow: tuple[str, ...], plans: list[Plan],
                 repeats: int, currents: str, spectral_schedule: str = "forward"):
        super().__init__()
        self.graph = graph
        # the same graph as a plain attribute for the per-call paths (a registered submodule is
        # found through nn.Module.__getattr__ on every access); not a second registration
        self.__dict__["_graph"] = graph
        self.__dict__["_layers"] = dict(graph.neurons.items())  # the same modules, plain lookups
        self.slow = tuple(slow)
        self.plans = tuple(plans)
        self.repeats = repeats
        self.currents_method = currents
        self.group_lagrangians = nn.ModuleList([p.lagrangian for p in plans if p.lagrangian])
        self.clamped_inputs = tuple(dict.fromkeys(n for p in plans for n in p.clamped))
        self.last_stats: dict = {}
        # "forward": spectral norms evaluated once per forward; "iteration": before every
        # fixed-point iteration (the official iMixer hook); see docs/tutorials/interop.md
        self.spectral_schedule = spectral_schedule
        self.drop_path = 0.0  # stochastic depth rate on each group's increment (training only)
        # opt-in: raise NonFiniteError naming the group and layer at the first NaN/Inf (one
        # device sync per group step; never while compiling or exporting)
        self.check_finite = False

    @property
    def visible(self) -> str:
        """The first (for most blocks: the only) slow layer."""
        return self.slow[0]

    # ------------------------------------------------------------------ evaluation helpers
    def _current(self, pairs, gs, like):
        return self._graph.slot_currents(pairs, gs, method=self.currents_method, like=like)

    def _act(self, name, x):
        return self._graph.lagrangian_of(name).activation(x)

    def _init_component(self, comp: Component, gs: dict, xs: dict, like):
        """Currents from outside the component, and the starting states (ascending distance):
        activations of the component not yet computed are read as absent (zero)."""
        ext = {n: self._current(comp.external[n], gs, like) for n in comp.layers}
        single = len(comp.state) == 1
        for n in comp.order:
            if comp.implicit and n in comp.eliminated:
                continue  # recomputed first thing in every sweep: needs no start
            c = ext[n]
            if comp.lower.get(n):
                low = self._current(comp.lower[n], gs, like)
                c = low if c is None else c + low
            if c is None:
                c = like.new_zeros((like.shape[0], *self._layers[n].shape))
            xs[n] = c
            if not (comp.implicit and single):  # else the solve computes it from its iterate
                gs[n] = self._act(n, c)
        return ext

    def _component_map(self, comp: Component, gs: dict, xs: dict, ext: dict, like,
                       record: list | None = None, framed: bool = False):
        """The fixed-point map ``fmap`` on the packed iterate, its start ``z0``, ``unpack`` (to
        the layers' states, as declared) and ``y`` (the currents from outside the component).

        With ``framed`` and a component the planner gave a frame axis, the iterate, ``y`` and
        every current inside the map have that axis last: the map then moves no axis
        (docs/concepts/fast_layers.md#iteration-layout)."""
        axis = comp.frame if framed and self.currents_method != "autograd" else None
        frame = axis is not None
        dim = -1 if axis is None else axis + 1  # the same swap moves the axis last and back

        def move(t):
            return t.transpose(dim, -1)

        inside = gs  # the activations the map starts from
        if frame:
            moved = {n: None if ext[n] is None else move(ext[n]) for n in comp.sweep}
            # the iteration usually starts from the external current itself: move that once
            xs = {n: moved[n] if xs[n] is ext.get(n) else move(xs[n]) for n in comp.state}
            ext = moved
            inside = {n: move(gs[n]) for n in comp.layers if n in gs}
        shapes = [xs[n].shape for n in comp.state]
        single = len(comp.state) == 1

        def unpack_frame(z):
            if single:
                return {comp.state[0]: z}
            parts = torch.split(z, [s[1:].numel() for s in shapes], dim=1)
            return {n: p.reshape(s) for n, p, s in zip(comp.state, parts, shapes, strict=True)}

        def unpack(z, activations: bool = False):
            """The states ``{layer: x}`` as declared, or ``{layer: (x, g)}`` with each
            activation computed in the iteration layout (a pointwise map: same values)."""
            d = unpack_frame(z)
            if activations:
                return {n: (move(v), move(self._act(n, v))) if frame else (v, self._act(n, v))
                        for n, v in d.items()}
            return {n: move(v) for n, v in d.items()} if frame else d

        def pack(d):
            if single:
                return d[comp.state[0]]
            return torch.cat([d[n].reshape(d[n].shape[0], -1) for n in comp.state], dim=1)

        needs_act = set(comp.eliminated) | (set(comp.state) if not single else set())
        # plain tuples, read once: torch.compile cannot read a mapping proxy after the
        # parametrization cache (a dict) has changed
        internal = {n: tuple(comp.internal[n]) for n in comp.sweep}
        graph, method = self._graph, self.currents_method

        def fmap(z):
            loc = dict(inside)
            states = unpack_frame(z)
            if record is not None:  # observe the iterate (a Trace), never change it
                record.append({n: v.detach() for n, v in unpack(z).items()})
            for n, zn in states.items():
                loc[n] = self._act(n, zn)
            new = {}
            for n in comp.sweep:
                c = graph.slot_currents(internal[n], loc, method=method, like=like, frame=frame)
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
            with _cached_parametrizations():
                return fmap(z)

        return refreshed

    def _spectral_scope(self):
        return _cached_parametrizations() if self.spectral_schedule == "forward" else nullcontext()

    def _prime_parametrizations(self, plan: Plan):
        # with the per-iteration schedule every map evaluation opens its own cache: nothing to
        # prime (and priming would run extra power iterations)
        if (plan.grad != "unrolled" and torch.is_grad_enabled()
                and self.spectral_schedule == "forward"):
            # implicit/phantom solves run under no_grad: evaluate parametrized weights (spectral
            # norms) first, so that parametrize.cached() keeps copies that carry their gradient
            for s in plan.synapses:
                for name in getattr(self.graph.synapses[s], "parametrizations", {}):
                    getattr(self.graph.synapses[s], name)

    def _solve(self, fmap, z0, plan: Plan):
        self._prime_parametrizations(plan)
        return solve_fixed_point(self._scheduled(fmap), z0, solver=plan.solver, grad=plan.grad,
                                 max_iter=plan.max_iter, tol=plan.tol,
                                 backward_tol=plan.backward_tol,
                                 backward_max_iter=plan.backward_max_iter,
                                 solver_options=dict(plan.solver_options))

    def _settle(self, plan: Plan, gs: dict, xs: dict, like, full: bool, solves: list | None,
                until: Component | None = None):
        """Settle every fast component of ``plan`` in dependency order; with ``until``, stop at
        that component (its inputs settled, its start in ``xs``) and return its external
        currents."""
        implicit_index = 0
        for ci, comp in enumerate(plan.components):
            ext = self._init_component(comp, gs, xs, like)
            if comp is until:
                return ext
            if not comp.implicit:
                continue
            record = [] if solves is not None else None
            fmap, z0, unpack, _ = self._component_map(comp, gs, xs, ext, like, record,
                                                      framed=True)
            z, stats = self._solve(fmap, z0, plan)
            self.last_stats[f"{plan.name}/{ci}"] = stats
            if solves is not None:
                solves.append(SolveTrace(comp, implicit_index, record, stats))
            implicit_index += 1
            for n, (zn, gn) in unpack(z, activations=True).items():
                xs[n], gs[n] = zn, gn
            if full:  # the eliminated layers at the solution (for energies and plots)
                for n in comp.eliminated:
                    c = self._current(comp.internal[n], gs, like)
                    c = c if ext[n] is None else ext[n] + c
                    xs[n], gs[n] = c, self._act(n, c)

    def _group_inputs(self, plan: Plan, states: dict, start: dict, clamped: Mapping):
        """States and activations of the slow layers (through the group's Lagrangian), the
        clamped inputs, and the memory copies (of the slow states at the group's start)."""
        lag = plan.lagrangian
        xs, gs = {}, {}
        for n in plan.slow:
            xs[n] = states[n]
            gs[n] = (lag or self._graph.lagrangian_of(n)).activation(states[n])
        for n in plan.clamped:
            xs[n] = clamped[n]
            gs[n] = self._act(n, clamped[n])
        for n in plan.copies:  # clamped memory copies of a slow layer
            src = self._layers[n].copy_of
            xs[n] = start[src]
            own = lag or self._graph.lagrangian_of(src)
            same = start[src] is states[src] and self.currents_method == "auto"
            gs[n] = gs[src] if same else own.activation(start[src])
        return xs, gs

    def _step_layers(self, plan: Plan, layers, states, start, clamped, repeat, trace,
                     full: bool = False):
        xs, gs = self._group_inputs(plan, states, start, clamped)
        like = states[plan.slow[0]]
        solves = [] if trace is not None else None
        full = full or trace is not None
        self._settle(plan, gs, xs, like, full=full, solves=solves)
        currents = {n: self._current(plan.into[n], gs, like) for n in layers}
        if not full:
            # the settled fast layers are dead once the currents are in: let them go before the
            # steps allocate (a batch of frees at the end of the group would otherwise hand a
            # large block back to the system, only to fault it in again for the next group)
            xs.clear()
            gs.clear()
        out = dict(states)
        for n in layers:
            x = states[n]
            mask, keep = None, 1.0
            if self.drop_path > 0 and self.training and plan.step == "residual":
                keep = 1.0 - self.drop_path  # stochastic depth
                mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
            out[n] = step(x, currents[n], rule=plan.step, step_size=plan.step_size,
                          tau=self._layers[n].tau, drop_mask=mask, keep_prob=keep)
        if trace is not None:
            trace.steps.append(StepTrace(
                plan, repeat, tuple(layers), {n: states[n].detach() for n in layers},
                {n: out[n].detach() for n in layers}, {k: v.detach() for k, v in xs.items()},
                {k: v.detach() for k, v in currents.items()}, solves))
        return out, xs, gs, currents

    def _run_group(self, plan: Plan, states: dict, clamped: Mapping, repeat=0, trace=None):
        start = dict(states)
        if plan.schedule == "simultaneous" or len(plan.slow) == 1:
            return self._step_layers(plan, plan.slow, states, start, clamped, repeat, trace)[0]
        for n in plan.slow:  # block-coordinate: the fast layers settle before each slow step
            states = self._step_layers(plan, (n,), states, start, clamped, repeat, trace)[0]
        return states

    def group_step(self, plan: Plan, x, clamped: Mapping, *, return_states: bool = False):
        """One group's update of the slow state(s): ``x`` is the state of a one-slow-layer
        block, or a ``{slow layer: state}`` dict. With ``return_states`` (one slow layer only):
        ``(new, xs, gs, current)`` with every settled state and activation."""
        states = x if isinstance(x, Mapping) else {self.visible: x}
        if return_states:
            if len(plan.slow) != 1:
                raise ValueError("group_step(return_states=True) needs a group with one slow "
                                 "layer; use run(..., trace=True) for the others.")
            n = plan.slow[0]
            out, xs, gs, cur = self._step_layers(plan, (n,), states, dict(states), clamped, 0,
                                                 None, full=True)
            return out[n], xs, gs, cur[n]
        out = self._run_group(plan, dict(states), clamped)
        return out if isinstance(x, Mapping) else out[self.visible]

    # ------------------------------------------------------------------ calling the block
    def _check_inputs(self, states, clamped: Mapping) -> dict:
        if len(states) != len(self.slow):
            raise TypeError(f"DerivedBlock: expected the states of the slow layers "
                            f"{list(self.slow)} in that order ({len(self.slow)} tensor(s)), got "
                            f"{len(states)}.")
        unknown = sorted(set(clamped) - set(self.clamped_inputs))
        if unknown:
            copies = [n for n in unknown if n in self.graph.neurons and
                      self.graph.neurons[n].copy_of is not None]
            hint = (f" ({copies} are memory copies, filled from the slow layers: do not pass "
                    f"them)" if copies else "")
            raise WiringError(f"DerivedBlock: clamped input(s) {unknown} name no clamped input "
                              f"of this block{hint}; expected: {list(self.clamped_inputs)}.")
        missing = [n for n in self.clamped_inputs if n not in clamped]
        if missing:
            raise WiringError(f"DerivedBlock: missing state(s) of clamped layer(s) {missing}; "
                              f"call block(..., {missing[0]}=tensor of shape (batch, "
                              f"{', '.join(map(str, self.graph.neurons[missing[0]].shape))})).")
        batch = None
        for n, x in [*zip(self.slow, states, strict=True), *clamped.items()]:
            shape = self._layers[n].shape
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"DerivedBlock: the state of layer {n!r} must be a tensor, got "
                                f"{type(x).__name__}.")
            self.check_state_dtype("DerivedBlock", n, x)
            if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
                kind = "slow" if n in self.slow else "clamped"
                raise WiringError(f"DerivedBlock: {kind} layer {n!r} expects input (batch, "
                                  f"{', '.join(map(str, shape))}), got {tuple(x.shape)}.")
            if batch is not None and x.shape[0] != batch:
                raise WiringError(f"DerivedBlock: layer {n!r} has batch size {x.shape[0]}, the "
                                  f"others {batch}; every input must share the batch size.")
            batch = x.shape[0]
        return dict(zip(self.slow, states, strict=True))

    def run(self, states, clamped: Mapping | None = None, *, trace: bool = False,
            max_iter: int | None = None, solver: str | None = None, tol: float | None = None,
            repeats: int | None = None):
        """Run the block on ``states`` (one tensor, or a sequence in the slow layers' order).

        ``max_iter``/``solver``/``tol`` override the implicit solves and ``repeats`` the number
        of passes for this call only (the plans are never edited). Returns ``(outputs, trace)``
        with ``trace`` a :class:`~hopfield.derivation.trace.Trace` when asked, else ``None``.
        """
        states = (states,) if isinstance(states, torch.Tensor) else tuple(states)
        clamped = dict(clamped or {})
        current = self._check_inputs(states, clamped)
        if repeats is not None:
            check_int("DerivedBlock.run", "repeats", repeats, minimum=0)
        plans = self.plans
        if max_iter is not None or solver is not None or tol is not None:
            changes = {k: v for k, v in (("max_iter", max_iter), ("solver", solver),
                                         ("tol", tol)) if v is not None}
            plans = tuple(p.replace(**changes) if any(c.implicit for c in p.components) else p
                          for p in plans)
        tr = Trace() if trace else None
        self.__dict__["last_stats"] = {}  # a plain attribute (no nn.Module bookkeeping)
        with self._spectral_scope():  # spectral norms: once per forward, or per iteration
            for r in range(self.repeats if repeats is None else repeats):
                for plan in plans:
                    current = self._run_group(plan, current, clamped, r, tr)
                    if self.check_finite and not is_tracing(current[plan.slow[0]]):
                        self._assert_finite(plan, r, current)
        out = tuple(current[n] for n in self.slow)
        return (out[0] if len(out) == 1 else out), tr

    def _assert_finite(self, plan: Plan, repeat: int, states: dict) -> None:
        for n in plan.slow:
            if not bool(torch.isfinite(states[n]).all()):
                bad = (~torch.isfinite(states[n])).flatten(1).any(1).nonzero().flatten().tolist()
                raise NonFiniteError(
                    f"DerivedBlock: layer {n!r} went NaN/Inf in group {plan.name!r} (pass "
                    f"{repeat}) for sample(s) {bad[:8]}. Check the block's input and weights; "
                    f"a diverging step may need a smaller step_size.")

    def forward(self, *states: torch.Tensor, **clamped: torch.Tensor):
        return self.run(states, clamped)[0]

    def exportable(self) -> ExportableBlock:
        """This block behind one module level, for ``torch.export`` and ONNX: an exported bare
        block cannot become a module again, because ``fx.GraphModule`` reserves the name
        ``graph`` (see :mod:`hopfield.derivation.exportable`)."""
        return exportable(self)

    def set_solve(self, group: int | str | None = None, **changes) -> DerivedBlock:
        """Change how implicit components are solved (``solver``, ``max_iter``, ``tol``,
        ``grad``, ``solver_options``, ``backward_tol``, ``backward_max_iter``) for one group
        (index or name) or all (``None``). Plans are frozen: this replaces them, validated as
        :func:`~hopfield.derive` validates its arguments. Returns the block.

        Example:
            >>> import hopfield as hf
            >>> blk = hf.blocks.imixer_block(8, 6).set_solve(solver="anderson", tol=1e-8)
            >>> blk.plans[0].solver, blk.plans[0].tol
            ('anderson', 1e-08)
        """
        allowed = {"solver", "max_iter", "tol", "grad", "solver_options", "backward_tol",
                   "backward_max_iter"}
        bad = sorted(set(changes) - allowed)
        if bad:
            raise TypeError(f"set_solve: unknown setting(s) {bad}; valid: {sorted(allowed)}.")
        names = [p.name for p in self.plans]
        if group is not None and not (group in names or (isinstance(group, int) and
                                                         0 <= group < len(names))):
            raise ValueError(f"set_solve: group={group!r} names no group; groups: {names} "
                             f"(or their indices).")
        plans = []
        for i, p in enumerate(self.plans):
            if group is None or group in (i, p.name):
                opt = {k: getattr(p, k) for k in ("step", "step_size", "schedule", "solver",
                                                  "max_iter", "tol", "grad", "backward_tol",
                                                  "backward_max_iter")}
                opt.update({k: v for k, v in changes.items() if k != "solver_options"})
                opt["solver_options"] = changes.get("solver_options", p.solver_options)
                check_options(f"set_solve: {p.name}", opt, self.graph, p.slow)
                opt["solver_options"] = dict(opt["solver_options"] or {})
                p = p.replace(**{k: v for k, v in opt.items() if k in allowed})
            plans.append(p)
        self.plans = tuple(plans)
        return self

    # ------------------------------------------------------------------ implicit groups
    def _implicit(self, states, group, component, clamped):
        if not 0 <= group < len(self.plans):
            raise ValueError(f"group={group} out of range: this block has {len(self.plans)} "
                             f"group(s).")
        plan = self.plans[group]
        comps = [c for c in plan.components if c.implicit]
        if not 0 <= component < len(comps):
            raise ValueError(f"{plan.name} has {len(comps)} implicit component(s); got "
                             f"component={component}.")
        target = comps[component]
        states = self._check_inputs((states,) if isinstance(states, torch.Tensor) else
                                    tuple(states), dict(clamped))
        xs, gs = self._group_inputs(plan, states, states, clamped)
        like = states[plan.slow[0]]
        # the components it reads settle first
        ext = self._settle(plan, gs, xs, like, full=False, solves=None, until=target)
        return plan, target, self._component_map(target, gs, xs, ext, like)

    def solve_implicit(self, x, group: int = 0, component: int = 0, **clamped):
        r"""Solve one implicit component for slow state(s) ``x``: returns ``(z, y, stats)`` with
        $z = (1-F)^{-1}(y)$ (packed iterate: the root layer's state for iMixer)."""
        with parametrize.cached():
            plan, _, (fmap, z0, _, y) = self._implicit(x, group, component, clamped)
            z, stats = self._solve(fmap, z0, plan)
        return z, y, stats

    def residual_map(self, z, x, group: int = 0, component: int = 0, **clamped):
        r"""Apply the residual map $(1 - F)(z) = z - F(z)$ of an implicit component, with
        $F(z) = \mathrm{map}(z) - y$. At the solution it returns the input $y$: the block's
        inverse form, made checkable."""
        with parametrize.cached():
            _, _, (fmap, _, _, y) = self._implicit(x, group, component, clamped)
            return z - (fmap(z) - y)

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
