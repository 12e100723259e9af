r"""Guarantees from checks: the Lyapunov report of a graph's descent or of a derived block
(docs/concepts/guarantees.md).

The report answers YES only when every condition of the descent theorem is *proved* for this
declaration and the step rule that actually runs:

* for a graph, exactly the dynamics of :func:`hopfield.dynamics.descend` with the same
  ``step_size`` and ``rule`` (every movable layer steps at once; fast layers are then set to
  their currents one after another);
* for a block, its groups as planned (fast layers settle, the group's slow layers step
  block-coordinate or simultaneously, groups in order).

PARTIAL: no structural condition fails (tied, convex, exact activations, one energy, bounded
below), but something is only estimated or unverified, or the step rule is not a proven descent.
NO: a structural condition fails. Reading a report never changes the model: every weight is read
inside :func:`~hopfield.dynamics.spectral.frozen_spectral_norms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.graph import EnergyGraph
from ..dynamics.spectral import SoftSpectralNorm, frozen_spectral_norms
from ..dynamics.steps import RULES
from . import checks as C
from .contraction import contraction_check

__all__ = ["LyapunovReport", "lyapunov_report", "lyapunov_checks", "DOCS"]

DOCS = "docs/concepts/guarantees.md"
STRUCTURAL = ("tied", "convex", "exact_activations", "single_energy", "bounded_below")
RESIDUAL = ("no descent of the total energy for any fixed α; only its continuous-time flow "
            "descends E_syn(g(x)), a different function (docs/concepts/dynamics.md#residual-step)")


@dataclass
class LyapunovReport:
    """Does the energy provably never increase under these dynamics?

    ``verdict``: ``"YES"``, ``"PARTIAL"`` or ``"NO"``; ``holds`` is ``verdict == "YES"``.
    ``checks``: ``{name: proved?}``; ``status``: ``{name: "proved" | "estimated" |
    "unverified" | "failed"}``; ``details``: ``{name: why}``; ``reasons``: the details of every
    check that is not proved (or, for YES, the conclusion). ``iterations_descend``: every
    fixed-point iteration of the implicit fast groups lowers their energy. ``max_step_size``
    (graphs, leaky rule): the largest $\alpha$ the step-size bound proves (``None`` if unknown).
    """

    holds: bool
    checks: dict
    reasons: list
    iterations_descend: bool = False
    verdict: str = "NO"
    status: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    subject: str = ""
    max_step_size: float | None = None

    def __str__(self):
        if self.verdict == "YES":
            head = f"Lyapunov guarantee: YES — the energy never increases under {self.subject}"
        elif self.verdict == "PARTIAL" and self.iterations_descend:
            head = ("Lyapunov guarantee: PARTIAL — every fixed-point iteration of the fast groups "
                    "lowers their energy (exact block-coordinate minimisation), but the block's "
                    "steps are not a proven descent")
        elif self.verdict == "PARTIAL":
            bad = [k for k, s in self.status.items() if s == "failed"]
            open_ = [k for k, s in self.status.items() if s not in ("proved", "failed")]
            parts = ([f"failed: {', '.join(bad)}"] if bad else []) + \
                ([f"not proved: {', '.join(open_)}"] if open_ else [])
            head = f"Lyapunov guarantee: PARTIAL — {'; '.join(parts)}"
        else:
            bad = [k for k, s in self.status.items() if s == "failed"]
            head = f"Lyapunov guarantee: NO — failed: {', '.join(bad)}"
        lines = [head, f"  checks for {self.subject} ({DOCS}):"]
        lines += [f"  - {k} [{s}]: {self.details[k]}" for k, s in self.status.items()]
        return "\n".join(lines)


def _is_block(obj) -> bool:
    """A derived block (duck-typed: the report never imports the executor)."""
    return hasattr(obj, "plans") and hasattr(obj, "graph")


def _report(found: list, subject: str, iterations_descend: bool = False) -> LyapunovReport:
    status = {c.name: c.status for c in found}
    details = {c.name: c.detail for c in found}
    if all(s == "proved" for s in status.values()):
        verdict = "YES"
    elif any(status.get(k) == "failed" for k in STRUCTURAL):
        verdict = "NO"
    else:
        verdict = "PARTIAL"
    reasons = [f"{c.name}: {c.detail}" for c in found if c.status != "proved"]
    if verdict == "YES":
        reasons = [f"every condition is proved ({', '.join(status)}): the energy never "
                   f"increases ({DOCS})"]
    return LyapunovReport(holds=verdict == "YES", checks={k: s == "proved" for k, s in
                                                           status.items()},
                          reasons=reasons, iterations_descend=iterations_descend,
                          verdict=verdict, status=status, details=details, subject=subject)


# ---------------------------------------------------------------------- graphs
def _graph_checks(graph: EnergyGraph, step_size, rule) -> LyapunovReport:
    neurons = graph.neurons
    variables = [n for n, l in neurons.items() if not l.clamped]
    movable = [n for n in variables if not neurons[n].is_fast]
    fast = [n for n in variables if neurons[n].is_fast]
    lags = {n: graph.lagrangian_of(n) for n in variables}
    syns = [s for s, e in graph.edges.items() if set(e) & set(variables)]
    cache: dict = {}
    found = [C.convexity(lags), C.exactness(lags), C.tying(graph, syns),
             C.Check("single_energy", "proved", "one graph, one energy"),
             C.boundedness(graph, variables, syns, lags, cache)]
    found.append(C.combine("fast_layers", [C.explicit_settling(graph, n, syns) for n in fast],
                           "no fast layers" if not fast else
                           f"each fast layer {fast} is set to its exact minimiser x = I"))
    moving_copies = [n for n, l in neurons.items()
                     if l.copy_of is not None and not neurons[l.copy_of].clamped]
    found.append(C.Check("copies", "unverified", f"copy layer(s) {moving_copies} follow their "
                         f"source after each step: the step descends the energy with the copy "
                         f"held, not with it refreshed") if moving_copies else
                 C.Check("copies", "proved", "no copy of a moving layer"))
    subject = f"descend(rule={rule!r}, step_size={step_size!r})"
    if rule == "residual":
        found.append(C.Check("step_size", "failed", "residual rule x ← x + αI drops the leak: "
                             + RESIDUAL))
        return _report(found, subject)
    parts, alpha_max = C.step_bound(graph, movable, syns, step_size=step_size, lags=lags,
                                    schedule="simultaneous", cache=cache,
                                    where="simultaneous leaky step")
    alpha_max = None if alpha_max is None else min(
        alpha_max, *(neurons[n].tau for n in movable), float("inf"))
    if step_size is None:
        proven = ("no step size is proven" if alpha_max is None else "no layer moves"
                  if alpha_max == float("inf") else f"leaky steps with α ≤ {alpha_max:.4g} "
                  f"are proven")
        found.append(C.Check("step_size", "unverified",
                             f"no step_size given: {proven} (2/(2 + ℓM) per layer)"))
    else:
        best = "" if alpha_max in (None, float("inf")) else f"; proven for α ≤ {alpha_max:.4g}"
        found.append(C.combine("step_size", parts, f"leaky step α = {step_size:g} ≤ τ·2/(2 + ℓM)"
                               f" for every moving layer{best}"))
        if found[-1].status != "proved" and best:
            found[-1] = C.Check("step_size", found[-1].status, found[-1].detail + best)
    report = _report(found, subject)
    report.max_step_size = alpha_max
    return report


# ---------------------------------------------------------------------- blocks
def _plain_solver(plan, comp) -> bool:
    damping = dict(plan.solver_options).get("damping", 1.0)
    return plan.solver == "fixed_point" and (damping == 1.0 or len(comp.state) == 1)


def _weights_move(block, plan) -> bool:
    """Spectral norms refreshed before every iteration in training mode change the weights."""
    if getattr(block, "spectral_schedule", "forward") != "iteration" or not block.training:
        return False
    return any(isinstance(m, SoftSpectralNorm) for s in plan.synapses
               for m in block.graph.synapses[s].modules())


def _settling(block, plan, comp, lags_ok: bool) -> tuple[tuple[str, str], bool]:
    """``((status, detail), iterations descend)`` for one fast component of ``plan``."""
    graph = block.graph
    parts = [C.explicit_settling(graph, n, plan.synapses) for n in comp.layers]
    worst = max((s for s, _ in parts), key=C.STATUSES.index)
    if not comp.implicit:
        return parts[0], False
    why = [d for s, d in parts if s != "proved"]
    if worst == "failed" or not lags_ok:
        return ("failed", f"{plan.name}: an iteration is not exact coordinate minimisation: "
                + "; ".join(why or ["untied, non-convex or inexact layers"])), False
    if not _plain_solver(plan, comp):
        return ("unverified", f"{plan.name}: solver {plan.solver!r} is not a plain fixed-point "
                "iteration: its iterates promise no monotone energy"), False
    if _weights_move(block, plan):
        return ("unverified", f"{plan.name}: spectral norms refresh before every iteration in "
                "training mode, so the weights change during the solve"), False
    budget = f"k = {plan.max_iter} iterations" if plan.tol is None else f"tol = {plan.tol:g}"
    return ("unverified", f"{plan.name}: each plain iteration of {{{', '.join(comp.layers)}}} "
            f"lowers the energy, but the solve restarts from x = y at every step and stops "
            f"after {budget}: the settled state is not the exact minimiser"), worst == "proved"


def _block_checks(block, step_size, x, clamped) -> LyapunovReport:
    graph, plans = block.graph, block.plans
    slow = tuple(getattr(block, "slow", (block.visible,)))
    fast = [n for p in plans for c in p.components for n in c.layers]
    variables = list(dict.fromkeys([*slow, *fast]))
    lags = {n: graph.lagrangian_of(n) for n in variables}
    seen = dict(lags)
    for p in plans:
        if p.lagrangian is not None:
            seen[f"{slow[0]} (in {p.name})"] = p.lagrangian
    syns = list(dict.fromkeys(s for p in plans for s in p.synapses))
    cache: dict = {}
    found = [C.convexity(seen), C.exactness(seen), C.tying(graph, syns)]
    if any(p.lagrangian is not None for p in plans):
        found.append(C.Check("single_energy", "failed", "groups see the visible layer through "
                             "different Lagrangians: operator splitting of several energies, "
                             "not one"))
    elif len(plans) > 1:
        found.append(C.Check("single_energy", "unverified", f"operator splitting: each of the "
                             f"{len(plans)} groups steps with its own current, descending its "
                             f"own part of the energy; the sequence is not proven to descend "
                             f"the total"))
    else:
        found.append(C.Check("single_energy", "proved", "one group, one energy"))
    found.append(C.boundedness(graph, variables, syns, lags, cache))
    lags_ok = found[0].status in ("proved", "estimated") and found[1].status == "proved" and \
        found[2].status == "proved"
    settle, descends = [], []
    for p in plans:
        for comp in p.components:
            part, ok = _settling(block, p, comp, lags_ok)
            settle.append(part)
            if comp.implicit:
                descends.append(ok)
    found.append(C.combine("fast_layers", settle, "every fast layer is set to its exact "
                           "minimiser x = I (explicit equilibria)" if settle else
                           "no fast layers"))
    copies = [n for p in plans for n in p.copies]
    found.append(C.Check("copies", "unverified", f"memory copies {copies} are refreshed from the "
                         f"slow layer at every group step: each step descends the energy with "
                         f"the copy held, not with it refreshed") if copies else
                 C.Check("copies", "proved", "no memory copies"))
    parts, residual = [], []
    for p in plans:
        alpha = p.step_size if step_size is None else step_size
        if p.step == "residual":
            residual.append(f"{p.name} (α = {alpha:g})")
            continue
        layers = tuple(getattr(p, "slow", (slow[0],)))
        view = {n: (p.lagrangian or lags[n]) for n in layers}
        got, _ = C.step_bound(graph, layers, p.synapses, step_size=alpha, lags=view,
                              schedule=getattr(p, "schedule", "sequential"), cache=cache,
                              where=f"{p.name} ({getattr(p, 'schedule', 'sequential')})")
        parts += got
    if residual:
        parts.append(("failed", f"residual steps x ← x + αI in {', '.join(residual)} drop the "
                      f"leak: " + RESIDUAL))
    found.append(C.combine("step_size", parts, "; ".join(d for _, d in parts)))
    implicit = [(i, p, c) for i, p in enumerate(plans) for c in p.components if c.implicit]
    if implicit:
        found.append(contraction_check(block, implicit, x, clamped, cache))
    subject = f"this block ({len(plans)} group(s), {block.repeats} pass(es))"
    return _report(found, subject, iterations_descend=bool(descends) and all(descends))


def lyapunov_checks(obj, step_size=None, rule=None, x=None, clamped=None) -> LyapunovReport:
    if _is_block(obj):
        if rule is not None:
            raise ValueError("lyapunov_report: a block's step rule is its plans' (Group(step=...))"
                             f"; pass rule only for a graph, got rule={rule!r}.")
        with frozen_spectral_norms(obj):
            return _block_checks(obj, step_size, x, dict(clamped or {}))
    if not isinstance(obj, EnergyGraph):
        raise TypeError(f"lyapunov_report: expected an EnergyGraph or DerivedBlock, got "
                        f"{type(obj).__name__}.")
    rule = "leaky" if rule is None else rule
    if rule not in RULES:
        raise ValueError(f"lyapunov_report: unknown rule {rule!r}; valid: {', '.join(RULES)}.")
    if step_size is not None and not (isinstance(step_size, (int, float)) and step_size > 0):
        raise ValueError(f"lyapunov_report: step_size must be positive, got {step_size!r}.")
    with frozen_spectral_norms(obj):
        return _graph_checks(obj, step_size, rule)


def lyapunov_report(obj, *, step_size: float | None = None, rule: str | None = None,
                    x=None, clamped: dict | None = None) -> LyapunovReport:
    """The Lyapunov report of an :class:`~hopfield.EnergyGraph` or a
    :class:`~hopfield.DerivedBlock` (docs/concepts/guarantees.md).

    Args:
        obj: the graph or block.
        step_size: graph: the $\\alpha$ of :func:`~hopfield.dynamics.descend` (``None``: report
            the largest proven one); block: overrides every group's step size.
        rule: graph only: ``"leaky"`` (the default, as in ``descend``) or ``"residual"``.
        x: block only: slow state(s) at which to *estimate* the contraction of implicit groups.
        clamped: block only: clamped inputs for that estimate.
    """
    return lyapunov_checks(obj, step_size=step_size, rule=rule, x=x, clamped=clamped)
