"""Readable reports on derived blocks: the update rules as mathematics, and the Lyapunov verdict."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.graph import EnergyGraph
from ..core.synapses import Dense

__all__ = ["LyapunovReport", "describe_block", "feedback_lipschitz", "lyapunov_checks",
           "lyapunov_report"]


def _is_block(obj) -> bool:
    """A derived block (duck-typed: the report never imports the executor)."""
    return hasattr(obj, "plans") and hasattr(obj, "visible") and hasattr(obj, "graph")


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
    """Multi-line text: layers, groups, explicit/implicit equilibria, solver, step, verdict."""
    g, vis = block.graph, block.visible
    vl = g.neurons[vis]
    lines = [f"DerivedBlock — visible layer {vis!r} {vl.shape}, "
             f"Lagrangian {_lag_name(g.lagrangian_of(vis))}"]
    if block.repeats > 1:
        lines.append(f"  the group sequence is applied {block.repeats} times (T = {block.repeats})")
    for k, p in enumerate(block.plans, 1):
        lag = f", visible Lagrangian {_lag_name(p.lagrangian)} (per-group)" if p.lagrangian else ""
        lines.append(f"[{k}] {p.name}: synapses {', '.join(p.synapses)}{lag}")
        for c in p.copies:
            lines.append(f"    clamped memory {c!r} = copy of {vis!r} at the start of the step")
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
            lines.append(f"      solver {p.solver!r} from x = y, {budget}; gradient: {p.grad}")
            lip = feedback_lipschitz(block, comp)
            if lip is not None:
                note = "contraction: (1 − F) invertible" if lip < 1 else \
                    "NOT a guaranteed contraction (bound ≥ 1)"
                lines.append(f"      Lipschitz bound of F ≤ {lip:.3f} — {note}")
        rule = ("x ← x + I" if p.step_size == 1.0 else f"x ← x + {p.step_size:g}·I") \
            if p.step == "residual" else f"x ← x + ({p.step_size:g}/τ)(I − x)"
        lines.append(f"    {p.step} step of {vis!r}: {rule},  I = {_slots(block, p.into_visible)}")
    lines.append(f"currents: {'closed forms pinned to autograd by tests' if block.currents_method == 'auto' else 'autograd'}")
    lines.append(str(lyapunov_checks(block)))
    return "\n".join(lines)


def feedback_lipschitz(block, comp) -> float | None:
    """Upper bound on Lip(F) for a two-layer Dense feedback chain (None when not applicable)."""
    from ..dynamics.spectral import operator_norm

    if len(comp.state) != 1 or len(comp.eliminated) != 1:
        return None
    g = block.graph
    root, far = comp.state[0], comp.eliminated[0]
    syns = {s for s, _ in comp.internal[root]} | {s for s, _ in comp.internal[far]}
    if len(syns) != 1:
        return None
    syn = g.synapses[next(iter(syns))]
    if not isinstance(syn, Dense):
        return None
    l1, l2 = g.lagrangian_of(root).lipschitz, g.lagrangian_of(far).lipschitz
    if l1 is None or l2 is None:
        return None
    w_back = syn.weight.t() if syn.weight_back is None else syn.weight_back
    return float(l1 * l2 * operator_norm(syn.weight) * operator_norm(w_back))


def lyapunov_checks(obj, step_size=None):
    graph = obj.graph if _is_block(obj) else obj
    if not isinstance(graph, EnergyGraph):
        raise TypeError(f"lyapunov_report: expected an EnergyGraph or DerivedBlock, got "
                        f"{type(obj).__name__}.")
    reasons, checks = [], {}
    lags = {n: graph.lagrangian_of(n) for n in graph.neurons}
    if _is_block(obj):
        for p in obj.plans:
            if p.lagrangian is not None:
                lags[f"{obj.visible} (in {p.name})"] = p.lagrangian
    nonconvex = sorted(f"{n}: {type(l).__name__}" for n, l in lags.items() if not l.is_convex)
    checks["convex"] = not nonconvex
    if nonconvex:
        reasons.append(f"non-convex Lagrangian(s) [{'; '.join(nonconvex)}] — e.g. GELU dips below "
                       f"zero, so its Lagrangian's Hessian is negative for x < -0.75")
    inexact = sorted(n for n, l in lags.items() if not l.exact)
    checks["exact_activations"] = not inexact
    if inexact:
        reasons.append(f"activation(s) of {inexact} are not gradients of their Lagrangians "
                       f"(per-feature LayerNorm gain: a relaxation)")
    untied = sorted(s for s, syn in graph.synapses.items() if not syn.tied)
    checks["tied"] = not untied
    if untied:
        reasons.append(f"untied synapse(s) {untied}: the update is no energy's gradient "
                       f"(symmetry broken, THEORY §5)")
    single = True
    step_ok = True
    if _is_block(obj):
        if any(p.lagrangian is not None for p in obj.plans):
            single = False
            reasons.append("groups see the visible layer through different Lagrangians: operator "
                           "splitting of several energies, not one")
        for p in obj.plans:
            alpha = step_size or p.step_size
            if p.step == "leaky" and alpha > graph.neurons[obj.visible].tau:
                step_ok = False
                reasons.append(f"{p.name}: leaky step α={alpha:g} > τ (Euler overshoots)")
            if p.step == "residual" and alpha >= 1.0:
                step_ok = False
                reasons.append(f"{p.name}: residual step α={alpha:g} is a full skip-connection "
                               f"step; descent is only guaranteed for small α")
    elif step_size is not None:
        slow = [n for n, l in graph.neurons.items() if not l.clamped and not l.is_fast]
        for n in slow:
            if step_size > graph.neurons[n].tau:
                step_ok = False
                reasons.append(f"step α={step_size:g} > τ={graph.neurons[n].tau:g} of {n!r}")
    checks["single_energy"] = single
    checks["step_size"] = step_ok
    holds = all(checks.values())
    # THEORY §4.3: with convex Lagrangians and tied synapses, each plain iteration of a fast
    # group is exact block-coordinate minimisation of its energy, whatever the visible step
    has_implicit = _is_block(obj) and any(
        c.implicit for p in obj.plans for c in p.components)
    iterations_descend = has_implicit and checks["convex"] and checks["exact_activations"] and \
        checks["tied"]
    if holds:
        reasons.append("convex Lagrangians, tied synapses, one energy and a stable step: the "
                       "energy never increases (THEORY §3)")
    return LyapunovReport(holds=holds, checks=checks, reasons=reasons,
                          iterations_descend=iterations_descend)


@dataclass
class LyapunovReport:
    """Does the energy provably never increase? ``holds`` and, for each failed check, why."""

    holds: bool
    checks: dict
    reasons: list
    iterations_descend: bool = False  # fixed-point iterations of implicit groups lower E

    def __str__(self):
        if self.holds:
            head = "Lyapunov guarantee: YES"
        elif self.iterations_descend:
            head = ("Lyapunov guarantee: PARTIAL — every fixed-point iteration of the fast groups "
                    "lowers their energy (exact block-coordinate minimisation), but the visible "
                    "step is not guaranteed")
        else:
            head = "Lyapunov guarantee: NO"
        return "\n".join([head] + [f"  - {r}" for r in self.reasons])


def lyapunov_report(obj, *, step_size: float | None = None) -> LyapunovReport:
    """Check convexity, tying and step size for an :class:`EnergyGraph` or :class:`DerivedBlock`."""
    return lyapunov_checks(obj, step_size=step_size)
