r"""Is the energy bounded below? (docs/concepts/guarantees.md#bounded-below)

Write $E = \sum_A L_A^*(g_A) + E_\text{syn}(g)$ over the layers that move (clamped layers and
memory copies are constants). For a convex $L_A$, $L_A^*(g) \ge -L_A(0)$. Three cases:

* **bounded activations** (tanh, sigmoid, softmax, layer/spherical norm) enter built-in,
  continuous synapses only through a bounded set, so those terms are bounded;
* a layer with an **unbounded** activation that a synapse touches only *linearly* (a bias, a
  bilinear synapse to a bounded or clamped layer, a Hopfield memory, which is at least
  $-\lVert\xi\rVert\,\lVert g\rVert - \beta^{-1}\log K$) is fine too: $L^*(g) - c\cdot g \ge
  -L(c)$ for a built-in (finite, convex) $L$ and bounded $c$;
* unbounded layers **coupled to each other** by bilinear synapses need the quadratic part
  $Q(g) = \tfrac12\sum_A\lVert g_A\rVert^2 + E_\text{quad}(g)$ to be positive definite, which is
  decided only for identity and ReLU layers ($L^* = \tfrac12\lVert g\rVert^2$ on their range):
  by the exact Hessian when it is small, else by $\lambda_{\max}(K) < 1$ of the matrix of
  coupling norms (for two ReLU layers the positive part $W_+$ may replace $W$: $g \ge 0$). A
  negative eigenvalue with identity layers only is a proof of **unboundedness**.

Anything else is "unverified".
"""

from __future__ import annotations

import torch

from ..core import lagrangians as L
from ..core import synapses as S
from .bounds import (
    bounded_activation,
    builtin_lagrangian,
    builtin_synapse,
    matrix_norm,
    quadratic_conjugate,
    self_coupling,
    slot_norm,
)

__all__ = ["bounded_below"]

_EXACT_LIMIT = 256  # largest quadratic part whose Hessian is formed and diagonalised


def _is_relu(lag) -> bool:
    return quadratic_conjugate(lag) and isinstance(lag, L.RectifiedPower)


def _relu_pair_norm(syn) -> float | None:
    """$\\lVert W_+\\rVert_2$ for a Dense synapse between two ReLU layers (activations >= 0)."""
    if builtin_synapse(syn) is S.Dense and syn.tied:
        return matrix_norm(syn.weight.detach().clamp(min=0))
    return None


def _norm_test(graph, quad, layers, lags, cache) -> float:
    """$\\lambda_{\\max}(K)$ with $K_{AB}$ the coupling norms among ``layers``."""
    index = {n: i for i, n in enumerate(layers)}
    K = torch.zeros(len(layers), len(layers), dtype=torch.float64)
    for s in quad:
        edge, syn = graph.edges[s], graph.synapses[s]
        relu = all(_is_relu(lags[n]) for n in edge)
        if edge[0] == edge[1]:
            loop = self_coupling(syn)  # ||W + W^T|| >= 2 lambda_max(sym W): a valid bound
            K[index[edge[0]], index[edge[0]]] += loop if loop is not None else float("inf")
            continue
        norm = max(slot_norm(syn, 0, cache), slot_norm(syn, 1, cache))
        if relu:
            plus = _relu_pair_norm(syn)
            norm = min(norm, plus) if plus is not None else norm
        a, b = index[edge[0]], index[edge[1]]
        K[a, b] += norm
        K[b, a] += norm
    if not torch.isfinite(K).all():
        return float("inf")
    return float(torch.linalg.eigvalsh(K).max()) if len(layers) else 0.0


def _hessian_product(graph, quad, layers):
    r"""``(matvec, size)``: $v \mapsto Qv = v + \nabla^2 E_\text{quad}\,v$ on batches of flat
    activation vectors ``(k, size)`` of ``layers`` (float64 in and out). The quadratic energy's
    gradient is affine, so $\nabla^2 E\,v = \nabla E(v) - \nabla E(0)$."""
    shapes = {n: graph.neurons[n].shape for n in layers}
    sizes = [torch.Size(shapes[n]).numel() for n in layers]
    param = next(iter(graph.synapses[quad[0]].parameters()), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else None

    def gradient(v):
        with torch.enable_grad():
            v = v.detach().to(dtype=dtype, device=device).requires_grad_(True)
            parts = torch.split(v, sizes, dim=1)
            gs = {n: p.reshape(v.shape[0], *shapes[n]) for n, p in zip(layers, parts, strict=True)}
            e = sum(graph.synapses[s].energy(*(gs[n] for n in graph.edges[s])) for s in quad)
            (grad,) = torch.autograd.grad(e.sum(), v)
        return grad.detach().to(torch.float64).cpu()

    total = sum(sizes)
    offset = gradient(torch.zeros(1, total))

    def matvec(v):
        return v + gradient(v) - offset

    return matvec, total


def _dense(matvec, size) -> torch.Tensor:
    q = matvec(torch.eye(size, dtype=torch.float64))  # row i is Q e_i
    return 0.5 * (q + q.t())


def _cone_witness(matvec, cone: torch.Tensor, norm: float, start=None, steps: int = 200) -> float:
    r"""The smallest $v^\top Q v$ found over unit $v$ with $v_i \ge 0$ where ``cone`` is set
    (ReLU entries), by projected descent of the Rayleigh quotient (step $1/(2\lVert Q\rVert)$)
    from ``start`` (else a fixed random vector). A negative value is a *witness*: along $tv$ the
    activations stay in range and the energy falls without bound."""
    if start is not None:
        starts = [start, -start]
    else:
        gen = torch.Generator().manual_seed(0)
        starts = [torch.randn(cone.shape[0], generator=gen, dtype=torch.float64)]
    best, step = float("inf"), 0.5 / max(norm, 1e-12)
    for v in starts:
        for _ in range(steps):
            v = torch.where(cone, v.clamp(min=0), v)
            size = v.norm()
            if size < 1e-12:
                break
            v = v / size
            qv = matvec(v[None])[0]
            q = float(v @ qv)
            best = min(best, q)
            if best < -1e-3:  # a clear witness: stop
                return best
            v = v - step * (qv - q * v)
    return best


def bounded_below(graph, variables, synapses, lags, cache=None) -> tuple[str, str]:
    """``(status, detail)``: ``"proved"``, ``"failed"`` (proved unbounded) or ``"unverified"``.

    Args:
        graph: the energy graph.
        variables: the layers that move (slow and fast, not clamped).
        synapses: the synapses in scope.
        lags: ``{layer: Lagrangian}`` for the variables (per-group overrides applied).
        cache: a dict shared by the report for norms.
    """
    variables = set(variables)
    for n in sorted(variables):
        if not builtin_lagrangian(lags[n]):
            return "unverified", (f"layer {n!r} has a user Lagrangian "
                                  f"({type(lags[n]).__name__}): its Legendre term is bounded "
                                  f"below only if it is convex and finite everywhere")
    unbounded = {n for n in variables if not bounded_activation(lags[n])}
    quad = []
    for s in synapses:
        edge, syn = graph.edges[s], graph.synapses[s]
        if not variables & set(edge):
            continue
        kind = builtin_synapse(syn)
        if kind is None:
            return "unverified", (f"synapse {s!r} ({type(syn).__name__}) is not a built-in: its "
                                  f"continuity and growth are unknown")
        touched = [n for n in edge if n in unbounded]
        if not touched or kind in (S.Bias, S.HopfieldMemory):
            continue  # bounded arguments, or at most linear growth
        if kind is S.MultiHeadAttention:
            return "unverified", (f"attention {s!r} reads the unbounded layer(s) {touched}: its "
                                  f"growth is not analysed")
        if len(touched) == 2 or (len(edge) == 2 and edge[0] == edge[1]):
            quad.append(s)
    if not quad:
        kinds = "bounded activations" if not unbounded else (
            f"bounded activations, and the unbounded layer(s) {sorted(unbounded)} only "
            f"linearly coupled" if variables - unbounded else
            f"the unbounded layer(s) {sorted(unbounded)} only linearly coupled")
        return "proved", f"{kinds}: every Legendre term and synapse energy is bounded below"
    layers = sorted({n for s in quad for n in graph.edges[s]})
    odd = [n for n in layers if not quadratic_conjugate(lags[n])]
    if odd:
        return "unverified", (f"layer(s) {odd} ({', '.join(type(lags[n]).__name__ for n in odd)})"
                              f" are coupled bilinearly to unbounded layers; only identity and "
                              f"ReLU couplings are analysed")
    matvec, size = _hessian_product(graph, quad, layers)
    lam, bottom = None, None
    if size <= _EXACT_LIMIT:
        dense = _dense(matvec, size)
        vals, vecs = torch.linalg.eigh(dense)
        lam, bottom = float(vals[0]), vecs[:, 0]
        matvec = dense.__rmatmul__  # v @ Q: no more autograd passes
        if lam > 1e-6:
            return "proved", (f"the quadratic part over {layers} is positive definite "
                              f"(smallest Hessian eigenvalue {lam:.3g})")
    rho = _norm_test(graph, quad, layers, lags, cache)
    if rho < 1.0:
        return "proved", (f"the quadratic part over {layers} is positive definite on the "
                          f"activations' range: λ_max of the coupling norms {rho:.3g} < 1")
    cone = torch.cat([torch.full((torch.Size(graph.neurons[n].shape).numel(),),
                                 _is_relu(lags[n])) for n in layers])
    q = lam if lam is not None and not cone.any() else \
        _cone_witness(matvec, cone, 1.0 + rho, bottom)
    if q < -1e-6:
        return "failed", (f"UNBOUNDED below: the quadratic part over {layers} is negative "
                          f"({q:.3g}) along a direction the activations can take, so E → −∞ "
                          f"along it (e.g. two identity layers joined by a Dense with "
                          f"‖W‖₂ > 1)")
    what = f"smallest Hessian eigenvalue {lam:.3g}" if lam is not None else \
        f"λ_max of the coupling norms {rho:.3g} ≥ 1"
    return "unverified", f"the quadratic part over {layers} is not shown positive definite ({what})"
