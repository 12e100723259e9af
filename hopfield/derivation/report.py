"""Readable reports on derived blocks: the update rules as mathematics, and the Lyapunov verdict."""

from __future__ import annotations

from ..dynamics.spectral import frozen_spectral_norms
from .contraction import contraction_bound
from .guarantees import LyapunovReport, lyapunov_checks, lyapunov_report

__all__ = ["LyapunovReport", "describe_block", "feedback_lipschitz", "lyapunov_checks",
           "lyapunov_report"]


def _lag_name(lag) -> str:
    name = type(lag).__name__
    if name == "LayerNorm":
        name += "(per-feature gain)" if lag.per_feature else "(scalar gain)"
    return name


def _slots(block, pairs) -> str:
    g = block.graph
    parts = []
    for s, i in pairs:
        syn, edge = g.synapses[s], g.edges[s]
        src = [n for j, n in enumerate(edge) if j != i] or [edge[i]]
        kind = type(syn).__name__.removeprefix("Parametrized") + ("" if syn.tied else ", untied")
        parts.append(f"{s}[{kind}](g_{', g_'.join(src)})")
    return " + ".join(parts) if parts else "0"


def describe_block(block) -> str:
    """Multi-line text: layers, groups, explicit/implicit equilibria, solver, step, verdict.

    Never changes the block: weights are read with frozen spectral norms."""
    with frozen_spectral_norms(block):
        return _describe(block)


def _describe(block) -> str:
    g, vis = block.graph, block.visible
    slow = tuple(getattr(block, "slow", (vis,)))
    if len(slow) == 1:
        lines = [f"DerivedBlock — visible layer {vis!r} {g.neurons[vis].shape}, "
                 f"Lagrangian {_lag_name(g.lagrangian_of(vis))}"]
    else:
        layers = "; ".join(f"{n!r} {g.neurons[n].shape} {_lag_name(g.lagrangian_of(n))}"
                           for n in slow)
        lines = [f"DerivedBlock — slow layers {layers}; called and returned in this order"]
    clamped = getattr(block, "clamped_inputs", ())
    if clamped:
        lines.append(f"  clamped inputs (by keyword): {', '.join(clamped)}")
    if block.repeats > 1:
        lines.append(f"  the group sequence is applied {block.repeats} times (T = {block.repeats})")
    for k, p in enumerate(block.plans, 1):
        lag = f", visible Lagrangian {_lag_name(p.lagrangian)} (per-group)" if p.lagrangian else ""
        lines.append(f"[{k}] {p.name}: synapses {', '.join(p.synapses)}{lag}")
        for c in p.copies:
            lines.append(f"    clamped memory {c!r} = copy of {g.neurons[c].copy_of!r} at the "
                         f"start of the step")
        for comp in p.components:
            acts = ", ".join(f"{n} {g.neurons[n].shape} {_lag_name(g.lagrangian_of(n))}"
                             for n in comp.layers)
            if not comp.implicit:
                n = comp.layers[0]
                lines.append(f"    explicit fast layer {acts}:")
                lines.append(f"      x_{n} = {_slots(block, comp.external[n])}   (one evaluation)")
                continue
            lines.append(f"    IMPLICIT fast group {{{', '.join(comp.layers)}}} ({acts}):")
            for n in comp.state:
                lines.append(f"      y_{n} = {_slots(block, comp.external[n])}   (from slow layers)")
            for n in comp.eliminated:
                lines.append(f"      x_{n} = {_slots(block, comp.internal[n])}   (eliminated "
                             f"inside the map)")
            z = ", ".join(f"x_{n}" for n in comp.state)
            lines.append(f"      F({z}) = {' ; '.join(_slots(block, comp.internal[n]) for n in comp.state)}")
            lines.append(f"      solve {z} = y + F({z}),  i.e.  {z} = (1 − F)⁻¹(y)")
            budget = (f"exactly k = {p.max_iter} iterations" if p.tol is None else
                      f"tol = {p.tol:g}, at most {p.max_iter} iterations")
            how = (" (plain iteration, switching to Anderson when the residual stalls)"
                   if p.solver == "safeguarded" and p.tol is not None else "")
            lines.append(f"      solver {p.solver!r}{how} from x = y, {budget}; gradient: {p.grad}")
            lip = feedback_lipschitz(block, comp)
            if lip is not None:
                note = "contraction: (1 − F) invertible" if lip < 1 else \
                    "NOT a guaranteed contraction (bound ≥ 1)"
                lines.append(f"      Lipschitz bound of F ≤ {lip:.3f} — {note}")
        rule = ("x ← x + I" if p.step_size == 1.0 else f"x ← x + {p.step_size:g}·I") \
            if p.step == "residual" else f"x ← x + ({p.step_size:g}/τ)(I − x)"
        stepped = tuple(getattr(p, "slow", (vis,)))
        if len(stepped) > 1:
            how = ("block-coordinate, in this order; the fast layers settle before each step"
                   if p.schedule == "sequential" else "simultaneously, from one settled state")
            lines.append(f"    schedule: {p.schedule} ({how})")
        for n in stepped:
            into = p.into[n] if hasattr(p, "into") else p.into_visible
            lines.append(f"    {p.step} step of {n!r}: {rule},  I = {_slots(block, into)}")
    lines.append(f"currents: {'closed forms pinned to autograd by tests' if block.currents_method == 'auto' else 'autograd'}")
    lines.append(str(lyapunov_checks(block)))
    return "\n".join(lines)


def feedback_lipschitz(block, comp) -> float | None:
    """A rigorous upper bound on Lip(F) of an implicit component's fixed-point map (``None``
    when no bound is available): operator norms times activation slopes along the group's
    couplings (docs/concepts/guarantees.md#contraction)."""
    with frozen_spectral_norms(block):
        return contraction_bound(block.graph, comp)[0]
