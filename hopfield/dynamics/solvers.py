r"""Fixed-point solvers behind one registry and one signature.

Every solver finds $z^\star = f(z^\star)$ and is called as

    z, stats = solver(f, z0, max_iter=..., tol=..., **options)

where ``z0`` has the batch first and any trailing shape. ``tol=None`` runs exactly ``max_iter``
iterations (the published iMixer loop is ``fixed_point`` with ``tol=None``); otherwise the solver
stops once the residual (``stop_mode``: ``"rel"`` $\lVert f(z)-z\rVert/\lVert f(z)\rVert$ or
``"abs"`` $\lVert f(z)-z\rVert$, per sample, max over the batch) falls below ``tol``. The stats
record (:class:`SolverStats`) carries the residual trace, iterations, function evaluations and the
converged / diverged flags.

The solvers never report success on a broken result
(``docs/concepts/fast_layers.md#convergence-and-divergence``):

* stopping short of ``tol`` warns (:class:`ConvergenceWarning`; ``warn=False`` silences it);
* a NaN/Inf or exploding residual in the loop, or a NaN/Inf result after it, raises
  :class:`DivergenceError` whatever ``warn`` says, with ``err.stats`` set to ``converged=False``,
  ``diverged=True``. With ``tol=None`` the loop is untouched: one finiteness check runs after it,
  and ``converged=True`` means "the requested iterations ran and the result is finite";
* under ``torch.compile`` / ``torch.export`` / ``torch.jit`` / FX tracing (or on ``meta``
  tensors) that check is skipped so that the graph stays whole: ``checked=False``, and a
  ``tol=None`` solve reports ``converged=False`` (unknown);
* an empty batch returns ``z0`` at once: 0 iterations, ``converged=True``.

``max_iter`` must be an int >= 0 and ``tol`` a finite number > 0 or ``None``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..core.validate import is_int, is_real
from .guards import check_solver_call, is_tracing

__all__ = ["SolverStats", "ConvergenceWarning", "DivergenceError", "fixed_point", "anderson",
           "broyden", "get_solver", "register_solver", "solver_names"]


class ConvergenceWarning(UserWarning):
    """A fixed-point solve stopped at ``max_iter`` before reaching ``tol``."""


class DivergenceError(FloatingPointError):
    """A solve produced NaN/Inf or a residual that grew far beyond its start.

    ``stats`` is the solve's :class:`SolverStats` (``converged=False``, ``diverged=True``).
    """

    def __init__(self, message: str, stats: SolverStats | None = None):
        super().__init__(message)
        self.stats = stats


@dataclass
class SolverStats:
    """What a solve did. Residuals are per iteration (max over the batch); see module docs."""

    solver: str
    iterations: int = 0
    nfev: int = 0
    converged: bool = False
    diverged: bool = False
    tol: float | None = None
    stop_mode: str = "rel"
    abs_residuals: list = field(default_factory=list)
    rel_residuals: list = field(default_factory=list)
    checked: bool = True  # False when tracing skipped the final finiteness check

    @property
    def residuals(self) -> list[float]:
        """Residual trace (of ``stop_mode``) as Python floats."""
        trace = self.rel_residuals if self.stop_mode == "rel" else self.abs_residuals
        return [float(r) for r in trace]

    @property
    def final_residual(self) -> float:
        return self.residuals[-1] if self.residuals else math.nan

    def as_dict(self) -> dict:
        return {"solver": self.solver, "iterations": self.iterations, "nfev": self.nfev,
                "converged": self.converged, "diverged": self.diverged, "tol": self.tol,
                "stop_mode": self.stop_mode, "residuals": self.residuals, "checked": self.checked}


def _norms(diff: torch.Tensor, fz: torch.Tensor):
    """Max over the batch of the absolute and relative residuals and of |f(z)| (norms taken in at
    least float32, so that half-precision states do not overflow them)."""
    wide = torch.promote_types(diff.dtype, torch.float32)
    d = diff.detach().reshape(diff.shape[0], -1).to(wide).norm(dim=-1)
    f = fz.detach().reshape(fz.shape[0], -1).to(wide).norm(dim=-1)
    return d.max(), (d / (f + 1e-12)).max(), f.max()


_FIX = ("The feedback map is probably not a contraction: apply spectral normalisation "
        "(hopfield.dynamics.spectral_norm), use smaller weights, damp the iteration "
        "(solver_options={'damping': 0.5} for fixed_point) or use solver='anderson'.")


def _check_common(name, f, z0, max_iter, tol, stop_mode):
    check_solver_call(name, f, z0, max_iter, tol, stop_mode)
    return SolverStats(name, tol=tol, stop_mode=stop_mode)


def _empty(z0, stats: SolverStats) -> bool:
    """An empty batch: nothing to solve (and nothing to reshape); reported as converged."""
    if isinstance(z0, torch.fx.Proxy) or z0.shape[0] != 0:
        return False
    stats.converged = True
    return True


def _record(stats: SolverStats, diff, fz, divergence_factor, check):
    a, r, size = _norms(diff, fz)
    stats.abs_residuals.append(a)
    stats.rel_residuals.append(r)
    if not check:
        return False
    a, r, size = torch.stack([a, r, size]).tolist()  # one device sync per iteration
    cur = r if stats.stop_mode == "rel" else a
    first = float(stats.rel_residuals[0] if stats.stop_mode == "rel" else stats.abs_residuals[0])
    # an |f(z)| beyond the float range would make the relative residual 0: diverged, not converged
    if (not all(map(math.isfinite, (a, r, size)))
            or (cur > divergence_factor * max(first, 1e-30) and cur > 1.0)):
        stats.diverged, stats.converged = True, False
        raise DivergenceError(
            f"{stats.solver}: fixed-point iteration diverged at iteration {stats.iterations} "
            f"(residual {cur:.3g}, started at {first:.3g}). {_FIX}", stats)
    return stats.tol is not None and cur < stats.tol


def _all_finite(t: torch.Tensor) -> bool:
    """Whether ``t`` holds no NaN/Inf, cheaply: one sum (NaN/Inf propagate into it), and the
    elementwise check only when the sum is not finite (an overflowing sum of finite values)."""
    return bool(torch.isfinite(t.detach().sum())) or bool(torch.isfinite(t).all())


def _finish(stats: SolverStats, warn: bool, z: torch.Tensor, z0: torch.Tensor,
            extra: torch.Tensor | None = None):
    """One finiteness check of the result (skipped under tracing), then flags and warnings."""
    if is_tracing(z):
        stats.checked = False
        return stats
    if not (_all_finite(z) and (extra is None or _all_finite(extra))):
        stats.diverged, stats.converged = True, False
        bad = int((~torch.isfinite(z)).sum())
        what = (f"the result holds {bad} NaN/Inf of {z.numel()} values" if bad else
                "f returns NaN/Inf at the result")
        start = ("" if bool(torch.isfinite(z0).all()) else
                 " The starting point z0 already held NaN/Inf: check the input first.")
        raise DivergenceError(
            f"{stats.solver}: fixed-point iteration diverged after the loop ({stats.iterations} "
            f"iterations, tol={stats.tol}): {what}.{start} {_FIX}", stats)
    if stats.tol is None:
        stats.converged = True  # the requested iterations ran and the result is finite
    elif not stats.converged and warn:
        warnings.warn(f"{stats.solver}: no convergence after {stats.iterations} iterations "
                      f"(residual {stats.final_residual:.3g} > tol {stats.tol:g}); raise max_iter "
                      f"or try solver='anderson'.", ConvergenceWarning, stacklevel=3)
    return stats


def fixed_point(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, *, max_iter: int = 50,
                tol: float | None = None, stop_mode: str = "rel", damping: float = 1.0,
                divergence_factor: float = 1e4, warn: bool = True, record: bool | None = None):
    r"""Plain (optionally damped) iteration $z \leftarrow (1-\lambda) z + \lambda f(z)$.

    With ``tol=None`` it runs exactly ``max_iter`` iterations and, unless ``record=True``, adds
    nothing to the loop (no residual bookkeeping: the published iMixer loop, op for op; the
    result is checked for NaN/Inf once, after the loop). With a
    ``tol`` (or ``record=True``) the residual recorded at iteration $i$ is
    $\lVert f(z_{i}) - z_{i}\rVert$, available as $z_{i+1}-z_i$.
    """
    stats = _check_common("fixed_point", f, z0, max_iter, tol, stop_mode)
    if not (is_real(damping) and 0 < damping <= 1):
        raise ValueError(f"fixed_point: damping must be in (0, 1], got {damping!r}; 1 is the "
                         f"plain iteration, smaller values damp it.")
    if _empty(z0, stats):
        return z0, stats
    z = z0
    check = tol is not None
    record = check if record is None else record
    for _ in range(max_iter):
        fz = f(z)
        stats.nfev += 1
        stats.iterations += 1
        if not (record or check or damping != 1.0):
            z = fz
            continue
        diff = fz - z
        z = fz if damping == 1.0 else z + damping * diff
        if (record or check) and _record(stats, diff, fz, divergence_factor, check):
            stats.converged = True
            break
    return z, _finish(stats, warn, z, z0)


def anderson(f, z0, *, max_iter: int = 50, tol: float | None = 1e-5, stop_mode: str = "rel",
             memory: int = 5, lam: float = 1e-4, mixing: float = 1.0,
             divergence_factor: float = 1e4, warn: bool = True, record: bool = True):
    r"""Anderson acceleration (type II) with ``memory`` past iterates, batched per sample.

    Solves $\min_\alpha \lVert\sum_i \alpha_i (f(z_i) - z_i)\rVert^2$ s.t. $\sum_i\alpha_i = 1$
    (ridge ``lam`` relative to the mean squared residual) and sets $z \leftarrow \text{mixing}\sum_i\alpha_i f(z_i) +
    (1-\text{mixing})\sum_i\alpha_i z_i$.
    """
    stats = _check_common("anderson", f, z0, max_iter, tol, stop_mode)
    if not (is_int(memory) and memory >= 1):
        raise ValueError(f"anderson: memory must be an int >= 1 (past iterates kept), got "
                         f"{memory!r}.")
    if _empty(z0, stats):
        return z0, stats
    shape, b = z0.shape, z0.shape[0]
    # histories as lists (no in-place buffer writes), so unrolled backprop through the
    # solver stays valid
    hist_x: list[torch.Tensor] = []
    hist_f: list[torch.Tensor] = []
    check = tol is not None
    z = z0
    for k in range(max_iter):
        fz = f(z)
        stats.nfev += 1
        stats.iterations += 1
        if _record(stats, fz - z, fz, divergence_factor, check):
            stats.converged = True
            z = fz
            break
        hist_x.append(z.reshape(b, -1))
        hist_f.append(fz.reshape(b, -1))
        if len(hist_x) > memory:
            hist_x.pop(0)
            hist_f.pop(0)
        if k == 0:
            z = fz
            continue
        z = anderson_step(hist_x, hist_f, lam, mixing).reshape(shape)
    return z, _finish(stats, warn, z, z0)


def anderson_step(hist_x, hist_f, lam, mixing):
    """One type-II Anderson update from the histories ``[(b, n)]`` of iterates and map values:
    the mixing weights solve the residuals' least squares with a ridge relative to their scale
    (so it neither dominates near convergence nor vanishes far from it), in at least float32
    (no half-precision LU). Shared by :func:`anderson` and its masked, compile-friendly twin."""
    xs, fs = torch.stack(hist_x, 1), torch.stack(hist_f, 1)  # (b, m, n)
    b, m = xs.shape[0], xs.shape[1]
    g = fs - xs
    gg = g @ g.transpose(1, 2)
    scale = gg.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)[:, None, None]
    eye = torch.eye(m, dtype=g.dtype, device=g.device)
    ones = g.new_ones(b, 1, m)
    top = torch.cat([g.new_zeros(b, 1, 1), ones], 2)
    bottom = torch.cat([ones.transpose(1, 2), gg + lam * scale * eye], 2)
    h = torch.cat([top, bottom], 1)
    rhs = torch.cat([g.new_ones(b, 1, 1), g.new_zeros(b, m, 1)], 1)
    wide = torch.promote_types(h.dtype, torch.float32)
    alpha = torch.linalg.solve(h.to(wide), rhs.to(wide))[:, 1:, 0].to(g.dtype)
    new = mixing * (alpha[:, None] @ fs)[:, 0]
    if mixing != 1.0:
        new = new + (1 - mixing) * (alpha[:, None] @ xs)[:, 0]
    return new


def broyden(f, z0, *, max_iter: int = 50, tol: float | None = 1e-5, stop_mode: str = "rel",
            divergence_factor: float = 1e4, warn: bool = True, record: bool = True):
    r"""Good Broyden's method on $r(z) = f(z) - z$ with a dense per-sample inverse Jacobian.

    Memory is $O(n^2)$ per sample, so it suits small states (tests, diagnostics); prefer
    ``anderson`` for large ones. Starts from $J^{-1} = -I$ (one plain step).
    """
    stats = _check_common("broyden", f, z0, max_iter, tol, stop_mode)
    if _empty(z0, stats):
        return z0, stats
    shape, b = z0.shape, z0.shape[0]
    n = z0[0].numel()
    if n > 4096:
        raise ValueError(f"broyden: state of {n} numbers per sample is too large for a dense "
                         f"inverse Jacobian (limit 4096); use solver='anderson'.")
    if z0.dtype in (torch.float16, torch.bfloat16):
        raise ValueError(f"broyden: {z0.dtype} is not supported (its dense inverse-Jacobian "
                         f"updates lose too much precision); use solver='anderson' or "
                         f"'fixed_point', or run the solve in float32.")
    check = tol is not None
    inv = -torch.eye(n, dtype=z0.dtype, device=z0.device).expand(b, n, n).clone()
    z = z0.reshape(b, n)
    fz = f(z.reshape(shape)).reshape(b, n)
    stats.nfev += 1
    r = fz - z
    for _ in range(max_iter):
        stats.iterations += 1
        if _record(stats, r, fz, divergence_factor, check):
            stats.converged = True
            break
        dz = -(inv @ r[..., None])[..., 0]
        z = z + dz
        fz = f(z.reshape(shape)).reshape(b, n)
        stats.nfev += 1
        r_new = fz - z
        dr = r_new - r
        r = r_new
        hdr = (inv @ dr[..., None])[..., 0]
        denom = (dz * hdr).sum(-1, keepdim=True)
        denom = torch.where(denom.abs() < 1e-30, torch.full_like(denom, 1e-30), denom)
        inv = inv + ((dz - hdr) / denom)[..., None] * (dz[:, None, :] @ inv)
    z = z.reshape(shape)
    return z, _finish(stats, warn, z, z0, extra=r)


_SOLVERS: dict[str, Callable] = {"fixed_point": fixed_point, "anderson": anderson,
                                 "broyden": broyden}


def register_solver(name: str, fn: Callable) -> None:
    """Add a solver with the common signature ``fn(f, z0, *, max_iter, tol, ...) -> (z, stats)``."""
    _SOLVERS[name] = fn


def solver_names() -> list[str]:
    return sorted(_SOLVERS)


def get_solver(name: str) -> Callable:
    if name not in _SOLVERS:
        raise ValueError(f"Unknown solver {name!r}; valid solvers: {', '.join(solver_names())}.")
    return _SOLVERS[name]

