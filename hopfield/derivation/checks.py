r"""The individual checks of a Lyapunov report (docs/concepts/guarantees.md).

Each returns a :class:`Check` with a status:

* ``"proved"`` — a proof for this declaration (built-in declarations pinned by tests, exact
  norms, rigorous bounds);
* ``"estimated"`` — a numerical estimate (sampled convexity, a power-iteration norm): evidence,
  not a proof;
* ``"unverified"`` — no proof either way (an unknown constant, a bound that is not met);
* ``"failed"`` — a condition the proof needs does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import lagrangians as L
from .below import bounded_below
from .bounds import activation_lipschitz, affine_in, smoothness

__all__ = ["Check", "STATUSES", "combine", "convexity", "exactness", "tying", "boundedness",
           "explicit_settling", "step_bound"]

STATUSES = ("proved", "estimated", "unverified", "failed")


@dataclass(frozen=True)
class Check:
    """One condition of the guarantee: its ``name``, ``status`` and a readable ``detail``."""

    name: str
    status: str
    detail: str


def combine(name: str, parts: list[tuple[str, str]], proved: str) -> Check:
    """The worst status of ``parts`` ``[(status, detail)]``; details of the non-proved parts."""
    if not parts:
        return Check(name, "proved", proved)
    worst = max((s for s, _ in parts), key=STATUSES.index)
    if worst == "proved":
        return Check(name, "proved", proved if proved else "; ".join(d for _, d in parts))
    return Check(name, worst, "; ".join(d for s, d in parts if s != "proved"))


def convexity(lags: dict) -> Check:
    """Every Lagrangian convex: declared by a built-in (proved), sampled (estimated), unknown."""
    bad, sampled, unknown = [], [], []
    for n, lag in lags.items():
        kind = type(lag).__name__
        if lag.is_convex is False:
            bad.append(f"{n}: {kind}")
        elif lag.is_convex is None:
            unknown.append(f"{n}: {kind}")
        elif lag.convexity_source == "sampled":
            check = lag.__dict__["_convexity_check"]
            sampled.append(f"{n}: {kind} convex on {check.samples} samples (not a proof)")
    if bad:
        gelu = any(isinstance(lag, L.GELU) for lag in lags.values())
        why = (" — e.g. GELU dips below zero, so its Lagrangian's Hessian is negative for "
               "x < -0.75") if gelu else " — a Hessian eigenvalue is negative somewhere"
        return Check("convex", "failed", f"non-convex Lagrangian(s) [{'; '.join(bad)}]{why}")
    if unknown:
        return Check("convex", "unverified",
                     f"convexity of user Lagrangian(s) [{'; '.join(unknown)}] is unverified: "
                     f"run hf.lagrangians.check_convexity(lag, shape).mark()")
    if sampled:
        return Check("convex", "estimated", "; ".join(sampled))
    names = sorted({type(lag).__name__ for lag in lags.values()})
    return Check("convex", "proved",
                 f"built-in Lagrangians declared convex ({', '.join(names) or 'none'})")


def _user_activation(lag) -> bool:
    """A class outside the built-ins overrides ``activation`` (not pinned to the gradient)."""
    mro = type(lag).__mro__
    return any("activation" in vars(c) and c.__module__ != L.__name__
               for c in mro[:mro.index(L.Lagrangian)])


def exactness(lags: dict) -> Check:
    """Every activation is the gradient of its Lagrangian: built-ins declare ``exact`` (tests pin
    the closed forms to autograd); a user's own ``activation`` is unverified."""
    inexact = sorted(n for n, lag in lags.items() if not lag.exact)
    if inexact:
        return Check("exact_activations", "failed",
                     f"activation(s) of {inexact} are not gradients of their Lagrangians "
                     f"(per-feature LayerNorm gain: a relaxation)")
    own = sorted(n for n, lag in lags.items() if _user_activation(lag))
    if own:
        return Check("exact_activations", "unverified",
                     f"layer(s) {own} use a user-written activation, not checked to be the "
                     f"gradient of its Lagrangian")
    return Check("exact_activations", "proved", "every activation is the gradient of its "
                 "Lagrangian")


def tying(graph, synapses) -> Check:
    untied = sorted(s for s in synapses if not graph.synapses[s].tied)
    if untied:
        return Check("tied", "failed", f"untied synapse(s) {untied}: the update is no energy's "
                     f"gradient (symmetry broken, docs/concepts/untying.md)")
    return Check("tied", "proved", "every synapse is tied: the currents are -∂E_syn/∂g")


def boundedness(graph, variables, synapses, lags, cache) -> Check:
    status, detail = bounded_below(graph, variables, synapses, lags, cache)
    return Check("bounded_below", status, detail)


def explicit_settling(graph, layer: str, synapses) -> tuple[str, str]:
    """One assignment $x_A = I_A$ is the exact minimiser over $x_A$ when every synapse touching
    $A$ is affine in $g_A$ (then $E$ restricted to $A$ is $L_A^*(g_A) - I_A\\cdot g_A$)."""
    parts = []
    for s in synapses:
        if layer not in graph.edges[s]:
            continue
        how = affine_in(graph, s, layer)
        if how == "no":
            return "failed", (f"fast layer {layer!r}: synapse {s!r} "
                              f"({type(graph.synapses[s]).__name__}) is not affine in it, so its "
                              f"current depends on its own activation and one assignment "
                              f"x = I does not settle it exactly")
        if how == "declared":
            parts.append(s)
    if parts:
        return "unverified", (f"fast layer {layer!r}: synapse(s) {parts} declare themselves "
                              f"affine in it (checked numerically, not proven)")
    return "proved", f"fast layer {layer!r}: x = I is its exact minimiser"


def _ln_note(lag, ell) -> str:
    if isinstance(lag, (L.LayerNorm, L.SphericalNorm)):
        return (f" (ℓ = max|γ|/√ε = {ell:.3g} for {type(lag).__name__} with ε = {lag.eps:g}: "
                f"the bound allows almost no step)")
    return ""


def step_bound(graph, layers, synapses, *, step_size, lags, schedule, cache, where: str
               ) -> tuple[list[tuple[str, str]], float | None]:
    r"""Leaky steps $a_A = \alpha/\tau_A \le 2/(2 + \ell_A M)$ for each moving layer.

    ``schedule="simultaneous"``: $M$ over all ``layers`` at once; ``"sequential"``: $M_A$ for
    each layer alone (block-coordinate). Returns the per-layer ``(status, detail)`` parts and the
    largest proven step size $\alpha_{\max}$ (``None`` when a constant is unknown).
    """
    parts, alpha_max = [], float("inf")
    joint = None
    if schedule == "simultaneous" and len(layers) > 1:
        joint = smoothness(graph, layers, synapses, cache)
    for n in layers:
        tau, lag = graph.neurons[n].tau, lags[n]
        m, how = joint if joint is not None else smoothness(graph, [n], synapses, cache)
        ell = activation_lipschitz(lag)
        if m is None or ell is None:
            why = how if m is None else f"the slope ℓ of {n!r}'s activation is unknown"
            parts.append(("unverified", f"{where}: {why}"))
            alpha_max = None
            continue
        bound = 2.0 / (2.0 + ell * m)
        if alpha_max is not None:
            alpha_max = min(alpha_max, tau * bound)
        if step_size is None:
            continue
        a = step_size / tau
        text = f"{where}: layer {n!r} a = α/τ = {a:.4g}, sufficient bound 2/(2 + ℓM) = " \
               f"{bound:.4g} (ℓ = {ell:.4g}, M = {m:.4g})"
        if a > 1.0:
            parts.append(("failed", f"{where}: layer {n!r} leaky step α = {step_size:g} > τ = "
                          f"{tau:g}: the Euler step overshoots"))
        elif a <= bound * (1 + 1e-12):
            parts.append(("proved", text))
        else:
            parts.append(("unverified", text + " is not met" + _ln_note(lag, ell)))
    return parts, alpha_max
