"""``hf.derive``: from a declared energy to a :class:`~hopfield.DerivedBlock`
(docs/concepts/fast_layers.md)."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.errors import WiringError
from ..core.graph import EnergyGraph
from ..dynamics.spectral import SCHEDULES as SPECTRAL_SCHEDULES
from .block import DerivedBlock
from .plan import Group, plan_group

__all__ = ["derive", "CURRENT_METHODS"]

CURRENT_METHODS = ("auto", "autograd")


def _slow_layers(graph: EnergyGraph, slow) -> tuple[str, ...]:
    names = (slow,) if isinstance(slow, str) else tuple(slow)
    if not names:
        raise WiringError("derive: name at least one slow layer for the block to update.")
    for n in names:
        if not isinstance(n, str) or n not in graph.neurons:
            raise WiringError(f"derive: slow layer {n!r} is not a declared neuron; declared: "
                              f"{sorted(graph.neurons)}.")
        layer = graph.neurons[n]
        if layer.clamped or layer.is_fast:
            kind = "clamped" if layer.clamped else "fast (tau=0)"
            raise WiringError(f"derive: the visible layer {n!r} must be slow and not clamped; "
                              f"it is {kind}.")
    if len(set(names)) != len(names):
        raise WiringError(f"derive: slow layers {list(names)} name a layer twice.")
    return names


def derive(graph: EnergyGraph, visible: str | Sequence[str],
           groups: Sequence[Group | Sequence[str]] | None = None, *, tied: bool | None = None,
           step: str = "residual", step_size: float = 1.0, schedule: str = "sequential",
           repeats: int = 1, solver: str = "fixed_point", max_iter: int = 4,
           tol: float | None = None, grad: str = "unrolled", solver_options: dict | None = None,
           backward_tol: float | None = 1e-8, backward_max_iter: int | None = None,
           currents: str = "auto", spectral_schedule: str = "forward",
           exclude: Sequence[str] = (), check_finite: bool = False) -> DerivedBlock:
    r"""Turn a declared energy into a block whose forward is the derived update.

    Args:
        graph: the energy.
        visible: the slow layer the block updates (its input and output), or a list of slow
            layers: the block is then called with their states in that order (clamped layers
            by keyword) and returns them in the same order.
        groups: operator-splitting groups, in order: :class:`Group` objects or plain lists of
            synapse names. Default: one group with every synapse. A synapse in no group is an
            error unless it is listed in ``exclude``.
        tied: ``True`` demands that every synapse of the block be tied (raises otherwise);
            ``False`` or ``None`` accept untied synapses (``describe()`` reports them).
        step, step_size: default step rule and $\alpha$ for groups that do not set their own.
        schedule: with several slow layers in a group, ``"sequential"`` (block-coordinate in
            the declared order: the fast layers settle before each slow layer steps) or
            ``"simultaneous"`` (all slow layers step from one settled state).
        repeats: apply the whole group sequence this many times (the Energy Transformer's $T$).
        solver, max_iter, tol, grad, solver_options: defaults for implicit components:
            a registered solver name, its iteration budget (the iMixer $k$ when ``tol=None``),
            tolerance, gradient mode (``"unrolled"``, ``"implicit"``, ``"phantom"``).
        backward_tol, backward_max_iter: the implicit-gradient solve's tolerance and budget.
        currents: ``"auto"`` (closed forms where the synapse has one, pinned to autograd by the
            tests; autograd elsewhere) or ``"autograd"`` (every current by autograd).
        spectral_schedule: when spectral-normalised weights are refreshed: ``"forward"`` (once
            per forward, the default) or ``"iteration"`` (before every fixed-point iteration,
            as the official iMixer code does; the default for converted official checkpoints).
        exclude: synapses deliberately left out of every group.
        check_finite: raise :class:`~hopfield.NonFiniteError` naming the group and layer when a
            slow state goes NaN/Inf (off by default: it costs a device sync per group step;
            skipped while compiling or exporting). Settable later as ``block.check_finite``.

    Returns:
        A :class:`DerivedBlock`.
    """
    if not isinstance(graph, EnergyGraph):
        raise TypeError(f"derive: expected an EnergyGraph, got {type(graph).__name__}.")
    if isinstance(visible, str) and visible not in graph.neurons:
        raise WiringError(f"derive: visible={visible!r} is not a declared neuron; declared: "
                          f"{sorted(graph.neurons)}.")
    slow = _slow_layers(graph, visible)
    if currents not in CURRENT_METHODS:
        raise ValueError(f"derive: currents must be one of {CURRENT_METHODS}, got {currents!r}.")
    if spectral_schedule not in SPECTRAL_SCHEDULES:
        raise ValueError(f"derive: spectral_schedule must be one of {SPECTRAL_SCHEDULES}, got "
                         f"{spectral_schedule!r}.")
    if isinstance(repeats, bool) or not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"derive: repeats must be an int >= 1, got {repeats!r}.")
    if isinstance(max_iter, bool) or not (isinstance(max_iter, int) and max_iter >= 0):
        raise ValueError(f"derive: max_iter must be an int >= 0, got {max_iter!r}.")
    unknown = [s for s in exclude if s not in graph.edges]
    if unknown:
        raise WiringError(f"derive: exclude names unknown synapse(s) {unknown}; declared: "
                          f"{sorted(graph.edges)}.")
    if groups is None:
        groups = [Group([s for s in graph.edges if s not in exclude])]
    if isinstance(groups, (str, Group)):
        groups = [groups]
    groups = [g if isinstance(g, Group) else Group([g] if isinstance(g, str) else list(g))
              for g in groups]
    defaults = dict(step=step, step_size=step_size, schedule=schedule, solver=solver,
                    max_iter=max_iter, tol=tol, grad=grad, solver_options=solver_options,
                    backward_tol=backward_tol, backward_max_iter=backward_max_iter)
    owned: dict = {}
    plans = [plan_group(graph, slow, g, i + 1, defaults, owned) for i, g in enumerate(groups)]
    both = sorted(set(owned) & set(exclude))
    if both:
        raise WiringError(f"derive: synapse(s) {both} are both in a group and in exclude.")
    untied = sorted(s for s in owned if not graph.synapses[s].tied)
    if tied and untied:
        raise WiringError(f"derive: tied=True, but synapse(s) {untied} are untied; declare them "
                          f"with tied=True or pass tied=False.")
    fast_owner: dict = {}
    for p in plans:
        for c in p.components:
            for n in c.layers:
                if n in fast_owner:
                    raise WiringError(f"derive: fast layer {n!r} is touched by {fast_owner[n]} "
                                      f"and {p.name}; give each group its own fast layers.")
                fast_owner[n] = p.name
    left = [s for s in graph.edges if s not in owned and s not in exclude]
    if left:
        raise WiringError(f"derive: synapse(s) {left} belong to no group, so the block would "
                          f"ignore their energy. Add them to a group, or pass "
                          f"exclude={left} to leave them out on purpose.")
    block = DerivedBlock(graph, slow, plans, repeats, currents, spectral_schedule)
    block.check_finite = bool(check_finite)
    return block
